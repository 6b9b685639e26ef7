"""Phase 2: Diffusion Forcing on phase 1's data: per-frame noise levels, scheduling matrices, sliding rollouts.

Public surface:

    config      Phase2Config, DFConfig, SamplerConfig, CompareConfig
    data        WindowDataset (windows of K context + L frames over phase 1's AtariWorldModelDataset)
    model       DFWorldModel (per-frame levels; diffusion_forcing / full_sequence / teacher_forced objectives)
    schedules   pyramid, autoregressive, full_sequence, make, validate, from_file, ScheduleError
    sampler     sample_chunk, rollout
    loading     load_trained(spec, objective, root, device)

Entry points: train, compare. See README.md.
"""
