"""A scripted pick-and-place expert for LIBERO-Object, driven by the simulator's object poses.

    from phase3_vla.config import ExpertConfig, LiberoConfig
    from phase3_vla.expert import PickPlaceExpert, run_episode
    from phase3_vla.libero_env import make_env

    env = make_env(LiberoConfig(), task_id=0, cameras=False)       # no rendering: ~2 s per episode on CPU
    result = run_episode(env, PickPlaceExpert(ExpertConfig()), init_state=0, max_steps=280)
    result.success, result.steps, result.phases                     # True, ~150, phase of every step

Every LIBERO-Object task is "pick up the <item> and place it in the basket", and LIBERO names the two
objects of interest (`env.env.obj_of_interest` = [item, basket]); the raw observation carries every
object's position (`<name>_pos`), the end effector's (`robot0_eef_pos`) and the gripper's joints. The
expert is a small state machine over waypoints computed from those positions at every step:

    approach   above the item at `hover`, gripper open          (fast, item xy tracked)
    descend    to the item's grasp point                         (slow, so the item is not pushed away)
    grasp      hold still, gripper closing, `close_steps`
    lift       straight up to `lift_z`                           (slow for the first centimetres)
    transfer   above the basket at `lift_z`
    lower      to `release_above` over the basket
    release    gripper open, `open_steps`, then back up          (the task's own check decides success)

Actions are lerobot/LIBERO's 7-d deltas in [-1, 1] (position x y z, rotation, gripper -1 open / +1 closed);
the position part is proportional control towards the waypoint, capped at `speed` (or `fine_speed`),
and rotation stays 0 (the gripper keeps its start orientation). `jitter` moves the waypoints by a few
millimetres per episode (seeded), so that repeated initial states give different demonstrations.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from phase3_vla.config import ExpertConfig

PHASES = ("approach", "descend", "grasp", "lift", "transfer", "lower", "release", "retreat")
OPEN, CLOSED = -1.0, 1.0
DELTA_SCALE = 0.05  # metres of controller goal offset per unit of position action (robosuite OSC_POSE)
ROT_SCALE = 0.5  # radians of goal rotation per unit of rotation action
# Panda hand, measured from its collision geoms in LIBERO's robosuite model (relative to robot0_eef_pos):
PAD_GAP = 0.076  # inner distance between the open finger pads
HAND_HALF_LENGTH = 0.105  # the palm reaches this far along the closing direction
HAND_HALF_WIDTH = 0.035  # ... and this far across it
HAND_BOTTOM = 0.024  # the palm's underside is this far above the end-effector point


def _wrap_half_turn(a: float) -> float:
    """Angle difference modulo 180 degrees, in [-pi/2, pi/2): the gripper is symmetric under a half turn."""
    return (a + np.pi / 2) % np.pi - np.pi / 2


def _yaw_of(quat_xyzw: np.ndarray) -> float:
    x, y, z, w = quat_xyzw
    return float(np.arctan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z)))


def _overlaps(center: np.ndarray, angle: float, half: tuple[float, float], lo: np.ndarray, hi: np.ndarray) -> bool:
    """Does the rectangle (center, direction `angle`, half sizes) overlap the axis-aligned box [lo, hi] in xy?
    Separating-axis test over the two rectangles' four edge directions."""
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-u[1], u[0]])
    box_c, box_h = (lo[:2] + hi[:2]) / 2, (hi[:2] - lo[:2]) / 2
    d = box_c - center
    for axis in (u, v, np.array([1.0, 0.0]), np.array([0.0, 1.0])):
        r_rect = half[0] * abs(axis @ u) + half[1] * abs(axis @ v)
        r_box = box_h[0] * abs(axis[0]) + box_h[1] * abs(axis[1])
        if abs(d @ axis) > r_rect + r_box:
            return False
    return True


def attempt_rng(seed: int, task_id: int, attempt: int) -> np.random.Generator:
    """The expert's randomization for one attempt, a function of (seed, task, attempt) only, so an episode
    does not depend on which worker played it or on what that worker played before."""
    return np.random.default_rng(np.random.SeedSequence([seed, task_id, attempt]))


class PickPlaceExpert:
    """Call `reset(raw_obs, item, basket, geometry, finger_angle)` after each env reset, then `act(raw_obs)`.

    `geometry` is `env.object_geometry()` (every object's extent) and `finger_angle` the fingers' closing
    direction, both read from the simulator once per episode; the positions are read at every step."""

    def __init__(self, cfg: ExpertConfig, rng: np.random.Generator | None = None):
        self.cfg = cfg
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.phase, self.phase_steps = "approach", 0

    def reset(self, raw: dict, item: str, basket: str, geometry: dict, finger_angle: float) -> None:
        c, j = self.cfg, self.cfg.jitter
        self.item, self.basket = item, basket
        self.phase, self.phase_steps, self.hold, self.last_z = "approach", 0, None, []
        g, pos = geometry[item], raw[f"{item}_pos"]
        # Grasp point relative to the item's reported position (its body origin, which is not always the
        # middle of the item): the middle of its extent, or just below the top for tall items so that
        # the palm stays above them; jittered by a few millimetres per episode.
        middle = (g["lo"] + g["hi"]) / 2
        grasp_z = max(middle[2], g["hi"][2] - c.below_top)
        self.grasp_offset = np.array([middle[0], middle[1], grasp_z]) - pos
        self.grasp_offset[:2] += self.rng.uniform(-j, j, 2)
        self.approach_dz = g["hi"][2] + c.hover - grasp_z  # approach height above the grasp point
        hang = grasp_z - g["lo"][2]  # how far the item reaches below the end effector once held
        b = geometry[basket]
        self.release_offset = (np.array([*((b["lo"][:2] + b["hi"][:2]) / 2 - raw[f"{basket}_pos"][:2]), 0.0])
                               + [*self.rng.uniform(-2 * j, 2 * j, 2), 0.0])
        self.release_z = max(b["lo"][2] + c.release_above, b["lo"][2] + 0.01 + hang) + self.rng.uniform(-j, j)
        self.lift_z = max(c.lift_z, b["hi"][2] + hang + 0.03) + self.rng.uniform(-2 * j, 2 * j)
        # Yaw of the closing direction and a shift of the grasp point along the item's long side: the
        # smallest change that fits the item between the pads and keeps the palm clear of every neighbour
        # taller than the palm's underside at the grasp height (else the fewest such neighbours).
        obstacles = [(o["lo"], o["hi"]) for name, o in geometry.items()
                     if name != item and o["hi"][2] > grasp_z + HAND_BOTTOM]
        short_angle = float(np.arctan2(g["short_axis"][1], g["short_axis"][0]))
        long_axis = np.array([-g["short_axis"][1], g["short_axis"][0]])
        max_shift = max(0.0, g["long"] / 2 - c.edge_margin)
        shifts = [s for s in np.arange(-c.max_shift, c.max_shift + 1e-9, 0.005) if abs(s) <= max_shift]
        half = (HAND_HALF_LENGTH + c.hand_margin, HAND_HALF_WIDTH + c.hand_margin)
        best = None
        for turn in np.radians(np.arange(-90, 90, c.yaw_step)):
            angle = finger_angle + turn
            rel = _wrap_half_turn(angle - short_angle)
            span = g["short"] * abs(np.cos(rel)) + g["long"] * abs(np.sin(rel))
            for shift in shifts:
                center = pos[:2] + self.grasp_offset[:2] + shift * long_axis
                hits = sum(_overlaps(center, angle, half, lo, hi) for lo, hi in obstacles)
                key = (span > PAD_GAP - c.pad_margin, hits, abs(turn) + 20 * abs(shift))
                if best is None or key < best[0]:
                    best = (key, turn, shift)
        _, self.turn, self.shift = best
        self.grasp_offset[:2] += self.shift * long_axis
        self.yaw_target = _yaw_of(raw["robot0_eef_quat"]) + self.turn

    def _goto(self, eef: np.ndarray, target: np.ndarray, cap: float) -> np.ndarray:
        return np.clip(self.cfg.gain * (target - eef) / DELTA_SCALE, -cap, cap)

    def _next(self, phase: str) -> None:
        self.phase, self.phase_steps, self.last_z = phase, 0, []

    def _stalled(self, z: float) -> bool:
        """No vertical progress for 5 steps: the fingers or the item rest on something."""
        self.last_z.append(z)
        return len(self.last_z) > 5 and abs(self.last_z[-6] - z) < 0.002

    def act(self, raw: dict) -> np.ndarray:
        c = self.cfg
        eef = raw["robot0_eef_pos"]
        grasp = raw[f"{self.item}_pos"] + self.grasp_offset
        basket = raw[f"{self.basket}_pos"] + self.release_offset
        yaw_err = _wrap_half_turn(self.yaw_target - _yaw_of(raw["robot0_eef_quat"]))
        self.phase_steps += 1
        grip, cap = OPEN, c.speed
        if self.phase == "approach":
            target = grasp + [0, 0, self.approach_dz]
            if (np.linalg.norm((target - eef)[:2]) < c.tolerance and abs(target[2] - eef[2]) < 2 * c.tolerance
                    and abs(yaw_err) < np.radians(5)):
                self._next("descend")
        if self.phase == "descend":
            target, cap = grasp, c.fine_speed
            if np.linalg.norm(target - eef) < c.tolerance or self._stalled(eef[2]) or self.phase_steps > 40:
                self._next("grasp")
                self.hold = eef.copy()
        if self.phase == "grasp":
            target, grip = self.hold, CLOSED
            if self.phase_steps >= c.close_steps:
                self._next("lift")
        if self.phase == "lift":
            target, grip = np.array([self.hold[0], self.hold[1], self.lift_z]), CLOSED
            cap = c.fine_speed if eef[2] < self.hold[2] + 0.03 else c.speed
            if eef[2] > self.lift_z - 2 * c.tolerance:
                self._next("transfer")
        if self.phase == "transfer":
            target, grip = np.array([basket[0], basket[1], self.lift_z]), CLOSED
            if np.linalg.norm((target - eef)[:2]) < 1.5 * c.tolerance:
                self._next("lower")
        if self.phase == "lower":
            target, grip = np.array([basket[0], basket[1], self.release_z]), CLOSED
            if np.linalg.norm(target - eef) < 1.5 * c.tolerance or self._stalled(eef[2]) or self.phase_steps > 30:
                self._next("release")
                self.hold = eef.copy()
        if self.phase == "release":
            target, grip = self.hold, OPEN
            if self.phase_steps >= c.open_steps:
                self._next("retreat")
        if self.phase == "retreat":
            target, grip = self.hold + [0, 0, 0.1], OPEN
        action = np.zeros(7)
        action[:3] = self._goto(eef, target, cap)
        action[5] = np.clip(c.rot_gain * yaw_err / ROT_SCALE, -1, 1)
        action[6] = grip
        return action


@dataclass
class EpisodeResult:
    success: bool
    steps: int  # control steps taken (frames stored = steps: the observation before each action)
    seconds: float
    phases: list[str] = field(default_factory=list)  # the expert's phase at each step
    frames: list[dict] = field(default_factory=list)  # per step: images + state (only when recording)
    actions: list[np.ndarray] = field(default_factory=list)
    final_phase: str = ""
    start: object = None  # phase3_vla.starts.StartRecord: where the episode started

    @property
    def failure(self) -> str:
        return "" if self.success else f"no success within {self.steps} steps (expert phase: {self.final_phase})"


def run_episode(env, expert: PickPlaceExpert, init_state: int | None, max_steps: int, record: bool = False,
                placement_seed: int | None = None) -> EpisodeResult:
    """Reset `env` to fixed initial state `init_state`, or to the placement its sampler draws from
    `placement_seed` (+ lerobot's settle steps), and let the expert act until the task's success check fires
    or `max_steps` steps have passed. `result.start` records where the episode started.

    With `record`, frame t holds the observation the expert acted on at step t (images flipped upright,
    8-d state) and actions[t] the action taken: the (observation, action) pairs a policy learns from.
    """
    from phase3_vla.libero_env import frame_of

    t0 = time.perf_counter()
    from phase3_vla.starts import StartRecord

    obs, _ = env.reset(init_state=init_state, placement_seed=placement_seed)
    fixed = placement_seed is None
    start = StartRecord(env.task_id, "fixed" if fixed else "sampled", init_state if fixed else placement_seed,
                        env.start_state.tolist(), poses=env.start_poses)
    item, basket = env.target_and_basket
    expert.reset(env.raw_obs, item, basket, env.object_geometry(), env.finger_angle())
    result = EpisodeResult(success=False, steps=0, seconds=0.0, start=start)
    for _ in range(max_steps):
        action = expert.act(env.raw_obs)
        if record:
            result.frames.append(frame_of(obs))
            result.actions.append(action.astype(np.float32))
        result.phases.append(expert.phase)
        obs, _, terminated, _, info = env.step(action)
        result.steps += 1
        if info["is_success"]:
            result.success = True
            break
    result.final_phase = expert.phase
    result.seconds = time.perf_counter() - t0
    return result
