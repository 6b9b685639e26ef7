"""Diffusion Forcing. Not implemented yet: see README.md."""
