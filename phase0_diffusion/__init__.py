"""Phase 0: diffusion foundations (DDPM, EDM, DDIM, classifier-free guidance)."""
