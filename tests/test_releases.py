"""Releases (common/release.py): every shipped release loads, matches its digests and validates its config; a run
becomes a release that the resolver falls back to; a corrupt or truncated file is reported by name."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # phase 3's releases load through lerobot/transformers: never the hub

import json
import shutil
from pathlib import Path

import pytest
import torch
import urllib3  # noqa: F401  (probes IPv6 with a socket at import: done here, outside the socket-blocked tests)

from common import release
from common.config import load_saved_config
from common.runs import ReleaseError, resolve_run, verify_release
from phase1_world_model import collect, loading, train

REPO = Path(__file__).resolve().parents[1]
# The cpu-profile models the repo ships (scripts/make_releases.sh); later phases add theirs here.
EXPECTED = {"phase0/cond-cpu", "phase0/ddpm-cpu", "phase0/edm-cpu", "phase0/classifier-fashion_mnist", "phase1/diffusion-cpu", "phase1/regressor-cpu",
            "phase2/df-cpu", "phase3/base-cpu", "phase3/full-n50-cpu", "phase3/lora-r16-n50-cpu", "phase4/tok-cpu", "phase4/uwm-new-cpu",
            "phase5/scorer-cpu", "phase5/scorer-rollouts-cpu"}
SHIPPED = release.all_releases(REPO / "releases")


def load_release(folder: Path):
    """Build the model a release holds with its phase's own loader; returns (model, config)."""
    phase = folder.parent.name
    if phase == "phase0" and (folder / "classifier.json").exists():
        from phase0_diffusion.fid import Judge
        return Judge(folder).model, None
    if phase == "phase0":
        from phase0_diffusion.model import load_trained
        tm = load_trained(str(folder))
        return tm.model, tm.cfg
    if phase == "phase1":
        kind = "diffusion" if (folder / "diffusion.json").exists() else "regressor"
        tm = loading.load_trained(str(folder), kind)
        return tm.model, tm.cfg
    if phase == "phase2":
        from phase2_diffusion_forcing.loading import load_trained
        tm = load_trained(str(folder))
        return tm.model, tm.cfg
    if phase == "phase3":
        from phase3_vla.policy import load_adapter, load_policy
        info = json.loads((folder / "info.json").read_text())
        if info["kind"] == "lora":
            return load_adapter(folder / "adapter", torch.device("cpu"))[0], None
        return load_policy(folder / "policy", torch.device("cpu"))[0], None
    if phase == "phase4":
        from phase4_uwm import loading as p4
        if (folder / "tokenizer.json").exists():
            tm = p4.load_tokenizer(str(folder))
            return tm.model, tm.cfg
        tm = p4.load_uwm(str(folder))
        return tm.model, tm.cfg
    if phase == "phase5" and (folder / "progress_scorer.json").exists():
        from phase5_integration.loading import load_scorer
        tm = load_scorer(str(folder), "outputs", "cpu")
        return tm.model, tm.cfg
    raise AssertionError(f"no loader for {folder}")


def test_the_expected_releases_are_shipped():
    assert {f"{p.parent.name}/{p.name}" for p in SHIPPED} >= EXPECTED
    total = sum(p.stat().st_size for p in (REPO / "releases").rglob("*") if p.is_file())
    assert total <= release.MAX_TOTAL_BYTES


@pytest.mark.parametrize("folder", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_every_release_verifies_and_loads(folder):
    manifest = verify_release(folder)
    assert sum(f["bytes"] for f in manifest["files"].values()) <= release.MAX_RELEASE_BYTES
    prov = manifest["provenance"]
    assert prov["command"].startswith("python -m ") and prov["git_commit"] and prov["data"] and prov["machine"]["cpu"]
    model, cfg = load_release(folder)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    if cfg is not None:  # the saved config still validates against today's schema
        assert load_saved_config(type(cfg), folder / "config.yaml") == cfg


def test_git_treats_release_files_as_binary():
    attrs = (REPO / ".gitattributes").read_text()
    assert "releases/** binary" in attrs


# ---------------------------------------------------------------- a smoke run made into a release

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    collect.main(["profile=smoke", f"run.root={root}"])
    train.main(["profile=smoke", f"run.root={root}", "run.name=diff"])
    return root / "phase1" / "diff"


@pytest.fixture
def releases(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "releases"
    monkeypatch.setenv("WM_RELEASES", str(path))
    return path


def test_a_run_becomes_a_release_the_resolver_falls_back_to(smoke_run, releases, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(release, "HALF_ABOVE_BYTES", 0)  # store this tiny model in float16 too
    out = release.make_release(smoke_run, "diffusion-smoke")
    assert out == releases / "phase1" / "diffusion-smoke"
    manifest = json.loads((out / "release.json").read_text())
    assert set(manifest["files"]) >= {"model.safetensors", "config.yaml", "diffusion.json", "metrics.json"}
    assert manifest["weights"]["model.safetensors"]["dtype"] == "float16"
    prov = manifest["provenance"]
    assert "phase1_world_model.train profile=smoke" in prov["command"]
    assert prov["data"]["game"] == "Breakout" and len(prov["data"]["index_sha256"]) == 16
    metrics = json.loads((out / "metrics.json").read_text())
    assert "train/loss" in metrics["final"]

    empty = tmp_path / "fresh-clone-outputs"  # no local run at all: "latest" falls back to the release
    run = resolve_run("phase1", "latest", empty, require="export/diffusion.json")
    assert run.release and run.dir == out and "using the release phase1/diffusion-smoke" in capsys.readouterr().err
    assert resolve_run("phase1", "release", smoke_run.parents[1], require="export/diffusion.json").dir == out
    rel = loading.load_trained("release", "diffusion", str(empty))
    orig = loading.load_trained(str(smoke_run), "diffusion")
    for (k, a), b in zip(orig.model.state_dict().items(), rel.model.state_dict().values()):
        assert a.dtype == b.dtype and torch.allclose(a, b, rtol=1e-3, atol=1e-4), k  # float16 rounding only
    with pytest.raises(ReleaseError, match="exists"):
        release.make_release(smoke_run, "diffusion-smoke")


def test_store_half_converts_a_float32_release_in_place(smoke_run, releases, monkeypatch):
    """A release made with --fp32 stored in float16 afterwards: the weights load within float16 rounding, the
    manifest verifies, keeps its provenance and "created" date and records the float32 file it replaced."""
    monkeypatch.setattr(release, "HALF_ABOVE_BYTES", 0)
    out = release.make_release(smoke_run, "diffusion-smoke", half=False)
    before = json.loads((out / "release.json").read_text())
    assert before["weights"] == "as trained (float32)"
    orig = loading.load_trained(str(out), "diffusion")
    assert release.main(["--store-half", str(out)]) == 0
    after = verify_release(out)
    w = after["weights"]["model.safetensors"]
    assert w["dtype"] == "float16" and w["float32_sha256"] == before["files"]["model.safetensors"]["sha256"]
    assert after["files"]["model.safetensors"]["bytes"] < 0.6 * before["files"]["model.safetensors"]["bytes"]
    assert after["created"] == before["created"] and after["provenance"] == before["provenance"]
    half = loading.load_trained(str(out), "diffusion")
    for (k, a), b in zip(orig.model.state_dict().items(), half.model.state_dict().values()):
        assert a.dtype == b.dtype and torch.allclose(a, b, rtol=1e-3, atol=1e-4), k
    with pytest.raises(ReleaseError, match="no float32 weight file"):
        release.store_half(out)


def test_a_release_needs_its_data_and_collects_it(smoke_run, releases, tmp_path):
    """Play/evaluate on a fresh clone: the data set recorded in the release is collected with its settings."""
    release.make_release(smoke_run, "diffusion-smoke")
    empty = tmp_path / "fresh"
    tm = loading.load_trained("latest", "diffusion", str(empty))
    folder = loading.data_of(tm, str(empty))
    assert folder == empty / "phase1" / "datasets" / "Breakout"
    from phase1_world_model.storage import dataset_identity
    assert dataset_identity(folder)["index_sha256"] == tm.meta["data"]["index_sha256"]  # the same episodes


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_release_file_is_named(smoke_run, releases, damage):
    out = release.make_release(smoke_run, "diffusion-smoke")
    weights = out / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        weights.unlink()
    with pytest.raises(ReleaseError, match=str(weights)):
        resolve_run("phase1", "release", "outputs", require="export/diffusion.json")
    assert release.main(["--verify"]) == 1


def test_release_refuses_an_unfinished_run(tmp_path, releases):
    run = tmp_path / "phase1" / "half-done"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ReleaseError, match="not a finished run"):
        release.make_release(run)
    assert release.main([str(run)]) == 2
    shutil.rmtree(run)


# ---------------------------------------------------------------- what works right after `make setup`

def _shipped(name: str) -> Path:
    folder = REPO / "releases" / name
    if not (folder / "release.json").exists():
        pytest.fail(f"{folder} is not shipped (see test_the_expected_releases_are_shipped)")
    return folder


def test_fresh_clone_phase0_sample_uses_the_release(tmp_path, capsys):
    from phase0_diffusion import sample
    _shipped("phase0/cond-cpu")
    png = sample.main([f"run.root={tmp_path}", "sample.num=10", "sample.sampler=euler", "sample.steps=3",
                       "run.precision=fp32"])
    assert Path(png).exists() and Path(png).is_relative_to(tmp_path / "phase0" / "release-cond-cpu")
    assert "using the release phase0/cond-cpu" in capsys.readouterr().err


def test_fresh_clone_phase1_play_and_env_use_the_release(tmp_path):
    from phase1_world_model import play
    from phase1_world_model.wm_env import WorldModelEnv
    _shipped("phase1/diffusion-cpu")
    rep = play.main([f"run.root={tmp_path}", "mode=headless", "frames=3", "run.precision=fp32"])
    assert rep["steps"] == 3 and Path(rep["video"]).is_relative_to(tmp_path)
    env = WorldModelEnv.from_run("release", str(tmp_path), precision="fp32")  # the data set collect made above
    obs, _ = env.reset(seed=0)
    obs2, reward, terminated, truncated, info = env.step(1)
    assert obs2.shape == obs.shape == (64, 64, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lora-r16-n50-cpu", "full-n50-cpu"])
def test_phase3_evaluate_plays_a_release(name, tmp_path):
    """`python -m phase3_vla.evaluate load=release:<name>` on a fresh root: the policy (a LoRA adapter on its base
    release) loads, its training starts (and its base's) are checked against the evaluation state, and one short
    episode (the smoke profile's 6-step limit) is played at the release's 128 px; nothing is written to releases/."""
    from phase3_vla import evaluate

    res = evaluate.main(["profile=smoke", f"run.root={tmp_path}", f"load=release:{name}", "eval.episodes=1",
                         "eval.videos=0"])
    assert res["total"]["episodes"] == 1 and "none shared" in res["starts_check"]
    assert Path(res["out"]).is_relative_to(tmp_path)
    info = json.loads((REPO / "releases" / "phase3" / name / "info.json").read_text())
    assert len(info["train_starts"]) == 50 and len(info["base_train_starts"]) == 180
