"""Registered models and their versions: names, PEP 440 versions, stages."""
