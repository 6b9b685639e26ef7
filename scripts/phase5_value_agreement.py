"""Does a world model value the planner's candidates the way the real game does? On real Breakout states, every
enumerated sequence is valued twice, by the learned model (and the shared reward/end head) and by the emulator
oracle (the same planner, the real game cloned), and the two value vectors are compared.

    python scripts/phase5_value_agreement.py model.kind=diamond planner.action_repeat=4 planner.replan_every=4 \
        planner.tie_tolerance=0.05 --states 40 --out phase5_integration/results/Breakout/agreement-diamond.json

States come from sticky-random play (the data's collection policy) of held-out games (`game.seed`, the seed check of
`phase5_integration.plan`), one every `--every` agent steps once the ball is in play; only states where the oracle's
values differ at all are kept ("informative": some sequence is better than another in the real game within the
horizon; the count of states seen says how rare they are), until `--states` of them. Per state:

- the planner's choice under the learned values (every sequence within `tie_tolerance` of the best is a tie, taken
  at random, as the planner does), scored by the oracle: the share of the oracle's gain over a uniformly random
  sequence it recovers, (E V*(choice) - mean V*) / (max V* - mean V*), 1 for an oracle-optimal choice, 0 for random;
- the probability that the choice is oracle-optimal, against the chance that a random sequence is;
- the Spearman rank correlation of the two value vectors;
- how many sequences the learned model ties at the top.

Means with 95% percentile-bootstrap intervals over states. The emulator scored against itself gives 1 (the check
that the protocol is the planner's).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from common.checkpoint import atomic_write
from common.config import cli
from common.system import start
from phase1_world_model.envs import make_atari
from phase1_world_model.metrics import bootstrap
from phase1_world_model.recording import episode_rngs
from phase5_integration.adapters import EmulatorModel, snapshot
from phase5_integration.agents import RandomAgent, _chw
from phase5_integration.config import PlanConfig
from phase5_integration.plan import build_model, check_held_out
from phase5_integration.planner import Planner
from phase5_integration.protocol import History


def real_states(cfg: PlanConfig, every: int, context: int):
    """Real states (K frames, the K-1 actions between them, the emulator's snapshot) from sticky-random play of
    held-out games, one every `every` agent steps once the ball has been launched; endless (game after game)."""
    env = make_atari(cfg.game.game, cfg.game.env)
    game = 0
    while True:
        obs, _ = env.reset(seed=episode_rngs(cfg.game.seed, game)[0])
        agent = RandomAgent(int(env.action_space.n), 0.75)
        agent.reset(np.random.default_rng([cfg.game.seed, game, 1]))
        frames, actions = [_chw(obs)] * context, [0] * (context - 1)
        fired = False
        for t in range(cfg.game.max_steps):
            if fired and t % every == 0:
                yield History(torch.stack(frames[-context:]),
                              torch.tensor(actions[len(actions) - (context - 1):], dtype=torch.int64), snapshot(env))
            a = int(agent.act(None))
            obs, _, term, trunc, _ = env.step(a)
            fired |= a == 1
            frames.append(_chw(obs))
            actions.append(a)
            if term or trunc:
                break
        game += 1


def agreement(v_model: np.ndarray, v_true: np.ndarray, tol: float) -> dict | None:
    """One state's comparison (module docstring); None when the oracle's values are all equal."""
    lo, hi, mean = v_true.min(), v_true.max(), v_true.mean()
    if hi - lo < 1e-9:
        return None
    tied = v_model >= v_model.max() - tol
    chosen = v_true[tied].mean()
    rm, rt = rankdata(v_model), rankdata(v_true)  # average ranks for ties
    rho = float(np.corrcoef(rm, rt)[0, 1]) if rm.std() > 0 else 0.0
    return {"share": float((chosen - mean) / (hi - mean)), "optimal": float((v_true[tied] >= hi - 1e-9).mean()),
            "optimal_by_chance": float((v_true >= hi - 1e-9).mean()), "spearman": rho, "tied": int(tied.sum())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", type=int, default=40, help="informative states to compare")
    ap.add_argument("--every", type=int, default=4, help="agent steps between states of one game")
    ap.add_argument("--out", default="", help="also write the summary and every state's row to this JSON file")
    args, rest = ap.parse_known_args(argv)
    cfg = cli(PlanConfig, "phase5/plan", rest, __doc__)
    rt = start(cfg.run, 0, 1)
    model, datas = build_model(cfg, rt.device, rt.precision.bf16)
    check_held_out(cfg, datas)
    oracle = EmulatorModel(make_atari(cfg.game.game, cfg.game.env))
    learned, true = Planner(model, cfg.planner, seed=cfg.run.seed), Planner(oracle, cfg.planner)
    info, seen = [], 0  # the informative states' comparisons
    with torch.no_grad():
        for h in real_states(cfg, args.every, max(1, model.context)):
            seen += 1
            vt = true._evaluate(h, true.all_sequences)[0].numpy()
            if vt.max() - vt.min() < 1e-9:
                continue  # nothing the planner does here changes the real outcome within its horizon
            vm = learned._evaluate(h, learned.all_sequences)[0].numpy()
            info.append(agreement(vm, vt, cfg.planner.tie_tolerance))
            if len(info) == args.states:
                break
    out = {"states_seen": seen, "informative": len(info)}
    print(f"{cfg.arm_name()}: {len(info)} informative states (the oracle's values differ) out of {seen} real states "
          f"(sticky-random play, seed stream {cfg.game.seed}, every {args.every} steps); {rt.describe()}")
    print("| measure | mean [95% CI] over informative states |\n|---|---|")
    for key in ("share", "optimal", "optimal_by_chance", "spearman", "tied"):
        v = np.array([r[key] for r in info], dtype=np.float64)
        lo, hi = bootstrap(v, lambda x: x.mean(-1)) if len(v) > 1 else (float("nan"), float("nan"))
        out[key] = [float(v.mean()) if len(v) else float("nan"), lo, hi]
        print(f"| {key} | {out[key][0]:.3f} [{lo:.3f}, {hi:.3f}] |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record = {"arm": cfg.arm_name(), "argv": rest, "every": args.every, "seed": cfg.game.seed,
                  "runtime": rt.as_dict(), "summary": out, "states": info}
        atomic_write(Path(args.out), lambda f: f.write(json.dumps(record, indent=1).encode()))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
