"""Phase 4's comparison: the finetuned UWM, its baselines and its ablations side by side, from their evaluations.

    python -m phase4_uwm.compare                          # the runs scripts/phase4_experiments.sh makes
    python -m phase4_uwm.compare runs=[uwm-new-cpu,dp-new-cpu] publish=true

Each run was evaluated on its own by `python -m phase4_uwm.evaluate` (scripts/phase4_experiments.sh, stage
`arms`); this command reads their `<run>/evaluate/results.json` and writes two tables: the policy (LIBERO success
with Wilson intervals, and the action error on validation clips) and the frames (forward dynamics with the real
actions and with another clip's, video prediction, inverse dynamics), with the baselines the evaluations measured
(copy-current, DIAMOND-lite, the tokenizer's ceiling, the inverse regressor, the mean action). It refuses runs scored
on different clips or LIBERO starts; a run not evaluated yet is listed as such, with the command that evaluates it.
`publish=true` writes the block of phase4_uwm/README.md that belongs to this command.

The runs themselves (outputs/) do not outlive the machine they were trained on, and all of them take longer than a
working session on 2 cores. So `keep=true` copies each evaluated run's record (its results.json and results.md, and
the run's config.yaml) into the repository's `phase4_uwm/results/<run>/` (`records`), and a run whose folder has no
evaluation is read from there: the table can be remade, and a session can add its runs to it, without the others'.
The run's own evaluation, when present, wins over its record.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from common.checkpoint import atomic_write
from common.config import ConfigError, cli
from common.errors import command
from common.runs import outputs_root
from common.stats import mcnemar_exact
from phase1_world_model.metrics import fmt
from phase4_uwm.config import UWMCompareConfig

COMMAND = "python -m phase4_uwm.compare publish=true"
# what must be equal for two evaluations to share a table
SAME_CLIPS = ("split", "clips", "denoise_steps", "timestep_spacing")
SAME_EPISODES = ("suite", "max_steps", "image_size", "seed", "hard_reset", "perturb")


RECORDS = Path(__file__).resolve().parent / "results"  # committed evaluation records (keep=true)
KEPT = ("evaluate/results.json", "evaluate/results.md", "config.yaml")  # what a record holds, relative to the run


def run_dir(spec: str, root: str) -> Path:
    p = Path(spec).expanduser()
    return p if p.is_absolute() or p.exists() else outputs_root(root) / "phase4" / spec


def find_evaluation(spec: str, root: str, records: Path) -> tuple[Path, dict | None, str]:
    """(the folder holding the run's config.yaml, its evaluation or None, where it was read): the run's own
    <run>/evaluate/results.json, else its committed record <records>/<name>/evaluate/results.json."""
    run = run_dir(spec, root)
    for folder, source in ((run, "run"), (records / Path(spec).name, "record")):
        path = folder / "evaluate" / "results.json"
        if path.exists():
            try:
                return folder, json.loads(path.read_text()), f"{source} {path}"
            except json.JSONDecodeError as e:
                raise ConfigError("runs", spec, f"{path} is not valid JSON ({e}): rerun its evaluation") from None
    return run, None, ""


def keep(run: Path, records: Path) -> Path:
    """Copy the run's evaluation record (KEPT) into <records>/<run name>/, atomically file by file."""
    dest = records / run.name
    for rel in KEPT:
        src = run / rel
        if src.exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            data = src.read_bytes()
            atomic_write(dest / rel, lambda f: f.write(data))
    return dest


def describe(run: Path, res: dict) -> str:
    """What the run is, from its own config.yaml: the method, objective, size, data and warm start; and, if it was
    played in LIBERO, how many actions of each predicted chunk it played before predicting again."""
    pol = res.get("policy")
    replans = f"replans every {pol['settings']['n_action_steps']} steps" if pol else None
    if res.get("method") == "diffusion_policy":
        parts = ["Diffusion Policy (lerobot), from scratch"]
    else:
        cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
        m, d = cfg.get("model", {}), cfg.get("data", {})
        parts = [f"UWM {cfg.get('objective', 'joint')}", f"width {m.get('width', '?')}, depth {m.get('depth', '?')}"]
        parts.append(f"{d['episodes']} demos" if d.get("episodes") else "all demos")
        if cfg.get("init_from"):
            parts.append(f"from {Path(cfg['init_from']).name}")
    return ", ".join(parts + ([replans] if replans else []))


def check_same(name: str, setup: dict, first: tuple[str, dict] | None, what: str) -> tuple[str, dict]:
    if first is None:
        return name, setup
    for k, v in setup.items():
        if v != first[1].get(k):
            raise ConfigError("runs", name, f"its {what} {k}={v!r} differs from {first[0]}'s {first[1].get(k)!r}: "
                              f"runs compared in one table must be scored on the same {what}")
    return first


def episode_setup(pol: dict) -> dict:
    s = {k: pol["settings"].get(k) for k in SAME_EPISODES}
    s["starts"] = {t["task_id"]: sorted(map(int, t["outcomes"])) for t in pol["tasks"]}  # initial-state indices
    return s


def outcomes(pol: dict) -> dict[tuple[int, int], bool]:
    """(task id, initial-state index) -> success, for the paired comparison of runs played on the same starts."""
    return {(t["task_id"], int(i)): bool(ok) for t in pol["tasks"] for i, ok in t["outcomes"].items()}


def paired(ours: dict, ref: dict | None) -> str:
    """This run against the table's first played run on the same starts: starts only it solved / only the first
    solved, and the exact McNemar p-value."""
    if ref is None or ours is ref:
        return "-"
    b = sum(ok and not ref[k] for k, ok in ours.items())
    c = sum(ref[k] and not ok for k, ok in ours.items())
    return f"+{b} / -{c}, p = {mcnemar_exact(b, c):.2g}"


def cell(est: list[float] | None, metric: str) -> str:
    return "-" if est is None else fmt(est, metric)


def tables(rows: list[tuple[str, Path, dict | None]]) -> str:
    first_clips = first_eps = None
    pol_lines = ["| run | what | LIBERO successes | rate [Wilson 95%] | vs the first run, same starts | "
                 "policy action MSE (validation clips) |", "|---|---|---|---|---|---|"]
    ref = ref_name = None  # the first played run's outcomes, and its name
    frame_lines = ["| run | forward dynamics PSNR (dB) | forward, another clip's actions | video prediction (no actions) "
                   "| forward SSIM | inverse action MSE | forward latent MSE | s/clip (forward) |",
                   "|---|---|---|---|---|---|---|---|"]
    baselines: dict[str, str] = {}
    mean_floor = None  # the mean training action's error: the floor of both tables' action cells
    pending = []
    for name, run, res in rows:
        if res is None:
            pending.append(name)
            continue
        what = describe(run, res)
        off, pol = res.get("offline"), res.get("policy")
        if off:
            first_clips = check_same(name, {k: off.get(k) for k in SAME_CLIPS}, first_clips, "validation clips")
        if pol:
            first_eps = check_same(name, episode_setup(pol), first_eps, "LIBERO episodes")
        r = (off or {}).get("rows", {})
        secs = (off or {}).get("seconds_per_clip", {})
        per_clip = lambda k: "-" if secs.get(k) is None else f"{secs[k]:.3f}"  # noqa: E731
        mse = lambda k: (r.get(f"{k}_actions") or {}).get("action_mse")  # noqa: E731
        if pol or mse("policy"):
            t = pol["total"] if pol else None
            ours = outcomes(pol) if pol else None
            if ref is None and ours is not None:
                ref, ref_name = ours, name
            pol_lines.append(f"| `{name}` | {what} | " + (f"{t['successes']}/{t['episodes']} | {t['rate']:.0%} "
                             f"[{t['ci95'][0]:.0%}, {t['ci95'][1]:.0%}] | {paired(ours, ref)}" if t
                             else "not played | - | -") + f" | {cell(mse('policy'), 'mse')} |")
        if off and ({"forward", "video"} & set(r) or mse("inverse")):
            get = lambda k, metric: cell((r.get(k) or {}).get(metric), metric)  # noqa: E731
            frame_lines.append(f"| `{name}` | {get('forward', 'psnr')} | {get('forward_other', 'psnr')} "
                               f"| {get('video', 'psnr')} | {get('forward', 'ssim')} | {cell(mse('inverse'), 'mse')} "
                               f"| {get('forward', 'latent_mse')} | {per_clip('forward')} |")
        for k, label in (("copy_current", "copy current frame (floor)"),
                         ("diamond_lite", "DIAMOND-lite, 16 frames rolled out with the real actions"),
                         ("tokenizer", "tokenizer reconstruction (ceiling)")):
            if k in r and k not in baselines:
                baselines[k] = (f"| {label} | {cell(r[k]['psnr'], 'psnr')} | - | - | {cell(r[k]['ssim'], 'ssim')} | - "
                                f"| {cell(r[k].get('latent_mse'), 'latent_mse')} | {per_clip(k)} |")
        mean_floor = mean_floor or mse("mean_action")
        for k, label in (("inverse_regressor", "inverse-dynamics regressor"), ("mean_action", "mean training action (floor)")):
            if mse(k) and k not in baselines:
                baselines[k] = f"| {label} | - | - | - | - | {cell(mse(k), 'mse')} | - | - |"
    out = []  # the mean-action floor closes both tables
    floor_row = f"| mean training action (floor) | - | - | - | - | {cell(mean_floor, 'mse')} |" if mean_floor else None
    if first_eps:
        eps = first_eps[1]
        out += [f"Policy: LIBERO ({eps['suite']}) task(s) {', '.join(map(str, eps['starts']))}, fixed initial states "
                f"{', '.join(f'{min(s)}-{max(s)}' for s in eps['starts'].values() if s)}, the same for every run "
                f"(up to {eps['max_steps']} steps); validation-clip action MSE in the data set's units, real steps only.",
                "", *pol_lines, *([floor_row] if floor_row else []), "",
                f"The paired column: starts this run solved and `{ref_name}` (the first run played) did not (+), the "
                "reverse (-), and the exact McNemar p-value of that split.", ""]
    if first_clips:
        c = first_clips[1]
        out += [f"Frames: {c['clips']} clips of `{c['split']}` (validation demonstrations), {c['denoise_steps']} DDIM steps "
                f"({c['timestep_spacing']} spacing); the 2 future frames 16 steps ahead, both cameras; estimate [95% "
                "interval].", "", *frame_lines, *baselines.values(), ""]
    if pending:
        out.append("Not evaluated yet: " + ", ".join(f"`{p}`" for p in pending)
                   + " (`STAGES=arms bash scripts/phase4_experiments.sh`: each arm trains, is evaluated and recorded).")
    return "\n".join(out).strip() + "\n"


def figure(rows: list[tuple[str, Path, dict | None]], path: Path) -> Path | None:
    """The tables' headline cells as a picture: LIBERO success (Wilson 95%), policy action MSE and forward-dynamics
    PSNR (95% over the clips), one row per run that has the cell; DIAMOND-lite as a row of the PSNR panel and
    copy-current as a line. None when no run has any of them."""
    from common.report import interval_panels

    success, actions, forward, refs, floor = [], [], [], {}, None
    for name, _, res in rows:
        if res is None:
            continue
        pol, r = res.get("policy"), (res.get("offline") or {}).get("rows", {})
        if pol:
            t = pol["total"]
            success.append((name, 100 * t["rate"], 100 * t["ci95"][0], 100 * t["ci95"][1]))
        if "policy_actions" in r:
            actions.append((name, *r["policy_actions"]["action_mse"]))
        if "forward" in r:
            forward.append((name, *r["forward"]["psnr"]))
        for k in ("diamond_lite", "copy_current"):
            if k in r and k not in refs:
                refs[k] = r[k]["psnr"]
        floor = floor or (r.get("mean_action_actions") or {}).get("action_mse")
    if "diamond_lite" in refs:
        forward.append(("DIAMOND-lite (rollout)", *refs["diamond_lite"]))
    panels = [p for p in (
        {"title": "LIBERO success, 25 starts (Wilson 95%)", "rows": success, "xlabel": "% of episodes"},
        {"title": "policy action MSE (95%, clips)", "rows": actions,
         "xlabel": "data set units" + (f" (mean-action floor {floor[0]:.3f})" if floor else "")},
        {"title": "forward dynamics PSNR (95%, clips)", "rows": forward, "xlabel": "dB (higher is better)",
         "refs": [(refs["copy_current"][0], "copy current frame")] if "copy_current" in refs else []},
    ) if p["rows"]]
    return interval_panels(panels, path) if panels else None


def seed_summary(folder: Path, runs: list[str] | None = None, name: str = "summary") -> str:
    """The policy mode's action error of each run over noise seeds, from <folder>/<run>-s<seed>/results.json (the
    `seeds*` arms of scripts/phase4_experiments.sh: the same clips, one evaluation per `offline.seed`), for the runs
    named (default: every run there), with each run's clip-by-clip difference from the first; written to
    <folder>/<name>.md and returned. Refuses evaluations scored on different clips, and a named run with none."""
    run_of = lambda f: f.parent.name.rsplit("-s", 1)[0]  # noqa: E731
    found = list(Path(folder).glob("*-s*/results.json"))
    order = list(runs) if runs else sorted({run_of(f) for f in found})
    files = sorted((f for f in found if run_of(f) in order), key=lambda f: (order.index(run_of(f)), f.parent.name))
    missing = [r for r in order if not any(run_of(f) == r for f in files)]
    if missing or not files:
        raise ConfigError("seeds", str(folder), f"holds no <run>-s<seed>/results.json of {', '.join(missing) or 'any run'}"
                          ": run `STAGES=arms ARMS=seeds bash scripts/phase4_experiments.sh` (or the seeds arm that "
                          "scores them) first")
    import numpy as np

    from phase1_world_model.metrics import mean_interval

    lines, per_run, clip_errors, first = ["| run | seed | action MSE |", "|---|---|---|"], {}, {}, None
    for f in files:
        res = json.loads(f.read_text())["offline"]
        first = check_same(f.parent.name, {k: res.get(k) for k in SAME_CLIPS}, first, "validation clips")
        row = res["rows"]["policy_actions"]
        v, run = row["action_mse"], run_of(f)
        per_run.setdefault(run, []).append(v[0])
        if row.get("per_clip"):  # evaluations since the per-clip errors were recorded
            clip_errors.setdefault(run, {})[res["seed"]] = np.asarray(row["per_clip"], dtype=np.float64)
        lines.append(f"| `{run}` | {res['seed']} | {fmt(v, 'mse')} |")
    lines += ["", "| run | seeds | mean | lowest | highest |", "|---|---|---|---|---|"]
    lines += [f"| `{r}` | {len(v)} | {sum(v) / len(v):.4f} | {min(v):.4f} | {max(v):.4f} |" for r, v in per_run.items()]
    clips = f"{first[1]['clips']} clips of `{first[1]['split']}`"
    paired_lines = []
    if len(clip_errors) >= 2:  # each run against the first, clip by clip: the interval of the difference itself
        ref, *others = list(clip_errors)
        paired_lines = ["", f"Paired over the clips, each run minus `{ref}` (same clips, same noise seed; negative: "
                        f"lower error than `{ref}`), [95% interval over the clips]:", "",
                        "| run | seed | difference in action MSE |", "|---|---|---|"]
        for run in others:
            seeds = sorted(set(clip_errors[run]) & set(clip_errors[ref]))
            diffs = {s: clip_errors[run][s] - clip_errors[ref][s] for s in seeds}
            paired_lines += [f"| `{run}` | {s} | {fmt(mean_interval(d), 'mse')} |" for s, d in diffs.items()]
            if len(seeds) > 1:  # each clip's difference averaged over the seeds, then the interval over the clips
                pooled = mean_interval(np.mean(list(diffs.values()), axis=0))
                paired_lines.append(f"| `{run}` | mean of {len(seeds)} | {fmt(pooled, 'mse')} |")
    md = "\n".join([f"Policy-mode action MSE (data set units, real steps) on the same {clips}, one evaluation per noise "
                    "seed (`offline.seed`), [95% interval over the clips]:", "", *lines, *paired_lines]) + "\n"
    atomic_write(Path(folder) / f"{name}.md", lambda f: f.write(md.encode()))
    return md


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(UWMCompareConfig, "phase4/compare", argv, __doc__)
    records = Path(cfg.records).expanduser().resolve() if cfg.records else RECORDS
    rows = []
    for spec in cfg.runs:
        folder, res, source = find_evaluation(spec, cfg.run.root, records)
        if res is None:
            print(f"note: {spec}: no evaluation in {run_dir(spec, cfg.run.root)} nor a record in {records}")
        else:
            print(f"{Path(spec).name}: {source}", flush=True)
            if cfg.keep and source.startswith("run"):
                print(f"  kept in {keep(folder, records)}", flush=True)
        rows.append((Path(spec).name, folder, res))
    if all(r is None for _, _, r in rows):
        raise ConfigError("runs", cfg.runs, f"none of them has evaluate/results.json (nor a record in {records}): run "
                          "`STAGES=arms bash scripts/phase4_experiments.sh` (or python -m phase4_uwm.evaluate) first")
    md = tables(rows)
    print(md, flush=True)
    out = outputs_root(cfg.run.root) / "phase4" / "compare.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write(md.encode()))
    fig = figure(rows, out.with_suffix(".png"))
    if cfg.publish:
        from common.report import publish
        readme = Path(__file__).resolve().parent / "README.md"
        publish(readme, md, [fig] if fig else [], readme.parent / "figures", COMMAND)
        print(f"published to {readme}", flush=True)
    return {"markdown": md, "runs": [n for n, _, r in rows if r is not None], "figure": fig}


if __name__ == "__main__":
    main()
