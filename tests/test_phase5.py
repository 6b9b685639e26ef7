"""Phase 5 (planning in world models): the value of a sequence in closed form, planners that find the optimum of a
toy world with known dynamics, the emulator oracle (exact, and blind to the real episode), every adapter on the
protocol (shapes, batching, prefix sharing, determinism under a seed), and smoke runs of the entry points."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from common.config import load_config
from phase1_world_model.config import Phase1Config
from phase1_world_model.envs import make_atari
from phase1_world_model.model import WorldModel
from phase2_diffusion_forcing.config import Phase2Config, SamplerConfig
from phase2_diffusion_forcing.model import DFWorldModel
from phase2_diffusion_forcing.sampler import rollout as df_rollout
from phase5_integration.adapters import DFModel, EmulatorModel, Phase1Model, snapshot
from phase5_integration.agents import PlanningAgent, play_game
from phase5_integration.config import PlannerConfig
from phase5_integration.planner import Planner, sequence_value
from phase5_integration.protocol import History, Imagined, WorldModel as Protocol

from conftest import run_module, subprocess_env


# ----------------------------------------------------------------------------- value and planners
def test_sequence_value_matches_the_closed_form():
    r = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    e = torch.tensor([[0.0, 0.5, 0.0], [1.0, 0.0, 0.0]])
    g, lam = 0.9, 2.0
    v = sequence_value(r, e, g, lam)
    # row 0: 1 + 0.9 * (0 - 2 * 0.5) + 0.81 * 0.5 * 1; row 1: (0 - 2) then nothing survives
    assert v.tolist() == pytest.approx([1 - 0.9 + 0.81 * 0.5, -2.0])


class LineWorld:
    """A toy world with known dynamics: a position on a line, actions 0 stay, 1 left, 2 right, 3 jump +2.
    Reaching position 4 pays 1 (once per step spent there), falling below 0 loses the life."""

    name, num_actions, context, needs_state = "line", 4, 1, False
    MOVES = np.array([0, -1, 1, 2])

    def __init__(self):
        self.calls = 0

    def imagine(self, history: History, actions: torch.Tensor, generator=None) -> Imagined:
        self.calls += 1
        pos = np.full(len(actions), int(history.frames[-1, 0, 0, 0]))
        r, e = np.zeros(actions.shape), np.zeros(actions.shape)
        for t in range(actions.shape[1]):
            pos = pos + self.MOVES[actions[:, t].numpy()]
            r[:, t] = pos == 4
            e[:, t] = pos < 0
        return Imagined(torch.tensor(r, dtype=torch.float32), torch.tensor(e, dtype=torch.float32))


def at(position: int) -> History:
    return History(torch.full((1, 3, 2, 2), position, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64))


def best_value(start: int, H: int, gamma: float = 0.99) -> float:
    import itertools
    m = LineWorld()
    cands = torch.tensor(list(itertools.product(range(4), repeat=H)))
    im = m.imagine(at(start), cands)
    return float(sequence_value(im.reward, im.end, gamma, 5.0).max())


@pytest.mark.parametrize("method", ["enumerate", "cem", "shooting"])
def test_planners_find_the_optimal_sequence_of_a_known_world(method):
    """From position 0 with horizon 4 the optimum is to jump twice (+2, +2) and stay at 4: value 1 + 0.99 + ...;
    every method must find a sequence of that value (cem and shooting with enough samples)."""
    # shooting draws blindly: 2048 draws miss both optimal sequences of 256 with probability e^-16
    cfg = PlannerConfig(method=method, horizon=4, candidates=2048 if method == "shooting" else 128, iterations=4,
                        elites=8, life_penalty=5.0)
    plan = Planner(LineWorld(), cfg, seed=0).plan(at(0))
    assert plan.value == pytest.approx(best_value(0, 4))
    assert plan.actions[:2] == [3, 3]
    # at position 1, stepping left twice falls off: never chosen
    plan = Planner(LineWorld(), cfg, seed=1).plan(at(1))
    assert plan.value == pytest.approx(best_value(1, 4))


class NearTies(LineWorld):
    """Horizon 1, values by first action: 0 -> 0, 1 -> -0.01 (a learned head's small life-loss doubt), 2 and 3
    -> -1."""

    def imagine(self, history, actions, generator=None):
        end = torch.tensor([[0.0], [0.002], [0.2], [0.2]])[actions[:, 0]]
        return Imagined(torch.zeros(actions.shape), end)


def test_tie_tolerance_breaks_near_ties_at_random_and_names_the_arm():
    """Exact ties (the default) always pick the best value; within tie_tolerance the near-best is chosen too, the
    clearly worse never; a non-default tolerance is part of the arm's name (a different agent)."""
    def firsts(tol):
        p = Planner(NearTies(), PlannerConfig(horizon=1, tie_tolerance=tol), seed=0)
        return {p.plan(at(0)).actions[0] for _ in range(40)}
    assert firsts(1e-6) == {0}
    assert firsts(0.05) == {0, 1}
    from phase5_integration.config import PlanConfig
    cfg = PlanConfig()
    assert cfg.arm_name() == "plan-diamond-enumerate-h3"
    cfg.planner.tie_tolerance = 0.05
    assert cfg.arm_name() == "plan-diamond-enumerate-h3-tol0.05"
    with pytest.raises(Exception, match="tie_tolerance"):
        PlannerConfig(tie_tolerance=-1).check()


def test_cem_concentrates_and_warm_start_shifts_the_plan():
    cfg = PlannerConfig(method="cem", horizon=3, candidates=32, iterations=5, elites=4, smoothing=0.0, min_prob=0.0)
    p = Planner(LineWorld(), cfg, seed=0)
    plan = p.plan(at(0))
    assert p.probs[0].max() == 1.0 and p.probs[0].argmax() == 3  # the elites all jump first
    p.shift(1)
    assert p.prev[:2] == plan.actions[1:]  # the rest of the plan is the next warm start
    assert np.allclose(p.probs[-1], 0.25)  # the new last step starts uniform
    with pytest.raises(ValueError, match="max_enumerate"):
        Planner(LineWorld(), PlannerConfig(method="enumerate", horizon=7, max_enumerate=4096))


def test_planning_agent_executes_replan_every_actions_per_plan():
    m = LineWorld()
    agent = PlanningAgent(Planner(m, PlannerConfig(horizon=3, replan_every=2)), replan_every=2)
    agent.reset(np.random.default_rng(0))
    [agent.act(at(0)) for _ in range(6)]
    assert m.calls == 3 and agent.plans == 3


# ----------------------------------------------------------------------------- the emulator oracle
def _history(env, obs_list, acts):
    frames = torch.stack([torch.from_numpy(o).permute(2, 0, 1) for o in obs_list[-1:]])
    return History(frames, torch.zeros(0, dtype=torch.int64), snapshot(env))


def test_emulator_oracle_predicts_the_real_game_exactly_and_does_not_touch_it():
    real, twin = make_atari("Breakout"), make_atari("Breakout")
    oracle = EmulatorModel(make_atari("Breakout"), keep_frames=True)
    obs, _ = real.reset(seed=11)
    twin.reset(seed=11)
    warmup = [1, 2, 2, 1, 3, 0, 0, 1] + [0] * 30  # launch the ball and let it fly
    for a in warmup:
        obs, *_ = real.step(a)
        twin.step(a)
    hist = _history(real, [obs], [])
    cands = torch.tensor([[0, 0, 0, 0, 0, 0], [2, 2, 2, 2, 2, 2], [3, 3, 3, 3, 3, 3], [1, 0, 2, 3, 0, 1]])
    for _ in range(2):  # imagining twice gives the same futures (restored each time)
        im = oracle.imagine(hist, cands)
    # the real game never moved: stepping it and its untouched twin gives identical frames
    for a in cands[3].tolist():
        o1, r1, *_ = real.step(a)
        o2, r2, *_ = twin.step(a)
        assert np.array_equal(o1, o2) and r1 == r2
    # and what the oracle imagined for candidate 3 is what the real game then showed
    real2 = make_atari("Breakout")
    obs2, _ = real2.reset(seed=11)
    for a in warmup:
        real2.step(a)
    for t, a in enumerate(cands[3].tolist()):
        o, r, term, trunc, info = real2.step(a)
        assert np.array_equal(im.frames[3, t].permute(1, 2, 0).numpy(), o)
        assert im.reward[3, t] == np.sign(r) and im.end[3, t] == float(info["life_loss"] or term)
    assert im.reward.shape == im.end.shape == (4, 6)


def test_emulator_oracle_sees_a_lost_life():
    """Leave the paddle still for long enough and the ball is lost: the oracle's end flag says so."""
    real = make_atari("Breakout")
    real.reset(seed=3)
    real.step(1)  # FIRE: launch
    oracle = EmulatorModel(make_atari("Breakout"))
    hist = History(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), snapshot(real))
    im = oracle.imagine(hist, torch.zeros(1, 120, dtype=torch.int64))
    assert im.end.sum() >= 1 and sequence_value(im.reward, im.end, 1.0, 5.0) < 0


# ----------------------------------------------------------------------------- adapters on the protocol
def _phase1(kind: str) -> WorldModel:
    cfg = load_config(Phase1Config, "phase1/train", ["profile=smoke", f"model.kind={kind}"])
    torch.manual_seed(0)
    m = WorldModel(cfg.model, 4, (3, 16, 16), cfg.sampler)
    for mod in m.modules():  # zero-initialised convs get weights, so that inputs and actions matter
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and not mod.weight.any():
            torch.nn.init.normal_(mod.weight, std=0.1)
    return m.eval()


def _history16(K: int = 4, seed: int = 0) -> History:
    g = torch.Generator().manual_seed(seed)
    return History(torch.randint(0, 256, (K, 3, 16, 16), generator=g, dtype=torch.uint8),
                   torch.randint(0, 4, (K - 1,), generator=g))


def test_history_takes_discrete_or_continuous_actions_and_refuses_wrong_shapes():
    frames = torch.zeros(3, 6, 8, 8, dtype=torch.uint8)  # 3 frames of 2 cameras
    assert History(frames, torch.zeros(2, dtype=torch.int64)).actions.shape == (2,)
    assert History(frames, torch.zeros(2, 7), task=4).task == 4
    with pytest.raises(ValueError, match="K - 1 = 2"):
        History(frames, torch.zeros(3, 7))
    with pytest.raises(ValueError, match="3 x cameras"):
        History(torch.zeros(3, 4, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))


@pytest.fixture(scope="module")
def adapters():
    diffusion, regressor = _phase1("diffusion"), _phase1("regressor")
    cfg = load_config(Phase2Config, "phase2/train", ["profile=smoke"]).model
    torch.manual_seed(0)
    df = DFWorldModel(cfg, 4, (3, 16, 16)).eval()
    return {"diamond": Phase1Model(diffusion, "diamond"), "regressor": Phase1Model(regressor, "regressor", diffusion),
            "df": DFModel(df, diffusion, SamplerConfig(steps=2))}


@pytest.mark.parametrize("name", ["diamond", "regressor", "df"])
def test_adapters_satisfy_the_protocol(adapters, name):
    m = adapters[name]
    assert isinstance(m, Protocol) and m.context == 4 and m.num_actions == 4
    hist = _history16()
    acts = torch.tensor([[0, 1, 2], [0, 1, 3], [2, 2, 2], [0, 1, 2], [3, 0, 1]])
    im = m.imagine(hist, acts, torch.Generator().manual_seed(5))
    assert im.frames.shape == (5, 3, 3, 16, 16) and im.frames.dtype == torch.uint8
    assert im.reward.shape == im.end.shape == (5, 3)
    assert ((im.end >= 0) & (im.end <= 1)).all() and (im.reward.abs() <= 1).all()
    again = m.imagine(hist, acts, torch.Generator().manual_seed(5))  # determinism under a seed
    assert torch.equal(im.frames, again.frames) and torch.equal(im.reward, again.reward)
    # a shared prefix is imagined once (df too: its default schedule, autoregressive, shares prefixes): rows 0, 1
    # and 3 share steps 0 and 1 (rows 0 and 3 are the same sequence)
    assert torch.equal(im.frames[0, :2], im.frames[1, :2]) and torch.equal(im.frames[0], im.frames[3])
    assert not torch.equal(im.frames[0, 2], im.frames[1, 2])  # and the actions matter
    if name == "regressor":  # deterministic: a candidate alone imagines what it imagines in a batch
        alone = m.imagine(hist, acts[2:3])
        assert torch.allclose(alone.reward, im.reward[2:3], atol=1e-5)
        assert (alone.frames.int() - im.frames[2:3].int()).abs().max() <= 1
    with pytest.raises(ValueError, match="must lie in"):
        m.imagine(hist, torch.tensor([[4, 0, 0]]))


def test_head_on_real_frames_scores_the_oracles_frames_with_the_head():
    """emulator_head: the oracle's real frames, each transition (K frames, the K actions played on them, the next
    frame) valued by the learned head, aligned as the learned models' transitions are."""
    from phase5_integration.adapters import HeadOnRealFrames
    cfg = load_config(Phase1Config, "phase1/train", ["profile=smoke"])
    torch.manual_seed(0)
    head = WorldModel(cfg.model, 4, (3, 64, 64), cfg.sampler).eval()
    for mod in head.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and not mod.weight.any():
            torch.nn.init.normal_(mod.weight, std=0.1)
    real = make_atari("Breakout")
    obs, _ = real.reset(seed=11)
    K = head.cfg.context
    frames, acts = [torch.from_numpy(obs).permute(2, 0, 1)], []
    for a in [1, 2, 2, 3, 0, 2][:K - 1] + [1]:
        obs, *_ = real.step(a)
        frames.append(torch.from_numpy(obs).permute(2, 0, 1))
        acts.append(a)
    hist = History(torch.stack(frames[-K:]), torch.tensor(acts[-(K - 1):]), snapshot(real))
    cands = torch.tensor([[0, 2, 3], [3, 3, 1]])
    m = HeadOnRealFrames(make_atari("Breakout"), head)
    im = m.imagine(hist, cands)
    truth = EmulatorModel(make_atari("Breakout"), keep_frames=True).imagine(hist, cands)
    assert torch.equal(im.frames, truth.frames) and m.context == K and m.needs_state
    seq = torch.cat([hist.frames, truth.frames[1]])  # candidate 1, transition t = 2, by hand
    played = torch.cat([hist.actions, cands[1]])
    p_r, p_e = head.reward_end_probs(seq[None, 2:2 + K], played[None, 2:2 + K], truth.frames[1, 2][None])
    assert im.reward[1, 2] == pytest.approx(float(p_r[0, 2] - p_r[0, 0]), abs=1e-5)
    assert im.end[1, 2] == pytest.approx(float(p_e[0]), abs=1e-5)


@pytest.mark.parametrize("stabilization", [0.0, 0.1])
def test_df_prefix_tree_is_a_one_frame_window_rollout(adapters, stabilization):
    """DFModel's autoregressive tree: one candidate imagines exactly what phase 2's rollout gives with a window of one
    frame (same draws, same order); other schedules roll each candidate out whole, in the model's windows."""
    from dataclasses import replace
    m = adapters["df"]
    hist, acts = _history16(), torch.tensor([[1, 2, 3, 0, 2]])
    tree = DFModel(m.model, m.scorer, SamplerConfig(steps=2, stabilization=stabilization))
    got = tree.imagine(hist, acts, torch.Generator().manual_seed(7)).frames
    want = df_rollout(m.model, hist.frames[None], torch.cat([hist.actions[None], acts], 1), 5,
                      replace(tree.sampler, chunk=1), torch.Generator().manual_seed(7))
    assert torch.equal(got, want)
    pyr = DFModel(m.model, m.scorer, SamplerConfig(steps=2, schedule="pyramid"))
    got = pyr.imagine(hist, acts, torch.Generator().manual_seed(7)).frames
    want = df_rollout(m.model, hist.frames[None], torch.cat([hist.actions[None], acts], 1), 5, pyr.sampler,
                      torch.Generator().manual_seed(7))
    assert torch.equal(got, want)


def test_play_game_runs_a_planner_in_the_real_game(adapters):
    """The loop feeds the planner K real frames; with the emulator as the model it plays without losing lives
    over a short stretch, and records real | imagined frames."""
    env = make_atari("Breakout")
    oracle = EmulatorModel(make_atari("Breakout"), keep_frames=True)
    agent = PlanningAgent(Planner(oracle, PlannerConfig(horizon=2)), 1)
    res, video = play_game(env, agent, 7, np.random.default_rng(0), max_steps=5, context=1, record=True)
    assert res.steps == 5 and res.plans == 5 and res.imagined == 5 * 16 and len(video) == 5
    assert video[0].shape == (64, 130, 3)


# ----------------------------------------------------------------------------- entry points
def test_plan_and_evaluate_smoke(run_root):
    env = subprocess_env(WM_RELEASES=str(run_root / "no-releases"))
    for args in (["agent=random"], ["agent=sticky_random"], ["model.kind=emulator"]):
        r = run_module("phase5_integration.plan", "profile=smoke", f"run.root={run_root}", *args, env=env,
                       timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    arm = run_root / "phase5" / "Breakout" / "plan-emulator-enumerate-h2"
    rows = [json.loads(x) for x in (arm / "games.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(x["steps"] == 12 for x in rows)
    assert (arm / "media" / "game_000.gif").exists()
    # resuming plays nothing new; other settings under the same name are refused
    r = run_module("phase5_integration.plan", "profile=smoke", f"run.root={run_root}", "model.kind=emulator", env=env)
    assert r.returncode == 0 and "(2 already played)" in r.stdout
    r = run_module("phase5_integration.plan", "profile=smoke", f"run.root={run_root}", "model.kind=emulator",
                   "planner.life_penalty=1", "name=plan-emulator-enumerate-h2", env=env)
    assert r.returncode == 2 and "life_penalty" in r.stderr
    r = run_module("phase5_integration.evaluate", f"run.root={run_root}", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "plan-emulator-enumerate-h2" in r.stdout and "random" in r.stdout


def test_plan_shards_play_the_same_games_as_one_process(run_root, tmp_path):
    """game.shard=k/n splits an arm's games between processes; together they give exactly the games (and the
    summary) one process gives, wherever `results` puts them; a malformed shard is refused."""
    env = subprocess_env(WM_RELEASES=str(run_root / "no-releases"))
    base = ("phase5_integration.plan", "profile=smoke", f"run.root={run_root}", "agent=random", "game.episodes=3",
            "video=0")
    one, shared = tmp_path / "one", tmp_path / "shared"
    assert run_module(*base, f"results={one}", env=env).returncode == 0
    for k in (1, 0):
        r = run_module(*base, f"results={shared}", f"game.shard={k}/2", env=env)
        assert r.returncode == 0, r.stderr[-3000:]
    assert "shard 0/2 plays 2" in r.stdout
    lines = [json.loads(x) for x in (shared / "Breakout" / "random" / "games.jsonl").read_text().splitlines()]
    assert [x["game"] for x in lines] == [1, 0, 2]
    from phase5_integration.games import read_games
    strip = lambda rows: [{k: v for k, v in x.items() if not k.startswith("decision_ms")} for x in rows]  # noqa: E731
    assert strip(read_games(shared / "Breakout" / "random" / "games.jsonl")) == \
        strip(read_games(one / "Breakout" / "random" / "games.jsonl"))
    s1, s2 = (json.loads((d / "Breakout" / "random" / "summary.json").read_text()) for d in (one, shared))
    assert s1["games"] == s2["games"] == 3 and s1["score"] == s2["score"] and s1["steps"] == s2["steps"]
    r = run_module("phase5_integration.evaluate", f"run.root={run_root}", f"results={shared}", env=env)
    assert r.returncode == 0 and "random" in r.stdout, r.stderr[-3000:]
    r = run_module(*base, f"results={shared}", "game.shard=2/2", env=env)
    assert r.returncode == 2 and "shard" in r.stderr


def test_budget_figure_plots_enumerating_planners_only(tmp_path):
    """One point per enumerating planner (lookahead = horizon x action repeat); a planner that samples candidates
    is left out, and fewer than two points draw nothing."""
    from phase5_integration.evaluate import budget_figure

    def arm(name, model, **planner):
        p = {"method": "enumerate", "horizon": 3, "action_repeat": 1, "replan_every": 1, **planner} if model else {}
        return {"arm": name, "model": model, "planner": p, "score": [1.0, 0.5, 1.5]}
    rnd = arm("random", "")
    one = [rnd, arm("a", "emulator"), arm("c", "diamond", method="cem")]
    assert budget_figure(one, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    two = [rnd, arm("a", "emulator"), arm("d", "emulator", horizon=2, action_repeat=4, replan_every=4),
           arm("e", "emulator", action_repeat=4, replan_every=12)]
    out = budget_figure(two, tmp_path / "f.png")
    assert out == tmp_path / "f.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_share_and_gain_use_the_games_all_arms_played():
    """The share of the oracle's gain is taken over the shared game indices: a planner that scores random + half of
    the oracle's lead in every game recovers exactly 0.5 (and every bootstrap resample says so); games another arm did
    not play are left out; games started from different seeds are refused; the gain over random is the mean paired
    difference."""
    from common.errors import DataError
    from phase5_integration.evaluate import paired_gain, paired_share

    rng = np.random.default_rng(0)
    rnd_s = rng.integers(0, 4, 12).astype(float)
    ora_s = rnd_s + rng.integers(1, 6, 12)  # the oracle beats random play in every game
    rows = lambda scores, games: [{"game": g, "env_seed": 100 + g, "score": float(scores[g])} for g in games]  # noqa: E731
    rnd, ora = rows(rnd_s, range(12)), rows(ora_s, range(12))
    half = rows(rnd_s + 0.5 * (ora_s - rnd_s), range(0, 12, 2))  # an unfinished arm: 6 of the 12 games
    (share, lo, hi), n = paired_share(half, ora, rnd)
    assert n == 6 and share == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    # over all 12 games the unpaired ratio would differ: only the shared games enter
    (gain, glo, ghi), n = paired_gain(half, rnd)
    assert n == 6 and gain == pytest.approx(float(np.mean(0.5 * (ora_s - rnd_s)[::2]))) and glo <= gain <= ghi
    assert paired_share(rows(rnd_s, [0]), ora, rnd) is None  # one shared game: no interval
    assert paired_share(half, rnd, rnd) is None  # the oracle does not beat random play
    bad = [dict(r, env_seed=r["env_seed"] + 1) if r["game"] == 2 else r for r in ora]
    with pytest.raises(DataError, match="game 2 started from different seeds"):
        paired_share(half, bad, rnd)
    # the oracle ahead in one game of three: a third of the resamples have no ratio, so the interval is unbounded
    one = rows(np.array([0.0, 0.0, 3.0]), range(3))
    (share, lo, hi), n = paired_share(rows(np.array([0.0, 0.0, 1.5]), range(3)), one, rows(np.zeros(3), range(3)))
    assert n == 3 and share == pytest.approx(0.5) and np.isnan(lo) and np.isnan(hi)
    from phase5_integration.evaluate import _ci
    assert _ci([share, lo, hi]) == "0.50 [unbounded]" and _ci([0.5, 0.25, 0.75]) == "0.50 [0.25, 0.75]"


def test_evaluate_counts_every_game_played_not_the_last_summary(tmp_path):
    """An arm stopped part-way (or still playing) has more games in games.jsonl than its last summary.json says;
    the table's statistics come from the games, the settings from the summary."""
    from phase5_integration.evaluate import current, summaries

    arm = tmp_path / "Breakout" / "random"
    arm.mkdir(parents=True)
    rows = [{"game": g, "env_seed": g, "score": float(g), "lives_lost": 5, "steps": 100 + g, "game_over": True,
             "decision_ms": 0.01, "plans": 0, "imagined": 0} for g in range(3)]
    (arm / "games.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (arm / "summary.json").write_text(json.dumps({"arm": "random", "model": "", "games": 1, "score": [0, 0, 0]}))
    (a,) = summaries(tmp_path / "Breakout", [], str, "plan")
    now = current(a)
    assert a["games"] == 1 and now["games"] == 3 and now["score"][0] == pytest.approx(1.0)
    assert now["arm"] == "random" and now["model"] == ""


def test_plan_with_learned_models_refuses_training_seeds(run_root):
    """With the shipped releases: the planner runs in DIAMOND-lite, the regressor and DF; game.seed = the data's
    collection seed is refused (the games would be training games)."""
    for kind in ("diamond", "regressor", "df"):
        r = run_module("phase5_integration.plan", "profile=smoke", f"run.root={run_root}", f"model.kind={kind}",
                       "game.episodes=1", "game.max_steps=2", "video=0", timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    r = run_module("phase5_integration.plan", "profile=smoke", f"run.root={run_root}", "game.seed=0",
                   "game.episodes=1", "game.max_steps=2", timeout=600)
    assert r.returncode == 2 and "game.seed" in r.stderr


# ----------------------------------------------------------------------------- the agent trained in imagination
def test_lambda_returns_are_monte_carlo_at_one_and_td_at_zero():
    from phase5_integration.actor_critic import lambda_returns
    r = torch.tensor([[1.0, 0.0, 2.0]])
    c = torch.tensor([[1.0, 1.0, 1.0]])
    v = torch.tensor([[0.5, 0.3, 0.2, 4.0]])
    g = 0.9
    mc = lambda_returns(r, c, v, g, 1.0)
    assert mc[0].tolist() == pytest.approx([1 + g * 0 + g * g * 2 + g ** 3 * 4, 0 + g * 2 + g * g * 4, 2 + g * 4])
    td = lambda_returns(r, c, v, g, 0.0)
    assert td[0].tolist() == pytest.approx([1 + g * 0.3, 0 + g * 0.2, 2 + g * 4])
    ended = lambda_returns(r, torch.tensor([[1.0, 0.0, 1.0]]), v, g, 1.0)  # the life ends at step 1
    assert ended[0, :2].tolist() == pytest.approx([1 + g * 0, 0.0])


def test_imagination_learner_trains_the_agent_only_and_masks_after_an_end():
    from common.stepwise import StepRNG
    from phase5_integration.actor_critic import ActorCritic, ImaginationLearner
    from phase5_integration.config import ActorCriticConfig
    world = _phase1("diffusion")
    before = {k: v.clone() for k, v in world.state_dict().items()}
    cfg = ActorCriticConfig(channels=[8, 8], hidden=16, horizon=4)
    learner = ImaginationLearner(ActorCritic(cfg, 4, 4, 16), world, cfg, denoise_steps=1)
    assert all(not k.startswith("_world") for k in learner.state_dict())  # checkpoints hold the agent only
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randint(0, 256, (3, 4, 3, 16, 16), generator=g, dtype=torch.uint8),
             "act": torch.randint(0, 4, (3, 4), generator=g)}
    loss, logs = learner(batch, StepRNG(0, 0, 0, 3, 3, torch.device("cpu")))
    loss.backward()
    assert all(p.grad is not None for p in learner.agent.parameters())
    assert all(p.grad is None for p in world.parameters())
    assert all(torch.equal(before[k], v) for k, v in world.state_dict().items())
    assert 0 < logs["imagined_steps"] <= 4 and 0 <= logs["imagined_end"] <= 1
    # a world model whose head always says "ended": only the first step of each world counts
    world.head.end.bias.data = torch.tensor([-50.0, 50.0])
    _, logs = learner(batch, StepRNG(0, 1, 0, 3, 3, torch.device("cpu")))
    assert logs["imagined_steps"] == 1.0 and logs["imagined_end"] == 1.0


@pytest.fixture(scope="module")
def phase1_smoke(tmp_path_factory):
    """A 2-episode Breakout data set and a smoke DIAMOND-lite with its reward/end head, under one run.root."""
    from phase1_world_model import collect, train
    root = tmp_path_factory.mktemp("p5p1")
    collect.main(["profile=smoke", f"run.root={root}"])
    train.main(["profile=smoke", f"run.root={root}", "run.name=wm"])
    return root


def test_train_agent_then_play_it_in_the_real_game(phase1_smoke):
    root = phase1_smoke
    env = subprocess_env(WM_RELEASES=str(root / "no-releases"))
    r = run_module("phase5_integration.train_agent", "profile=smoke", f"run.root={root}", "run.name=ac", env=env,
                   timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (root / "phase5" / "ac" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/imagined_reward" in x and "train/entropy" in x for x in rows)
    meta = json.loads((root / "phase5" / "ac" / "export" / "actor_critic.json").read_text())
    assert meta["world_model"].endswith("wm") and meta["context"] == 4
    r = run_module("phase5_integration.plan", "profile=smoke", f"run.root={root}", "agent=actor_critic",
                   "game.episodes=1", "game.max_steps=5", env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "actor_critic: score" in r.stdout


def test_repeats_average_independent_imaginations(adapters):
    """A stochastic model's repeats are separate imaginations (not the shared-prefix copies of one call): with
    repeats=2 the value is the mean of two draws, which differ."""
    m = adapters["diamond"]
    seen = []

    class Spy:
        name, num_actions, context, needs_state = "spy", 4, 4, False

        def imagine(self, history, actions, generator=None):
            im = m.imagine(history, actions, generator)
            seen.append(im.frames)
            return im
    p = Planner(Spy(), PlannerConfig(method="enumerate", horizon=1, repeats=2))
    p.plan(_history16())
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


def test_action_repeat_plans_macro_actions_and_looks_further():
    """Held for 2 steps each, 2 planned actions look 4 steps ahead: from position 0 the best plan is jump (held:
    positions 2, 4) then stay (4, 4), paid at steps 2, 3 and 4; the plan comes back in agent steps."""
    cfg = PlannerConfig(method="enumerate", horizon=2, action_repeat=2)
    p = Planner(LineWorld(), cfg, seed=0)
    plan = p.plan(at(0))
    assert plan.actions == [3, 3, 0, 0]
    import itertools
    m = LineWorld()
    cands = torch.tensor([[a for a in seq for _ in range(2)] for seq in itertools.product(range(4), repeat=2)])
    im = m.imagine(at(0), cands)
    assert plan.value == pytest.approx(float(sequence_value(im.reward, im.end, 0.99, 5.0).max()))
    p.shift(2)  # one whole macro-action executed
    assert p.prev[0] == plan.actions[2]


def test_first_values_script_prints_a_value_per_first_action():
    """scripts/phase5_first_values.py (the diagnostic behind the planner stall): one row per first action."""
    import sys
    from common.config import REPO_ROOT
    r = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "phase5_first_values.py"), "model.kind=regressor",
                        "planner.horizon=2", "run.threads=1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 0", "| 1", "| 2", "| 3"]
    assert "16 sequences at the first frame of game 0" in r.stdout


def _script(name: str):
    import importlib.util
    from common.config import REPO_ROOT
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _value_agreement_module():
    return _script("phase5_value_agreement")


def test_agent_imagination_rates_from_logged_updates_and_real_episodes(tmp_path):
    """The imagined shares are means over the logged updates (lines without them, like validation, skipped); the
    real shares count steps with a positive reward and steps that end (terminated or a lost life)."""
    from common.errors import DataError
    from phase1_world_model.storage import Episode

    mod = _script("phase5_agent_imagination")
    f = tmp_path / "metrics.jsonl"
    lines = [{"step": 10 * i, "train/imagined_reward": r, "train/imagined_end": e, "train/imagined_steps": 15.0}
             for i, (r, e) in enumerate([(0.0, 0.0), (0.1, 0.02), (0.2, 0.04)])] + [{"step": 30, "val/x": 1.0}]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    im = mod.imagined_rates(f)
    assert im["updates"] == 3 and im["reward"][0] == pytest.approx(0.1) and im["end"][0] == pytest.approx(0.02)
    assert im["reward"][1] <= 0.1 <= im["reward"][2] and im["steps"][0] == 15.0
    z = lambda n: np.zeros(n, dtype=bool)  # noqa: E731
    eps = [Episode(frames=None, actions=np.zeros(4), rewards=np.array([0, 1, 0, 4.0]), terminated=z(4),
                   truncated=z(4), life_loss=np.array([0, 0, 1, 0], dtype=bool), meta={}),
           Episode(frames=None, actions=np.zeros(4), rewards=np.zeros(4), terminated=np.array([0, 0, 0, 1], dtype=bool),
                   truncated=z(4), life_loss=np.array([0, 0, 0, 1], dtype=bool), meta={})]
    assert mod.real_rates(eps) == {"reward": 2 / 8, "end": 2 / 8, "steps": 8}
    (tmp_path / "other.jsonl").write_text(json.dumps({"step": 1, "train/loss": 1.0}) + "\n")
    with pytest.raises(DataError, match="imagined_reward"):
        mod.imagined_rates(tmp_path / "other.jsonl")


def test_value_agreement_scores_a_choice_by_the_oracle():
    """The share of the oracle's gain: 1 for an oracle-optimal choice, 0 for a uniform one, ties averaged; None
    where the real game does not care."""
    agreement = _value_agreement_module().agreement
    true = np.array([0.0, 0.0, 1.0, -1.0])  # mean 0, best 1
    assert agreement(np.array([0.0, 0.0, 5.0, 0.0]), true, 0.05) == pytest.approx(
        {"share": 1.0, "optimal": 1.0, "optimal_by_chance": 0.25, "spearman": 3 / (3 ** 0.5 * 4.5 ** 0.5),
         "tied": 1})  # average ranks [2, 2, 4, 2] against [2.5, 2.5, 4, 1]
    flat = agreement(np.zeros(4), true, 0.05)  # all tied: a uniform choice
    assert flat["share"] == pytest.approx(0.0) and flat["tied"] == 4 and flat["spearman"] == 0.0
    worst = agreement(np.array([0.0, 0.0, 0.0, 1.0]), true, 0.05)
    assert worst["share"] == pytest.approx(-1.0) and worst["optimal"] == 0.0
    half = agreement(np.array([0.0, 0.0, 1.0, 0.98]), true, 0.05)  # within tolerance: a tie of the best and worst
    assert half["share"] == pytest.approx(0.0) and half["optimal"] == 0.5 and half["tied"] == 2
    assert agreement(true, true, 0)["spearman"] == pytest.approx(1.0)
    assert agreement(np.ones(4), np.ones(4), 0.05) is None


def test_value_agreement_of_the_oracle_with_itself_is_perfect(tmp_path):
    import sys
    from common.config import REPO_ROOT
    r = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "phase5_value_agreement.py"), "model.kind=emulator",
                        "planner.action_repeat=4", "run.threads=1", "--states", "2", "--out", str(tmp_path / "a.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| share | 1.000 [1.000, 1.000] |" in r.stdout and "2 informative states" in r.stdout
    rec = json.loads((tmp_path / "a.json").read_text())
    assert len(rec["states"]) == 2 and rec["summary"]["share"][0] == 1.0 and rec["summary"]["informative"] == 2


def test_summary_times_a_plan_not_a_step():
    """decision_ms is a mean over agent steps (most of them execute a stored plan); plan_s is wall-clock per plan."""
    from phase5_integration.games import summarize
    row = dict(score=1.0, lives_lost=0, game_over=True, imagined=128)
    s = summarize([{**row, "decision_ms": 100.0, "steps": 8, "plans": 2},
                   {**row, "decision_ms": 50.0, "steps": 4, "plans": 2}])
    assert s["plan_s"] == pytest.approx((0.8 + 0.2) / 4) and s["decision_ms"][0] == pytest.approx(75.0)
    assert s["imagined_per_decision"] == pytest.approx(64.0)


def test_filmstrip_puts_real_frames_above_the_imagined_ones(tmp_path, capsys):
    """A recorded game (real | 2-px bar | imagined per frame) cut into two rows: the real frames of the chosen steps
    on top, their imagined frames below, in order; steps outside the video and frames of another layout are
    refused; the command reads a GIF plan wrote and writes the PNG."""
    import imageio.v3 as iio

    from common.errors import DataError
    from phase5_integration.filmstrip import filmstrip, main

    T, H, W = 10, 4, 4
    real = np.arange(T, dtype=np.uint8)[:, None, None, None] * 10 + np.zeros((T, H, W, 3), np.uint8)
    frames = np.concatenate([real, np.full((T, H, 2, 3), 255, np.uint8), real + 1], axis=2)  # imagined = real + 1
    img = filmstrip(frames, start=2, n=3, every=3, scale=2)  # steps 2, 5, 8
    gap = 4  # common.images.join's default
    assert img.shape == (2 * 2 * H + gap, 3 * 2 * W + 2 * gap, 3)
    for col, step in enumerate((2, 5, 8)):
        x = col * (2 * W + gap)
        assert (img[: 2 * H, x: x + 2 * W] == 10 * step).all()  # real
        assert (img[2 * H + gap:, x: x + 2 * W] == 10 * step + 1).all()  # imagined
    with pytest.raises(DataError, match="not inside the video's 10 frames"):
        filmstrip(frames, start=5, n=3, every=3)
    with pytest.raises(DataError, match="is not real"):
        filmstrip(frames[:, :, 1:], start=0, n=2)
    iio.imwrite(tmp_path / "game_000.gif", frames, loop=0)
    out = main([str(tmp_path / "game_000.gif"), str(tmp_path / "strip.png"), "--start", "1", "--frames", "4",
                "--scale", "1"])
    assert iio.imread(out).shape[:2] == (2 * H + gap, 4 * W + 3 * gap)
    with pytest.raises(SystemExit):  # the entry point prints the error and exits 2
        main([str(tmp_path / "missing.mp4"), str(tmp_path / "x.png")])
    assert "no video" in capsys.readouterr().err
