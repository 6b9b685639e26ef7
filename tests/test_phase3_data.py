"""Phase 3 demonstrations: staging files, attempt planning, the LeRobotDataset writer, and a smoke collection
that is killed after its first kept episode and continued by the same command.

The writer round trip uses synthetic demonstrations; the smoke collection renders two real LIBERO-Object
episodes (64 px, both cameras) - the one slow part, ~20-50 s depending on the machine's load.
"""
from __future__ import annotations

import json
from dataclasses import asdict
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import urllib3  # noqa: F401  (probes IPv6 with a socket at import: done here, outside the socket-blocked tests)
from conftest import REPO, subprocess_env
from phase3_vla import collect, staging
from phase3_vla.dataset import IMAGE_KEYS, open_dataset, write_lerobot_dataset
from phase3_vla.staging import CorruptStagedFileError, Demo
from phase3_vla.starts import StartRecord

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _demo(task: int, attempt: int, steps: int = 6, size: int = 16, seed: int = 0) -> Demo:
    rng = np.random.default_rng([seed, task, attempt])
    return Demo(agentview=rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
                wrist=rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
                state=rng.normal(size=(steps, 8)).astype(np.float32),
                action=rng.uniform(-1, 1, (steps, 7)).astype(np.float32),
                meta={"format_version": staging.FORMAT_VERSION, "task_id": task, "attempt": attempt,
                      "start": asdict(StartRecord(task, "sampled", 1000 * task + attempt, rng.normal(size=110).tolist(),
                                                  poses={"item_1": rng.normal(size=7).tolist()})),
                      "instruction": f"pick up item {task} and place it in the basket", "task_name": f"t{task}",
                      "steps": steps, "seconds": 1.0, "settings": {"seed": 0}})


# ---------------------------------------------------------------- staging files

def test_staged_demo_round_trip_and_corruption(tmp_path):
    d = _demo(3, 7)
    path = staging.save_demo(tmp_path, d)
    assert path == tmp_path / "task_03" / "attempt_0007.npz"
    back = staging.load_demo(path)
    for k in ("agentview", "wrist", "state", "action"):
        assert np.array_equal(getattr(back, k), getattr(d, k))
    assert back.meta == d.meta
    staging.save_failure(tmp_path, {**d.meta, "attempt": 8, "failure": "no success within 280 steps"})
    found = staging.scan(tmp_path)
    assert found.done(3) == {7: True, 8: False} and not found.corrupt

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the image arrays
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStagedFileError, match="attempt_0007.npz"):
        staging.load_demo(path)
    found = staging.scan(tmp_path)
    assert [e.path.name for e in found.corrupt] == ["attempt_0007.npz"] and found.done(3) == {8: False}

    bad = _demo(3, 9)
    bad.state = bad.state[:-1]
    with pytest.raises(CorruptStagedFileError, match="state"):
        staging.encode_demo(bad)  # a malformed demonstration is never written
    renamed = tmp_path / "task_03" / "attempt_0010.npz"
    staging.save_demo(tmp_path, _demo(3, 11)).rename(renamed)
    assert any("renamed" in e.reason for e in staging.scan(tmp_path).corrupt)


def test_kill_during_staging_write_leaves_only_a_tmp(tmp_path):
    code = ("import sys; from pathlib import Path; from test_phase3_data import _demo; from phase3_vla import staging\n"
            "staging.save_demo(Path(sys.argv[1]), _demo(2, 5))")
    env = subprocess_env(**{staging.FAULT_ENV: "2:5"})
    env["PYTHONPATH"] += os.pathsep + str(REPO / "tests")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, env=env, capture_output=True, timeout=120)
    assert p.returncode == -signal.SIGKILL
    assert not staging.demo_path(tmp_path, 2, 5).exists()
    found = staging.scan(tmp_path)
    assert [p.name for p in found.leftovers] == ["attempt_0005.npz.tmp"] and not found.corrupt and not found.demos


def test_plan_replaces_failures_and_selection_is_order_free():
    assert collect.plan({}, 3, 6) == [0, 1, 2]
    assert collect.plan({0: True, 1: False, 2: True}, 3, 6) == [3]
    assert collect.plan({0: True, 1: False, 2: True, 3: False}, 3, 6) == [4]
    assert collect.plan({0: False, 1: False}, 3, 4) == [2, 3]  # capped by max_attempts
    assert collect.plan({0: True, 1: True, 2: True, 3: True}, 3, 6) == []
    assert collect.plan({1: True}, 2, 6) == [0]  # an attempt finished out of order counts
    assert collect.selection({4: True, 0: True, 1: False, 2: True, 5: True}, 3) == [0, 2, 4]


# ---------------------------------------------------------------- LeRobotDataset writer

def test_writer_round_trips_through_lerobot(tmp_path):
    demos = [_demo(1, 0, steps=5), _demo(1, 2, steps=4), _demo(4, 0, steps=6)]
    root = tmp_path / "ds"
    info = write_lerobot_dataset(root, "local/test_rt", demos, fps=20)
    assert info == {"episodes": 3, "frames": 15, "tasks": sorted({d.meta["instruction"] for d in demos})}
    ds = open_dataset(root)
    assert (ds.num_episodes, ds.num_frames, ds.fps) == (3, 15, 20)
    f = ds.meta.features
    assert f[IMAGE_KEYS["agentview"]]["dtype"] == "image" and tuple(f[IMAGE_KEYS["wrist"]]["shape"]) == (16, 16, 3)
    assert tuple(f["observation.state"]["shape"]) == (8,) and tuple(f["action"]["shape"]) == (7,)
    assert not ds.meta.video_keys  # images, no codec
    i = 0
    for d in demos:
        for t in range(d.length):
            item = ds[i]
            assert item["task"] == d.meta["instruction"]
            img = item[IMAGE_KEYS["agentview"]]
            assert tuple(img.shape) == (3, 16, 16)
            assert np.array_equal((img.numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0), d.agentview[t])
            assert np.allclose(item["observation.state"].numpy(), d.state[t])
            assert np.allclose(item["action"].numpy(), d.action[t])
            i += 1
    # What training reads: action chunks by timestamp, clipped at episode ends.
    chunked = open_dataset(root, delta_timestamps={"action": [0.0, 0.05, 0.1]})
    item = chunked[4]  # last frame of episode 0 (5 frames): the chunk is padded past its end
    assert tuple(item["action"].shape) == (3, 7) and item["action_is_pad"].tolist() == [False, True, True]
    # Rewriting replaces the dataset as a whole.
    write_lerobot_dataset(root, "local/test_rt", demos[:1], fps=20)
    assert open_dataset(root).num_episodes == 1 and not root.with_name("ds.tmp").exists()


# ---------------------------------------------------------------- smoke collection, killed and resumed

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """profile=smoke (task 9 = new, task 2 = base, 1 demo each), SIGKILLed right after the first kept
    attempt (the new task's), then continued by the same command in this process."""
    out = tmp_path_factory.mktemp("demos")
    env = subprocess_env(**{staging.FAULT_ENV: "9:0:after"})
    # Its own session: the fault kills the whole process group (as a machine going down would), not pytest.
    first = subprocess.run([sys.executable, "-m", "phase3_vla.collect", "profile=smoke", f"out={out}"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=600, start_new_session=True)
    summary = collect.main(["profile=smoke", f"data.folder={out}"])
    return {"out": out, "first": first, "summary": summary}


@pytest.mark.slow
def test_smoke_collect_resumes_after_kill(smoke):
    out, first, s = smoke["out"], smoke["first"], smoke["summary"]
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert "round 1: 2 attempt(s)" in first.stdout
    assert "`out=` is now `data.folder=`" in first.stderr  # the old spelling still works, with a note
    # The second run played only what the first had not kept, and both datasets exist.
    assert s["this_run"]["played"] == 1 and s["this_run"]["successes"] == 1
    assert {t["task_id"]: t["kept"] for t in s["tasks"]} == {9: 1, 2: 1}
    assert staging.demo_path(out / "staging", 9, 0).exists() and staging.demo_path(out / "staging", 2, 0).exists()
    assert (out / "media" / "demos.mp4").stat().st_size > 0 and (out / "media" / "demos.gif").stat().st_size > 0
    page = (out / "stats.md").read_text()
    assert "pick up the orange juice and place it in the basket" in page and "| 9 | new |" in page
    assert json.loads((out / "summary.json").read_text())["datasets"]["new"]["repo_id"] == "local/libero_object_new"


@pytest.mark.slow
def test_smoke_datasets_read_back_with_lerobot(smoke):
    out = smoke["out"]
    for name, task, instruction in (("new", 9, "pick up the orange juice and place it in the basket"),
                                    ("base", 2, "pick up the salad dressing and place it in the basket")):
        demo = staging.load_demo(staging.demo_path(out / "staging", task, 0))
        ds = open_dataset(out / "lerobot" / name)
        assert ds.repo_id == f"local/libero_object_{name}"
        assert (ds.num_episodes, ds.num_frames, ds.fps) == (1, demo.length, 20)
        assert list(ds.meta.tasks.index) == [instruction]
        first, last = ds[0], ds[demo.length - 1]
        assert first["task"] == instruction
        for key, arr in (("agentview", demo.agentview), ("wrist", demo.wrist)):
            img = first[IMAGE_KEYS[key]]
            assert tuple(img.shape) == (3, 64, 64)
            assert np.array_equal((img.numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0), arr[0])
        assert np.allclose(first["observation.state"].numpy(), demo.state[0])
        assert np.allclose(last["action"].numpy(), demo.action[-1])
        assert demo.action[0, 6] == -1.0 and (demo.action[:, 6] == 1.0).any()  # opens, then grasps
        assert np.abs(demo.action).max() <= 1.0


@pytest.mark.slow
def test_smoke_demos_start_from_sampled_placements_recorded_exactly(smoke):
    """Each demonstration starts from a placement sampled with its recorded seed, never from a fixed initial
    state, and its start (state vector, digest, object poses) round-trips through the data set: replaying the
    seed in a fresh env gives the same state vector, bit for bit, and the same poses."""
    from phase3_vla.config import LiberoConfig
    from phase3_vla.libero_env import make_env
    from phase3_vla.starts import check_disjoint, fixed_states, placement_seed, read_starts, state_digest

    out = smoke["out"]
    for name, task in (("new", 9), ("base", 2)):
        (rec,) = read_starts(out / "lerobot" / name)
        staged = staging.load_demo(staging.demo_path(out / "staging", task, 0)).meta["start"]
        assert (rec.task_id, rec.kind, rec.seed, rec.episode_index) == (task, "sampled", placement_seed(0, task, 0), 0)
        assert rec.state == staged["state"] and rec.digest == state_digest(rec.state) and len(rec.state) == 110
        assert {"orange_juice_1" if task == 9 else "salad_dressing_1", "basket_1"} <= set(rec.poses)
        assert check_disjoint([rec], {task: range(50)}) == 50  # none of the 50 fixed states
        assert not any(np.array_equal(np.asarray(rec.state), s) for s in fixed_states(task))
    env = make_env(LiberoConfig(image_size=64), 9, cameras=False)
    (rec,) = read_starts(out / "lerobot" / "new")
    env.reset(placement_seed=rec.seed)
    assert np.array_equal(env.start_state, np.asarray(rec.state)) and env.start_poses == rec.poses
    env.close()


@pytest.mark.slow
def test_initial_states_table(smoke):
    """The spread measurement: task 9's orange juice and basket over LIBERO's 50 fixed states and the one sampled
    demonstration start of the smoke collection."""
    from phase3_vla import initial_states

    page = initial_states.main(["--tasks", "9", "--folder", str(smoke["out"])])
    rows = [line.split(" | ") for line in page.splitlines() if line.startswith("| 9 |")]
    assert [r[1] for r in rows] == ["orange_juice_1", "basket_1"] and all(r[2] == "50" and r[6] == "1" for r in rows)
    assert (smoke["out"] / "initial_states.md").read_text() == page


@pytest.mark.slow
def test_rerun_plays_nothing_and_keeps_the_datasets(smoke):
    out = smoke["out"]
    marker = out / "lerobot" / "new" / "meta" / "info.json"
    before = marker.stat().st_mtime_ns
    s = collect.main(["profile=smoke", f"data.folder={out}", "videos=0"])
    assert s["this_run"]["played"] == 0 and s["datasets"]["new"].get("reused")
    assert marker.stat().st_mtime_ns == before


@pytest.mark.slow
def test_corrupt_staged_file_is_reported_by_name(smoke, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(smoke["out"] / "staging", out / "staging")
    victim = staging.demo_path(out / "staging", 2, 0)
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as e:
        collect.main(["profile=smoke", f"data.folder={out}", "--verify"])
    assert e.value.code == 1 and "CORRUPT" in capsys.readouterr().out
    victim.write_bytes(bytes(data[: len(data) // 2]))  # truncated: even its metadata is unreadable
    with pytest.raises(SystemExit) as e:
        collect.main(["profile=smoke", f"data.folder={out}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and str(victim) in err and "repair=true" in err


@pytest.mark.slow
def test_other_settings_are_refused(smoke, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(smoke["out"] / "staging", out / "staging")
    with pytest.raises(SystemExit) as e:
        collect.main(["profile=smoke", f"data.folder={out}", "expert.lift_z=0.25"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "expert.lift_z=0.3 (this run: 0.25)" in err and "data.folder=" in err


def test_config_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        collect.main(["profile=smoke", "base_tasks=[9]"])
    assert e.value.code == 2 and "base_tasks" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        collect.main(["profile=nope"])
    assert e.value.code == 2 and "smoke" in capsys.readouterr().err
