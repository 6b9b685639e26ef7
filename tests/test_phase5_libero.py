"""Phase 5, testbed 2 (LIBERO): the progress target, the simulator's snapshot/restore (the oracle must not disturb
the real episode), the chooser's choice, and smoke runs of train_scorer -> choose -> evaluate on a synthetic
collection in phase 3's format (the one phase 4's tests write)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from types import SimpleNamespace

from phase5_integration.libero_choice import (ChunkChooser, ProgressScorer, UWMProposer, VLAProposer,
                                              check_proposer_fits, episode_progress, restore, snapshot)
from test_phase4 import _demo, tiny_model  # noqa: F401  (the synthetic demonstrations and the tiny UWM)

from conftest import run_module


def test_episode_progress_is_elapsed_fraction():
    ep = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3])
    want = [0, .5, 1, 0, 1, 0, 0, .25, .5, .75, 1]
    assert torch.allclose(episode_progress(ep), torch.tensor(want))


def test_rollout_targets_and_auroc():
    from phase5_integration.train_scorer import auroc
    from phase5_integration.libero_choice import rollout_targets
    assert torch.equal(rollout_targets(True, 5), torch.tensor([0, .25, .5, .75, 1]))
    assert torch.equal(rollout_targets(False, 3), torch.zeros(3))  # a failure makes no progress at any frame
    assert auroc(np.array([3., 4.]), np.array([1., 2.])) == 1.0
    assert auroc(np.array([1.]), np.array([1., 2.])) == 0.25  # one tie (half), one loss
    assert auroc(np.array([1.]), np.array([])) is None


def write_episode(folder, task: int, ep: int, frames: np.ndarray, success: bool, video: bool = True) -> None:
    """An evaluation episode in phase 3's layout: episodes/task_TT_ep_EEE.json and media/task_TT_ep_EEE.mp4."""
    from common.logger import write_video
    from phase3_vla.rollouts import episode_path, video_stem
    rec = {"task_id": task, "episode": ep, "init_state": ep, "success": success, "steps": len(frames),
           "reason": "success" if success else "timeout", "settings": {"perturb": 0.0}}
    if video:
        mp4, _ = write_video(video_stem(folder, task, ep), frames, fps=20)
        rec["video"] = str(mp4)
    path = episode_path(folder, task, ep)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_video_frames_split_views_and_resize(tmp_path):
    from phase4_uwm.data import video_frames
    frames = np.zeros((4, 32, 64, 3), np.uint8)
    frames[:, :, :32] = 200  # agent view bright, wrist dark
    write_episode(tmp_path, 9, 0, frames, True)
    v = video_frames(next((tmp_path / "media").glob("*.mp4")), 16)
    assert v.shape == (4, 2, 3, 16, 16) and v.dtype == torch.uint8
    assert abs(float(v[:, 0].float().mean()) - 200) < 8 and float(v[:, 1].float().mean()) < 8


def test_scorer_shapes_and_range():
    s = ProgressScorer(views=2, latent_channels=4, width=8)
    p = s.progress(torch.randn(5, 2, 4, 16, 16))
    assert p.shape == (5,) and bool(((p > 0) & (p < 1)).all())


class FixedScorer(ProgressScorer):
    """Scores imagined frames by their mean latent: the chooser must play the chunk with the highest score."""

    def progress(self, z):
        return z.float().flatten(1).mean(1)


def test_chooser_plays_the_best_scored_proposal_and_records_its_scores(monkeypatch):
    model = tiny_model()
    scorer = FixedScorer(2, 4, 8)
    ch = ChunkChooser(model, None, scorer, task_id=9, proposals=5, choose="world_model",
                      generator=torch.Generator().manual_seed(0))
    seen = {}
    from phase5_integration import adapters, libero_choice
    real = libero_choice.run_mode

    def spy(m, mode, obs, task, **kw):
        out = real(m, mode, obs, task, **kw)
        seen[mode] = out
        return out
    monkeypatch.setattr(libero_choice, "run_mode", spy)  # the policy mode proposes
    monkeypatch.setattr(adapters, "run_mode", spy)  # the forward mode imagines, behind the protocol
    ch.reset()
    batch = {k: torch.rand(1, 3, 32, 32) for k in libero_choice.IMAGE_KEYS}
    first = ch.select_action(batch)
    scores = seen["forward"].future[:, :, -1].flatten(1).mean(1)
    best = int(torch.argmax(scores))
    assert seen["policy"].actions.shape == (5, 4, 7)
    assert ch.decisions[0]["chosen"] == best and len(ch.decisions[0]["scores"]) == 5
    played = torch.cat([first] + [ch.select_action(batch) for _ in range(3)])
    assert torch.allclose(played, seen["policy"].actions[best])  # the whole chosen chunk, in order
    assert len(ch.decisions) == 1  # no new decision before the chunk is played out
    ch.select_action(batch)
    assert len(ch.decisions) == 2
    # the chosen chunk's imagined end is kept with the step of its decision (for the real-above-imagined video)
    assert [t for t, _ in ch.imagined] == [0, 4]
    assert torch.equal(ch.imagined[1][1], seen["forward"].future[ch.decisions[1]["chosen"], :, -1])


def test_uwm_adapter_satisfies_the_protocol():
    """UWMModel: a History of the UWM's frames (cameras along the channels) and N continuous chunks -> N imagined
    futures in latent space, batched, deterministic under a seed, equal to phase 4's forward mode called directly;
    the chunk and the frames matter, and wrong inputs are refused by name."""
    from phase5_integration.adapters import UWMModel
    from phase5_integration.planner import Planner
    from phase5_integration.config import PlannerConfig
    from phase5_integration.protocol import History, WorldModel
    model = tiny_model()
    m = UWMModel(model)
    assert isinstance(m, WorldModel) and m.num_actions == 0 and m.action_dim == 7 and m.context == 2
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 6, 32, 32), generator=g, dtype=torch.uint8)
    hist = History(frames, torch.zeros(1, 7), task=9)
    acts = torch.rand(3, 4, 7, generator=g) * 2 - 1
    im = m.imagine(hist, acts, torch.Generator().manual_seed(5))
    assert im.reward is None and im.end is None and im.frames is None
    assert im.latents.shape == (3, 2, 2, 4, 16, 16)  # (N, V, F, C, h, w)
    again = m.imagine(hist, acts, torch.Generator().manual_seed(5))
    assert torch.equal(im.latents, again.latents)
    # the observation is the UWM's (1, V, F, 3, S, S): view v of frame f is channels 3v..3v+2 of frames[f]
    obs = m.observation(hist)
    assert obs.shape == (1, 2, 2, 3, 32, 32) and torch.equal(obs[0, 1, 0], frames[0, 3:6])
    direct = run_mode_forward(model, obs, acts, 5)
    assert torch.allclose(im.latents, direct, atol=1e-6)
    moved = acts.clone()
    moved[1] = -moved[1]
    other = m.imagine(hist, moved, torch.Generator().manual_seed(5)).latents
    assert not torch.allclose(other[1], im.latents[1])  # the chunk matters
    seen = m.imagine(History(255 - frames, torch.zeros(1, 7), task=9), acts, torch.Generator().manual_seed(5)).latents
    assert not torch.allclose(seen, im.latents)  # so do the frames
    with pytest.raises(ValueError, match=r"\(N, H, 7\)"):
        m.imagine(hist, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="whole chunks of 4"):
        m.imagine(hist, torch.zeros(3, 5, 7))
    with pytest.raises(ValueError, match="History.task"):
        m.imagine(History(frames, torch.zeros(1, 7)), acts)
    with pytest.raises(ValueError, match="camera"):
        m.imagine(History(frames[:, :3], torch.zeros(1, 7), task=9), acts)
    with pytest.raises(ValueError, match="continuous"):
        Planner(m, PlannerConfig())


def run_mode_forward(model, obs, acts, seed):
    """The forward mode called directly, as phase 4 does: what the adapter must reproduce."""
    from phase4_uwm.modes import run_mode
    cond = model.condition(obs, torch.tensor([9])).expand(len(acts), -1)
    with torch.no_grad():
        return run_mode(model, "forward", None, None, cond=cond, actions=acts,
                        generator=torch.Generator().manual_seed(seed)).future


def test_chooser_history_is_the_uwm_observation_and_the_played_actions():
    """What the chooser hands the protocol at each decision: the frames it conditions on (a round trip through
    UWMModel.observation) and the action played between them, zeros before the episode's first step."""
    from phase5_integration import libero_choice
    model = tiny_model()
    ch = ChunkChooser(model, None, FixedScorer(2, 4, 8), task_id=9, proposals=2, choose="world_model",
                      generator=torch.Generator().manual_seed(0))
    seen, scores = [], ch.scores

    def spy(history, actions):
        seen.append((history, torch.stack(list(ch.history), dim=1)[None]))
        return scores(history, actions)
    ch.scores = spy
    ch.reset()
    batches = [{k: torch.rand(1, 3, 32, 32) for k in libero_choice.IMAGE_KEYS} for _ in range(5)]
    played = torch.cat([ch.select_action(b) for b in batches])  # decisions at steps 0 and 4 (chunk 4)
    assert len(seen) == 2
    for h, obs in seen:
        assert torch.equal(ch.world.observation(h), obs) and h.task == 9
    assert seen[0][0].actions.shape == (1, 7) and not seen[0][0].actions.any()  # nothing played before step 0
    assert torch.equal(seen[1][0].actions, played[3:4])  # step 3's action, between the frames of steps 3 and 4


def test_another_uwm_proposes_while_the_chooser_imagines():
    """UWMProposer: with the chooser's own UWM it reproduces the default decisions draw for draw; with another UWM
    the chunks are that UWM's policy samples and the imagining model scores them; a UWM that writes other chunks
    cannot propose."""
    from phase5_integration import libero_choice
    model, other = tiny_model(0), tiny_model(1)
    batch = {k: torch.rand(1, 3, 32, 32) for k in libero_choice.IMAGE_KEYS}

    def play(proposer_model, imagine_model, steps=8):
        g = torch.Generator().manual_seed(4)
        prop = None if proposer_model is None else UWMProposer(proposer_model, 9, generator=g)
        ch = ChunkChooser(imagine_model, None, FixedScorer(2, 4, 8), task_id=9, proposals=3, choose="world_model",
                          generator=g, proposer=prop)
        ch.reset()
        return torch.cat([ch.select_action(batch) for _ in range(steps)]), ch.decisions

    default, dec = play(None, model)
    same, dec_same = play(model, model)
    assert torch.equal(default, same) and dec == dec_same
    mixed, dec_mixed = play(other, model)
    g = torch.Generator().manual_seed(4)
    obs = libero_choice.frames_at(batch, int(model.obs_size))
    proposals = UWMProposer(other, 9, generator=g)(torch.stack([obs] * model.clip.obs_frames, 1)[None], 3)
    assert torch.allclose(mixed[:4], proposals[dec_mixed[0]["chosen"]])
    assert not torch.allclose(mixed, default)
    check_proposer_fits(other, model)
    other.clip = SimpleNamespace(chunk=model.clip.chunk + 1, obs_frames=model.clip.obs_frames)
    with pytest.raises(ValueError, match="chunk length is 5, the imagining UWM's 4"):
        check_proposer_fits(other, model)


def test_annotate_puts_the_imagined_chunk_end_below_each_real_frame():
    """Real frames of steps 0-5, decisions at steps 0 and 4: frames 0-3 show the first imagined end, 4-5 the
    second, each decoded view side by side and resized to the real frame."""
    class Tok:
        def decode(self, z):  # (..., C, h, w) -> (..., 3, h, w) in [-1, 1]
            return z[..., :3, :, :]
    ch = ChunkChooser(tiny_model(), Tok(), FixedScorer(2, 4, 8), task_id=9, proposals=2, choose="world_model")
    ch.reset()
    ch.imagined = [(0, torch.zeros(2, 4, 8, 8)), (4, torch.full((2, 4, 8, 8), 0.5))]
    real = [np.full((12, 24, 3), i, np.uint8) for i in range(6)]
    out = ch.annotate(real)
    assert len(out) == 6 and out[0].shape == (12 + 2 + 12, 24, 3)
    assert all((o[:12] == i).all() for i, o in enumerate(out))  # the real frame on top, unchanged
    assert all((o[14:] == 128).all() for o in out[:4]) and all((o[14:] == 191).all() for o in out[4:])
    ch.imagined = []
    assert ch.annotate(real) is real  # nothing imagined (first, simulator): the frames as recorded


class FakeVLA(torch.nn.Module):
    """SmolVLA's inference surface: predict_action_chunk(batch, noise) -> (B, chunk_size, A) normalised actions;
    here the noise's first 7 dims plus the state's first entry, so the test can recompute every proposal."""
    config = SimpleNamespace(chunk_size=6, max_action_dim=32)

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.batches = []

    def reset(self):
        pass

    def predict_action_chunk(self, batch, noise):
        self.batches.append(batch)
        return noise[:, :, :7] + batch["observation.state"][:, :1, None]


def test_vla_proposer_draws_k_chunks_from_the_episode_generator():
    vla = FakeVLA()
    pre = lambda b: {**b, "observation.state": b["observation.state"] * 10}  # noqa: E731  (normalise)
    post = lambda a: a * 2  # noqa: E731  (unnormalise: applied per action)
    raw = {"observation.state": torch.full((1, 8), 0.5), "observation.images.image": torch.rand(1, 3, 8, 8),
           "task": ["put the juice in the basket"]}
    prop = VLAProposer(vla, pre, post, chunk=4, generator=torch.Generator().manual_seed(3))
    a = prop(raw, 5)
    noise = torch.randn((5, 6, 32), generator=torch.Generator().manual_seed(3))
    assert a.shape == (5, 4, 7)
    assert torch.allclose(a, 2 * (noise[:, :4, :7] + 5))  # cut to the UWM's chunk, unnormalised, K noise draws
    b = vla.batches[-1]
    assert b["observation.images.image"].shape == (5, 3, 8, 8) and b["task"] == ["put the juice in the basket"] * 5
    assert raw["observation.state"][0, 0] == 0.5  # the caller's batch is not modified
    assert not torch.allclose(a[0], a[1])
    with pytest.raises(ValueError, match="fewer than the UWM"):
        VLAProposer(vla, pre, post, chunk=7)


def test_chooser_with_a_vla_proposer_plays_its_best_scored_chunk():
    model = tiny_model()
    vla = FakeVLA()
    prop = VLAProposer(vla, lambda b: b, lambda a: a, chunk=4, generator=torch.Generator().manual_seed(0))
    ch = ChunkChooser(model, None, FixedScorer(2, 4, 8), task_id=9, proposals=3, choose="world_model",
                      generator=torch.Generator().manual_seed(0), proposer=prop)
    from phase5_integration import libero_choice
    batch = {k: torch.rand(1, 3, 32, 32) for k in libero_choice.IMAGE_KEYS}
    batch["observation.state"] = torch.zeros(1, 8)
    ch.reset()
    played = torch.cat([ch.select_action(batch) for _ in range(4)])
    proposals = torch.randn((3, 6, 32), generator=torch.Generator().manual_seed(0))[:, :4, :7]
    best = ch.decisions[0]["chosen"]
    assert len(ch.decisions[0]["scores"]) == 3 and best == int(torch.tensor(ch.decisions[0]["scores"]).argmax())
    assert torch.allclose(played, proposals[best])
    with pytest.raises(ValueError, match="raw observation"):
        ch.propose(torch.rand(1, 2, 1, 3, 32, 32))


def test_chooser_refuses_missing_parts():
    model = tiny_model()
    with pytest.raises(ValueError, match="scorer"):
        ChunkChooser(model, None, None, 9, 4, "world_model")
    with pytest.raises(ValueError, match="goal"):
        ChunkChooser(model, None, None, 9, 4, "pixel_goal")
    with pytest.raises(ValueError, match="allowed"):
        ChunkChooser(model, None, None, 9, 4, "oracle")


@pytest.fixture(scope="module")
def env0():
    from phase3_vla import libero_env
    from phase3_vla.config import LiberoConfig
    env = libero_env.make_env(LiberoConfig(), 0, cameras=False)
    yield env
    env.close()


def test_simulator_snapshot_probe_restore_leaves_the_episode_unchanged(env0):
    """The oracle plays proposals from a copy of the current state; the real episode must go on exactly as if it
    had not: the same simulator states and the same observations, bit for bit."""
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (24, 7))
    acts[:, 6] = np.where(np.arange(24) < 12, -1, 1)  # open, then close the gripper (its command is stateful)
    probe = rng.uniform(-1, 1, (16, 7))
    probe[:, 6] = 1

    def episode(probe_at: int | None):
        env0.reset(init_state=0)
        states, probes = [], []
        for i, a in enumerate(acts):
            if i == probe_at:
                snap = snapshot(env0)
                for _ in range(2):  # the same probe twice from the same snapshot: the same outcome
                    for b in probe:
                        env0.step(b)
                    probes.append(env0._env.env.sim.get_state().flatten().copy())
                    restore(env0, snap)
            env0.step(a)
            states.append(env0._env.env.sim.get_state().flatten().copy())
        return np.stack(states), env0.raw_obs, probes

    plain, obs_plain, _ = episode(None)
    probed, obs_probed, probes = episode(10)
    assert np.array_equal(plain, probed)
    for k, v in obs_plain.items():
        assert np.array_equal(np.asarray(v), np.asarray(obs_probed[k])), k
    assert np.allclose(probes[0], probes[1], atol=1e-9)
    assert not np.allclose(probes[0][1:10], plain[9][1:10])  # the probe really moved the arm (qpos after time)


def test_probe_without_intermediate_renders_sees_the_same_last_frame():
    """The simulator arm renders only a chunk's last step: its observation must equal what playing every step with
    the cameras on gives, and the episode must go on unchanged after the restore."""
    from phase3_vla import libero_env
    from phase3_vla.config import LiberoConfig
    from phase5_integration.libero_choice import probe
    env = libero_env.make_env(LiberoConfig(image_size=64), 0, cameras=True)
    try:
        rng = np.random.default_rng(1)
        acts = rng.uniform(-1, 1, (6, 7))
        env.reset(init_state=0)
        env.step(acts[0])
        snap = snapshot(env)
        success, fast = probe(env, acts[1:])
        restore(env, snap)
        for a in acts[1:]:
            full = env.step(a)[0]
        assert not success
        for cam in full["pixels"]:
            assert np.array_equal(fast["pixels"][cam], full["pixels"][cam]), cam
        assert np.array_equal(fast["robot_state"]["eef"]["pos"], full["robot_state"]["eef"]["pos"])
    finally:
        env.close()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    from phase3_vla.dataset import write_lerobot_dataset
    root = tmp_path_factory.mktemp("p5demos")
    sets = {"base": [(0, 1, 20), (1, 3, 22)], "base_val": [(1, 4, 16)], "new": [(9, 5, 20), (9, 6, 19)],
            "new_val": [(9, 7, 15), (9, 8, 14)]}
    for split, specs in sets.items():
        write_lerobot_dataset(root / "lerobot" / split, f"local/p5_{split}", [_demo(*s) for s in specs], fps=20,
                              threads=1)
    return root


def test_smoke_scorer_choose_and_table(collection, tmp_path, capsys):
    root = tmp_path
    common = [f"run.root={root}", f"data.folder={collection}"]
    r = run_module("phase4_uwm.train_tokenizer", "profile=smoke", *common, "run.name=tok", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_module("phase4_uwm.train", "profile=smoke", *common, "data.split=new", "train.max_steps=2", "val_every=0",
                   "run.name=uwm", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_module("phase5_integration.train_scorer", "profile=smoke", *common, "run.name=scorer", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((root / "phase5" / "scorer" / "export" / "progress_scorer.json").read_text())
    assert meta["tasks"] == [9] and meta["val"]["frames"] == 29 and meta["val"]["episodes"] == 2
    assert -1 <= meta["val"]["spearman"] <= 1
    # every arm in-process (one import of LIBERO and torch for all); the command line is the same main()
    from phase5_integration import choose
    arms = ("first", "world_model", "pixel_goal", "simulator")
    name = lambda c: c if c == "first" else f"{c}-k2"  # noqa: E731
    for arm in arms:
        s = choose.main(["profile=smoke", *common, f"choose={arm}", "eval.libero.image_size=64", "eval.videos=0",
                         "eval.progress=false"])
        assert s["total"]["episodes"] == 1 and s["decisions"] >= 1 and s["played_now"] == 1, arm
        rec = json.loads(next((root / "phase5" / "LIBERO" / name(arm) / "episodes").glob("*.json")).read_text())
        assert all(len(d["scores"]) == (1 if arm == "first" else 2) for d in rec["decisions"]), arm
        assert rec["settings"]["choose"] == arm
        assert (s["score_spread"] is None) == (arm == "first") and (s["failed_final_score"] is None) == (arm == "first")
    # a second run of an arm reuses its episode (resumable); a changed setting is played anew, not mixed in
    assert choose.main(["profile=smoke", *common, "choose=world_model", "eval.libero.image_size=64",
                        "eval.videos=0", "eval.progress=false"])["played_now"] == 0
    s = choose.main(["profile=smoke", *common, "choose=world_model", "eval.libero.image_size=64", "eval.videos=0",
                     "eval.progress=false", "denoise_steps=2"])
    assert s["played_now"] == 1 and s["total"]["episodes"] == 1
    # phase 3's released SmolVLA proposes (its cameras are 128 px); a wrong camera size is refused by name
    s = choose.main(["profile=smoke", *common, "proposer=vla", "choose=world_model", "eval.libero.image_size=128",
                     "eval.videos=0", "eval.progress=false"])
    rec = json.loads(next((root / "phase5" / "LIBERO" / "vla-world_model-k2" / "episodes").glob("*.json")).read_text())
    assert s["played_now"] == 1 and rec["settings"]["proposer"] == "vla" and len(rec["decisions"][0]["scores"]) == 2
    # another UWM proposes while this one imagines (here the same run: the settings record its weights)
    s = choose.main(["profile=smoke", *common, f"proposer_uwm={root / 'phase4' / 'uwm'}", "choose=world_model",
                     "eval.libero.image_size=64", "eval.videos=0", "eval.progress=false"])
    rec = json.loads(next((root / "phase5" / "LIBERO" / "uwmp-world_model-k2" / "episodes").glob("*.json")).read_text())
    assert s["played_now"] == 1 and len(rec["settings"]["proposer_uwm"]) == 16 and "proposes, UWM" in s["describe"]
    with pytest.raises(SystemExit) as bad_size:
        choose.main(["profile=smoke", *common, "proposer=vla", "eval.libero.image_size=64", "eval.progress=false"])
    assert bad_size.value.code == 2 and "render at that size" in capsys.readouterr().err
    r = run_module("phase5_integration.evaluate", f"run.root={root}", "testbed=libero", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for arm in arms:
        assert f"| {name(arm)} | UWM |" in r.stdout
    assert "| vla-world_model-k2 | SmolVLA | world_model | scorer | 2 |" in r.stdout
    # played episodes join the scorer's data (failures targeted 0); their starts are then refused as evaluation
    # states; an episode without its video is refused by name
    played = root / "played"
    rng = np.random.default_rng(0)
    for ep in range(5):
        write_episode(played, 9, ep, rng.integers(0, 255, (6 + ep, 32, 64, 3), dtype=np.uint8), success=ep == 1)
    r = run_module("phase5_integration.train_scorer", "profile=smoke", *common, "run.name=scorer2",
                   f"rollouts=[{played}]", f"compare={root}/phase5/scorer", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((root / "phase5" / "scorer2" / "export" / "progress_scorer.json").read_text())
    ro = meta["rollouts"]
    assert ro["train_episodes"] == 4 and ro["train_failures"] == 3  # episodes 0, 2, 3 failed; 4 is held out
    assert ro["val"]["episodes"] == 1 and ro["val"]["failures"] == 1 and 0 <= ro["val"]["auroc_last_frame"] <= 1
    assert sum(st["kind"] == "fixed" for st in meta["train_starts"]) == 5
    cmp = meta["compared"]  # the demonstrations-only scorer on the same held-out data
    assert cmp["run"].endswith("scorer") and cmp["rollouts_val"]["episodes"] == 1 and cmp["val"]["frames"] == 29
    r = run_module("phase5_integration.choose", "profile=smoke", *common, f"scorer={root}/phase5/scorer2",
                   "eval.libero.image_size=64", timeout=300)
    assert r.returncode == 2 and "training start" in r.stderr and "task 9 state 0" in r.stderr, r.stderr[-2000:]
    write_episode(played, 9, 5, np.zeros((3, 32, 64, 3), np.uint8), success=False, video=False)
    r = run_module("phase5_integration.train_scorer", "profile=smoke", *common, "run.name=scorer3",
                   f"rollouts=[{played}]", timeout=300)
    assert r.returncode != 0 and "task_09_ep_005.json" in r.stderr and "eval.videos=-1" in r.stderr
    # the refusals: the scorer must share the UWM's tokenizer; the chooser plays whole chunks
    r = run_module("phase5_integration.choose", "profile=smoke", *common, "eval.n_action_steps=2", timeout=300)
    assert r.returncode == 2 and "whole chunks" in r.stderr
    import shutil
    bad = root / "phase5" / "scorer-other-tokenizer"
    shutil.copytree(root / "phase5" / "scorer", bad)
    marker = bad / "export" / "progress_scorer.json"
    m = json.loads(marker.read_text())
    m["tokenizer"]["scale"] *= 2
    marker.write_text(json.dumps(m))
    r = run_module("phase5_integration.choose", "profile=smoke", *common, f"scorer={bad}", timeout=300)
    assert r.returncode == 2 and "retrain the scorer" in r.stderr, r.stderr[-2000:]


def test_libero_table_compares_each_chooser_with_its_own_proposer_and_scorer():
    from phase5_integration.evaluate import libero_table

    def arm(name, succ, choose, k=8, proposer=None, scorer=None):
        st = {"choose": choose, "proposals": 1 if choose == "first" else k}
        if proposer:
            st["proposer"] = proposer
        if scorer:
            st["scorer"] = scorer
        return {"arm": name, "settings": st, "tasks": [{"mean_steps": 100, "episodes": 20}],
                "total": {"successes": succ, "episodes": 20, "rate": succ / 20, "ci95": [0, 1]}}
    arms = [arm("first", 2, "first"), arm("world_model-k8", 4, "world_model", scorer="A"),
            arm("simulator-k8", 12, "simulator", scorer="A"), arm("world_model-k8-b", 4, "world_model", scorer="B"),
            arm("simulator-k8-b", 6, "simulator", scorer="B"), arm("pixel_goal-k8", 3, "pixel_goal"),
            arm("vla-first", 10, "first", proposer="vla"),
            arm("vla-world_model-k8", 12, "world_model", proposer="vla", scorer="A"),
            arm("vla-simulator-k8", 10, "simulator", proposer="vla", scorer="A")]
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[10] for line in libero_table(arms).splitlines()[2:]}
    assert rows["world_model-k8"] == "0.20"  # (4 - 2) / (12 - 2): the simulator with the same scorer
    assert rows["world_model-k8-b"] == "0.50"  # (4 - 2) / (6 - 2)
    assert rows["pixel_goal-k8"] == "0.10"  # no scorer of its own: the first simulator arm at its K
    assert rows["vla-world_model-k8"] == "no gain to share"  # the SmolVLA's simulator did not beat the SmolVLA
    assert rows["first"] == "" and rows["simulator-k8"] == ""


def test_k_figure_needs_two_values_of_k_on_one_line(tmp_path):
    from phase5_integration.evaluate import k_figure

    def arm(choose, k, succ, proposer="vla", scorer="A"):
        st = {"choose": choose, "proposals": k, "proposer": proposer}
        if choose != "first":
            st["scorer"] = scorer
        return {"arm": f"{choose}-k{k}" + ("-b" if scorer == "B" else ""), "settings": st, "scorer_name": scorer,
                "total": {"successes": succ, "episodes": 20, "rate": succ / 20, "ci95": [0.1, 0.9]}}
    one_k = [arm("first", 1, 10), arm("world_model", 8, 12), arm("world_model", 4, 12, scorer="B")]
    assert k_figure(one_k, tmp_path / "a.png") is None  # a line per scorer: each has one K
    out = k_figure(one_k + [arm("world_model", 4, 11)], tmp_path / "b.png")
    assert out is not None and out.read_bytes()[:4] == b"\x89PNG"


def test_arm_names():
    from phase5_integration.config import ChooseConfig
    assert ChooseConfig(choose="first").arm_name() == "first"
    assert ChooseConfig(choose="world_model", proposals=4).arm_name() == "world_model-k4"
    assert ChooseConfig(choose="simulator", proposer="vla", tag="rscorer").arm_name() == "vla-simulator-k8-rscorer"
    assert ChooseConfig(choose="simulator", name="mine", tag="x").arm_name() == "mine"
    assert ChooseConfig(choose="world_model", proposer_uwm="a", tag="t").arm_name() == "uwmp-world_model-k8-t"
    with pytest.raises(ValueError, match="proposer_uwm"):
        ChooseConfig(proposer="vla", proposer_uwm="a").check()
