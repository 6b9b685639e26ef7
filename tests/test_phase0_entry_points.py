"""Smoke runs of every phase 0 entry point, in-process, on synthetic data (seconds each)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

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
    assert m["steps"] == {"heun": 4, "euler": 3, "ddim": 5, "ddpm": 1000}[sampler]  # the steps taken, not the config's
    assert (m["eta"] is None) == (sampler != "ddim")
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
    assert "2.00 ± 0.58" in md and f"{floor['fid_proxy']:.2f} ±" in md and "pending" in md and "0.500 ± 0.100" in md


def test_target_verdicts_from_intervals():
    """Each quantitative target is judged from ranges of mean ± 2 s.e. (ratios by the delta method): met when the
    whole range is on the right side of the threshold, missed when it is wholly on the wrong side, open when it
    straddles it, and pending while a cell lacks seeds; Heun-18 against DDPM-1000 is better / worse / a tie."""
    from phase0_diffusion.experiments import SAMPLERS, markdown, verdicts
    from phase0_diffusion.sampling import tag

    def cell(mean, se, n=3, secs=0.36):
        return {"fid_proxy": mean, "fid_proxy_se": se, "seeds": list(range(n)), "seconds_per_sample": secs}

    def judge(ddim50, anc, heun, floor, edm=None, seeds=(0, 1, 2)):
        row = {"ddpm-1000-g1": anc, "ddim-50-eta0-g1": ddim50, "heun-18-g1": heun}
        r = {"seeds": list(seeds), "floor": floor,
             "samplers": {"ddpm": [row.get(tag(s)) for s in SAMPLERS],
                          "edm": [(edm or {}).get(tag(s)) for s in SAMPLERS]}}
        return [v for _, _, v in verdicts(r)], r

    anc = cell(0.38, 0.01, secs=7.6)
    v, _ = judge(cell(0.40, 0.01), anc, cell(0.30, 0.01), cell(0.11, 0.03))
    assert v[0] == "yes" and v[1] == "yes: better"
    assert v[2] == "pending: EDM model's Heun-18 (0 of 3 seeds), EDM model's DDPM-1000 (0 of 3 seeds)"
    assert v[3] == "open: the range straddles 2"  # 3.5x ± 0.96: the floor's interval is too wide to call it
    v, r = judge(cell(0.60, 0.01), anc, cell(0.45, 0.01), cell(0.11, 0.003),
                 edm={"heun-18-g1": cell(0.68, 0.05), "ddpm-1000-g1": cell(0.60, 0.05)})
    assert v == ["no", "no: worse", "yes: a tie", "no"]
    md = markdown({**r, "classifier": {"feature_dim": 8, "test_accuracy": 0.9, "reference": "test split"},
                   "num_samples": 10, "training": {}, "guidance": []})
    assert "| DDPM-1000 within 2x of the real-vs-real floor | DDPM model's DDPM-1000 0.380 ± 0.010" in md
    assert "ratio 1.58 ± 0.05; 21x less time" in md
    v, _ = judge(cell(0.45, 0.05), anc, cell(0.38, 0.02), cell(0.11, 0.003))
    assert v[0] == "open: the range straddles 1.15" and v[1] == "yes: a tie"
    v, _ = judge(cell(0.45, 0.05), cell(0.34, 0.01, n=2), cell(0.38, 0.02), cell(0.11, 0.003))
    assert v[0] == v[1] == v[3] == "pending: DDPM model's DDPM-1000 (2 of 3 seeds)"
    v, _ = judge(cell(0.45, 0.05, n=1), cell(0.34, 0.01, n=1), cell(0.38, 0.02, n=1), cell(0.11, 0.003),
                 seeds=(0,))
    assert set(v) == {"open: one seed per cell has no interval"}


def test_pairwise_matrix_judges_every_two_cells_by_the_targets_rule():
    """The pairwise block compares every two cells of a model by their ranges of mean ± 2 s.e.: '<' when the row's
    range lies wholly below the column's, '>' wholly above, '=' when they overlap (any overlap is a tie); a cell
    short of seeds has no interval and is compared with nothing; one seed per cell prints no block."""
    from phase0_diffusion.experiments import SAMPLERS, pairwise, short_name
    from phase0_diffusion.sampling import tag

    def cell(mean, se, n=3):
        return {"fid_proxy": mean, "fid_proxy_se": se, "seeds": list(range(n)), "seconds_per_sample": 1.0}

    ddpm = {"ddpm-1000-g1": cell(0.35, 0.02), "ddim-10-eta0-g1": cell(1.2, 0.1), "ddim-50-eta0-g1": cell(0.40, 0.01),
            "heun-18-g1": cell(0.45, 0.01), "heun-40-g1": cell(0.35, 0.03, n=2)}
    r = {"seeds": [0, 1, 2], "samplers": {"ddpm": [ddpm.get(tag(s)) for s in SAMPLERS], "edm": [None] * len(SAMPLERS)}}
    lines = pairwise(r)
    names = [short_name(s) for s in SAMPLERS]
    assert names[0] == "DDPM-1000" and names[-1] == "Heun-40" and len(set(names)) == len(SAMPLERS)
    rows = {tuple(c.strip() for c in ln.strip("|").split("|")[:2]): [c.strip() for c in ln.strip("|").split("|")[2:]]
            for ln in lines if ln.startswith("| DDPM |") or ln.startswith("| EDM |")}
    assert len(rows) == 2 * len(SAMPLERS)
    col = {n: i for i, n in enumerate(names)}
    anc = rows[("DDPM", "DDPM-1000")]
    assert anc[0] == "0.310-0.390" and anc[1 + col["DDPM-1000"]] == ""
    assert anc[1 + col["DDIM-10"]] == "<" and rows[("DDPM", "DDIM-10")][1 + col["DDPM-1000"]] == ">"
    assert anc[1 + col["DDIM-50"]] == "="  # 0.31-0.39 and 0.38-0.42 overlap: a tie
    assert anc[1 + col["Heun-18"]] == "<" and rows[("DDPM", "Heun-18")][1 + col["DDPM-1000"]] == ">"
    assert anc[1 + col["Heun-40"]] == "-" and rows[("DDPM", "Heun-40")][0] == "-"  # 2 of 3 seeds: no interval
    assert anc[1 + col["DDIM-20"]] == "-" and set(rows[("EDM", "Heun-18")][1:]) == {"", "-"}
    assert pairwise({**r, "seeds": [0]}) == []


def test_generation_resumes_with_the_same_draws(trained, tmp_path, monkeypatch):
    """An evaluation interrupted after a batch continues from its partial file and draws exactly the images the
    uninterrupted run draws; a partial file saved for other settings is refused, naming the file."""
    from phase0_diffusion.config import SampleConfig
    from phase0_diffusion.model import load_trained
    from phase0_diffusion.sampling import generate

    _, run = trained
    tm = load_trained(str(run))
    model, shape, classes = tm.model, tuple(tm.meta["shape"]), tm.meta["num_classes"]
    scfg = SampleConfig(sampler="euler", steps=3)
    ref, labels, _ = generate(model, scfg, 10, shape, classes, 4, "cpu", seed=5)
    partial = tmp_path / "cell.partial.pt"
    real_sample, calls = type(model).sample, []

    def flaky(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_sample(self, *a, **k)

    monkeypatch.setattr(type(model), "sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(model, scfg, 10, shape, classes, 4, "cpu", seed=5, resume=partial)
    assert torch.load(partial, weights_only=True)["done"] == 8
    monkeypatch.setattr(type(model), "sample", real_sample)
    x, lab, _ = generate(model, scfg, 10, shape, classes, 4, "cpu", seed=5, resume=partial)
    assert torch.equal(x, ref) and torch.equal(lab, labels)
    with pytest.raises(ValueError, match="cell.partial.pt.*delete it"):
        generate(model, scfg, 12, shape, classes, 4, "cpu", seed=5, resume=partial)


def test_experiments_order_and_partial_tables(trained, capsys):
    """Cheap cells first with all their seeds, then the 1000-step cells seed by seed; the command trains and
    measures only the models asked for, and its tables mark what is not measured yet."""
    from phase0_diffusion import experiments

    order = experiments.work_order(["ddpm", "edm"], [0, 1])
    dear = [(k, s.sampler, s.steps, seed) for k, s, seed in order if experiments.nfe(s) >= 1000]
    assert all(experiments.nfe(s) < 1000 for k, s, _ in order[:len(order) - len(dear)])
    assert [d[3] for d in dear] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert len(experiments.work_order(["edm"], [0], no_edm_ddpm1000=True)) == len(experiments.SAMPLERS) - 1
    only = experiments.work_order(["ddpm", "edm"], [0, 1, 2], only=["ddpm-1000"])  # the cells a verdict waits for
    assert [(k, experiments.tag(s), seed) for k, s, seed in only] == [
        (k, "ddpm-1000-g1", seed) for seed in (0, 1, 2) for k in ("ddpm", "edm")]

    root = trained[0]
    args = ["--profile", "smoke", "--root", str(root), "--num-samples", "8", "--seeds", "2", "--threads", "1"]
    res = experiments.main([*args, "--models", "cond"])
    assert all(len(c["seeds"]) == 2 for c in res["guidance"])
    assert all(c is None for c in res["samplers"]["ddpm"]) and list(res["training"]) == ["cond"]
    md = (root / "phase0" / "experiments" / "results.md").read_text()
    assert "| DDPM-1000 ancestral | 1000 | pending | - | pending | - |" in md and "exp-cond" in md
    folder = root / "phase0" / "experiments" / "evals" / "cond"
    evals = sorted(p for p in folder.glob("*.json") if p.name != "training.json")
    weights = experiments.weights_id(experiments.run_dir(str(root), "cond"))
    assert len(evals) == 12 and not list(folder.glob("*.partial.pt")) and (folder / "training.json").exists()
    assert all(json.loads(p.read_text())["weights"] == weights for p in evals)
    # a seed-1 file removed: the tables say the cell has one of two seeds; the full run measures it again
    evals[-1].unlink()
    again = experiments.main([*args, "--tables-only"])
    assert sum(len(c["seeds"]) for c in again["guidance"]) == 11
    assert "(1 of 2 seeds)" in (root / "phase0" / "experiments" / "results.md").read_text()
    # two processes share the cells: one another live process holds is passed over and named, a dead one's lock is
    # taken over (and the cell measured)
    lock = experiments.claim(evals[-1])
    assert lock is not None and experiments.claim(evals[-1]) is None
    experiments.main([*args, "--models", "cond"])
    assert not evals[-1].exists() and f"another process: {evals[-1].name}" in capsys.readouterr().out
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{socket.gethostname()} {dead.pid}")
    experiments.main([*args, "--models", "cond"])
    assert evals[-1].exists() and not lock.exists()
    # a lock whose pid now names a live process that started after the lock was written: the pid was reused
    with subprocess.Popen(["sleep", "30"]) as reused:
        lock.write_text(f"{socket.gethostname()} {reused.pid}")
        os.utime(lock, (time.time() - 100, time.time() - 100))
        assert experiments.claim(evals[-1]) == lock and lock.read_text().endswith(f" {os.getpid()}")
        lock.unlink()
        reused.kill()
    evals[-1].unlink()
    # an evaluation of other weights (a retrained model) is left out of the tables, and measuring over it is
    # refused unless --force
    stale = json.loads(evals[0].read_text())
    evals[0].write_text(json.dumps({**stale, "weights": "0" * 64}))
    assert sum(len(c["seeds"]) for c in experiments.main([*args, "--tables-only"])["guidance"]) == 10
    assert "evaluation(s) of other weights left out" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        experiments.main([*args, "--models", "cond"])
    assert e.value.code == 2 and str(evals[0]) in capsys.readouterr().err


def test_experiments_refuse_a_release_of_another_recipe(trained, tmp_path, monkeypatch):
    """With the cpu profile the tables measure the released models; a release trained otherwise than the profile
    says (here a smoke run released under the cpu name) is refused with the keys that differ."""
    from common.release import make_release
    from phase0_diffusion import experiments

    monkeypatch.setenv("WM_RELEASES", str(tmp_path / "releases"))
    make_release(trained[1], "cond-cpu")
    with pytest.raises(experiments.ReleaseMismatch, match=r"train\.max_steps: 20 \(profile: \d+\)"):
        experiments.model_source("cond", "cpu", str(tmp_path), train_own=False, extra=[])
