"""Did the world model get Breakout right? The game's state from the emulator's RAM (ground truth, recorded at
collection) and from frames (a detector for generated frames), and the game-aware metrics of a rollout.

    python -m phase1_world_model.breakout_calibrate     # re-measure every constant below on the emulator

Ground truth (`ram_state`). Addresses from the AtariARI annotations (Anand et al. 2019): ball x = RAM[99],
ball y = RAM[101], paddle x = RAM[72], bricks hit = RAM[77]. Their offsets to the native 210x160 frame were
measured here (`breakout_calibrate`, on single emulator frames, the ones the RAM belongs to): the ball's top-left pixel
is (RAM[99] - 49, RAM[101] + 9) for every ball seen and the paddle's left edge RAM[72] - 47; bricks left =
108 - RAM[77] agrees with the bricks counted on the screen (the brick bitmap RAM[0:30] lags the screen by a brick
or two on ~1 frame in 3, so it is not used). That count holds for the first wall, which a random policy never
clears. The ball is in play when 0 < RAM[101] < BALL_Y_OUT: at y = 0 it waits to be served, beyond it has
fallen past the paddle and is not drawn.

Detector (`detect`), on the 64x64 frames the models see (INTER_AREA keeps each object's colour mass):
- redness = R - max(G, B): 128 on the ball and the paddle (both (200, 72, 72)), 0 on the black background and
  the grey walls, <= 90 on every brick row but the top one;
- ball: the largest connected blob of redness in the play area (above and below the brick band: inside the band
  the ball is the top brick row's colour, so it is reported absent there), present when its redness mass is at
  least BALL_MASS (a whole ball has ~125), at its redness-weighted centroid;
- paddle: its left edge in the row through its middle (sub-pixel: the edge pixel's share of the paddle's redness;
  the right wall is red in that row), plus half its width;
- bricks: 108 x (brightness of the brick band - with no bricks) / (full wall - with no bricks), both measured.

Every position is in pixels of the 64x64 frame. `tests/test_phase1_breakout.py` checks the detector on real
frames against the RAM; `python -m phase1_world_model.breakout_calibrate` prints its error on fresh episodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

NATIVE_H, NATIVE_W = 210, 160
BALL_X, BALL_Y, PADDLE_X, BRICKS_HIT = 99, 101, 72, 77  # RAM addresses
BALL_DX, BALL_DY, PADDLE_DX = -49, 9, -47  # native pixel = RAM + offset (ball top-left, paddle left edge)
BALL_W, BALL_H, PADDLE_W = 2, 4, 16  # native pixels
BALL_Y_OUT = 188  # RAM[101] from which the ball has left the playfield (not drawn)
BRICKS = 108  # a full wall: 6 rows of 18
# Native rows: the brick band (6 rows of 6 px), the paddle's row, the playfield's columns inside the walls.
BRICK_TOP, BRICK_BOTTOM, PADDLE_TOP, PADDLE_BOTTOM = 57, 93, 189, 193
PLAY_TOP, PLAY_LEFT, PLAY_RIGHT = 32, 8, 152
BALL_MASS = 40.0  # redness mass (64x64 frame) from which a blob is a ball; a whole ball has ~125


@dataclass
class GameState:
    """Per frame (any leading shape): ball centre (x, y) and whether it is in play, paddle centre x, bricks left.
    Positions in pixels of a size x size frame; ball_x/ball_y are nan where the ball is absent."""

    ball_x: np.ndarray
    ball_y: np.ndarray
    ball: np.ndarray
    paddle_x: np.ndarray
    bricks: np.ndarray


def _scale(size: int) -> tuple[float, float]:
    return size / NATIVE_W, size / NATIVE_H


def ram_state(ram: np.ndarray, size: int = 64) -> GameState:
    """(..., 128) uint8 RAM -> the true GameState in a size x size frame."""
    ram = np.asarray(ram).astype(np.int64)
    sx, sy = _scale(size)
    y = ram[..., BALL_Y]
    ball = (y > 0) & (y < BALL_Y_OUT)
    bx = np.where(ball, (ram[..., BALL_X] + BALL_DX + BALL_W / 2) * sx, np.nan)
    by = np.where(ball, (y + BALL_DY + BALL_H / 2) * sy, np.nan)
    paddle = (ram[..., PADDLE_X] + PADDLE_DX + PADDLE_W / 2) * sx
    return GameState(bx, by, ball, paddle.astype(np.float64), (BRICKS - ram[..., BRICKS_HIT]).astype(np.float64))


def _rows(top: int, bottom: int, size: int) -> slice:
    """The 64x64 rows lying wholly inside native rows [top, bottom)."""
    sy = size / NATIVE_H
    return slice(int(np.ceil(top * sy)), int(np.floor(bottom * sy)))


def _cols(left: int, right: int, size: int) -> slice:
    sx = size / NATIVE_W
    return slice(int(np.ceil(left * sx)), int(np.floor(right * sx)))


# Brightness (R + G + B summed over the brick band's rows and the columns inside the walls) of a 64x64 frame with
# the full wall and with no bricks at all, measured by `calibrate` on the start frame (and checked by the tests).
BAND_FULL, BAND_EMPTY = 211568.0, 0.0


def band_rows(size: int = 64) -> slice:
    """Rows that hold any part of the brick band (its edge rows mix bricks and background: all are summed)."""
    sy = size / NATIVE_H
    return slice(int(np.floor(BRICK_TOP * sy)), int(np.ceil(BRICK_BOTTOM * sy)))


def detect(frames: torch.Tensor | np.ndarray) -> GameState:
    """(..., 3, size, size) uint8 frames -> the GameState the picture shows (module doc)."""
    f = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    lead, size = f.shape[:-3], f.shape[-1]
    f = f.reshape(-1, 3, size, size).astype(np.float64)
    redness = np.clip(f[:, 0] - np.maximum(f[:, 1], f[:, 2]), 0, None)
    cols = _cols(PLAY_LEFT, PLAY_RIGHT, size)
    play = np.zeros((size, size), bool)
    play[_rows(PLAY_TOP, BRICK_TOP, size), cols] = True
    play[_rows(BRICK_BOTTOM, PADDLE_TOP, size), cols] = True
    mid = int((PADDLE_TOP + PADDLE_BOTTOM) / 2 * size / NATIVE_H)
    paddle_row = slice(mid, mid + 1)  # the row through the paddle's middle (it is 1.3 rows tall at 64 px)
    n = len(f)
    bx, by, ball, px = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool), np.full(n, np.nan)
    for i in range(n):
        r = np.where(play, redness[i], 0.0)
        lab, k = ndimage.label(r > 8)
        if k:
            mass = ndimage.sum(r, lab, range(1, k + 1))
            j = int(np.argmax(mass))
            if mass[j] >= BALL_MASS:
                cy, cx = ndimage.center_of_mass(r, lab, j + 1)
                bx[i], by[i], ball[i] = cx + 0.5, cy + 0.5, True
        row = redness[i, paddle_row].sum(0)
        on = np.nonzero(row > 8)[0]
        if len(on):  # the left edge (the right wall is red in this row), sub-pixel from the edge pixel's coverage
            j = int(on[0])
            edge = j + 1 - min(row[j] / row.max(), 1.0)
            px[i] = edge + PADDLE_W * size / NATIVE_W / 2
    band = f[:, :, band_rows(size), cols].sum((1, 2, 3))
    bricks = BRICKS * (band - BAND_EMPTY) / (BAND_FULL - BAND_EMPTY)
    shape = lambda a: a.reshape(lead)  # noqa: E731
    return GameState(shape(bx), shape(by), shape(ball), shape(px), shape(bricks))


def game_errors(frames: torch.Tensor | np.ndarray, ram: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame (leading shape of both): the detector on `frames` against the RAM's truth.
    ball_error: distance (px) between the detected and the true ball where both have one, else nan;
    ball_agree: 1 where the detector and the RAM agree on whether the ball is in play;
    paddle_error: |detected - true| paddle centre (px, nan when no paddle is seen); brick_error: |bricks|."""
    det, true = detect(frames), ram_state(ram, np.asarray(frames).shape[-1] if not isinstance(frames, torch.Tensor)
                                         else frames.shape[-1])
    both = det.ball & true.ball
    dist = np.hypot(det.ball_x - true.ball_x, det.ball_y - true.ball_y)
    return {"ball_error": np.where(both, dist, np.nan), "ball_agree": (det.ball == true.ball).astype(np.float64),
            "paddle_error": np.abs(det.paddle_x - true.paddle_x), "brick_error": np.abs(det.bricks - true.bricks)}


def aggregate(errors: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Per-rollout errors at one horizon {name: (N,)} -> {name: [estimate, low, high], name_n: [frames counted]}:
    ball presence agreement with a Wilson interval, the others means over the frames where they are defined with a
    percentile bootstrap interval (errors are >= 0 and skewed by rare large misses: a normal interval would dip
    below 0)."""
    from common.stats import wilson
    from phase1_world_model.metrics import bootstrap

    out = {}
    for k, v in errors.items():
        v = np.asarray(v, dtype=np.float64)
        ok = v[np.isfinite(v)]
        if k == "ball_agree":
            hits = int(ok.sum())
            out[k] = [hits / len(ok), *wilson(hits, len(ok))] if len(ok) else [float("nan")] * 3
        else:
            out[k] = [float(ok.mean()), *bootstrap(ok, lambda x: x.mean(-1))] if len(ok) else [float("nan")] * 3
        out[k + "_n"] = [len(ok)]
    return out


def score(frames: torch.Tensor, ram: np.ndarray, horizons: list[int]) -> dict:
    """(N, h, 3, H, W) rollouts and the (N, h, 128) RAM of the real future -> {metric: {horizon: estimate}}."""
    e = game_errors(frames, ram)
    at = {h: aggregate({k: v[:, h - 1] for k, v in e.items()}) for h in horizons}
    return {k: {h: at[h][k] for h in horizons} for k in at[horizons[0]]}


# ------------------------------------------------------------------------------------------------ calibration

def _native_env(max_pool: bool = True):
    """Breakout under the data sets' protocol but at the native 210x160 (no resize); max_pool=False shows the last
    emulator frame of each step alone (the one the RAM belongs to)."""
    import gymnasium as gym

    from phase1_world_model.config import AtariEnvConfig
    from phase1_world_model.envs import LifeLossInfo, MaxAndSkip, NoopReset, register

    cfg = AtariEnvConfig()
    register()
    env = gym.make("ALE/Breakout-v5", obs_type="rgb", frameskip=1, repeat_action_probability=0.0,
                   full_action_space=False)
    return LifeLossInfo(MaxAndSkip(NoopReset(env, cfg.noop_max), cfg.frame_skip, max_pool))


def play(steps: int, seed: int = 0, change: float = 0.2, max_pool: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Native frames (steps, 210, 160, 3) and RAM (steps, 128) of a sticky-random policy (the collection's kind)."""
    env = _native_env(max_pool)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, rams, a = [], [], 0
    for _ in range(steps):
        if rng.random() < change:
            a = int(rng.integers(0, env.action_space.n))
        obs, _, term, trunc, _ = env.step(a)
        frames.append(obs)
        rams.append(env.unwrapped.ale.getRAM().copy())
        if term or trunc:
            obs, _ = env.reset(seed=int(rng.integers(2 ** 31)))
    env.close()
    return np.stack(frames), np.stack(rams)


def resize(native: np.ndarray, size: int = 64) -> np.ndarray:
    """(..., 210, 160, 3) -> (..., 3, size, size) as the data sets' AreaResize does."""
    import cv2

    flat = native.reshape(-1, *native.shape[-3:])
    out = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in flat])
    return out.transpose(0, 3, 1, 2).reshape(*native.shape[:-3], 3, size, size)


def calibrate(steps: int = 3000, seed: int = 0) -> dict:
    """Re-measure the constants on the emulator and the detector's error on `steps` agent steps: the offsets on
    single emulator frames (the RAM's own), the detector on max-pooled steps (what the data sets hold)."""
    frames, rams = play(steps, seed, max_pool=False)
    red = np.all(frames == (200, 72, 72), axis=-1)
    seen_dx, seen_dy, seen_px, drawn = [], [], [], []
    for f, r, ram in zip(frames, red, rams):
        x0, y0 = int(ram[BALL_X]) + BALL_DX, int(ram[BALL_Y]) + BALL_DY
        box = r[max(y0, 0):max(y0 + BALL_H, 0), max(x0, 0):max(x0 + BALL_W, 0)]
        drawn.append(bool(box.size and box.all()))
        band = r[BRICK_BOTTOM:PADDLE_TOP, PLAY_LEFT:PLAY_RIGHT]
        lab, k = ndimage.label(band)
        for sl in ndimage.find_objects(lab):
            if sl[0].stop - sl[0].start == BALL_H and sl[1].stop - sl[1].start == BALL_W:
                seen_dx.append(sl[1].start + PLAY_LEFT - int(ram[BALL_X]))
                seen_dy.append(sl[0].start + BRICK_BOTTOM - int(ram[BALL_Y]))
        cols = np.nonzero(r[PADDLE_TOP + 1])[0]
        if len(cols) == PADDLE_W:
            seen_px.append(int(cols[0]) - int(ram[PADDLE_X]))
    truth = ram_state(rams, NATIVE_W)  # native units: ball flag only
    screen_bricks = np.all(frames[:, BRICK_TOP:BRICK_BOTTOM, PLAY_LEFT:PLAY_RIGHT] != 0, axis=-1).sum((1, 2)) / 48
    frames, rams = play(steps, seed)  # max-pooled, as collected
    small = resize(frames)
    first = play(1, seed)[0][0]  # the start: the full wall
    no_bricks = first.copy()
    no_bricks[BRICK_TOP:BRICK_BOTTOM, PLAY_LEFT:PLAY_RIGHT] = 0
    start, empty = (resize(x).astype(np.float64) for x in (first, no_bricks))
    cols = _cols(PLAY_LEFT, PLAY_RIGHT, 64)
    full_band = float(start[:, band_rows(), cols].sum())
    empty_band = float(empty[:, band_rows(), cols].sum())
    errors = game_errors(small, rams)
    agg = aggregate(errors)
    return {"steps": steps, "seed": seed,
            "ball_offset_x": np.unique(seen_dx, return_counts=True), "ball_offset_y": np.unique(seen_dy, return_counts=True),
            "paddle_offset": np.unique(seen_px, return_counts=True),
            "ball_in_play_vs_drawn": float(np.mean(np.array(drawn) == truth.ball)),
            "bricks_at_start": float(ram_state(rams[:1]).bricks[0]),
            "bricks_ram_vs_screen": float(np.mean(np.abs(screen_bricks - truth.bricks) < 0.5)),
            "band_full": full_band, "band_empty": empty_band, "detector": agg}


# ------------------------------------------------------------------------------------------------ reporting

GAME_METRICS = (("ball_error", "ball position error (px of the 64x64 frame, frames where both show a ball)", 2),
                ("ball_agree", "ball in play: detector agrees with the RAM (fraction of frames)", 3),
                ("paddle_error", "paddle position error (px)", 2),
                ("brick_error", "brick count error (bricks)", 2))


def ram_hint(folder) -> str:
    """What to do about a data set without RAM (collection is deterministic: re-collecting gives the same episodes)."""
    return (f"{folder} has no emulator RAM (collected before it was recorded). Re-collect it into a new folder (the "
            f"same episodes): python -m phase1_world_model.collect data.game=Breakout profile=cpu data.folder=<new "
            f"folder>, then pass data.folder=<new folder>")


def game_scores(methods: dict[str, torch.Tensor], real: torch.Tensor, ram: np.ndarray | None,
                horizons: list[int]) -> dict | None:
    """{method: score} for Breakout rollouts, plus "real frames" (the detector on the real future: its own error,
    the floor no model can beat); None when the data set has no RAM."""
    if ram is None:
        return None
    out = {"real frames (detector floor)": score(real, ram, horizons)}
    out.update({name: score(gen, ram, horizons) for name, gen in methods.items()})
    return out


def tables(scores: dict, horizons: list[int], label=lambda h: f"h={h}") -> list[str]:
    """Markdown tables, one per game metric, rows = methods (the detector floor first)."""
    lines = []
    for key, title, digits in GAME_METRICS:
        per_cell = key == "ball_error"  # the frames counted differ by cell: say how many
        lines += [f"**{title}**, estimate [95% interval]" + (", (n) = frames counted" if per_cell else ""), "",
                  "| method | " + " | ".join(label(h) for h in horizons) + " |", "|---|" + "---|" * len(horizons)]
        for name, s in scores.items():
            cells = []
            for h in horizons:
                v, lo, hi = s[key][h]
                n = f" ({s[key + '_n'][h][0]})" if per_cell else ""
                cells.append("- (0)" if not np.isfinite(v) and per_cell else "-" if not np.isfinite(v) else
                             f"{v:.{digits}f}{n}" if not np.isfinite(lo) else
                             f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]{n}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines
