"""Runs (the retrains of a version): their artifacts, params, metrics and downloads."""
