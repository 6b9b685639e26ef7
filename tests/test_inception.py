"""Real Inception FID runs only from a user-supplied weights file, never by a download."""
from __future__ import annotations

import pytest
import torch

pf = pytest.importorskip("pytorch_fid.inception")

from phase0_diffusion.inception import WEIGHTS_NAME, build_inception, inception_features  # noqa: E402


def _fake_weights(path):
    """A randomly initialised network with pytorch-fid's exact architecture, saved like the real file."""
    import torchvision

    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    torch.save(net.state_dict(), path)
    return net


def test_missing_weights_file_says_what_to_supply(tmp_path):
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME) as err:
        build_inception(tmp_path / "nope.pth")
    assert str(tmp_path / "nope.pth") in str(err.value)


def test_weights_come_from_the_file_and_features_are_2048d(tmp_path, monkeypatch):
    path = tmp_path / WEIGHTS_NAME
    ref = _fake_weights(path)
    monkeypatch.setattr(pf, "load_state_dict_from_url",
                        lambda *a, **k: pytest.fail("tried to download Inception weights"))
    net = build_inception(path)
    assert torch.equal(net.blocks[0][0].conv.weight, ref.Conv2d_1a_3x3.conv.weight)
    assert pf.load_state_dict_from_url.__name__ == "<lambda>"  # our temporary patch was undone
    feats = inception_features(net)(torch.rand(2, 1, 28, 28) * 2 - 1)  # grey images -> 3 channels
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
