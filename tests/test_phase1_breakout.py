"""Breakout's game state: the RAM reading against the emulator's own frames, the detector against the RAM on real
frames, and the RAM's way through collection, storage and the rollout batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from phase1_world_model import breakout
from phase1_world_model.storage import CorruptEpisodeError, Episode, load_episode, save_episode


@pytest.fixture(scope="module")
def single():
    """Native frames of single emulator frames (no max-pool: the frame the RAM belongs to) and their RAM."""
    return breakout.play(400, seed=3, max_pool=False)


@pytest.fixture(scope="module")
def pooled():
    """Max-pooled native frames, as the data sets hold them (then resized to 64x64), and their RAM."""
    frames, ram = breakout.play(600, seed=5)
    return breakout.resize(frames), ram


def test_ram_positions_match_the_emulators_frames(single):
    """Wherever the RAM says the ball is in play and it is drawn, it is drawn exactly at the RAM position (plus the
    measured offsets); the paddle's left edge likewise; the start holds 108 bricks."""
    frames, ram = single
    red = np.all(frames == (200, 72, 72), axis=-1)
    truth = breakout.ram_state(ram, breakout.NATIVE_W)
    checked = paddles = 0
    for f, r, state_ball in zip(red, ram, truth.ball):
        x0, y0 = int(r[breakout.BALL_X]) + breakout.BALL_DX, int(r[breakout.BALL_Y]) + breakout.BALL_DY
        if (state_ball and breakout.BRICK_BOTTOM <= y0 and y0 + breakout.BALL_H <= breakout.PADDLE_TOP
                and breakout.PLAY_LEFT <= x0 and x0 + breakout.BALL_W <= breakout.PLAY_RIGHT):  # not behind a wall
            assert f[y0:y0 + breakout.BALL_H, x0:x0 + breakout.BALL_W].all()  # the 2x4 ball, right there
            checked += 1
        cols = np.nonzero(f[breakout.PADDLE_TOP + 1, :breakout.PLAY_RIGHT])[0]
        left = int(r[breakout.PADDLE_X]) + breakout.PADDLE_DX
        if len(cols) == breakout.PADDLE_W:  # the paddle alone in its row (not the ball beside it, not at the wall)
            assert cols[0] == left
            paddles += 1
    assert checked > 50 and paddles > 50
    assert breakout.ram_state(ram[:1]).bricks[0] == breakout.BRICKS  # a fresh wall


def test_detector_on_real_frames_against_the_ram(pooled):
    """The detector's own error on real 64x64 frames (the floor of every model's game metrics): sub-pixel ball
    and paddle most of the time, the ball's presence right on >= 90% of frames, bricks within a brick (95% of frames)."""
    frames, ram = pooled
    e = breakout.game_errors(frames, ram)
    assert np.nanmedian(e["ball_error"]) < 0.5 and np.isfinite(e["ball_error"]).sum() > 200
    assert e["ball_agree"].mean() > 0.9
    assert np.median(e["paddle_error"]) < 0.5
    assert np.percentile(e["brick_error"], 95) < 1.0  # colours of the rows differ by ~6% in brightness
    start = breakout.resize(breakout.play(1, seed=5)[0])[0].astype(np.float64)
    cols = breakout._cols(breakout.PLAY_LEFT, breakout.PLAY_RIGHT, 64)
    assert start[:, breakout.band_rows(), cols].sum() == pytest.approx(breakout.BAND_FULL)


def test_detector_sees_a_moved_or_missing_ball(pooled):
    """Errors mean what they say: a frame whose ball is erased is scored absent (disagreeing with the RAM), and a
    frame from another time step puts the ball and paddle where that step had them."""
    frames, ram = pooled
    truth = breakout.ram_state(ram)
    i = int(np.nonzero(truth.ball & (truth.ball_y > 32))[0][0])
    erased = frames[i].copy()
    play = np.zeros(erased.shape[1:], bool)
    play[29:56, 4:60] = True
    erased[:, play] = 0
    e = breakout.game_errors(erased[None], ram[i:i + 1])
    assert e["ball_agree"][0] == 0.0 and np.isnan(e["ball_error"][0])
    j = next(k for k in range(len(ram)) if truth.ball[k] and np.hypot(truth.ball_x[k] - truth.ball_x[i],
                                                                       truth.ball_y[k] - truth.ball_y[i]) > 10)
    wrong = breakout.game_errors(frames[j][None], ram[i:i + 1])
    assert wrong["ball_error"][0] > 8


def test_aggregate_counts_only_defined_frames():
    errors = {"ball_error": np.array([1.0, np.nan, 3.0]), "ball_agree": np.array([1.0, 0.0, 1.0]),
              "paddle_error": np.array([0.5, 0.5, 0.5]), "brick_error": np.zeros(3)}
    agg = breakout.aggregate(errors)
    assert agg["ball_error"][0] == 2.0 and agg["ball_error_n"] == [2]
    assert agg["ball_agree"][0] == pytest.approx(2 / 3) and 0 < agg["ball_agree"][1] < 2 / 3 < agg["ball_agree"][2]
    assert agg["paddle_error"] == pytest.approx([0.5, 0.5, 0.5])
    lines = breakout.tables({"m": breakout.score(torch.zeros(2, 1, 3, 64, 64, dtype=torch.uint8),
                                                 np.zeros((2, 1, 128), np.uint8), [1])}, [1])
    assert any(line.startswith("| m |") for line in lines)


def _episode(T: int, ram: np.ndarray | None) -> Episode:
    meta = {"format_version": 1, "episode": 0, "env_seed": 1, "noops": 0, "protocol": {}, "collection": {},
            "action_meanings": ["NOOP", "FIRE"]}
    return Episode(frames=np.zeros((T + 1, 8, 8, 3), np.uint8), actions=np.zeros(T, np.int64),
                   rewards=np.zeros(T, np.float32), terminated=np.eye(1, T, T - 1, dtype=bool)[0],
                   truncated=np.zeros(T, bool), life_loss=np.zeros(T, bool), meta=meta, ram=ram)


def test_ram_round_trips_through_an_episode_file_and_is_checked(tmp_path):
    ram = np.arange(4 * 128, dtype=np.int64).reshape(4, 128).astype(np.uint8)
    save_episode(tmp_path / "episode_000000.npz", _episode(3, ram))
    assert np.array_equal(load_episode(tmp_path / "episode_000000.npz").ram, ram)
    save_episode(tmp_path / "old.npz", _episode(3, None))  # data sets from before RAM was recorded still load
    assert load_episode(tmp_path / "old.npz").ram is None
    with pytest.raises(CorruptEpisodeError, match="ram is uint8 \\(3, 128\\)"):
        save_episode(tmp_path / "bad.npz", _episode(3, ram[:3]))
