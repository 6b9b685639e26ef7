"""The one interface between planners and world models: imagine the futures of many action sequences at once.

    imagined = model.imagine(history, actions, generator)   # actions: N candidate sequences, batched
    imagined.reward, imagined.end                           # (N, H): expected reward and P(life lost) per step
    imagined.frames                                         # (N, H, 3, 64, 64) uint8 (None if not kept)
    imagined.latents                                        # the future in a tokenizer's latent space (latent models)

Two kinds of action, told apart by `num_actions`:
- discrete (`num_actions` > 0, Breakout): `actions` (N, H) int64, one of `num_actions` per step;
- continuous (`num_actions` == 0, LIBERO): `actions` (N, H, A) float in the environment's units, A = `action_dim`.

`History` is what an agent has seen of the environment: the last K frames and the K - 1 actions played between them
(phase 1's convention: actions[i] was played on frames[i] and produced frames[i + 1]); with several cameras their
images are stacked along the channels (LIBERO: agent view then wrist, (K, 6, S, S)). `task` names the task for a
multi-task model, and `state` holds the emulator state for the oracle adapter, which replays candidates in a copy of
the real game instead of imagining them. Planners depend on this module only; `adapters.py` makes phase 1's
DIAMOND-lite and regressor, phase 2's Diffusion Forcing model, phase 4's UWM and the emulator satisfy it. A model
without a reward/end head (the UWM) leaves `reward` and `end` None: a scorer of its frames or latents values them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class History:
    frames: torch.Tensor  # (K, 3 x cameras, H, W) uint8, oldest first; frames[-1] is the current observation
    actions: torch.Tensor  # (K - 1,) int64 or (K - 1, A) float: actions[i] was played on frames[i]
    state: Any = None  # emulator snapshot (`adapters.EmulatorState`), filled only for agents that ask for it
    task: int | None = None  # the task's index, for a multi-task model (the UWM)

    def __post_init__(self):
        if self.frames.dtype != torch.uint8 or self.frames.dim() != 4 or self.frames.shape[1] % 3:
            raise ValueError(f"History.frames must be (K, 3 x cameras, H, W) uint8, got {tuple(self.frames.shape)} "
                             f"{self.frames.dtype}")
        if self.actions.dim() not in (1, 2) or self.actions.shape[0] != self.frames.shape[0] - 1:
            raise ValueError(f"History.actions must be (K - 1,) or (K - 1, A) with K - 1 = {self.frames.shape[0] - 1}, "
                             f"got {tuple(self.actions.shape)}")


@dataclass
class Imagined:
    reward: torch.Tensor | None  # (N, H) float: the expected (sign-clipped) reward of each step; None: no head
    end: torch.Tensor | None  # (N, H) float in [0, 1]: the probability that the step loses a life (or ends the game)
    frames: torch.Tensor | None = None  # (N, H, 3, h, w) uint8: the imagined observations, when kept
    latents: torch.Tensor | None = None  # (N, ...): the imagined future in a tokenizer's latent space (the UWM)


@runtime_checkable
class WorldModel(Protocol):
    """What a planner needs from a world model. `context` frames of history are read (K), `num_actions` discrete
    actions exist (0: continuous actions of `action_dim` entries); `imagine` must batch over the N candidates and
    be deterministic given `generator`."""

    name: str
    num_actions: int
    context: int
    needs_state: bool  # True only for the emulator oracle: History.state must be filled

    def imagine(self, history: History, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> Imagined: ...


def check_actions(model: WorldModel, actions: torch.Tensor) -> torch.Tensor:
    """The candidates every adapter accepts: (N, H) int64 in [0, num_actions) for a discrete model, (N, H, A) float
    with A = model.action_dim for a continuous one (num_actions == 0)."""
    if model.num_actions == 0:
        A = model.action_dim
        if actions.dim() != 3 or actions.shape[1] < 1 or actions.shape[2] != A:
            raise ValueError(f"candidate actions of {model.name} must be (N, H, {A}) floats, got "
                             f"{tuple(actions.shape)}")
        return actions.float()
    if actions.dim() != 2 or actions.shape[1] < 1:
        raise ValueError(f"candidate actions must be (N, H) with H >= 1, got {tuple(actions.shape)}")
    actions = actions.long()
    if int(actions.min()) < 0 or int(actions.max()) >= model.num_actions:
        raise ValueError(f"candidate actions must lie in [0, {model.num_actions}), got "
                         f"[{int(actions.min())}, {int(actions.max())}]")
    return actions
