"""Phase 4 (UWM): the architecture's guarantees, the modes' dependencies, the clip arithmetic, and smoke runs of the
entry points on a small synthetic collection written in phase 3's format (LeRobotDataset v3 with meta/starts.json).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.stepwise import StepRNG
from phase4_uwm.config import ClipConfig, TokenizerConfig, UWMConfig
from phase4_uwm.data import ActionStats, Clips, Demos, clip_indices
from phase4_uwm.model import UWM, DiTBlock
from phase4_uwm.modes import run_mode, trailing_timesteps
from phase4_uwm.tokenizer import Tokenizer, patchify, unpatchify

from conftest import run_module

CPU = torch.device("cpu")
TOK = TokenizerConfig(image_size=32, block_channels=[8, 16], latent_channels=4, norm_groups=4)  # 16x16 latents
CLIP = ClipConfig(obs_frames=2, chunk=4, future_frames=2)
TINY = UWMConfig(width=32, depth=2, heads=2, registers=3, patch=4, action_hidden=32, obs_channels=[8, 16], obs_dim=16,
                 sample_steps=4)


def tiny_model(seed: int = 0, scramble: bool = True) -> UWM:
    """A tiny UWM; `scramble` gives every zero-initialised layer random weights, so that the tests can see how
    outputs depend on inputs (at initialisation every output is exactly 0)."""
    torch.manual_seed(seed)
    m = UWM(TINY, CLIP, TOK, action_dim=7).eval()
    if scramble:
        with torch.no_grad():
            for blk in m.blocks:
                blk.ada[1].weight.normal_(0, 0.2)
            for head in (m.action_final, m.video_final):
                head.ada[1].weight.normal_(0, 0.2)
                head.linear.weight.normal_(0, 0.2)
            m.action_out[1].weight.normal_(0, 0.2)
    return m


def batch_of(B: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randint(0, 256, (B, 2, 2, 3, 32, 32), generator=g, dtype=torch.uint8),
            "action": torch.rand(B, 4, 7, generator=g) * 2 - 1, "action_is_pad": torch.zeros(B, 4, dtype=torch.bool),
            "task": torch.arange(B) % 10, "has_action": torch.ones(B, dtype=torch.bool),
            "future": torch.randn(B, 2, 2, 4, 16, 16, generator=g)}


def rng_for(B: int, step: int = 0) -> StepRNG:
    return StepRNG(0, step, 0, B, B, CPU)


# ----------------------------------------------------------------------------- architecture
def test_adaln_zero_blocks_are_identity_at_init():
    blk = DiTBlock(32, 2, 4.0)
    x, c = torch.randn(2, 7, 32), torch.randn(2, 32)
    assert torch.equal(blk(x, c), x)


def test_initial_model_predicts_zero_noise():
    m = tiny_model(scramble=False)
    b = batch_of()
    ea, ev = m.denoise(b["action"], b["future"], torch.zeros(3), torch.zeros(3), m.condition(b["obs"], b["task"]))
    assert ea.abs().max() == 0 and ev.abs().max() == 0


def test_registers_never_reach_the_outputs_directly():
    """Outputs are read from the action and video tokens only: with attention unable to move information between
    tokens (value projections zeroed), changing the registers changes nothing."""
    m = tiny_model()
    b = batch_of()
    with torch.no_grad():
        for blk in m.blocks:
            blk.attn.in_proj_weight[2 * m.cfg.width:].zero_()
            blk.attn.in_proj_bias.zero_()
    cond = m.condition(b["obs"], b["task"])
    t = torch.full((3,), 50.0)
    out1 = m.denoise(b["action"], b["future"], t, t, cond)
    with torch.no_grad():
        m.registers.normal_(0, 5.0)
    out2 = m.denoise(b["action"], b["future"], t, t, cond)
    assert all(torch.equal(p, q) for p, q in zip(out1, out2))
    # ...while with attention on, registers do take part (they are not dead weights)
    m2 = tiny_model()
    cond = m2.condition(b["obs"], b["task"])
    o1 = m2.denoise(b["action"], b["future"], t, t, cond)
    with torch.no_grad():
        m2.registers.normal_(0, 5.0)
    o2 = m2.denoise(b["action"], b["future"], t, t, cond)
    assert not torch.allclose(o1[0], o2[0])


def test_both_timesteps_change_the_output():
    m = tiny_model()
    b = batch_of()
    cond = m.condition(b["obs"], b["task"])
    base = m.denoise(b["action"], b["future"], torch.full((3,), 10.0), torch.full((3,), 10.0), cond)
    ta = m.denoise(b["action"], b["future"], torch.full((3,), 80.0), torch.full((3,), 10.0), cond)
    tv = m.denoise(b["action"], b["future"], torch.full((3,), 10.0), torch.full((3,), 80.0), cond)
    for other in (ta, tv):
        assert not torch.allclose(base[0], other[0]) and not torch.allclose(base[1], other[1])


def test_timesteps_are_drawn_independently_and_uniformly():
    m = tiny_model()
    B = 4000
    t_a, t_v = m.draw_levels(rng_for(B), torch.ones(B, dtype=torch.bool))
    T = m.schedule.T
    assert t_a.min() >= 0 and t_a.max() == T - 1 and t_v.max() == T - 1
    corr = np.corrcoef(t_a.numpy(), t_v.numpy())[0, 1]
    assert abs(corr) < 0.06  # independent draws: |r| ~ 1/sqrt(4000) = 0.016
    counts = torch.bincount(t_a, minlength=T).float()
    assert counts.std() / counts.mean() < 0.35  # uniform: ~40 per level, Poisson spread 0.16
    t_a2, _ = m.draw_levels(rng_for(B), torch.zeros(B, dtype=torch.bool))
    assert (t_a2 == T - 1).all()  # action-free samples: actions at full noise


def test_both_losses_fall_when_fitting_one_batch():
    """The roadmap asks that both losses learn. Fit one batch for 60 Adam steps at random levels, and score the loss
    before and after at the same fixed levels and noise (rng_for(B, step=999)): the action loss must fall by a third, the video loss (random latents, slower to fit) by a tenth."""
    m = tiny_model(scramble=False).train()
    b = batch_of(B=8, seed=1)
    probe = rng_for(8, step=999)

    def scored() -> tuple[float, float]:
        with torch.no_grad():
            _, logs = m(b, probe)
        return float(logs["loss/action"]), float(logs["loss/video"])

    a0, v0 = scored()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for step in range(60):
        loss, _ = m(b, rng_for(8, step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    a1, v1 = scored()
    assert a1 < 0.67 * a0 and v1 < 0.9 * v0, (a0, a1, v0, v1)  # measured: 0.92 -> 0.30 and 1.00 -> 0.81


def test_video_only_samples_have_no_action_loss():
    m = tiny_model()
    b = batch_of(4)
    b["has_action"] = torch.zeros(4, dtype=torch.bool)
    loss, logs = m(b, rng_for(4))
    assert float(logs["loss/action"]) == 0.0 and float(logs["loss/video"]) > 0
    # their (absent) actions do not change the loss at all
    b2 = dict(b, action=torch.rand(4, 4, 7) * 2 - 1)
    loss2, _ = m(b2, rng_for(4))
    assert torch.equal(loss, loss2)


def test_samples_not_imitated_have_no_action_loss_but_their_actions_condition_the_video():
    """Played failures (imitate = False) teach dynamics only: no action loss, yet the video loss still depends on
    their actions (unlike action-free samples, whose actions are replaced by noise)."""
    m = tiny_model()
    b = batch_of(4)
    b["imitate"] = torch.tensor([False, False, True, True])
    _, logs = m(b, rng_for(4))
    b_all = dict(b, imitate=torch.ones(4, dtype=torch.bool))
    _, logs_all = m(b_all, rng_for(4))
    assert 0 < float(logs["loss/action"]) and float(logs["loss/action"]) != float(logs_all["loss/action"])
    b_none = dict(b, imitate=torch.zeros(4, dtype=torch.bool))
    _, logs_none = m(b_none, rng_for(4))
    assert float(logs_none["loss/action"]) == 0.0
    other = dict(b_none, action=torch.rand(4, 4, 7) * 2 - 1)
    _, logs_other = m(other, rng_for(4))
    assert float(logs_other["loss/video"]) != float(logs_none["loss/video"])


def test_padded_action_steps_are_masked_from_the_loss():
    """Errors at padded steps (past the episode's end) do not count: a prediction made terrible there changes
    nothing, and the loss is the mean over the real steps only."""
    m = tiny_model()
    b = batch_of(2)
    b["action_is_pad"][:, 2:] = True
    _, logs = m(b, rng_for(2))
    denoise = m.denoise

    def spoiled(*args):
        ea, ev = denoise(*args)
        return torch.cat([ea[:, :2], ea[:, 2:] + 100.0], dim=1), ev
    m.denoise = spoiled
    _, logs2 = m(b, rng_for(2))
    assert float(logs["loss/action"]) == pytest.approx(float(logs2["loss/action"]), rel=1e-6)
    b["action_is_pad"][:] = False
    _, logs3 = m(b, rng_for(2))
    assert float(logs3["loss/action"]) > 1000  # unmasked, the spoiled steps dominate


def test_objectives_train_one_mode_in_its_own_condition():
    """policy: action loss only, with the video input pure noise at T-1 (policy mode's condition); dynamics: video loss
    only, with the actions given clean at level 0 (forward mode's); joint: both losses on independent levels."""
    b = batch_of(3)
    seen = {}
    for obj in ("joint", "policy", "dynamics"):
        m = tiny_model()
        m.objective = obj
        denoise = m.denoise

        def spy(x_a, x_v, t_a, t_v, cond, _obj=obj, _d=denoise):
            seen[_obj] = (x_a.clone(), x_v.clone(), t_a.clone(), t_v.clone())
            return _d(x_a, x_v, t_a, t_v, cond)
        m.denoise = spy
        loss, logs = m(b, rng_for(3))
        if obj == "policy":
            assert float(loss.detach()) == pytest.approx(float(logs["loss/action"]), rel=1e-6)
        if obj == "dynamics":
            assert float(loss.detach()) == pytest.approx(float(logs["loss/video"]), rel=1e-6)
        if obj == "joint":
            assert float(loss.detach()) == pytest.approx(float(logs["loss/action"] + logs["loss/video"]), rel=1e-6)
    T = 100
    xa, xv, ta, tv = seen["policy"]
    assert (tv == T - 1).all() and torch.allclose(xv.std(), torch.tensor(1.0), atol=0.1)
    m = tiny_model()
    m.objective = "policy"
    m.denoise = lambda x_a, x_v, t_a, t_v, cond: (seen.__setitem__("again", x_v.clone()), (x_a * 0, x_v * 0))[1]
    m(dict(b, future=b["future"] + 10.0), rng_for(3))
    assert torch.equal(seen["again"], xv)  # pure noise: the future's latents do not enter
    xa, xv, ta, tv = seen["dynamics"]
    assert (ta == 0).all() and torch.equal(xa, b["action"])
    xa, xv, ta, tv = seen["joint"]
    assert len(set(ta.tolist()) | set(tv.tolist())) > 1 and not torch.equal(xa, b["action"])


def test_evaluation_scores_only_the_modes_an_objective_trained():
    """A one-loss ablation is scored on its own modes only (policy-only never saw a clean future, dynamics-only never
    saw noisy actions); the joint model on every mode the evaluation knows."""
    from phase4_uwm.config import OfflineConfig
    from phase4_uwm.evaluate import TRAINED_MODES
    assert set(TRAINED_MODES) == {"joint", "policy", "dynamics"}
    with pytest.raises(Exception, match="modes"):
        OfflineConfig(modes=["imagined"]).check()
    for mode in TRAINED_MODES["joint"]:
        OfflineConfig(modes=[mode]).check()  # every mode the joint model is scored on is one the evaluation knows
    assert TRAINED_MODES["policy"] == ("policy",) and set(TRAINED_MODES["dynamics"]) == {"forward", "forward_other"}


def test_patchify_round_trip_and_token_layout():
    z = torch.randn(2, 2, 2, 4, 16, 16)
    tok = patchify(z, 4)
    assert tok.shape == (2, 2 * 4 * 4, 2 * 4 * 4 * 4)
    assert torch.equal(unpatchify(tok, 2, 2, 4, 16, 16, 4), z)
    # token 0 is view 0, patch (0, 0): both frames, all channels of the top-left 4x4 block
    assert torch.equal(tok[0, 0].reshape(2, 4, 4, 4), z[0, 0, :, :, :4, :4])
    assert torch.equal(tok[0, 16].reshape(2, 4, 4, 4), z[0, 1, :, :, :4, :4])  # view 1 starts at token 16


def test_trailing_and_leading_timesteps():
    from phase4_uwm.modes import leading_timesteps
    assert trailing_timesteps(100, 10) == [99, 89, 79, 69, 59, 49, 39, 29, 19, 9]
    assert trailing_timesteps(100, 100) == list(range(99, -1, -1))
    assert leading_timesteps(100, 10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]  # diffusers' DDIM, steps_offset 0
    assert leading_timesteps(100, 100) == list(range(99, -1, -1))


def test_clipping_the_clean_estimate_bounds_the_first_step():
    """At t = T-1 (sqrt(abar) = 5e-4) an eps error of 0.01 is an x0 error of 20; clipping keeps x0 in range, as the
    authors' DDIMScheduler(clip_sample=True) does, and changes nothing when the estimate is already in range."""
    from phase4_uwm.modes import _ddim
    m = tiny_model()
    x0 = torch.rand(5, 4, 7) * 2 - 1
    noise = torch.randn(5, 4, 7)
    T = m.schedule.T
    x = m.schedule.q_sample(x0, torch.full((5,), T - 1), noise)
    wrong = noise + 0.01
    free, clipped = _ddim(m, x, wrong, T - 1, None), _ddim(m, x, wrong, T - 1, None, clip=1.0)
    assert free.abs().max() > 10 and clipped.abs().max() <= 1.0
    abar = m.schedule.abar[T - 1].float()
    exact = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
    assert torch.allclose(_ddim(m, x, exact, T - 1, None, clip=1.0), x0, atol=1e-3)


def test_ddim_step_is_exact_for_a_perfect_denoiser():
    """With the true eps of a known x0, the DDIM chain lands on x0 (any number of steps)."""
    m = tiny_model()
    x0 = torch.randn(5, 4, 7).clamp(-1, 1)
    noise = torch.randn(5, 4, 7)
    from phase4_uwm.modes import _ddim
    ts = trailing_timesteps(100, 4)
    x = m.schedule.q_sample(x0, torch.full((5,), ts[0]), noise)
    for i, t in enumerate(ts):
        abar = m.schedule.abar[t].float()
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        x = _ddim(m, x, eps, t, ts[i + 1] if i + 1 < len(ts) else None)
    assert torch.allclose(x, x0, atol=1e-5)


# ----------------------------------------------------------------------------- modes
def test_every_mode_has_the_right_shapes_and_batches():
    m = tiny_model()
    b = batch_of(3)
    acts = torch.rand(3, 4, 7)
    for mode in ("policy", "forward", "inverse", "video", "joint"):
        out = run_mode(m, mode, b["obs"], b["task"], actions=acts, future=b["future"],
                       generator=torch.Generator().manual_seed(0))
        assert out.actions.shape == (3, 4, 7) and out.future.shape == (3, 2, 2, 4, 16, 16)
        assert torch.isfinite(out.actions).all() and torch.isfinite(out.future).all()
    # batched = one by one (same noise per sample would need per-sample generators; compare the deterministic
    # parts: forward mode from the same initial noise gives the same future for a sample in a batch of 1 or 3)
    with pytest.raises(ValueError, match="needs the actions"):
        run_mode(m, "forward", b["obs"], b["task"])
    with pytest.raises(ValueError, match="allowed values"):
        run_mode(m, "dream", b["obs"], b["task"])


def test_policy_ignores_the_real_future_and_inverse_uses_it():
    m = tiny_model()
    b = batch_of(3)
    other = torch.randn_like(b["future"])
    g = lambda: torch.Generator().manual_seed(7)
    p1 = run_mode(m, "policy", b["obs"], b["task"], future=b["future"], generator=g()).actions
    p2 = run_mode(m, "policy", b["obs"], b["task"], future=other, generator=g()).actions
    assert torch.equal(p1, p2)
    i1 = run_mode(m, "inverse", b["obs"], b["task"], future=b["future"], generator=g()).actions
    i2 = run_mode(m, "inverse", b["obs"], b["task"], future=other, generator=g()).actions
    assert not torch.allclose(i1, i2)


def test_forward_dynamics_depends_on_the_actions_and_video_prediction_does_not():
    m = tiny_model()
    b = batch_of(3)
    g = lambda: torch.Generator().manual_seed(7)
    a1, a2 = torch.rand(3, 4, 7), torch.rand(3, 4, 7)
    f1 = run_mode(m, "forward", b["obs"], b["task"], actions=a1, generator=g()).future
    f2 = run_mode(m, "forward", b["obs"], b["task"], actions=a2, generator=g()).future
    assert not torch.allclose(f1, f2)
    v1 = run_mode(m, "video", b["obs"], b["task"], actions=a1, generator=g()).future
    v2 = run_mode(m, "video", b["obs"], b["task"], actions=a2, generator=g()).future
    assert torch.equal(v1, v2)


def test_action_normalisation_round_trip():
    m = tiny_model()
    m.set_action_stats([-2.0] * 6 + [0.5], [3.0] * 6 + [0.5])  # last dimension constant
    a = torch.tensor([[-2.0] * 6 + [0.5], [3.0] * 6 + [0.5], [0.5] * 7])
    n = m.normalize_actions(a)
    assert n[0, :6].eq(-1).all() and n[1, :6].eq(1).all() and n[:, 6].eq(-1).all()
    assert torch.allclose(m.unnormalize_actions(n), a)
    s = ActionStats([-2.0] * 6 + [0.5], [3.0] * 6 + [0.5])
    assert torch.allclose(s.normalize(a), n)


def test_uwm_policy_plays_chunks_open_loop_from_a_frame_history(monkeypatch):
    from phase4_uwm import policy as pol
    m = tiny_model()
    calls = []
    real = pol.run_mode

    def spy(model, mode, obs, task, **kw):
        calls.append((mode, obs.clone(), task.clone()))
        return real(model, mode, obs, task, **kw)
    monkeypatch.setattr(pol, "run_mode", spy)
    p = pol.UWMPolicy(m, task_id=9, n_action_steps=3, generator=torch.Generator().manual_seed(0))
    frames = [{k: torch.rand(1, 3, 64, 64) for k in pol.IMAGE_KEYS} for _ in range(7)]
    p.reset()
    acts = [p.select_action(f) for f in frames]
    assert all(a.shape == (1, 7) for a in acts)
    assert len(calls) == 3  # steps 0, 3, 6: a new chunk when the queue of 3 runs out
    mode, obs, task = calls[0]
    assert mode == "policy" and task.tolist() == [9] and obs.shape == (1, 2, 2, 3, 32, 32)
    assert torch.equal(obs[0, :, 0], obs[0, :, 1])  # the first frame repeated at an episode's start
    assert not torch.equal(calls[1][1][0, :, 0], calls[1][1][0, :, 1])  # later: frames t-1 and t
    p.reset()
    assert not p._queues["action"] and not p.history
    with pytest.raises(ValueError, match="n_action_steps"):
        pol.UWMPolicy(m, task_id=0, n_action_steps=5)


# ----------------------------------------------------------------------------- clips
def test_clip_indices_clamp_at_episode_edges():
    episode = torch.tensor([0] * 5 + [1] * 3)
    ix = clip_indices(episode, ClipConfig(obs_frames=2, chunk=3, future_frames=2))
    # frame 0: obs clamped to the start [0, 0]; actions 0,1,2; future frames 2, 3
    assert ix["obs"][0].tolist() == [0, 0] and ix["action"][0].tolist() == [0, 1, 2]
    assert ix["future"][0].tolist() == [2, 3] and not ix["action_is_pad"][0].any()
    # frame 3 (episode 0 ends at 4): actions 3, 4, pad; future 5 -> 4 clamped: [4, 4]
    assert ix["action"][3].tolist() == [3, 4, 4] and ix["action_is_pad"][3].tolist() == [False, False, True]
    assert ix["future"][3].tolist() == [4, 4]
    # frame 5 = first of episode 1: never reaches back into episode 0
    assert ix["obs"][5].tolist() == [5, 5] and ix["future"][5].tolist() == [7, 7]
    assert ix["action_is_pad"][5].tolist() == [False, False, False] and ix["action"][6].tolist() == [6, 7, 7]
    # Diffusion Policy's chunk starts one step earlier: at an episode's start that step is padded with a_0
    dp = clip_indices(episode, ClipConfig(obs_frames=2, chunk=3, future_frames=2), action_offset=-1)
    assert dp["action"][5].tolist() == [5, 5, 6] and dp["action_is_pad"][5].tolist() == [True, False, False]
    assert dp["action"][1].tolist() == [0, 1, 2] and not dp["action_is_pad"][1].any()


def test_clips_items():
    N = 6
    demos = Demos(torch.randint(0, 256, (N, 2, 3, 8, 8), dtype=torch.uint8), torch.randn(N, 7), torch.randn(N, 8),
                  torch.zeros(N, dtype=torch.long), torch.full((N,), 9), {9: "x"}, {})
    lat = torch.randn(N, 2, 4, 2, 2)
    c = Clips(demos, ClipConfig(obs_frames=2, chunk=3, future_frames=2), ActionStats.of(demos.actions), lat,
              video_only_fraction=0.5)
    it = c[1]
    assert it["obs"].shape == (2, 2, 3, 8, 8) and torch.equal(it["obs"][:, 1], demos.frames[1])
    assert torch.equal(it["obs"][:, 0], demos.frames[0])
    assert torch.equal(it["future"][:, 1], lat[4]) and torch.equal(it["future"][:, 0], lat[3])
    assert it["task"] == 9 and 0 < int(c.has_action.sum()) < N


def test_diamond_clips_and_rollout_align_frames_and_actions():
    """Phase 1's layout on LIBERO: frames t-K+1..t with actions a_{t-K+1..t} predict t+1; the rollout feeds a_{t+j}
    as the window's last action at step j and its own frames back."""
    from types import SimpleNamespace

    from phase4_uwm.diamond import DiamondClips, rollout
    N = 8
    frames = torch.arange(N, dtype=torch.uint8)[:, None, None, None, None].expand(N, 2, 3, 4, 4).clone()
    actions = torch.arange(N, dtype=torch.float32)[:, None].expand(N, 7).clone()
    demos = Demos(frames, actions, torch.zeros(N, 8), torch.tensor([0] * 5 + [1] * 3), torch.zeros(N, dtype=torch.long),
                  {0: "x"}, {})
    stats = ActionStats([0.0] * 7, [7.0] * 7)
    d = DiamondClips(demos, 2, stats)
    assert len(d) == 6  # t = 0..3 and 5..6: the last frame of each episode has no next frame
    it = d[0]
    assert it["obs"].shape == (2, 6, 4, 4) and it["mask"].tolist() == [False, True]
    assert int(it["next_obs"][0, 0, 0]) == 1 and int(d[4]["next_obs"][0, 0, 0]) == 6  # row 4 is t = 5
    seen = []

    def next_frame(fr, act, mask, generator=None, steps=None):
        seen.append((stats.unnormalize(act[:, -1, 0]).round().tolist(), mask.tolist()))
        return fr[:, -1] + 2 / 127.5  # "one grey level brighter (x2) than the last frame"
    model = SimpleNamespace(cfg=SimpleNamespace(context=2), next_frame=next_frame,
                            parameters=lambda: iter([torch.zeros(1)]))
    out = rollout(model, demos, [1], stats, horizon=5)
    assert out.shape == (1, 5, 6, 4, 4)
    assert [a[0] for a, _ in seen] == [1, 2, 3, 4, 4]  # a_1 .. a_4, then clamped at the episode's last action
    assert seen[0][1] == [[True, True]] and out[0, :, 0, 0, 0].tolist() == [3, 5, 7, 9, 11]


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_shapes_and_calibration():
    torch.manual_seed(0)
    tok = Tokenizer(TOK).eval()
    frames = torch.randint(0, 256, (5, 2, 3, 32, 32), dtype=torch.uint8)
    z = tok.encode(frames)
    assert z.shape == (5, 2, 4, 16, 16)
    assert tok.decode(z).shape == (5, 2, 3, 32, 32)
    tok.calibrate(frames.flatten(0, 1))
    assert float(tok.encode(frames).std()) == pytest.approx(1.0, rel=1e-4)
    loss, logs = Tokenizer(TOK)({"frames": frames[:, 0]}, rng_for(5))
    assert torch.isfinite(loss) and {"l1", "mse", "kl", "psnr"} <= set(logs)


def test_pixel_tokenizer_is_the_frames():
    tok = Tokenizer(TokenizerConfig(kind="pixel", image_size=16))
    f = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(tok.encode(f), f.float() / 127.5 - 1)
    assert torch.allclose(tok.decode(tok.encode(f)), f.float() / 127.5 - 1)


# ----------------------------------------------------------------------------- entry points
def _demo(task: int, seed: int, T: int, size: int = 32):
    """A synthetic demonstration: a square that moves with the actions over a task-coloured background."""
    from phase3_vla.staging import Demo
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (T, 7)).astype(np.float32)
    pos = np.clip(np.cumsum(actions[:, :2], 0) * 2 + size // 2, 2, size - 6).astype(int)
    frames = np.zeros((T, size, size, 3), np.uint8)
    frames[..., task % 3] = 40 + 20 * task
    for t, (x, y) in enumerate(pos):
        frames[t, y:y + 4, x:x + 4] = 255
    state = rng.normal(size=12).tolist()
    return Demo(agentview=frames, wrist=frames[:, ::-1].copy(), state=np.zeros((T, 8), np.float32), action=actions,
                meta={"instruction": f"task {task}", "start": {"task_id": task, "kind": "sampled", "seed": seed,
                                                              "state": state}})


def write_played(folder: Path, task: int, ep: int, success: bool, steps: int = 12) -> None:
    """An evaluation episode as phase 3's loop saves it when recording: record, video (agent | wrist), actions."""
    from phase3_vla.rollouts import save_episode
    rng = np.random.default_rng(ep)
    played = {"success": success, "steps": steps,
              "frames": [rng.integers(0, 255, (32, 64, 3), dtype=np.uint8) for _ in range(steps)],
              "states": [rng.normal(size=8).astype(np.float32) for _ in range(steps)],
              "actions": [rng.uniform(-1, 1, 7).astype(np.float32) for _ in range(steps)]}
    save_episode(folder, task, ep, played, f"task {task}", "played", {"s": 0})


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    from phase3_vla.dataset import write_lerobot_dataset
    root = tmp_path_factory.mktemp("p4demos")
    sets = {"base": [(0, 1, 20), (0, 2, 18), (1, 3, 22)], "base_val": [(1, 4, 16)], "new": [(9, 5, 20), (9, 6, 19)],
            "new_val": [(9, 7, 15)]}
    for split, specs in sets.items():
        write_lerobot_dataset(root / "lerobot" / split, f"local/p4_{split}", [_demo(*s) for s in specs], fps=20,
                              threads=1)
    return root


def test_load_demos_reads_phase3_format_and_caches(collection, tmp_path):
    from phase4_uwm.data import load_demos
    d = load_demos(collection / "lerobot" / "base", 16, tmp_path)
    assert d.frames.shape == (60, 2, 3, 16, 16) and d.frames.dtype == torch.uint8
    assert d.task.tolist() == [0] * 38 + [1] * 22 and d.episode.max() == 2
    assert d.instructions == {0: "task 0", 1: "task 1"}
    assert list(tmp_path.glob("base-*-16px*.npz"))
    d2 = load_demos(collection / "lerobot" / "base", 16, tmp_path)  # from the cache
    assert torch.equal(d.frames, d2.frames) and torch.equal(d.actions, d2.actions)
    # the white square survives the area resize: frame 0's brightest pixel is the square
    assert int(d.frames[0, 0].max()) == 255 or int(d.frames[0, 0].max()) > 200
    assert d.select(2).num_episodes == 2


def test_smoke_tokenizer_then_uwm_training_and_modes(collection, run_root):
    common = [f"run.root={run_root}", f"data.folder={collection}"]
    r = run_module("phase4_uwm.train_tokenizer", "profile=smoke", *common, "run.name=tok", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "reconstruction PSNR" in r.stdout
    r = run_module("phase4_uwm.train", "profile=smoke", *common, "train.max_steps=30", "run.name=uwm",
                   "train.lr=3e-3", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (run_root / "phase4" / "uwm" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [x for x in rows if "train/loss/action" in x]
    # both losses are logged on their own at every logging step (that they fall is tested in-process on a fixed
    # batch below: 30 single-batch values at random levels are too noisy to compare first against last)
    assert len(train_rows) == 15
    assert all(np.isfinite(x["train/loss/action"]) and np.isfinite(x["train/loss/video"]) for x in train_rows)
    assert any("val/policy_action_mse" in x for x in rows)
    # finetune on the new task from it, then modes through the command line (every mode's shapes and dependencies
    # are tested in-process above)
    r = run_module("phase4_uwm.train", "profile=smoke", *common, "data.split=new", f"init_from={run_root}/phase4/uwm",
                   "run.name=uwm-new", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # finetuning on played episodes too (failures included): their start states become training starts
    played = run_root / "played"
    for ep, success in ((25, False), (26, True)):
        write_played(played, 9, ep, success)
    r = run_module("phase4_uwm.train", "profile=smoke", *common, "data.split=new", f"init_from={run_root}/phase4/uwm",
                   "run.name=uwm-played", f"data.played=[{played}]", "train.max_steps=4",
                   "model.timestep_spacing=trailing", timeout=300)  # sampling settings may differ from the base's
    assert r.returncode == 0, r.stderr[-3000:]
    assert "+ 2 played episodes (1 failed, 24 frames) from 1 folder(s); their actions condition the video loss only" \
        in r.stdout
    meta = json.loads((run_root / "phase4" / "uwm-played" / "export" / "uwm.json").read_text())
    assert {(s["task_id"], s["seed"]) for s in meta["train_starts"] if s["kind"] == "fixed"} == {(9, 25), (9, 26)}
    (played / "media" / "task_09_ep_026.played.npz").unlink()  # an episode without its actions is refused, named
    r = run_module("phase4_uwm.train", "profile=smoke", *common, "data.split=new", f"init_from={run_root}/phase4/uwm",
                   "run.name=uwm-played2", f"data.played=[{played}]", "train.max_steps=2", timeout=300)
    assert r.returncode != 0 and "task_09_ep_026.json" in r.stderr and "recorded actions" in r.stderr
    r = run_module("phase4_uwm.train", "profile=smoke", *common, "data.split=new", f"init_from={run_root}/phase4/uwm",
                   "run.name=uwm-deeper", "model.depth=3", timeout=300)  # weights of another shape: refused, named
    assert r.returncode != 0 and "another model config than this run (model.depth)" in r.stderr
    for mode in ("policy", "forward"):
        r = run_module("phase4_uwm.infer", f"mode={mode}", f"load={run_root}/phase4/uwm-new", *common, "clips=4",
                       timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"mode={mode}" in r.stdout
    # the inverse-dynamics regressor baseline
    r = run_module("phase4_uwm.train_inverse", "profile=smoke", *common, "run.name=inv", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # and the forward-dynamics baseline, DIAMOND-lite (phase 1's world model class) on the same frames
    r = run_module("phase4_uwm.train_diamond", "profile=smoke", *common, "run.name=dia", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # the evaluation: modes on held-out clips, and one short LIBERO episode of the policy (contamination checked)
    r = run_module("phase4_uwm.evaluate", f"load={run_root}/phase4/uwm-new", *common, "offline.clips=4",
                   f"inverse_regressor={run_root}/phase4/inv", f"forward_baseline={run_root}/phase4/dia",
                   "offline.batch_size=4", "eval.episodes=1", "eval.libero.max_steps=3", "eval.libero.image_size=64",
                   "eval.videos=0", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "forward dynamics (real actions)" in r.stdout and "tokenizer reconstruction (ceiling)" in r.stdout
    res = json.loads((run_root / "phase4" / "uwm-new" / "evaluate" / "results.json").read_text())
    assert res["policy"]["total"]["episodes"] == 1 and "none shared" in res["policy"]["starts_check"]
    assert res["offline"]["rows"]["forward"]["psnr"][0] > 0
    assert res["offline"]["rows"]["forward_other"]["psnr"][0] > 0 and "another clip's actions" in r.stdout
    assert res["offline"]["rows"]["inverse_regressor_actions"]["action_mse"][0] > 0
    assert res["offline"]["rows"]["mean_action_actions"]["action_mse"][0] > 0 and "mean training action (floor)" in r.stdout
    pol = res["offline"]["rows"]["policy_actions"]  # each clip's own error, in clip order, averaging to the cell
    assert len(pol["per_clip"]) == res["offline"]["clips"] and np.isclose(np.mean(pol["per_clip"]), pol["action_mse"][0])
    assert res["offline"]["rows"]["diamond_lite"]["psnr"][0] > 0 and res["offline"]["seconds_per_clip"]["diamond_lite"] > 0
    # the side-by-side figure: a header, then 4 clips (all there are) x [now, real, forward, forward with another
    # clip's actions, video, DIAMOND-lite], each cell the two views stacked
    import imageio.v3 as iio
    fig = iio.imread(run_root / "phase4" / "uwm-new" / "evaluate" / "modes.png")
    s = 32  # the smoke profile's frame side
    assert fig.shape == (14 + 2 + 4 * (2 * s + 1) + 3 * 4, 6 * s + 5 * 4, 3), fig.shape
    # the feature distance: every frame row has a latent MSE (tokenizer encodings, prediction against real)
    for k in ("forward", "forward_other", "video", "copy_current", "tokenizer", "diamond_lite"):
        v = res["offline"]["rows"][k]["latent_mse"]
        assert np.isfinite(v).all() and 0 <= v[1] <= v[0] <= v[2], (k, v)
    assert "latent MSE" in r.stdout
    # the first validation episode as a GIF (now | real | forward | video, one frame per 4 steps) and the actions
    gif = iio.imread(run_root / "phase4" / "uwm-new" / "evaluate" / "modes.gif", index=None)
    assert gif.ndim == 4 and gif.shape[0] >= 1 and gif.shape[1:3] == (14 + 2 + 2 * s + 1, 4 * s + 3 * 4), gif.shape
    assert (run_root / "phase4" / "uwm-new" / "evaluate" / "actions.png").stat().st_size > 0
    # each sampled row draws from its own generator: the video and policy rows alone, without the baselines and the
    # modes scored before them, draw the same noise and score the same; another offline.seed draws other noise (the
    # video row shows it: this barely trained model's actions saturate at the clipping bound whatever the noise)
    for seed, same in ((0, True), (1, False)):
        r = run_module("phase4_uwm.evaluate", f"load={run_root}/phase4/uwm-new", *common, "offline.clips=4",
                       "offline.batch_size=4", "parts=[offline]", "offline.modes=[video,policy]", f"offline.seed={seed}",
                       "offline.figure_clips=0", "offline.video_stride=0", f"out={run_root}/two-modes-{seed}",
                       timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        alone = json.loads((run_root / f"two-modes-{seed}" / "results.json").read_text())["offline"]
        assert (alone["rows"]["video"] == res["offline"]["rows"]["video"]) is same, (seed, alone)
        assert not same or alone["rows"]["policy_actions"] == res["offline"]["rows"]["policy_actions"]
        assert alone["seed"] == seed and f"noise seed {seed}" in r.stdout


def test_diffusion_policy_baseline_trains_and_plays(collection, run_root):
    common = [f"run.root={run_root}", f"data.folder={collection}"]
    r = run_module("phase4_uwm.train_dp", "profile=smoke", *common, "run.name=dp", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run_root / "phase4" / "dp" / "export" / "policy" / "model.safetensors").exists()
    r = run_module("phase4_uwm.evaluate", "method=diffusion_policy", f"load={run_root}/phase4/dp", "parts=[policy]",
                   *common, "eval.episodes=1", "eval.libero.max_steps=3", "eval.libero.image_size=64", "eval.videos=0",
                   timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((run_root / "phase4" / "dp" / "evaluate" / "results.json").read_text())
    assert res["policy"]["total"]["episodes"] == 1 and "none shared" in res["policy"]["starts_check"]
    r = run_module("phase4_uwm.evaluate", "method=diffusion_policy", f"load={run_root}/phase4/dp", *common)
    assert r.returncode == 2 and "parts=[policy]" in r.stderr


def test_pixel_patch_tokenizer_trains(collection, run_root):
    r = run_module("phase4_uwm.train", "profile=smoke", f"run.root={run_root}", f"data.folder={collection}",
                   "tokenizer_kind=pixel", "pixel_size=16", "train.max_steps=2", "val_every=0", "run.name=pix",
                   timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "32 video" in r.stdout  # 2 views x (16/4)^2 patches of raw pixels
    m = UWM(TINY, CLIP, TokenizerConfig(kind="pixel", image_size=16), 7, pixel_size=16)
    assert m.latent == (3, 16, 16) and m.obs_size == 16


def test_bad_keys_and_missing_data_are_user_errors(run_root, tmp_path):
    r = run_module("phase4_uwm.train", "profile=smoke", f"run.root={run_root}", "model.heads=3")
    assert r.returncode == 2 and "heads" in r.stderr
    r = run_module("phase4_uwm.train_tokenizer", "profile=smoke", f"run.root={run_root}",
                   f"data.folder={tmp_path / 'nothing'}")
    assert r.returncode == 2 and "phase3_vla.collect" in r.stderr


def _evaluation(run: Path, *, method: str = "uwm", successes: int | None = None, forward: float | None = None,
                clips: int = 256, starts: range = range(25), objective: str = "joint", n_action_steps: int = 16) -> None:
    """A run folder with a config.yaml and an evaluate/results.json of the shape phase4_uwm.evaluate writes."""
    import yaml
    (run / "evaluate").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"objective": objective, "model": {"width": 256, "depth": 6},
                                                     "data": {"episodes": 0}, "init_from": "x/uwm-base-cpu"}))
    res: dict = {"method": method}
    if forward is not None:
        rows = {"forward": {"psnr": [forward, forward - 0.1, forward + 0.1], "ssim": [0.5, 0.49, 0.51]},
                "copy_current": {"psnr": [18.1, 18.0, 18.2], "ssim": [0.6, 0.59, 0.61]},
                "policy_actions": {"action_mse": [0.02, 0.015, 0.025]}}
        res["offline"] = {"split": "new_val", "clips": clips, "denoise_steps": 10, "timestep_spacing": "leading",
                          "rows": rows, "seconds_per_clip": {"forward": 0.05}}
    if successes is not None:
        n = len(starts)
        task = {"task_id": 9, "outcomes": {str(i): i < successes for i in starts}}
        res["policy"] = {"settings": {"suite": "libero_object", "max_steps": 280, "image_size": 128, "seed": 0,
                                      "hard_reset": True, "perturb": 0.0, "n_action_steps": n_action_steps},
                         "tasks": [task], "total": {"successes": successes, "episodes": n, "rate": successes / n,
                                                    "ci95": [0.0, 0.5]}}
    (run / "evaluate" / "results.json").write_text(json.dumps(res))


def test_compare_puts_evaluated_runs_side_by_side_and_refuses_different_clips(tmp_path):
    from phase4_uwm import compare
    from common.config import ConfigError
    root = tmp_path / "phase4"
    _evaluation(root / "uwm-new-cpu", successes=3, forward=18.7)
    _evaluation(root / "dp-new-cpu", method="diffusion_policy", successes=12, n_action_steps=8)
    out = compare.main([f"run.root={tmp_path}", f"records={tmp_path / 'records'}", "runs=[uwm-new-cpu,dp-new-cpu,uwm-new-small-cpu]"])
    md = out["markdown"]
    assert ("| `uwm-new-cpu` | UWM joint, width 256, depth 6, all demos, from uwm-base-cpu, replans every 16 steps | 3/25 "
            "| 12% [0%, 50%] | - |") in md
    # paired on the same starts: the DP solved starts 3-11 that the UWM did not, and none the other way
    assert ("| `dp-new-cpu` | Diffusion Policy (lerobot), from scratch, replans every 8 steps | 12/25 | 48% [0%, 50%] "
            "| +9 / -0, p = 0.0039 |") in md
    assert "starts this run solved and `uwm-new-cpu` (the first run played) did not (+)" in md
    assert "| `uwm-new-cpu` | 18.70 [18.60, 18.80] |" in md and "copy current frame (floor) | 18.10" in md
    assert "| forward latent MSE | s/clip (forward) |" in md and "| - | 0.050 |" in md  # the wall-clock of each prediction
    assert "Not evaluated yet: `uwm-new-small-cpu`" in md and out["runs"] == ["uwm-new-cpu", "dp-new-cpu"]
    assert out["figure"] == tmp_path / "phase4" / "compare.png" and out["figure"].read_bytes()[:4] == b"\x89PNG"
    assert compare.figure([("x", tmp_path, {"method": "uwm"})], tmp_path / "none.png") is None  # nothing to draw
    _evaluation(root / "uwm-new-n10-cpu", forward=18.0, clips=128)  # scored on other clips: refused, named
    with pytest.raises(ConfigError, match="uwm-new-n10-cpu.*clips=128"):
        compare.main.__wrapped__([f"run.root={tmp_path}", f"records={tmp_path / 'records'}", "runs=[uwm-new-cpu,uwm-new-n10-cpu]"])
    _evaluation(root / "uwm-new-policy-cpu", successes=1, starts=range(5, 30), objective="policy")  # other starts
    with pytest.raises(ConfigError, match="uwm-new-policy-cpu.*starts"):
        compare.main.__wrapped__([f"run.root={tmp_path}", f"records={tmp_path / 'records'}", "runs=[uwm-new-cpu,uwm-new-policy-cpu]"])



def test_seed_summary_tabulates_each_runs_action_error_over_noise_seeds(tmp_path):
    from common.config import ConfigError
    from phase4_uwm import compare
    with pytest.raises(ConfigError, match="of any run.*ARMS=seeds"):
        compare.seed_summary(tmp_path)
    def per_clip(run, v):  # 3 clips: the joint run errs v on each, the other v - 0.001, v, v + 0.001
        return [v, v, v] if run == "uwm-new-cpu" else [v - 0.001, v, v + 0.001]

    for run, values in (("uwm-new-cpu", (0.02, 0.03)), ("uwm-new-policy-cpu", (0.01, 0.04))):
        for seed, v in enumerate(values):
            f = tmp_path / f"{run}-s{seed}" / "results.json"
            f.parent.mkdir()
            f.write_text(json.dumps({"offline": {"split": "new_val", "clips": 256, "denoise_steps": 10,
                                                 "timestep_spacing": "leading", "seed": seed,
                                                 "rows": {"policy_actions": {"action_mse": [v, v - 0.001, v + 0.001],
                                                                             "per_clip": per_clip(run, v)}}}}))
    md = compare.seed_summary(tmp_path)
    assert "on the same 256 clips of `new_val`" in md and (tmp_path / "summary.md").read_text() == md
    assert "| `uwm-new-policy-cpu` | 1 | 0.0400 [0.0390, 0.0410] |" in md
    assert "| `uwm-new-cpu` | 2 | 0.0250 | 0.0200 | 0.0300 |" in md  # the mean, lowest and highest over the seeds
    assert "| `uwm-new-policy-cpu` | 2 | 0.0250 | 0.0100 | 0.0400 |" in md
    # paired clip by clip: seed 0's differences are -0.011, -0.010, -0.009 (half-width 1.96 * 0.001 / sqrt(3))
    assert "each run minus `uwm-new-cpu`" in md and "| `uwm-new-policy-cpu` | 0 | -0.0100 [-0.0111, -0.0089] |" in md
    assert "| `uwm-new-policy-cpu` | 1 | 0.0100 [0.0089, 0.0111] |" in md
    # over both seeds each clip's mean difference is -0.001, 0, +0.001: centred on 0, the same half-width
    assert "| `uwm-new-policy-cpu` | mean of 2 | 0.0000 [-0.0011, 0.0011] |" in md
    # the runs named, in their order: the first is the reference of the differences; the summary under its name
    md = compare.seed_summary(tmp_path, ["uwm-new-policy-cpu", "uwm-new-cpu"], "flipped")
    assert "each run minus `uwm-new-policy-cpu`" in md and "| `uwm-new-cpu` | 0 | 0.0100 [0.0089, 0.0111] |" in md
    assert (tmp_path / "flipped.md").read_text() == md and md.index("| `uwm-new-policy-cpu` | 0 |") < md.index("| `uwm-new-cpu` | 0 |")
    with pytest.raises(ConfigError, match="no <run>-s<seed>/results.json of uwm-new-n50-cpu"):
        compare.seed_summary(tmp_path, ["uwm-new-cpu", "uwm-new-n50-cpu"])
    f = tmp_path / "uwm-new-cpu-s1" / "results.json"
    f.write_text(f.read_text().replace('"clips": 256', '"clips": 128'))  # a seed scored on other clips: refused
    with pytest.raises(ConfigError, match="uwm-new-cpu-s1.*clips=128"):
        compare.seed_summary(tmp_path)


def test_compare_keeps_records_that_outlive_the_runs(tmp_path):
    """keep=true copies each evaluated run's record into `records`; once the run folder is gone (a fresh clone) the
    table is remade from the record, and a run's own evaluation wins over its record."""
    import shutil
    from common.config import ConfigError
    from phase4_uwm import compare
    root, records = tmp_path / "phase4", tmp_path / "records"
    _evaluation(root / "uwm-new-cpu", successes=3, forward=18.7)
    _evaluation(root / "dp-new-cpu", method="diffusion_policy", successes=12)
    args = [f"run.root={tmp_path}", f"records={records}", "runs=[uwm-new-cpu,dp-new-cpu]"]
    before = compare.main(args + ["keep=true"])["markdown"]
    assert (records / "uwm-new-cpu" / "config.yaml").exists()
    assert (records / "dp-new-cpu" / "evaluate" / "results.json").exists()
    shutil.rmtree(root)
    assert compare.main(args)["markdown"] == before  # from the records alone, the same tables
    _evaluation(root / "uwm-new-cpu", successes=5, forward=18.7)  # a new evaluation of the run: it wins
    assert "| `uwm-new-cpu` | UWM joint, width 256, depth 6, all demos, from uwm-base-cpu, replans every 16 steps | 5/25 |" in \
        compare.main(args)["markdown"]
    (records / "dp-new-cpu" / "evaluate" / "results.json").write_text("{not json")
    with pytest.raises(ConfigError, match="dp-new-cpu.*not valid JSON"):
        compare.main.__wrapped__(args)