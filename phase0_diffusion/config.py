"""Phase 0 config schema. Values live in configs/phase0/*.yaml; this file says what they mean."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from common.config import choice, require, require_together
from common.diffusion.ddpm import DDPMConfig
from common.diffusion.edm import EDMConfig
from common.logger import LogConfig
from common.nn.unet import UNetConfig
from common.runs import RunConfig, TrainRunConfig
from common.trainer import TrainConfig

SAMPLERS = ("ddpm", "ddim", "euler", "heun")


@dataclass
class DataConfig:
    name: str = "fashion_mnist"  # mnist | fashion_mnist | cifar10 | synthetic (generated, for tests)
    root: str = ""  # folder holding the standard files; "" = search WM_DATA_DIR, data/, system copies
    download: bool = False  # let torchvision download (only on a machine with internet, on request)
    pad_to: int = 0  # zero-pad images to this size (e.g. 32 for a 4-level UNet on 28x28); 0 = as is
    limit: int = 0  # use only the first N training images; 0 = all
    synthetic_size: int = 16  # image side for name=synthetic
    synthetic_count: int = 64  # number of images for name=synthetic

    def check(self) -> None:
        choice("name", self.name, ("mnist", "fashion_mnist", "cifar10", "synthetic"))
        require(self.pad_to >= 0, "pad_to", self.pad_to, "must be >= 0")
        require(self.limit >= 0, "limit", self.limit, "must be >= 0")


@dataclass
class DiffusionConfig:
    process: str = "edm"  # edm (EDM preconditioning and loss) | ddpm (discrete-time, eps/x0/v target)
    edm: EDMConfig = field(default_factory=EDMConfig)
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)
    class_conditional: bool = False  # class embedding added to the UNet's conditioning vector
    label_dropout: float = 0.1  # probability of replacing the label by the null class (for CFG)

    def check(self) -> None:
        choice("process", self.process, ("edm", "ddpm"))
        require(0.0 <= self.label_dropout < 1.0, "label_dropout", self.label_dropout, "must be in [0, 1)")


@dataclass
class SampleConfig:
    """How samples are drawn for grids during training and by `phase0_diffusion.sample`."""

    sampler: str = "heun"  # ddpm (ancestral, all T DDPM timesteps) | ddim (DDPM grid) | euler | heun (Karras)
    steps: int = 18  # sampler steps (heun: 2 * steps - 1 evaluations); ddpm ignores it (uses T)
    eta: float = 0.0  # ddim only: 0 deterministic ... 1 = DDPM posterior noise
    guidance: float = 1.0  # CFG scale s, class-conditional models (0 = unconditional, 1 = conditional, >1 guided)
    every: int = 500  # training steps between sample grids; 0 = only at the end
    num: int = 64  # images per grid
    seed: int = 1234  # noise seed of the training-time grids and FID-proxy (eval and sample use run.seed)

    def check(self) -> None:
        choice("sampler", self.sampler, SAMPLERS)
        require(self.steps >= 1, "steps", self.steps, "must be >= 1")
        require(0.0 <= self.eta <= 1.0, "eta", self.eta, "must be in [0, 1]")
        require(self.guidance >= 0, "guidance", self.guidance, "must be >= 0")
        require(self.every >= 0, "every", self.every, "must be >= 0")
        require(self.num >= 1, "num", self.num, "must be >= 1")


@dataclass
class EvalConfig:
    """FID-proxy (features of the project's own classifier) and class accuracy."""

    classifier: str = "latest"  # FID-proxy's classifier run folder, latest (local, else the release) or release
    num_samples: int = 1000  # generated images per FID-proxy estimate
    every: int = 0  # training steps between evaluations; 0 = never during training

    def check(self) -> None:
        require(self.num_samples >= 2, "num_samples", self.num_samples, "must be >= 2")


@dataclass
class ImageModelConfig:
    """The denoiser network (the shared UNet). Its settings sit under model.unet.*, as in phases 1 and 2."""

    unet: UNetConfig = field(default_factory=UNetConfig)


@dataclass
class Phase0Config:
    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=DataConfig)
    RENAMED: ClassVar[dict] = {f"model.{f.name}": (f"model.unet.{f.name}", None)  # widths were model.channels
                               for f in dataclasses.fields(UNetConfig)}

    model: ImageModelConfig = field(default_factory=ImageModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    profile: str = "cpu"  # set by the chosen profile file: smoke | cpu | full | ...

    def check(self) -> None:
        require_together(self.diffusion.process != "ddpm" or self.model.unet.noise_embedding == "sinusoidal",
                         {"model.unet.noise_embedding": self.model.unet.noise_embedding,
                          "diffusion.process": self.diffusion.process},
                         "ddpm feeds timesteps 0..T-1: use model.unet.noise_embedding=sinusoidal")


@dataclass
class EvalRunConfig:
    """`python -m phase0_diffusion.evaluate` and `.sample`: a trained model, a sampler, and what to measure."""

    run: RunConfig = field(default_factory=RunConfig)  # run.seed = the sampling noise seed
    load: str = "latest"  # the model: a phase 0 run folder, latest (the newest local run, else the release), release
    sample: SampleConfig = field(default_factory=SampleConfig)
    num_samples: int = 1000  # images generated for FID-proxy
    batch_size: int = 64  # images sampled at once (larger batches are slower on CPU: cache-bound)
    classifier: str = "latest"  # classifier run folder, or latest for the run's data set (local, else the release)
    inception_weights: str = ""  # pytorch-fid's pt_inception-2015-12-05 weights file for real FID; "" = skip

    def check(self) -> None:
        require(self.num_samples >= 2, "num_samples", self.num_samples, "must be >= 2")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")


@dataclass
class ClassifierConfig:
    """`python -m phase0_diffusion.classifier`: the FID-proxy classifier (model.SmallCNN) and its training."""

    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=DataConfig)
    in_channels: int = 1  # image channels; must match the data (1 mnist/fashion_mnist, 3 cifar10; synthetic: any)
    width: int = 32  # channels of the first conv; features are 4 * width wide

    def check(self) -> None:
        require(self.width >= 4, "width", self.width, "must be >= 4")
