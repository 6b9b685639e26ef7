"""The table over every agent that has played real games with `python -m phase5_integration.plan`.

    python -m phase5_integration.evaluate                       # print the table of <run.root>/phase5/Breakout/*
    python -m phase5_integration.evaluate results=phase5_integration/results   # ... of the games kept in the repo
    python -m phase5_integration.evaluate publish=true          # and write it into phase5_integration/README.md
    python -m phase5_integration.evaluate testbed=libero        # testbed 2: the arms of phase5_integration.choose

Per agent (from every game in its games.jsonl, so an arm being played shows the games it has so far; its
summary.json, written when a `plan` run ends, gives the settings and the machine): games, mean score, lives lost and steps survived with 95% bootstrap intervals over games, games that
ended (the rest were cut at max_steps), the agent's mean wall-clock per step and per planning decision (a plan
serves `replan_every` steps), candidate futures imagined per plan; and for
each planner the share of the oracle's gain over random play it recovers, (planner - random) / (oracle - random),
where the oracle is the same planner (method, horizon, action repeat, replanning) with the real emulator as its
model. The share is taken over the games all three played (game i starts from the same seed in every arm), so an
unfinished arm is compared with the oracle and random play on its own games, with a 95% bootstrap interval that
resamples those games jointly.

Testbed 2 (LIBERO), per arm: successes on the same held-out initial states with Wilson 95% intervals, mean
episode length, seconds per decision, and the share of the simulator's gain over the proposer alone that
world-model choice recovers, (arm - first) / (simulator - first) at the same K and with the same proposer (the
UWM's policy mode, or phase 3's SmolVLA for the arms named vla-*); and what the chooser believed: the mean spread
(max - min) of the K scores per decision, and the chosen chunk's score at the last decision of the failed episodes
(for the progress scorers: near 1 means failures were taken for near success).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from common.config import cli
from common.errors import DataError, command
from common.report import publish as publish_block
from common.runs import outputs_root
from phase1_world_model.envs import canonical_game
from phase1_world_model.metrics import bootstrap
from phase5_integration.config import IntegrationEvaluateConfig, PlannerConfig
from phase5_integration.games import read_games, results_root, summarize

README = Path(__file__).resolve().parent / "README.md"


def summaries(base: Path, wanted: list[str], order, command: str) -> list[dict]:
    """The summary.json of every arm folder under `base` (or of the `wanted` ones, in that order), sorted by `order`."""
    found = {p.parent.name: p for p in sorted(base.glob("*/summary.json"))}
    names = wanted or sorted(found, key=order)
    missing = [n for n in names if n not in found]
    if missing or not names:
        raise DataError(f"no finished results for {', '.join(missing) or 'any arm'} under {base}: play them with "
                        f"python -m phase5_integration.{command} (see phase5_integration/README.md)")
    return [json.loads(found[n].read_text()) | {"dir": str(found[n].parent)} for n in names]


def current(arm: dict) -> dict:
    """An arm's summary with its statistics recomputed from every game in its games.jsonl (kept under "rows"): an
    arm still being played (or one stopped part-way) shows the games it has, not those of its last summary.json."""
    rows = read_games(Path(arm["dir"]) / "games.jsonl")
    return arm | (summarize(rows) if rows else {}) | {"rows": rows}


def load_arms(cfg: IntegrationEvaluateConfig) -> list[dict]:
    return [current(a) for a in summaries(results_root(cfg.results, cfg.run.root) / canonical_game(cfg.game), cfg.arms,
                                          lambda n: (n not in ("random", "sticky_random"), "emulator" not in n, n),
                                          "plan")]


def _ci(v: list[float], digits: int = 2) -> str:
    """`mean [low, high]`; a nan bound (paired_share's unbounded ratio) prints as `[unbounded]`."""
    m, lo, hi = v
    if np.isnan(lo) or np.isnan(hi):
        return f"{m:.{digits}f} [unbounded]"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def machines(arms: list[dict]) -> str:
    """Where the decision times were measured: the CPU, its flags, threads and precision, per arm when they differ."""
    def one(rt: dict) -> str:
        return (f"{rt.get('cpu', '?')} ({', '.join(rt.get('cpu_flags', [])) or '?'}), {rt.get('threads', '?')} "
                f"thread(s), {rt.get('precision', '?')}")
    seen: dict[str, list[str]] = {}
    for a in arms:
        seen.setdefault(one(a.get("runtime") or {}), []).append(a["arm"])
    if len(seen) == 1:
        return next(iter(seen))
    return "; ".join(f"{m} for {', '.join(names)}" for m, names in seen.items())


def _shared_scores(*arms: list[dict]) -> np.ndarray:
    """The scores (len(arms), games) of the game indices every arm played, in game order; DataError when a game
    started from different seeds in two arms (their games are not comparable)."""
    by = [{r["game"]: r for r in rows} for rows in arms]
    games = sorted(set.intersection(*(set(b) for b in by)))
    for g in games:
        if len({b[g]["env_seed"] for b in by}) != 1:
            raise DataError(f"game {g} started from different seeds in the arms compared ({[b[g]['env_seed'] for b in by]}): "
                            f"their games were played with different game.seed settings; replay one of them")
    return np.array([[b[g]["score"] for g in games] for b in by], dtype=np.float64).reshape(len(by), len(games))


def paired_gain(agent: list[dict], rnd: list[dict], n: int = 2000, seed: int = 0) -> tuple[list[float], int] | None:
    """Mean score of `agent` minus random play's over the game indices both played, with a 95% percentile bootstrap
    interval resampling those games jointly: ([gain, low, high], games); None with fewer than two shared games."""
    s = _shared_scores(agent, rnd)
    if s.shape[1] < 2:
        return None
    d = s[0] - s[1]
    lo, hi = bootstrap(d, lambda x: x.mean(-1), n=n, seed=seed)
    return [float(d.mean()), lo, hi], len(d)


def paired_share(planner: list[dict], oracle: list[dict], rnd: list[dict], n: int = 2000,
                 seed: int = 0) -> tuple[list[float], int] | None:
    """(planner - random) / (oracle - random) in mean score over the game indices all three arms played, and a 95%
    percentile bootstrap interval resampling those games jointly: ([share, low, high], games). Resamples in which
    the oracle is no better than random play have no ratio and are dropped; when they are more than 2.5% of all, the
    bounds are nan (the ratio is unbounded). None when fewer than two games are shared or the oracle does not beat random play on them."""
    s = _shared_scores(planner, oracle, rnd)  # (3, games)
    if s.shape[1] < 2 or s[1].mean() <= s[2].mean():
        return None
    idx = np.random.default_rng(seed).integers(0, s.shape[1], size=(n, s.shape[1]))
    m = s[:, idx].mean(-1)  # (3, n)
    den = m[1] - m[2]
    ok = den > 0
    lo = hi = float("nan")
    if ok.mean() >= 0.975:
        lo, hi = (float(x) for x in np.percentile((m[0, ok] - m[2, ok]) / den[ok], [2.5, 97.5]))
    return [float((s[0].mean() - s[2].mean()) / (s[1].mean() - s[2].mean())), lo, hi], s.shape[1]


def table(arms: list[dict]) -> str:
    by = {a["arm"]: a for a in arms}
    rnd = by.get("random")
    lines = ["| agent | world model | games | score | lives lost | steps | games ended | ms / step | s / plan | "
             "futures / plan | score - random (same games) | share of the oracle's gain (same games) |", "|---" * 12 + "|"]
    for a in arms:
        share = gain = ""
        p = a.get("planner") or {}
        if rnd and a is not rnd:
            got = paired_gain(a["rows"], rnd["rows"])
            gain = f"{_ci(got[0])} over {got[1]}" if got else ""
        oracle = by.get(a["arm"].replace(f"plan-{a['model']}-", "plan-emulator-", 1)) if p else None
        if rnd and oracle and a["model"] != "emulator":
            got = paired_share(a["rows"], oracle["rows"], rnd["rows"])
            share = f"{_ci(got[0])} over {got[1]}" if got else ""
        plan_s = f"{a['plan_s']:.2f}" if a.get("plan_s") else "-"  # summaries from before plan_s: -
        lines.append(f"| {a['arm']} | {a['model'] or '-'} | {a['games']} | {_ci(a['score'])} | {_ci(a['lives_lost'])} "
                     f"| {_ci(a['steps'], 0)} | {a['game_over']}/{a['games']} | {a['decision_ms'][0]:.1f} | {plan_s} | "
                     f"{a['imagined_per_decision']:.0f} | {gain} | {share} |")
    return "\n".join(lines)


def budget_figure(arms: list[dict], path: Path) -> Path | None:
    """Score against the planner's lookahead (agent steps: horizon x action repeat) for the enumerating planners, one
    line per world model and action repeat (and replanning interval or tie tolerance where they differ), with their
    intervals, and random play as a band. None when fewer than two planner arms have played."""
    lines: dict[str, list] = {}
    for a in arms:
        p = a.get("planner") or {}
        if p and p.get("method") == "enumerate":
            label = f"{a['model']}, actions held {p['action_repeat']} step{'s' * (p['action_repeat'] > 1)}" + (
                "" if p["replan_every"] == p["action_repeat"] else f", replans every {p['replan_every']}")
            tol = p.get("tie_tolerance", PlannerConfig.tie_tolerance)
            label += "" if tol == PlannerConfig.tie_tolerance else f", ties within {tol:g}"
            lines.setdefault(label, []).append((p["horizon"] * p["action_repeat"], *a["score"]))
    if sum(map(len, lines.values())) < 2:
        return None
    rnd = next((a for a in arms if a["arm"] == "random"), None)
    return plot_intervals({label: sorted(pts) for label, pts in lines.items()}, path,
                          xlabel="lookahead (agent steps = horizon x action repeat)", ylabel="game score per game",
                          title="Breakout: score against planning lookahead", size=(5.5, 3.6),
                          band=(rnd["score"][1], rnd["score"][2], "random play (95% interval)") if rnd else None)


def plot_intervals(lines: dict[str, list[tuple]], path: Path, xlabel: str, ylabel: str, title: str,
                   size=(6.5, 3.8), band: tuple | None = None, log2x: bool = False,
                   ylim: tuple | None = None) -> Path:
    """One line per label through its points (x, mean, low, high) with interval bars, nudged apart along x so the
    bars do not hide each other; `band` (low, high, label) shaded across the plot (a baseline's interval)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=size)
    if band:
        ax.axhspan(band[0], band[1], color="0.85", label=band[2])
    for j, (label, pts) in enumerate(sorted(lines.items())):
        nudge = j - (len(lines) - 1) / 2
        x = [q[0] * (1 + 0.03 * nudge) if log2x else q[0] + 0.15 * nudge for q in pts]
        ax.errorbar(x, [q[1] for q in pts], yerr=[[q[1] - q[2] for q in pts], [q[3] - q[1] for q in pts]],
                    marker="o", capsize=3, label=label)
    if log2x:
        ax.set_xscale("log", base=2)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def libero_arms(cfg: IntegrationEvaluateConfig) -> list[dict]:
    order = {"first": 0, "world_model": 1, "pixel_goal": 2, "simulator": 3}

    def key(n: str):
        vla = n.startswith("vla-")
        return vla, order.get(n.removeprefix("vla-").rsplit("-k", 1)[0], 9), n
    return summaries(outputs_root(cfg.run.root) / "phase5" / "LIBERO", cfg.arms, key, "choose")


def _num(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def libero_table(arms: list[dict]) -> str:
    def same(a: dict, **want) -> bool:
        st = a["settings"]
        return all(st.get(k, "uwm" if k == "proposer" else None) == v for k, v in want.items())

    lines = ["| arm | proposer | choice | scorer | K | success | rate | 95% CI (Wilson) | mean steps | s / decision | "
             "share of the simulator's gain | score spread | final score of failures |", "|---" * 13 + "|"]
    for a in arms:
        t, st = a["total"], a["settings"]
        proposer = st.get("proposer", "uwm")
        # each chooser is compared with the same proposer alone and the simulator with the same scorer and K
        first = next((b for b in arms if same(b, proposer=proposer, choose="first")), None)
        want = {"proposer": proposer, "choose": "simulator", "proposals": st["proposals"]}
        if "scorer" in st:  # pixel_goal has none: any simulator arm of the proposer and K
            want["scorer"] = st["scorer"]
        sim = next((b for b in arms if same(b, **want)), None)
        share = ""
        if first and sim and st["choose"] in ("world_model", "pixel_goal"):
            gain = sim["total"]["rate"] - first["total"]["rate"]
            share = f"{(t['rate'] - first['total']['rate']) / gain:.2f}" if gain else "no gain to share"
        steps = sum(r["mean_steps"] * r["episodes"] for r in a["tasks"]) / max(t["episodes"], 1)
        spd = a.get("seconds_per_decision")
        scorer = a.get("scorer_name") or ("-" if "scorer" not in st else st["scorer"][:8])
        lines.append(f"| {a['arm']} | {'SmolVLA' if proposer == 'vla' else 'UWM'} | {st['choose']} | {scorer} | "
                     f"{st['proposals']} | {t['successes']}/{t['episodes']} | "
                     f"{100 * t['rate']:.0f}% | {100 * t['ci95'][0]:.0f}-{100 * t['ci95'][1]:.0f}% | {steps:.0f} | "
                     f"{'-' if spd is None else f'{spd:.2f}'} | {share} | {_num(a.get('score_spread'))} | "
                     f"{_num(a.get('failed_final_score'))} |")
    return "\n".join(lines)


def k_figure(arms: list[dict], path: Path) -> Path | None:
    """Success (Wilson 95% intervals) against K, one line per (proposer, choice, scorer), starting from the
    proposer alone at K = 1. None unless some line has two or more values of K > 1."""
    firsts = {a["settings"].get("proposer", "uwm"): a for a in arms if a["settings"]["choose"] == "first"}
    lines: dict[str, list] = {}
    for a in arms:
        st = a["settings"]
        if st["choose"] == "first":
            continue
        proposer = st.get("proposer", "uwm")
        label = re.sub(r"-k\d+", "", a["arm"])  # the arm without its K: proposer, choice, scorer and world model
        lines.setdefault(label, [firsts.get(proposer)]).append(a)
    lines = {k: [a for a in v if a] for k, v in lines.items()}
    if not any(len({a["settings"]["proposals"] for a in v if a["settings"]["choose"] != "first"}) >= 2
               for v in lines.values()):
        return None
    pct = lambda a: [100 * a["total"]["rate"], 100 * a["total"]["ci95"][0], 100 * a["total"]["ci95"][1]]  # noqa: E731
    return plot_intervals({label: [(a["settings"]["proposals"], *pct(a))
                                   for a in sorted(pts, key=lambda a: a["settings"]["proposals"])]
                           for label, pts in lines.items()}, path,
                          xlabel="K (proposals per decision; K = 1: the proposer alone)", ylabel="success (%)",
                          title="LIBERO: success against the number of proposals", log2x=True, ylim=(-3, 103))


def libero_main(cfg: IntegrationEvaluateConfig) -> str:
    arms = libero_arms(cfg)
    tasks = sorted({r["task_id"] for a in arms for r in a["tasks"]})
    md = libero_table(arms) + (
        f"\n\nLIBERO-Object task(s) {tasks}, fixed initial states none of the UWM's, the scorer's or the "
        f"SmolVLA's training demonstrations started from; every arm plays the same states. Times (wall-clock, "
        f"other jobs may have shared the machine) on {machines(arms)}.")
    fig = k_figure(arms, outputs_root(cfg.run.root) / "phase5" / "LIBERO" / "libero-success-vs-k.png")
    return _finish(cfg, md, fig, "success against K per proposer, choice and scorer, from the proposer alone "
                   "(K = 1), with Wilson 95% intervals.", "python -m phase5_integration.evaluate testbed=libero "
                   "publish=true")


def _finish(cfg: IntegrationEvaluateConfig, md: str, fig: Path | None, caption: str, command: str) -> str:
    """Print the block (with the figure's caption when there is a figure) and, with publish=true, write it into the
    README between its markers, the figure copied beside it."""
    if fig:
        md += f"\n\nThe figure: {caption}"
    print(md)
    if cfg.publish:
        publish_block(README, md, [fig] if fig else [], README.parent / "figures", command)
        print(f"published to {README}")
    return md


@command
def main(argv: list[str] | None = None) -> str:
    cfg = cli(IntegrationEvaluateConfig, "phase5/evaluate", argv, __doc__)
    if cfg.testbed == "libero":
        return libero_main(cfg)
    arms = load_arms(cfg)
    md = table(arms)
    md += (f"\n\n{canonical_game(cfg.game)}, DIAMOND's protocol; intervals are 95% percentile bootstrap over games; "
           f"games cut at {arms[0]['max_steps']} agent steps. Decision times (wall-clock, other jobs may have shared "
           f"the machine) on {machines(arms)}.")
    fig = budget_figure(arms, results_root(cfg.results, cfg.run.root) / canonical_game(cfg.game) / "breakout-budget.png")
    return _finish(cfg, md, fig, "score against lookahead (agent steps imagined ahead) for the enumerating "
                   "planners, a line per world model and action repeat, random play the grey band.",
                   "python -m phase5_integration.evaluate publish=true")


if __name__ == "__main__":
    main()
