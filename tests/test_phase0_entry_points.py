"""Smoke runs of every phase 0 entry point, in-process, on synthetic data (seconds each)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def test_real_vs_real_floor_and_seed_cells(trained):
    """The floor: real images scored by the judge, per seed, deterministic, larger for fewer images (the finite-
    sample bias every FID-proxy carries); a cell is the mean and standard error of its seeds, and the table
    prints both with the floor."""
    from phase0_diffusion.config import DataConfig
    from phase0_diffusion.data import build_split
    from phase0_diffusion.experiments import markdown, over_seeds
    from phase0_diffusion.fid import load_judge, real_floor

    judge = load_judge("latest", "synthetic", root=str(trained[0]))
    images = build_split(DataConfig(name="synthetic"), judge.info["in_channels"], "train").images
    small, large = real_floor(judge, images, 16, [0, 1, 2]), real_floor(judge, images, 60, [0, 1, 2])
    assert small == real_floor(judge, images, 16, [0, 1, 2]) and len(set(small)) == 3
    assert np.mean(small) > np.mean(large) > 0
    with pytest.raises(ValueError, match="needs n="):
        real_floor(judge, images, len(images) + 1, [0])
    cell = over_seeds([{"fid_proxy": v, "seconds_per_sample": 0.1, "sampler": "heun", "steps": 18, "nfe": 35,
                        "seed": s} for s, v in enumerate([1.0, 2.0, 3.0])])
    assert cell["fid_proxy"] == 2.0 and cell["fid_proxy_se"] == pytest.approx(1 / np.sqrt(3)) and cell["seeds"] == [0, 1, 2]
    floor = over_seeds([{"fid_proxy": v, "seed": s} for s, v in enumerate(small)])
    r = {"classifier": {"feature_dim": 128, "test_accuracy": 0.9, "reference": "synthetic test split"},
         "floor": floor, "num_samples": 32, "seeds": [0, 1, 2], "training": {},
         "samplers": {"ddpm": [cell], "edm": [None]}, "guidance": [{**cell, "guidance": 1.0, "class_accuracy": 0.5,
                                                                    "class_accuracy_se": 0.1}]}
    md = markdown(r)
    assert "2.00 ± 0.58" in md and f"{floor['fid_proxy']:.2f} ±" in md and "not run" in md and "0.500 ± 0.100" in md
