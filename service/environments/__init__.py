"""Deployment environments: their policies, champions, pins and the reads serving layers make."""
