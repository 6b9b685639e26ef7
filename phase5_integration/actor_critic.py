"""An agent trained purely in imagination (DIAMOND's recipe, the roadmap's phase 1 stretch goal).

Each training step starts B imagined worlds from real context (K frames and K - 1 actions of phase 1's training
split), lets the actor play H steps inside phase 1's frozen world model (frames from the diffusion sampler, reward
and end from its reward/end head, as `WorldModelEnv` gives them), and updates an actor-critic on what it imagined:

    lambda-return   G_t = r_t + gamma c_t ((1 - lambda) V(s_{t+1}) + lambda G_{t+1}),   G_H = V(s_H)
    critic          0.5 (V(s_t) - G_t)^2
    actor           -(G_t - V(s_t)) log pi(a_t | s_t) - eta H(pi(. | s_t))        (REINFORCE with a baseline)

where c_t = 0 when the head says step t ended the life (and every later step of that world is masked out of the
loss: the imagined episode is over). DIAMOND: H = 15, gamma = 0.985, lambda = 0.95, eta = 0.001, a CNN + LSTM
actor-critic on single frames with a burn-in; here the actor-critic sees the K = 4 last frames stacked (motion
without the recurrence, as phase 1's reward/end head does) and no burn-in is needed.

The world model is held outside the module's parameters, so checkpoints and the export hold the actor-critic only;
the export's marker names the world model it was trained in.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.images import to_model_range, to_uint8
from phase1_world_model.model import WorldModel
from phase5_integration.config import ActorCriticConfig


class ActorCritic(nn.Module):
    """K stacked RGB frames (uint8) -> action logits (A) and a value."""

    def __init__(self, cfg: ActorCriticConfig, num_actions: int, context: int, size: int = 64):
        super().__init__()
        layers, c = [], 3 * context
        for w in cfg.channels:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(min(8, w), w), nn.SiLU()]
            c = w
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        side = max(1, size // 2 ** len(cfg.channels))
        self.trunk = nn.Sequential(nn.Linear(c * side * side, cfg.hidden), nn.SiLU())
        self.pi, self.v = nn.Linear(cfg.hidden, num_actions), nn.Linear(cfg.hidden, 1)
        self.cfg, self.num_actions, self.context = cfg, num_actions, context

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, K, 3, H, W) uint8 -> (logits (B, A), value (B,))."""
        h = self.trunk(self.encoder(to_model_range(frames).flatten(1, 2)))
        return self.pi(h).float(), self.v(h).squeeze(1).float()


def lambda_returns(reward: torch.Tensor, cont: torch.Tensor, values: torch.Tensor, gamma: float,
                   lam: float) -> torch.Tensor:
    """reward, cont (B, H); values (B, H + 1) -> G (B, H) by the recursion in the module docstring."""
    H = reward.shape[1]
    G = torch.empty_like(reward)
    nxt = values[:, H]
    for t in reversed(range(H)):
        nxt = reward[:, t] + gamma * cont[:, t] * ((1 - lam) * values[:, t + 1] + lam * nxt)
        G[:, t] = nxt
    return G


class ImaginationLearner(nn.Module):
    """The Trainer's model: `forward(batch, rng)` imagines H steps from the batch's real context and returns the
    actor-critic loss. `batch` is phase 1's dataset items (obs (B, K, 3, h, w) uint8, act (B, K))."""

    def __init__(self, agent: ActorCritic, world: WorldModel, cfg: ActorCriticConfig, denoise_steps: int | None = None):
        super().__init__()
        self.agent, self.cfg, self.denoise_steps = agent, cfg, denoise_steps
        self._world = [world.eval().requires_grad_(False)]  # a list: not a submodule, not in the state dict

    @property
    def world(self) -> WorldModel:
        return self._world[0]

    def forward(self, batch: dict, rng) -> tuple[torch.Tensor, dict]:
        c, world = self.cfg, self.world
        if next(world.parameters()).device != batch["obs"].device:
            world.to(batch["obs"].device)
        frames, acts = batch["obs"], batch["act"][:, :-1]  # K real frames and the K - 1 actions between them
        g = rng.generator()
        logps, ents, vals, rews, conts = [], [], [], [], []
        for _ in range(c.horizon):
            logits, v = self.agent(frames)
            dist = torch.distributions.Categorical(logits=logits)
            a = torch.multinomial(dist.probs.detach(), 1, generator=g).squeeze(1)
            logps.append(dist.log_prob(a))
            ents.append(dist.entropy())
            vals.append(v)
            with torch.no_grad():
                full = torch.cat([acts, a[:, None]], 1)
                nxt = to_uint8(world.next_frame(frames, full, generator=g, steps=self.denoise_steps))
                reward, end, _ = world.reward_end(frames, full, nxt)
            rews.append(reward.float())
            conts.append(1.0 - end.float())
            frames = torch.cat([frames[:, 1:], nxt[:, None]], 1)
            acts = full[:, 1:]
        with torch.no_grad():
            vals.append(self.agent(frames)[1])
        logp, ent, V = torch.stack(logps, 1), torch.stack(ents, 1), torch.stack(vals, 1)
        R, C = torch.stack(rews, 1), torch.stack(conts, 1)
        G = lambda_returns(R, C, V.detach(), c.gamma, c.lam)
        # step t counts while the world is still running: all earlier steps continued
        alive = torch.cumprod(torch.cat([torch.ones_like(C[:, :1]), C[:, :-1]], 1), 1)
        n = alive.sum().clamp_min(1)
        adv = (G - V[:, :-1]).detach()
        actor = -(adv * logp * alive).sum() / n
        entropy = (ent * alive).sum() / n
        critic = 0.5 * (((V[:, :-1] - G) ** 2) * alive).sum() / n
        loss = actor + c.critic_weight * critic - c.entropy_weight * entropy
        return loss, {"actor_loss": float(actor.detach()), "critic_loss": float(critic.detach()),
                      "entropy": float(entropy.detach()),
                      "imagined_reward": float((R * alive).sum() / n), "imagined_end": float(((1 - C) * alive).sum() / n),
                      "imagined_steps": float(alive.sum(1).mean()), "value": float(V[:, 0].detach().mean())}


class ActorCriticAgent:
    """The trained actor-critic playing the real game (agents.play_game's protocol): samples its policy, or takes
    the most likely action with `greedy`."""

    needs_state = False

    def __init__(self, net: ActorCritic, greedy: bool = False):
        self.net, self.greedy = net.eval(), greedy
        self.context = net.context
        self.last_imagined = None

    def reset(self, rng) -> None:
        self.g = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))

    @torch.no_grad()
    def act(self, history) -> int:
        logits, _ = self.net(history.frames[None])
        if self.greedy:
            return int(logits.argmax(1))
        return int(torch.multinomial(F.softmax(logits, 1), 1, generator=self.g))
