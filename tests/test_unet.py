"""Shapes, conditioning, gradients and size of common/nn/unet.py.

Note on zero initialisation: every ResBlock's second conv, every attention output and the final conv
start at zero, so a fresh UNet is conv_in -> (skips, resamplers) -> conv_out = 0 and ignores the noise
level and `cond` entirely. Tests about conditioning therefore first make those layers non-zero.
"""
from __future__ import annotations

import pytest
import torch

from common.nn.unet import ResBlock, SelfAttention, UNet, UNetConfig, count_parameters
from phase0_diffusion.model import ClassEmbedding

SMALL = dict(channels=[16, 32, 32], num_res_blocks=1, attn_levels=[1], attn_head_dim=8, emb_dim=32, num_groups=8)


def small(**kw) -> UNet:
    cfg = UNetConfig(**{**SMALL, **kw})
    cfg.check()
    torch.manual_seed(0)
    return UNet(cfg).eval()


def perturb_zero_inits(net: UNet, std: float = 0.05) -> UNet:
    """Give the zero-initialised layers (ResBlock.conv2, attention out, conv_out) random weights."""
    g = torch.Generator().manual_seed(1)
    layers = [m.conv2 for m in net.modules() if isinstance(m, ResBlock)]
    layers += [m.out for m in net.modules() if isinstance(m, SelfAttention)] + [net.conv_out]
    with torch.no_grad():
        for layer in layers:
            assert not layer.weight.any(), "expected a zero-initialised layer"
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * std)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * std)
    return net


@pytest.mark.parametrize("hw,levels,cin,cout", [((28, 28), 3, 1, 1), ((32, 32), 4, 3, 3), ((16, 24), 4, 3, 3),
                                                ((16, 16), 3, 9, 3), ((8, 12), 1, 2, 5)])
def test_output_shape_equals_input_shape(hw, levels, cin, cout):
    net = small(channels=[16, 32, 32, 32][:levels], in_channels=cin, out_channels=cout,
                attn_levels=[1] if levels > 1 else [0])
    x = torch.randn(2, cin, *hw)
    with torch.no_grad():
        y = net(x, torch.tensor([0.1, -0.5]))
    assert y.shape == (2, cout, *hw)
    assert not y.any()  # zero-initialised output conv: the network starts by predicting 0


@pytest.mark.parametrize("hw,levels,divisor", [((30, 30), 3, 4), ((28, 28), 4, 8), ((32, 20), 4, 8)])
def test_non_divisible_size_raises(hw, levels, divisor):
    net = small(channels=[16, 32, 32, 32][:levels])
    with pytest.raises(ValueError, match=rf"divisible by {divisor}\b"):
        net(torch.randn(1, 1, *hw), torch.zeros(1))


def test_cond_and_noise_level_change_the_output():
    net = perturb_zero_inits(small())
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([0.3, 0.3])
    with torch.no_grad():
        y_none = net(x, t)  # cond=None works
        y_zero = net(x, t, torch.zeros(2, 32))
        y_cond = net(x, t, torch.randn(2, 32))
        y_t = net(x, torch.tensor([1.5, 1.5]))
    torch.testing.assert_close(y_none, y_zero)  # cond is added to the embedding: None == zeros
    assert (y_cond - y_none).abs().max() > 1e-3
    assert (y_t - y_none).abs().max() > 1e-3
    # a scalar noise level broadcasts over the batch
    with torch.no_grad():
        torch.testing.assert_close(net(x, torch.tensor(0.3)), y_none)


def test_fresh_network_ignores_cond():
    """Documents the zero init: before any training step the output does not depend on cond."""
    net = small()
    net.conv_out.weight.data.normal_(0, 0.05)  # perturbing only the output conv is not enough
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x, torch.zeros(2)), net(x, torch.zeros(2), torch.randn(2, 32)))


def test_gradient_reaches_class_embedding():
    net = perturb_zero_inits(small())
    classes = ClassEmbedding(num_classes=10, dim=32)
    labels = torch.tensor([3, 10])  # a class and the null (CFG) class
    y = net(torch.randn(2, 1, 16, 16), torch.zeros(2), classes(labels))
    y.square().mean().backward()
    grad = classes.embed.weight.grad
    assert grad is not None and grad.shape == (11, 32)
    assert grad[3].abs().sum() > 0 and grad[10].abs().sum() > 0
    unused = torch.ones(11, dtype=torch.bool)
    unused[labels] = False
    assert not grad[unused].any()


@pytest.mark.parametrize("embedding", ["fourier", "sinusoidal"])
def test_embeddings(embedding):
    net = small(noise_embedding=embedding)
    e = net.noise_embed[0](torch.tensor([0.0, 1.0, 999.0]))
    assert e.shape == (3, 32) and torch.isfinite(e).all()
    assert e.abs().max() <= 1.0 + 1e-6  # cos / sin features


# ------------------------------------------------------------------ the DDPM CIFAR-10 configuration
FULL = dict(in_channels=3, out_channels=3, channels=[128, 256, 256, 256], num_res_blocks=2, attn_levels=[1],
            attn_head_dim=256, emb_dim=512, noise_embedding="sinusoidal", dropout=0.1, num_groups=32)
DDPM_CIFAR10_PARAMS = 35.7e6  # Ho et al. 2020, Appendix B


@pytest.fixture(scope="module")
def full_net() -> UNet:
    cfg = UNetConfig(**FULL)
    cfg.check()
    torch.manual_seed(0)
    return UNet(cfg).eval()


def test_full_config_matches_profile_file():
    """FULL above is the model.unet block of configs/phase0/profile/full.yaml."""
    from omegaconf import OmegaConf
    from common.config import REPO_ROOT
    model = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "configs/phase0/profile/full.yaml"))["model"]["unet"]
    assert model == FULL


def _ddpm_equivalent_count(net: UNet) -> int:
    """Our parameter count with each ResBlock's conditioning swapped for DDPM's: DDPM adds Dense(temb -> C_out)
    once per block and has affine GroupNorms; ours has two AdaGroupNorm projections Linear(D, 2 C) and
    affine-free norms. The noise MLP is DDPM's Dense(128 -> 512), Dense(512 -> 512), without cond_mlp."""
    n = count_parameters(net)
    for block in (m for m in net.modules() if isinstance(m, ResBlock)):
        cin, cout, D = block.conv1.in_channels, block.conv1.out_channels, net.cfg.emb_dim
        n -= count_parameters(block.norm1.proj) + count_parameters(block.norm2.proj)
        n += D * cout + cout + 2 * cin + 2 * cout
    n -= count_parameters(net.noise_embed) + count_parameters(net.cond_mlp)
    n += 128 * 512 + 512 + 512 * 512 + 512
    return n


def test_full_config_is_ddpm_architecture_up_to_adagn(full_net):
    """Everything but the conditioning layers is DDPM's CIFAR-10 UNet: 35.75M vs the paper's 35.7M."""
    assert _ddpm_equivalent_count(full_net) == pytest.approx(DDPM_CIFAR10_PARAMS, rel=0.005)


def test_full_config_param_count(full_net):
    """46.49M in all: DDPM's 35.75M layout plus 10.7M for the adaptive GroupNorm projections that let
    the same UNet take class or action conditioning (two Linear(512, 2C) per block instead of DDPM's
    one Linear(512, C)). The profile file and the phase README state this figure."""
    assert count_parameters(full_net) == 46_489_731


def test_full_config_forward(full_net):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = full_net(x, torch.tensor([10.0, 900.0]))
    assert y.shape == (2, 3, 32, 32) and torch.isfinite(y).all()
