"""DIAMOND-lite, an action-conditioned diffusion world model of Atari. So far the data pipeline: envs,
collect, storage, dataset, show_batch (see README.md); the world model itself is not implemented yet."""
