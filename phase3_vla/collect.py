"""Expert demonstrations of LIBERO-Object as LeRobotDatasets v3: 9 base tasks and the held-out new task.

    python -m phase3_vla.collect                       # profile cpu: 20 demos x 9 base tasks + 50 of the new task
    python -m phase3_vla.collect profile=smoke         # 1 demo of base task 2 + 1 of the new task (tests)
    python -m phase3_vla.collect profile=full          # 50 per base task, 100 of the new task, 256 px, 1 worker/core
    python -m phase3_vla.collect workers=2 libero.image_size=256
    python -m phase3_vla.collect --verify              # check every staged file, collect nothing
    python -m phase3_vla.collect repair=true           # delete corrupt staged files and play them again

Rendering both cameras costs ~15-26 s per episode on one CPU core (~90% of it is MuJoCo's software GL), so
attempts run in `workers` parallel processes, each building its own env. Attempt a of task t starts
from a placement drawn by the task's own sampler (LIBERO's placement regions, as its datasets were made)
with seed `starts.placement_seed(seed, t, a)`, never from one of LIBERO's 50 fixed initial states (those are
the evaluation states), and the expert's randomization is seeded by (seed, t, a). Each demonstration records
where it started (simulator state, its digest, every object's pose: phase3_vla.starts); the attempt is staged on its own, atomically, the moment it ends (staging.py): a success as a compressed .npz,
a failure as a small JSON (discarded, but counted). So an interrupted collection keeps every finished
attempt, and the same command continues it: finished attempts are skipped, failed ones are replaced by
the next attempt numbers, and the first `demos` successes of each task by attempt number are kept - the
same demonstrations whatever the number of workers or interruptions.

When every task has its demonstrations, the staged ones are assembled with lerobot's writer into

    <out>/lerobot/base/       repo id <repo_prefix>_base: base_demos x base tasks
    <out>/lerobot/new/        repo id <repo_prefix>_new:  new_demos of the new task (episode k = k-th demo)
    <out>/lerobot/base_val/   base_val_demos per base task, the next successes: validation only
    <out>/lerobot/new_val/    new_val_demos of the new task: validation only (choosing learning rates)

each with meta/starts.json (where every episode started),

plus <out>/media/demos.mp4/.gif (the first demonstration of a few tasks, agent view | wrist),
<out>/stats.md (the statistics page) and <out>/summary.json. <out> = outputs/phase3/demos/<profile>/.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from common.checkpoint import atomic_write
from common.config import cli, settings_mismatch
from common.errors import UserError, command
from common.runs import outputs_root
from phase3_vla import staging
from phase3_vla.config import DemoCollectConfig
from phase3_vla.staging import CorruptStagedFileError

PROFILE_GROUP = "collect_profile"  # configs/phase3/collect_profile/: `profile=` on the command line


class CollectError(UserError, RuntimeError):
    """The folder holds attempts made with other settings, or staged files are corrupt; the message says
    which file and what to do."""


def out_dir(cfg: DemoCollectConfig) -> Path:
    folder = cfg.data.folder
    return Path(folder).expanduser().resolve() if folder else outputs_root(cfg.run.root) / "phase3" / "demos" / cfg.profile


def settings_of(cfg: DemoCollectConfig) -> dict:
    """What a staged attempt depends on. Where the files come from (assets, config folder, GL backend)
    does not change an episode, so it is left out and may differ between runs; so does libero.perturb, which
    moves objects only after a reset to a fixed initial state (collection starts from sampled placements)."""
    libero = {k: v for k, v in asdict(cfg.libero).items()
              if k not in ("assets", "config_dir", "gl", "hub_download", "perturb")}
    return {"format_version": staging.FORMAT_VERSION, "libero": libero, "expert": asdict(cfg.expert), "seed": cfg.run.seed}


def targets(cfg: DemoCollectConfig) -> dict[int, int]:
    """{task: successful demonstrations wanted (training + validation)}, the new task first (it needs the most)."""
    out = {cfg.new_task: cfg.new_demos + cfg.new_val_demos}
    out.update({t: cfg.base_demos + cfg.base_val_demos for t in cfg.base_tasks if cfg.base_demos > 0})
    return out


def splits(cfg: DemoCollectConfig, chosen: dict[int, list[int]]) -> dict[str, dict[int, list[int]]]:
    """The kept attempts of each data set: a task's first successes train, the next ones validate."""
    out = {"base": {}, "base_val": {}, "new": {}, "new_val": {}}
    for t, attempts in chosen.items():
        n, name = (cfg.new_demos, "new") if t == cfg.new_task else (cfg.base_demos, "base")
        if attempts[:n]:
            out[name][t] = attempts[:n]
        if attempts[n:]:
            out[name + "_val"][t] = attempts[n:]
    return out


def plan(done: dict[int, bool], want: int, max_attempts: int) -> list[int]:
    """Attempt numbers still to play so that, if they all succeed, the first `want` successes exist.

    Walks attempts 0, 1, 2, ...: finished ones count if they succeeded, unfinished ones are scheduled,
    until successes + scheduled reach `want` (or max_attempts). Failures of this round are replaced in
    the next round by later numbers, so the result never depends on the order in which attempts end."""
    todo, ok, a = [], 0, 0
    while ok + len(todo) < want and a < max_attempts:
        if a in done:
            ok += done[a]
        else:
            todo.append(a)
        a += 1
    return todo


def selection(done: dict[int, bool], want: int) -> list[int]:
    """The attempts that make a task's demonstrations: its first `want` successes by attempt number."""
    return sorted(a for a, ok in done.items() if ok)[:want]


def collect_chunk(job: dict) -> list[dict]:
    """Play a list of attempts of one task with both cameras and stage each one (runs in a worker)."""
    import torch

    from phase3_vla.config import ExpertConfig, LiberoConfig
    from phase3_vla.expert import PickPlaceExpert, attempt_rng, run_episode
    from phase3_vla.libero_env import make_env
    from phase3_vla.starts import placement_seed

    torch.set_num_threads(1)  # the state conversion uses torch; more threads only compete with the renderer
    lcfg, ecfg = LiberoConfig(**job["libero"]), ExpertConfig(**job["expert"])
    stage, task_id = Path(job["staging"]), job["task_id"]
    env = make_env(lcfg, task_id, cameras=True)
    out = []
    for attempt in job["attempts"]:
        seed = placement_seed(job["seed"], task_id, attempt)
        r = run_episode(env, PickPlaceExpert(ecfg, attempt_rng(job["seed"], task_id, attempt)), None,
                        lcfg.max_steps, record=True, placement_seed=seed)
        meta = {"format_version": staging.FORMAT_VERSION, "task_id": task_id, "attempt": attempt,
                "start": asdict(r.start), "instruction": env.task_description, "task_name": env.task,
                "steps": r.steps, "seconds": round(r.seconds, 2), "settings": job["settings"]}
        if r.success:
            demo = staging.Demo(agentview=np.stack([f["image"] for f in r.frames]),
                                wrist=np.stack([f["image2"] for f in r.frames]),
                                state=np.stack([f["state"] for f in r.frames]), action=np.stack(r.actions), meta=meta)
            staging.save_demo(stage, demo)
        else:
            staging.save_failure(stage, {**meta, "failure": r.failure})
        out.append({"task_id": task_id, "attempt": attempt, "success": r.success, "steps": r.steps,
                    "seconds": r.seconds})
        if job["progress"]:
            print(f"  task {task_id} attempt {attempt} (placement seed {seed}): "
                  f"{'kept' if r.success else 'FAILED, discarded: ' + r.failure}, {r.steps} steps, {r.seconds:.1f} s",
                  flush=True)
    env.close()
    return out


def _check(stage: Path, found: staging.Staged, settings: dict, repair: bool) -> None:
    """Corrupt files stop the run (or are deleted with repair); every kept attempt must come from these
    settings, or the datasets would silently mix two protocols."""
    if found.corrupt and not repair:
        names = "\n".join(f"  {e.path}: {e.reason}" for e in found.corrupt)
        raise CollectError(f"{len(found.corrupt)} corrupt staged file(s) in {stage}:\n{names}\nPlay those attempts "
                           "again with the same command plus repair=true, or delete the files.")
    for e in found.corrupt:
        print(f"repair: deleting {e.path} ({e.reason}); the attempt will be played again")
        e.path.unlink(missing_ok=True)
    for kind, store in (("demo", found.demos), ("failure", found.failures)):
        for t, attempts in store.items():
            for a, meta in attempts.items():
                diff = settings_mismatch(meta.get("settings", {}), settings)
                if diff:
                    path = staging.demo_path(stage, t, a) if kind == "demo" else staging.failed_path(stage, t, a)
                    raise CollectError(f"{path} was collected with other settings: {'; '.join(diff[:4])}"
                                       f"{' ...' if len(diff) > 4 else ''}. Use the same settings to continue "
                                       f"this collection, or another folder (data.folder=...).")


def _jobs(cfg: DemoCollectConfig, stage: Path, found: staging.Staged, settings: dict) -> list[dict]:
    jobs = []
    for t, want in targets(cfg).items():
        todo = plan(found.done(t), want, max(want, math.ceil(want * cfg.max_attempts_factor)))
        for i in range(0, len(todo), cfg.chunk):
            jobs.append({"task_id": t, "attempts": todo[i:i + cfg.chunk], "staging": str(stage), "seed": cfg.run.seed,
                         "libero": asdict(cfg.libero), "expert": asdict(cfg.expert), "settings": settings,
                         "progress": cfg.progress})
    return sorted(jobs, key=lambda j: -len(j["attempts"]))  # longest first: the pool finishes together


def _run_jobs(jobs: list[dict], workers: int) -> list[dict]:
    """Run the chunks, in this process for one worker, else in `spawn`ed processes (a forked child would
    inherit this process's GL and MuJoCo state). A worker that dies (killed, out of memory) ends the run
    with an error; what it staged before is kept."""
    results = []
    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            results += collect_chunk(j)
        return results
    import multiprocessing as mp

    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
            for r in pool.map(collect_chunk, jobs):
                results += r
    except BrokenProcessPool as e:
        raise CollectError(f"a worker process died ({e}). Every attempt it finished is staged; run the same "
                           "command again to continue.") from None
    return results


def _load_selected(stage: Path, chosen: dict[int, list[int]]):
    for t, attempts in chosen.items():
        for a in attempts:
            yield staging.load_demo(staging.demo_path(stage, t, a))


def _assemble(cfg: DemoCollectConfig, out: Path, stage: Path, chosen: dict[int, list[int]]) -> dict:
    """Write the LeRobotDatasets unless the ones on disk already hold exactly this selection."""
    from phase3_vla.dataset import write_lerobot_dataset

    parts = splits(cfg, chosen)
    written = {}
    for name, sel in parts.items():
        if not any(sel.values()):
            continue
        root = out / "lerobot" / name
        marker = out / "lerobot" / f"{name}.selection.json"
        record = {"repo_id": f"{cfg.repo_prefix}_{name}", "fps": cfg.fps, "format_version": staging.FORMAT_VERSION, "tasks": {str(t): a for t, a in sel.items()}}
        if (root / "meta" / "info.json").exists() and marker.exists() and json.loads(marker.read_text()) == record:
            written[name] = {**record, "root": str(root), "reused": True}
            continue
        t0 = time.perf_counter()
        try:
            info = write_lerobot_dataset(root, record["repo_id"], _load_selected(stage, sel), fps=cfg.fps)
        except CorruptStagedFileError as e:
            raise CollectError(f"{e}. Play it again with the same command plus repair=true.") from None
        atomic_write(marker, lambda f: f.write(json.dumps(record).encode()))
        written[name] = {**record, **info, "root": str(root), "seconds": round(time.perf_counter() - t0, 1)}
        print(f"wrote {root} ({record['repo_id']}): {info['episodes']} episodes, {info['frames']} frames "
              f"in {written[name]['seconds']} s", flush=True)
    return written


def _video(cfg: DemoCollectConfig, out: Path, stage: Path, chosen: dict[int, list[int]]) -> str:
    """The first demonstration of the first `videos` tasks (new task first), agent view | wrist."""
    from common.logger import write_video

    tasks = [t for t in targets(cfg) if chosen.get(t)][:cfg.videos]
    if not tasks:
        return ""
    frames = []
    for t in tasks:
        d = staging.load_demo(staging.demo_path(stage, t, chosen[t][0]))
        frames += list(np.concatenate([d.agentview, d.wrist], axis=2))
    mp4, _ = write_video(out / "media" / "demos", frames, fps=cfg.fps)
    return str(mp4)


def _stats(cfg: DemoCollectConfig, out: Path, stage: Path, found: staging.Staged, chosen: dict[int, list[int]],
           datasets: dict, video: str, run_info: dict) -> dict:
    """summary.json and the statistics page stats.md, from the staged files (metadata) and the kept demos."""
    per_task, states, actions = [], [], []
    for t, want in targets(cfg).items():
        demos, fails = found.demos.get(t, {}), found.failures.get(t, {})
        kept = [demos[a] for a in chosen.get(t, [])]
        lengths = [m["steps"] for m in kept]
        secs = [m.get("seconds", 0) for m in list(demos.values()) + list(fails.values())]
        any_meta = kept[0] if kept else next(iter({**demos, **fails}.values()), {})
        per_task.append({"task_id": t, "role": "new" if t == cfg.new_task else "base",
                         "instruction": any_meta.get("instruction", "?"), "wanted": want, "kept": len(kept),
                         "attempts": len(demos) + len(fails), "successes": len(demos), "failures": len(fails),
                         "failed_attempts": sorted(fails),
                         "length_mean": float(np.mean(lengths)) if lengths else 0.0,
                         "length_min": min(lengths, default=0), "length_max": max(lengths, default=0),
                         "frames": sum(lengths), "seconds_per_attempt": float(np.mean(secs)) if secs else 0.0})
    for t, attempts in chosen.items():  # state/action statistics of the kept demonstrations
        for a in attempts:
            with np.load(staging.demo_path(stage, t, a)) as z:
                states.append(z["state"])
                actions.append(z["action"])
    summary = {"out": str(out), "profile": cfg.profile, "new_task": cfg.new_task, "base_tasks": cfg.base_tasks,
               "image_size": cfg.libero.image_size, "fps": cfg.fps, "tasks": per_task, "datasets": datasets,
               "video": video, "this_run": run_info}
    if states:
        from phase3_vla.dataset import ACTION_NAMES, STATE_NAMES, column_stats

        summary["state"] = {"names": STATE_NAMES, **column_stats(np.concatenate(states))}
        summary["action"] = {"names": ACTION_NAMES, **column_stats(np.concatenate(actions))}
    atomic_write(out / "summary.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    atomic_write(out / "stats.md", lambda f: f.write(_stats_page(summary).encode()))
    return summary


def _stats_page(s: dict) -> str:
    tot_att = sum(t["attempts"] for t in s["tasks"])
    tot_ok = sum(t["successes"] for t in s["tasks"])
    lines = [f"# LIBERO-Object expert demonstrations ({s['profile']} profile)", "",
             f"Written by `python -m phase3_vla.collect profile={s['profile']}` into `{s['out']}`.", "",
             f"- images: agent view + wrist, {s['image_size']}x{s['image_size']}, rotated upright; "
             f"{s['fps']} frames/s (one per control step)",
             f"- new task (held out of base training): {s['new_task']}; base tasks: {s['base_tasks']}",
             f"- expert attempts: {tot_att}, successes {tot_ok} ({100 * tot_ok / max(1, tot_att):.1f}%); "
             "failed attempts are discarded and listed below", ""]
    for name, d in s["datasets"].items():
        lines.append(f"- dataset `{name}`: `{d['root']}` (repo id `{d['repo_id']}`)"
                     + (f", {d['episodes']} episodes, {d['frames']} frames" if "episodes" in d else " (unchanged)"))
    if s.get("video"):
        lines.append(f"- video of expert demonstrations: `{s['video']}` (and .gif)")
    lines += ["", "| task | role | instruction | kept / wanted | attempts | failed | length mean (min-max) | "
              "frames | s per attempt |", "|---|---|---|---|---|---|---|---|---|"]
    for t in s["tasks"]:
        failed = ", ".join(map(str, t["failed_attempts"])) or "-"
        lines.append(f"| {t['task_id']} | {t['role']} | {t['instruction']} | {t['kept']} / {t['wanted']} | "
                     f"{t['attempts']} | {failed} | {t['length_mean']:.0f} ({t['length_min']}-{t['length_max']}) | "
                     f"{t['frames']} | {t['seconds_per_attempt']:.1f} |")
    for key in ("state", "action"):
        if key in s:
            st = s[key]
            lines += ["", f"{key} over all kept frames:", "", "| dim | mean | std | min | max |", "|---|---|---|---|---|"]
            for i, n in enumerate(st["names"]):
                lines.append(f"| {n} | {st['mean'][i]:.4f} | {st['std'][i]:.4f} | {st['min'][i]:.4f} | {st['max'][i]:.4f} |")
    r = s["this_run"]
    lines += ["", f"This run: {r['played']} attempt(s) played in {r['seconds']:.0f} s with {r['workers']} worker(s)"
              + (f", {r['seconds_per_attempt']:.1f} s per attempt per worker" if r["played"] else "") + "."]
    return "\n".join(lines) + "\n"


def run(cfg: DemoCollectConfig) -> dict:
    out = out_dir(cfg)
    stage = out / "staging"
    settings = settings_of(cfg)
    if cfg.verify:
        found = staging.scan(stage, read_arrays=True)
        n = sum(map(len, found.demos.values())) + sum(map(len, found.failures.values()))
        print(f"verify {stage}: {n + len(found.corrupt)} staged file(s), {n} ok, {len(found.corrupt)} corrupt")
        for e in found.corrupt:
            print(f"  CORRUPT {e.path}: {e.reason}")
        return {"out": str(out), "exists": stage.is_dir(), "corrupt": [str(e.path) for e in found.corrupt]}
    from phase3_vla.libero_env import prepare

    source = prepare(cfg.libero)  # asset or GL problems show up now, not in a worker
    found = staging.scan(stage, read_arrays=False)
    _check(stage, found, settings, cfg.repair)
    for p in found.leftovers:  # half-written files of a killed run; their rename never happened
        p.unlink(missing_ok=True)
    workers = cfg.workers or os.cpu_count() or 1
    want = targets(cfg)
    print(f"collect LIBERO-Object -> {out} (assets: {source})\n  new task {cfg.new_task} x {cfg.new_demos}, "
          f"base tasks {cfg.base_tasks} x {cfg.base_demos}; {workers} worker(s), "
          f"{cfg.libero.image_size}px agent view + wrist", flush=True)
    t0, played, rounds = time.perf_counter(), [], 0
    while True:
        found = staging.scan(stage, read_arrays=False)
        _check(stage, found, settings, repair=False)
        jobs = _jobs(cfg, stage, found, settings)
        if not jobs:
            break
        rounds += 1
        n = sum(len(j["attempts"]) for j in jobs)
        print(f"round {rounds}: {n} attempt(s) to play in {len(jobs)} chunk(s)", flush=True)
        played += _run_jobs(jobs, workers)
    wall = time.perf_counter() - t0
    chosen = {t: selection(found.done(t), w) for t, w in want.items()}
    short = {t: (len(chosen[t]), w) for t, w in want.items() if len(chosen[t]) < w}
    for t, (k, w) in short.items():
        print(f"WARNING: task {t} has {k} of {w} demonstrations after {len(found.done(t))} attempts "
              f"(max_attempts_factor={cfg.max_attempts_factor}); its dataset is written with {k}")
    datasets = _assemble(cfg, out, stage, chosen)
    video = _video(cfg, out, stage, chosen) if cfg.videos else ""
    run_info = {"played": len(played), "successes": sum(r["success"] for r in played), "seconds": round(wall, 1),
                "workers": workers, "seconds_per_attempt": (sum(r["seconds"] for r in played) / len(played)) if played else 0.0}
    summary = _stats(cfg, out, stage, found, chosen, datasets, video, run_info)
    print(f"played {len(played)} attempt(s) in {wall:.0f} s ({run_info['successes']} kept); statistics: "
          f"{out / 'stats.md'}" + (f"; video: {video}" if video else ""))
    return summary


@command
def main(argv: list[str] | None = None) -> dict:
    argv = ["verify=true" if a == "--verify" else a for a in (sys.argv[1:] if argv is None else argv)]
    cfg = cli(DemoCollectConfig, "phase3/collect", argv, __doc__, profile_group=PROFILE_GROUP)
    try:
        result = run(cfg)
    except KeyboardInterrupt:
        print(f"interrupted: every finished attempt is staged in {out_dir(cfg) / 'staging'}; run the same "
              "command again to continue", file=sys.stderr)
        sys.exit(130)
    if cfg.verify and result["corrupt"]:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
