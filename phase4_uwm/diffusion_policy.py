"""The paper's main baseline: lerobot's Diffusion Policy (Chi et al. 2023), trained from scratch on the same
demonstrations as the UWM, in the project's Trainer.

    policy, pre, post = build_dp(DPConfig(), stats)          # lerobot DiffusionPolicy + its processors
    module = DPModule(policy, pre)                           # forward(batch, rng) -> (loss, logs)
    data = DPClips(demos, cfg)                               # what lerobot's delta timestamps would give it

lerobot's DiffusionPolicy is used as it is (its ResNet-18 with GroupNorm and spatial softmax, its 1-D conditional
UNet, its DDPM/DDIM noise schedulers and its observation/action queues at inference); only the sizes are ours
(`DPConfig`), no ImageNet weights are loaded (none can be fetched), and its padded action steps are masked out of
the loss (`do_mask_loss_for_padding`, lerobot's option, off by default there). Samples follow lerobot's layout: 2
observation steps (t-1, t) of both cameras and the state, and a horizon of 16 actions starting at t-1 (the policy
plays from index 1, the current step). Images are the data set's 128 px frames; `resize` shrinks them inside the
policy, at training and in LIBERO alike.

lerobot's loss draws its noise and timesteps from torch's global generator; `DPModule` seeds it from the Trainer's
(seed, step, sample offset) before each forward, so a resumed run draws what the uninterrupted run drew.
"""
from __future__ import annotations

import torch
from torch import nn

from common.stepwise import mix_seed
from phase4_uwm.config import ClipConfig, DPConfig
from phase4_uwm.data import Demos, clip_indices

IMAGE_KEYS = ("observation.images.image", "observation.images.image2")


def stats_of(demos: Demos) -> dict:
    """lerobot's dataset statistics for the features the policy normalises (images mean/std per channel, state and
    action min/max), computed on the training demonstrations."""
    f = demos.frames.float() / 255  # (N, V, 3, S, S)
    out = {}
    for v, key in enumerate(IMAGE_KEYS):
        x = f[:, v]
        out[key] = {"mean": x.mean((0, 2, 3)).reshape(3, 1, 1), "std": x.std((0, 2, 3)).reshape(3, 1, 1),
                    "min": x.amin((0, 2, 3)).reshape(3, 1, 1), "max": x.amax((0, 2, 3)).reshape(3, 1, 1)}
    for key, t in (("observation.state", demos.state), ("action", demos.actions)):
        out[key] = {"mean": t.mean(0), "std": t.std(0), "min": t.min(0).values, "max": t.max(0).values}
    return out


def build_dp(cfg: DPConfig, stats: dict, image_size: int, device="cpu"):
    """(policy, preprocessor, postprocessor): a randomly initialised lerobot DiffusionPolicy for two 128 px
    cameras, an 8-d state and 7-d actions, with lerobot's processors normalising by `stats`."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    inputs = {k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, image_size, image_size)) for k in IMAGE_KEYS}
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(8,))
    dc = DiffusionConfig(
        n_obs_steps=cfg.n_obs_steps, horizon=cfg.horizon, n_action_steps=cfg.n_action_steps,
        input_features=inputs, output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(7,))},
        resize_shape=(cfg.resize, cfg.resize), crop_shape=(cfg.crop, cfg.crop), pretrained_backbone_weights=None,
        use_group_norm=True, down_dims=tuple(cfg.down_dims), spatial_softmax_num_keypoints=cfg.spatial_softmax_num_keypoints,
        num_train_timesteps=cfg.num_train_timesteps, noise_scheduler_type=cfg.noise_scheduler_type,
        num_inference_steps=cfg.num_inference_steps, do_mask_loss_for_padding=True, device=str(device),
        drop_n_last_frames=0, push_to_hub=False)
    policy = DiffusionPolicy(dc)
    pre, post = make_pre_post_processors(dc, dataset_stats=stats)
    return policy.to(device), pre, post


class DPClips(torch.utils.data.Dataset):
    """lerobot's Diffusion Policy samples from in-memory demonstrations: images (n_obs, 3, S, S) in [0, 1] per
    camera, state (n_obs, 8), actions (horizon, 7) from t-(n_obs-1), and their pad mask."""

    def __init__(self, demos: Demos, cfg: DPConfig):
        self.demos = demos
        clip = ClipConfig(obs_frames=cfg.n_obs_steps, chunk=cfg.horizon, future_frames=1)
        self.idx = clip_indices(demos.episode, clip, action_offset=-(cfg.n_obs_steps - 1))

    def __len__(self) -> int:
        return len(self.demos)

    def __getitem__(self, i: int) -> dict:
        o, a = self.idx["obs"][i], self.idx["action"][i]
        item = {key: self.demos.frames[o, v].float() / 255 for v, key in enumerate(IMAGE_KEYS)}
        item["observation.state"] = self.demos.state[o]
        item["action"] = self.demos.actions[a]
        item["action_is_pad"] = self.idx["action_is_pad"][i]
        return item


class DPModule(nn.Module):
    """lerobot's DiffusionPolicy and preprocessor in the Trainer's convention `forward(batch, rng) -> (loss, logs)`."""

    def __init__(self, policy, pre):
        super().__init__()
        self.policy, self.pre = policy, pre

    def forward(self, batch: dict, rng) -> tuple[torch.Tensor, dict]:
        torch.manual_seed(mix_seed(rng.seed, rng.step, rng.offset))  # lerobot's noise and timesteps, reproducible
        loss, _ = self.policy.forward(self.pre(dict(batch)))
        return loss, {}
