"""Smoke runs of every phase 0 entry point, in-process, on synthetic data (seconds each)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from phase0_diffusion import classifier, demo, evaluate, sample, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A class-conditional smoke model and a synthetic-data classifier under one outputs root."""
    root = tmp_path_factory.mktemp("outputs")
    classifier.main([f"run.root={root}", "data.name=synthetic", "train.max_steps=30", "log.progress=false"])
    out = train.main(["profile=smoke", f"run.root={root}", "run.name=cond", "diffusion.class_conditional=true"])
    return root, Path(out["run_dir"])


def test_train_writes_a_complete_run_folder(trained):
    _, run = trained
    for rel in ("config.yaml", "metrics.jsonl", "checkpoints/step_00000020.pt", "export/model.safetensors",
                "export/config.yaml", "export/data.json", "media/samples_00000020.png"):
        assert (run / rel).exists(), rel
    assert list((run / "tb").glob("events.out.tfevents.*"))


def test_smoke_training_loss_decreases(tmp_path):
    out = train.main(["profile=smoke", f"run.root={tmp_path}", "run.name=loss", "train.max_steps=60",
                      "log.log_every=1"])
    losses = [json.loads(l)["train/loss"] for l in (Path(out["run_dir"]) / "metrics.jsonl").read_text().splitlines()
              if "train/loss" in l]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize("sampler,steps", [("heun", 4), ("euler", 3), ("ddim", 5), ("ddpm", 0)])
def test_eval_every_sampler_writes_metrics(trained, sampler, steps):
    root, run = trained
    m = evaluate.main([f"load={run}", f"run.root={root}", f"sample.sampler={sampler}", f"sample.steps={max(steps, 1)}",
                       "sample.guidance=2", "num_samples=16" if sampler != "ddpm" else "num_samples=4"])
    assert m["fid_proxy"] >= 0 and 0 <= m["class_accuracy"] <= 1 and m["seconds_per_sample"] > 0
    assert m["nfe"] == {"heun": 7, "euler": 3, "ddim": 5, "ddpm": 1000}[sampler]
    assert list((run / "eval").glob(f"{sampler}-*.json"))


def test_sample_writes_a_grid(trained):
    root, run = trained
    path = sample.main([f"load={run}", f"run.root={root}", "sample.num=8", "sample.steps=3", "sample.sampler=euler"])
    assert Path(path).exists()


def test_eval_without_classifier_names_the_command(tmp_path, capsys):
    out = train.main(["profile=smoke", f"run.root={tmp_path}", "run.name=x", "train.max_steps=2"])
    with pytest.raises(SystemExit) as e:  # a user error: one line on stderr, exit 2
        evaluate.main([f"load={out['run_dir']}", f"run.root={tmp_path}", "num_samples=4"])
    assert e.value.code == 2
    assert "python -m phase0_diffusion.classifier data.name=synthetic" in capsys.readouterr().err


def test_eval_latest_without_runs_names_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WM_RELEASES", str(tmp_path / "no-releases"))  # no run and no release to fall back to
    with pytest.raises(SystemExit) as e:
        evaluate.main([f"run.root={tmp_path}"])
    assert e.value.code == 2 and "python -m phase0_diffusion.train" in capsys.readouterr().err


def test_ddpm_process_trains_and_samples(tmp_path):
    out = train.main(["profile=smoke", f"run.root={tmp_path}", "run.name=ddpm", "diffusion.process=ddpm",
                      "model.unet.noise_embedding=sinusoidal", "diffusion.ddpm.prediction=v",
                      "sample.sampler=ddim", "sample.steps=5"])
    assert (Path(out["run_dir"]) / "media" / "samples_00000020.png").exists()


def test_demo_smoke(tmp_path, capsys):
    demo.main(["--smoke", f"run.root={tmp_path}"])
    text = capsys.readouterr().out
    assert "demo finished" in text and "sample grid" in text
    assert list((tmp_path / "phase0").glob("demo-*/eval/heun-18-g2.json"))
