"""Shared library: models, diffusion processes, samplers, training loop, runs and logging."""
