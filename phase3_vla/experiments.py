"""The README's phase 3 experiments, in order, reusing every finished run and evaluated episode.

    python -m phase3_vla.experiments --plan                       # the cells, and which runs/episodes exist
    python -m phase3_vla.experiments                              # all of them (cpu profile: hours, see README)
    python -m phase3_vla.experiments experiments.only=[base,zeroshot]
    python -m phase3_vla.experiments experiments.new_episodes=20 experiments.base_episodes=5
    python -m phase3_vla.experiments experiments.ablation_episodes=5   # fewer episodes for the ablation cells
    python -m phase3_vla.experiments experiments.train_only=true       # train every run, evaluate nothing
    bash scripts/phase3_experiments_2x.sh                              # two cells at a time (2 cores), then the table
    python -m phase3_vla.experiments profile=smoke data.demos=smoke   # the whole chain at toy scale

1. base       the base model (`phase3_vla.train`), evaluated on its 9 tasks (experiments.base_episodes each)
2. zeroshot   the same model on the new task, never seen in training (experiments.new_episodes)
3. lora       LoRA (rank main_rank) on main_demos demos of the new task, evaluated on it
4. full       full finetuning on the same demos, evaluated on it
5. demos      LoRA (rank main_rank) on the first 5 / 10 / 25 / 50 demos (experiments.demos)
6. ranks      LoRA of rank 4 / 16 / 64 on main_demos demos (experiments.ranks; alpha = 2 x rank)

Each training run is `phase3_vla.train` / `phase3_vla.finetune` called with a fixed run name (base-<profile>,
lora-r<r>-n<demos>-<profile>, full-n<demos>-<profile>): a finished run is reused (after checking that its
saved settings are the ones this command would use), an interrupted one is resumed, a missing one is
trained. Evaluation is `phase3_vla.evaluate`, which reuses episodes already played with the same weights and
settings. Other key=value arguments (data.*, run.root, run.threads, policy.*, finetune.train.*, eval.libero.*,
...) are passed on to every command. After every cell the table is rewritten:
<run.root>/phase3/experiments/<profile>/results.md + results.json (success, Wilson 95% interval, trainable
parameters, training wall time per cell).

Evaluation renders both cameras in software: ~40 s per 280-step failure and 15-20 s per success on one core
of the 2-core machine (with another job on the other core), so the cpu profile's counts are small: 2 episodes
per base task, 10 per main cell on the new task, 5 per ablation cell; the intervals say how little that is.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common.checkpoint import atomic_write
from common.config import cli, load_config, to_dict
from common.errors import UserError, command
from common.runs import outputs_root
from phase3_vla.config import Phase3Config, only_read_by
from phase3_vla import training


STEPS = ("base", "zeroshot", "lora", "full", "demos", "ranks")
NUMBER = {"base": "1", "zeroshot": "1", "lora": "2", "full": "2", "demos": "3a", "ranks": "3b"}  # README's numbering
# What a reused run must agree on with this command's settings (the rest - logging, eval - does not change it).
COMPARED = {"train": ("data", "policy", "train"), "finetune": ("data", "finetune")}
IGNORED = {"train": ("data.new_folder",), "finetune": ("data.base_folder",)}  # the other command's dataset


class ExperimentsError(UserError, RuntimeError):
    """A finished run was made with other settings; the message names them and what to do."""


@dataclass
class Cell:
    step: str
    label: str
    run: str
    command: str  # train | finetune
    overrides: list[str]
    tasks: list[int]
    episodes: int
    extra: dict = field(default_factory=dict)  # method, rank, demos for the table


def cells(cfg: Phase3Config) -> list[Cell]:
    e, p = cfg.experiments, cfg.profile
    base = f"base-{p}"

    def lora(step: str, r: int, n: int) -> Cell:
        main = (r, n) == (e.main_rank, e.main_demos)  # the ablations' shared point keeps experiment 2's episodes
        episodes = e.new_episodes if main or not e.ablation_episodes else e.ablation_episodes
        return Cell(step, f"LoRA r={r}, {n} demos", f"lora-r{r}-n{n}-{p}", "finetune",
                    ["finetune.method=lora", f"finetune.lora.r={r}", f"finetune.num_demos={n}"], [e.new_task],
                    episodes, {"method": "lora", "rank": r, "demos": n})

    out = [Cell("base", "base model on its tasks", base, "train", [], list(e.base_tasks), e.base_episodes,
                {"method": "base"}),
           Cell("zeroshot", "base model on the new task (zero-shot)", base, "train", [], [e.new_task], e.new_episodes,
                {"method": "base (zero-shot)"}),
           lora("lora", e.main_rank, e.main_demos),
           Cell("full", f"full finetuning, {e.main_demos} demos", f"full-n{e.main_demos}-{p}", "finetune",
                ["finetune.method=full", f"finetune.num_demos={e.main_demos}"], [e.new_task], e.new_episodes,
                {"method": "full", "demos": e.main_demos})]
    out += [lora("demos", e.main_rank, n) for n in e.demos]
    out += [lora("ranks", r, e.main_demos) for r in e.ranks]
    return [c for c in out if not e.only or c.step in e.only]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, (list, tuple)) else v
    return out


def check_same_settings(run: Path, command: str, overrides: list[str]) -> None:
    """A finished run is reused only if it was made with the settings this command would use now."""
    from omegaconf import OmegaConf

    want = _flat({k: v for k, v in to_dict(load_config(Phase3Config, f"phase3/{command}", overrides)).items()
                  if k in COMPARED[command]})
    saved = _flat({k: v for k, v in OmegaConf.to_container(OmegaConf.load(run / "config.yaml")).items()
                   if k in COMPARED[command]})
    diff = [f"{k}={saved.get(k)!r} (now {want.get(k)!r})" for k in sorted(set(want) | set(saved))
            if saved.get(k) != want.get(k) and k not in IGNORED[command]]
    if diff:
        raise ExperimentsError(f"{run} was trained with other settings: {'; '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}. "
                               f"Delete it to train it again, or run the experiments under another run.root=...")


def status(run: Path) -> str:
    if training.finished(run):
        return "done"
    return "partial" if any((run / "checkpoints").glob("step_*.pt")) else "todo"


def ensure_trained(cell: Cell, common: list[str], root: str) -> dict:
    from phase3_vla import finetune, train

    run = training.run_dir(cell.run, root)
    args = [*common, *cell.overrides, f"run.name={cell.run}"]
    state = status(run)
    if state == "done":
        check_same_settings(run, cell.command, args)
        return training.finished(run)
    main = train.main if cell.command == "train" else finetune.main
    print(f"experiments: {'resuming' if state == 'partial' else 'training'} {run.name}", flush=True)
    main(only_read_by(cell.command, args) + (["run.resume=true"] if state == "partial" else []))
    return training.finished(run)


def row(cell: Cell, info: dict, result: dict) -> dict:
    from phase3_vla.rollouts import summarize

    s = summarize(Path(result["out"]), result["settings"], cell.tasks, cell.episodes)
    return {"step": cell.step, "label": cell.label, "run": cell.run, **cell.extra, "tasks": cell.tasks,
            "episodes_per_task": cell.episodes, "successes": s["total"]["successes"], "episodes": s["total"]["episodes"],
            "rate": s["total"]["rate"], "ci95": s["total"]["ci95"],
            "failures": _sum_failures(s["tasks"]), "per_task": s["tasks"], "trainable": info["trainable"],
            "total_params": info["total"], "train_seconds": info["seconds"], "train_steps": info["steps"],
            "eval_dir": result["out"]}


def _sum_failures(tasks: list[dict]) -> dict:
    out: dict = {}
    for t in tasks:
        for k, v in t["failures"].items():
            out[k] = out.get(k, 0) + v
    return out


def results_page(rows: list[dict], cfg: Phase3Config) -> str:
    e = cfg.experiments
    lines = [f"# Phase 3 experiments ({cfg.profile} profile)", "",
             f"Written by `python -m phase3_vla.experiments profile={cfg.profile}`. Success = LIBERO's own check "
             f"within {cfg.eval.libero.max_steps} steps; episode i starts from fixed initial state i. Evaluation "
             f"episodes per cell: {e.new_episodes} on the new task"
             + (f" ({e.ablation_episodes} for the ablation cells other than the main LoRA)" if e.ablation_episodes else "")
             + f", {e.base_episodes} per base task; 95% intervals "
             "are Wilson score intervals. Train time = wall clock of that run on the machine that trained it.", "",
             "| # | experiment | run | trainable params | train time | steps | success | rate | 95% CI | failures |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        frac = 100 * r["trainable"] / max(1, r["total_params"])
        fails = ", ".join(f"{v} {k}" for k, v in r["failures"].items()) or "-"
        lines.append(f"| {NUMBER[r['step']]} | {r['label']} | `{r['run']}` | {r['trainable']:,} ({frac:.2f}%) | {r['train_seconds'] / 60:.1f} min | "
                     f"{r['train_steps']} | {r['successes']}/{r['episodes']} | {100 * r['rate']:.0f}% | "
                     f"{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f}% | {fails} |")
    base = [r for r in rows if r["step"] == "base"]
    if base:
        lines += ["", "Base model per task:", "", "| task | instruction | success | 95% CI |", "|---|---|---|---|"]
        for t in base[0]["per_task"]:
            lines.append(f"| {t['task_id']} | {t['instruction']} | {t['successes']}/{t['episodes']} | "
                         f"{100 * t['ci95'][0]:.0f}-{100 * t['ci95'][1]:.0f}% |")
    return "\n".join(lines) + "\n"


def forwarded(argv: list[str]) -> list[str]:
    """The user's overrides that every sub-command gets (not the ones the runner sets per cell)."""
    own = ("experiments.", "run.name=", "run.resume=", "profile=", "eval.run=", "eval.tasks=", "eval.episodes=",
           "finetune.method=", "finetune.num_demos=", "finetune.lora.r=")
    return [a for a in argv if not a.startswith(own) and a not in ("--plan", "--cfg")]


@command
def main(argv: list[str] | None = None) -> dict:
    argv = ["experiments.plan=true" if a == "--plan" else a for a in (sys.argv[1:] if argv is None else argv)]
    cfg = cli(Phase3Config, "phase3/experiments", argv, __doc__)
    common = [f"profile={cfg.profile}", *forwarded(argv)]
    todo = cells(cfg)
    out = Path(cfg.experiments.out).expanduser().resolve() if cfg.experiments.out else (
        outputs_root(cfg.run.root) / training.PHASE / "experiments" / cfg.profile)
    if cfg.experiments.plan:
        for c in todo:
            run = training.run_dir(c.run, cfg.run.root)
            played = len(list((run / "eval" / "episodes").glob("task_*_ep_*.json"))) if (run / "eval").is_dir() else 0
            print(f"{c.step:9s} {c.label:42s} run {c.run:22s} [{status(run)}], eval tasks {c.tasks} x {c.episodes} "
                  f"({played} episode file(s) in its eval/)")
        return {"cells": [c.__dict__ for c in todo], "out": str(out)}
    from phase3_vla import evaluate as evaluation

    rows = []
    for c in todo:
        info = ensure_trained(c, common, cfg.run.root)
        if cfg.experiments.train_only:
            continue
        result = evaluation.main([*only_read_by("evaluate", common), f"eval.run={c.run}", f"eval.tasks=[{','.join(map(str, c.tasks))}]",
                                  f"eval.episodes={c.episodes}"])
        rows.append(row(c, info, result))
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "results.json", lambda f: f.write(json.dumps(rows, indent=1).encode()))
        atomic_write(out / "results.md", lambda f: f.write(results_page(rows, cfg).encode()))
        print(f"experiments: {c.label}: {rows[-1]['successes']}/{rows[-1]['episodes']} -> {out / 'results.md'}",
              flush=True)
    return {"rows": rows, "out": str(out)}


if __name__ == "__main__":
    main()
