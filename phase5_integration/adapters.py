"""Thin adapters that make each world model of this repo satisfy `protocol.WorldModel`.

    Phase1Model   phase 1's DIAMOND-lite (diffusion) or its regressor: one frame at a time from the last K frames
                  and actions; reward and life loss from a reward/end head (its own, or another model's)
    DFModel       phase 2's Diffusion Forcing model: its scheduling matrix and stabilization level (the
                  autoregressive schedule frame by frame over a tree of prefixes, others in sliding windows per
                  candidate); it has no reward/end head, so a phase 1 head scores its frames
    EmulatorModel the oracle: each candidate is played in a second copy of the real game, restored from a snapshot of
                  the real one (the ALE state and the lives counter): what a perfect world model would predict
    HeadOnRealFrames  the diagnostic between the two: the oracle's real frames, valued by the learned reward/end head
                  instead of the game's own rewards and lives (how much of a learned model's loss is the head's)
    UWMModel      phase 4's Unified World Model (LIBERO, continuous actions): its forward-dynamics mode imagines the
                  future latents of each candidate chunk; no reward/end head (testbed 2's scorer values the latents)

The reward/end head is a classifier of transitions (K context frames, K actions, the next frame), trained by
phase 1 on real frames. Sharing one head between the diffusion model, the regressor and the DF model makes the
comparison about the frames each imagines, not about three different critics. Rewards are expected values of the
head's sign-clipped classes, P(+1) - P(-1); the oracle uses sign(reward) of the real game.

Candidates that share a prefix share its imagined frames in Phase1Model, and in DFModel with the autoregressive
schedule (a tree: enumerating all 4^3 sequences of Breakout's 4 actions generates 4 + 16 + 64 frames, not 3 x 64);
each distinct prefix is imagined once, so this changes the cost, not the distribution of what each candidate
imagines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from common.images import to_uint8
from phase1_world_model.envs import LifeLossInfo
from phase1_world_model.model import WorldModel as Phase1WorldModel
from phase2_diffusion_forcing.config import SamplerConfig
from phase2_diffusion_forcing.model import DFWorldModel
from phase2_diffusion_forcing.sampler import next_frame as df_next_frame
from phase2_diffusion_forcing.sampler import rollout as df_rollout
from phase4_uwm.modes import run_mode
from phase5_integration.protocol import History, Imagined, check_actions


def _expected_reward(p_reward: torch.Tensor) -> torch.Tensor:
    return (p_reward[:, 2] - p_reward[:, 0]).float()


def _batched_history(history: History, K: int, N: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The last K frames (N, K, 3, h, w) and the K - 1 actions between them (N, K - 1), shared by N candidates."""
    frames = history.frames[-K:].to(device)[None].expand(N, -1, -1, -1, -1)
    acts = history.actions[len(history.actions) - (K - 1):].to(device)[None].expand(N, -1)
    return frames, acts


def _check_head(scorer: Phase1WorldModel, num_actions: int, context: int) -> None:
    if scorer.head is None:
        raise ValueError("the reward/end scorer has no head: use a phase 1 diffusion run trained with "
                         "model.reward_end.enabled=true (the default)")
    if scorer.num_actions != num_actions or scorer.cfg.context != context:
        raise ValueError(f"the scorer's head reads K={scorer.cfg.context} frames and {scorer.num_actions} actions, "
                         f"the world model K={context} and {num_actions}: train them on the same data set")


def _score_rollout(scorer: Phase1WorldModel, history: History, actions: torch.Tensor, gen: torch.Tensor, K: int,
                  device, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Each candidate's whole rollout `gen` (N, H, 3, h, w) after the history, scored by the head transition by
    transition (frames t..t+K-1 with the K actions played on them produce frame t+K) -> expected reward, P(end) (N, H)."""
    N, H = actions.shape
    ctx, past = _batched_history(history, K, N, device)
    seq = torch.cat([ctx, gen], dim=1)  # (N, K + H, ...)
    all_acts = torch.cat([past, actions.to(device)], dim=1)  # all_acts[:, i] is played on frame i
    f = torch.stack([seq[:, t:t + K] for t in range(H)], 1).flatten(0, 1)
    a = torch.stack([all_acts[:, t:t + K] for t in range(H)], 1).flatten(0, 1)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        p_reward, p_end = scorer.reward_end_probs(f, a, gen.flatten(0, 1))
    return _expected_reward(p_reward).view(N, H).cpu(), p_end.float().view(N, H).cpu()


def _imagine_tree(history: History, actions: torch.Tensor, K: int, device, scorer: Phase1WorldModel, bf16: bool,
                  next_frame) -> Imagined:
    """Candidates that share a prefix share its imagined frames: at step t one frame per distinct prefix a_0..a_t,
    `next_frame(frames (U, K, 3, h, w) uint8, actions (U, K), generated (U, K) bool) -> (U, 3, h, w) uint8` (the
    K actions are the ones played on the K frames; `generated` marks the frames the model imagined), scored by
    `scorer`'s reward/end head."""
    N, H = actions.shape
    frames, acts = _batched_history(history, K, N, device)
    generated = torch.zeros(N, K, dtype=torch.bool, device=device)
    out, rewards, ends = [], [], []
    prefixes = actions.cpu().numpy()
    for t in range(H):
        _, rep, inv = np.unique(prefixes[:, :t + 1], axis=0, return_index=True, return_inverse=True)
        rep, inv = torch.as_tensor(rep, device=device), torch.as_tensor(inv.reshape(-1), device=device)
        f = frames[rep]
        a = torch.cat([acts[rep], actions[rep, t:t + 1]], dim=1)  # (U, K): the K actions played on f
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            nxt = next_frame(f, a, generated[rep])
            p_reward, p_end = scorer.reward_end_probs(f, a, nxt)
        nxt, r, e = nxt[inv], _expected_reward(p_reward)[inv], p_end.float()[inv]
        out.append(nxt)
        rewards.append(r)
        ends.append(e)
        frames = torch.cat([frames[:, 1:], nxt[:, None]], dim=1)
        generated = torch.cat([generated[:, 1:], torch.ones(N, 1, dtype=torch.bool, device=device)], dim=1)
        acts = torch.cat([acts, actions[:, t:t + 1]], dim=1)[:, 1:]
    return Imagined(reward=torch.stack(rewards, 1).cpu(), end=torch.stack(ends, 1).cpu(),
                    frames=torch.stack(out, 1).cpu())


class Phase1Model:
    """Phase 1's WorldModel (kind diffusion or regressor) behind the planner protocol."""

    needs_state = False

    def __init__(self, model: Phase1WorldModel, name: str, scorer: Phase1WorldModel | None = None,
                 steps: int | None = None, bf16: bool = False):
        self.model, self.name, self.steps, self.bf16 = model.eval(), name, steps, bf16
        self.scorer = (scorer or model).eval()
        self.num_actions, self.context = model.num_actions, model.cfg.context
        _check_head(self.scorer, self.num_actions, self.context)
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def imagine(self, history: History, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> Imagined:
        actions = check_actions(self, actions).to(self.device)
        return _imagine_tree(history, actions, self.context, self.device, self.scorer, self.bf16,
                             lambda f, a, _: to_uint8(self.model.next_frame(f, a, generator=generator,
                                                                             steps=self.steps)))


class DFModel:
    """Phase 2's DFWorldModel behind the protocol, scored by a phase 1 head (it has none of its own).

    With the autoregressive schedule each frame is denoised from its K predecessors alone, so candidates share
    their prefixes as in Phase1Model: one frame per distinct prefix, the sampler's window sliding one frame at a
    time (`sampler.chunk = 1`: each frame rounded to uint8 and fed back at the stabilization level). Schedules that
    denoise several frames together (pyramid, full sequence, a file) roll each candidate out whole, in windows of
    `sampler.chunk` frames; they cost more, because nothing is shared."""

    needs_state = False

    def __init__(self, model: DFWorldModel, scorer: Phase1WorldModel, sampler: SamplerConfig, name: str = "df",
                 bf16: bool = False):
        self.model, self.scorer, self.sampler, self.name, self.bf16 = model.eval(), scorer.eval(), sampler, name, bf16
        self.num_actions, self.context = model.num_actions, model.K
        _check_head(self.scorer, self.num_actions, self.context)
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def imagine(self, history: History, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> Imagined:
        actions = check_actions(self, actions).to(self.device)
        if self.sampler.schedule == "autoregressive":
            return _imagine_tree(history, actions, self.context, self.device, self.scorer, self.bf16,
                                 lambda f, a, gen: df_next_frame(self.model, f, a, gen, self.sampler, generator))
        N, H = actions.shape
        ctx, past = _batched_history(history, self.context, N, self.device)
        gen = df_rollout(self.model, ctx, torch.cat([past, actions], dim=1), H, self.sampler, generator,
                         self.bf16).to(self.device)
        reward, end = _score_rollout(self.scorer, history, actions, gen, self.context, self.device, self.bf16)
        return Imagined(reward=reward, end=end, frames=gen.cpu())


# ----------------------------------------------------------------------------- the oracle
@dataclass
class EmulatorState:
    """Enough of the real game to replay it elsewhere: the ALE's state and the life counter of LifeLossInfo."""

    ale: Any
    lives: int


def _life_wrapper(env: gym.Env) -> LifeLossInfo:
    e = env
    while not isinstance(e, LifeLossInfo):
        if not hasattr(e, "env"):
            raise TypeError("the environment has no LifeLossInfo wrapper: build it with phase1_world_model.envs."
                            "make_atari")
        e = e.env
    return e


def snapshot(env: gym.Env) -> EmulatorState:
    """The real game's state, taken without touching it (cloneState only reads the emulator)."""
    return EmulatorState(env.unwrapped.ale.cloneState(), _life_wrapper(env)._lives)


class EmulatorModel:
    """The oracle world model: replays every candidate in `sim`, a second env built like the real one (never the
    real env itself, so planning cannot disturb the real episode). Deterministic: the ALE has no randomness of its
    own with sticky actions off, and the noop reset happened before the snapshot."""

    needs_state = True

    def __init__(self, sim: gym.Env, name: str = "emulator", keep_frames: bool = False):
        self.sim, self.name, self.keep_frames = sim, name, keep_frames
        self.num_actions = int(sim.action_space.n)
        self.context = 1
        self.sim.reset(seed=0)  # gymnasium's order checks want a reset before the first step
        self._lives = _life_wrapper(sim)

    def imagine(self, history: History, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> Imagined:
        if not isinstance(history.state, EmulatorState):
            raise ValueError("the emulator oracle needs History.state = adapters.snapshot(real env)")
        actions = check_actions(self, actions)
        N, H = actions.shape
        reward, end = torch.zeros(N, H), torch.zeros(N, H)
        frames = torch.zeros(N, H, *history.frames.shape[1:], dtype=torch.uint8) if self.keep_frames else None
        ale = self.sim.unwrapped.ale
        for i, row in enumerate(actions.tolist()):
            ale.restoreState(history.state.ale)
            self._lives._lives = history.state.lives
            for t, a in enumerate(row):
                obs, r, terminated, truncated, info = self.sim.step(a)
                reward[i, t] = float(np.sign(r))
                end[i, t] = float(info["life_loss"] or terminated)
                if frames is not None:
                    frames[i, t] = torch.from_numpy(obs).permute(2, 0, 1)
                if terminated or truncated:
                    break
        return Imagined(reward=reward, end=end, frames=frames)


class HeadOnRealFrames:
    """The real game's frames of every candidate (played as EmulatorModel plays them) valued by a phase 1 reward/end
    head, as the learned models' frames are: a perfect frame model with the learned critic. Against the oracle it
    measures what the head loses; against a learned model, what that model's frames lose."""

    needs_state = True

    def __init__(self, sim: gym.Env, scorer: Phase1WorldModel, bf16: bool = False, name: str = "emulator_head"):
        self.oracle = EmulatorModel(sim, keep_frames=True)
        self.scorer, self.bf16, self.name = scorer.eval(), bf16, name
        self.num_actions, self.context = self.oracle.num_actions, scorer.cfg.context
        _check_head(self.scorer, self.num_actions, self.context)
        self.device = next(scorer.parameters()).device

    @torch.no_grad()
    def imagine(self, history: History, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> Imagined:
        real = self.oracle.imagine(history, actions)
        reward, end = _score_rollout(self.scorer, history, actions, real.frames.to(self.device), self.context,
                                     self.device, self.bf16)
        return Imagined(reward=reward, end=end, frames=real.frames)


# ----------------------------------------------------------------------------- LIBERO
class UWMModel:
    """Phase 4's UWM behind the protocol, in its forward-dynamics mode (actions clean, future video denoised).

    History: the UWM's `context` current frames of every camera, stacked along the channels (K, 3 V, S, S), and the
    task's index; the actions played before them are not read. Candidates: (N, chunk, A) action chunks in raw units.
    One conditioning pass on the history is shared by the N candidates; `Imagined.latents` is the imagined future,
    (N, V, F, C, h, w) in the tokenizer's latent space (F future frames, the last one where the chunk ends)."""

    needs_state = False
    num_actions = 0  # continuous actions

    def __init__(self, model, name: str = "uwm", steps: int = 0):
        self.model, self.name, self.steps = model.eval(), name, steps
        self.context, self.action_dim, self.horizon = model.clip.obs_frames, model.action_dim, model.clip.chunk
        self.views, self.size = model.views, int(model.obs_size)
        self.device = next(model.parameters()).device

    def observation(self, history: History) -> torch.Tensor:
        """History.frames (K, 3 V, S, S) -> the UWM's observation (1, V, K, 3, S, S)."""
        f = history.frames
        if f.shape[0] != self.context or f.shape[1] != 3 * self.views or f.shape[2:] != (self.size, self.size):
            raise ValueError(f"{self.name} reads {self.context} frame(s) of {self.views} camera(s) at {self.size} px, "
                             f"(K, 3 V, S, S) = ({self.context}, {3 * self.views}, {self.size}, {self.size}); "
                             f"got {tuple(f.shape)}")
        return f.reshape(self.context, self.views, 3, self.size, self.size).transpose(0, 1)[None]

    @torch.no_grad()
    def imagine(self, history: History, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> Imagined:
        actions = check_actions(self, actions).to(self.device)
        if actions.shape[1] != self.horizon:
            raise ValueError(f"{self.name} imagines whole chunks of {self.horizon} actions, got {actions.shape[1]}")
        if history.task is None:
            raise ValueError(f"{self.name} is multi-task: History.task must name the task")
        cond = self.model.condition(self.observation(history).to(self.device),
                                    torch.tensor([history.task], device=self.device)).expand(len(actions), -1)
        out = run_mode(self.model, "forward", None, None, cond=cond, actions=actions, steps=self.steps,
                       generator=generator)
        return Imagined(reward=None, end=None, latents=out.future)
