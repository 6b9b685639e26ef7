"""Phase 1 world model: the denoiser's math and conditioning, rollouts, metrics, WorldModelEnv, and a smoke run of
every entry point (train, evaluate, play) on a 2-episode data set. Tiny networks: seconds each."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from common.config import load_config
from common.diffusion.edm import edm_loss_weight, edm_scalings
from common.stepwise import StepRNG
from phase1_world_model import collect, evaluate, loading, play, train
from phase1_world_model.config import Phase1Config, PlayConfig
from phase1_world_model.dataset import AtariWorldModelDataset
from phase1_world_model.metrics import (aggregate, fmt, frame_metrics, mse, psnr, psnr_curve, score, sharpness,
                                        ssim, ssim_cs)
from common.images import to_model_range
from phase1_world_model.model import WorldModel
from phase1_world_model.rollout import batched_rollout, gather, rollout, side_by_side, start_points
from phase1_world_model.wm_env import Imagination, WorldModelEnv


def smoke_model_cfg(kind: str = "diffusion"):
    cfg = load_config(Phase1Config, "phase1/train", ["profile=smoke", f"model.kind={kind}"]).model
    return cfg


def randomize_output(model: WorldModel) -> WorldModel:
    """The UNet's output conv and every residual branch's last conv start at zero (an untrained net predicts 0
    and ignores its conditioning); give them weights so that inputs and actions matter."""
    torch.manual_seed(1)
    for m in model.frame_net.modules():
        if isinstance(m, torch.nn.Conv2d) and not m.weight.any():
            torch.nn.init.normal_(m.weight, std=0.1)
    return model


def fake_batch(B=3, K=4, A=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randint(0, 256, (B, K, 3, 16, 16), generator=g, dtype=torch.uint8),
            "act": torch.randint(0, A, (B, K), generator=g), "mask": torch.ones(B, K, dtype=torch.bool),
            "next_obs": torch.randint(0, 256, (B, 3, 16, 16), generator=g, dtype=torch.uint8),
            "reward": torch.tensor([0, 1, -1])[:B], "end": torch.tensor([False, True, False])[:B]}


# ---------------------------------------------------------------- model

def test_diffusion_loss_is_diamonds_edm_objective():
    """forward() = EDM-weighted denoising loss with clipped log-normal sigma and per-channel offset noise."""
    cfg = smoke_model_cfg()
    cfg.reward_end.enabled = False
    model = randomize_output(WorldModel(cfg, 4, (3, 16, 16)))
    batch = fake_batch()
    loss, logs = model(batch, StepRNG(3, 5, 0, 3, 3, torch.device("cpu")))
    # Recompute by hand from the same random draws (StepRNG is a pure function of seed, step, call order).
    rng = StepRNG(3, 5, 0, 3, 3, torch.device("cpu"))
    sigma = (cfg.edm.p_mean + cfg.edm.p_std * rng.randn()).exp().clamp(cfg.sigma_min_train, cfg.sigma_max_train)
    noise = rng.randn(3, 16, 16) + cfg.noise_offset * rng.randn(3, 1, 1)
    x0, ctx = to_model_range(batch["next_obs"]), to_model_range(batch["obs"]).flatten(1, 2)
    c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in edm_scalings(sigma, cfg.edm.sigma_data))
    x = x0 + sigma.view(-1, 1, 1, 1) * noise
    cond = model.actions(batch["act"], batch["mask"])
    F_x = model.denoiser.net(torch.cat([ctx, c_in * x], 1), c_noise.flatten(), cond)
    D = c_skip * x + c_out * F_x
    expected = (edm_loss_weight(sigma, cfg.edm.sigma_data) * ((D - x0) ** 2).flatten(1).mean(1)).mean()
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)
    assert logs["frame_loss"] == pytest.approx(float(expected.detach()), rel=1e-5)


def test_one_euler_step_is_the_denoiser_at_sigma_max():
    """Euler from sigma_max to 0 in one step: x + (0 - s)(x - D(x; s))/s = D(x; s) (EDM eq. 4)."""
    model = randomize_output(WorldModel(smoke_model_cfg(), 4, (3, 16, 16))).eval()
    b = fake_batch()
    g = torch.Generator().manual_seed(0)
    out = model.next_frame(b["obs"], b["act"], generator=g, steps=1)
    x = torch.randn((3, 3, 16, 16), generator=torch.Generator().manual_seed(0)) * model.cfg.edm.sigma_max
    cond, ctx = model.actions(b["act"]), to_model_range(b["obs"]).flatten(1, 2)
    expected = model.denoiser(x, torch.tensor(model.cfg.edm.sigma_max), cond, ctx).clamp(-1, 1)
    assert torch.allclose(out, expected, atol=1e-5)
    again = model.next_frame(b["obs"], b["act"], generator=torch.Generator().manual_seed(0), steps=1)
    assert torch.equal(out, again)  # deterministic given the starting noise


def test_actions_condition_the_prediction_and_padding_ignores_them():
    model = randomize_output(WorldModel(smoke_model_cfg(), 4, (3, 16, 16))).eval()
    b = fake_batch()
    D = lambda act, mask=None: model.next_frame(b["obs"], act, mask, generator=torch.Generator().manual_seed(0))
    base = D(b["act"])
    other = b["act"].clone()
    other[:, -1] = (other[:, -1] + 1) % 4
    assert (D(other) - base).abs().max() > 1e-4  # the last action changes the next frame
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[:, 0] = False  # position 0 lies before the episode start: its action must not matter
    first = b["act"].clone()
    first[:, 0] = (first[:, 0] + 1) % 4
    assert torch.equal(D(b["act"], mask), D(first, mask))
    assert not torch.equal(D(b["act"], mask), D(b["act"]))


def test_regressor_baseline_and_head_train_with_class_weights():
    model = WorldModel(smoke_model_cfg("regressor"), 4, (3, 16, 16))
    model.head.set_class_weights([0, 990, 10], [900, 100])
    # w_c = (N / (C n_c)) ** 0.5, capped at 30; a class absent from the data keeps weight 1
    assert torch.allclose(model.head.reward_weight, torch.tensor([1.0, math.sqrt(1000 / 2970), math.sqrt(1000 / 30)]))
    assert torch.allclose(model.head.end_weight, torch.tensor([math.sqrt(1000 / 1800), math.sqrt(1000 / 200)]))
    loss, logs = model(fake_batch(), StepRNG(0, 0, 0, 3, 3, torch.device("cpu")))
    assert torch.isfinite(loss) and {"frame_loss", "head_loss", "reward_acc", "end_acc"} <= set(logs)
    out = model.next_frame(fake_batch()["obs"], fake_batch()["act"])
    assert out.shape == (3, 3, 16, 16) and out.abs().max() <= 1


# ---------------------------------------------------------------- rollouts

class ActionEcho(WorldModel):
    """next frame = a constant image whose value is 10 x the last action + the step's count of calls."""

    def __init__(self):
        super().__init__(smoke_model_cfg(), 4, (3, 16, 16))

    def next_frame(self, obs, act, mask=None, generator=None, steps=None, solver=None):
        assert obs.shape[1] == 4 and act.shape[1] == 4
        # encode (last action, last context frame's value) so the test can check both alignments
        last = obs[:, -1, 0, 0, 0].float()
        return (act[:, -1].float() * 10 + last / 255).view(-1, 1, 1, 1).expand(-1, 3, 16, 16) / 127.5 - 1


def test_rollout_feeds_back_generated_frames_with_the_right_actions():
    N, K, h = 2, 4, 5
    context = torch.zeros(N, K, 3, 16, 16, dtype=torch.uint8)
    actions = torch.arange(K - 1 + h).repeat(N, 1)  # action index j = j
    gen = rollout(ActionEcho(), context, actions, h)
    assert gen.shape == (N, h, 3, 16, 16) and gen.dtype == torch.uint8
    prev = 0
    for i in range(h):
        # frame i is produced by action i + K - 1 (the one taken on the last context frame)...
        value = ((actions[0, i + K - 1].float() * 10 + prev / 255) / 127.5 - 1 + 1) * 127.5
        assert int(gen[0, i, 0, 0, 0]) == int(torch.round(value.clamp(0, 255)))
        prev = int(gen[0, i, 0, 0, 0])  # ...from the previously generated frame (fed back as uint8)
    copy = rollout(None, context + 7, actions, h)
    assert torch.equal(copy, (context[:, -1:] + 7).expand(N, h, 3, 16, 16))


# ---------------------------------------------------------------- metrics

def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004, written independently with SciPy: Gaussian 11x11 (sigma 1.5), valid region only."""
    x = np.arange(11) - 5.0
    w = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    w /= w.sum()

    def blur(img):
        return correlate1d(correlate1d(img, w, axis=0, mode="constant"), w, axis=1, mode="constant")[5:-5, 5:-5]

    vals = []
    for c in range(a.shape[0]):
        p, q = a[c].astype(np.float64) / 255, b[c].astype(np.float64) / 255
        mp, mq = blur(p), blur(q)
        vp, vq, cpq = blur(p * p) - mp ** 2, blur(q * q) - mq ** 2, blur(p * q) - mp * mq
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        vals.append(((2 * mp * mq + c1) * (2 * cpq + c2) / ((mp ** 2 + mq ** 2 + c1) * (vp + vq + c2))).mean())
    return float(np.mean(vals))


def test_metrics_against_closed_forms_and_an_independent_ssim():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    b = (a.float() * 0.7 + 40 + torch.randn(a.shape, generator=g) * 10).clamp(0, 255).round().to(torch.uint8)
    for i in range(2):
        assert float(ssim(a[i], b[i])) == pytest.approx(_ssim_reference(a[i].numpy(), b[i].numpy()), abs=1e-5)
    assert torch.allclose(ssim(a, a), torch.ones(2))
    m = float(((a.double() - b.double()) / 255).pow(2).mean(dim=(1, 2, 3))[0])
    assert float(mse(a, b)[0]) == pytest.approx(m, rel=1e-5)
    assert float(psnr(a, b)[0]) == pytest.approx(10 * math.log10(1 / m), rel=1e-5)
    assert float(psnr(a, a)[0]) == 60.0  # capped for identical frames
    blurred = torch.nn.functional.avg_pool2d(a.float(), 3, 1, 1).round().to(torch.uint8)
    assert (sharpness(blurred) < 0.5 * sharpness(a)).all()
    fm = frame_metrics(a[None], a[None])
    assert torch.allclose(fm["sharpness_ratio"], torch.ones(1, 2))


def test_ssim_matches_scikit_image_and_cs_ignores_a_background_offset():
    """SSIM agrees with scikit-image's (Gaussian window, population covariance, data range 1) per channel;
    on a Breakout-like frame (black background, a few bright objects) a uniform shift of one grey level costs
    SSIM a lot and its contrast-structure term (ssim_cs) nothing, while moving the ball costs both."""
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (3, 40, 40), generator=g, dtype=torch.uint8)
    b = (a.float() * 0.8 + 30 + torch.randn(a.shape, generator=g) * 12).clamp(0, 255).round().to(torch.uint8)
    ref = structural_similarity(a.permute(1, 2, 0).numpy() / 255, b.permute(1, 2, 0).numpy() / 255, channel_axis=2,
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert float(ssim(a, b)) == pytest.approx(ref, abs=1e-5)
    frame = torch.zeros(3, 64, 64, dtype=torch.uint8)
    frame[:, 8:14, 4:60] = 180  # bricks
    frame[:, 60:62, 28:36] = 200  # paddle
    ball = frame.clone()
    ball[:, 40:42, 30:32] = 200
    shifted = ball + 1  # every pixel one grey level up
    assert float(ssim(ball, shifted)) < 0.93 and float(ssim_cs(ball, shifted)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim_cs(ball, frame)) < 0.999 and float(ssim(ball, frame)) < 0.999


def test_psnr_of_the_mean_mse_and_its_companions():
    """Half the frames exact and half at 35 dB: the mean of capped per-frame PSNRs would say 47.5 dB, the PSNR of
    the mean MSE says 38.0; the median sits between the modes, `exact` counts the exact half; every interval
    holds its estimate, and a constant column has a zero-width bootstrap interval."""
    n = 40
    m35 = 10 ** (-35 / 10)
    per_frame = {"mse": torch.tensor([0.0] * (n // 2) + [m35] * (n // 2), dtype=torch.float64)}
    per_frame["psnr"] = torch.tensor([60.0] * (n // 2) + [35.0] * (n // 2), dtype=torch.float64)
    per_frame["ssim"] = torch.linspace(0.5, 1.0, n)
    agg = aggregate(per_frame)
    assert float(per_frame["psnr"].mean()) == pytest.approx(47.5)
    assert agg["psnr"][0] == pytest.approx(35 + 10 * math.log10(2), abs=1e-9)  # mean MSE = m35 / 2
    assert agg["psnr"][1] < agg["psnr"][0] < agg["psnr"][2]
    assert agg["exact"][0] == 0.5 and agg["exact"][1] < 0.5 < agg["exact"][2]
    assert agg["psnr_median"][0] == pytest.approx(47.5)
    lo, hi = agg["ssim"][1:]
    assert agg["ssim"][0] == pytest.approx(0.75) and hi - lo == pytest.approx(2 * 1.959964 * float(per_frame["ssim"].std()) / math.sqrt(n), rel=1e-4)
    flat = aggregate({"mse": torch.full((10,), m35, dtype=torch.float64)})
    assert flat["psnr"] == pytest.approx([35.0, 35.0, 35.0]) and flat["exact"][0] == 0.0
    assert aggregate({"mse": torch.zeros(5, dtype=torch.float64)})["psnr"][0] == 60.0  # all exact: the cap
    gen = torch.zeros(6, 2, 3, 16, 16, dtype=torch.uint8)
    real = gen.clone()
    real[:3, 1] = 3  # horizon 2: half the rollouts off by 3 levels everywhere
    curve = psnr_curve(gen, real)
    assert curve[0] == 60.0 and curve[1] == pytest.approx(10 * math.log10(1 / ((3 / 255) ** 2 / 2)))
    sc = score(gen, real, [2])
    assert sc["psnr"][2][0] == pytest.approx(curve[1]) and sc["exact"][2][0] == 0.5
    assert fmt(sc["psnr"][2], "psnr").count("[") == 1


# ---------------------------------------------------------------- with a real (tiny) data set

@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """outputs root with the smoke Breakout data set (2 episodes of 50 steps) and smoke diffusion + regressor runs."""
    root = tmp_path_factory.mktemp("outputs")
    collect.main(["profile=smoke", f"run.root={root}"])
    train.main(["profile=smoke", f"run.root={root}", "run.name=diff"])
    train.main(["profile=smoke", f"run.root={root}", "run.name=reg", "model.kind=regressor"])
    return root


@pytest.fixture(scope="module")
def test_split(root) -> AtariWorldModelDataset:
    return AtariWorldModelDataset.for_game("Breakout", str(root), split="test")


def test_train_writes_an_exported_run_that_loads_back(root):
    run = root / "phase1" / "diff"
    for rel in ("config.yaml", "metrics.jsonl", "checkpoints/step_00000006.pt", "export/model.safetensors",
                "export/diffusion.json", "media/rollout_00000006.mp4", "media/rollout_00000006.gif"):
        assert (run / rel).exists(), rel
    tm = loading.load_trained(str(run), "diffusion")
    assert tm.meta["num_actions"] == 4 and tm.meta["trained_steps"] == 6 and not tm.model.training
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("rollout/psnr_h1" in l for l in lines) and any("train/head_loss" in l for l in lines)
    assert loading.load_trained("latest", "regressor", str(root)).run.dir.name == "reg"


def test_train_without_data_names_the_collect_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["profile=smoke", f"run.root={tmp_path}"])
    assert e.value.code == 2 and "python -m phase1_world_model.collect" in capsys.readouterr().err


def test_killed_training_resumes_to_the_same_weights(root, tmp_path):
    from conftest import run_module, subprocess_env
    from common.checkpoint import load_safetensors

    data = root / "phase1" / "datasets" / "Breakout"
    args = ["profile=smoke", f"run.root={tmp_path}", f"data.folder={data}", "train.max_steps=4", "train.ckpt_every=2"]
    run_module("phase1_world_model.train", *args, "run.name=ref")
    killed = run_module("phase1_world_model.train", *args, "run.name=k", env=subprocess_env(WM_FAULT_KILL_AT_STEP="2"))
    assert killed.returncode != 0
    resumed = run_module("phase1_world_model.train", *args, "run.name=k", "run.resume=true")
    assert resumed.returncode == 0, resumed.stderr
    a = load_safetensors(tmp_path / "phase1" / "ref" / "export" / "model.safetensors")
    b = load_safetensors(tmp_path / "phase1" / "k" / "export" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rollout_batch_matches_the_data_set(test_split):
    starts = start_points(test_split, horizon=5, per_episode=3)
    batch = gather(test_split, starts, 5)
    e, t0 = starts[1]
    item = test_split[int(test_split.step_start[e]) + t0]  # the item at step t0 of that episode
    assert torch.equal(batch.context[1], item["obs"]) and torch.equal(batch.actions[1, :4], item["act"])
    assert torch.equal(batch.future[1, 0], item["next_obs"])
    gen = batched_rollout(None, batch, 5, size=2, seed=0)
    clip = side_by_side(batch.future[0], gen[0])
    assert clip.shape == (5, 64, 3 * 64 + 2 * 2, 3)


def test_world_model_env_passes_gymnasiums_checker(root, test_split):
    from gymnasium.utils.env_checker import check_env
    import gymnasium as gym

    tm = loading.load_trained(str(root / "phase1" / "diff"), "diffusion")
    env = WorldModelEnv(tm.model, test_split, max_episode_steps=3)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=4)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and info["start"][0] in test_split.episodes
    steps = [env.step(a) for a in (1, 2, 3)]
    assert steps[-1][3] or steps[-1][2]  # truncated at max_episode_steps unless it terminated
    obs2, _ = env.reset(seed=4)
    assert np.array_equal(obs, obs2) and np.array_equal(steps[0][0], env.step(1)[0])  # seeded replay
    with pytest.raises(ValueError, match="NOOP, FIRE, RIGHT, LEFT"):
        env.step(7)
    made = gym.make("WorldModel-v0", run=str(root / "phase1" / "diff"), max_episode_steps=2)
    check_env(made.unwrapped)  # registered: the render-mode check builds it again through its spec


def test_imagination_restarts_only_the_worlds_asked(root, test_split):
    tm = loading.load_trained(str(root / "phase1" / "diff"), "diffusion")
    worlds = Imagination(tm.model, test_split)
    rng = np.random.default_rng(0)
    worlds.reset(rng, 3)
    worlds.step(torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0))
    before = worlds.frames.clone()
    worlds.reset(rng, 3, where=torch.tensor([False, True, False]))
    assert torch.equal(worlds.frames[0], before[0]) and torch.equal(worlds.frames[2], before[2])
    e, t0 = worlds.starts[1]
    f0 = int(test_split.frame_start[e])
    assert torch.equal(worlds.frames[1], torch.from_numpy(test_split.frames[f0 + t0 - 3:f0 + t0 + 1]))


def test_evaluate_writes_tables_plots_videos_and_publishes(root, tmp_path):
    out = tmp_path / "eval"
    res = evaluate.main([f"run.root={root}", "horizons=[1,3]", "starts_per_episode=2", "denoise_steps_sweep=[1,2]",
                         "sweep_solvers=[euler,heun]", "sweep_horizon=2", "videos=1", f"out={out}", "run.precision=fp32"])
    assert set(res["methods"]) == {"diffusion", "regressor", "copy_last"}
    for m in res["methods"].values():
        assert set(m["psnr"]) == {1, 3} and all(np.isfinite(v[0]) for v in m["ssim"].values())
    assert [(r["solver"], r["steps"], r["nfe"]) for r in res["steps_sweep"]] == [
        ("euler", 1, 1), ("euler", 2, 2), ("heun", 1, 1), ("heun", 2, 3)]
    assert 0 <= res["reward_end"]["reward"]["accuracy"] <= 1
    assert set(res["shuffled_actions"]["psnr"]) == {1, 2}
    # The smoke data set records the RAM: game metrics for every method and the detector's floor on real frames.
    game = res["game_state"]
    assert set(game) == {"real frames (detector floor)", "diffusion", "regressor", "copy_last"}
    assert 0 <= game["diffusion"]["ball_agree"][3][0] <= 1 and game["copy_last"]["paddle_error"][1][0] >= 0
    assert "Did it get the game right?" in (out / "results.md").read_text()
    for name in ("results.json", "results.md", "metrics_vs_horizon.png", "steps_sweep.png"):
        assert (out / name).exists(), name
    assert list((root / "phase1" / "diff" / "media").glob("eval_rollout_*.mp4"))
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nintro\n")
    evaluate.publish(res, (out / "results.md").read_text(), readme, tmp_path / "figures")
    evaluate.publish(res, "second version", readme, tmp_path / "figures")  # replaces, never duplicates
    text = readme.read_text()
    assert text.count("<!-- results:begin (python -m phase1_world_model.evaluate publish=true) -->") == 1 and "second version" in text and text.startswith("# title\n\nintro")
    assert (tmp_path / "figures" / "metrics_vs_horizon.png").exists()


def test_evaluate_without_a_regressor_names_its_train_command(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WM_RELEASES", str(tmp_path / "no-releases"))  # no regressor release to fall back to either
    other = tmp_path / "o"
    (other / "phase1").mkdir(parents=True)
    os.symlink(root / "phase1" / "diff", other / "phase1" / "diff")
    with pytest.raises(SystemExit):
        evaluate.main([f"run.root={other}", "horizons=[1]"])
    assert "python -m phase1_world_model.train profile=cpu model.kind=regressor" in capsys.readouterr().err


def test_play_headless_with_actions_and_policy(root, tmp_path):
    rep = play.main([f"run.root={root}", "mode=headless", "actions=[FIRE,right,3]", f"out={tmp_path / 'a'}", "scale=2"])
    assert rep["steps"] == 3 and (tmp_path / "a.mp4").exists() and (tmp_path / "a.gif").exists()
    rep = play.main([f"run.root={root}", "mode=headless", "frames=4", "batch=3", "max_episode_steps=2",
                     f"out={tmp_path / 'b'}"])
    assert rep["batch"] == 3 and rep["generated_frames_per_s"] > 0
    assert json.loads((tmp_path / "b.json").read_text())["steps"] == 4


def test_keys_map_to_the_games_action_names():
    breakout = ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert play.keys_to_action(False, False, True, False, False, breakout) == 3
    assert play.keys_to_action(True, False, False, True, True, breakout) == 2  # no UPRIGHTFIRE in Breakout: RIGHT
    assert play.keys_to_action(False, False, True, True, False, breakout) == 0  # left+right cancel
    pong = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    assert play.keys_to_action(False, False, False, True, True, pong) == 4
    assert play.parse_actions(["fire", "2"], breakout) == [1, 2]


def test_play_keyboard_loop_runs_on_a_dummy_display(root, monkeypatch):
    pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    cfg = load_config(PlayConfig, "phase1/play", [f"run.root={root}", "fps=1000"])
    assert play.keyboard(cfg, max_frames=3)["frames"] == 3
