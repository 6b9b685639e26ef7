"""The world model: an action-conditioned EDM denoiser of the next frame, plus a reward/end head.

    K past frames (B, K, 3, H, W) --stack as channels--> (B, 3K, H, W) ---------------------+
    noisy next frame x + sigma * n (B, 3, H, W) --c_in--> concat -----------------------> UNet --> D(x; sigma)
    K past actions --Embedding (K x action_dim, concatenated)--> Linear --> cond (B, emb_dim)   |
    sigma --c_noise = ln(sigma)/4--> Fourier --> MLP --> + cond --> AdaGroupNorm in every block +

Everything diffusion-specific is `common`'s: `UNet` (the conditioning vector `cond` is added to the
noise-level embedding that drives adaptive GroupNorm), `EDMDenoiser` (preconditioning, loss weight, clean
`context` channels concatenated after c_in), `karras_sigmas` and the Euler/Heun samplers. This file only
adds what is specific to a world model: the action embedding, DIAMOND's training noise (clipped log-normal
sigma plus per-channel offset noise), the deterministic regressor baseline, and the reward/end head.

`forward(batch, rng)` is the training loss (the Trainer's contract). `next_frame(...)` generates one frame;
`reward_end(...)` classifies a transition. Frames are uint8 in the data set and [-1, 1] floats here.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from common.diffusion import samplers
from common.diffusion.edm import EDMDenoiser, karras_sigmas, lognormal_sigma, training_noise
from common.images import to_model_range
from common.nn.unet import UNet, count_parameters
from phase1_world_model.config import FrameSamplerConfig, RewardEndConfig, WorldModelConfig


class ActionEmbedding(nn.Module):
    """K past actions -> one conditioning vector. Each position gets its own `dim`-wide embedding (concatenated,
    so the order of the actions is kept), projected to `out_dim` when K * dim differs from it. Positions before
    the episode's first frame (mask False) use an extra index meaning "no action"."""

    def __init__(self, num_actions: int, context: int, dim: int, out_dim: int):
        super().__init__()
        self.num_actions = num_actions
        self.embed = nn.Embedding(num_actions + 1, dim)
        self.proj = nn.Identity() if context * dim == out_dim else nn.Linear(context * dim, out_dim)

    def forward(self, act: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            act = torch.where(mask, act, torch.full_like(act, self.num_actions))
        return self.proj(self.embed(act).flatten(1))


class VectorActionEmbedding(nn.Module):
    """K past continuous actions (B, K, a) -> one conditioning vector: each position through its own linear map to
    `dim` (concatenated, order kept), projected to `out_dim`. Positions before the episode's first frame (mask
    False) get a learned "no action" vector instead. For robot actions (phase 4's LIBERO baseline); Atari's
    discrete actions use ActionEmbedding."""

    def __init__(self, action_size: int, context: int, dim: int, out_dim: int):
        super().__init__()
        self.embed = nn.ModuleList(nn.Linear(action_size, dim) for _ in range(context))
        self.none = nn.Parameter(torch.zeros(context, dim))
        self.proj = nn.Identity() if context * dim == out_dim else nn.Linear(context * dim, out_dim)

    def forward(self, act: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.stack([f(act[:, k].float()) for k, f in enumerate(self.embed)], dim=1)  # (B, K, dim)
        if mask is not None:
            h = torch.where(mask[..., None], h, self.none.to(h.dtype)[None])
        return self.proj(h.flatten(1))


class RewardEndHead(nn.Module):
    """Classifies a transition (K context frames, next frame, actions) into sign(reward) in {-1, 0, 1} and end.

    DIAMOND uses a conv encoder with an LSTM over the episode; with K stacked frames as input this head sees
    the same short history without the recurrence (the reward in Breakout and Pong is visible in the
    transition: a brick disappears, the ball leaves the screen).
    """

    def __init__(self, cfg: RewardEndConfig, in_frames: int, num_actions: int, context: int, size: int):
        super().__init__()
        layers, c = [], 3 * in_frames
        for w in cfg.channels:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(min(8, w), w), nn.SiLU()]
            c = w
        self.encoder = nn.Sequential(*layers)
        side = max(1, size // 2 ** len(cfg.channels))
        self.actions = ActionEmbedding(num_actions, context, 16, 16 * context)
        self.mlp = nn.Sequential(nn.Linear(c * side * side + 16 * context, cfg.hidden), nn.SiLU())
        self.reward = nn.Linear(cfg.hidden, 3)  # classes: reward -1, 0, +1
        self.end = nn.Linear(cfg.hidden, 2)  # classes: continues, ends
        # Cross-entropy class weights (set from the training set by `set_class_weights`; saved with the model).
        self.register_buffer("reward_weight", torch.ones(3))
        self.register_buffer("end_weight", torch.ones(2))
        self.cfg = cfg

    def set_class_weights(self, reward_counts, end_counts) -> None:
        """w_c = (N / (C n_c)) ** balance_power, capped; classes absent from the data get weight 1."""
        for buf, counts in ((self.reward_weight, reward_counts), (self.end_weight, end_counts)):
            n = torch.as_tensor(counts, dtype=torch.float64)
            w = (n.sum() / (len(n) * n.clamp_min(1))) ** self.cfg.balance_power
            w = torch.where(n > 0, w.clamp(max=self.cfg.max_class_weight), torch.ones_like(w))
            buf.copy_(w.float())

    def forward(self, context: torch.Tensor, next_frame: torch.Tensor, act: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(torch.cat([context, next_frame], dim=1)).flatten(1)
        h = self.mlp(torch.cat([h, self.actions(act, mask)], dim=1))
        return self.reward(h).float(), self.end(h).float()


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig, num_actions: int, frame_shape: tuple[int, int, int] = (3, 64, 64),
                 sampler: FrameSamplerConfig | None = None, action_size: int = 0):
        """num_actions: discrete actions (Atari); or action_size > 0: continuous action vectors of that size (then
        num_actions is ignored and the reward/end head must be disabled). frame_shape: (C, H, W) of one frame; C may
        stack several cameras."""
        super().__init__()
        self.cfg, self.num_actions, self.frame_shape = cfg, num_actions, tuple(frame_shape)
        self.action_size = action_size
        self.sampler = sampler or FrameSamplerConfig()  # next_frame's default steps and solver
        C, K = frame_shape[0], cfg.context
        unet_cfg = copy.deepcopy(cfg.unet)
        unet_cfg.in_channels = C * (K + 1) if cfg.kind == "diffusion" else C * K
        unet_cfg.out_channels = C
        net = UNet(unet_cfg)
        if cfg.kind == "diffusion":
            self.denoiser = EDMDenoiser(net, cfg.edm)
        else:
            self.regressor = net
        self.actions = (VectorActionEmbedding(action_size, K, cfg.action_dim, unet_cfg.emb_dim) if action_size
                        else ActionEmbedding(num_actions, K, cfg.action_dim, unet_cfg.emb_dim))
        if action_size and cfg.reward_end.enabled:
            raise ValueError("continuous actions (action_size > 0) need model.reward_end.enabled=false")
        self.head = (RewardEndHead(cfg.reward_end, K + 1, num_actions, K, frame_shape[-1])
                     if cfg.reward_end.enabled else None)

    @property
    def frame_net(self) -> nn.Module:
        return self.denoiser.net if self.cfg.kind == "diffusion" else self.regressor

    def describe(self) -> str:
        head = f" + reward/end head {count_parameters(self.head) / 1e6:.2f}M" if self.head is not None else ""
        return (f"{self.cfg.kind} UNet {count_parameters(self.frame_net) / 1e6:.2f}M params "
                f"(channels {list(self.cfg.unet.channels)}), actions {count_parameters(self.actions) / 1e3:.1f}k"
                f"{head}")

    # ----------------------------------------------------------------- training
    def forward(self, batch: dict, rng) -> tuple[torch.Tensor, dict]:
        context = to_model_range(batch["obs"]).flatten(1, 2)  # (B, K*3, H, W)
        x0 = to_model_range(batch["next_obs"])
        cond = self.actions(batch["act"], batch["mask"])
        logs = {}
        if self.cfg.kind == "diffusion":
            c = self.cfg
            sigma = lognormal_sigma(rng.randn(), c.edm.p_mean, c.edm.p_std, c.sigma_min_train, c.sigma_max_train)
            noise = training_noise(rng.randn, tuple(x0.shape[1:]), c.noise_offset, c.noise_offset_form, sigma)
            frame_loss = self.denoiser.loss(x0, sigma, noise, cond, context).mean()
        else:
            pred = self.regressor(context, torch.zeros(x0.shape[0], device=x0.device), cond).float()
            frame_loss = F.mse_loss(pred, x0)
        loss, logs["frame_loss"] = frame_loss, float(frame_loss.detach())
        if self.head is not None:
            r_logits, e_logits = self.head(context, x0, batch["act"], batch["mask"])
            r_target, e_target = batch["reward"] + 1, batch["end"].long()
            head_loss = (F.cross_entropy(r_logits, r_target, weight=self.head.reward_weight)
                         + F.cross_entropy(e_logits, e_target, weight=self.head.end_weight))
            loss = loss + self.cfg.reward_end.weight * head_loss
            logs.update(head_loss=float(head_loss.detach()),
                        reward_acc=float((r_logits.argmax(1) == r_target).float().mean()),
                        end_acc=float((e_logits.argmax(1) == e_target).float().mean()))
        return loss, logs

    # ----------------------------------------------------------------- generation
    def sigmas(self, steps: int | None = None, device="cpu") -> torch.Tensor:
        e = self.cfg.edm
        return karras_sigmas(steps or self.sampler.steps, e.sigma_min, e.sigma_max, e.rho, device=device)

    @torch.no_grad()
    def next_frame(self, obs: torch.Tensor, act: torch.Tensor, mask: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, steps: int | None = None,
                   solver: str | None = None) -> torch.Tensor:
        """obs (B, K, 3, H, W) uint8 or [-1, 1] float, act (B, K) -> the next frame (B, 3, H, W) in [-1, 1].

        Diffusion: `steps` Euler (or Heun) steps down the Karras schedule from sigma_max, deterministic given
        the starting noise drawn from `generator`. Regressor: one forward pass.
        """
        context = (to_model_range(obs) if obs.dtype == torch.uint8 else obs).flatten(1, 2)
        cond = self.actions(act, mask)
        B = context.shape[0]
        if self.cfg.kind == "regressor":
            return self.regressor(context, torch.zeros(B, device=context.device), cond).float().clamp(-1, 1)
        sig = self.sigmas(steps, context.device)
        x = samplers.prior((B, *self.frame_shape), float(sig[0]), generator, context.device)
        solve = samplers.heun if (solver or self.sampler.solver) == "heun" else samplers.euler
        x = solve(lambda x_, s: self.denoiser(x_, s, cond, context), x, sig)
        return x.clamp(-1, 1)

    @torch.no_grad()
    def reward_end(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor,
                   mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (reward in {-1, 0, 1} (B,), end (B,) bool, end probability (B,))."""
        p_reward, p_end = self.reward_end_probs(obs, act, next_obs, mask)
        return p_reward.argmax(1) - 1, p_end > 0.5, p_end

    @torch.no_grad()
    def reward_end_probs(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor,
                         mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's probabilities: (P(reward = -1, 0, +1) (B, 3), P(end) (B,)). A planner values a transition by
        its expected reward p[:, 2] - p[:, 0] rather than the argmax class, which is flat almost everywhere."""
        if self.head is None:
            raise RuntimeError("this world model was trained with model.reward_end.enabled=false: it has no "
                               "reward/end head (train one with the default setting)")
        context = (to_model_range(obs) if obs.dtype == torch.uint8 else obs).flatten(1, 2)
        nxt = to_model_range(next_obs) if next_obs.dtype == torch.uint8 else next_obs
        r_logits, e_logits = self.head(context, nxt, act, mask)
        return r_logits.softmax(1), e_logits.softmax(1)[:, 1]
