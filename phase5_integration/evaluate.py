"""The table over every agent that has played real games with `python -m phase5_integration.plan`.

    python -m phase5_integration.evaluate                       # print the table of <run.root>/phase5/Breakout/*
    python -m phase5_integration.evaluate publish=true          # and write it into phase5_integration/README.md

Per agent: games, mean score, lives lost and steps survived with 95% bootstrap intervals over games, games that
ended (the rest were cut at max_steps), mean decision time, candidate futures imagined per decision; and for
each planner the share of the oracle's gain over random play it recovers, (planner - random) / (oracle - random),
where the oracle is the same planner (method, horizon, action repeat, replanning) with the real emulator as its
model.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.config import cli
from common.errors import DataError, command
from common.report import publish as publish_block
from common.runs import outputs_root
from phase1_world_model.envs import canonical_game
from phase5_integration.config import IntegrationEvaluateConfig

README = Path(__file__).resolve().parent / "README.md"


def load_arms(cfg: IntegrationEvaluateConfig) -> list[dict]:
    base = outputs_root(cfg.run.root) / "phase5" / canonical_game(cfg.game)
    found = {p.parent.name: p for p in sorted(base.glob("*/summary.json"))}
    names = cfg.arms or sorted(found, key=lambda n: (n not in ("random", "sticky_random"), "emulator" not in n, n))
    missing = [n for n in names if n not in found]
    if missing or not names:
        raise DataError(f"no finished results for {', '.join(missing) or 'any agent'} under {base}: play them with "
                        f"python -m phase5_integration.plan (see phase5_integration/README.md)")
    return [json.loads(found[n].read_text()) for n in names]


def _ci(v: list[float], digits: int = 2) -> str:
    m, lo, hi = v
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def table(arms: list[dict]) -> str:
    by = {a["arm"]: a for a in arms}
    rnd = by.get("random")
    lines = ["| agent | world model | games | score | lives lost | steps | games ended | ms / decision | "
             "futures / decision | share of the oracle's gain |", "|---" * 10 + "|"]
    for a in arms:
        share = ""
        p = a.get("planner") or {}
        oracle = by.get(a["arm"].replace(f"plan-{a['model']}-", "plan-emulator-", 1)) if p else None
        if rnd and oracle and a["model"] != "emulator" and oracle["score"][0] != rnd["score"][0]:
            share = f"{(a['score'][0] - rnd['score'][0]) / (oracle['score'][0] - rnd['score'][0]):.2f}"
        lines.append(f"| {a['arm']} | {a['model'] or '-'} | {a['games']} | {_ci(a['score'])} | {_ci(a['lives_lost'])} "
                     f"| {_ci(a['steps'], 0)} | {a['game_over']}/{a['games']} | {a['decision_ms'][0]:.1f} | "
                     f"{a['imagined_per_decision']:.0f} | {share} |")
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> str:
    cfg = cli(IntegrationEvaluateConfig, "phase5/evaluate", argv, __doc__)
    arms = load_arms(cfg)
    md = table(arms)
    runtime = next((a["runtime"] for a in arms if a.get("runtime")), {})
    md += (f"\n\n{canonical_game(cfg.game)}, DIAMOND's protocol; intervals are 95% percentile bootstrap over games; "
           f"games cut at {arms[0]['max_steps']} agent steps. Decision times on {runtime.get('cpu', '?')} "
           f"({', '.join(runtime.get('cpu_flags', [])) or '?'}), {runtime.get('threads', '?')} thread(s), "
           f"{runtime.get('precision', '?')}.")
    print(md)
    if cfg.publish:
        publish_block(README, md, [], README.parent / "figures", "python -m phase5_integration.evaluate publish=true")
        print(f"published to {README}")
    return md


if __name__ == "__main__":
    main()
