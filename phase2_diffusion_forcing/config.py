"""Phase 2 config schemas. Values live in configs/phase2/*.yaml; this file says what they mean.

`DFConfig` is the sequence denoiser (phase 1's world model plus per-frame noise levels of its context),
trained by `Phase2Config` with `objective=diffusion_forcing` (an independent noise level per frame) or
`objective=full_sequence` (one level shared by the window: the baseline). `SamplerConfig` picks the
scheduling matrix; `CompareConfig` runs the experiments of the phase README.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from common.config import choice, require, require_together
from common.logger import LogConfig
from common.runs import RunConfig, TrainRunConfig
from common.trainer import TrainConfig
from phase1_world_model.config import DataFolderConfig, DataSourceConfig, DenoiserConfig

OBJECTIVES = ("diffusion_forcing", "full_sequence", "teacher_forced")
NOISE_DISTS = ("schedule_uniform", "lognormal")
SCHEDULES = ("autoregressive", "pyramid", "full_sequence", "file")


def _frame_model() -> DenoiserConfig:
    # Phase 1's cpu-profile denoiser (phase 2 is about frames: no reward/end head, its own sampler).
    from common.nn.unet import UNetConfig
    return DenoiserConfig(unet=UNetConfig(channels=[32, 32, 32, 32], num_res_blocks=2, attn_levels=[3],
                                          emb_dim=256, num_groups=8, attn_head_dim=32))


@dataclass
class DFConfig:
    """Sequence denoiser: frame t is denoised from its own noisy version and the K frames before it, each at
    its own noise level (stacked as channels as in phase 1; frame t never sees a later frame)."""

    frame: DenoiserConfig = field(default_factory=_frame_model)  # the per-frame denoiser (phase 1's WorldModel)
    window: int = 8  # L: frames with a loss per training window (the K frames before it are context only)
    level_dim: int = 32  # Fourier features per context frame's noise level (K of them, projected to emb_dim)
    # Per-frame training noise levels: schedule_uniform (u ~ U(0,1) through the Karras schedule over
    # [frame.sigma_min_train, frame.sigma_max_train], as DF draws uniformly over its discrete levels, so near-clean
    # context is common) | lognormal (phase 1's training distribution, clipped to the same range)
    noise_dist: str = "schedule_uniform"
    # diffusion_forcing (an independent level per frame) | full_sequence (one level shared by the window's L frames,
    # its K context frames clean: the baseline) | teacher_forced (each window frame at its own level, denoised from
    # clean real context: phase 1's objective on the same windows, batch and steps - DF's equal-budget control)
    objective: str = "diffusion_forcing"
    # Highest training level (sigma); 0 = frame.sigma_max_train. Sampling starts at frame.edm.sigma_max (5): levels
    # above it are trained but never sampled (with sigma_max_train 20 and schedule_uniform, ~25% of draws).
    level_max: float = 0.0
    # Fraction of training windows whose K context frames (before the window) are clean, as at h=1 of a rollout from
    # real frames: diffusion_forcing otherwise almost never trains that case (all K levels near 0).
    clean_context: float = 0.0

    def check(self) -> None:
        require(self.level_max >= 0, "level_max", self.level_max, "must be >= 0 (0 = frame.sigma_max_train)")
        require_together(self.level_max == 0 or self.frame.sigma_min_train < self.level_max,
                         {"level_max": self.level_max, "frame.sigma_min_train": self.frame.sigma_min_train},
                         "level_max must exceed frame.sigma_min_train (or be 0)")
        require(0 <= self.clean_context <= 1, "clean_context", self.clean_context, "must be in [0, 1]")
        require(self.window >= 1, "window", self.window, "must be >= 1")
        require(self.level_dim >= 2 and self.level_dim % 2 == 0, "level_dim", self.level_dim, "an even number >= 2")
        choice("noise_dist", self.noise_dist, NOISE_DISTS)
        choice("objective", self.objective, OBJECTIVES)


@dataclass
class Phase2Config:
    """`python -m phase2_diffusion_forcing.train`: a DF (or full-sequence) world model on phase 1's data."""

    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=4, lr=1e-4, warmup_steps=100,
                                                                   ema_decay=0.999, weight_decay=1e-2))
    log: LogConfig = field(default_factory=LogConfig)
    data: DataSourceConfig = field(default_factory=DataSourceConfig)  # phase 1's collected data set
    model: DFConfig = field(default_factory=DFConfig)
    # Warm start the per-frame denoiser from a phase 1 diffusion run ("latest" = the newest under
    # <run.root>/phase1/, else phase 1's release; "release"; a run folder; "" = from scratch). Its architecture
    # must match model.frame; the context-level embedding starts at zero, so the initial model is exactly the
    # phase 1 model on clean context.
    init_from: str = ""
    monitor_every: int = 0  # steps between short held-out rollouts during training; 0 = only at the end
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full

    def check(self) -> None:
        require(self.monitor_every >= 0, "monitor_every", self.monitor_every, "must be >= 0")


@dataclass
class SamplerConfig:
    """How a chunk of frames is generated: a scheduling matrix of noise levels (row = denoising step,
    column = frame), Euler steps of the probability-flow ODE between consecutive rows."""

    schedule: str = "autoregressive"  # autoregressive | pyramid | full_sequence | file
    steps: int = 3  # S: noise levels per frame (the Karras schedule from sigma_max to 0)
    uncertainty: int = 1  # pyramid: frame m starts `uncertainty` rows after frame m-1 (1 = diagonal; >= S = AR)
    matrix_file: str = ""  # schedule=file: .npy/.json/.txt integer matrix (rows x chunk frames) of levels in [0, S],
    #   S = full noise, 0 = clean; each column non-increasing; first row all S, last row all 0
    stabilization: float = 0.0  # sigma at which generated frames are fed back as context (0 = clean, DF: small > 0)
    chunk: int = 0  # frames generated per window before it slides; 0 = the model's training window L

    def check(self) -> None:
        choice("schedule", self.schedule, SCHEDULES)
        require(self.steps >= 1, "steps", self.steps, "must be >= 1")
        require(self.uncertainty >= 0, "uncertainty", self.uncertainty, "must be >= 0 (0 = full sequence)")
        require(self.stabilization >= 0, "stabilization", self.stabilization, "must be >= 0")
        require(self.chunk >= 0, "chunk", self.chunk, "must be >= 0 (0 = the training window)")
        require_together(self.schedule != "file" or bool(self.matrix_file),
                         {"matrix_file": self.matrix_file, "schedule": self.schedule},
                         "schedule=file needs matrix_file=<path>")


@dataclass
class CompareConfig:
    """`python -m phase2_diffusion_forcing.compare`: every method from the same real context under the same actions."""

    RENAMED: ClassVar[dict] = {"df": ("load", None), "steps": ("denoise_steps", None)}

    run: RunConfig = field(default_factory=RunConfig)  # run.root: where the runs and data are; run.seed: sampling noise
    data: DataFolderConfig = field(default_factory=DataFolderConfig)  # held-out episodes of data.folder
    # the Diffusion Forcing model (objective=diffusion_forcing): a run folder, latest (local, else the release),
    # release or release:<name>
    load: str = "latest"
    full_sequence: str = "latest"  # run folder of an objective=full_sequence model, latest, release, or none
    teacher_forced: str = "latest"  # phase 1 diffusion run (the autoregressive baseline), latest, release, or none
    # DF's equal-budget control: a run of model.objective=teacher_forced (phase 1's objective trained on for DF's steps,
    # batch and windows from the same warm start), latest, release, a run folder, or none
    control: str = "none"
    multiples: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # horizons as multiples of the training window
    starts_per_episode: int = 4  # rollout start points per held-out episode
    max_episodes: int = 0  # held-out episodes used; 0 = the whole test split
    batch: int = 64  # rollouts generated in parallel
    denoise_steps: int = 3  # denoising levels per frame for every method
    stabilization: float = 0.05  # the "with stabilization" level (sigma) of the DF methods
    pyramid_uncertainty: int = 1  # uncertainty u of df_pyramid(_stab) in the main table (1 = diagonal pyramid)
    # feedback levels sigma_stab of the ablation of df_ar (autoregressive), at ablation_multiple x window
    ablate_stabilization: list[float] = field(default_factory=lambda: [0.0, 0.02, 0.05, 0.1, 0.2, 0.5])
    # pyramid uncertainties u of the ablation of df_pyramid_stab (sigma_stab = stabilization), same horizon
    ablate_uncertainty: list[int] = field(default_factory=lambda: [1, 2, 3])
    ablation_multiple: int = 4  # horizon (x window) of the ablations
    videos: int = 3  # long rollouts written as side-by-side videos (to the DF run's media/); 0 = none
    # folder of results.json/.md and the plots; "" = <df run>/compare/ (for a release:
    # <run.root>/phase2/release-<name>/compare/)
    out: str = ""
    publish: bool = False  # copy the plots to phase2_diffusion_forcing/figures/ and rewrite the README's results block
    # results.json of an earlier comparison: write its tables again (and publish them with publish=true) without
    # generating anything; "" = compare
    tables_from: str = ""
    # results.json files of comparisons of several DF runs against the same control on the same rollouts (one per DF
    # variant): one summary table of every variant's df_ar next to the baselines, published in its own block; [] = off
    variants: list[str] = field(default_factory=list)

    def check(self) -> None:
        require(len(self.multiples) >= 1 and all(m >= 1 for m in self.multiples), "multiples", self.multiples,
                "positive multiples of the window")
        require(self.starts_per_episode >= 1, "starts_per_episode", self.starts_per_episode, "must be >= 1")
        require(self.batch >= 1, "batch", self.batch, "must be >= 1")
        require(self.denoise_steps >= 1, "denoise_steps", self.denoise_steps, "must be >= 1")
        require(all(s >= 0 for s in self.ablate_stabilization), "ablate_stabilization", self.ablate_stabilization,
                "levels >= 0")
        require(all(u >= 0 for u in self.ablate_uncertainty), "ablate_uncertainty", self.ablate_uncertainty,
                "scales >= 0")
        require(self.ablation_multiple >= 1, "ablation_multiple", self.ablation_multiple, "must be >= 1")
        require_together(self.ablation_multiple <= max(self.multiples),
                         {"ablation_multiple": self.ablation_multiple, "multiples": self.multiples},
                         "the ablations run inside the rollouts: ablation_multiple must be <= max(multiples)")
        require(self.videos >= 0, "videos", self.videos, "must be >= 0")
