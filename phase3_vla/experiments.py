"""The README's phase 3 experiments, in order, reusing every finished run and evaluated episode.

    python -m phase3_vla.experiments --plan                       # the cells, and which runs/episodes exist
    python -m phase3_vla.experiments                              # all of them (cpu profile: hours, see README)
    python -m phase3_vla.experiments experiments.only=[base,zeroshot] experiments.workers=2
    python -m phase3_vla.experiments experiments.train_only=true       # train every run, evaluate nothing
    bash scripts/phase3_experiments_2x.sh                              # two chains at a time (2 cores), then the table
    python -m phase3_vla.experiments profile=smoke data.demos=smoke   # toy scale (collect profile=smoke new_val_demos=1 first)

The protocol: demonstrations start from sampled placements, evaluation from LIBERO's fixed initial states
0..n-1 of each task, the same states for every cell, and `phase3_vla.evaluate` refuses a state that any
training demonstration (of the run, or of its base run) started from. Learning rates are chosen on the
validation demonstrations (collect's new_val data set), never on the evaluation states.

1. base      the base model (`phase3_vla.train`), on its 9 tasks (experiments.base_episodes states each)
2. curve     its snapshots at the steps of monitor.snapshots, on the same states: the learning curve
3. zeroshot  the base model on the new task, never seen in training (experiments.new_episodes states)
4. lr        the learning-rate sweep: LoRA (rank main_rank, lerobot's targets) at each of experiments.lora_lrs and
             full finetuning at each of experiments.full_lrs, main_demos demos; the validation loss picks one
             per method (nothing is evaluated in the simulator)
5. lora      the chosen LoRA run, on the new task (experiments.new_episodes)
6. full      the chosen full-finetuning run, on the same states
7. targets   LoRA with the target sets of experiments.targets (lerobot's, the action expert, everything)
8. ranks     LoRA of rank 4 / 16 / 64 (alpha = 2 x rank)
9. demos     LoRA on the first 5 / 10 / 25 / 50 demos
10. harder   cells 3, 5 and 6 again from the same fixed states with the target item and the basket moved by
             experiments.perturb/2..perturb metres (libero.perturb): starts that really differ
11. noise    cells 3, 5 and 6 again from the same states with eval.seed=experiments.noise_seed: how much of an
             episode's outcome the flow-matching noise drawn for it decides (the table says on how many states
             the two seeds agree)
Ablations (7-9) get experiments.ablation_episodes states (the first of the main cells' states) and LoRA's chosen
learning rate; the cell they share with the main comparison is the same run, and its row counts only those states.

Each training run is `phase3_vla.train` / `phase3_vla.finetune` with a fixed run name (base-<profile>,
lora-r<r>-n<demos>-lr<lr>[-<targets>]-<profile>, full-n<demos>-lr<lr>-<profile>): a finished run is reused
(after checking that its saved settings are the ones this command would use), an interrupted one resumed, a
missing one trained. Other key=value arguments (data.*, run.root, run.threads, policy.*, finetune.train.*,
eval.libero.*, ...) are passed on to every command. After every cell the table is rewritten:
<run.root>/phase3/experiments/<profile>/results.md + results.json (success, Wilson 95% interval, validation
loss, trainable parameters, training wall time per cell).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common.checkpoint import atomic_write
from common.config import cli, load_config, load_saved_config, to_dict
from common.errors import UserError, command
from common.runs import outputs_root
from phase3_vla.config import EXPERIMENT_STEPS, Phase3Config, only_read_by
from phase3_vla import training


STEPS = EXPERIMENT_STEPS
NUMBER = {"base": "1", "curve": "1b", "zeroshot": "1", "lr": "2a", "lora": "2", "full": "2", "targets": "3a",
          "ranks": "3b", "demos": "3c", "harder": "4", "noise": "2b"}  # README's numbering
# What a reused run must agree on with this command's settings (the rest - logging, eval - does not change it).
COMPARED = {"train": ("data", "policy", "train"), "finetune": ("data", "finetune", "policy.mask_padded_actions")}
IGNORED = {"train": ("data.new_folder",), "finetune": ("data.base_folder",)}  # the other command's dataset


class ExperimentsError(UserError, RuntimeError):
    """A finished run was made with other settings; the message names them and what to do."""


@dataclass
class Cell:
    step: str
    label: str
    run: str  # run name (trained by `command`) or, for snapshots, "<run>/snapshots/step_N/policy"
    command: str  # train | finetune
    overrides: list[str]
    tasks: list[int]
    episodes: int  # fixed initial states 0..episodes-1 of each task; 0 = not evaluated (lr sweep)
    extra: dict = field(default_factory=dict)  # method, rank, demos, lr, targets for the table
    trained_by: str = ""  # the run that makes `run` (snapshots: the base run); "" = run itself
    perturb: float = 0.0  # evaluated from perturbed fixed states (libero.perturb)
    eval_seed: int | None = None  # eval.seed of its episodes; None = the command's eval.seed


def lr_tag(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-").replace("+0", "")


def lora_cell(cfg: Phase3Config, step: str, r: int, n: int, lr: float, targets: str, episodes: int) -> Cell:
    p = cfg.profile
    tail = "" if targets == "lerobot" else f"-{targets}"
    return Cell(step, f"LoRA r={r}, {n} demos, lr {lr:g}, {targets} targets", f"lora-r{r}-n{n}-lr{lr_tag(lr)}{tail}-{p}",
                "finetune", ["finetune.method=lora", f"finetune.lora.r={r}", f"finetune.num_demos={n}",
                             f"finetune.train.lr={lr}", f"finetune.lora.target_modules={'' if targets == 'lerobot' else targets}"],
                [cfg.experiments.new_task], episodes,
                {"method": "lora", "rank": r, "demos": n, "lr": lr, "targets": targets})


def full_cell(cfg: Phase3Config, step: str, n: int, lr: float, episodes: int) -> Cell:
    return Cell(step, f"full finetuning, {n} demos, lr {lr:g}", f"full-n{n}-lr{lr_tag(lr)}-{cfg.profile}", "finetune",
                ["finetune.method=full", f"finetune.num_demos={n}", f"finetune.train.lr={lr}"],
                [cfg.experiments.new_task], episodes, {"method": "full", "demos": n, "lr": lr})


def sweep(cfg: Phase3Config, method: str) -> list[Cell]:
    e = cfg.experiments
    if method == "lora":
        return [lora_cell(cfg, "lr", e.main_rank, e.main_demos, lr, "lerobot", 0) for lr in e.lora_lrs]
    return [full_cell(cfg, "lr", e.main_demos, lr, 0) for lr in e.full_lrs]


def val_loss(cell: Cell, root: str) -> float | None:
    info = training.finished(training.run_dir(cell.run, root)) or {}
    return info.get("val_loss")


def chosen_lr(cfg: Phase3Config, method: str) -> float | None:
    """The learning rate of the sweep run with the lowest validation loss; None until every sweep run exists."""
    losses = [(val_loss(c, cfg.run.root), c.extra["lr"]) for c in sweep(cfg, method)]
    if any(v is None for v, _ in losses):
        return None
    return min(losses)[1]


def cells(cfg: Phase3Config, lrs: dict[str, float | None] | None = None) -> list[Cell]:
    """Every cell, in order. The cells that depend on the learning-rate choice use `lrs[method]` (the chosen
    one; while unknown, the first of the sweep, marked in the label)."""
    e, p = cfg.experiments, cfg.profile
    lrs = lrs or {}
    lr_lora = lrs.get("lora") or e.lora_lrs[0]
    lr_full = lrs.get("full") or e.full_lrs[0]
    base = f"base-{p}"
    out = [Cell("base", "base model on its tasks", base, "train", [], list(e.base_tasks), e.base_episodes,
                {"method": "base"})]
    for step in cfg.monitor.snapshots:
        if step < cfg.train.max_steps:
            out.append(Cell("curve", f"base model after {step} of {cfg.train.max_steps} steps, on its tasks",
                            f"{base}/snapshots/step_{step:06d}/policy", "train", [], list(e.base_tasks),
                            e.base_episodes, {"method": "base", "steps": step}, trained_by=base))
    out.append(Cell("zeroshot", "base model on the new task (zero-shot)", base, "train", [], [e.new_task],
                    e.new_episodes, {"method": "base (zero-shot)"}))
    out += sweep(cfg, "lora") + sweep(cfg, "full")
    out.append(lora_cell(cfg, "lora", e.main_rank, e.main_demos, lr_lora, "lerobot", e.new_episodes))
    out.append(full_cell(cfg, "full", e.main_demos, lr_full, e.new_episodes))
    out += [lora_cell(cfg, "targets", e.main_rank, e.main_demos, lr_lora, t, e.ablation_episodes) for t in e.targets]
    out += [lora_cell(cfg, "ranks", r, e.main_demos, lr_lora, "lerobot", e.ablation_episodes) for r in e.ranks]
    out += [lora_cell(cfg, "demos", e.main_rank, n, lr_lora, "lerobot", e.ablation_episodes) for n in e.demos]
    for c in out[:]:
        if c.step in ("zeroshot", "lora", "full"):
            out.append(Cell("harder", f"{c.label}, target and basket moved {e.perturb / 2:g}-{e.perturb:g} m", c.run,
                            c.command, c.overrides, c.tasks, e.harder_episodes, {**c.extra, "perturb": e.perturb},
                            perturb=e.perturb))
    for c in out[:]:
        if c.step in ("zeroshot", "lora", "full"):
            out.append(Cell("noise", f"{c.label}, noise seed {e.noise_seed}", c.run, c.command, c.overrides, c.tasks,
                            c.episodes, {**c.extra, "eval_seed": e.noise_seed}, eval_seed=e.noise_seed))
    for c in out:
        if c.extra.get("lr") is not None and c.step not in ("lr",) and not lrs.get(c.extra["method"]):
            c.label += " (lr not chosen yet)"
    return [c for c in out if not e.only or c.step in e.only]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, (list, tuple)) else v
    return out


def _compared(d: dict, command: str) -> dict:
    flat = _flat(d)
    return {k: v for k, v in flat.items() if any(k == c or k.startswith(c + ".") for c in COMPARED[command])}


def check_same_settings(run: Path, command: str, overrides: list[str]) -> None:
    """A finished run is reused only if it was made with the settings this command would use now."""
    want = _compared(to_dict(load_config(Phase3Config, f"phase3/{command}", overrides)), command)
    saved = _compared(to_dict(load_saved_config(Phase3Config, run / "config.yaml")), command)  # old key names moved
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

    name = cell.trained_by or cell.run
    run = training.run_dir(name, root)
    args = [*common, *cell.overrides, f"run.name={name}"]
    state = status(run)
    if state == "done":
        check_same_settings(run, cell.command, args)
        return training.finished(run)
    main = train.main if cell.command == "train" else finetune.main
    print(f"experiments: {'resuming' if state == 'partial' else 'training'} {run.name}", flush=True)
    main(only_read_by(cell.command, args) + (["run.resume=true"] if state == "partial" else []))
    return training.finished(run)


def row(cell: Cell, info: dict, result: dict | None) -> dict:
    from phase3_vla.rollouts import summarize

    snapshot = cell.extra.get("steps")  # a learning-curve cell: the base run's values at that step
    val = (training.last_metric(training.run_of(Path(info["policy"])), "val/loss", snapshot) if snapshot
           else info.get("val_loss"))
    base = {"step": cell.step, "label": cell.label, "run": cell.run, **cell.extra, "tasks": cell.tasks,
            "episodes_per_task": cell.episodes, "val_loss": val, "trainable": info["trainable"],
            "total_params": info["total"], "train_seconds": None if snapshot else info["seconds"],
            "train_steps": snapshot or info["steps"]}
    if result is None:
        return base
    s = summarize(Path(result["out"]), result["settings"], cell.tasks, list(range(cell.episodes)))
    return {**base, "successes": s["total"]["successes"], "episodes": s["total"]["episodes"],
            "rate": s["total"]["rate"], "ci95": s["total"]["ci95"], "failures": _sum_failures(s["tasks"]),
            "per_task": s["tasks"], "eval_dir": result["out"], "starts_check": result.get("starts_check")}


def _sum_failures(tasks: list[dict]) -> dict:
    out: dict = {}
    for t in tasks:
        for k, v in t["failures"].items():
            out[k] = out.get(k, 0) + v
    return out


def census(rows: list[dict]) -> dict:
    """Every distinct episode behind the table (cells that share a run and settings share episodes): how many,
    successes, failure modes, the highest rise of a 'never lifted' item, and the core time they took."""
    import json as _json

    from phase3_vla.rollouts import LIFTED

    seen = {}
    for r in rows:
        if "per_task" not in r or not r.get("eval_dir"):
            continue
        for t in r["per_task"]:
            for st in t.get("outcomes", {}):
                key = (r["eval_dir"], t["task_id"], int(st))
                if key not in seen:
                    path = Path(r["eval_dir"]) / "episodes" / f"task_{t['task_id']:02d}_ep_{int(st):03d}.json"
                    seen[key] = _json.loads(path.read_text()) if path.exists() else None
    eps = [e for e in seen.values() if e is not None]
    fails = [e for e in eps if not e["success"]]
    never = [e for e in fails if e["max_lift_m"] < LIFTED]
    return {"episodes": len(eps), "successes": len(eps) - len(fails), "failures": len(fails),
            "never_lifted": len(never), "highest_never_lifted_cm": round(100 * max((e["max_lift_m"] for e in never),
                                                                                  default=0.0), 1),
            "lifted_not_placed": len(fails) - len(never),
            "core_minutes": round(sum(e["seconds"] for e in eps) / 60, 1),
            "success_seconds": [round(min((e["seconds"] for e in eps if e["success"]), default=0), 1),
                                round(max((e["seconds"] for e in eps if e["success"]), default=0), 1)],
            "failure_seconds_median": round(sorted(e["seconds"] for e in fails)[len(fails) // 2], 1) if fails else 0}


def failed_states(row: dict) -> list[int]:
    """The fixed initial states a cell failed on (its per-episode outcomes; [] for rows made before they were kept)."""
    return sorted(int(st) for t in row.get("per_task", []) for st, ok in t.get("outcomes", {}).items() if not ok)


def noise_agreement(rows: list[dict]) -> list[dict]:
    """Per noise-check row: its per-state outcomes against the main row of the same run, on the states both played."""
    main = {r["run"]: r for r in rows if r["step"] in ("zeroshot", "lora", "full") and "per_task" in r}
    out = []
    for r in rows:
        if r["step"] != "noise" or "per_task" not in r or r["run"] not in main:
            continue
        a = {(t["task_id"], int(s)): ok for t in main[r["run"]]["per_task"] for s, ok in t.get("outcomes", {}).items()}
        b = {(t["task_id"], int(s)): ok for t in r["per_task"] for s, ok in t.get("outcomes", {}).items()}
        both = sorted(a.keys() & b.keys())
        pairs = [(a[k], b[k]) for k in both]
        out.append({"run": r["run"], "states": len(both), "agree": sum(x == y for x, y in pairs),
                    "both": sum(x and y for x, y in pairs), "neither": sum(not x and not y for x, y in pairs),
                    "only_main": sum(x and not y for x, y in pairs), "only_other": sum(y and not x for x, y in pairs)})
    return out


def results_page(rows: list[dict], cfg: Phase3Config) -> str:
    e = cfg.experiments
    lines = [f"# Phase 3 experiments ({cfg.profile} profile)", "",
             f"Written by `python -m phase3_vla.experiments profile={cfg.profile}`. Success = LIBERO's own check "
             f"within {cfg.eval.libero.max_steps} steps. Demonstrations start from sampled placements; evaluation "
             f"episodes start from LIBERO's fixed initial states 0..n-1 of each task (n = {e.base_episodes} per base "
             f"task, {e.new_episodes} on the new task for the main cells, {e.ablation_episodes} for the ablations), "
             "checked to be none of the training starts. 95% intervals are Wilson score intervals. val loss = "
             "flow-matching loss on the validation demonstrations (new_val for finetunes, base_val for the base "
             "model), which chose the learning rates. Train time = wall clock of that run on the machine that "
             "trained it.", "",
             "| # | experiment | run | val loss | trainable params | train time | steps | success | rate | 95% CI | failures |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        frac = 100 * r["trainable"] / max(1, r["total_params"])
        val = f"{r['val_loss']:.4f}" if r.get("val_loss") is not None else "-"
        if "successes" in r:
            fails = ", ".join(f"{v} {k}" for k, v in r["failures"].items()) or "-"
            failed = failed_states(r)
            if failed and len(r["tasks"]) == 1:  # the new task's cells: which states failed, to compare cells
                fails += f" (states {', '.join(map(str, failed))})"
            score = (f"{r['successes']}/{r['episodes']} | {100 * r['rate']:.0f}% | "
                     f"{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f}% | {fails}")
        else:
            score = "- | - | - | not evaluated (chosen on val loss)"
        took = f"{r['train_seconds'] / 60:.1f} min" if r.get("train_seconds") is not None else "(part of the run)"
        lines.append(f"| {NUMBER[r['step']]} | {r['label']} | `{r['run']}` | {val} | {r['trainable']:,} ({frac:.2f}%) | "
                     f"{took} | {r['train_steps']} | {score} |")
    c = census(rows)
    if c["episodes"]:
        lines += ["", f"Distinct episodes behind the table: {c['episodes']} ({c['successes']} successes, {c['failures']} "
                  f"failures: {c['never_lifted']} never lifted the item more than {c['highest_never_lifted_cm']} cm, "
                  f"{c['lifted_not_placed']} lifted it and did not place it), {c['core_minutes']} min of one core "
                  f"(a success {c['success_seconds'][0]}-{c['success_seconds'][1]} s, a failure {c['failure_seconds_median']} "
                  "s at the median; as logged, so on a busy machine more)."]
    agreement = noise_agreement(rows)
    if agreement:
        lines += ["", f"Same states, other noise (eval.seed {e.noise_seed} against the main cells' seed): states "
                  "where both seeds succeeded / both failed / only the main seed / only the other seed succeeded.", "",
                  "| run | states | agree | both succeeded | both failed | only main seed | only other seed |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| `{a['run']}` | {a['states']} | {a['agree']}/{a['states']} | {a['both']} | {a['neither']} | "
                  f"{a['only_main']} | {a['only_other']} |" for a in agreement]
    for r in rows:
        if r["step"] in ("base", "curve") and "per_task" in r:
            lines += ["", f"{r['label']} (`{r['run']}`), per task:", "", "| task | instruction | success | 95% CI |",
                      "|---|---|---|---|"]
            for t in r["per_task"]:
                lines.append(f"| {t['task_id']} | {t['instruction']} | {t['successes']}/{t['episodes']} | "
                             f"{100 * t['ci95'][0]:.0f}-{100 * t['ci95'][1]:.0f}% |")
    return "\n".join(lines) + "\n"


def forwarded(argv: list[str]) -> list[str]:
    """The user's overrides that every sub-command gets (not the ones the runner sets per cell)."""
    own = ("experiments.", "run.name=", "run.resume=", "profile=", "load=", "eval.run=", "finetune.base=", "eval.tasks=", "eval.episodes=",
           "eval.first_state=", "eval.workers=", "eval.libero.perturb=", "eval.seed=", "finetune.method=", "finetune.num_demos=", "finetune.lora.r=",
           "finetune.train.lr=", "finetune.lora.target_modules=")
    return [a for a in argv if not a.startswith(own) and a not in ("--plan", "--cfg")]


def _merge_rows(out: Path, rows: list[dict]) -> list[dict]:
    """This call's rows merged into results.json's (two chains write one table): by (step, run), in STEPS order."""
    old = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else []
    keep = {(r["step"], r["run"]): r for r in old}
    keep.update({(r["step"], r["run"]): r for r in rows})
    return sorted(keep.values(), key=lambda r: STEPS.index(r["step"]))


@command
def main(argv: list[str] | None = None) -> dict:
    argv = ["experiments.plan=true" if a == "--plan" else a for a in (sys.argv[1:] if argv is None else argv)]
    cfg = cli(Phase3Config, "phase3/experiments", argv, __doc__)
    e = cfg.experiments
    common = [f"profile={cfg.profile}", *forwarded(argv)]
    out = Path(e.out).expanduser().resolve() if e.out else (
        outputs_root(cfg.run.root) / training.PHASE / "experiments" / cfg.profile)
    lrs = {m: chosen_lr(cfg, m) for m in ("lora", "full")}
    if e.noise_seed == cfg.eval.seed and (not e.only or "noise" in e.only):
        raise ExperimentsError(f"experiments.noise_seed={e.noise_seed} is eval.seed: the noise check needs another seed "
                               f"(e.g. experiments.noise_seed={cfg.eval.seed + 1})")
    if e.plan:
        todo = cells(cfg, lrs)
        for c in todo:
            run = training.run_dir(c.trained_by or c.run, cfg.run.root)
            evaluated = f"eval tasks {c.tasks} x states 0-{c.episodes - 1}" if c.episodes else "val loss only"
            print(f"{c.step:8s} {c.label:58s} run {c.run:34s} [{status(run)}], {evaluated}")
        print(f"chosen learning rates (lowest validation loss): {lrs}")
        return {"cells": [c.__dict__ for c in todo], "out": str(out), "lrs": lrs}
    from phase3_vla import evaluate as evaluation

    rows = []
    for step in STEPS:
        if e.only and step not in e.only:
            continue
        methods = {"full": ["full"], "harder": ["lora", "full"], "noise": ["lora", "full"]}.get(step, ["lora"] if step in (
            "lora", "targets", "ranks", "demos") else [])
        for method in methods:
            if lrs[method] is None:  # the sweep first (its runs are reused if they exist)
                for c in sweep(cfg, method):
                    ensure_trained(c, common, cfg.run.root)
                lrs[method] = chosen_lr(cfg, method)
                if lrs[method] is None:
                    raise ExperimentsError(
                        f"the {method} learning-rate sweep has no validation loss to choose by: its runs found no "
                        f"validation data set ({training.dataset_folder(cfg, 'new_val')}). Collect one with python -m "
                        f"phase3_vla.collect new_val_demos=10 (or point data.new_folder at a folder with a _val twin)")
                print(f"experiments: {method} learning rate {lrs[method]:g} (lowest validation loss of "
                      f"{[c.extra['lr'] for c in sweep(cfg, method)]})", flush=True)
        for c in cells(cfg, lrs):
            if c.step != step:
                continue
            info = ensure_trained(c, common, cfg.run.root)
            result = None
            if c.episodes and not e.train_only:
                spec = str(training.run_dir(c.trained_by, cfg.run.root) / c.run.partition("/")[2]) if c.trained_by else c.run
                result = evaluation.main([*only_read_by("evaluate", common), f"load={spec}",
                                          f"eval.tasks=[{','.join(map(str, c.tasks))}]", f"eval.episodes={c.episodes}",
                                          "eval.first_state=0", f"eval.workers={e.workers}",
                                          f"eval.libero.perturb={c.perturb}",
                                          f"eval.seed={cfg.eval.seed if c.eval_seed is None else c.eval_seed}"])
            rows.append(row(c, info, result))
            out.mkdir(parents=True, exist_ok=True)
            merged = _merge_rows(out, rows)
            atomic_write(out / "results.json", lambda f: f.write(json.dumps(merged, indent=1).encode()))
            atomic_write(out / "results.md", lambda f: f.write(results_page(merged, cfg).encode()))
            score = f"{rows[-1]['successes']}/{rows[-1]['episodes']}" if "successes" in rows[-1] else \
                f"val loss {rows[-1]['val_loss']}"
            print(f"experiments: {c.label}: {score} -> {out / 'results.md'}", flush=True)
    return {"rows": rows, "out": str(out), "lrs": lrs}


if __name__ == "__main__":
    main()
