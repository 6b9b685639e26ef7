"""Phase 4: a Unified World Model (Zhu et al., RSS 2025) on phase 3's LIBERO demonstrations: one diffusion
transformer over an action chunk and future frames, each with its own noise level; the levels chosen at inference
make it a policy, a forward model, an inverse model or a video model.

Public surface (what phase 5, notebooks and tests may import):

    config      Phase4Config, UWMConfig, ClipConfig, TokenizerConfig, TokenizerTrainConfig, InferConfig,
                UWMEvaluateConfig, MODES
    data        load_demos, Demos, Clips, ActionStats, clip_indices (phase 3's data sets as training clips)
    tokenizer   Tokenizer (AutoencoderKL or pixels), patchify, unpatchify
    model       UWM (denoise, condition, forward = the training loss), DiTBlock
    modes       run_mode(model, mode, obs, task, actions=, future=, steps=, cond=) -> ModeOutput
    loading     load_uwm, load_tokenizer
    diffusion_policy  build_dp, DPClips, DPModule (lerobot's Diffusion Policy, the from-scratch baseline)
    baselines   InverseRegressor (the inverse mode's baseline)
    diamond     DiamondClips, rollout (DIAMOND-lite on LIBERO: the forward mode's baseline)
    policy      UWMPolicy (policy mode behind phase 3's LIBERO episode loop, phase3_vla.rollouts.play)

Entry points (`python -m phase4_uwm.<name>`): train_tokenizer, train, train_dp, train_inverse, train_diamond, infer,
evaluate. See README.md and
notes/uwm-architecture.md.
"""
