"""Phase 2, Diffusion Forcing: independent per-frame noise levels, causality, scheduling matrices, equivalence
with phase 1's teacher-forced step, and smoke runs of train and compare. Tiny networks: seconds each."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import load_config
from common.diffusion import samplers
from common.stepwise import StepRNG
from phase1_world_model import collect, loading as p1_loading, train as p1_train
from phase1_world_model.dataset import AtariWorldModelDataset
from phase2_diffusion_forcing import compare, loading, schedules, train
from phase2_diffusion_forcing.config import Phase2Config, SamplerConfig
from phase2_diffusion_forcing.data import WindowDataset
from phase2_diffusion_forcing.model import DFWorldModel
from phase2_diffusion_forcing.sampler import rollout, sample_chunk

CPU = torch.device("cpu")


def smoke_cfg(*overrides: str):
    return load_config(Phase2Config, "phase2/train", ["profile=smoke", *overrides]).model


def randomized(model: DFWorldModel) -> DFWorldModel:
    """Zero-initialised convs and the level projection get weights, so every input can matter."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=0.1)
    return model.eval()


def windows(B=2, K=4, L=4, seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    return {"frames": torch.randint(0, 256, (B, K + L, 3, size, size), generator=g, dtype=torch.uint8),
            "actions": torch.randint(0, 4, (B, K + L - 1), generator=g), "mask": torch.ones(B, K + L, dtype=torch.bool)}


# ---------------------------------------------------------------- training noise

def test_per_frame_noise_levels_are_independent():
    model = DFWorldModel(smoke_cfg(), 4, (3, 16, 16))
    levels = torch.cat([model.draw_levels(64, 4, 4, StepRNG(0, s, 0, 64, 64, CPU), CPU) for s in range(20)])
    assert levels.shape == (1280, 8)
    logs = levels.log()
    corr = torch.corrcoef(logs.T)  # (8, 8) correlation of log-levels between frame positions
    off = corr[~torch.eye(8, dtype=torch.bool)]
    assert off.abs().max() < 0.1, corr  # independent draws: no correlation between positions
    assert (logs.std(1) > 0.5).float().mean() > 0.95  # the frames of one window really differ
    f = model.frame.cfg
    assert levels.min() >= f.sigma_min_train * 0.999 and levels.max() <= f.sigma_max_train * 1.001
    # schedule_uniform: u ~ U(0,1) through the Karras schedule, so the median level is the schedule's middle
    rho = model.edm.rho
    mid = ((f.sigma_max_train ** (1 / rho) + f.sigma_min_train ** (1 / rho)) / 2) ** rho
    assert float(levels.median()) == pytest.approx(mid, rel=0.1)


def test_full_sequence_shares_one_level_per_window_with_clean_context():
    model = DFWorldModel(smoke_cfg("model.objective=full_sequence"), 4, (3, 16, 16))
    levels = model.draw_levels(32, 4, 4, StepRNG(0, 0, 0, 32, 32, CPU), CPU)
    assert (levels[:, :4] == 0).all()
    assert (levels[:, 4:] == levels[:, 4:5]).all() and levels[:, 4].std() > 0


def test_level_max_and_clean_context_shape_the_training_levels():
    """level_max caps the drawn levels (sampling never starts above frame.edm.sigma_max); clean_context sets the K
    context levels of about that fraction of windows to 0 and leaves the window's own frames alone; both off
    (the default) draws exactly what the runs were trained with."""
    rng = lambda s: StepRNG(0, s, 0, 256, 256, CPU)  # noqa: E731
    capped = DFWorldModel(smoke_cfg("model.level_max=5"), 4, (3, 16, 16))
    levels = torch.cat([capped.draw_levels(256, 4, 4, rng(s), CPU) for s in range(4)])
    assert levels.max() <= 5 * 1.0001 and levels.max() > 4
    plain = DFWorldModel(smoke_cfg(), 4, (3, 16, 16))
    mixed = DFWorldModel(smoke_cfg("model.clean_context=0.25"), 4, (3, 16, 16))
    a, b = plain.draw_levels(256, 4, 4, rng(0), CPU), mixed.draw_levels(256, 4, 4, rng(0), CPU)
    clean = (b[:, :4] == 0).all(1)
    assert 0.15 < float(clean.float().mean()) < 0.35 and (b[:, 4:] == a[:, 4:]).all()
    assert torch.equal(b[~clean], a[~clean]) and (a > 0).all()


def test_teacher_forced_control_differs_from_df_only_in_the_objective(monkeypatch):
    """The equal-budget control: its config is DF's but for model.objective, each window frame keeps its own drawn
    level, and every frame is denoised from clean real context (levels 0)."""
    from common.config import to_dict
    df, tf = (to_dict(load_config(Phase2Config, "phase2/train", ["profile=cpu", *o]))
              for o in ([], ["model.objective=teacher_forced"]))
    diff = {k for k in df["model"] if df["model"][k] != tf["model"][k]}
    assert diff == {"objective"} and {k: v for k, v in df.items() if k != "model"} == \
        {k: v for k, v in tf.items() if k != "model"}
    model = randomized(DFWorldModel(smoke_cfg("model.objective=teacher_forced"), 4, (3, 16, 16)))
    seen = {}
    real = model.denoise_windows

    def spy(noisy, sigma, actions, mask):
        seen["ctx"], seen["sigma"] = noisy, sigma
        return real(noisy, sigma, actions, mask)
    monkeypatch.setattr(model, "denoise_windows", spy)
    batch = windows()
    model(batch, StepRNG(0, 0, 0, 2, 2, CPU))
    from common.images import to_model_range
    assert (seen["sigma"] == 0).all() and torch.equal(seen["ctx"], to_model_range(batch["frames"]))
    levels = model.draw_levels(64, 4, 4, StepRNG(0, 1, 0, 64, 64, CPU), CPU)
    assert levels[:, 4:].std(1).min() > 0  # each window frame at its own level


def test_training_loss_uses_the_drawn_levels(monkeypatch):
    """forward = mean over window frames of EDM's weighted loss given each frame's noisy predecessors."""
    model = randomized(DFWorldModel(smoke_cfg(), 4, (3, 16, 16)))
    batch = windows()
    seen = {}
    orig = model.draw_levels

    def spy(*a, **k):
        seen["sigma"] = orig(*a, **k)
        return seen["sigma"]
    monkeypatch.setattr(model, "draw_levels", spy)
    loss, _ = model(batch, StepRNG(2, 3, 0, 2, 2, CPU))
    # recompute by hand, frame by frame, from the same random draws
    rng = StepRNG(2, 3, 0, 2, 2, CPU)
    sigma = orig(2, 4, 4, rng, CPU)
    assert torch.equal(sigma, seen["sigma"])
    noise = rng.randn(8, 3, 16, 16) + model.frame.cfg.noise_offset * rng.randn(8, 3, 1, 1)
    x0 = batch["frames"].float() / 127.5 - 1
    noisy = x0 + sigma[..., None, None, None] * noise
    total = 0.0
    for j in range(4, 8):
        D = model.denoise(noisy[:, j], sigma[:, j], noisy[:, j - 4:j], sigma[:, j - 4:j], batch["actions"][:, j - 4:j])
        s = sigma[:, j]
        w = (s ** 2 + 0.25) / (s * 0.5) ** 2
        total = total + (w * ((D - x0[:, j]) ** 2).flatten(1).mean(1)).mean() / 4
    assert torch.allclose(loss, total, rtol=1e-4), (loss, total)


# ---------------------------------------------------------------- causality

def test_frame_t_never_sees_later_frames():
    model = randomized(DFWorldModel(smoke_cfg(), 4, (3, 16, 16)))
    b = windows()
    sigma = torch.rand(2, 8) + 0.1
    x = b["frames"].float() / 127.5 - 1

    def outputs(frames, actions):
        cond, ctx, xs = model.denoise_windows(frames, sigma, actions, b["mask"])
        return model.frame.denoiser(xs, sigma[:, 4:].flatten(), cond, ctx).reshape(2, 4, 3, 16, 16)

    base = outputs(x, b["actions"])
    for t in range(4):  # window frame t = position 4 + t
        later = x.clone()
        later[:, 5 + t:] = torch.randn_like(later[:, 5 + t:])
        acts = b["actions"].clone()
        acts[:, 4 + t:] = (acts[:, 4 + t:] + 1) % 4  # actions taken on frame 4+t and later
        out = outputs(later, acts)
        assert torch.allclose(out[:, :t + 1], base[:, :t + 1], atol=1e-6), t
        if t < 3:
            assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])  # while later frames do change


def test_generated_frame_t_does_not_depend_on_later_actions():
    model = randomized(DFWorldModel(smoke_cfg(), 4, (3, 16, 16)))
    hist = torch.rand(2, 4, 3, 16, 16) * 2 - 1
    acts = torch.randint(0, 4, (2, 4 + 4 - 1))
    for kind in ("autoregressive", "pyramid", "full_sequence"):
        m = schedules.make(kind, 4, 3, 1)
        a = sample_chunk(model, hist, torch.zeros(2, 4), acts, m, 3, generator=torch.Generator().manual_seed(0))
        changed = acts.clone()
        changed[:, 5:] = (changed[:, 5:] + 1) % 4  # actions taken on chunk frames 1.. (they lead to frames 2..)
        b = sample_chunk(model, hist, torch.zeros(2, 4), changed, m, 3, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6), kind
        assert not torch.allclose(a[:, 2:], b[:, 2:]), kind


# ---------------------------------------------------------------- scheduling matrices

@pytest.mark.parametrize("F,S,u", [(1, 3, 1), (4, 3, 1), (5, 10, 2), (3, 4, 7)])
def test_schedule_shapes_and_monotone_columns(F, S, u):
    for kind, rows in (("full_sequence", S), ("autoregressive", F * S), ("pyramid", S + (F - 1) * u)):
        m = schedules.make(kind, F, S, u)
        assert m.shape == (rows + 1, F), kind
        assert (np.diff(m, axis=0) <= 0).all() and (m[0] == S).all() and (m[-1] == 0).all(), kind
        schedules.validate(m, S, F)


def test_autoregressive_finishes_frame_t_before_t_plus_1_starts():
    m = schedules.autoregressive(5, 4)
    for t in range(4):
        clean = np.flatnonzero(m[:, t] == 0)[0]  # first row where frame t is clean
        started = np.flatnonzero(m[:, t + 1] < 4)[0]  # first row where frame t+1 has left full noise
        assert (m[:started, t + 1] == 4).all() and (m[clean:, t] == 0).all()
        assert started == clean + 1, (t, clean, started)  # t+1's first step is the one right after t is clean


def test_pyramid_keeps_the_future_noisier_and_its_limits():
    m = schedules.pyramid(6, 5, 2)
    assert (np.diff(m, axis=1) >= 0).all()  # at every row, later frames are at least as noisy
    assert np.array_equal(schedules.pyramid(4, 3, 0), schedules.full_sequence(4, 3))
    assert np.array_equal(schedules.pyramid(4, 3, 3), schedules.autoregressive(4, 3))


def test_bad_matrices_are_refused_with_the_reason(tmp_path):
    good = schedules.pyramid(3, 2, 1)
    with pytest.raises(schedules.ScheduleError, match="non-increasing"):
        schedules.validate(good[::-1], 2)
    with pytest.raises(schedules.ScheduleError, match=r"\[0, 2\]"):
        schedules.validate(good + 1, 2)
    with pytest.raises(schedules.ScheduleError, match="first row"):
        schedules.validate(good[1:], 2)
    with pytest.raises(schedules.ScheduleError, match="columns"):
        schedules.validate(good, 2, frames=4)
    (tmp_path / "m.json").write_text(json.dumps(good.tolist()))
    (tmp_path / "m.txt").write_text("\n".join(",".join(map(str, r)) for r in good))
    np.save(tmp_path / "m.npy", good)
    for name in ("m.json", "m.txt", "m.npy"):
        assert np.array_equal(schedules.from_file(tmp_path / name, 2, 3), good)
    with pytest.raises(schedules.ScheduleError, match="does not exist"):
        schedules.from_file(tmp_path / "nope.json", 2, 3)


# ---------------------------------------------------------------- equivalence with phase 1

def test_clean_context_autoregressive_step_equals_the_teacher_forced_step():
    """One generated frame with clean history = phase 1's Euler sampler on the same network and inputs."""
    model = randomized(DFWorldModel(smoke_cfg(), 4, (3, 16, 16)))
    hist_u8 = torch.randint(0, 256, (3, 4, 3, 16, 16), dtype=torch.uint8)
    hist = hist_u8.float() / 127.5 - 1
    acts = torch.randint(0, 4, (3, 4))
    S = 3
    df = sample_chunk(model, hist, torch.zeros(3, 4), acts, schedules.autoregressive(1, S), S,
                      generator=torch.Generator().manual_seed(5))[:, 0]
    sig = model.sigmas(S)
    x = samplers.prior((3, 3, 16, 16), float(sig[0]), torch.Generator().manual_seed(5))
    ref = samplers.euler(lambda x_, s: model.denoise(x_, s, hist, torch.zeros(3, 4), acts), x, sig).clamp(-1, 1)
    assert torch.allclose(df, ref, atol=1e-5)
    # and with the level embedding still at its zero init, that network *is* phase 1's world model
    fresh = DFWorldModel(smoke_cfg(), 4, (3, 16, 16))
    for m in fresh.frame.modules():
        if isinstance(m, torch.nn.Conv2d) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=0.1)
    tf = fresh.frame.next_frame(hist_u8, acts, generator=torch.Generator().manual_seed(5), steps=S)
    df2 = sample_chunk(fresh, hist, torch.zeros(3, 4), acts, schedules.autoregressive(1, S), S,
                       generator=torch.Generator().manual_seed(5))[:, 0]
    assert torch.allclose(df2, tf, atol=1e-5)


# ---------------------------------------------------------------- data and entry points

@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Smoke data set, a phase 1 smoke run, and DF + full-sequence smoke runs (DF warm-started from phase 1)."""
    root = tmp_path_factory.mktemp("outputs")
    collect.main(["profile=smoke", f"run.root={root}"])
    p1_train.main(["profile=smoke", f"run.root={root}", "run.name=p1"])
    common = ["profile=smoke", f"run.root={root}"]
    train.main([*common, "run.name=df", "init_from=latest"])
    train.main([*common, "run.name=fs", "model.objective=full_sequence"])
    train.main([*common, "run.name=tf", "init_from=latest", "model.objective=teacher_forced"])
    return root


def test_windows_stay_inside_episodes_and_align_actions(root):
    base = AtariWorldModelDataset.for_game("Breakout", str(root), split="train")
    ds = WindowDataset(base, 4)
    assert len(ds) == sum(int(T) - 4 + 1 for T in base.lengths)
    item = ds[0]  # window starting at step 1: three context positions lie before the episode
    assert item["frames"].shape == (8, 3, 64, 64) and item["mask"].tolist() == [False] * 3 + [True] * 5
    e, s = 0, 10
    i = int(np.flatnonzero((ds.starts[:, 0] == e) & (ds.starts[:, 1] == s))[0])
    it = ds[i]
    f0, a0 = int(base.frame_start[e]), int(base.step_start[e])
    assert torch.equal(it["frames"], torch.from_numpy(base.frames[f0 + s - 4:f0 + s + 4]))
    assert torch.equal(it["actions"], torch.from_numpy(base.actions[a0 + s - 4:a0 + s + 3]))


def test_train_writes_runs_and_warm_start_is_phase_1(root):
    df = loading.load_trained(str(root / "phase2" / "df"), "diffusion_forcing")
    assert df.meta["warm_start"].endswith("p1") and df.meta["window"] == 4
    assert (root / "phase2" / "df" / "media" / "rollout_00000006.mp4").exists()
    fs = loading.load_trained("latest", "full_sequence", str(root))
    assert fs.run.dir.name == "fs"
    with pytest.raises(Exception, match="model.objective=full_sequence"):
        loading.load_trained("latest", "full_sequence", str(root / "nowhere"))


def test_warm_start_copies_the_phase_1_weights(root):
    model = DFWorldModel(smoke_cfg(), 4, (3, 64, 64))
    train.warm_start(model, str(root / "phase1" / "p1"), str(root))
    p1 = p1_loading.load_trained(str(root / "phase1" / "p1"), "diffusion").model.state_dict()
    mine = model.frame.state_dict()
    assert all(torch.equal(mine[k], p1[k]) for k in mine)


def test_sliding_window_rollout_runs_4x_past_the_window(root):
    df = loading.load_trained(str(root / "phase2" / "df"), "diffusion_forcing")
    test = AtariWorldModelDataset.for_game("Breakout", str(root), split="test")
    ctx = torch.from_numpy(test.frames[:4])[None]
    acts = torch.from_numpy(test.actions[:3 + 17])[None]
    for sampler in (SamplerConfig(schedule="pyramid", stabilization=0.1), SamplerConfig(schedule="full_sequence")):
        out = rollout(df.model, ctx, acts, 17, sampler, torch.Generator().manual_seed(0))  # 17 = 4 L + 1
        assert out.shape == (1, 17, 3, 64, 64) and out.dtype == torch.uint8


def test_compare_smoke_writes_tables_plots_and_videos(root, tmp_path):
    res = compare.main([f"run.root={root}", "starts_per_episode=2", "multiples=[1,2]", "ablate_stabilization=[0,0.1]",
                        "ablate_uncertainty=[1]", "ablation_multiple=1", "videos=1", f"out={tmp_path}", "run.precision=fp32",
                        "control=latest"])
    assert set(res["methods"]) == {"teacher_forced", "tf_control", "full_sequence", "df_ar", "df_ar_stab", "df_pyramid",
                                   "df_pyramid_stab"}
    assert set(res["game_state"]) == {"real frames (detector floor)", *res["methods"]}  # the smoke data has RAM
    assert res["horizons"] == [1, 4, 8] and len(res["ablation_stabilization"]) == 2
    for name in ("results.json", "results.md", "error_vs_horizon.png", "ablations.png"):
        assert (tmp_path / name).exists()
    assert list((root / "phase2" / "df" / "media").glob("compare_*.gif"))
    # the tables again from results.json alone, naming the runs as the command did; a wrong file is refused by name
    first = (tmp_path / "results.md").read_text()
    (tmp_path / "results.md").unlink()
    compare.main([f"tables_from={tmp_path / 'results.json'}"])
    md = (tmp_path / "results.md").read_text()
    assert md == first and "control=latest" in md and "load=latest" in md
    with pytest.raises(SystemExit) as bad:
        compare.main([f"tables_from={tmp_path / 'ablations.png'}"])
    assert bad.value.code == 2
    # variants: each DF run's df_ar from its own comparison in one table; different rollouts are refused by name
    other = json.loads((tmp_path / "results.json").read_text())
    other["config"]["load"] = "outputs/phase2/df-capped"
    other["methods"]["df_ar"]["psnr"]["1"] = [12.34, 12.0, 12.5]
    (tmp_path / "capped").mkdir()
    (tmp_path / "capped" / "results.json").write_text(json.dumps(other))
    res = compare.main([f"variants=[{tmp_path / 'results.json'},{tmp_path / 'capped' / 'results.json'}]"])
    assert res["rows"][:3] == [f"{n} ({res_m['description']})" for n, res_m in
                               ((n, json.loads((tmp_path / "results.json").read_text())["methods"][n])
                                for n in ("teacher_forced", "tf_control", "full_sequence"))]
    assert res["rows"][3:] == ["df_ar of latest", "df_ar of df-capped"]
    md = (tmp_path / "variants.md").read_text()
    assert "| df_ar of df-capped | 12.34 [12.00, 12.50] |" in md and "brick count error" in md
    other["starts"] = other["starts"][1:]
    (tmp_path / "capped" / "results.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit) as bad:
        compare.main([f"variants=[{tmp_path / 'results.json'},{tmp_path / 'capped' / 'results.json'}]"])
    assert bad.value.code == 2
