"""Phase 4 config schemas. Values live in configs/phase4/*.yaml; this file says what they mean.

`TokenizerConfig` is the frozen video tokenizer (a small diffusers `AutoencoderKL` trained here, or raw pixel
patches), `UWMConfig` the Unified World Model (one diffusion transformer over an action chunk and future-frame
tokens, each with its own noise level), `ClipConfig` how a training sample is cut from phase 3's demonstrations.
`TokenizerTrainConfig` and `Phase4Config` are the two training commands, `InferConfig` the modes command.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.config import choice, require, require_together
from common.diffusion.ddpm import DDPMConfig
from common.logger import LogConfig
from common.runs import RunConfig, TrainRunConfig
from common.trainer import TrainConfig
from phase1_world_model.config import WorldModelConfig
from phase3_vla.config import DemoDataConfig, LiberoConfig

MODES = ("policy", "forward", "inverse", "video", "joint")
VIEWS = ("agentview", "wrist")  # the two cameras of phase 3's data sets, in token order


@dataclass
class TokenizerConfig:
    """Frames -> latents the transformer denoises. The paper encodes 224 px views with SDXL's VAE (4x28x28); hub
    weights are unreachable offline, so `vae` trains a small AutoencoderKL on the demonstrations' frames."""

    kind: str = "vae"  # vae (diffusers AutoencoderKL built from this config, trained here) | pixel (no encoder)
    image_size: int = 64  # frames are resized (area) from the data set's resolution to this side
    # AutoencoderKL block widths; each block after the first halves the side (3 blocks: 64 px -> 16x16 latents)
    block_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1  # ResNet layers per encoder block (the decoder has one more, as in diffusers)
    latent_channels: int = 4  # C of the latent (SDXL: 4)
    norm_groups: int = 16  # GroupNorm groups inside the autoencoder (must divide every block width)
    kl_weight: float = 1e-6  # weight of the KL term against the L1 + L2 reconstruction loss (LDM's regime)

    @property
    def down(self) -> int:
        """Side reduction of the latent grid (pixel: 1)."""
        return 2 ** (len(self.block_channels) - 1) if self.kind == "vae" else 1

    @property
    def channels(self) -> int:
        return self.latent_channels if self.kind == "vae" else 3

    @property
    def latent_side(self) -> int:
        return self.image_size // self.down

    def check(self) -> None:
        choice("kind", self.kind, ("vae", "pixel"))
        require(self.image_size >= 8 and self.image_size % 8 == 0, "image_size", self.image_size,
                "a multiple of 8, >= 8")
        require(len(self.block_channels) >= 1, "block_channels", self.block_channels, "at least one width")
        require(all(c % self.norm_groups == 0 for c in self.block_channels),
                "norm_groups", self.norm_groups, f"must divide every block width {self.block_channels}")
        require(self.image_size % self.down == 0, "image_size", self.image_size,
                f"must be divisible by 2^(len(block_channels)-1) = {self.down}")
        require(self.latent_channels >= 1, "latent_channels", self.latent_channels, "must be >= 1")
        require(self.kl_weight >= 0, "kl_weight", self.kl_weight, "must be >= 0")


def _ddpm() -> DDPMConfig:
    # The authors' noise process: 100 training steps, squared-cosine schedule, epsilon prediction.
    return DDPMConfig(num_timesteps=100, schedule="cosine", prediction="eps")


@dataclass
class UWMConfig:
    """The Unified World Model: tokens [chunk action tokens | future video tokens | registers] through DiT blocks
    conditioned (AdaLN-Zero) on the current frames, the two noise levels and the task."""

    width: int = 256  # transformer width (paper: 768)
    depth: int = 6  # DiT blocks (paper: 12)
    heads: int = 4  # attention heads (paper: 12)
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio x width
    registers: int = 8  # learned register tokens, appended to the sequence and dropped at the output (paper: 8-24)
    patch: int = 4  # side of a latent patch; with 2 future frames a token covers (2, patch, patch) of a view
    action_hidden: int = 512  # hidden width of the per-step action encoder/decoder MLPs (paper: 3072)
    # Observation encoder: a ResNet with GroupNorm, one stage per width (each halves the side), shared by the views
    # and frames; its pooled feature per image is projected to obs_dim, and the views x frames features concatenated.
    obs_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    obs_dim: int = 128  # per image (paper: 768 per image, 2 views x 2 frames concatenated)
    num_tasks: int = 10  # size of the task embedding table (LIBERO-Object has 10 tasks; index = LIBERO task id)
    ddpm: DDPMConfig = field(default_factory=_ddpm)
    sample_steps: int = 10  # DDIM steps at inference (paper: 10)
    # Each DDIM step's clean estimate is clipped to [-clip, clip] (0 = no clipping), as the authors' diffusers
    # DDIMScheduler does (clip_sample=True, range 1, on both modalities). Without it the first step explodes: at
    # t = T-1 the cosine schedule has sqrt(abar) = 4.9e-4, so an eps error of 0.01 is an x0 error of 20.
    clip_actions: float = 1.0  # actions are scaled to [-1, 1] (the authors' range)
    clip_latents: float = 3.0  # latents have unit std (the authors scale theirs to about 1/3 and clip at 1)
    # DDIM timesteps: trailing (T-1, ..., T/N - 1: starts at pure noise's level) | leading (T - T/N, ..., 0: the
    # authors', diffusers' default); leading was chosen on base_val clips (phase4_uwm/README.md, "Sampling"); runs
    # trained before that choice record trailing (evaluate with timestep_spacing=leading)
    timestep_spacing: str = "leading"

    def check(self) -> None:
        choice("timestep_spacing", self.timestep_spacing, ("trailing", "leading"))
        require(self.clip_actions >= 0 and self.clip_latents >= 0, "clip_actions", (self.clip_actions,
                self.clip_latents), "clip_actions and clip_latents must be >= 0 (0 = no clipping)")
        require(self.width >= 8 and self.width % self.heads == 0, "width", self.width,
                f"a multiple of heads ({self.heads}), >= 8")
        for k in ("depth", "heads", "patch", "action_hidden", "obs_dim", "num_tasks"):
            require(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        require(self.registers >= 0, "registers", self.registers, "must be >= 0")
        require(self.mlp_ratio > 0, "mlp_ratio", self.mlp_ratio, "must be > 0")
        require(len(self.obs_channels) >= 1, "obs_channels", self.obs_channels, "at least one stage width")
        require(1 <= self.sample_steps <= self.ddpm.num_timesteps, "sample_steps", self.sample_steps,
                f"in [1, ddpm.num_timesteps={self.ddpm.num_timesteps}]")


@dataclass
class ClipConfig:
    """One training sample: `obs_frames` current frames per view, the next `chunk` actions, and the `future_frames`
    frames per view that end `chunk` steps after the last current frame (paper: 2, 16, 2)."""

    obs_frames: int = 2  # current frames per view that condition the model (t-1, t)
    chunk: int = 16  # actions per chunk, a_t .. a_{t+chunk-1}
    future_frames: int = 2  # predicted frames per view: the last ones the chunk reaches (t+chunk-1, t+chunk)

    def check(self) -> None:
        for k in ("obs_frames", "chunk", "future_frames"):
            require(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        require(self.future_frames <= self.chunk, "future_frames", self.future_frames,
                f"must be <= chunk ({self.chunk}): the future frames are the last ones the chunk reaches")


@dataclass
class DataConfig(DemoDataConfig):
    """Which demonstrations (phase 3's collection: data.folder or data.demos=<collect profile>) and which of them."""

    split: str = "base"  # base (the 9 base tasks: pretraining) | new (the held-out task: finetuning)
    episodes: int = 0  # use the first N demonstrations of the split (the data-size ablation); 0 = all
    video_only_fraction: float = 0.0  # fraction of samples trained as action-free video (actions at full noise)
    # evaluation folders whose recorded episodes (video + actions, failures included) are trained on as well, e.g.
    # phase 5's rollouts of the split's tasks; their start states are then refused as evaluation states
    played: list[str] = field(default_factory=list)
    # imitate the played episodes' actions too (action loss); false: they teach dynamics and video only, since a
    # failure's actions are what the policy should not do
    played_imitate: bool = False

    def check(self) -> None:
        super().check()
        choice("split", self.split, ("base", "new"))
        require(self.episodes >= 0, "episodes", self.episodes, "must be >= 0 (0 = all)")
        require(0 <= self.video_only_fraction < 1, "video_only_fraction", self.video_only_fraction, "in [0, 1)")


@dataclass
class TokenizerTrainConfig:
    """`python -m phase4_uwm.train_tokenizer`: the frozen video tokenizer, trained on frames of both views."""

    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full
    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=1e-3, warmup_steps=100,
                                                                   schedule="cosine", ema_decay=0.0))
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    val_frames: int = 512  # validation frames (base_val and new_val demonstrations) for the reconstruction PSNR


@dataclass
class Phase4Config:
    """`python -m phase4_uwm.train`: the UWM on phase 3's demonstrations (base tasks, or the new task from a base run)."""

    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full
    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=3e-4, warmup_steps=200,
                                                                   schedule="cosine", weight_decay=1e-6,
                                                                   ema_decay=0.999))
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=DataConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    model: UWMConfig = field(default_factory=UWMConfig)
    # The frozen tokenizer: a train_tokenizer run folder, "latest" (the newest local one, else the release) or
    # "release"; ignored when tokenizer_kind=pixel.
    tokenizer: str = "latest"
    tokenizer_kind: str = "vae"  # vae (the trained autoencoder's latents) | pixel (patches of the frames themselves)
    pixel_size: int = 32  # frame side when tokenizer_kind=pixel
    # What the run learns: joint (both losses, independent levels) | policy (action loss only, video input always pure
    # noise) | dynamics (video loss only, actions always given clean): the "does joint training help?" ablation.
    objective: str = "joint"
    init_from: str = ""  # a base UWM run to finetune from (run folder, "latest", "release"); "" = from scratch
    val_every: int = 500  # steps between validation losses on the _val demonstrations (and at the end); 0 = none
    val_samples: int = 256  # validation clips, evenly spaced, the same noise every time

    def check(self) -> None:
        choice("tokenizer_kind", self.tokenizer_kind, ("vae", "pixel"))
        choice("objective", self.objective, ("joint", "policy", "dynamics"))
        require(self.pixel_size >= 8 and self.pixel_size % self.model.patch == 0, "pixel_size", self.pixel_size,
                f"a multiple of model.patch ({self.model.patch})")
        require(self.val_every >= 0, "val_every", self.val_every, "must be >= 0 (0 = none)")
        require_together(self.objective == "joint" or self.data.video_only_fraction == 0,
                         {"objective": self.objective, "data.video_only_fraction": self.data.video_only_fraction},
                         "action-free samples only make sense for the joint objective")


@dataclass
class InferConfig:
    """`python -m phase4_uwm.infer mode=...`: one mode of a trained UWM on held-out clips (validation demonstrations):
    its error against the real actions / frames, and a side-by-side picture (real | predicted)."""

    run: RunConfig = field(default_factory=RunConfig)
    load: str = "latest"  # the UWM run: a run folder, "latest" or "release"
    mode: str = "policy"  # policy | forward | inverse | video | joint
    split: str = "new_val"  # which validation demonstrations: base_val | new_val
    clips: int = 16  # held-out clips, evenly spaced over the split
    denoise_steps: int = 0  # DDIM steps; 0 = the model's sample_steps
    batch_size: int = 16  # clips per forward pass
    seed: int = 0  # the sampling noise
    data: DemoDataConfig = field(default_factory=DemoDataConfig)

    def check(self) -> None:
        choice("mode", self.mode, MODES)
        choice("split", self.split, ("base_val", "new_val"))
        for k in ("clips", "batch_size"):
            require(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        require(self.denoise_steps >= 0, "denoise_steps", self.denoise_steps, "must be >= 0 (0 = the model's)")


PARTS = ("offline", "policy")
# what the offline part can score: the modes, and forward_other (forward dynamics given another clip's actions)
OFFLINE_MODES = ("forward", "forward_other", "video", "policy", "inverse", "joint")


@dataclass
class OfflineConfig:
    split: str = "new_val"  # validation demonstrations: new_val (the held-out task) | base_val
    clips: int = 256  # evenly spaced clips of the split
    batch_size: int = 32  # clips per forward pass
    # which modes to score (forward, video, policy, inverse, joint), and forward_other: forward dynamics given
    # another clip's actions (the next clip of the batch), the check that the forward mode uses its actions at all
    modes: list[str] = field(default_factory=lambda: ["forward", "forward_other", "video", "policy", "inverse"])
    figure_clips: int = 6  # rows of the side-by-side figure (real | each mode's prediction); 0 = no figure
    # the split's first episode every video_stride steps: modes.gif (real | forward | video, frame by frame) and
    # actions.png (real, policy and inverse actions per dimension); 0 = neither
    video_stride: int = 4
    # the sampled rows' noise: each row (mode, DIAMOND-lite) draws from a generator of its own, seeded from this seed
    # and the row's name, so that a row's draws do not depend on which other rows are scored. Another seed measures
    # how far a sampled cell moves with the noise alone (the intervals are over clips, not over draws)
    seed: int = 0

    def check(self) -> None:
        choice("split", self.split, ("base_val", "new_val"))
        require(self.figure_clips >= 0, "figure_clips", self.figure_clips, "must be >= 0 (0 = no figure)")
        require(self.video_stride >= 0, "video_stride", self.video_stride, "must be >= 0 (0 = no episode video)")
        require(self.clips >= 2, "clips", self.clips, "must be >= 2 (intervals)")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        for m in self.modes:
            choice("modes", m, OFFLINE_MODES)
        require("forward_other" not in self.modes or self.batch_size >= 2, "batch_size", self.batch_size,
                "must be >= 2 for forward_other (each clip gets the next clip's actions within a batch)")


@dataclass
class PolicyEvalConfig:
    libero: LiberoConfig = field(default_factory=LiberoConfig)  # cameras at 128 px, as the demonstrations
    tasks: list[int] = field(default_factory=lambda: [9])  # LIBERO-Object task ids (9 = the held-out task)
    first_state: int = 0  # fixed initial states first_state .. first_state + episodes - 1 of each task
    episodes: int = 25  # fixed initial states per task
    n_action_steps: int = 0  # actions played per predicted chunk; 0 = the whole chunk (the paper: 16, open loop)
    seed: int = 0  # the sampling noise (per episode: mixed with task and state)
    videos: int = 2  # episodes per task saved as videos (-1 = all)
    check_starts: bool = True  # refuse evaluation states a training demonstration started from
    progress: bool = True  # print a line per episode

    def check(self) -> None:
        require(self.episodes >= 1, "episodes", self.episodes, "must be >= 1")
        require(0 <= self.first_state and self.first_state + self.episodes <= 50, "first_state", self.first_state,
                f"states first_state .. first_state + episodes - 1 must lie in LIBERO's 0..49 (episodes={self.episodes})")
        require(self.n_action_steps >= 0, "n_action_steps", self.n_action_steps, "must be >= 0 (0 = the chunk)")


@dataclass
class UWMEvaluateConfig:
    """`python -m phase4_uwm.evaluate`: a trained UWM's modes on held-out clips and its policy in LIBERO."""

    run: RunConfig = field(default_factory=RunConfig)
    load: str = "latest"  # the run to evaluate: a run folder, "latest" or "release"
    # uwm (a phase4_uwm.train run: offline and policy parts) | diffusion_policy (a phase4_uwm.train_dp run: policy)
    method: str = "uwm"
    data: DemoDataConfig = field(default_factory=DemoDataConfig)  # phase 3's collection (for the offline clips)
    parts: list[str] = field(default_factory=lambda: list(PARTS))  # offline | policy
    denoise_steps: int = 0  # DDIM steps of every mode; 0 = the model's
    timestep_spacing: str = ""  # DDIM timesteps of every mode: trailing | leading; "" = the model's (model.*)
    # The inverse-dynamics regressor to compare the inverse mode with (a train_inverse run folder, "latest",
    # "release") or "none"
    inverse_regressor: str = "none"
    # DIAMOND-lite to compare forward dynamics with (a train_diamond run folder, "latest", "release") or "none"
    forward_baseline: str = "none"
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    eval: PolicyEvalConfig = field(default_factory=PolicyEvalConfig)
    out: str = ""  # results folder; "" = <run>/evaluate (a release: <run.root>/phase4/release-<name>/evaluate)
    publish: bool = False  # rewrite the results block of phase4_uwm/README.md from this evaluation

    def check(self) -> None:
        for p in self.parts:
            choice("parts", p, PARTS)
        choice("method", self.method, ("uwm", "diffusion_policy"))
        require_together(self.method == "uwm" or self.parts == ["policy"],
                         {"method": self.method, "parts": self.parts},
                         "a Diffusion Policy has no offline modes: use parts=[policy]")
        require(self.denoise_steps >= 0, "denoise_steps", self.denoise_steps, "must be >= 0 (0 = the model's)")
        if self.timestep_spacing:
            choice("timestep_spacing", self.timestep_spacing, ("trailing", "leading"))


@dataclass
class DPConfig:
    """Sizes of lerobot's DiffusionPolicy (its defaults in comments)."""

    n_obs_steps: int = 2  # (2)
    horizon: int = 16  # (16)
    n_action_steps: int = 8  # actions played per chunk in LIBERO (8)
    resize: int = 64  # the side images are resized to inside the policy (None: as stored)
    crop: int = 58  # random crop at training, centre crop at inference (lerobot's [84, 84] at 96 px)
    down_dims: list[int] = field(default_factory=lambda: [64, 128, 256])  # its 1-D UNet ([512, 1024, 2048])
    spatial_softmax_num_keypoints: int = 32  # (32)
    num_train_timesteps: int = 100  # (100)
    noise_scheduler_type: str = "DDIM"  # DDPM | DDIM; DDIM lets inference take num_inference_steps
    num_inference_steps: int = 10  # (None = num_train_timesteps); 10 = the UWM's DDIM steps

    def check(self) -> None:
        require(self.crop <= self.resize, "crop", self.crop, f"must be <= resize ({self.resize})")
        require(1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1, "n_action_steps", self.n_action_steps,
                f"in [1, horizon - n_obs_steps + 1 = {self.horizon - self.n_obs_steps + 1}]")
        require(self.noise_scheduler_type in ("DDPM", "DDIM"), "noise_scheduler_type", self.noise_scheduler_type,
                "DDPM or DDIM")


@dataclass
class DPTrainConfig:
    """`python -m phase4_uwm.train_dp`: lerobot's Diffusion Policy from scratch on the demonstrations (the baseline)."""

    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu
    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=1e-4, warmup_steps=200,
                                                                   schedule="cosine", weight_decay=1e-6,
                                                                   ema_decay=0.999))
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(split="new"))  # the new task's 50 demonstrations
    dp: DPConfig = field(default_factory=DPConfig)


@dataclass
class InverseTrainConfig:
    """`python -m phase4_uwm.train_inverse`: the plain inverse-dynamics regressor (current + real future frames ->
    the chunk's actions, MSE), the baseline of the UWM's inverse mode, on the same demonstrations."""

    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu
    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=3e-4, warmup_steps=200,
                                                                   schedule="cosine", weight_decay=1e-6,
                                                                   ema_decay=0.999))
    log: LogConfig = field(default_factory=LogConfig)
    data: DemoDataConfig = field(default_factory=DemoDataConfig)
    splits: list[str] = field(default_factory=lambda: ["base", "new"])  # training demonstrations (the UWM's: both)
    image_size: int = 64  # frame side (the UWM cpu profile's)
    clip: ClipConfig = field(default_factory=ClipConfig)
    model: UWMConfig = field(default_factory=UWMConfig)  # obs_channels, obs_dim, width (task embedding), action_hidden

    def check(self) -> None:
        require(len(self.splits) >= 1, "splits", self.splits, "at least one of base, new")
        for sp in self.splits:
            choice("splits", sp, ("base", "new"))


def _diamond_model():
    # Phase 1's cpu-profile world model (UNet widths 32, 1.75M parameters) without the reward/end head.
    from common.nn.unet import UNetConfig
    from phase1_world_model.config import RewardEndConfig
    return WorldModelConfig(unet=UNetConfig(channels=[32, 32, 32, 32], num_res_blocks=2, attn_levels=[3], emb_dim=256,
                                            num_groups=8, attn_head_dim=32),
                            reward_end=RewardEndConfig(enabled=False))


@dataclass
class DiamondTrainConfig:
    """`python -m phase4_uwm.train_diamond`: DIAMOND-lite (phase 1's world model class) on the LIBERO demonstrations,
    the baseline of the UWM's forward-dynamics mode."""

    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu
    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=1e-4, warmup_steps=100,
                                                                   schedule="cosine", weight_decay=1e-2,
                                                                   ema_decay=0.999))
    log: LogConfig = field(default_factory=LogConfig)
    data: DemoDataConfig = field(default_factory=DemoDataConfig)
    splits: list[str] = field(default_factory=lambda: ["base", "new"])  # training demonstrations (the UWM's: both)
    image_size: int = 64  # frame side (the UWM cpu profile's)
    model: WorldModelConfig = field(default_factory=_diamond_model)  # phase 1's WorldModelConfig
    sampler_steps: int = 3  # Euler steps per generated frame (DIAMOND: 3)

    def check(self) -> None:
        require(len(self.splits) >= 1, "splits", self.splits, "at least one of base, new")
        for sp in self.splits:
            choice("splits", sp, ("base", "new"))
        require(not self.model.reward_end.enabled, "model.reward_end.enabled", self.model.reward_end.enabled,
                "must be false: LIBERO demonstrations have no rewards")
        require(self.sampler_steps >= 1, "sampler_steps", self.sampler_steps, "must be >= 1")


@dataclass
class UWMCompareConfig:
    """`python -m phase4_uwm.compare`: the evaluated runs side by side (their <run>/evaluate/results.json)."""

    run: RunConfig = field(default_factory=RunConfig)
    # run names under <run.root>/phase4/ or run folders, in table order: the finetuned UWM, the Diffusion Policy
    # baseline, the one-loss ablations, the small model, the 10- and 50-demonstration finetunes of one base run and the
    # chunk-length controls (scripts/phase4_experiments.sh)
    runs: list[str] = field(default_factory=lambda: ["uwm-new-cpu", "dp-new-cpu", "uwm-new-policy-cpu",
                                                     "uwm-new-dynamics-cpu", "uwm-new-small-cpu", "uwm-new-n10-cpu",
                                                     "uwm-new-n50-cpu", "uwm-new-chunk8-cpu", "dp-new-chunk15-cpu"])
    publish: bool = False  # rewrite this command's block of phase4_uwm/README.md
    keep: bool = False  # copy each run's evaluation into `records` (commit it: it outlives outputs/)
    records: str = ""  # folder of the committed evaluation records ("" = phase4_uwm/results)

    def check(self) -> None:
        require(len(self.runs) >= 1, "runs", self.runs, "at least one run name or folder")
