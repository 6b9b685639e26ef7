"""Receding-horizon planning over discrete actions in any `protocol.WorldModel`.

The value of a candidate sequence a_0..a_{H-1} under the imagined rewards r_t and life-loss probabilities e_t is
the expected discounted return when a lost life costs `life_penalty` and ends the imagined episode:

    V = sum_t gamma^t S_t (r_t - life_penalty e_t),    S_0 = 1,  S_t = prod_{s<t} (1 - e_s)

(S_t is the probability that the life survives to step t). Three ways to choose candidates (`method`):

    enumerate   all A^H sequences (Breakout: 4^3 = 64); exact search over the model's predictions
    shooting    `candidates` sequences drawn uniformly, plus the previous plan shifted by what was executed
    cem         the cross-entropy method over per-step categorical distributions (DINO-WM / TD-MPC2's optimiser
                for discrete actions): sample, keep the `elites` best, refit with `smoothing`, `iterations` times;
                warm-started from the previous distribution shifted by the executed steps

A stochastic model gives each candidate `repeats` imagined futures (their values averaged). With `action_repeat`
k > 1 each planned action is held for k agent steps (macro-actions): the search is over A^H sequences but looks
H x k steps ahead, the value summing every imagined agent step. The planner returns the best sequence of agent
actions; the agent executes its first `replan_every` of them, then plans again (receding horizon).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from phase5_integration.config import PlannerConfig
from phase5_integration.protocol import History, WorldModel


def sequence_value(reward: torch.Tensor, end: torch.Tensor, gamma: float, life_penalty: float) -> torch.Tensor:
    """(N, H) imagined rewards and life-loss probabilities -> (N,) expected discounted value (module docstring)."""
    N, H = reward.shape
    survive = torch.cumprod(torch.cat([torch.ones(N, 1), 1 - end[:, :-1].float()], dim=1), dim=1)  # S_t
    discount = gamma ** torch.arange(H, dtype=torch.float32)
    return (discount * survive * (reward.float() - life_penalty * end.float())).sum(1)


@dataclass
class Plan:
    actions: list[int]  # the best sequence found, in agent steps (length H x action_repeat)
    value: float  # its (mean) imagined value
    evaluated: int  # candidate futures imagined (candidates x repeats x iterations)
    seconds: float  # wall-clock of the whole decision
    imagined_frames: torch.Tensor | None = field(default=None, repr=False)  # (H, 3, h, w) of the best, if kept


class Planner:
    def __init__(self, model: WorldModel, cfg: PlannerConfig, seed: int = 0):
        cfg.check()
        if model.num_actions < 1:
            raise ValueError(f"the planner searches discrete actions; {model.name} takes continuous ones "
                             "(num_actions = 0): propose and choose chunks instead (phase5_integration.choose)")
        self.model, self.cfg = model, cfg
        self.A, self.H, self.k = model.num_actions, cfg.horizon, cfg.action_repeat
        if cfg.method == "enumerate" and self.A ** self.H > cfg.max_enumerate:
            raise ValueError(f"planner.method=enumerate with {self.A} actions and horizon {self.H} is "
                             f"{self.A ** self.H} sequences, over planner.max_enumerate={cfg.max_enumerate}: use "
                             f"method=cem or shooting, or a shorter horizon")
        self.all_sequences = (np.array(list(itertools.product(range(self.A), repeat=self.H)), dtype=np.int64)
                              if cfg.method == "enumerate" else None)  # built once, not per decision
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.reset()

    def reset(self) -> None:
        """Forget the previous plan (a new episode)."""
        self.prev: list[int] | None = None
        self.probs = np.full((self.H, self.A), 1.0 / self.A)

    def shift(self, executed: int) -> None:
        """The agent executed the first `executed` agent steps of the last plan: move the warm start along (by whole
        planned actions: executed // action_repeat)."""
        if not self.cfg.warm_start or self.prev is None:
            self.prev = None
            self.probs = np.full((self.H, self.A), 1.0 / self.A)
            return
        k = min(executed // self.k, self.H)
        self.prev = self.prev[k:] + [int(a) for a in self.rng.integers(self.A, size=k)]
        uniform = np.full((k, self.A), 1.0 / self.A)
        self.probs = np.concatenate([self.probs[k:], uniform], 0)

    def _evaluate(self, history: History, cands: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean value over `repeats` independent imaginations (separate calls: an adapter may imagine identical rows
        of one call once), and the first imagination's frames."""
        acts = torch.as_tensor(cands, dtype=torch.int64).repeat_interleave(self.k, dim=1)  # (N, H k) agent steps
        values, frames = [], None
        for _ in range(self.cfg.repeats):
            im = self.model.imagine(history, acts, self.generator)
            if im.reward is None or im.end is None:
                raise ValueError(f"{self.model.name} imagines no reward or life loss (it has no reward/end head): "
                                 "the planner cannot value its sequences")
            values.append(sequence_value(im.reward, im.end, self.cfg.gamma, self.cfg.life_penalty))
            frames = im.frames if frames is None else frames
        return torch.stack(values).mean(0), frames

    def _sample(self, n: int) -> np.ndarray:
        """n sequences from the per-step categoricals self.probs (H, A)."""
        cum = self.probs.cumsum(1)
        u = self.rng.random((n, self.H, 1))
        return np.minimum((u > cum[None]).sum(2), self.A - 1)

    def plan(self, history: History) -> Plan:
        t0 = time.perf_counter()
        c = self.cfg
        if c.method == "enumerate":
            cands = self.all_sequences
            values, frames = self._evaluate(history, cands)
            evaluated = len(cands) * c.repeats
        else:
            iters = c.iterations if c.method == "cem" else 1
            best_seq, best_val, best_frames, evaluated = None, -np.inf, None, 0
            for _ in range(iters):
                if c.method == "shooting":
                    cands = self.rng.integers(self.A, size=(c.candidates, self.H))
                else:
                    cands = self._sample(c.candidates)
                if self.prev is not None:  # the warm start competes with the fresh samples
                    cands[0] = self.prev
                values, frames = self._evaluate(history, cands)
                evaluated += len(cands) * c.repeats
                i = int(values.argmax())
                if float(values[i]) > best_val:
                    best_seq, best_val = cands[i].copy(), float(values[i])
                    best_frames = frames[i] if frames is not None else None
                if c.method == "cem":
                    elite = cands[values.argsort(descending=True)[:c.elites].numpy()]
                    freq = np.stack([np.bincount(elite[:, t], minlength=self.A) for t in range(self.H)], 0) / len(elite)
                    self.probs = c.smoothing * self.probs + (1 - c.smoothing) * freq
                    self.probs = np.maximum(self.probs, c.min_prob)
                    self.probs /= self.probs.sum(1, keepdims=True)
            plan = Plan(self._expand(best_seq), best_val, evaluated, time.perf_counter() - t0, best_frames)
            self.prev = [int(a) for a in best_seq]
            return plan
        i = int(values.argmax())
        # ties (common: most sequences imagine nothing happening) go to the first, i.e. action 0 first; break them
        # at random instead so that a flat value landscape does not mean "always NOOP" (within tie_tolerance: a
        # learned head's near-equal values are ties too)
        best = torch.nonzero(values >= values[i] - c.tie_tolerance).flatten().numpy()
        i = int(self.rng.choice(best))
        plan = Plan(self._expand(cands[i]), float(values[i]), evaluated, time.perf_counter() - t0,
                    frames[i] if frames is not None else None)
        self.prev = [int(a) for a in cands[i]]
        return plan

    def _expand(self, seq) -> list[int]:
        return [int(a) for a in seq for _ in range(self.k)]
