"""Testbed 2 (LIBERO): propose K action chunks, imagine each one's outcome, play the one the scorer likes best.

    chooser = ChunkChooser(uwm.model, tok, scorer, task_id=9, proposals=8, choose="world_model")
    chooser.bind(env)                     # only choose="simulator" plays the proposals in a copy of the real state
    chooser.reset(); action = chooser.select_action(obs)    # phase3_vla.rollouts.play drives it like any policy

Every `chunk` steps (the whole chunk is played open loop, so the imagined outcome is the state of the next decision):

    proposer     the UWM's policy mode, K samples of one observation (one conditioning pass, batched over K),
                 or another UWM's (`UWMProposer`: the proposals stay fixed while the imagining UWM changes);
                 or phase 3's SmolVLA (`VLAProposer`): K flow-matching samples (K noise draws, one batched call),
                 each cut to the UWM's chunk length, so that the UWM only imagines and scores
    choose
      first        the proposer alone: one sample, its chunk played as it comes
      world_model  the UWM's forward mode imagines each chunk's last future frame (latents of both cameras),
                   through the planners' protocol (`adapters.UWMModel`); the progress scorer ranks them
      pixel_goal   the same imagined frames, decoded, ranked by pixel distance to the mean last frame of the
                   training demonstrations (the baseline scorer the issue asks for)
      simulator    each chunk played in the real simulator from a snapshot of the current state, its real last
                   frame scored by the same progress scorer, a success scores above any progress; then the state is
                   restored (the ceiling of world-model choice: a perfect world model with the same scorer)

The progress scorer (`ProgressScorer`, trained by `python -m phase5_integration.train_scorer`) maps one frame's
latents (both cameras, the UWM's frozen tokenizer) to the fraction of a successful demonstration that has elapsed,
t / (T - 1): a value function learned from demonstrations, and from played episodes when given (failures 0).
"""
from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.images import to_uint8
from phase4_uwm.modes import run_mode
from phase4_uwm.policy import IMAGE_KEYS
from phase5_integration.adapters import UWMModel
from phase5_integration.config import CHOOSERS
from phase5_integration.protocol import History

SUCCESS_SCORE = 2.0  # what the simulator scores a chunk that reaches the goal (every progress is in [0, 1])


class ProgressScorer(nn.Module):
    """Latents (B, V, C, h, w) of one time step -> progress logit (B,): sigmoid = elapsed fraction of the task."""

    def __init__(self, views: int, latent_channels: int, width: int = 64):
        super().__init__()
        c_in = views * latent_channels
        group_norm = lambda c: nn.GroupNorm(min(8, c), c)  # noqa: E731
        self.net = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1), group_norm(width), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), group_norm(2 * width), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), group_norm(2 * width), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.flatten(1, 2)).squeeze(1)

    def progress(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(z.float()))


class ProgressData(torch.utils.data.Dataset):
    """Every frame of a set of demonstrations as (latents, t / (T - 1) within its episode), or with explicit
    targets (`target`: the rollouts' frames, 0 for every frame of a failed episode)."""

    def __init__(self, z: torch.Tensor, episode: torch.Tensor | None = None, target: torch.Tensor | None = None):
        if (episode is None) == (target is None):
            raise ValueError("give either the episode index per frame or the target per frame")
        self.z = z
        self.target = episode_progress(episode) if target is None else target.float()

    def __len__(self) -> int:
        return len(self.z)

    def __getitem__(self, i: int) -> dict:
        return {"z": self.z[i], "progress": self.target[i]}


def rollout_targets(success: bool, steps: int) -> torch.Tensor:
    """The scorer's target along a played episode: t / (T - 1) when it succeeded (like a demonstration), 0 for
    every frame of a failure (a failed episode makes no progress towards success, however far the arm moved)."""
    if not success:
        return torch.zeros(steps)
    return torch.arange(steps, dtype=torch.float32) / max(steps - 1, 1)


def episode_progress(episode: torch.Tensor) -> torch.Tensor:
    """(N,) episode index per frame, frames in episode order -> t / (T - 1) per frame (0 for one-frame episodes)."""
    out = torch.zeros(len(episode))
    for e in episode.unique():
        idx = (episode == e).nonzero().squeeze(1)
        if len(idx) > 1:
            out[idx] = torch.arange(len(idx), dtype=torch.float32) / (len(idx) - 1)
    return out


class ScorerTraining(nn.Module):
    """The scorer under the trainer's contract: forward(batch, rng) -> (loss, logs). BCE on the soft target."""

    def __init__(self, scorer: ProgressScorer):
        super().__init__()
        self.scorer = scorer

    def forward(self, batch: dict, rng=None) -> tuple[torch.Tensor, dict]:
        logit = self.scorer(batch["z"].float())
        loss = F.binary_cross_entropy_with_logits(logit, batch["progress"].float())
        return loss, {"loss/bce": loss.detach()}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr
    return float(spearmanr(a, b).statistic)


# ----------------------------------------------------------------------------------------------- simulator copies
OBSERVABLE_STATE = ("_time_since_last_sample", "_sampled", "_current_delay", "_current_observed_value")


@dataclass
class SimSnapshot:
    state: np.ndarray
    counters: dict
    controllers: list
    grippers: list
    observables: dict
    obs_cache: dict
    raw_obs: dict


def snapshot(env) -> SimSnapshot:
    """Everything a LIBERO step reads or returns that the MuJoCo state does not hold: the robosuite env's counters,
    each robot's controller goals, the gripper's smoothed command (it moves by a fixed speed per step), every
    observable's sampling clock and last value (they are sampled on a clock of simulator substeps, so a forced
    resample would not give the same observation), and the wrapper's raw observation.
    tests/test_phase5_libero.py checks that a snapshot, a probe and a restore leave an episode unchanged."""
    inner = env._env.env
    arrays = lambda obj: {k: v.copy() for k, v in vars(obj).items() if isinstance(v, np.ndarray)}  # noqa: E731
    return SimSnapshot(inner.sim.get_state().flatten().copy(),
                       {k: getattr(inner, k) for k in ("timestep", "cur_time", "done")},
                       [arrays(r.controller) for r in inner.robots], [arrays(r.gripper) for r in inner.robots],
                       {name: {k: copy.deepcopy(getattr(o, k)) for k in OBSERVABLE_STATE}
                        for name, o in inner._observables.items()},
                       copy.deepcopy(inner._obs_cache), copy.deepcopy(env.raw_obs))


def restore(env, snap: SimSnapshot) -> None:
    inner = env._env.env
    inner.sim.set_state_from_flattened(snap.state)
    inner.sim.forward()
    for k, v in snap.counters.items():
        setattr(inner, k, v)
    for robot, ctrl, grip in zip(inner.robots, snap.controllers, snap.grippers):
        for k, v in ctrl.items():
            setattr(robot.controller, k, v.copy())
        for k, v in grip.items():
            setattr(robot.gripper, k, v.copy())
        robot.controller.update(force=True)
    for name, state in snap.observables.items():
        for k, v in state.items():
            setattr(inner._observables[name], k, copy.deepcopy(v))
    inner._obs_cache = copy.deepcopy(snap.obs_cache)
    env.raw_obs = copy.deepcopy(snap.raw_obs)


def _advance_clock(o, substeps: int, dt: float) -> None:
    """An observable's sampling clock moved as `substeps` simulator substeps of robosuite's Observable.update would
    move it, without sampling (robosuite 1.4's logic, minus the sensor call)."""
    for _ in range(substeps):
        o._time_since_last_sample += dt
        if not o._sampled and o._sampling_timestep - o._current_delay >= o._time_since_last_sample:
            o._sampled, o._current_delay = True, o._delayer()
        if o._time_since_last_sample >= o._sampling_timestep:
            o._time_since_last_sample %= o._sampling_timestep
            o._sampled = False


def probe(env, actions: np.ndarray) -> tuple[bool, dict | None]:
    """Play `actions` (n, 7) from the env's current state: (success on the way, the formatted observation after the
    last action, or None on success). The cameras do not render before the last step (rendering is most of a step's
    cost on CPU); their sampling clocks are advanced as if they had, so the last step renders its images at the
    same substep a normal step would: the observation equals playing every step (tests/test_phase5_libero.py).
    The caller snapshots before and restores after."""
    inner = env._env.env
    cams = [o for o in inner._observables.values() if o.modality == "image" and o._enabled]
    substeps = int(round(inner.control_timestep / inner.model_timestep))
    try:
        for o in cams:
            o._enabled = False  # set_enabled would also reset the clock
        for a in actions[:-1]:
            env._env.step(np.asarray(a, dtype=np.float64))  # libero's env: no image formatting
            if env._env.check_success():
                return True, None
        for o in cams:
            _advance_clock(o, substeps * (len(actions) - 1), inner.model_timestep)
            o._enabled = True
        obs, _, _, _, info = env.step(actions[-1])
        return bool(info["is_success"]), (None if info["is_success"] else obs)
    finally:
        for o in cams:
            o._enabled = True


# ----------------------------------------------------------------------------------------------- the chooser
def frames_at(images: dict, size: int) -> torch.Tensor:
    """Both cameras' (1, 3, H, W) floats in [0, 1] -> (V, 3, size, size) uint8 (area resize, as UWMPolicy)."""
    views = []
    for key in IMAGE_KEYS:
        x = images[key].float()
        if x.shape[-1] != size:
            x = F.interpolate(x * 255, size=(size, size), mode="area") / 255
        views.append((x[0] * 255).round().clamp(0, 255).to(torch.uint8))
    return torch.stack(views)


class VLAProposer:
    """K action chunks from phase 3's SmolVLA for one observation: one batched flow-matching call with K noise draws
    from the episode's generator, each chunk cut to its first `chunk` actions, unnormalised (raw units)."""

    reads = "raw"  # phase 3's observation batch (UWMProposer reads the UWM's frames)

    def __init__(self, policy, pre, post, chunk: int, generator: torch.Generator | None = None):
        if chunk > policy.config.chunk_size:
            raise ValueError(f"the VLA predicts {policy.config.chunk_size} actions per chunk, fewer than the UWM's "
                             f"{chunk}: its chunks cannot be imagined whole")
        self.policy, self.pre, self.post, self.chunk, self.generator = policy, pre, post, chunk, generator

    @torch.no_grad()
    def __call__(self, raw: dict, k: int) -> torch.Tensor:
        """raw: phase 3's observation batch of one (phase3_vla.rollouts.observation) -> (k, chunk, A) raw actions."""
        batch = self.pre(dict(raw))
        batch = {key: (v.expand(k, *v.shape[1:]) if torch.is_tensor(v) and v.dim() and v.shape[0] == 1
                       else v * k if isinstance(v, list) else v) for key, v in batch.items()}
        cfg = self.policy.config
        dev = next(self.policy.parameters()).device
        noise = torch.randn((k, cfg.chunk_size, cfg.max_action_dim), generator=self.generator, device=dev)
        self.policy.reset()  # its observation queue holds only this call's batch
        actions = self.policy.predict_action_chunk(batch, noise=noise)[:, :self.chunk]  # (k, chunk, A) normalised
        return self.post(actions.reshape(-1, actions.shape[-1])).reshape(k, self.chunk, -1).float()


class UWMProposer:
    """K action chunks from a UWM's policy mode (one conditioning pass, batched over K), raw units. The chooser's
    own UWM proposes this way by default; this class lets another UWM propose while the chooser's imagines (the
    proposals stay fixed when only the imagining model changes). Same generator, same draws as the default."""

    reads = "frames"

    def __init__(self, model, task_id: int, denoise_steps: int = 0, generator: torch.Generator | None = None):
        self.model, self.task_id, self.denoise_steps, self.generator = model.eval(), task_id, denoise_steps, generator

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor, k: int) -> torch.Tensor:
        """obs (1, V, F, 3, S, S) uint8 -> (k, chunk, A)."""
        dev = next(self.model.parameters()).device
        cond = self.model.condition(obs.to(dev), torch.tensor([self.task_id], device=dev)).expand(k, -1)
        return run_mode(self.model, "policy", None, None, cond=cond, steps=self.denoise_steps,
                        generator=self.generator).actions


def check_proposer_fits(proposer_model, model) -> None:
    """A UWM that proposes for another must read the same observations and write the same chunks."""
    for what, a, b in (("chunk length", proposer_model.clip.chunk, model.clip.chunk),
                       ("observation frames", proposer_model.clip.obs_frames, model.clip.obs_frames),
                       ("image size", int(proposer_model.obs_size), int(model.obs_size)),
                       ("action dimension", proposer_model.action_dim, model.action_dim)):
        if a != b:
            raise ValueError(f"the proposing UWM's {what} is {a}, the imagining UWM's {b}: they must match")


class ChunkChooser:
    """A policy for phase 3's episode loop that picks one of K proposed chunks per decision (module docstring)."""

    def __init__(self, model, tokenizer, scorer: ProgressScorer | None, task_id: int, proposals: int, choose: str,
                 denoise_steps: int = 0, generator: torch.Generator | None = None, goal: torch.Tensor | None = None,
                 proposer: VLAProposer | UWMProposer | None = None):
        if choose not in CHOOSERS:
            raise ValueError(f"choose={choose!r}: allowed values: {', '.join(CHOOSERS)}")
        if choose in ("world_model", "simulator") and scorer is None:
            raise ValueError(f"choose={choose} needs a progress scorer")
        if choose == "pixel_goal" and goal is None:
            raise ValueError("choose=pixel_goal needs a goal frame (V, 3, S, S)")
        self.model, self.tok, self.scorer, self.task_id = model, tokenizer, scorer, task_id
        self.world = UWMModel(model, steps=denoise_steps)  # the protocol's adapter: imagines each chunk's outcome
        self.k = 1 if choose == "first" else proposals
        self.choose, self.denoise_steps, self.generator, self.goal = choose, denoise_steps, generator, goal
        # None: this UWM's policy mode proposes (a UWMProposer of its own, with the chooser's generator)
        self.proposer = proposer or UWMProposer(model, task_id, denoise_steps, generator)
        self.size = int(model.obs_size)
        self._queues = {"action": deque()}
        self.history: deque = deque(maxlen=model.clip.obs_frames)
        self.played: deque = deque(maxlen=model.clip.obs_frames - 1)  # the actions between the history's frames
        self.env = None
        self.decisions: list[dict] = []  # per decision: the scores and the chosen index (for the report)
        self.imagined: list[tuple[int, torch.Tensor]] = []  # (step of the decision, the chosen chunk's imagined end)
        self._futures: torch.Tensor | None = None
        self._step = 0

    def bind(self, env) -> None:
        self.env = env

    def reset(self) -> None:
        self._queues["action"].clear()
        self.history.clear()
        self.played.clear()
        self.decisions, self.imagined, self._futures, self._step = [], [], None, 0

    @torch.no_grad()
    def propose(self, obs: torch.Tensor, raw: dict | None = None) -> torch.Tensor:
        """obs (1, V, F, 3, S, S) -> K chunks (K, chunk, A), raw units (from the UWM's policy mode, another UWM's,
        or the VLA proposer given the raw observation batch `raw`)."""
        if self.proposer.reads == "raw" and raw is None:
            raise ValueError("a VLA proposer needs the raw observation batch")
        dev = next(self.model.parameters()).device
        return self.proposer(obs if self.proposer.reads == "frames" else raw, self.k).to(dev)

    def world_history(self, obs: torch.Tensor) -> History:
        """obs (1, V, F, 3, S, S) -> the protocol's History: F frames with the cameras along the channels, the
        actions played between them (zeros before the episode's first, as its first frame is repeated), the task."""
        V, Fr, S = obs.shape[1], obs.shape[2], obs.shape[-1]
        acts = torch.zeros(Fr - 1, self.model.action_dim)
        if self.played:
            acts[Fr - 1 - len(self.played):] = torch.stack(list(self.played))
        return History(obs[0].transpose(0, 1).reshape(Fr, V * 3, S, S), acts, task=self.task_id)

    @torch.no_grad()
    def scores(self, history: History, actions: torch.Tensor) -> torch.Tensor:
        if self.choose == "first":
            return torch.zeros(1)
        if self.choose == "simulator":
            return self.simulate(actions)
        fut = self.world.imagine(history, actions, self.generator).latents[:, :, -1]  # (K, V, C, h, w): the chunk's end
        self._futures = fut
        if self.choose == "world_model":
            return self.scorer.progress(fut).cpu()
        img = self.tok.decode(fut)  # (K, V, 3, S, S) in [-1, 1]
        goal = self.goal.to(img.device).float() / 127.5 - 1
        return -((img - goal) ** 2).flatten(1).mean(1).cpu()

    def simulate(self, actions: torch.Tensor) -> torch.Tensor:
        """Play each chunk in the real simulator from the current state, score the real outcome, restore."""
        from phase3_vla.libero_env import frame_of
        from phase3_vla.rollouts import observation
        if self.env is None:
            raise RuntimeError("choose=simulator: bind(env) first")
        snap, out = snapshot(self.env), []
        dev = next(self.scorer.parameters()).device
        for a in actions.float().cpu().numpy():
            success, obs = probe(self.env, a)
            if success:
                out.append(SUCCESS_SCORE)
            else:
                frames = frames_at(observation(frame_of(obs), ""), self.tok.cfg.image_size)
                out.append(float(self.scorer.progress(self.tok.encode(frames[None].to(dev)))[0]))
            restore(self.env, snap)
        return torch.tensor(out)

    @torch.no_grad()
    def select_action(self, batch: dict) -> torch.Tensor:
        frame = frames_at(batch, self.size)
        if not self.history:
            self.history.extend([frame] * self.history.maxlen)
        else:
            self.history.append(frame)
        if not self._queues["action"]:
            obs = torch.stack(list(self.history), dim=1)[None]  # (1, V, F, 3, S, S)
            actions = self.propose(obs, batch)
            s = self.scores(self.world_history(obs), actions)
            best = int(torch.argmax(s))
            self.decisions.append({"scores": [round(float(v), 4) for v in s], "chosen": best})
            if self._futures is not None:
                self.imagined.append((self._step, self._futures[best].cpu()))
                self._futures = None
            self._queues["action"].extend(actions[best].float().cpu())
        self._step += 1
        action = self._queues["action"].popleft()
        self.played.append(action)
        return action[None]

    @torch.no_grad()
    def annotate(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Recorded real frames (agent view | wrist, one per step) -> real above imagined: below each real frame,
        the decoded frame the world model imagined at the end of the chunk being played (what the chooser expected
        the real frame to look like when the chunk ends), black where nothing was imagined (choose=first or
        simulator). Unchanged when nothing was imagined."""
        if not self.imagined or not frames:
            return frames
        h, w = frames[0].shape[:2]
        dev = next(self.model.parameters()).device
        z = torch.stack([f for _, f in self.imagined]).to(dev)  # (D, V, C, h, w)
        img = self.tok.decode(z).float()  # (D, V, 3, S, S) in [-1, 1]
        img = torch.cat(list(img.unbind(1)), dim=-1)  # views side by side: (D, 3, S, V * S)
        img = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False)
        img = to_uint8(img).permute(0, 2, 3, 1).cpu().numpy()
        starts = [t for t, _ in self.imagined]
        out, gap = [], np.full((2, w, 3), 255, np.uint8)
        for t, real in enumerate(frames):
            d = int(np.searchsorted(starts, t, side="right")) - 1  # the decision whose chunk is being played
            below = img[d] if d >= 0 else np.zeros_like(real)
            out.append(np.concatenate([real, gap, below], axis=0))
        return out
