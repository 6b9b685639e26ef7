"""The LIBERO episode loop of phase 4's policy evaluation, shared by `phase4_uwm.evaluate` and phase 5's `choose`.

    player = Player(run, meta, weights, n_action_steps, denoise_steps, make, label)   # make(task, g) -> policy, pre, post
    summary = policy_eval(cfg.eval, player, out_dir, device, precision)             # resumable; Wilson intervals

Every episode starts from one of LIBERO's fixed initial states, refused when a training demonstration of the
method started there (`check_starts`, from the run's recorded `train_starts`); finished episodes are kept per
state with the settings that made them, so an interrupted evaluation resumes and a changed setting is played anew.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from common.stepwise import mix_seed
from phase4_uwm.config import PolicyEvalConfig


def check_starts(run, meta: dict, tasks: list[int], states: list[int], enabled: bool) -> str:
    from phase3_vla.starts import ContaminationError, StartRecord, check_disjoint

    if not enabled:
        return "training starts NOT checked (eval.check_starts=false)"
    starts = meta.get("train_starts")
    if not starts:
        raise ContaminationError(f"{run.dir} does not record where its training demonstrations started: train it "
                                 "with the current phase4_uwm commands, or pass eval.check_starts=false")
    records = [StartRecord(r["task_id"], r["kind"], r["seed"], [], r["digest"], episode_index=r["episode_index"])
               for r in starts]
    n = check_disjoint(records, {t: states for t in tasks}, where=str(run.dir))
    return f"{n} evaluation start(s) checked against {len(records)} training start(s): none shared"


@dataclass
class Player:
    """What the LIBERO loop needs of a method: a fresh policy (with pre/post processing) per episode. A policy with
    a `bind(env)` method is given the episode's env (phase 5's simulator chooser plays copies of its state); one with
    a `decisions` list has it saved in the episode's record; one with `annotate(frames)` rewrites the recorded frames
    before the video is written (phase 5's chooser puts its imagined outcomes below the real frames)."""

    run: object
    meta: dict
    weights: Path
    n_action_steps: int
    denoise_steps: int
    make: Callable  # (task, generator) -> (policy, pre, post)
    label: str
    settings: dict = field(default_factory=dict)  # more that must match for a saved episode to be reused


def policy_eval(e: PolicyEvalConfig, player: Player, out: Path, device, precision) -> dict:
    """Play the fixed initial states of `e` (resumable: saved episodes with the same settings are kept)."""
    from phase3_vla.libero_env import make_env
    from phase3_vla.rollouts import load_episode, play, save_episode, summarize, table

    states = list(range(e.first_state, e.first_state + e.episodes))
    checked = check_starts(player.run, player.meta, e.tasks, states, e.check_starts)
    digest = hashlib.sha256(player.weights.read_bytes()).hexdigest()[:16]
    settings = {"weights": digest, "max_steps": e.libero.max_steps, "num_steps_wait": e.libero.num_steps_wait,
                "hard_reset": e.libero.hard_reset, "image_size": e.libero.image_size, "perturb": e.libero.perturb,
                "n_action_steps": player.n_action_steps, "denoise_steps": player.denoise_steps, "seed": e.seed,
                "suite": e.libero.suite, **player.settings}
    print(f"phase4 evaluate: {player.label} of {player.run.dir} on tasks {e.tasks}, fixed states "
          f"{states[0]}-{states[-1]}, a new chunk every {settings['n_action_steps']} steps; {checked}", flush=True)
    env, env_task = None, None
    t0, played = time.perf_counter(), 0
    for task in e.tasks:
        for i in states:
            if load_episode(out, task, i, settings) is not None:
                continue
            if env_task != task:
                if env is not None:
                    env.close()
                env, env_task = make_env(e.libero, task, cameras=True), task
            g = torch.Generator(device=device).manual_seed(mix_seed(e.seed, task, i))
            pol, pre, post = player.make(task, g)
            if hasattr(pol, "bind"):
                pol.bind(env)
            record = e.videos < 0 or i - e.first_state < e.videos
            with precision.autocast():
                r = play(pol, pre, post, env, init_state=i, max_steps=e.libero.max_steps, record=record)
            if hasattr(pol, "decisions"):
                r["decisions"] = pol.decisions
            if r.get("frames") and hasattr(pol, "annotate"):
                r["frames"] = pol.annotate(r["frames"])
            save_episode(out, task, i, r, env.task_description, str(player.run.dir), settings)
            played += 1
            if e.progress:
                print(f"  task {task} init state {i}: {r['reason']}, {r['steps']} steps, {r['seconds']:.1f} s", flush=True)
    if env is not None:
        env.close()
    summary = summarize(out, settings, tasks=e.tasks, states=states)
    summary.update(starts_check=checked, played_now=played, seconds_now=time.perf_counter() - t0)
    print(table(summary), flush=True)
    return summary
