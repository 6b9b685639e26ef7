"""Unified World Model. Not implemented yet: see README.md."""
