"""Real Inception FID, only from a weights file the user supplies (never downloaded here).

FID as published uses the TensorFlow Inception-v3 graph of 2015-12-05; pytorch-fid ports it (the
architecture differs slightly from torchvision's). Its loader fetches the weights from the internet on
first use, which we never let happen: `inception_features` builds pytorch-fid's network with the loader
replaced by a read of the file you pass (`pt_inception-2015-12-05-6726825d.pth`, from pytorch-fid's
GitHub releases, copied over by hand).

    python -m phase0_diffusion.evaluate run=... inception_weights=/path/to/pt_inception-2015-12-05-6726825d.pth

Grey images are repeated to 3 channels; pytorch-fid resizes to 299x299 itself. Reference statistics of
the data set's test split are computed once and cached beside the weights' name under the run's eval/.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


def build_inception(weights: str | Path, device="cpu") -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (2048-d pool features) with weights read from `weights`."""
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise FileNotFoundError(
            f"inception_weights={weights} does not exist. Real Inception FID needs pytorch-fid's {WEIGHTS_NAME} "
            "(from the pytorch-fid releases on GitHub, fetched on a machine with internet and copied here). "
            "Without it, use the FID-proxy, which needs no download.")
    try:
        from pytorch_fid import inception as pf
    except ImportError as e:
        raise ImportError("real Inception FID needs the pytorch-fid package: pip install pytorch-fid==0.3.0") from e

    def load_local(url: str, *args, **kwargs):  # replaces the download in pf.fid_inception_v3
        return torch.load(weights, map_location="cpu", weights_only=True)

    original = pf.load_state_dict_from_url
    pf.load_state_dict_from_url = load_local
    try:
        net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    finally:
        pf.load_state_dict_from_url = original
    return net.to(device).eval()


def inception_features(net: torch.nn.Module, batch: int = 50) -> Callable[[torch.Tensor], torch.Tensor]:
    """x in [-1, 1], (N, C, H, W) with C in {1, 3} -> (N, 2048) features."""
    @torch.no_grad()
    def fn(x: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(x), batch):
            xb = (x[i:i + batch].clamp(-1, 1) + 1) / 2  # pytorch-fid expects [0, 1]
            if xb.shape[1] == 1:
                xb = xb.repeat(1, 3, 1, 1)
            out.append(net(xb)[0].flatten(1).cpu())
        return torch.cat(out)
    return fn
