"""Play the real game with an agent that plans in a world model (or a baseline agent), and score it.

    python -m phase5_integration.plan                                     # planner in DIAMOND-lite, 20 games
    python -m phase5_integration.plan model.kind=emulator                 # the same planner, the real game as model
    python -m phase5_integration.plan model.kind=regressor                # ... phase 1's regressor
    python -m phase5_integration.plan model.kind=df                       # ... phase 2's Diffusion Forcing model
    python -m phase5_integration.plan agent=random                        # baselines: random, sticky_random
    python -m phase5_integration.plan agent=actor_critic                  # the agent trained in imagination
    python -m phase5_integration.plan planner.method=cem planner.horizon=5 planner.candidates=32
    python -m phase5_integration.plan profile=smoke                       # seconds: the tests

Each game is the phase 1 protocol (DIAMOND's Atari settings) from a fresh seed: game i is reset with
`episode_rngs(game.seed, i)`, and the command refuses a seed stream that collides with the seeds of the world
model's training data. Results go to <results>/<game>/<name>/ (`results` defaults to <run.root>/phase5):
games.jsonl, one line per game, so an interrupted evaluation resumes where it stopped and `game.shard=k/n` lets n
processes share an arm; summary.json; media/ with the first `video` games as real | imagined-next-frame videos. `python -m phase5_integration.evaluate` tabulates every agent that has played.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import atomic_write
from common.config import ConfigError, cli, settings_mismatch
from common.errors import command
from common.logger import write_video
from common.runs import ArtifactNotFoundError, resolve_run
from common.system import start
from phase1_world_model.envs import canonical_game, make_atari, protocol
from phase1_world_model.loading import load_trained as load_phase1
from phase1_world_model.recording import episode_rngs
from phase5_integration.actor_critic import ActorCriticAgent
from phase5_integration.adapters import DFModel, EmulatorModel, HeadOnRealFrames, Phase1Model
from phase5_integration.agents import GameResult, PlanningAgent, RandomAgent, play_game
from phase5_integration.config import PlanConfig
from phase5_integration.games import read_games, results_root, summarize
from phase5_integration.loading import load_agent
from phase5_integration.planner import Planner


def build_model(cfg: PlanConfig, device: torch.device, bf16: bool):
    """-> (world model satisfying the protocol, the training data identities of the learned models it loaded)."""
    m, root = cfg.model, cfg.run.root
    if m.kind == "emulator":
        return EmulatorModel(make_atari(cfg.game.game, cfg.game.env)), []
    scorer = load_phase1(m.scorer, "diffusion", root, device)
    if m.kind == "emulator_head":
        print(f"world model: the real game's frames; reward/end head of {scorer.run.describe()}", flush=True)
        return HeadOnRealFrames(make_atari(cfg.game.game, cfg.game.env), scorer.model, bf16), \
            [scorer.meta["data"]] if scorer.meta.get("data") else []
    if m.kind in ("diamond", "regressor"):
        tm = scorer if (m.kind == "diamond" and m.load == m.scorer) else load_phase1(
            m.load, "diffusion" if m.kind == "diamond" else "regressor", root, device)
        model = Phase1Model(tm.model, m.kind, scorer.model, m.denoise_steps or None, bf16)
    else:
        from phase2_diffusion_forcing.loading import load_trained as load_phase2
        tm = load_phase2(m.load, "diffusion_forcing", root, device)
        model = DFModel(tm.model, scorer.model, m.sampler, "df", bf16)
    print(f"world model: {m.kind} from {tm.run.describe()}; reward/end head of {scorer.run.describe()}", flush=True)
    datas = [d for d in (tm.meta.get("data"), scorer.meta.get("data")) if d]
    return model, datas


def check_held_out(cfg: PlanConfig, datas: list[dict]) -> None:
    """Refuse evaluation games that are training games of a world model, or a protocol the models never saw."""
    ours = protocol(cfg.game.game, cfg.game.env)
    for d in datas:
        if d.get("protocol") and settings_mismatch(d["protocol"], ours):
            raise ConfigError("game.env", ", ".join(settings_mismatch(d["protocol"], ours)),
                              "the world model was trained on another game protocol: evaluate with its settings")
        col = d.get("collection", {})
        if "seed" not in col:
            continue
        train = {episode_rngs(col["seed"], j)[0] for j in range(int(d.get("episodes", 0)))}
        ours_seeds = {episode_rngs(cfg.game.seed, i)[0] for i in range(cfg.game.episodes)}
        if col["seed"] == cfg.game.seed or train & ours_seeds:
            raise ConfigError("game.seed", cfg.game.seed, f"evaluation games would replay training games of the "
                              f"world model's data set (collected with seed {col['seed']}): choose another seed")


def scorer_data(cfg: PlanConfig) -> list[dict]:
    """The training data identity of the phase 1 world model (for a baseline agent's seed check), read from its
    marker file without loading weights; [] when there is no phase 1 model at all (nothing to collide with)."""
    try:
        run = resolve_run("phase1", cfg.model.scorer, cfg.run.root, require="export/diffusion.json", quiet=True)
    except ArtifactNotFoundError:
        return []
    d = json.loads((run.export_dir / "diffusion.json").read_text()).get("data")
    return [d] if d else []


def arm_dir(cfg: PlanConfig) -> Path:
    return results_root(cfg.results, cfg.run.root) / canonical_game(cfg.game.game) / cfg.arm_name()


def _settings(cfg: PlanConfig) -> dict:
    s = asdict(cfg)
    s.pop("run")
    s["game"].pop("episodes")  # more games may be added to a finished evaluation
    s["game"].pop("shard")  # which process plays which games does not change them
    s.pop("results")
    s.pop("video")
    return s


@command
def main(argv: list[str] | None = None) -> dict:
    cfg = cli(PlanConfig, "phase5/plan", argv, __doc__)
    rt = start(cfg.run)
    out = arm_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    settings_file, games_file = out / "settings.json", out / "games.jsonl"
    if settings_file.exists():
        diff = settings_mismatch(json.loads(settings_file.read_text()), json.loads(json.dumps(_settings(cfg))))
        if diff:
            raise ConfigError("name", cfg.arm_name(), f"{out} holds games played with other settings ({'; '.join(diff)}):"
                              f" choose another name= or delete the folder")
    rows = read_games(games_file)
    env = make_atari(cfg.game.game, cfg.game.env)
    A = int(env.action_space.n)
    if cfg.agent == "planner":
        model, datas = build_model(cfg, rt.device, rt.precision.bf16)
        agent = PlanningAgent(Planner(model, cfg.planner, seed=cfg.run.seed), cfg.planner.replan_every)
        context = model.context
    elif cfg.agent == "actor_critic":
        ag = load_agent(cfg.agent_load, cfg.run.root, rt.device)
        print(f"actor-critic from {ag.run.describe()}, trained in {ag.meta['world_model']}", flush=True)
        agent, context = ActorCriticAgent(ag.model, cfg.greedy), ag.meta["context"]
        datas = [ag.meta["data"]] if ag.meta.get("data") else []
    else:
        agent, context = RandomAgent(A, 0.75 if cfg.agent == "sticky_random" else 0.0), 1
        datas = scorer_data(cfg)
    check_held_out(cfg, datas)
    if not settings_file.exists():  # only once everything loaded: a failed start leaves nothing that blocks a retry
        atomic_write(settings_file, lambda f: f.write(json.dumps(_settings(cfg), indent=1).encode()))
    k, n = cfg.game.shard_of()
    done = {r["game"] for r in rows}
    todo = [i for i in range(cfg.game.episodes) if i % n == k and i not in done]
    print(f"{cfg.arm_name()}: {cfg.game.episodes} games of {canonical_game(cfg.game.game)} "
          f"({len(done)} already played{f'; shard {k}/{n} plays {len(todo)}' if n > 1 else ''}), up to "
          f"{cfg.game.max_steps} steps each; {rt.describe()}", flush=True)
    for i in todo:
        env_seed, _ = episode_rngs(cfg.game.seed, i)
        agent_rng = np.random.default_rng([cfg.game.seed, i, 1])
        if cfg.agent == "planner":
            agent.planner.rng = np.random.default_rng([cfg.game.seed, i, 2])
            agent.planner.generator.manual_seed(int(agent_rng.integers(2 ** 62)))
        res, video = play_game(env, agent, env_seed, agent_rng, cfg.game.max_steps, context, record=i < cfg.video)
        row = {"game": i, **res.as_dict()}
        with open(games_file, "a") as f:
            f.write(json.dumps(row) + "\n")
        if video:
            write_video(out / "media" / f"game_{i:03d}", video, fps=15)
        print(f"  game {i}: score {res.score:g}, lives lost {res.lives_lost}, {res.steps} steps"
              f"{'' if res.game_over else ' (cut)'}, {res.decision_ms:.1f} ms/decision", flush=True)
    rows = [r for r in read_games(games_file) if r["game"] < cfg.game.episodes]  # with other shards' games
    model_col = {"planner": cfg.model.kind, "actor_critic": "trained in diamond"}.get(cfg.agent, "")
    summary = {"arm": cfg.arm_name(), "agent": cfg.agent, "model": model_col,
               "planner": asdict(cfg.planner) if cfg.agent == "planner" else {}, "max_steps": cfg.game.max_steps,
               "runtime": rt.as_dict(), **summarize(rows)}
    atomic_write(out / "summary.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    s = summary
    print(f"{cfg.arm_name()}: score {s['score'][0]:.2f} [{s['score'][1]:.2f}, {s['score'][2]:.2f}], lives lost "
          f"{s['lives_lost'][0]:.2f}, steps {s['steps'][0]:.0f}, {s['decision_ms'][0]:.1f} ms/decision over "
          f"{s['games']} games -> {out}", flush=True)
    return summary


if __name__ == "__main__":
    main()
