"""Loading trained phase 4 models (runs or releases), and the data sets they were trained on.

    from phase4_uwm.loading import load_tokenizer, load_uwm
    tok = load_tokenizer("latest")     # .model (Tokenizer, frozen, eval mode), .cfg, .meta, .run
    uwm = load_uwm("latest")           # .model (UWM), .tokenizer (its Tokenizer), .cfg, .meta, .run
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from common.runs import Exported, load_exported, releases_dir
from phase4_uwm.config import Phase4Config, TokenizerConfig, TokenizerTrainConfig
from phase4_uwm.model import UWM
from phase4_uwm.tokenizer import Tokenizer

TOKENIZER_MARKER, UWM_MARKER = "tokenizer.json", "uwm.json"


def load_tokenizer(spec: str = "latest", root: str = "outputs", device: str | torch.device = "cpu") -> Exported:
    """A finished `train_tokenizer` run: a run folder, "latest" (newest local run, else the release) or "release"."""
    tm = load_exported("phase4", spec, root, TOKENIZER_MARKER, TokenizerTrainConfig,
                       lambda cfg, meta: Tokenizer(cfg.tokenizer),
                       "Make one with: python -m phase4_uwm.train_tokenizer profile=cpu", device)
    tm.model.requires_grad_(False)
    return tm


def pixel_tokenizer(size: int) -> Tokenizer:
    """The identity tokenizer of a pixel-patch UWM (frames at `size` px, scaled to [-1, 1]): nothing to load."""
    return Tokenizer(TokenizerConfig(kind="pixel", image_size=size)).eval()


def build_uwm(cfg: Phase4Config, meta: dict) -> UWM:
    """An untrained UWM of the run's shape: its config and the export's metadata (action size, views, tokenizer)."""
    tok = TokenizerConfig(**meta["tokenizer_config"]) if meta.get("tokenizer_config") else TokenizerConfig()
    return UWM(cfg.model, cfg.clip, tok, meta["action_dim"], meta.get("views", 2), cfg.objective, cfg.pixel_size)


@dataclass
class TrainedUWM:
    """A trained UWM ready for the modes: the network (eval mode, its action statistics set), the frozen tokenizer
    it was trained with, its config, the export's metadata and the run (folder or release) it came from."""

    model: UWM
    tokenizer: Tokenizer
    cfg: Phase4Config
    meta: dict
    run: object


def _tokenizer_spec(tok_run: str) -> str:
    """Where the tokenizer a UWM was trained with is now: its recorded folder, else the release of that name (a
    release records the absolute path of the clone it was trained in), else the latest one (the scale check below
    refuses a different tokenizer)."""
    if Path(tok_run).exists():
        return tok_run
    released = releases_dir() / "phase4" / Path(tok_run).name
    return str(released) if (released / "tokenizer.json").exists() else "latest"


def same_scale(want: float, have: float) -> bool:
    """Whether two latent scales name the same tokenizer. Releases store the scale buffer in float16 (relative
    rounding <= 2**-11), so a model trained on a run's latents and one trained on its release's differ by up to
    ~5e-4 relative; two separately trained tokenizers differ by far more."""
    return abs(want - have) <= 1e-3 * max(abs(want), abs(have))


def load_uwm(spec: str = "latest", root: str = "outputs", device: str | torch.device = "cpu",
             timestep_spacing: str = "") -> TrainedUWM:
    """A finished `train` run and the frozen tokenizer it was trained with (the run it names, checked by digest);
    `timestep_spacing` (trailing | leading) replaces the DDIM spacing the run was trained with ("" keeps it)."""
    tm = load_exported("phase4", spec, root, UWM_MARKER, Phase4Config, build_uwm,
                       "Make one with: python -m phase4_uwm.train profile=cpu", device)
    if tm.cfg.tokenizer_kind == "pixel":
        tok = pixel_tokenizer(tm.cfg.pixel_size)
    else:
        tok_run = tm.meta["tokenizer"]["run"]
        tok = load_tokenizer(_tokenizer_spec(tok_run), root, device).model
        want, have = tm.meta["tokenizer"].get("scale"), float(tok.scale)
        if want is not None and not same_scale(want, have):
            from common.checkpoint import CheckpointError
            raise CheckpointError(f"{tm.run.dir} was trained with the tokenizer {tok_run} (latent scale {want:.6g}); "
                                  f"the tokenizer found has scale {have:.6g}: not the same tokenizer. Point "
                                  "tokenizer= at the right run or retrain")
    if timestep_spacing:
        tm.model.cfg.timestep_spacing = timestep_spacing
    return TrainedUWM(tm.model, tok.to(device), tm.cfg, tm.meta, tm.run)


def load_inverse_regressor(spec: str = "latest", root: str = "outputs", device: str | torch.device = "cpu") -> Exported:
    """A finished `train_inverse` run (.model: InverseRegressor, eval mode)."""
    from phase4_uwm.baselines import InverseRegressor
    from phase4_uwm.config import InverseTrainConfig

    return load_exported("phase4", spec, root, "inverse_regressor.json", InverseTrainConfig,
                         lambda cfg, meta: InverseRegressor(cfg.model, cfg.clip, meta["action_dim"], meta["views"]),
                         "Make one with: python -m phase4_uwm.train_inverse profile=cpu", device)


def load_diamond(spec: str = "latest", root: str = "outputs", device: str | torch.device = "cpu") -> Exported:
    """A finished `train_diamond` run (.model: phase 1's WorldModel on LIBERO frames, eval mode)."""
    from phase1_world_model.config import FrameSamplerConfig
    from phase1_world_model.model import WorldModel
    from phase4_uwm.config import DiamondTrainConfig

    return load_exported("phase4", spec, root, "diamond_lite.json", DiamondTrainConfig,
                         lambda cfg, meta: WorldModel(cfg.model, 0, tuple(meta["frame_shape"]),
                                                      FrameSamplerConfig(steps=cfg.sampler_steps),
                                                      action_size=meta["action_size"]),
                         "Make one with: python -m phase4_uwm.train_diamond profile=cpu", device)
