"""Phase 1: DIAMOND-lite, an action-conditioned diffusion world model of Atari, and its regressor baseline.

Public surface (what phase 2, phase 5, notebooks and tests may import):

    config      Phase1Config, WorldModelConfig, FrameSamplerConfig, DataSourceConfig, AtariEnvConfig, CollectConfig, EvaluateConfig, PlayConfig
    envs        make_atari, canonical_game, protocol (DIAMOND's Atari protocol)
    storage     Episode, load_episode, dataset_identity, find_dataset, read_index, CorruptDatasetError, ...
    recording   record (collect a data set), ensure_dataset (re-create one from its recorded identity)
    dataset     AtariWorldModelDataset (items, episode_frames, episode_actions, episode_ram)
    model       WorldModel (loss, next-frame sampling, reward/end head), to_model, to_uint8
    loading     load_trained(spec, kind, root, device), data_of, dataset_folder, load_split
    rollout     start_points, gather, rollout, batched_rollout, side_by_side
    metrics     mse, psnr, ssim, ssim_cs, frame_metrics, aggregate, score, psnr_curve
    breakout    ram_state, detect, game_errors, score, game_scores (Breakout's state from RAM and from frames)
    wm_env      WorldModelEnv (a Gymnasium env backed by the world model), Imagination (B worlds at once)

Entry points (`python -m phase1_world_model.<name>`, used by other code only through `main`): collect, train,
evaluate, play, show_batch, breakout_calibrate. See README.md.
"""
