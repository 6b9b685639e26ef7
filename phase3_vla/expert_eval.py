"""The scripted expert's success rate per LIBERO-Object task over the suite's fixed initial states.

    python -m phase3_vla.expert_eval                                   # 10 tasks x init states 0-4, no cameras
    python -m phase3_vla.expert_eval tasks=[0,1,2,3,4]                 # part of the suite (results are merged)
    python -m phase3_vla.expert_eval init_states=50 workers=2          # the whole suite, 2 processes
    python -m phase3_vla.expert_eval tasks=[0] init_states=2 cameras=true   # time episodes with rendering
    python -m phase3_vla.expert_eval expert.jitter=0                   # the deterministic expert

Attempt i of task t starts from fixed initial state i (+ lerobot's 10 settle steps) with the expert's
randomization seeded by (seed, t, i); `libero.perturb=0.08` moves the target item and the basket first (the
harder held-out condition: can the expert still solve it?). `collect` plays other starts (sampled placements).
Nothing is rendered by default (~2 s per episode on one CPU core instead of ~15 s), which does not change the
physics.

Writes <out>/tasks/task_XX.json (one file per task, so runs over different task lists add up and an
interrupted run continues where it stopped) and <out>/results.json + results.md: the table over every
task evaluated with these settings. Default <out> = outputs/phase3/expert_eval/.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from common.checkpoint import atomic_write
from common.config import cli
from common.errors import command
from common.runs import outputs_root
from phase3_vla.config import ExpertEvalConfig
from phase3_vla.libero_env import PERTURB_RULE


def settings_of(cfg: ExpertEvalConfig) -> dict:
    """What an episode's outcome depends on; results made with other settings are not mixed in."""
    libero = asdict(cfg.libero)
    for k in ("assets", "config_dir", "gl", "hub_download") + (() if cfg.cameras else ("image_size",)):
        libero.pop(k)  # where files come from or how pixels are made does not change the physics
    rule = {"perturb_rule": PERTURB_RULE} if cfg.libero.perturb > 0 else {}
    return {**rule, "libero": libero, "expert": asdict(cfg.expert), "seed": cfg.run.seed, "cameras": cfg.cameras}


def eval_task(job: dict) -> dict:
    """Play init states 0..n-1 of one task (in a worker process or in-process); returns the task's record."""
    from phase3_vla.config import ExpertConfig, LiberoConfig
    from phase3_vla.expert import PickPlaceExpert, attempt_rng, run_episode
    from phase3_vla.libero_env import make_env

    import torch

    torch.set_num_threads(1)  # the state conversion uses torch; more threads only compete with the simulator
    lcfg, ecfg = LiberoConfig(**job["libero"]), ExpertConfig(**job["expert"])
    t0 = time.perf_counter()
    env = make_env(lcfg, job["task_id"], cameras=job["cameras"])
    build = time.perf_counter() - t0
    episodes = []
    for i in range(job["init_states"]):
        r = run_episode(env, PickPlaceExpert(ecfg, attempt_rng(job["seed"], job["task_id"], i)), i, lcfg.max_steps)
        episodes.append({"init_state": i, "success": r.success, "steps": r.steps, "seconds": round(r.seconds, 3),
                         "final_phase": r.final_phase})
        if job.get("progress", True):
            print(f"  task {job['task_id']} init {i}: {'success' if r.success else 'FAILED (' + r.failure + ')'} "
                  f"in {r.steps} steps, {r.seconds:.1f} s", flush=True)
    record = {"task_id": job["task_id"], "name": env.task, "instruction": env.task_description,
              "settings": job["settings"], "env_build_seconds": round(build, 2), "episodes": episodes}
    env.close()
    return record


def _task_file(out: Path, task_id: int) -> Path:
    return out / "tasks" / f"task_{task_id:02d}.json"


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def table(records: list[dict], cameras: bool) -> str:
    lines = [f"| task | instruction | success | rate | steps (mean, min-max) | s/episode ({'cameras' if cameras else 'no cameras'}) | failures |",
             "|---|---|---|---|---|---|---|"]
    n_ok = n_all = 0
    secs = []
    for r in sorted(records, key=lambda r: r["task_id"]):
        eps = r["episodes"]
        ok = [e for e in eps if e["success"]]
        steps = [e["steps"] for e in ok] or [0]
        failed = ", ".join(f"init {e['init_state']} ({e['final_phase']})" for e in eps if not e["success"]) or "-"
        sec = sum(e["seconds"] for e in eps) / len(eps)
        secs += [e["seconds"] for e in eps]
        n_ok, n_all = n_ok + len(ok), n_all + len(eps)
        lines.append(f"| {r['task_id']} | {r['instruction']} | {len(ok)}/{len(eps)} | {100 * len(ok) / len(eps):.0f}% | "
                     f"{sum(steps) / len(steps):.0f} ({min(steps)}-{max(steps)}) | {sec:.1f} | {failed} |")
    lines.append(f"| all | | {n_ok}/{n_all} | {100 * n_ok / max(1, n_all):.0f}% | | "
                 f"{sum(secs) / max(1, len(secs)):.1f} | |")
    return "\n".join(lines)


def run(cfg: ExpertEvalConfig) -> dict:
    out = Path(cfg.out).expanduser().resolve() if cfg.out else outputs_root(cfg.run.root) / "phase3" / "expert_eval"
    settings = settings_of(cfg)
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    todo = []
    for t in cfg.tasks:
        old = _load(_task_file(out, t))
        if old and old.get("settings") == settings and len(old["episodes"]) >= cfg.init_states:
            continue  # already evaluated with these settings (and at least as many init states)
        todo.append({"task_id": t, "init_states": cfg.init_states, "cameras": cfg.cameras, "seed": cfg.run.seed,
                     "libero": asdict(cfg.libero), "expert": asdict(cfg.expert), "settings": settings})
    print(f"expert_eval -> {out}: {len(cfg.tasks) - len(todo)} task(s) already evaluated, {len(todo)} to run "
          f"({cfg.init_states} init states each, cameras {'on' if cfg.cameras else 'off'}, {cfg.workers} worker(s))",
          flush=True)
    t0 = time.perf_counter()
    for record in _map(eval_task, todo, cfg.workers):
        text = json.dumps(record, indent=1)
        atomic_write(_task_file(out, record["task_id"]), lambda f: f.write(text.encode()))
    wall = time.perf_counter() - t0
    records = [r for p in sorted((out / "tasks").glob("task_*.json")) if (r := _load(p)) and r.get("settings") == settings]
    for r in records:  # a table over the same init states for every task
        r["episodes"] = r["episodes"][:cfg.init_states]
    summary = {"settings": settings, "init_states": cfg.init_states, "tasks": records,
               "success": sum(e["success"] for r in records for e in r["episodes"]),
               "episodes": sum(len(r["episodes"]) for r in records), "wall_seconds_this_run": round(wall, 1)}
    md = (f"Expert success over fixed initial states 0-{cfg.init_states - 1} (cameras "
          f"{'on' if cfg.cameras else 'off'}, seed {cfg.run.seed}, expert.jitter={cfg.expert.jitter}):\n\n"
          + table(records, cfg.cameras) + "\n")
    atomic_write(out / "results.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    atomic_write(out / "results.md", lambda f: f.write(md.encode()))
    print(md + f"\n{wall:.0f} s this run; results in {out / 'results.md'}")
    return summary


def _map(fn, jobs: list[dict], workers: int):
    """fn over jobs: in this process for one worker, else in `spawn`ed processes (a forked process would
    inherit this one's GL and MuJoCo state)."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(fn, jobs)


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(ExpertEvalConfig, "phase3/expert_eval", argv, __doc__)
    return run(cfg)


if __name__ == "__main__":
    main()
