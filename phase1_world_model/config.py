"""Phase 1 config schemas. Values live in configs/phase1/*.yaml; this file says what they mean.

Only the data side exists so far: the Atari protocol (`AtariEnvConfig`, read by `envs.make_atari`), the
collection command (`CollectConfig`) and the batch viewer (`ShowBatchConfig`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.config import choice, require

POLICIES = ("random", "sticky_random")
SPLITS = ("train", "test")


@dataclass
class AtariEnvConfig:
    """How the emulator is turned into an agent-facing env. Defaults are DIAMOND's protocol (envs.py says why)."""

    frame_skip: int = 4  # emulator frames per agent step, all with the same action (action repeat)
    max_pool: bool = True  # observation = pixel-wise max of the last two emulator frames of a step (flicker)
    noop_max: int = 30  # reset plays 1..noop_max NOOP frames (count seeded by the reset seed); 0 = none
    size: int = 64  # observation side in pixels: the 210x160 RGB screen area-resized to size x size
    repeat_action_probability: float = 0.0  # ALE "sticky actions"; 0 = off as in NoFrameskip-v4 (v5 uses 0.25)
    full_action_space: bool = False  # False = the game's minimal action set (4 actions in Breakout, 6 in Pong)
    max_frames: int = 108_000  # emulator frames before the episode is truncated (30 min of play); 0 = no cap

    def check(self) -> None:
        require(self.frame_skip >= 1, "frame_skip", self.frame_skip, "must be >= 1")
        require(self.noop_max >= 0, "noop_max", self.noop_max, "must be >= 0 (0 = no random no-ops)")
        require(8 <= self.size <= 210, "size", self.size, "must be in [8, 210] pixels")
        require(0.0 <= self.repeat_action_probability < 1.0, "repeat_action_probability",
                self.repeat_action_probability, "must be in [0, 1)")
        require(self.max_frames >= 0, "max_frames", self.max_frames, "must be >= 0 (0 = no cap)")


@dataclass
class CollectConfig:
    """`python -m phase1_world_model.collect`: play a game with a random policy and store every episode."""

    game: str = "Breakout"  # any ALE game by name (Breakout, Pong, MsPacman, ...); case and '_' are ignored
    episodes: int = 100  # episodes 0..episodes-1 must exist when the command ends (finished ones are kept)
    policy: str = "sticky_random"  # random (uniform each step) | sticky_random (repeat the last action w.p. repeat_prob)
    # sticky_random only. Policy-level persistence, unrelated to ALE's sticky actions (which stay off): 0.75
    # holds an action for ~5 agent steps on average (policies.py), so the paddle makes long moves.
    repeat_prob: float = 0.75
    seed: int = 0  # episode i is seeded from (seed, i): its no-ops, emulator and policy are reproducible
    max_steps: int = 0  # cap on agent steps per episode (the last step is marked truncated); 0 = env's cap only
    test_fraction: float = 0.1  # share of episodes in the test split, spread evenly (0.1 = episodes 9, 19, ...)
    root: str = "outputs"  # outputs root, relative to the repo root unless absolute
    out: str = ""  # dataset folder; "" = <root>/phase1/datasets/<Game>/ (where the dataset looks by default)
    env: AtariEnvConfig = field(default_factory=AtariEnvConfig)
    verify: bool = False  # only check every episode file of the folder and report corrupt ones (also `--verify`)
    repair: bool = False  # delete corrupt episode files and collect them again (same seeds, same content)
    progress_every: int = 10  # print a progress line every N collected episodes; 0 = only the summary
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu

    def check(self) -> None:
        require(self.episodes >= 1, "episodes", self.episodes, "must be >= 1")
        choice("policy", self.policy, POLICIES)
        require(0.0 <= self.repeat_prob < 1.0, "repeat_prob", self.repeat_prob, "must be in [0, 1)")
        require(self.max_steps >= 0, "max_steps", self.max_steps, "must be >= 0 (0 = no cap)")
        require(0.0 <= self.test_fraction < 1.0, "test_fraction", self.test_fraction, "must be in [0, 1)")
        require(self.seed >= 0, "seed", self.seed, "must be >= 0")
        require(self.progress_every >= 0, "progress_every", self.progress_every, "must be >= 0")


@dataclass
class ShowBatchConfig:
    """`python -m phase1_world_model.show_batch`: draw dataset samples with their actions to a PNG."""

    game: str = "Breakout"  # which collected dataset (outputs/phase1/datasets/<Game>/)
    root: str = "outputs"  # outputs root
    data: str = ""  # dataset folder; "" = <root>/phase1/datasets/<Game>/
    split: str = "train"  # train | test
    context: int = 4  # K past frames per sample
    num: int = 8  # samples drawn (one row each)
    seed: int = 0  # which samples are drawn
    scale: int = 3  # each 64x64 frame is enlarged this many times so the action names are readable
    out: str = ""  # PNG path; "" = <data>/media/batch_<split>.png

    def check(self) -> None:
        choice("split", self.split, SPLITS)
        require(self.context >= 1, "context", self.context, "must be >= 1")
        require(self.num >= 1, "num", self.num, "must be >= 1")
        require(1 <= self.scale <= 8, "scale", self.scale, "must be in [1, 8]")
