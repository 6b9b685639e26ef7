"""What the planner sees at a Breakout game's first frame: the value of every enumerated sequence, grouped by its
first action (best and mean), under a world model and the shared reward/end head. The diagnostic behind the phase 5
README's "a failure found before scoring": with exact ties only, the best group is the one the planner plays.

    python scripts/phase5_first_values.py model.kind=regressor planner.action_repeat=4 planner.replan_every=4

Takes phase5_integration.plan's overrides (model, planner, game); game.seed is the first game's seed (the plan
command's game 0 uses the same reset).
"""
from __future__ import annotations

import sys

import torch

from common.config import cli
from common.system import start
from phase1_world_model.envs import make_atari
from phase1_world_model.recording import episode_rngs
from phase5_integration.config import PlanConfig
from phase5_integration.plan import build_model
from phase5_integration.planner import Planner
from phase5_integration.protocol import History


def main(argv: list[str] | None = None) -> dict:
    cfg = cli(PlanConfig, "phase5/plan", argv, __doc__)
    rt = start(cfg.run, 0, 1)
    model, _ = build_model(cfg, rt.device, rt.precision.bf16)
    env = make_atari(cfg.game.game, cfg.game.env)
    obs, _ = env.reset(seed=episode_rngs(cfg.game.seed, 0)[0])  # game 0's reset, as plan plays it
    frame = torch.from_numpy(obs).permute(2, 0, 1)
    K = max(1, model.context)
    hist = History(torch.stack([frame] * K), torch.zeros(K - 1, dtype=torch.int64), None)
    planner = Planner(model, cfg.planner)
    with torch.no_grad():
        values, _ = planner._evaluate(hist, planner.all_sequences)
    first = torch.from_numpy(planner.all_sequences[:, 0])
    out = {}
    print(f"{cfg.arm_name()}: {len(values)} sequences at the first frame of game 0 (seed stream {cfg.game.seed})")
    print("| first action | sequences | best value | mean value |\n|---|---|---|---|")
    for a in range(model.num_actions):
        v = values[first == a]
        out[a] = (float(v.max()), float(v.mean()))
        print(f"| {a} | {len(v)} | {out[a][0]:.4f} | {out[a][1]:.4f} |")
    print(f"best sequence overall: {planner.all_sequences[int(values.argmax())].tolist()} ({float(values.max()):.4f})")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
