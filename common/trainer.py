"""The one training loop every phase uses (data order and noise: common/stepwise.py).

A phase hands the Trainer a model whose `forward(batch, rng)` returns `(loss, logs)` (DIAMOND's
convention), a map-style dataset, and optional hooks for evaluation and sampling. The Trainer does the
rest: data order, gradient accumulation and clipping, EMA, precision (bf16 autocast where the hardware
computes it natively: common/precision.py), NaN/inf detection, logging,
atomic checkpoints, resume, and data parallelism across processes launched by torchrun/accelerate.

Determinism is designed in, not hoped for:
- The data order is a pure function of (seed, step) (`StepBatchSampler`), so the data position is the step.
- The randomness a loss needs (noise, noise levels, label dropout) comes from `StepRNG`, which draws
  the whole global batch's worth from a generator seeded by (seed, step) and hands each micro-batch
  its slice. So 1 process x batch 8, 2 processes x batch 4 and 1 process x 2 accumulations x 4 see
  the same samples with the same noise, and a resumed run continues exactly where it stopped.

Fault injection for tests: with the environment variable WM_FAULT_KILL_AT_STEP=N the process sends
itself SIGKILL right after finishing step N (after any checkpoint due at N), as a real crash would.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from common.checkpoint import (CheckpointManager, atomic_write, capture_rng, export_safetensors, load_checkpoint,
                               restore_rng)
from common.config import ConfigError, choice, require
from common.ema import EMA
from common.logger import LogConfig, RunLogger
from common.precision import Precision
from common.runs import Run, TrainRunConfig, open_run
from common.stepwise import StepBatchSampler, StepRNG
from common.system import DistInfo, Runtime, barrier, init_distributed, start


@dataclass
class TrainConfig:
    """Optimisation and checkpointing. Batch sizes count samples; steps count optimizer updates."""

    max_steps: int = 1000  # optimizer updates in the whole run
    batch_size: int = 64  # global batch per optimizer update (all processes, all accumulation steps)
    micro_batch_size: int = 0  # per process per forward pass; 0 = batch_size / processes (no accumulation)
    lr: float = 2e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.0  # AdamW's decoupled weight decay, on every trained parameter; 0 = none
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's (beta1, beta2): decay of the gradient's running mean / square
    warmup_steps: int = 100  # optimizer steps of linear warm-up from ~0 to lr; 0 = none
    schedule: str = "constant"  # constant | cosine (to 10% of lr) | linear (to 0) after warm-up
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    ema_decay: float = 0.999  # per-step decay of the weights' moving average (hooks and export use it); 0 = no EMA
    channels_last: bool = False  # NHWC memory format for conv nets (bf16 autocast itself is run.precision)
    ckpt_every: int = 500  # steps between checkpoints (the final step is always saved)
    keep_last: int = 3  # step checkpoints kept, besides best.pt
    best_metric: str = ""  # a metric returned by a hook that selects best.pt; "" = no best.pt
    best_mode: str = "min"  # min | max
    num_workers: int = 0  # DataLoader worker processes; 0 = load batches in the training process

    def check(self) -> None:
        for k in ("max_steps", "batch_size", "ckpt_every"):
            require(getattr(self, k) >= 1, k, getattr(self, k), "must be >= 1")
        require(self.micro_batch_size >= 0, "micro_batch_size", self.micro_batch_size, "must be >= 0 (0 = automatic)")
        require(self.lr > 0, "lr", self.lr, "must be > 0")
        require(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        require(0.0 <= self.ema_decay < 1.0, "ema_decay", self.ema_decay, "must be in [0, 1) (0 = off)")
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "betas", self.betas,
                "two numbers in [0, 1), e.g. [0.9, 0.999]")
        require(self.grad_clip >= 0, "grad_clip", self.grad_clip, "must be >= 0 (0 = off)")
        require(self.keep_last >= 1, "keep_last", self.keep_last, "must be >= 1")
        require(self.num_workers >= 0, "num_workers", self.num_workers, "must be >= 0")
        choice("schedule", self.schedule, ("constant", "cosine", "linear"))
        choice("best_mode", self.best_mode, ("min", "max"))


class TrainingDiverged(RuntimeError):
    """Loss or gradient became NaN/inf. The last good checkpoint is kept; a diagnostic file is written."""


@dataclass
class Hook:
    """Call `fn(trainer)` every `every` steps (and at the last step) on the main process.

    It may return a dict of metrics, which are logged; `train.best_metric` picks best.pt from them.
    """

    every: int
    fn: Callable[["Trainer"], dict | None]
    name: str = "hook"


@dataclass
class RunContext:
    phase: str
    run: Run
    resuming: bool
    device: torch.device
    dist: DistInfo
    threads: int
    seed: int
    config: dict = field(default_factory=dict)
    precision: Precision = field(default_factory=lambda: Precision("fp32", "default"))


def setup_run(phase: str, run_cfg: TrainRunConfig, config: dict) -> RunContext:
    """Process group, device, threads, seeds and precision, then the run folder (named by the main process).

    config.yaml records the precision actually used (run.precision: auto is resolved); system.json beside it
    says why, with the device, threads, CPU and library versions."""
    info = init_distributed()
    rt: Runtime = start(run_cfg, info.local_rank, info.local_world_size)
    # The main process names (a timestamp by default) and creates the folder; the others are told.
    holder: list = [None, None]
    if info.is_main:
        run, resuming = open_run(phase, run_cfg)
        holder = [str(run.dir), resuming]
    if info.enabled:
        dist.broadcast_object_list(holder, src=0)
    run, resuming = Run(Path(holder[0]), phase), bool(holder[1])
    config = dict(config)
    if isinstance(config.get("run"), dict):
        config["run"] = {**config["run"], "precision": rt.precision.name}
    if info.is_main:
        from omegaconf import OmegaConf
        text = OmegaConf.to_yaml(OmegaConf.create(config))
        atomic_write(run.config_path, lambda f: f.write(text.encode()))
        from common.config import last_command
        from common.system import git_state
        system = {"command": last_command(), **git_state(), "started": _dt.datetime.now().isoformat(timespec="seconds"),
                  **rt.as_dict(), "processes": info.world_size, "precision_setting": run_cfg.precision}
        path = run.dir / "system.json"
        if resuming and path.exists():  # the first start stays the record; each resume is appended
            first = json.loads(path.read_text())
            system = {**first, "resumes": first.get("resumes", []) + [system]}
        atomic_write(path, lambda f: f.write(json.dumps(system, indent=1).encode()))
        print(f"{phase}: {rt.describe()}", flush=True)
    return RunContext(phase, run, resuming, rt.device, info, rt.threads, run_cfg.seed, config, rt.precision)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - t)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))  # cosine to 10% of lr
    return f


class Trainer:
    def __init__(self, ctx: RunContext, model: nn.Module, dataset, cfg: TrainConfig, log_cfg: LogConfig,
                 hooks: list[Hook] = (), collate_fn=None):
        self.ctx, self.cfg, self.log_cfg, self.hooks = ctx, cfg, log_cfg, list(hooks)
        self.dataset, self.collate_fn = dataset, collate_fn
        self.device, self.dist = ctx.device, ctx.dist
        world = self.dist.world_size
        micro = cfg.micro_batch_size or cfg.batch_size // world
        if micro < 1 or cfg.batch_size % (micro * world):
            raise ConfigError("train.batch_size", cfg.batch_size, f"must be a multiple of train.micro_batch_size "
                              f"({micro}) x processes ({world})", {"train.micro_batch_size": cfg.micro_batch_size})
        self.micro, self.accum = micro, cfg.batch_size // (micro * world)

        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas),
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.step = 0
        self.ckpt = CheckpointManager(ctx.run.ckpt_dir, cfg.keep_last)
        if ctx.resuming:
            self._resume()
        self.ddp = (nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.enabled else None)
        self.logger = RunLogger(ctx.run.dir, log_cfg, ctx.config, enabled=self.dist.is_main)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data_position": self.sampler_position(),
            "rng": capture_rng(),
            "config": self.ctx.config,
        }

    def sampler_position(self) -> dict:
        """Where the data stream stands. The step alone determines it (StepBatchSampler); epoch and
        offset are recorded for people reading the checkpoint."""
        g, n = self.cfg.batch_size, len(self.dataset)
        return {"step": self.step, "epoch": self.step * g // n, "index_in_epoch": self.step * g % n}

    def _resume(self) -> None:
        path = self.ckpt.latest()
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        restore_rng(state["rng"])
        if self.dist.is_main:
            self._truncate_metrics(self.step)
            print(f"resumed {path} at step {self.step}")

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after the checkpoint we resume from: they will be logged again."""
        path = self.ctx.run.metrics_path
        if path.exists():
            keep = [l for l in path.read_text().splitlines(keepends=True)
                    if l.strip() and json.loads(l).get("step", 0) <= step]
            atomic_write(path, lambda f: f.write("".join(keep).encode()))

    @property
    def eval_model(self) -> nn.Module:
        """The EMA copy when there is one: what hooks sample and evaluate."""
        return self.ema.module if self.ema is not None else self.model

    def finish(self, marker: str, meta: dict, last: dict, seconds: float) -> dict:
        """After `fit`: write export/<marker>.json (what a loader needs besides the config: shapes, classes, the
        data set's identity) on the main process, print the closing line, and return what `main` returns."""
        ctx = self.ctx
        if ctx.dist.is_main:
            atomic_write(ctx.run.export_dir / f"{marker}.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))
            print(f"{ctx.run.phase}: done in {seconds:.0f} s at step {self.step}; final loss "
                  f"{last.get('train/loss', float('nan')):.4f}; results in {ctx.run.dir}", flush=True)
        return {"run_dir": str(ctx.run.dir), **last}

    # ----------------------------------------------------------------- loop
    def fit(self) -> dict:
        cfg, info = self.cfg, self.dist
        sampler = StepBatchSampler(len(self.dataset), cfg.batch_size, self.micro, self.accum, info.rank,
                                   info.world_size, self.ctx.seed, self.step, cfg.max_steps)
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                            collate_fn=self.collate_fn, pin_memory=self.device.type == "cuda")
        batches = iter(loader)
        net = self.ddp or self.model
        kill_at = int(os.environ.get("WM_FAULT_KILL_AT_STEP", "-1"))
        bar = None
        if info.is_main and self.log_cfg.progress:
            from tqdm import tqdm
            bar = tqdm(total=cfg.max_steps, initial=self.step, dynamic_ncols=True, desc=self.ctx.phase)
        window_t, window_samples, last = time.perf_counter(), 0, {}
        net.train()
        while self.step < cfg.max_steps:
            loss_sum, logs_sum = torch.zeros((), device=self.device), {}
            for a in range(self.accum):
                batch = _to_device(next(batches), self.device)
                rng = StepRNG(self.ctx.seed, self.step, (a * info.world_size + info.rank) * self.micro,
                              self.micro, cfg.batch_size, self.device)
                sync = self.ddp.no_sync() if self.ddp is not None and a < self.accum - 1 else contextlib.nullcontext()
                with sync:
                    with self.ctx.precision.autocast():
                        loss, logs = net(batch, rng)
                    (loss / self.accum).backward()
                loss_sum += loss.detach().float() / self.accum
                for k, v in logs.items():
                    logs_sum[k] = logs_sum.get(k, 0.0) + float(v) / self.accum
            if info.enabled:
                dist.all_reduce(loss_sum)
                loss_sum /= info.world_size
            grad_norm = (nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                         if cfg.grad_clip > 0 else _grad_norm(self.model))
            loss_value, grad_value = float(loss_sum), float(grad_norm)
            if not (math.isfinite(loss_value) and math.isfinite(grad_value)):
                self._diverged(loss_value, grad_value, logs_sum)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            window_samples += cfg.batch_size

            if self.step % self.log_cfg.log_every == 0 or self.step == cfg.max_steps:
                dt = time.perf_counter() - window_t
                last = {"train/loss": loss_value, "train/grad_norm": grad_value,
                        "train/lr": self.scheduler.get_last_lr()[0],
                        "train/samples_per_s": window_samples / max(dt, 1e-9),
                        **{f"train/{k}": v for k, v in logs_sum.items()}}
                self.logger.log(last, self.step)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_value:.4f}", samples_s=f"{last['train/samples_per_s']:.1f}")
                window_t, window_samples = time.perf_counter(), 0
            if bar is not None:
                bar.update(1)
            metric = self._run_hooks()
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.max_steps:
                self.save(metric)
            if self.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        if bar is not None:
            bar.close()
        self.export()
        self.logger.close()
        return last

    def _run_hooks(self) -> float | None:
        metric = None
        for hook in self.hooks:
            if self.step % hook.every == 0 or self.step == self.cfg.max_steps:
                if self.dist.is_main:
                    self.model.eval()
                    out = hook.fn(self) or {}
                    self.model.train()
                    if out:
                        self.logger.log(out, self.step)
                    if self.cfg.best_metric in out:
                        metric = float(out[self.cfg.best_metric])
                barrier(self.dist)
        return metric

    def save(self, metric: float | None = None) -> None:
        if self.dist.is_main:
            self.ckpt.save(self.state_dict(), self.step, metric, self.cfg.best_mode)
        barrier(self.dist)

    def export(self) -> Path | None:
        """Final weights (EMA when present) as safetensors, with the config beside them."""
        if not self.dist.is_main:
            return None
        return export_safetensors(self.eval_model.state_dict(), self.ctx.run.export_dir, self.ctx.config)

    def _diverged(self, loss: float, grad_norm: float, logs: dict) -> None:
        bad = [n for n, p in self.model.named_parameters()
               if not torch.isfinite(p).all() or (p.grad is not None and not torch.isfinite(p.grad).all())]
        diag = {"step": self.step, "loss": loss, "grad_norm": grad_norm, "logs": logs,
                "lr": self.scheduler.get_last_lr()[0], "nonfinite_params_or_grads": bad[:20],
                "last_good_checkpoint": str(self.ckpt.latest()) if self.ckpt.latest() else None}
        path = self.ctx.run.dir / "nan_diagnostic.json"
        if self.dist.is_main:
            path.write_text(json.dumps(diag, indent=2, default=str))
        raise TrainingDiverged(
            f"non-finite loss ({loss}) or grad norm ({grad_norm}) at step {self.step + 1}; "
            f"{len(bad)} parameters have non-finite values or grads (first: {bad[:3]}). "
            f"Diagnostic: {path}. Last good checkpoint: {diag['last_good_checkpoint']} "
            f"(resume with run.resume=true after lowering train.lr or enabling train.grad_clip).")


def _grad_norm(model: nn.Module) -> torch.Tensor:
    grads = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())
