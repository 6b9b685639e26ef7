"""Phase 3 policy: the generated backbone, SmolVLA built from it, LoRA wrapping and adapter reload, the fast
action-chunk reader against lerobot's, train / finetune / eval / experiments at smoke scale, and lerobot's
own `lerobot-train` on a dataset written by phase3_vla's writer.

Everything runs on tiny LeRobotDatasets written here (64 px, a few frames of random images), never on the
collected demonstrations, with the smoke profile's ~100k-parameter SmolVLA; the eval test plays one real
LIBERO-Object episode at 64 px with a 6-step limit. Offline: HF_HUB_OFFLINE=1 and sockets blocked.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before lerobot / transformers import huggingface_hub

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import urllib3  # noqa: F401  (probes IPv6 with a socket at import: done here, outside the socket-blocked tests)

from conftest import REPO, subprocess_env
from test_phase3_data import _demo
from common.config import load_config
from common.runs import ArtifactNotFoundError
from phase3_vla import backbone, evaluate as evaluation, experiments, finetune, rollouts, train, training
from phase3_vla.config import BackboneConfig, AdapterConfig, Phase3Config
from phase3_vla.dataset import open_dataset, write_lerobot_dataset
from phase3_vla.frames import ChunkedFrames
from phase3_vla.policy import (BaseRunMissingError, build_policy, trainable_and_total, load_adapter, load_policy,
                               save_policy, wrap_lora)

NEW = "pick up the orange juice and place it in the basket"
CPU = torch.device("cpu")


def smoke_cfg(*overrides: str) -> Phase3Config:
    return load_config(Phase3Config, "phase3/train", ["profile=smoke", *overrides])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two tiny datasets like collect's: base (2 episodes of 2 tasks) and new (3 episodes of the new task)."""
    root = tmp_path_factory.mktemp("p3data")
    new = [_demo(9, a, steps=6, size=64) for a in range(3)]
    for d in new:
        d.meta["instruction"] = NEW
    write_lerobot_dataset(root / "base", "local/test_base", [_demo(1, 0, steps=8, size=64), _demo(4, 0, steps=7, size=64)])
    write_lerobot_dataset(root / "new", "local/test_new", new)
    return root


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """A smoke base run trained by `python -m phase3_vla.train` (in-process)."""
    root = tmp_path_factory.mktemp("p3runs")
    args = ["profile=smoke", f"run.root={root}", f"data.base_folder={data / 'base'}", f"data.new_folder={data / 'new'}"]
    out = train.main(args)
    return {"root": root, "args": args, "base": out}


def _raw(data, policy, n: int = 2):
    """The first n training samples of the base dataset, collated as the Trainer's DataLoader does."""
    ds = ChunkedFrames(open_dataset(data / "base"), policy.config.chunk_size)
    return torch.utils.data.default_collate([ds[i] for i in range(n)])


def _batch(policy, pre, data, n: int = 2):
    return pre(_raw(data, policy, n))


# ---------------------------------------------------------------- backbone and build

def test_backbone_folder_is_deterministic_and_loads(tmp_path):
    from transformers import AutoConfig, AutoProcessor

    cfg = smoke_cfg().policy
    a = backbone.generate_backbone(cfg.backbone, cfg.image_size, tmp_path / "a")
    b = backbone.generate_backbone(cfg.backbone, cfg.image_size, tmp_path / "b")
    files = sorted(p.name for p in a.iterdir())
    assert {"config.json", "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
            "tokenizer.json", "tokenizer_config.json", "backbone.json"} <= set(files)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)  # a pure function of the settings
    config, proc = AutoConfig.from_pretrained(a), AutoProcessor.from_pretrained(a)
    assert config.model_type == "smolvlm" and config.text_config.model_type == "llama"
    assert config.vision_config.image_size == cfg.image_size and config.text_config.hidden_size == cfg.backbone.text_hidden
    tok = proc.tokenizer
    assert tok.convert_ids_to_tokens(tok.fake_image_token_id) == "<fake_token_around_image>"
    assert tok.convert_ids_to_tokens(tok.global_image_token_id) == "<global-img>"
    assert len(tok(NEW + "\n")["input_ids"]) <= cfg.tokenizer_max_length  # instructions are short sequences
    # resolve_backbone reuses a matching folder and names it by the settings' digest
    folder = backbone.resolve_backbone(cfg.backbone, cfg.image_size, tmp_path)
    assert backbone.resolve_backbone(cfg.backbone, cfg.image_size, tmp_path) == folder and "smolvlm-" in folder


def test_real_weights_offline_fail_with_how_to_supply(data, tmp_path, monkeypatch):
    """The full profile's path (real SmolVLM2 backbone, lerobot/smolvla_base weights) is real code: offline
    it stops with one line saying how to supply the weights. It must not depend on HF_HUB_OFFLINE having been
    set before huggingface_hub was imported (which read it then): the hub module here believes it is online,
    as it does when another library imported it first, and still nothing touches a socket."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(backbone.BackboneError, match="huggingface-cli download HuggingFaceTB/SmolVLM2-500M"):
        backbone.resolve_backbone(BackboneConfig(source=backbone.REAL_SMOLVLM), 512, tmp_path)
    cfg = smoke_cfg("policy.init=lerobot/smolvla_base").policy
    with pytest.raises(backbone.BackboneError, match="policy.init=lerobot/smolvla_base: cannot load .*HF_HUB_OFFLINE=0"):
        build_policy(cfg, open_dataset(data / "base").meta, CPU, tmp_path)


def test_smolvla_builds_from_it_and_runs(data, tmp_path):
    cfg = smoke_cfg().policy
    torch.manual_seed(0)
    policy, pre, post = build_policy(cfg, open_dataset(data / "base").meta, CPU, tmp_path)
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    assert isinstance(policy, SmolVLAPolicy) and policy.config.chunk_size == cfg.chunk_size
    assert set(policy.config.image_features) == {"observation.images.image", "observation.images.image2"}
    batch = _batch(policy, pre, data)
    loss, _ = policy(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, q in policy.named_parameters() if q.requires_grad and q.grad is None]
    assert not no_grad  # freeze_unused: every parameter counted as trainable does get a gradient
    policy.eval()
    obs = {k: v[:1, 0] for k, v in batch.items() if k.startswith("observation.") and k.endswith(("image", "image2", "state"))}
    obs["observation.language.tokens"] = batch["observation.language.tokens"][:1]
    obs["observation.language.attention_mask"] = batch["observation.language.attention_mask"][:1]
    policy.reset()
    action = post(policy.select_action(obs))
    assert tuple(action.shape) == (1, 7) and torch.isfinite(action).all()
    chunk = policy.predict_action_chunk(obs)
    assert tuple(chunk.shape) == (1, cfg.chunk_size, 7)


def test_chunked_frames_equal_lerobots_delta_timestamps(data):
    chunk = 5
    delta = {"observation.images.image": [0.0], "observation.images.image2": [0.0], "observation.state": [0.0],
             "action": [i / 20 for i in range(chunk)]}
    for episodes in (None, [2]):
        ref = open_dataset(data / "new", delta_timestamps=delta, episodes=episodes)
        ours = ChunkedFrames(open_dataset(data / "new", episodes=episodes), chunk)
        assert len(ref) == len(ours)
        for i in range(len(ref)):
            a, b = ref[i], ours[i]
            assert set(a) == set(b)
            for k, v in a.items():
                assert (torch.equal(v, b[k]) if torch.is_tensor(v) else v == b[k]), (i, k)
        assert ours[len(ours) - 1]["action_is_pad"].tolist() == [False] + [True] * (chunk - 1)


# ---------------------------------------------------------------- LoRA

def test_lora_wrap_counts_and_adapter_reload(runs, data, tmp_path):
    base_dir = runs["root"] / "phase3" / "base-smoke" / "export" / "policy"
    policy, pre, post = load_policy(base_dir, CPU)
    assert policy.config.pretrained_path == base_dir.resolve()  # what lerobot's wrap_with_peft requires
    batch = _batch(policy, pre, data)
    noise, time = torch.randn(2, policy.config.chunk_size, policy.config.max_action_dim), torch.full((2,), 0.4)
    with torch.no_grad():
        base_loss = policy(dict(batch), noise=noise, time=time)[0]
    model = wrap_lora(policy, AdapterConfig(r=4, alpha=8, dropout=0.0))
    trainable, total = trainable_and_total(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) and trainable < 0.05 * total
    assert any("lm_expert" in n and "q_proj" in n for n in names) and any("action_out_proj" in n for n in names)
    with torch.no_grad():  # B = 0 at init: the adapter starts as the identity; then make it do something
        assert torch.allclose(model(dict(batch), noise=noise, time=time)[0], base_loss)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
        tuned = model(dict(batch), noise=noise, time=time)[0]
    assert not torch.allclose(tuned, base_loss)
    save_policy(model, pre, post, tmp_path / "adapter")
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= files and "model.safetensors" not in files
    again, pre2, _ = load_adapter(tmp_path / "adapter", CPU)
    with torch.no_grad():
        assert torch.allclose(again(pre2(dict(_raw(data, policy))), noise=noise, time=time)[0], tuned, atol=1e-6)



def test_missing_base_names_the_command(runs, data, tmp_path):
    import shutil

    root = tmp_path / "r"
    shutil.copytree(runs["root"] / "phase3" / "base-smoke", root / "phase3" / "base-smoke")
    shutil.copytree(runs["root"] / "phase3" / "backbones", root / "phase3" / "backbones")
    args = ["profile=smoke", f"run.root={root}", f"data.new_folder={data / 'new'}"]
    out = finetune.main(args)
    adapter = Path(out["adapter"])
    shutil.rmtree(root / "phase3" / "base-smoke")
    with pytest.raises(BaseRunMissingError, match=f"python -m phase3_vla.train profile=smoke run.name=base-smoke run.root={root}"):
        load_adapter(adapter, CPU, make_base=out["make_base"])
    with pytest.raises(SystemExit) as e:  # the eval command says the same, in one line, exit 2
        evaluation.main(["profile=smoke", f"run.root={root}", f"load={out['run_dir']}"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:  # and a finetune without its base names the train command
        finetune.main(args)
    assert e.value.code == 2


# ---------------------------------------------------------------- entry points

def test_train_exports_lerobot_policy(runs):
    out = runs["base"]
    run = Path(out["run_dir"])
    info = json.loads((run / "export" / "info.json").read_text())
    assert info["kind"] == "base" and info["steps"] == 3 and info["trainable"] > 0 and info["seconds"] >= 0
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    policy = SmolVLAPolicy.from_pretrained(run / "export" / "policy")  # lerobot's own loader, nothing else
    assert policy.config.n_action_steps == smoke_cfg().policy.n_action_steps
    assert (run / "export" / "model.safetensors").exists() and (run / "checkpoints" / "step_00000003.pt").exists()


def test_finetune_lora_and_full(runs):
    lora = finetune.main([*runs["args"], "finetune.num_demos=2"])
    info = json.loads((Path(lora["run_dir"]) / "export" / "info.json").read_text())
    assert Path(lora["run_dir"]).name == "lora-r4-n2-smoke" and info["num_demos"] == 2 and info["frames"] == 12
    assert info["kind"] == "lora" and 0 < info["trainable_fraction"] < 0.05 and info["base_run"].endswith("base-smoke")
    assert json.loads((Path(lora["adapter"]) / "adapter_config.json").read_text())["base_model_name_or_path"] == info["base_policy"]
    ckpt = torch.load(Path(lora["run_dir"]) / "checkpoints" / "step_00000002.pt", weights_only=False)
    assert all("lora_" in k for k in ckpt["model"])  # adapter-only checkpoints
    # resume a finished LoRA run for more steps: the adapter-only state loads back
    more = finetune.main([*runs["args"], "finetune.num_demos=2", "run.resume=true", "finetune.train.max_steps=3"])
    assert more["steps"] == 3
    full = finetune.main([*runs["args"], "finetune.method=full"])
    finfo = json.loads((Path(full["run_dir"]) / "export" / "info.json").read_text())
    assert finfo["kind"] == "full" and finfo["trainable"] > 10 * info["trainable"] and (Path(full["policy"]) / "model.safetensors").exists()


@pytest.mark.slow
def test_eval_one_real_episode(runs):
    res = evaluation.main([*runs["args"][:2], "load=base-smoke", "eval.episodes=1"])
    (task,) = res["tasks"]
    assert task["task_id"] == 9 and task["episodes"] == 1 and 0 <= task["ci95"][0] <= task["ci95"][1] <= 1
    rec = json.loads((Path(res["out"]) / "episodes" / "task_09_ep_000.json").read_text())
    assert rec["steps"] <= 6 and rec["init_state"] == 0 and ("success" if rec["success"] else "timeout") in rec["reason"]
    assert {"max_lift_m", "final_distance_m", "policy_calls"} <= set(rec) and rec["policy_calls"] == 2  # 6 steps, chunks of 4
    assert Path(rec["video"]).stat().st_size > 0 and Path(rec["video"]).with_suffix(".gif").stat().st_size > 0
    assert (Path(res["out"]) / "results.md").read_text().count("| 9 |") == 1
    again = evaluation.main([*runs["args"][:2], "load=base-smoke", "eval.episodes=1"])  # reused, not replayed
    assert again["tasks"] == res["tasks"]


def test_wilson_interval():
    lo, hi = rollouts.wilson(0, 10)
    assert lo == 0 and abs(hi - 0.2775) < 1e-3
    lo, hi = rollouts.wilson(5, 10)
    assert abs(lo - 0.2366) < 1e-3 and abs(hi - 0.7634) < 1e-3


def test_mcnemar_exact_against_closed_forms_and_scipy():
    from scipy.stats import binomtest

    from common.stats import mcnemar_exact
    assert mcnemar_exact(6, 0) == 2 / 2 ** 6 and mcnemar_exact(0, 6) == 2 / 2 ** 6  # all 6 discordant pairs one way
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(1, 0) == 1.0 and mcnemar_exact(4, 4) == 1.0
    for b, c in ((3, 9), (11, 2), (7, 5), (0, 13)):
        assert abs(mcnemar_exact(b, c) - binomtest(b, b + c, 0.5).pvalue) < 1e-12


def test_experiments_plan_and_config_errors(runs, capsys):
    res = experiments.main([*runs["args"], "--plan"])
    steps = [c["step"] for c in res["cells"]]
    assert steps == ["base", "zeroshot", "lr", "lr", "lr", "lora", "full", "targets", "targets", "targets", "ranks",
                     "ranks", "demos", "harder", "harder", "harder", "noise", "noise", "noise"]  # the smoke
    # profile's 2 + 1 learning rates, ranks [2, 4], demos [1], the harder condition and the noise check for
    # zero-shot, LoRA and full
    assert "[done]" in capsys.readouterr().out  # the base run of the fixture is found and reused
    assert res["lrs"] == {"lora": None, "full": None}  # no sweep run yet
    for argv, key in ((["profile=smoke", "finetune.method=qlora"], "finetune.method"),
                      (["profile=smoke", "policy.image_size=36"], "policy.image_size"),
                      (["profile=nope"], "smoke")):
        with pytest.raises(SystemExit) as e:
            train.main(argv)
        assert e.value.code == 2 and key in capsys.readouterr().err


def test_data_folder_names_the_collection(tmp_path):
    """data.folder (what collect's data.folder wrote) or the collection named by data.demos; an explicit
    LeRobotDataset folder (data.new_folder) wins for its role, with its _val twin beside it."""
    assert training.dataset_folder(smoke_cfg(f"data.folder={tmp_path}"), "new_val") == tmp_path / "lerobot" / "new_val"
    assert training.dataset_folder(smoke_cfg(f"run.root={tmp_path}", "data.demos=x"), "base") == \
        tmp_path / "phase3" / "demos" / "x" / "lerobot" / "base"
    cfg = smoke_cfg(f"data.folder={tmp_path}", f"data.new_folder={tmp_path / 'n'}")
    assert training.dataset_folder(cfg, "new_val") == tmp_path / "n_val"
    with pytest.raises(ArtifactNotFoundError, match=f"python -m phase3_vla.collect data.folder={tmp_path}"):
        training.require_dataset(smoke_cfg(f"data.folder={tmp_path}"), "base")


def test_eval_out_dir_keeps_replanning_apart(tmp_path):
    run = tmp_path / "lora-r4-n1-smoke"
    assert rollouts.out_dir(smoke_cfg(), run / "export" / "adapter") == run / "eval"
    assert rollouts.out_dir(smoke_cfg("eval.n_action_steps=2"), run / "export" / "adapter") == run / "eval-n_action_steps2"
    assert rollouts.out_dir(smoke_cfg(), tmp_path / "saved") == tmp_path / "saved" / "eval"  # a bare policy folder
    assert rollouts.out_dir(smoke_cfg(f"eval.out={tmp_path / 'x'}"), run / "export" / "policy") == tmp_path / "x"
    snap = run / "snapshots" / "step_000100"
    assert rollouts.out_dir(smoke_cfg(), snap / "policy") == snap / "eval"
    assert rollouts.out_dir(smoke_cfg("eval.libero.perturb=0.08"), run / "export" / "policy") == run / "eval-perturb0.08"
    assert rollouts.out_dir(smoke_cfg("eval.seed=1"), run / "export" / "policy") == run / "eval-seed1"


def test_noise_check_cells_and_agreement(capsys):
    """The noise check replays the main cells' states with experiments.noise_seed (its own eval folder), refuses a
    noise seed equal to eval.seed, and the table counts per-state agreement on the states both seeds played."""
    cfg = smoke_cfg("experiments.new_episodes=4", "experiments.noise_seed=3")
    noise = [c for c in experiments.cells(cfg) if c.step == "noise"]
    main = {c.run: c for c in experiments.cells(cfg) if c.step in ("zeroshot", "lora", "full")}
    assert [c.run for c in noise] == list(main) and all(c.eval_seed == 3 and c.episodes == 4 for c in noise)
    assert all(main[c.run].eval_seed is None for c in noise)  # the main cells play with the command's eval.seed
    with pytest.raises(SystemExit) as e:
        experiments.main(["profile=smoke", "experiments.noise_seed=0", "--plan"])
    assert e.value.code == 2 and "noise_seed" in capsys.readouterr().err

    def row(step, outcomes):
        return {"step": step, "run": "r", "per_task": [{"task_id": 9, "outcomes": dict(enumerate(outcomes))}]}
    got = experiments.noise_agreement([row("lora", [True, True, False, False, True]),
                                       row("noise", [True, False, False, True])])  # state 4 not replayed
    assert got == [{"run": "r", "states": 4, "agree": 2, "both": 1, "neither": 1, "only_main": 1, "only_other": 1}]


def test_filmstrip(tmp_path, capsys):
    """The README's rollout figure: rows of evenly spaced agent-view frames from eval's videos and logs."""
    import imageio.v3 as iio
    import numpy as np
    from common.logger import write_video
    from phase3_vla import filmstrip

    ev = tmp_path / "phase3" / "r" / "eval"
    frames = np.zeros((9, 32, 64, 3), np.uint8)
    frames[:, :, :32] = np.arange(9, dtype=np.uint8)[:, None, None, None] * 28  # agent view brightens per step
    frames[:, :, 32:] = 255  # wrist
    write_video(ev / "media" / "task_09_ep_000", frames, fps=20)
    (ev / "episodes").mkdir(parents=True)
    (ev / "episodes" / "task_09_ep_000.json").write_text(json.dumps({"reason": "success", "steps": 9}))
    out = filmstrip.main([str(tmp_path / "f.png"), "r:9:0", "r:9:0", "--frames", "3", "--root", str(tmp_path)])
    img = iio.imread(out)
    assert img.shape == (2 * 32 + 4, 3 * 32 + 2 * 4, 3)  # two rows, three agent-view frames, 4 px gaps
    assert img[16, 16, 0] < 20 and abs(int(img[16, 36 + 16, 0]) - 4 * 28) < 20 and img[16, 72 + 16, 0] > 200
    assert "success (9 steps)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="python -m phase3_vla.evaluate load=r"):
        filmstrip.main([str(tmp_path / "g.png"), "r:9:1", "--root", str(tmp_path)])
    # any evaluation folder in the same layout (phase 4's and phase 5's), named by its path
    out = filmstrip.main([str(tmp_path / "h.png"), f"{ev}:9:0", "--frames", "3", "--wrist"])
    assert iio.imread(out).shape == (32, 3 * 64 + 2 * 4, 3)


def test_experiment_cells_episodes_and_learning_rates(tmp_path):
    """Main cells get new_episodes, ablations ablation_episodes (their shared point is the main run, evaluated on
    its first states), the lr sweep none; every LoRA cell after the sweep uses the learning rate with the lowest
    validation loss, and snapshots below the budget become learning-curve cells."""
    cfg = smoke_cfg("experiments.new_episodes=6", "experiments.ablation_episodes=3", "experiments.demos=[1,2]",
                    "experiments.ranks=[2,4]", "experiments.lora_lrs=[0.001,0.003]", "experiments.full_lrs=[0.0001]",
                    "monitor.snapshots=[1,3]", f"run.root={tmp_path}")
    got = {(c.step, c.run): c.episodes for c in experiments.cells(cfg)}
    assert got[("lora", "lora-r4-n1-lr1e-3-smoke")] == got[("zeroshot", "base-smoke")] == 6
    assert got[("full", "full-n1-lr1e-4-smoke")] == 6 and got[("lr", "lora-r4-n1-lr3e-3-smoke")] == 0
    assert got[("demos", "lora-r4-n2-lr1e-3-smoke")] == got[("ranks", "lora-r2-n1-lr1e-3-smoke")] == 3
    assert got[("targets", "lora-r4-n1-lr1e-3-all-smoke")] == got[("demos", "lora-r4-n1-lr1e-3-smoke")] == 3
    assert got[("curve", "base-smoke/snapshots/step_000001/policy")] == 1  # step 3 = the whole budget: the base cell
    assert experiments.chosen_lr(cfg, "lora") is None
    for lr, val in ((0.001, 0.5), (0.003, 0.25)):  # finished sweep runs with their validation losses
        export = tmp_path / "phase3" / f"lora-r4-n1-lr{experiments.lr_tag(lr)}-smoke" / "export"
        export.mkdir(parents=True)
        (export / "info.json").write_text(json.dumps({"val_loss": val}))
    assert experiments.chosen_lr(cfg, "lora") == 0.003
    main = [c for c in experiments.cells(cfg, {"lora": 0.003, "full": None}) if c.step in ("lora", "ranks")]
    assert {c.run for c in main} == {"lora-r4-n1-lr3e-3-smoke", "lora-r2-n1-lr3e-3-smoke"}
    assert all("finetune.train.lr=0.003" in c.overrides for c in main)


def test_masked_loss_leaves_padding_out_and_unmasked_is_lerobots(runs, data):
    """Padded chunk steps and padded action dimensions do not enter the masked loss (any value there changes
    nothing), the per-dimension logs average the real entries, and without the mask the loss is lerobot's own
    SmolVLAPolicy.forward (which pads the action to 32 dimensions and keeps the padded steps)."""
    from phase3_vla.dataset import ACTION_NAMES
    from phase3_vla.policy import PolicyModule

    cfg = smoke_cfg("policy.max_action_dim=0", "policy.max_state_dim=0").policy  # lerobot's 32: padded dimensions
    torch.manual_seed(0)
    policy, pre, _ = build_policy(cfg, open_dataset(data / "base").meta, CPU, runs["root"])
    ds = ChunkedFrames(open_dataset(data / "base"), policy.config.chunk_size)
    batch = pre(torch.utils.data.default_collate([ds[i] for i in (2, 5, 6, 7)]))  # 6, 7: past episode 0's end
    assert policy.config.max_action_dim == 32 and batch["action_is_pad"].any() and not batch["action_is_pad"].all()
    module = PolicyModule(policy, pre, mask_padded_actions=True, action_names=ACTION_NAMES)
    noise, time = torch.randn(4, cfg.chunk_size, 32), torch.rand(4)
    with torch.no_grad():
        losses, is_pad = module.elementwise(dict(batch), noise, time)
        loss, logs = module.reduce(losses, is_pad)
        real = losses[:, :, :7][~is_pad]  # (real steps, 7)
        assert torch.allclose(loss, real.mean()) and torch.allclose(logs["loss_dim/gripper"], real[:, 6].mean())
        junk = losses.clone()
        junk[is_pad] = 1e6
        junk[:, :, 7:] = -1e6
        again, logs2 = module.reduce(junk, is_pad)
        assert torch.equal(again, loss) and all(torch.equal(logs[k], logs2[k]) for k in logs if k.startswith("loss_dim"))
        unmasked = PolicyModule(policy, pre, mask_padded_actions=False)
        lerobot_loss = policy.forward(dict(batch), noise=noise, time=time)[0]
        assert torch.allclose(unmasked.reduce(losses, is_pad)[0], lerobot_loss, atol=1e-6)
        assert not torch.allclose(loss, lerobot_loss)


def test_eval_refuses_a_training_start(runs, data, tmp_path, capsys):
    """A finetune whose demonstration started from LIBERO's fixed state 0 of the new task cannot be evaluated on
    state 0 (the message names it); other states pass the check. A run that recorded no starts is refused unless
    eval.check_starts=false."""
    from dataclasses import asdict

    from phase3_vla.starts import ContaminationError, StartRecord, fixed_states

    demo = _demo(9, 0, steps=6, size=64)
    demo.meta["instruction"] = NEW
    demo.meta["start"] = asdict(StartRecord(9, "fixed", 0, fixed_states(9)[0].tolist()))
    write_lerobot_dataset(tmp_path / "bad", "local/test_bad", [demo, _demo(9, 1, steps=6, size=64)])
    out = finetune.main([*runs["args"][:2], f"data.new_folder={tmp_path / 'bad'}", "run.name=contaminated"])
    with pytest.raises(SystemExit) as e:
        evaluation.main([*runs["args"][:2], "load=contaminated", "eval.episodes=3"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "task 9 state 0 (= training episode 0, fixed 0)" in err and "state 1" not in err
    folder = Path(out["adapter"])
    assert "none shared" in rollouts.check_starts(folder, {9: [1, 2, 3]}, True)
    info_path = Path(out["run_dir"]) / "export" / "info.json"
    info = json.loads(info_path.read_text())
    assert len(info["train_starts"]) == 2 and len(info["base_train_starts"]) == 2  # the base fixture's 2 demos
    info.pop("train_starts")
    info_path.write_text(json.dumps(info))
    with pytest.raises(ContaminationError, match="does not record where its training demonstrations started"):
        rollouts.check_starts(folder, {9: [1]}, True)
    assert "NOT checked" in rollouts.check_starts(folder, {9: [0]}, False)


@pytest.mark.slow
def test_lerobot_train_reads_the_dataset(data, tmp_path):
    """lerobot's own trainer, unchanged, on a dataset written by phase3_vla's writer (2 steps, offline)."""
    cfg = smoke_cfg().policy
    vlm = backbone.resolve_backbone(cfg.backbone, cfg.image_size, tmp_path)
    out = tmp_path / "lerobot-train"
    cmd = [sys.executable, "-m", "lerobot.scripts.lerobot_train", "--policy.type=smolvla", "--policy.push_to_hub=false",
           "--policy.device=cpu", f"--policy.vlm_model_name={vlm}", f"--policy.resize_imgs_with_padding=[{cfg.image_size},{cfg.image_size}]",
           f"--policy.chunk_size={cfg.chunk_size}", f"--policy.n_action_steps={cfg.n_action_steps}",
           f"--policy.tokenizer_max_length={cfg.tokenizer_max_length}", "--dataset.repo_id=local/test_base",
           f"--dataset.root={data / 'base'}", f"--output_dir={out}", "--steps=2", "--batch_size=2", "--eval_freq=0",
           "--wandb.enable=false", "--num_workers=0", "--log_freq=1"]
    p = subprocess.run(cmd, cwd=REPO, env=subprocess_env(HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    saved = out / "checkpoints" / "last" / "pretrained_model"
    assert (saved / "model.safetensors").exists()
    policy, pre, post, _ = rollouts.load_for_eval(saved, CPU)  # and our eval loads what it saved
    assert policy.config.chunk_size == cfg.chunk_size and rollouts.image_size_of(policy) == 64


def test_load_is_the_policy_key_and_old_spellings_still_work(tmp_path, capsys):
    """`load=` names the policy evaluate plays and the base finetune starts from (the root README's vocabulary);
    `eval.run=` and `finetune.base=` still work with a note, and configs saved under them load with their values."""
    from common.config import cli, load_saved_config
    from phase3_vla.config import READS

    assert cli(Phase3Config, "phase3/evaluate", ["eval.run=lora-x"], reads=READS["evaluate"]).load == "lora-x"
    assert cli(Phase3Config, "phase3/finetune", ["finetune.base=base-y"], reads=READS["finetune"]).load == "base-y"
    assert "`eval.run=` is now `load=`" in capsys.readouterr().err
    saved = tmp_path / "config.yaml"
    saved.write_text("eval:\n  run: lora-z\n  tasks: [9]\nfinetune:\n  base: ''\n")
    assert load_saved_config(Phase3Config, saved).load == "lora-z"
    with pytest.raises(SystemExit) as e:  # evaluate reads load, not another command's keys
        evaluation.main(["profile=smoke", "train.lr=5"])
    assert e.value.code == 2 and "train.lr" in capsys.readouterr().err


def test_new_task_words_are_tokens_no_base_instruction_has(tmp_path):
    """The guide's point about LoRA targets: with the cpu profile's tokenizer, "orange" and "juice" are tokens of the
    new instruction that no base instruction contains, so base training never trains their embeddings."""
    from transformers import AutoTokenizer

    cfg = load_config(Phase3Config, "phase3/train", ["profile=cpu"]).policy
    tok = AutoTokenizer.from_pretrained(backbone.generate_backbone(cfg.backbone, cfg.image_size, tmp_path / "bb"))
    items = ["alphabet soup", "cream cheese", "salad dressing", "bbq sauce", "ketchup", "tomato sauce", "butter",
             "milk", "chocolate pudding"]
    seen = {i for x in items for i in tok(f"pick up the {x} and place it in the basket\n")["input_ids"]}
    unseen = [tok.convert_ids_to_tokens(i) for i in tok(NEW + "\n")["input_ids"] if i not in seen]
    assert unseen == ["Ġorange", "Ġjuice"]


def test_save_episode_keeps_the_played_actions_beside_the_video(tmp_path):
    """A recorded episode is training data: its actions (T, 7) and states (T, 8) are saved next to its T frames;
    without frames (not recorded) nothing but the record is written."""
    import numpy as np
    from phase3_vla.rollouts import load_episode, save_episode
    acts = [np.full(7, t, np.float32) for t in range(3)]
    states = [np.full(8, -t, np.float32) for t in range(3)]
    played = {"success": True, "steps": 3, "frames": [np.zeros((16, 32, 3), np.uint8)] * 3, "states": states,
              "actions": acts}
    rec = save_episode(tmp_path, 9, 4, played, "pick", "run", {"s": 1})
    with np.load(rec["played"]) as z:
        assert z["actions"].shape == (3, 7) and z["actions"][2, 0] == 2 and z["state"][1, 0] == -1
    assert rec["video"].endswith(".mp4") and load_episode(tmp_path, 9, 4, {"s": 1})["played"] == rec["played"]
    rec = save_episode(tmp_path, 9, 5, {"success": False, "steps": 3, "frames": [], "states": [], "actions": []},
                       "p", "r", {})
    assert "played" not in rec and "video" not in rec
