"""What the actor-critic saw while it trained in imagination, against what the real data holds: the share of imagined
steps with a reward and with an end (a lost life or the game's end), from the run's logged updates, beside the same
shares over the phase 1 training episodes the imagination starts from.

    python scripts/phase5_agent_imagination.py outputs/phase5/agent-cpu

An agent trained in a world model can only learn from the rewards and ends that world model imagines: if they are
far rarer than in the real game, its returns are flat and its policy stays where it started. Each logged update is
one batch (train.batch_size worlds x agent.horizon imagined steps); the interval is a 95% percentile bootstrap over
the logged updates. The real shares are over every step of the data set's training episodes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common.errors import DataError
from phase1_world_model.metrics import bootstrap
from phase1_world_model.storage import find_dataset, load_episode, read_index


def imagined_rates(metrics_file: Path) -> dict[str, list[float]]:
    """{reward, end, steps: [mean, low, high]} over the updates logged in a train_agent run's metrics.jsonl: the
    imagined reward per step (rewards are -1, 0 or +1), the share of imagined steps that end, the imagined steps per
    world; plus "updates": how many were logged, and "entropy_last": the policy's entropy at the last one (None when
    not logged)."""
    rows = []
    for n, line in enumerate(Path(metrics_file).read_text().splitlines()):
        try:
            r = json.loads(line)
        except ValueError:
            raise DataError(f"{metrics_file} line {n + 1} is not JSON: a torn write; delete that line") from None
        if "train/imagined_reward" in r:
            rows.append(r)
    if not rows:
        raise DataError(f"{metrics_file} logs no train/imagined_reward: is it a phase5_integration.train_agent run?")
    out: dict = {"updates": len(rows), "entropy_last": rows[-1].get("train/entropy")}
    for key in ("reward", "end", "steps"):
        v = np.array([r[f"train/imagined_{key}"] for r in rows], dtype=np.float64)
        out[key] = [float(v.mean()), *bootstrap(v, lambda x: x.mean(-1))]
    return out


def real_rates(episodes) -> dict[str, float]:
    """{reward, end, steps}: the share of steps with a positive reward and with an end (terminated or a lost life)
    over phase 1 Episodes, and their number of steps."""
    rewards = np.concatenate([e.rewards for e in episodes])
    ends = np.concatenate([e.terminated | e.life_loss for e in episodes])
    return {"reward": float((rewards > 0).mean()), "end": float(ends.mean()), "steps": int(len(rewards))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a phase5_integration.train_agent run folder (with metrics.jsonl)")
    ap.add_argument("--game", default="Breakout")
    ap.add_argument("--root", default="outputs", help="run.root that holds the phase 1 data set")
    a = ap.parse_args(argv)
    metrics = Path(a.run) / "metrics.jsonl"
    if not metrics.exists():
        raise SystemExit(f"{metrics} does not exist: pass the run folder of python -m phase5_integration.train_agent "
                         "(a release keeps only the final metrics)")
    im = imagined_rates(metrics)
    data = find_dataset(a.game, a.root)
    train = [e for e in read_index(data)["episodes"] if e["split"] == "train"]
    real = real_rates([load_episode(data / e["file"]) for e in train])
    print(f"{a.run}: {im['updates']} logged updates, {im['steps'][0]:.1f} imagined steps per world on average; "
          f"real: {len(train)} training episodes of {data}, {real['steps']} steps")
    print("| per step | imagined (mean [95% CI] over logged updates) | real training data |\n|---|---|---|")
    print(f"| reward (imagined: mean reward; real: share of steps with a reward) | {im['reward'][0]:.4f} "
          f"[{im['reward'][1]:.4f}, {im['reward'][2]:.4f}] | {real['reward']:.4f} |")
    print(f"| end (a lost life or the game's end) | {im['end'][0]:.4f} [{im['end'][1]:.4f}, {im['end'][2]:.4f}] | "
          f"{real['end']:.4f} |")
    if im["entropy_last"] is not None:
        A = read_index(data)["num_actions"]
        print(f"policy entropy at the last logged update: {im['entropy_last']:.3f} (a uniform policy over {A} "
              f"actions: ln {A} = {np.log(A):.3f})")
    return {"imagined": im, "real": real}


if __name__ == "__main__":
    main()
