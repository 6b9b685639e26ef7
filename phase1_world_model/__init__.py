"""DIAMOND-lite, an action-conditioned diffusion world model of Atari. Not implemented yet: see README.md."""
