"""The shared training loop: data order, split-invariant randomness, NaN handling, logging of media."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from common.logger import LogConfig, RunLogger
from common.runs import TrainRunConfig
from common.stepwise import StepBatchSampler, StepRNG
from common.trainer import TrainConfig, Trainer, TrainingDiverged, setup_run


def test_step_sampler_is_a_permutation_per_epoch_and_splits_exactly():
    """Each epoch visits every index once; processes x accumulation steps partition the global batch."""
    n, G = 24, 8
    full = StepBatchSampler(n, G, micro=8, accum=1, rank=0, world=1, seed=3, start_step=0, max_steps=6)
    batches = [b for b in full]
    first_epoch = sorted(sum(batches[:3], []))
    assert first_epoch == list(range(n))
    assert sorted(sum(batches[3:6], [])) == list(range(n))
    assert batches[:3] != batches[3:6]  # a new permutation each epoch
    # 2 processes x 2 accumulation steps x micro 2 see the same global batches, split without overlap.
    parts = [list(StepBatchSampler(n, G, micro=2, accum=2, rank=r, world=2, seed=3, start_step=0, max_steps=6))
             for r in range(2)]
    for step in range(6):
        got = sum((parts[r][step * 2 + a] for a in range(2) for r in range(2)), [])
        assert sorted(got) == sorted(batches[step])
    # Starting at step 4 continues the same stream (resume).
    resumed = list(StepBatchSampler(n, G, 8, 1, 0, 1, seed=3, start_step=4, max_steps=6))
    assert resumed == batches[4:6]


def test_step_rng_does_not_depend_on_how_the_batch_is_split():
    """Noise for sample i of step s is the same whether drawn by 1 process or as a slice of 4."""
    whole = StepRNG(0, 7, offset=0, count=8, total=8, device=torch.device("cpu"))
    a, b = whole.randn(3), whole.rand()
    for off in range(0, 8, 2):
        part = StepRNG(0, 7, offset=off, count=2, total=8, device=torch.device("cpu"))
        assert torch.equal(part.randn(3), a[off:off + 2])
        assert torch.equal(part.rand(), b[off:off + 2])
    other_step = StepRNG(0, 8, 0, 8, 8, torch.device("cpu"))
    assert not torch.equal(other_step.randn(3), a)


class _Toy(nn.Module):
    """Regression whose loss turns NaN from `nan_at` forward calls on."""

    def __init__(self, nan_at: int):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.calls, self.nan_at = 0, nan_at

    def forward(self, batch, rng):
        x, y = batch
        self.calls += 1
        loss = ((self.lin(x).squeeze(1) - y) ** 2).mean()
        if self.calls >= self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": loss.item()}


def _toy_data(n=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return list(zip(x, x.sum(1)))


def test_nan_loss_stops_with_diagnostic_and_keeps_last_good_checkpoint(tmp_path):
    ctx = setup_run("toy", TrainRunConfig(root=str(tmp_path), name="nan", threads=1, precision="fp32"), {"toy": True})
    cfg = TrainConfig(max_steps=20, batch_size=8, lr=1e-2, warmup_steps=0, ckpt_every=5)
    trainer = Trainer(ctx, _Toy(nan_at=8), _toy_data(), cfg, LogConfig(progress=False, log_every=1))
    with pytest.raises(TrainingDiverged, match="step 8") as err:
        trainer.fit()
    assert "step_00000005.pt" in str(err.value)
    diag = json.loads((ctx.run.dir / "nan_diagnostic.json").read_text())
    assert diag["step"] == 7 and diag["last_good_checkpoint"].endswith("step_00000005.pt")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # no NaN step was applied
    ckpts = sorted(p.name for p in ctx.run.ckpt_dir.glob("step_*.pt"))
    assert ckpts == ["step_00000005.pt"]


def test_bf16_autocast_and_grad_accumulation_train(tmp_path):
    """The loss goes down with bf16 autocast and 4 accumulation steps (batch 16 as 4 x 4)."""
    ctx = setup_run("toy", TrainRunConfig(root=str(tmp_path), name="bf16", threads=1, precision="bf16"), {})
    assert ctx.precision.bf16 and "run.precision=bf16" in ctx.precision.reason
    cfg = TrainConfig(max_steps=60, batch_size=16, micro_batch_size=4, lr=5e-2, warmup_steps=0,
                      ckpt_every=60, ema_decay=0.9)
    trainer = Trainer(ctx, _Toy(nan_at=10**9), _toy_data(), cfg, LogConfig(progress=False, log_every=10))
    trainer.fit()
    lines = [json.loads(l) for l in ctx.run.metrics_path.read_text().splitlines()]
    losses = [l["train/loss"] for l in lines if "train/loss" in l]
    assert losses[-1] < 0.2 * losses[0]
    assert trainer.accum == 4 and (ctx.run.export_dir / "model.safetensors").exists()


def test_logger_writes_media_to_disk_and_tensorboard(tmp_path):
    log = RunLogger(tmp_path, LogConfig(), {"a": 1})
    log.log({"x": 1.5}, step=3)
    png = log.log_image("grid", torch.rand(3, 16, 16), step=3)
    mp4 = log.log_video("rollout", (np.random.rand(5, 3, 15, 17) * 255).astype(np.uint8), step=3, fps=5)
    log.close()
    assert png.exists() and mp4.exists() and mp4.with_suffix(".gif").exists()
    assert mp4.stat().st_size > 0
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["x"] == 1.5
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    assert set(ev.Tags()["images"]) == {"grid", "rollout"} and ev.Scalars("x")[0].value == 1.5


def test_wandb_offline_logging_writes_a_local_run(tmp_path, monkeypatch):
    """log.wandb=offline keeps everything on disk (no account, no network) beside the run."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = RunLogger(tmp_path, LogConfig(wandb="offline"), {"a": 1})
    log.log({"x": 2.0}, step=1)
    log.log_image("grid", torch.rand(3, 8, 8), step=1)
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
