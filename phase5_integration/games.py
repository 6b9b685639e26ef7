"""The games `python -m phase5_integration.plan` keeps, one folder per arm: where they are, reading them back, and
their summary (means with bootstrap intervals over games).

    from phase5_integration.games import read_games, results_root, summarize
    rows = read_games(results_root("phase5_integration/results", "outputs") / "Breakout" / "random" / "games.jsonl")
    summarize(rows)["score"]   # [mean, low, high] over the games
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.runs import outputs_root
from phase1_world_model.metrics import bootstrap


def results_root(results: str, root: str) -> Path:
    """Where the arms' folders of every game are: `results`, or <run.root>/phase5 when it is empty."""
    return Path(results).expanduser().resolve() if results else outputs_root(root) / "phase5"


def read_games(games_file: Path) -> list[dict]:
    """The finished games of an arm, one per game index, in game order (shards append in any order)."""
    rows: dict[int, dict] = {}
    if games_file.exists():
        for n, line in enumerate(games_file.read_text().splitlines()):
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(f"{games_file} line {n + 1} is not JSON (an interrupted write?): delete that line "
                                f"and run again; the game is replayed from its seed") from None
            if row["game"] in rows and rows[row["game"]] != row:
                raise DataError(f"{games_file} holds game {row['game']} twice with different results (two "
                                f"processes on one shard?): delete one of the lines and check the settings")
            rows[row["game"]] = row
    return [rows[i] for i in sorted(rows)]


def summarize(rows: list[dict]) -> dict:
    """Means with 95% percentile-bootstrap intervals over games."""
    out = {"games": len(rows)}
    for key in ("score", "lives_lost", "steps", "decision_ms"):
        v = np.array([r[key] for r in rows], dtype=np.float64)
        lo, hi = bootstrap(v, lambda x: x.mean(-1))  # nan with a single game
        out[key] = [float(v.mean()), lo, hi]
    out["game_over"] = sum(bool(r["game_over"]) for r in rows)
    plans = sum(r["plans"] for r in rows)  # decision_ms is per agent step; a plan covers replan_every steps
    out["plan_s"] = float(sum(r["decision_ms"] * r["steps"] for r in rows) / 1e3 / plans) if plans else 0.0
    out["imagined_per_decision"] = (float(sum(r["imagined"] for r in rows) / max(1, sum(r["plans"] for r in rows)))
                                    if any(r["plans"] for r in rows) else 0.0)
    return out
