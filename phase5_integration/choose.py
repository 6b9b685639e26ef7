"""Testbed 2: act in LIBERO by proposing K action chunks and choosing one (phase5_integration/libero_choice.py).

    python -m phase5_integration.train_scorer profile=cpu                # the progress scorer first
    python -m phase5_integration.choose choose=first                     # the proposer alone (UWM policy mode)
    python -m phase5_integration.choose choose=world_model proposals=8   # the UWM imagines, the scorer chooses
    python -m phase5_integration.choose choose=pixel_goal proposals=8    # ... chosen by pixel distance to a goal
    python -m phase5_integration.choose choose=simulator proposals=8     # ... by the real simulator (the ceiling)
    python -m phase5_integration.choose proposer=vla choose=world_model  # phase 3's SmolVLA proposes instead
    python -m phase5_integration.choose proposer_uwm=outputs/phase4/uwm-new-cpu uwm=outputs/phase4/uwm-new-played-cpu
                                                                         # one UWM proposes, another imagines
    python -m phase5_integration.choose profile=smoke                    # seconds (tests)

Every arm plays the same held-out fixed initial states of LIBERO-Object (eval.tasks, eval.first_state ..
+ eval.episodes), refusing a state any training demonstration of the UWM or the scorer started from, and plays
the whole chunk it chose before deciding again. Results: <run.root>/phase5/LIBERO/<name>/ (one record per episode,
with every decision's scores, so an interrupted arm resumes; summary.json), tabulated by
`python -m phase5_integration.evaluate testbed=libero`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from common.checkpoint import atomic_write
from common.config import ConfigError, cli
from common.errors import command
from common.runs import outputs_root
from common.system import start
from phase4_uwm.libero_eval import Player, policy_eval
from phase4_uwm.loading import load_uwm, same_scale
from phase5_integration.config import ChooseConfig
from phase5_integration.libero_choice import ChunkChooser, UWMProposer, VLAProposer, check_proposer_fits
from phase5_integration.loading import load_scorer


def load_vla(cfg: ChooseConfig, device, chunk: int) -> tuple:
    """(folder, policy, preprocessor, postprocessor, weights digest) of the SmolVLA named by `vla`, after refusing
    evaluation states any of its training demonstrations started from (phase 3's own check)."""
    from phase3_vla.config import Phase3Config
    from phase3_vla.rollouts import check_starts, image_size_of, load_for_eval, resolve
    p3 = Phase3Config()
    p3.load, p3.run.root = cfg.vla, cfg.run.root
    folder = resolve(p3)
    states = list(range(cfg.eval.first_state, cfg.eval.first_state + cfg.eval.episodes))
    print(f"phase5 choose: proposer {folder}: "
          f"{check_starts(folder, {t: states for t in cfg.eval.tasks}, cfg.eval.check_starts)}", flush=True)
    policy, pre, post, digest = load_for_eval(folder, device)
    if image_size_of(policy) != cfg.eval.libero.image_size:
        raise ConfigError("eval.libero.image_size", cfg.eval.libero.image_size,
                          f"{folder} was trained on {image_size_of(policy)} px cameras: render at that size")
    if policy.config.chunk_size < chunk:
        raise ConfigError("vla", cfg.vla, f"{folder} predicts {policy.config.chunk_size} actions per chunk, fewer "
                                          f"than the UWM's {chunk}")
    return folder, policy, pre, post, digest


def weights_digest(run) -> str:
    """The first 16 hex digits of the sha256 of a run's exported weights (recorded in each episode's settings)."""
    return hashlib.sha256((run.export_dir / "model.safetensors").read_bytes()).hexdigest()[:16]


def goal_frame(cfg: ChooseConfig, size: int) -> torch.Tensor:
    """(V, 3, S, S) uint8: the mean last frame of the training demonstrations of the evaluated task (new split)."""
    from phase4_uwm.data import cache_dir, demo_folder, load_demos
    demos = load_demos(demo_folder(cfg, "new"), size, cache_dir(cfg.run.root))
    task = cfg.eval.tasks[0]
    last = [int(i) for i in range(len(demos)) if int(demos.task[i]) == task
            and (i + 1 == len(demos) or int(demos.episode[i + 1]) != int(demos.episode[i]))]
    if not last:
        raise ConfigError("eval.tasks", cfg.eval.tasks, f"the new-task demonstrations hold no episode of task {task}: "
                                                        "pixel_goal has no goal frame for it")
    return demos.frames[last].float().mean(0).round().to(torch.uint8)


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(ChooseConfig, "phase5/choose", argv, __doc__, profile_group="choose_profile")
    rt = start(cfg.run, 0, 1)
    root, dev = cfg.run.root, rt.device
    uwm = load_uwm(cfg.uwm, root, dev, cfg.timestep_spacing)
    chunk = uwm.model.clip.chunk
    if cfg.eval.n_action_steps not in (0, chunk):
        raise ConfigError("eval.n_action_steps", cfg.eval.n_action_steps,
                          f"the chooser plays whole chunks (its imagined outcome is the chunk's end): use 0 or {chunk}")
    if len(cfg.eval.tasks) != 1:
        raise ConfigError("eval.tasks", cfg.eval.tasks, "one task per arm (the scorer and the goal frame are per task)")
    meta = {"train_starts": list(uwm.meta.get("train_starts", []))}
    scorer, settings = None, {"choose": cfg.choose, "proposals": 1 if cfg.choose == "first" else cfg.proposals,
                              "timestep_spacing": uwm.model.cfg.timestep_spacing}
    what = f"UWM `{uwm.run.dir.name}` proposes"
    vla = prop = None
    if cfg.proposer_uwm:
        prop = load_uwm(cfg.proposer_uwm, root, dev, cfg.timestep_spacing)
        try:
            check_proposer_fits(prop.model, uwm.model)
        except ValueError as e:
            raise ConfigError("proposer_uwm", cfg.proposer_uwm, f"{prop.run.dir} cannot propose for {uwm.run.dir}: {e}")
        meta["train_starts"] += list(prop.meta.get("train_starts", []))
        meta["proposer_folder"] = str(prop.run.dir)
        settings.update(proposer_uwm=weights_digest(prop.run))
        what = f"UWM `{prop.run.dir.name}` proposes, UWM `{uwm.run.dir.name}` imagines"
    if cfg.proposer == "vla":
        vla = load_vla(cfg, dev, chunk)
        meta["vla_folder"] = str(vla[0])
        settings.update(proposer="vla", vla=vla[4])
        what = f"SmolVLA `{vla[0]}` proposes, UWM `{uwm.run.dir.name}` imagines"
    if cfg.choose in ("world_model", "simulator"):
        sm = load_scorer(cfg.scorer, root, dev)
        want, have = sm.meta["tokenizer"]["scale"], uwm.meta.get("tokenizer", {}).get("scale")
        if have is None or not same_scale(want, have):
            raise ConfigError("scorer", cfg.scorer, f"{sm.run.dir} was trained on the latents of tokenizer "
                                                    f"{sm.meta['tokenizer']['run']} (scale {want:.6g}); the UWM "
                                                    f"{uwm.run.dir} imagines in another (scale {have}): retrain the "
                                                    "scorer with tokenizer=<the UWM's tokenizer run>")
        if cfg.eval.tasks[0] not in sm.meta["tasks"]:
            raise ConfigError("scorer", cfg.scorer, f"{sm.run.dir} was trained on tasks {sm.meta['tasks']}, not on "
                                                    f"task {cfg.eval.tasks[0]}: train one with the right split")
        scorer = sm.model.scorer.eval()
        meta["train_starts"] += sm.meta.get("train_starts", [])
        settings["scorer"] = weights_digest(sm.run)
        what += f", scorer `{sm.run.dir.name}` (held-out {sm.meta.get('val')})"
    goal = goal_frame(cfg, int(uwm.model.obs_size)) if cfg.choose == "pixel_goal" else None
    what += f"; choice: {cfg.choose}, K = {settings['proposals']}"

    def make(task, g):
        proposer = (VLAProposer(*vla[1:4], chunk, g) if vla is not None
                    else UWMProposer(prop.model, task, cfg.denoise_steps, g) if prop is not None else None)
        return (ChunkChooser(uwm.model, uwm.tokenizer, scorer, task, cfg.proposals, cfg.choose, cfg.denoise_steps,
                             g, goal, proposer), lambda x: x, lambda x: x)

    player = Player(uwm.run, meta, uwm.run.export_dir / "model.safetensors", chunk,
                    cfg.denoise_steps or uwm.model.cfg.sample_steps, make, what, settings)
    out = outputs_root(root) / "phase5" / "LIBERO" / cfg.arm_name()
    out.mkdir(parents=True, exist_ok=True)
    print(f"phase5 choose: {what}. {rt.describe()} -> {out}", flush=True)
    summary = policy_eval(cfg.eval, player, out, dev, rt.precision)
    recs = [json.loads(p.read_text()) for p in sorted((out / "episodes").glob("task_*_ep_*.json"))]
    recs = [r for r in recs if r.get("settings") == summary["settings"]]
    n_dec = sum(len(r.get("decisions", [])) for r in recs)
    scored = cfg.choose != "first"  # the proposer alone scores nothing
    # what the chooser believed: the chosen chunk's score at the last decision of each failed episode (a progress
    # near 1 there means the scorer mistook a failure for near success), and the spread of the K scores
    ends = [d[-1]["scores"][d[-1]["chosen"]] for d in (r.get("decisions") for r in recs if not r["success"]) if d]
    spreads = [max(d["scores"]) - min(d["scores"]) for r in recs for d in r.get("decisions", [])]
    summary.update(failed_final_score=sum(ends) / len(ends) if scored and ends else None,
                   score_spread=sum(spreads) / len(spreads) if scored and spreads else None)
    summary.update(arm=cfg.arm_name(), describe=what, uwm=str(uwm.run.dir), profile=cfg.profile,
                   scorer_name=None if scorer is None else sm.run.dir.name,
                   decisions=n_dec, seconds_per_decision=(sum(r["seconds"] for r in recs) / n_dec) if n_dec else None,
                   runtime=rt.as_dict())
    atomic_write(out / "summary.json", lambda f: f.write(json.dumps(summary, indent=1, default=str).encode()))
    return summary


if __name__ == "__main__":
    main()
