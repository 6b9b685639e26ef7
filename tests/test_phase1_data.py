"""Phase 1 data: env protocol, action alignment, storage, resumable collection, corrupt files, dataset, show_batch.

Everything runs on a few full Breakout episodes (random play loses 5 lives in ~150-300 agent steps,
well under a second each) or on 2 capped ones; nothing is downloaded (the ROMs are in ale-py's wheel).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from common.runs import ArtifactNotFoundError
from conftest import run_module, subprocess_env
from phase1_world_model import collect, show_batch
from phase1_world_model.recording import FAULT_ENV, episode_rngs
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model.envs import canonical_game, make_atari
from phase1_world_model.storage import (CorruptDatasetError, CorruptEpisodeError, episode_name, load_episode,
                                        save_episode, split_of)

EPISODES = 3  # full Breakout episodes; with test_fraction 1/3 episode 2 is the test split


def _collect(root: Path, *overrides: str) -> dict:
    return collect.main([f"run.root={root}", f"episodes={EPISODES}", "test_fraction=0.34", "progress_every=0",
                         *overrides])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A 3-episode Breakout data set (sticky_random, full games) shared by the read-only tests."""
    root = tmp_path_factory.mktemp("outputs")
    _collect(root)
    return root / "phase1" / "datasets" / "Breakout"


def _copy(data: Path, tmp_path: Path) -> Path:
    """A private copy of the shared data set, for tests that damage it (same root layout)."""
    dst = tmp_path / "phase1" / "datasets" / "Breakout"
    shutil.copytree(data, dst)
    return dst


# ---------------------------------------------------------------- env protocol

def test_env_protocol_defaults():
    env = make_atari("breakout")
    obs, info = env.reset(seed=1)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert 1 <= info["noops"] <= 30 and info["lives"] == 5 and info["life_loss"] is False
    assert env.unwrapped.get_action_meanings() == ["NOOP", "FIRE", "RIGHT", "LEFT"]  # minimal set
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == 0.0  # no sticky actions
    frame_before = ale.getEpisodeFrameNumber()
    env.step(0)
    assert ale.getEpisodeFrameNumber() - frame_before == 4  # action repeat 4
    assert make_atari("Pong").unwrapped.get_action_meanings()[0] == "NOOP"
    assert canonical_game("BreakoutNoFrameskip-v4") == canonical_game("ALE/Breakout-v5") == "Breakout"
    with pytest.raises(ValueError, match="Breakout"):
        canonical_game("Breakot")


def test_reset_seed_reproduces_the_start_and_noops_vary():
    env = make_atari("Breakout")
    a, info_a = env.reset(seed=7)
    b, info_b = env.reset(seed=7)
    assert np.array_equal(a, b) and info_a["noops"] == info_b["noops"]
    assert len({env.reset(seed=s)[1]["noops"] for s in range(12)}) > 3


# ---------------------------------------------------------------- action alignment

def _replay(meta: dict, actions: np.ndarray) -> list[np.ndarray]:
    """Re-simulate an episode from its stored seed and protocol with `actions`; frames incl. the reset one."""
    p = meta["protocol"]
    env = make_atari(p["game"], **{k: v for k, v in p.items() if k not in ("game", "env_id")})
    obs, info = env.reset(seed=meta["env_seed"])
    assert info["noops"] == meta["noops"]
    frames = [obs]
    for a in actions:
        frames.append(env.step(int(a))[0])
    return frames


def test_action_at_t_leads_from_frame_t_to_frame_t_plus_1(data):
    """Replaying the stored actions from the stored seed reproduces every stored frame exactly; replaying
    them shifted by one step in either direction does not. So actions[t] is what turned frames[t] into
    frames[t+1] (not frames[t-1] into frames[t], nor frames[t+1] into frames[t+2])."""
    ep = load_episode(data / episode_name(0))
    assert ep.life_loss.sum() >= 1 and ep.terminated[-1]
    replay = _replay(ep.meta, ep.actions)
    assert len(replay) == ep.length + 1
    for t, frame in enumerate(replay):
        assert np.array_equal(frame, ep.frames[t]), f"frame {t} differs"
    late = np.concatenate([[0], ep.actions[:-1]])  # action t applied one step late
    early = np.concatenate([ep.actions[1:], [0]])  # action t+1 applied at t
    for shifted in (late, early):
        frames = _replay(ep.meta, shifted)
        assert not all(np.array_equal(f, g) for f, g in zip(frames, ep.frames))


def test_dataset_items_follow_the_stored_alignment(data):
    ds = AtariWorldModelDataset(data, split="train", context=4)
    ep = load_episode(data / episode_name(0))
    frames = ep.frames.transpose(0, 3, 1, 2)
    for i in (0, 5, 100):
        item = ds[i]
        assert int(item["episode"]) == 0 and int(item["t"]) == i
        assert int(item["act"][-1]) == ep.actions[i]
        assert np.array_equal(item["obs"][-1].numpy(), frames[i])
        assert np.array_equal(item["next_obs"].numpy(), frames[i + 1])


# ---------------------------------------------------------------- storage and collection

def test_storage_round_trip(tmp_path, data):
    ep = load_episode(data / episode_name(1))
    save_episode(tmp_path / "x.npz", ep)
    back = load_episode(tmp_path / "x.npz")
    for k in ("frames", "actions", "rewards", "terminated", "truncated", "life_loss"):
        a, b = getattr(ep, k), getattr(back, k)
        assert a.dtype == b.dtype and np.array_equal(a, b), k
    assert back.meta == ep.meta
    T = ep.length
    assert ep.frames.shape == (T + 1, 64, 64, 3) and ep.frames.dtype == np.uint8
    assert ep.actions.dtype == np.int64 and ep.rewards.dtype == np.float32 and ep.life_loss.dtype == bool
    assert not ep.truncated.any() and ep.terminated.sum() == 1 and ep.terminated[-1]


def test_index_lists_episodes_with_protocol_and_split(data):
    index = json.loads((data / "index.json").read_text())
    assert index["game"] == "Breakout" and index["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert index["protocol"]["frame_skip"] == 4 and index["protocol"]["repeat_action_probability"] == 0.0
    assert [e["file"] for e in index["episodes"]] == [episode_name(i) for i in range(EPISODES)]
    assert [e["split"] for e in index["episodes"]] == ["train", "train", "test"]
    for e in index["episodes"]:
        ep = load_episode(data / e["file"])
        assert e["length"] == ep.length and e["return"] == float(ep.rewards.sum())
        assert e["env_seed"] == episode_rngs(0, e["episode"])[0]


def test_max_steps_caps_and_marks_truncated(tmp_path):
    result = collect.main(["profile=smoke", f"run.root={tmp_path}"])
    assert result["collected"] == [0, 1]
    for i in (0, 1):
        ep = load_episode(tmp_path / "phase1" / "datasets" / "Breakout" / episode_name(i))
        assert ep.length == 50 and ep.truncated[-1] and not ep.truncated[:-1].any()


def test_resume_collects_only_missing_episodes(tmp_path, data):
    out = _copy(data, tmp_path)
    before = {i: (out / episode_name(i)).stat().st_mtime_ns for i in (0, 2)}
    original = load_episode(out / episode_name(1))
    (out / episode_name(1)).unlink()
    (out / (episode_name(1) + ".tmp")).write_bytes(b"half a file")  # leftover of a killed write
    result = _collect(tmp_path)
    assert result["collected"] == [1] and result["kept"] == [0, 2]
    assert {i: (out / episode_name(i)).stat().st_mtime_ns for i in (0, 2)} == before
    again = load_episode(out / episode_name(1))
    assert np.array_equal(again.frames, original.frames) and np.array_equal(again.actions, original.actions)
    assert not list(out.glob("*.tmp"))
    assert len(json.loads((out / "index.json").read_text())["episodes"]) == EPISODES


def test_killed_collection_keeps_finished_episodes_and_continues(tmp_path):
    """SIGKILL in the middle of writing episode 1's file, then the same command finishes the job."""
    args = (f"run.root={tmp_path}", "episodes=3", "max_steps=40", "test_fraction=0.34", "progress_every=0")
    killed = run_module("phase1_world_model.collect", *args, env=subprocess_env(**{FAULT_ENV: "1"}))
    assert killed.returncode == -9, killed.stderr[-2000:]
    out = tmp_path / "phase1" / "datasets" / "Breakout"
    assert sorted(p.name for p in out.iterdir()) == [episode_name(0), episode_name(1) + ".tmp", "index.json"]
    assert [e["episode"] for e in json.loads((out / "index.json").read_text())["episodes"]] == [0]
    load_episode(out / episode_name(0))  # the finished one is intact
    result = collect.main(list(args))
    assert result["collected"] == [1, 2] and result["kept"] == [0]
    assert len(AtariWorldModelDataset(out, "train")) + len(AtariWorldModelDataset(out, "test")) == 3 * 40


def test_other_settings_in_the_same_folder_are_refused(tmp_path, data, capsys):
    _copy(data, tmp_path)
    with pytest.raises(SystemExit) as e:
        _collect(tmp_path, "policy=random")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "episode_000000.npz" in err and "collection.policy='sticky_random'" in err


@pytest.mark.parametrize("arg,message", [("profile=nope", "allowed values: cpu, smoke"),
                                         ("policy=greedy", "allowed values: random, sticky_random"),
                                         ("data.game=Breakot", "did you mean Breakout"),
                                         ("repeat_prob=1.5", "repeat_prob=1.5")])
def test_collect_config_errors_name_the_key(tmp_path, capsys, arg, message):
    with pytest.raises(SystemExit) as e:
        collect.main([f"run.root={tmp_path}", arg])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "phase1").exists()


# ---------------------------------------------------------------- corrupt files

def _corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the compressed frames
    path.write_bytes(bytes(raw))


def test_corrupt_files_are_reported_by_name(tmp_path, data, capsys):
    out = _copy(data, tmp_path)
    _corrupt(out / episode_name(0))
    (out / episode_name(1)).write_bytes((out / episode_name(1)).read_bytes()[:1000])  # truncated
    with pytest.raises(CorruptEpisodeError, match="episode_000000.npz"):
        load_episode(out / episode_name(0))
    with pytest.raises(CorruptDatasetError) as e:
        AtariWorldModelDataset(out, "train")
    assert "episode_000000.npz" in str(e.value) and "episode_000001.npz" in str(e.value)
    assert "repair=true" in str(e.value)
    with pytest.raises(SystemExit) as e:  # collect refuses to continue on top of them
        _collect(tmp_path)
    assert e.value.code == 2 and "episode_000001.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # --verify lists them, exit status 1
        _collect(tmp_path, "--verify")
    assert e.value.code == 1
    text = capsys.readouterr().out
    assert "CORRUPT episode_000000.npz" in text and "CORRUPT episode_000001.npz" in text
    result = _collect(tmp_path, "repair=true")  # deterministic episodes: repair recollects the same content
    assert result["collected"] == [0, 1]
    assert np.array_equal(load_episode(out / episode_name(0)).frames, load_episode(data / episode_name(0)).frames)


def test_missing_dataset_names_the_collect_command(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="python -m phase1_world_model.collect data.game=Pong"):
        AtariWorldModelDataset.for_game("pong", root=str(tmp_path))


# ---------------------------------------------------------------- dataset

def test_dataset_shapes_and_dtypes(data):
    ds = AtariWorldModelDataset(data, split="train", context=4)
    item = ds[10]
    expect = {"obs": ((4, 3, 64, 64), torch.uint8), "act": ((4,), torch.int64), "next_obs": ((3, 64, 64), torch.uint8),
              "reward": ((), torch.int64), "end": ((), torch.bool), "mask": ((4,), torch.bool)}
    for k, (shape, dtype) in expect.items():
        assert tuple(item[k].shape) == shape and item[k].dtype == dtype, k
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)))
    assert batch["obs"].shape == (8, 4, 3, 64, 64)


def test_dataset_respects_episode_boundaries(data):
    K = 4
    ds = AtariWorldModelDataset(data, split="train", context=K)
    eps = {i: load_episode(data / episode_name(i)) for i in ds.episodes}
    assert len(ds) == sum(ep.length for ep in eps.values())
    for i in range(len(ds)):
        item = ds[i]
        ep, t = eps[int(item["episode"])], int(item["t"])
        frames = ep.frames.transpose(0, 3, 1, 2)
        steps = np.arange(t - K + 1, t + 1)
        assert item["mask"].tolist() == (steps >= 0).tolist()
        for k, s in enumerate(steps):  # every context frame is from this episode, or padding
            if s >= 0:
                assert np.array_equal(item["obs"][k].numpy(), frames[s]) and int(item["act"][k]) == ep.actions[s]
            else:
                assert not item["obs"][k].any() and int(item["act"][k]) == 0
        assert np.array_equal(item["next_obs"].numpy(), frames[t + 1])
        assert int(item["reward"]) == int(np.sign(ep.rewards[t]))
        assert bool(item["end"]) == bool(ep.terminated[t] or ep.life_loss[t])
    starts = [i for i in range(len(ds)) if int(ds[i]["t"]) == 0]
    assert len(starts) == len(eps) and all(ds[i]["mask"].tolist() == [False, False, False, True] for i in starts)
    assert any(bool(ds[i]["end"]) for i in range(len(ds)))  # the end check above saw life losses


def test_splits_are_disjoint_and_cover_all_episodes(data):
    train, test = AtariWorldModelDataset(data, "train"), AtariWorldModelDataset(data, "test")
    assert set(train.episodes).isdisjoint(test.episodes)
    assert sorted(train.episodes + test.episodes) == list(range(EPISODES))
    assert {int(test[i]["episode"]) for i in range(len(test))} == set(test.episodes)
    assert [i for i in range(100) if split_of(i, 0.1) == "test"] == list(range(9, 100, 10))
    assert all(split_of(i, 0.0) == "train" for i in range(100))
    assert AtariWorldModelDataset(data, "test", test_fraction=0.5).episodes == [1]  # recomputed split


# ---------------------------------------------------------------- show_batch

def test_show_batch_writes_a_png(data):
    from PIL import Image

    path = show_batch.main([f"data.folder={data}", "num=4", "scale=2"])
    assert path == data / "media" / "batch_train.png"
    with Image.open(path) as img:
        assert img.width > 5 * 128 and img.height > 4 * 128

