"""Precision chosen from the hardware (common/precision.py): `auto` follows the measured probe, explicit settings
win, every run records what it used and why, and the old `bf16` spellings still work."""
from __future__ import annotations

import json

import pytest
import torch

from common import precision
from common.config import ConfigError, load_config
from common.precision import Probe, resolve_precision
from common.runs import TrainRunConfig
from common.trainer import setup_run

FAST = Probe(fp32_gflops=150.0, bf16_gflops=600.0, threads=2)  # AMX / AVX-512 BF16 class
SLOW = Probe(fp32_gflops=128.0, bf16_gflops=0.8, threads=2)  # AVX2 only: bf16 emulated
TIE = Probe(fp32_gflops=150.0, bf16_gflops=160.0, threads=2)  # no real gain: not worth the precision


@pytest.fixture
def probe(monkeypatch):
    def use(p: Probe):
        monkeypatch.setattr(precision, "probe_cpu", lambda: p)
    return use


@pytest.mark.parametrize("p, want", [(FAST, "bf16"), (SLOW, "fp32"), (TIE, "fp32")])
def test_auto_on_cpu_follows_the_probe(probe, p, want):
    probe(p)
    got = resolve_precision("auto", "cpu")
    assert got.name == want and got.bf16 == (want == "bf16")
    assert f"{p.bf16_gflops:.1f}" in got.reason and f"{p.fp32_gflops:.1f}" in got.reason  # the evidence is stated


def test_explicit_settings_win_and_slow_bf16_is_flagged(probe):
    probe(SLOW)
    assert resolve_precision("fp32", "cpu").name == "fp32"
    forced = resolve_precision("bf16", "cpu")
    assert forced.name == "bf16" and "WARNING" in forced.reason
    probe(FAST)
    assert "WARNING" not in resolve_precision("bf16", "cpu").reason
    with pytest.raises(ConfigError, match="run.precision"):
        resolve_precision("fp16", "cpu")


def test_auto_on_cuda_asks_the_device_and_elsewhere_is_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "fake GPU")
    for supported, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert resolve_precision("auto", "cuda").name == want
    assert resolve_precision("auto", "mps").name == "fp32"


def test_autocast_is_bf16_only_when_chosen():
    x = torch.randn(4, 4)
    with precision.Precision("bf16", "t").autocast():
        assert (x @ x).dtype == torch.bfloat16
    with precision.Precision("fp32", "t").autocast():
        assert (x @ x).dtype == torch.float32


def test_the_real_probe_measures_something():
    p = precision.probe_cpu()
    assert p.fp32_gflops > 0 and p.bf16_gflops > 0 and p.threads == torch.get_num_threads()


def test_a_run_records_the_precision_it_used_and_why(probe, tmp_path):
    probe(SLOW)
    ctx = setup_run("toy", TrainRunConfig(root=str(tmp_path), name="r", threads=1), {"run": {"precision": "auto"}})
    assert ctx.precision.name == "fp32"
    system = json.loads((ctx.run.dir / "system.json").read_text())
    assert system["precision"] == "fp32" and system["precision_setting"] == "auto"
    assert "0.8" in system["precision_reason"] and system["command"]
    assert "precision: fp32" in (ctx.run.dir / "config.yaml").read_text()  # the resolved value, not "auto"


def test_old_bf16_spellings_become_run_precision(capsys):
    from common.config import cli
    from phase0_diffusion.config import Phase0Config
    from phase0_diffusion.config import EvalRunConfig

    cfg = cli(Phase0Config, "phase0/train", ["profile=smoke", "train.bf16=true"])
    assert cfg.run.precision == "bf16" and "`train.bf16=` is now `run.precision=`" in capsys.readouterr().err
    cfg = cli(EvalRunConfig, "phase0/evaluate", ["bf16=false", "root=/tmp/x", "run=/tmp/some-run"])
    assert (cfg.run.precision, cfg.run.root, cfg.load) == ("fp32", "/tmp/x", "/tmp/some-run")
    assert load_config(Phase0Config, "phase0/train", ["profile=cpu"]).run.precision == "auto"  # the default


def test_keep_freed_memory_sets_glibc_malloc_options():
    """On glibc Linux both mallopt calls must be accepted (a refused value returns False); elsewhere a no-op."""
    import platform
    import subprocess
    import sys
    code = "from common.system import keep_freed_memory as k; print(k(), k(1 << 20, 1 << 30))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert out.stdout.split() == (["True", "True"] if glibc else ["False", "False"])
    with pytest.raises(ValueError, match="trim_bytes"):
        __import__("common.system").system.keep_freed_memory(trim_bytes=2**31)
