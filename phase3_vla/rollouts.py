"""Playing a trained policy in LIBERO and keeping score: the library behind `python -m phase3_vla.evaluate`
(its docstring describes the protocol). One JSON per episode under <out>/episodes/, reused when the settings and
weights match, so evaluations resume and add up; `summarize` turns them into success rates with Wilson intervals.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import atomic_write
from common.config import ConfigError
from common.runs import ArtifactNotFoundError, Run, writable_dir
from common.stats import wilson
from common.stepwise import mix_seed
from common.system import start
from phase3_vla.config import Phase3Config
from phase3_vla.libero_env import PERTURB_RULE, frame_of, make_env
from phase3_vla import training


LIFTED = 0.03  # metres: the item counts as lifted when it rose this far above its settled height


# ------------------------------------------------------------------------------------------------ loading

def resolve(cfg: Phase3Config) -> Path:
    """The folder to evaluate: a run (its export/policy or export/adapter) or a saved policy folder itself."""
    spec = cfg.load or f"base-{cfg.profile}"
    path = training.find_run(spec, cfg.run.root, not cfg.load, f"base-{cfg.profile}")
    if (path / "config.json").exists() and ((path / "model.safetensors").exists() or (path / "adapter_config.json").exists()):
        return path
    info = training.finished(path)
    if info is None:
        hint = ("continue it with the same command plus run.resume=true" if any((path / "checkpoints").glob("step_*.pt"))
                else "make it with python -m phase3_vla.train (base runs) or python -m phase3_vla.finetune")
        raise ArtifactNotFoundError(f"load={spec}: {path} is not a finished phase 3 run (no export/info.json); {hint}")
    return training.export_of(path) / ("adapter" if info["kind"] == "lora" else "policy")


def load_for_eval(folder: Path, device: torch.device, n_action_steps: int = 0):
    """(policy, preprocessor, postprocessor, weights digest). A LoRA adapter is put on its base and merged
    (peft's merge_and_unload: the same function, one matmul per layer fewer at every step)."""
    from phase3_vla.policy import load_adapter, load_policy

    if (folder / "adapter_config.json").exists():
        info = training.finished(training.run_of(folder)) or {}
        model, pre, post = load_adapter(folder, device, make_base=info.get("make_base", ""))
        policy = model.merge_and_unload()
        weights = folder / "adapter_model.safetensors"
    else:
        policy, pre, post = load_policy(folder, device)
        weights = folder / "model.safetensors"
    if n_action_steps:
        if n_action_steps > policy.config.chunk_size:
            raise ConfigError("eval.n_action_steps", n_action_steps, f"must be <= the policy's chunk_size "
                              f"{policy.config.chunk_size} (0 = the policy's own {policy.config.n_action_steps})")
        policy.config.n_action_steps = n_action_steps
    policy.eval()
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return policy, pre, post, h.hexdigest()[:16]


def image_size_of(policy) -> int:
    shapes = {tuple(f.shape) for f in policy.config.image_features.values()}
    (c, h, w), = shapes  # both cameras share one size (the collector's libero.image_size)
    return h


# ------------------------------------------------------------------------------------------------ episodes

def observation(frame: dict, instruction: str) -> dict:
    """A dataset-style observation batch of one: images (1, 3, H, W) in [0, 1], state (1, 8), task string."""
    from phase3_vla.dataset import IMAGE_KEYS

    obs = {IMAGE_KEYS[k]: torch.from_numpy(frame[cam]).permute(2, 0, 1)[None].float().div(255)
           for k, cam in (("agentview", "image"), ("wrist", "image2"))}
    obs["observation.state"] = torch.from_numpy(frame["state"])[None]
    obs["task"] = [instruction]
    return obs


def play(policy, pre, post, env, init_state: int, max_steps: int, record: bool) -> dict:
    """One episode; returns its record (and, when recording, `frames`: agent view | wrist per step, `states`: the
    8-d state and `actions`: the action played at each step, so that a recorded episode is training data)."""

    t0 = time.perf_counter()
    policy.reset()  # empties the action queue
    obs, _ = env.reset(init_state=init_state)
    item, basket = env.target_and_basket
    z0 = float(env.raw_obs[f"{item}_pos"][2])
    max_lift, frames, states, actions, success, steps, calls = 0.0, [], [], [], False, 0, 0
    for steps in range(1, max_steps + 1):
        frame = frame_of(obs)
        if record:
            frames.append(np.concatenate([frame["image"], frame["image2"]], axis=1))
            states.append(frame["state"])
        calls += len(policy._queues["action"]) == 0  # a new chunk is predicted when the queue is empty
        with torch.inference_mode():
            action = post(policy.select_action(pre(observation(frame, env.task_description))))
        act = action[0].float().cpu().numpy()
        if record:
            actions.append(act)
        obs, _, _, _, info = env.step(act)
        max_lift = max(max_lift, float(env.raw_obs[f"{item}_pos"][2]) - z0)
        if info["is_success"]:
            success = True
            break
    distance = float(np.linalg.norm(env.raw_obs[f"{item}_pos"][:2] - env.raw_obs[f"{basket}_pos"][:2]))
    if success:
        reason = "success"
    elif max_lift < LIFTED:
        reason = f"timeout after {steps} steps: the item was never lifted (at most {100 * max_lift:.1f} cm)"
    else:
        reason = (f"timeout after {steps} steps: the item was lifted {100 * max_lift:.1f} cm but not placed "
                  f"(it ends {100 * distance:.1f} cm from the basket)")
    return {"success": success, "steps": steps, "reason": reason, "max_lift_m": round(max_lift, 4),
            "final_distance_m": round(distance, 4), "policy_calls": int(calls),
            "seconds": round(time.perf_counter() - t0, 2), "frames": frames, "states": states,
            "actions": actions}


def settings_of(cfg: Phase3Config, digest: str, policy, image_size: int) -> dict:
    """What an episode's outcome depends on; episodes played with other settings are played again."""
    lib = cfg.eval.libero
    rule = {"perturb_rule": PERTURB_RULE} if lib.perturb > 0 else {}
    return {**rule, "weights": digest, "max_steps": lib.max_steps, "num_steps_wait": lib.num_steps_wait,
            "hard_reset": lib.hard_reset, "image_size": image_size, "n_action_steps": policy.config.n_action_steps,
            "num_steps": policy.config.num_steps, "seed": cfg.eval.seed, "suite": lib.suite, "perturb": lib.perturb}


def episode_path(out: Path, task: int, ep: int) -> Path:
    return out / "episodes" / f"task_{task:02d}_ep_{ep:03d}.json"


def video_stem(out: Path, task: int, ep: int) -> Path:
    """<out>/media/task_TT_ep_EEE: write_video adds .mp4 and .gif."""
    return out / "media" / f"task_{task:02d}_ep_{ep:03d}"


def load_episode(out: Path, task: int, ep: int, settings: dict) -> dict | None:
    path = episode_path(out, task, ep)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("settings") == settings else None


# ------------------------------------------------------------------------------------------------ results

def summarize(out: Path, settings: dict, tasks: list[int] | None = None, states: list[int] | None = None) -> dict:
    """Per-task successes over the episode files in `out` made with `settings` (optionally only these tasks and
    these fixed initial states), with Wilson 95% intervals, and the pooled total."""
    recs: dict[int, list[dict]] = {}
    for path in sorted((out / "episodes").glob("task_*_ep_*.json")):
        rec = json.loads(path.read_text())
        if rec.get("settings") != settings or (tasks is not None and rec["task_id"] not in tasks):
            continue
        if states is not None and rec["init_state"] not in states:
            continue
        recs.setdefault(rec["task_id"], []).append(rec)
    rows = []
    for t in sorted(recs):
        eps = sorted(recs[t], key=lambda r: r["episode"])
        k, n = sum(r["success"] for r in eps), len(eps)
        lo, hi = wilson(k, n)
        failures = {}
        for r in eps:
            if not r["success"]:
                mode = "never lifted" if r["max_lift_m"] < LIFTED else "lifted, not placed"
                failures[mode] = failures.get(mode, 0) + 1
        rows.append({"task_id": t, "instruction": eps[0]["instruction"], "successes": k, "episodes": n, "rate": k / n,
                     "ci95": [lo, hi], "mean_steps": float(np.mean([r["steps"] for r in eps])),
                     "seconds_per_episode": float(np.mean([r["seconds"] for r in eps])), "failures": failures,
                     "videos": [r["video"] for r in eps if r.get("video")],
                     "outcomes": {int(r["init_state"]): bool(r["success"]) for r in eps}})
    k, n = sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows)
    lo, hi = wilson(k, n)
    return {"settings": settings, "tasks": rows, "total": {"successes": k, "episodes": n,
                                                          "rate": k / n if n else 0.0, "ci95": [lo, hi]}}


def table(summary: dict) -> str:
    lines = ["| task | instruction | success | rate | 95% CI (Wilson) | mean steps | s/episode | failures |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary["tasks"]:
        fails = ", ".join(f"{v} {k}" for k, v in r["failures"].items()) or "-"
        lines.append(f"| {r['task_id']} | {r['instruction']} | {r['successes']}/{r['episodes']} | {100 * r['rate']:.0f}% | "
                     f"{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f}% | {r['mean_steps']:.0f} | "
                     f"{r['seconds_per_episode']:.1f} | {fails} |")
    t = summary["total"]
    if len(summary["tasks"]) > 1:
        lines.append(f"| all | | {t['successes']}/{t['episodes']} | {100 * t['rate']:.0f}% | "
                     f"{100 * t['ci95'][0]:.0f}-{100 * t['ci95'][1]:.0f}% | | | |")
    return "\n".join(lines)


def out_dir(cfg: Phase3Config, folder: Path) -> Path:
    """eval.out, else <run>/eval/ next to the run's export/ (or inside a bare policy folder). Re-planning more
    often (eval.n_action_steps), perturbed starts (eval.libero.perturb) or other noise (eval.seed) are other
    experiments, not replays of this one: they get their own folders (eval-n_action_steps<k>, eval-perturb<p>,
    eval-seed<s>), so the episodes played with the policy's own chunking from LIBERO's fixed states with seed 0
    (what the experiments' main table reads) are kept."""
    if cfg.eval.out:
        return Path(cfg.eval.out).expanduser().resolve()
    sub = "eval" + (f"-n_action_steps{cfg.eval.n_action_steps}" if cfg.eval.n_action_steps else "") + (
        f"-perturb{cfg.eval.libero.perturb:g}" if cfg.eval.libero.perturb else "") + (
        f"-seed{cfg.eval.seed}" if cfg.eval.seed else "")
    run = Run.at(folder.parent, training.PHASE)
    if run.release:  # a release is never written to
        return writable_dir(run, cfg.run.root) / sub
    if folder.parent.name == "export":  # <run>/export/policy -> <run>/eval
        return folder.parent.parent / sub
    if folder.parent.parent.name == "snapshots":  # <run>/snapshots/step_N/policy -> <run>/snapshots/step_N/eval
        return folder.parent / sub
    return folder / sub  # a bare policy folder


def states_of(e) -> list[int]:
    """The fixed initial states an evaluation plays (the same for every task)."""
    return list(range(e.first_state, e.first_state + e.episodes))


def check_starts(folder: Path, evaluation: dict[int, list[int]], enabled: bool) -> str:
    """Refuse an evaluation that would start from a training demonstration's start (phase3_vla.starts), or whose
    policy does not say where its demonstrations started. Returns a one-line account."""
    from phase3_vla.starts import ContaminationError, StartRecord, check_disjoint

    if not enabled:
        return "training starts NOT checked (eval.check_starts=false)"
    starts = training.starts_of(folder)
    if starts is None:
        raise ContaminationError(
            f"{folder}: its run does not record where its training demonstrations started, so the evaluation states "
            "cannot be checked against them. Train it with the current phase3_vla.train / finetune on data from the "
            "current phase3_vla.collect, or, for a policy from elsewhere, pass eval.check_starts=false.")
    records = [StartRecord(r["task_id"], r["kind"], r["seed"], [], r["digest"], episode_index=r["episode_index"])
               for r in starts]  # a run records digests, not state vectors
    n = check_disjoint(records, evaluation, where=str(training.run_of(folder)))
    return f"{n} evaluation start(s) checked against {len(records)} training start(s): none shared"


def save_episode(out: Path, task: int, i: int, played: dict, instruction: str, run: str, settings: dict) -> dict:
    """Write the record of episode `i` of `task` (what `play` returned, its frames as a video when it recorded
    them) atomically to <out>/episodes/, and return it: how evaluations resume and add up."""
    from common.logger import write_video

    frames, states, actions = played.pop("frames"), played.pop("states", []), played.pop("actions", [])
    rec = {"task_id": task, "instruction": instruction, "episode": i, "init_state": i, **played, "run": run,
           "settings": settings}
    if frames:
        mp4, _ = write_video(video_stem(out, task, i), frames, fps=20)
        rec["video"] = str(mp4)
    if frames and actions:  # frame t is the observation action t was played from, states[t] its robot state
        npz = Path(f"{video_stem(out, task, i)}.played.npz")
        arrays = {"actions": np.stack(actions).astype(np.float32), "state": np.stack(states).astype(np.float32)}
        atomic_write(npz, lambda f: np.savez(f, **arrays))
        rec["played"] = str(npz)
    path = episode_path(out, task, i)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(rec, indent=1).encode()))
    return rec


def play_jobs(job: dict) -> list[dict]:
    """Play a list of (task, state) episodes and write each record (and video) the moment it ends; runs in this
    process or in a `spawn`ed worker (a forked child would inherit this process's GL and MuJoCo state)."""
    from common.precision import Precision
    from phase3_vla.config import LiberoConfig

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    policy, pre, post, digest = load_for_eval(Path(job["folder"]), device, job["n_action_steps"])
    if digest != job["settings"]["weights"]:
        raise RuntimeError(f"{job['folder']} changed during the evaluation")
    lib, out, precision = LiberoConfig(**job["libero"]), Path(job["out"]), Precision(**job["precision"])
    done, env, env_task = [], None, None
    for task, i in job["episodes"]:
        if env_task != task:
            if env is not None:
                env.close()
            env, env_task = make_env(lib, task, cameras=True), task
        torch.manual_seed(mix_seed(job["seed"], task, i))  # the flow-matching noise of this episode
        record = job["videos"] < 0 or i - job["first_state"] < job["videos"]
        with precision.autocast():
            r = play(policy, pre, post, env, init_state=i, max_steps=lib.max_steps, record=record)
        rec = save_episode(out, task, i, r, env.task_description, job["folder"], job["settings"])
        if job["progress"]:
            print(f"  task {task} init state {i}: {r['reason']}, {r['steps']} steps, "
                  f"{r['policy_calls']} chunk(s), {r['seconds']:.1f} s", flush=True)
        done.append(rec)
    if env is not None:
        env.close()
    return done


def _run_play_jobs(jobs: list[dict]) -> None:
    if len(jobs) <= 1:
        for j in jobs:
            play_jobs(j)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(play_jobs, jobs))


def evaluate(cfg: Phase3Config) -> dict:
    from dataclasses import asdict

    e = cfg.eval
    folder = resolve(cfg)
    states = states_of(e)
    checked = check_starts(folder, {t: states for t in e.tasks}, e.check_starts)
    rt = start(cfg.run, seed=False)
    policy, pre, post, digest = load_for_eval(folder, rt.device, e.n_action_steps)
    size = image_size_of(policy)
    lib = replace(e.libero, image_size=size)
    settings = settings_of(cfg, digest, policy, size)
    out = out_dir(cfg, folder)
    print(f"phase3 eval: {folder} on tasks {e.tasks}, fixed initial states {states[0]}-{states[-1]}"
          f"{f' perturbed by up to {lib.perturb:g} m' if lib.perturb else ''}, {size} px cameras, "
          f"at most {lib.max_steps} steps, a new chunk every {policy.config.n_action_steps} steps; {rt.describe()}; "
          f"{e.workers} process(es); {checked}; -> {out}", flush=True)
    todo = [(t, i) for t in e.tasks for i in states if load_episode(out, t, i, settings) is None]
    workers = min(e.workers, len(todo))
    if todo:
        del policy  # the workers load their own
        base = {"folder": str(folder), "device": str(rt.device), "n_action_steps": e.n_action_steps,
                "settings": settings, "libero": asdict(lib), "out": str(out), "seed": e.seed, "videos": e.videos,
                "first_state": e.first_state, "progress": e.progress, "precision": asdict(rt.precision),
                "threads": 1 if workers > 1 else 0}
        # contiguous shares keep each worker on few tasks (one env build per task it plays)
        shares = [todo[k * len(todo) // workers:(k + 1) * len(todo) // workers] for k in range(workers)]
        t0 = time.perf_counter()
        _run_play_jobs([{**base, "episodes": s} for s in shares if s])
        print(f"played {len(todo)} episode(s) in {time.perf_counter() - t0:.0f} s with {workers} process(es)", flush=True)
    summary = summarize(out, settings, tasks=e.tasks, states=states)
    summary["run"] = str(folder)
    summary["starts_check"] = checked
    atomic_write(out / "results.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    page = (f"# Evaluation of `{folder}`\n\nWritten by `python -m phase3_vla.evaluate`. Episodes start from LIBERO's "
            f"fixed initial states {states[0]}-{states[-1]} of each task"
            + (f", the target item and the basket then moved by {lib.perturb / 2:g}-{lib.perturb:g} m (libero.perturb)"
               if lib.perturb else "") + f" ({checked}); at most {lib.max_steps} steps "
            f"after {lib.num_steps_wait} settle steps; a new action chunk every {settings['n_action_steps']} steps.\n\n"
            f"{table(summary)}\n")
    atomic_write(out / "results.md", lambda f: f.write(page.encode()))
    print(table(summary), flush=True)
    return {"out": str(out), **summary}
