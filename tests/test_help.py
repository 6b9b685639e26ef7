"""`--help` of every command lists every config key with its default and its meaning.

The meaning is the field's comment in the dataclass source (`common.config.help_lines` / `field_comments`), so a
field added without a comment fails here, naming the command and the key.
"""
from __future__ import annotations

import importlib
import re

import pytest

# command module -> keys its --help must list (besides run.precision, which every command has)
COMMANDS = {
    "phase0_diffusion.train": ["train.lr", "train.betas", "model.unet.channels", "diffusion.edm.sigma_max",
                               "diffusion.ddpm.beta_end", "sample.sampler", "log.wandb_project"],
    "phase0_diffusion.evaluate": ["load", "num_samples", "sample.steps", "inception_weights"],
    "phase0_diffusion.sample": ["load", "sample.num", "sample.guidance"],
    "phase0_diffusion.classifier": ["in_channels", "width", "data.name", "train.weight_decay"],
    "phase1_world_model.collect": ["data.game", "data.folder", "episodes", "env.frame_skip", "repeat_prob"],
    "phase1_world_model.train": ["model.unet.out_channels", "model.edm.p_std", "model.sigma_max_train",
                                 "model.reward_end.max_class_weight", "monitor.every"],
    "phase1_world_model.evaluate": ["load", "regressor", "data.folder", "horizons", "denoise_steps_sweep"],
    "phase1_world_model.play": ["load", "mode", "denoise_steps"],
    "phase1_world_model.show_batch": ["data.game", "data.folder", "context", "scale"],
    "phase2_diffusion_forcing.train": ["model.window", "model.noise_dist", "model.frame.unet.dropout", "init_from"],
    "phase2_diffusion_forcing.compare": ["load", "denoise_steps", "ablate_stabilization", "ablate_uncertainty"],
    "phase3_vla.collect": ["base_tasks", "new_task", "libero.image_size", "expert.jitter"],
    "phase3_vla.expert_eval": ["tasks", "init_states", "expert.gain"],
    "phase3_vla.train": ["policy.backbone.vision_layers", "policy.freeze_vision_encoder", "train.betas"],
    "phase3_vla.finetune": ["finetune.lora.r", "finetune.train.weight_decay", "data.demos"],
    "phase3_vla.evaluate": ["eval.episodes", "eval.libero.gl"],
    "phase3_vla.experiments": ["experiments.new_task", "finetune.method", "load", "policy.chunk_size"],
}
# Phase 3's commands share one schema; each --help lists only the sections that command reads.
COMMANDS.update({
    "phase4_uwm.train_tokenizer": ["tokenizer.block_channels", "tokenizer.kl_weight", "data.demos", "val_frames"],
    "phase4_uwm.train": ["model.registers", "model.ddpm.num_timesteps", "clip.chunk", "objective", "init_from",
                         "data.video_only_fraction", "tokenizer_kind"],
    "phase4_uwm.compare": ["runs", "publish"],
    "phase4_uwm.train_dp": ["dp.down_dims", "dp.n_action_steps", "data.split"],
    "phase4_uwm.train_inverse": ["splits", "model.obs_dim", "clip.future_frames"],
    "phase4_uwm.train_diamond": ["model.unet.channels", "model.context", "sampler_steps"],
    "phase4_uwm.infer": ["load", "mode", "denoise_steps", "clips"],
    "phase4_uwm.evaluate": ["load", "method", "parts", "offline.clips", "eval.episodes", "eval.libero.max_steps",
                            "inverse_regressor", "forward_baseline", "publish"],
    "phase5_integration.plan": ["agent", "agent_load", "greedy", "model.kind", "model.scorer", "model.sampler.stabilization", "planner.method",
                                "planner.life_penalty", "game.seed", "game.env.frame_skip", "video"],
    "phase5_integration.evaluate": ["testbed", "game", "arms", "publish"],
    "phase5_integration.train_scorer": ["split", "tokenizer", "width", "train.max_steps", "data.demos"],
    "phase5_integration.choose": ["uwm", "scorer", "choose", "proposals", "denoise_steps", "eval.episodes",
                                  "eval.libero.max_steps", "name"],
    "phase5_integration.train_agent": ["world", "denoise_steps", "agent.horizon", "agent.lam", "train.batch_size"],
})
ABSENT = {"phase3_vla.evaluate": ["train.lr", "policy.chunk_size"], "phase3_vla.train": ["eval.episodes"],
          "phase3_vla.finetune": ["train.lr", "eval.episodes"]}

KEY_LINE = re.compile(r"^  (\S+) = (.*?)\s+# (\S.*)$")


def help_key_lines(module: str, capsys) -> list[str]:
    """The `  key = default  # meaning` lines printed by `python -m <module> --help`."""
    main = importlib.import_module(module).main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    head, sep, keys = out.partition("\nkeys (")
    assert sep, f"{module} --help printed no key list:\n{out}"
    return [line for line in keys.splitlines()[1:] if line.startswith("  ") and " = " in line]


@pytest.mark.parametrize("module", list(COMMANDS))
def test_help_gives_every_key_a_meaning(module: str, capsys):
    lines = help_key_lines(module, capsys)
    assert lines, f"{module} --help lists no keys"
    bare = [line.strip() for line in lines if not KEY_LINE.match(line)]
    assert not bare, f"{module} --help: keys without a meaning (add a comment to the dataclass field): {bare}"
    keys = [KEY_LINE.match(line).group(1) for line in lines]
    assert len(keys) == len(set(keys)), f"{module} --help lists a key twice"
    missing = [k for k in ["run.precision", *COMMANDS[module]] if k not in keys]
    assert not missing, f"{module} --help lacks {missing}"
    shown = [k for k in ABSENT.get(module, []) if k in keys]
    assert not shown, f"{module} --help lists keys of another command: {shown}"


def test_help_shows_the_defaults_the_parent_config_gives(capsys):
    """Nested sections show the command's defaults (phase 1's TrainConfig batch 32), not their class's own."""
    from phase1_world_model import train
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    assert "train.batch_size = 32 " in out and "model.edm.sigma_max = 5.0 " in out
