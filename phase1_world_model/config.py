"""Phase 1 config schemas. Values live in configs/phase1/*.yaml; this file says what they mean.

Data: the Atari protocol (`AtariEnvConfig`, read by `envs.make_atari`), the collection command
(`CollectConfig`) and the batch viewer (`ShowBatchConfig`). Model: `WorldModelConfig` (denoiser or regressor,
plus the reward/end head), trained by `Phase1Config`; rollouts and metrics by `EvaluateConfig`; play by
`PlayConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from common.config import choice, require, require_together
from common.diffusion.edm import OFFSET_FORMS, EDMConfig
from common.logger import LogConfig
from common.nn.unet import UNetConfig
from common.runs import RunConfig, TrainRunConfig
from common.trainer import TrainConfig

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
class DataSourceConfig:
    """Which collected data set a model trains or evaluates on."""

    game: str = "Breakout"  # ALE game of the data set: <run.root>/phase1/datasets/<Game>/ unless `folder` is set
    folder: str = ""  # explicit data set folder; "" = the game's default place

    def check(self) -> None:
        require(bool(self.game), "game", self.game, "name an ALE game (e.g. Breakout)")


@dataclass
class DataFolderConfig:
    """The data set a command that loads a trained model reads (by default the one the model was trained on)."""

    folder: str = ""  # a collected data set folder; "" = the one the model trained on (collected if missing)


@dataclass
class CollectConfig:
    """`python -m phase1_world_model.collect`: play a game with a random policy and store every episode.
    Episode i is seeded from (run.seed, i): its no-ops, emulator and policy are reproducible."""

    RENAMED: ClassVar[dict] = {"game": ("data.game", None), "out": ("data.folder", None)}

    # data.game: any ALE game by name (Breakout, Pong, MsPacman, ...; case and '_' are ignored); data.folder: where
    # the data set goes ("" = <run.root>/phase1/datasets/<Game>/, where training looks by default)
    data: DataSourceConfig = field(default_factory=DataSourceConfig)
    episodes: int = 100  # episodes 0..episodes-1 must exist when the command ends (finished ones are kept)
    run: RunConfig = field(default_factory=RunConfig)  # run.root: where the data set goes; run.seed: the episodes' seed
    policy: str = "sticky_random"  # random (uniform each step) | sticky_random (repeat the last action w.p. repeat_prob)
    # sticky_random only. Policy-level persistence, unrelated to ALE's sticky actions (which stay off): 0.75
    # holds an action for ~5 agent steps on average (policies.py), so the paddle makes long moves.
    repeat_prob: float = 0.75
    max_steps: int = 0  # cap on agent steps per episode (the last step is marked truncated); 0 = env's cap only
    test_fraction: float = 0.1  # share of episodes in the test split, spread evenly (0.1 = episodes 9, 19, ...)
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
        require(self.run.seed >= 0, "run.seed", self.run.seed, "must be >= 0")
        require(self.progress_every >= 0, "progress_every", self.progress_every, "must be >= 0")


@dataclass
class ShowBatchConfig:
    """`python -m phase1_world_model.show_batch`: draw dataset samples with their actions to a PNG."""

    RENAMED: ClassVar[dict] = {"game": ("data.game", None), "data": ("data.folder", None)}

    run: RunConfig = field(default_factory=RunConfig)  # run.root: where the data set is; run.seed: which samples
    data: DataSourceConfig = field(default_factory=DataSourceConfig)  # the data set: data.game, or data.folder
    split: str = "train"  # train | test
    context: int = 4  # K past frames per sample
    num: int = 8  # samples drawn (one row each)
    scale: int = 3  # each 64x64 frame is enlarged this many times so the action names are readable
    out: str = ""  # PNG path; "" = <data>/media/batch_<split>.png

    def check(self) -> None:
        choice("split", self.split, SPLITS)
        require(self.context >= 1, "context", self.context, "must be >= 1")
        require(self.num >= 1, "num", self.num, "must be >= 1")
        require(1 <= self.scale <= 8, "scale", self.scale, "must be in [1, 8]")


KINDS = ("diffusion", "regressor")
SOLVERS = ("euler", "heun")


def _diamond_edm() -> EDMConfig:
    # DIAMOND's EDM settings: training ln(sigma) ~ N(-0.4, 1.2^2); sampling Karras schedule 2e-3 .. 5, rho 7.
    return EDMConfig(sigma_data=0.5, p_mean=-0.4, p_std=1.2, sigma_min=2e-3, sigma_max=5.0, rho=7.0)


@dataclass
class RewardEndConfig:
    """The reward/termination head: a small conv net over (context frames, next frame) + action embedding."""

    enabled: bool = True  # train it beside the frame model (needed by WorldModelEnv and play; phase 2 never does)
    channels: list[int] = field(default_factory=lambda: [32, 64, 64, 64])  # stride-2 conv widths, one per stage
    hidden: int = 256  # MLP width before the two classifiers
    weight: float = 1.0  # its share of the training loss (its parameters are disjoint from the denoiser's)
    # Class weights for the cross-entropies, from the training set's class counts: w_c = (N / (C n_c))^power,
    # capped at max_class_weight. Rewards and episode ends are rare under random play (~0.6% and ~2% of
    # Breakout steps), so unweighted training learns "never"; 1 = fully balanced, 0 = unweighted.
    balance_power: float = 0.5
    max_class_weight: float = 30.0  # cap on each class weight w_c (see balance_power); >= 1

    def check(self) -> None:
        require(len(self.channels) >= 1 and all(c > 0 for c in self.channels), "channels", self.channels,
                "a non-empty list of positive widths")
        require(self.hidden >= 1, "hidden", self.hidden, "must be >= 1")
        require(self.weight >= 0, "weight", self.weight, "must be >= 0")
        require(0 <= self.balance_power <= 1, "balance_power", self.balance_power, "must be in [0, 1]")
        require(self.max_class_weight >= 1, "max_class_weight", self.max_class_weight, "must be >= 1")


@dataclass
class DenoiserConfig:
    """The next-frame denoiser D(x_{t+1}; sigma | x_{t-K+1..t}, a_{t-K+1..t}) and how it is trained: what phase 1's
    world model and phase 2's per-frame model share (phase 2's `model.frame`)."""

    context: int = 4  # K past frames (stacked as channels) and K past actions
    action_dim: int = 64  # embedding width per past action; K of them are concatenated (DIAMOND: 4 x 64)
    unet: UNetConfig = field(default_factory=lambda: UNetConfig(
        channels=[64, 64, 64, 64], num_res_blocks=2, attn_levels=[3], emb_dim=256))
    edm: EDMConfig = field(default_factory=_diamond_edm)
    sigma_min_train: float = 2e-3  # training noise levels are clipped to [sigma_min_train, sigma_max_train]
    sigma_max_train: float = 20.0  # upper end of the training noise levels (DIAMOND: 20; see sigma_min_train)
    noise_offset: float = 0.3  # std of the per-channel offset noise in training inputs (DIAMOND's 0.3)
    # how the offset enters: scaled (x0 + sigma * (eps + offset * eps_c), what our runs used) | diamond
    # (x0 + sigma * eps + offset * eps_c, DIAMOND's apply_noise); common/diffusion/edm.py training_noise
    noise_offset_form: str = "scaled"

    def check(self) -> None:
        require(self.context >= 1, "context", self.context, "must be >= 1")
        require(self.action_dim >= 1, "action_dim", self.action_dim, "must be >= 1")
        require(self.sigma_min_train > 0, "sigma_min_train", self.sigma_min_train,
                "must be > 0 (need 0 < sigma_min_train < sigma_max_train)")
        require_together(self.sigma_min_train < self.sigma_max_train,
                         {"sigma_min_train": self.sigma_min_train, "sigma_max_train": self.sigma_max_train},
                         "need 0 < sigma_min_train < sigma_max_train")
        require(self.noise_offset >= 0, "noise_offset", self.noise_offset, "must be >= 0")
        choice("noise_offset_form", self.noise_offset_form, OFFSET_FORMS)


@dataclass
class WorldModelConfig(DenoiserConfig):
    """Phase 1's next-frame model p(x_{t+1} | x_{t-K+1..t}, a_{t-K+1..t}): the denoiser, how it samples, and the
    reward/end head.

    kind=diffusion is DIAMOND's EDM denoiser; kind=regressor is the same UNet trained with MSE to output the
    next frame directly (the deterministic baseline whose blur diffusion is meant to avoid).
    """

    kind: str = "diffusion"  # diffusion | regressor
    reward_end: RewardEndConfig = field(default_factory=RewardEndConfig)

    @classmethod
    def of(cls, denoiser: DenoiserConfig, **extra) -> "WorldModelConfig":
        """A WorldModelConfig holding `denoiser`'s settings (and `extra` keys)."""
        import dataclasses
        return cls(**{f.name: getattr(denoiser, f.name) for f in dataclasses.fields(DenoiserConfig)}, **extra)

    def check(self) -> None:
        super().check()
        choice("kind", self.kind, KINDS)


@dataclass
class FrameSamplerConfig:
    """How the diffusion world model generates a frame by default (training's monitor rollouts, evaluate, play,
    the gym env): `steps` steps of `solver` down the Karras schedule from sigma_max. A sampler setting, not a model
    setting: evaluate and play override it per command (denoise_steps, denoise_steps_sweep)."""

    solver: str = "euler"  # euler | heun (heun costs 2 evaluations per step but the last)
    steps: int = 3  # denoising steps per generated frame (DIAMOND: 3 Euler steps)

    def check(self) -> None:
        choice("solver", self.solver, SOLVERS)
        require(self.steps >= 1, "steps", self.steps, "must be >= 1")


@dataclass
class MonitorConfig:
    """During training: short rollouts on held-out episodes, logged as metrics and a video."""

    every: int = 1000  # training steps between rollouts; 0 = only at the end
    rollouts: int = 8  # held-out start points
    horizon: int = 20  # generated frames per rollout

    def check(self) -> None:
        require(self.every >= 0, "every", self.every, "must be >= 0 (0 = only at the end)")
        require(self.rollouts >= 1, "rollouts", self.rollouts, "must be >= 1")
        require(self.horizon >= 1, "horizon", self.horizon, "must be >= 1")


@dataclass
class Phase1Config:
    """`python -m phase1_world_model.train`: the world model (and its reward/end head) on a collected data set."""

    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=1e-4, warmup_steps=100,
                                                                   ema_decay=0.999, weight_decay=1e-2))
    log: LogConfig = field(default_factory=LogConfig)
    data: DataSourceConfig = field(default_factory=DataSourceConfig)
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    sampler: FrameSamplerConfig = field(default_factory=FrameSamplerConfig)  # the model's default frame sampler
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full
    # model.steps / model.solver were sampler settings kept in the model's section (runs and releases saved so)
    RENAMED: ClassVar[dict] = {"model.steps": ("sampler.steps", None), "model.solver": ("sampler.solver", None)}


@dataclass
class EvaluateConfig:
    """`python -m phase1_world_model.evaluate`: rollouts, metrics against horizon, videos, plots, table."""

    RENAMED: ClassVar[dict] = {"diffusion": ("load", None), "data_folder": ("data.folder", None),
                               "steps": ("denoise_steps_sweep", None), "steps_horizon": ("sweep_horizon", None)}

    run: RunConfig = field(default_factory=RunConfig)  # run.root: where the runs and data are; run.seed: sampling noise
    # the world model (kind=diffusion): a run folder, latest (newest under <run.root>/phase1/, else the release),
    # release or release:<name>
    load: str = "latest"
    regressor: str = "latest"  # the baseline: a kind=regressor run folder, latest, release, or none (skip it)
    data: DataFolderConfig = field(default_factory=DataFolderConfig)  # held-out episodes of data.folder
    horizons: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])  # frames after the context to score
    starts_per_episode: int = 8  # rollout start points per held-out episode (spread evenly over it)
    max_episodes: int = 0  # held-out episodes used; 0 = all of the test split
    batch: int = 64  # rollouts generated in parallel
    denoise_steps_sweep: list[int] = field(default_factory=list)  # denoising-steps sweep, e.g. [1,2,3,5,10]; [] = no sweep
    sweep_solvers: list[str] = field(default_factory=lambda: ["euler"])  # solvers of the sweep: euler, heun
    sweep_horizon: int = 20  # rollout length of the sweep and of the shuffled-actions check
    shuffled_actions: bool = True  # also roll out the diffusion model under another rollout's actions (does it use them?)
    videos: int = 4  # rollouts written as side-by-side videos (0 = none)
    fps: int = 15  # video frame rate (the game runs at 15 agent steps per second)
    out: str = ""  # where results.json/.md and the plots go; "" = <load run>/eval/ (a release: <run.root>/phase1/release-<name>/eval/)
    publish: bool = False  # copy the plots to phase1_world_model/figures/ and rewrite the README's results block
    wandb: str = "off"  # also log the videos to wandb: off | offline | online

    def check(self) -> None:
        require(len(self.horizons) >= 1 and all(h >= 1 for h in self.horizons), "horizons", self.horizons,
                "a non-empty list of positive horizons")
        require(self.starts_per_episode >= 1, "starts_per_episode", self.starts_per_episode, "must be >= 1")
        require(self.batch >= 1, "batch", self.batch, "must be >= 1")
        require(all(s >= 1 for s in self.denoise_steps_sweep), "denoise_steps_sweep", self.denoise_steps_sweep,
                "positive step counts")
        require(all(s in SOLVERS for s in self.sweep_solvers), "sweep_solvers", self.sweep_solvers,
                f"a list of: {', '.join(SOLVERS)}")
        require(self.sweep_horizon >= 1, "sweep_horizon", self.sweep_horizon, "must be >= 1")
        require(self.videos >= 0, "videos", self.videos, "must be >= 0 (0 = none)")
        require(self.fps >= 1, "fps", self.fps, "must be >= 1")
        choice("wandb", self.wandb, ("off", "offline", "online"))


@dataclass
class PlayConfig:
    """`python -m phase1_world_model.play`: act inside the world model (keyboard, or headless)."""

    RENAMED: ClassVar[dict] = {"data_folder": ("data.folder", None), "steps": ("frames", None)}

    run: RunConfig = field(default_factory=RunConfig)  # run.root: where the runs and data are; run.seed: starts and noise
    load: str = "latest"  # world-model run folder (kind=diffusion with its reward/end head), latest (else the release) or release
    data: DataFolderConfig = field(default_factory=DataFolderConfig)  # real frames to start from: data.folder
    split: str = "test"  # which episodes starts are drawn from: train | test
    mode: str = "keyboard"  # keyboard (pygame window) | headless (actions or a policy, writes a video)
    actions: list[str] = field(default_factory=list)  # headless: action names (RIGHT) or indices, played in order
    policy: str = "sticky_random"  # headless without actions: random | sticky_random (repeat_prob 0.75)
    frames: int = 0  # frames to generate; 0 = 200 headless (or len(actions)), until the window closes for keyboard
    batch: int = 1  # headless: parallel worlds (the video shows the first); frames/s counts all of them
    max_episode_steps: int = 1000  # imagined episode length before truncation (then a new start)
    fps: int = 15  # frames per second shown / in the video (the real game runs at 15 agent steps/s)
    scale: int = 6  # window and video size = 64 * scale pixels
    denoise_steps: int = 0  # denoising steps per frame; 0 = the model's own (its sampler.steps)
    out: str = ""  # headless video path stem (.mp4 and .gif); "" = <run>/media/play_<policy or actions>_<seed>

    def check(self) -> None:
        choice("mode", self.mode, ("keyboard", "headless"))
        choice("policy", self.policy, POLICIES)
        choice("split", self.split, SPLITS)
        require(self.frames >= 0, "frames", self.frames, "must be >= 0 (0 = automatic)")
        require(self.batch >= 1, "batch", self.batch, "must be >= 1")
        require(self.denoise_steps >= 0, "denoise_steps", self.denoise_steps, "must be >= 0 (0 = the model's own)")
        require(1 <= self.scale <= 16, "scale", self.scale, "must be in [1, 16]")
        require(self.fps >= 1, "fps", self.fps, "must be >= 1")
        require(self.max_episode_steps >= 1, "max_episode_steps", self.max_episode_steps, "must be >= 1")
