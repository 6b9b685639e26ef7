"""lerobot's SmolVLA on a local backbone: build, LoRA-wrap, save and reload it in lerobot's own formats.

    from phase3_vla.config import PolicyConfig
    from phase3_vla.dataset import open_dataset
    from phase3_vla.policy import build_policy
    ds = open_dataset("outputs/phase3/demos/cpu/lerobot/base")
    policy, pre, post = build_policy(PolicyConfig(), ds.meta, device=torch.device("cpu"))   # SmolVLAPolicy + processors
    action = post(policy.select_action(pre(observation)))       # (1, 7), what LIBERO takes

Everything here is lerobot's or peft's: `SmolVLAConfig` / `SmolVLAPolicy`, `make_pre_post_processors`
(SmolVLA's pipeline: batch dimension, newline, tokenizer, device, mean/std normalization of state and action,
and the unnormalizer after the model), `save_pretrained` / `from_pretrained`, `PreTrainedPolicy.wrap_with_peft`
with a `peft.LoraConfig` built here (lerobot 0.4.4's flags have no lora_alpha), `PeftModel.from_pretrained`.
What this module adds: the backbone folder (backbone.py), the features read from a LeRobotDataset, the
training wrapper `PolicyModule` (the project's Trainer convention), and error messages that say what to do.

Saved layouts (lerobot's):
    <dir>/config.json, model.safetensors, policy_preprocessor*.json/.safetensors, policy_postprocessor*   full policy
    <dir>/adapter_config.json (base_model_name_or_path = the base policy folder), adapter_model.safetensors,
          config.json (use_peft=true), processors                                                        LoRA adapter
Both load with lerobot (`SmolVLAPolicy.from_pretrained`, or `make_policy` with `pretrained_path` + `use_peft`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from common.errors import UserError
from common.runs import ArtifactNotFoundError
from phase3_vla import hub_offline
from phase3_vla.backbone import BackboneError, how_to_supply, regenerate_from, resolve_backbone
from phase3_vla.config import GENERATE, LORA_TARGETS, AdapterConfig, PolicyConfig


class BaseRunMissingError(UserError, FileNotFoundError):
    """A LoRA adapter's base policy is gone; the message names the command that makes it."""


def policy_features(meta) -> tuple[dict, dict]:
    """(input_features, output_features) of a LeRobotDataset, as lerobot's make_policy derives them."""
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.utils import dataset_to_policy_features

    feats = dataset_to_policy_features(meta.features)
    out = {k: f for k, f in feats.items() if f.type is FeatureType.ACTION}
    return {k: f for k, f in feats.items() if k not in out}, out


def smolvla_config(p: PolicyConfig, vlm_model_name: str, input_features: dict, output_features: dict,
                   device: torch.device):
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    real_backbone = p.backbone.source != GENERATE
    return SmolVLAConfig(
        vlm_model_name=vlm_model_name,
        # A real backbone without a SmolVLA init starts from its pretrained weights (lerobot's recipe for a
        # new SmolVLA); with an init, those weights come from the init's own file instead.
        load_vlm_weights=real_backbone and not p.init,
        input_features=input_features, output_features=output_features, device=device.type,
        chunk_size=p.chunk_size, n_action_steps=p.n_action_steps, num_steps=p.num_steps,
        resize_imgs_with_padding=(p.image_size, p.image_size),
        num_vlm_layers=p.num_vlm_layers or -1,  # lerobot keeps the first n layers when n > 0
        num_expert_layers=p.num_expert_layers or -1, expert_width_multiplier=p.expert_width_multiplier,
        self_attn_every_n_layers=p.self_attn_every_n_layers, tokenizer_max_length=p.tokenizer_max_length,
        train_expert_only=p.train_expert_only, freeze_vision_encoder=p.freeze_vision_encoder,
        **({"max_state_dim": p.max_state_dim} if p.max_state_dim else {}),
        **({"max_action_dim": p.max_action_dim} if p.max_action_dim else {}),
        push_to_hub=False)


def build_policy(p: PolicyConfig, meta, device: torch.device, root: str | Path = "outputs"):
    """A new SmolVLAPolicy for a dataset's features (random init, or `p.init`'s weights), with lerobot's
    processors normalizing by the dataset's statistics. Returns (policy, preprocessor, postprocessor)."""
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    vlm = resolve_backbone(p.backbone, p.image_size, root)
    cfg = smolvla_config(p, vlm, *policy_features(meta), device)
    with _quiet("Reducing the number of VLM layers"):
        if p.init:
            try:
                policy = SmolVLAPolicy.from_pretrained(p.init, config=cfg, local_files_only=hub_offline())
            except (OSError, ValueError) as e:  # offline / not cached / no such folder
                raise BackboneError(f"policy.init={p.init}: cannot load SmolVLA weights ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0]}). {how_to_supply(p.init, 'policy.init')}") from None
        else:
            policy = SmolVLAPolicy(cfg)
    freeze_unused(policy)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    return policy.to(device), pre, post


def freeze_unused(policy) -> None:
    """Freeze what SmolVLA never uses: the last VLM layer's query, output and MLP (only its keys and values
    feed the action expert) and the final norm. lerobot's `set_requires_grad` means to freeze the last layer
    and the norm when the VLM trains, but its name patterns (`text_model.model.layers.N.`) do not match
    transformers 4.57's SmolVLM names (`model.text_model.layers.N.`), so only the LM head ends up frozen.
    These parameters get no gradient either way (a test checks), so training is unchanged; what changes
    is that the trainable-parameter counts are true, and DDP finds no unused parameter."""
    text = policy.model.vlm_with_expert.get_vlm_model().text_model
    for name, param in text.layers[-1].named_parameters():
        if not name.startswith(("self_attn.k_proj", "self_attn.v_proj", "input_layernorm")):
            param.requires_grad_(False)
    text.norm.requires_grad_(False)


def trainable_and_total(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(q.numel() for q in params if q.requires_grad), sum(q.numel() for q in params)


def base_policy(model: nn.Module):
    """The SmolVLAPolicy inside a peft wrapper (or the policy itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# ------------------------------------------------------------------------------------------------ LoRA

def lora_targets(policy, spec: str) -> str:
    """The target regex of `finetune.lora.target_modules`: a name of LORA_TARGETS, "" (lerobot's), or a regex."""
    spec = LORA_TARGETS.get(spec, spec)
    return spec or policy._get_default_peft_targets()["target_modules"]


def lora_config(policy, s: AdapterConfig):
    """peft's LoraConfig; target modules default to lerobot's choice for SmolVLA (its
    `_get_default_peft_targets`: the action expert's q/v projections + state/action/time projections)."""
    from peft import LoraConfig

    targets = lora_targets(policy, s.target_modules)
    return LoraConfig(r=s.r, lora_alpha=s.alpha or 2 * s.r, lora_dropout=s.dropout, target_modules=targets,
                      modules_to_save=list(s.modules_to_save) or None, bias="none")


def wrap_lora(policy, s: AdapterConfig):
    """lerobot's `wrap_with_peft` (freezes the policy, injects the adapters, marks config.use_peft). It refuses a
    policy without `config.pretrained_path`: load the base with `load_policy`, which sets it."""
    # SmolVLA also warns "Training SmolVLA from scratch using PEFT" whenever load_vlm_weights is false; here the
    # weights are the base run's (config.pretrained_path), so the warning does not apply.
    with _quiet("from scratch using PEFT"):
        return policy.wrap_with_peft(peft_config=lora_config(policy, s))


# ------------------------------------------------------------------------------------------------ save / load

def _replace_dir(tmp: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def save_policy(model: nn.Module, pre, post, folder: str | Path) -> Path:
    """lerobot's layout into `folder`, atomically (built in `<folder>.tmp`, renamed). A full policy gets
    config + model.safetensors; a peft model only its adapter (+ the policy config, as lerobot-train writes
    it, so lerobot's make_policy can load it). The generated backbone's settings are copied beside them."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    policy = base_policy(model)
    if policy is not model:
        policy.config.save_pretrained(tmp)
    pre.save_pretrained(tmp)
    post.save_pretrained(tmp)
    spec = Path(policy.config.vlm_model_name) / "backbone.json"
    if spec.exists():
        shutil.copy(spec, tmp / "backbone.json")
    _replace_dir(tmp, folder)
    return folder


def _processors(folder: Path, cfg, device: torch.device):
    """The saved pre/postprocessors; the tokenizer is read from the config's (resolved) backbone folder, not
    from the path saved with them, so a policy moved to another machine (a release) still finds it."""
    from lerobot.policies.factory import make_pre_post_processors

    return make_pre_post_processors(cfg, pretrained_path=str(folder), preprocessor_overrides={
        "device_processor": {"device": device.type}, "tokenizer_processor": {"tokenizer_name": cfg.vlm_model_name}})


def _config(folder: Path):
    """lerobot's saved policy config, with a relative `vlm_model_name` (a release's `../backbone`) resolved
    against the folder it was saved in."""
    from lerobot.configs.policies import PreTrainedConfig

    cfg = PreTrainedConfig.from_pretrained(folder)
    vlm = Path(cfg.vlm_model_name)
    if not vlm.is_absolute() and cfg.vlm_model_name.startswith("."):
        cfg.vlm_model_name = str((folder / vlm).resolve())
    return cfg


def load_policy(folder: str | Path, device: torch.device):
    """A saved full policy (ours or lerobot-train's `pretrained_model/`) with its processors, in eval mode.
    `config.pretrained_path` is set to the folder, which lerobot's wrap_with_peft requires."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    folder = Path(folder).resolve()
    if not (folder / "model.safetensors").exists():
        raise ArtifactNotFoundError(f"{folder} holds no saved policy (no model.safetensors)")
    cfg = _config(folder)
    vlm = Path(cfg.vlm_model_name)
    if vlm.is_absolute() and not vlm.is_dir():
        if not (folder / "backbone.json").exists():
            raise BackboneError(f"{folder}: its backbone {vlm} is missing and no backbone.json is saved to rebuild it")
        regenerate_from(folder / "backbone.json", vlm)
    cfg.device = device.type
    with _quiet("Reducing the number of VLM layers", "Loading weights from local directory"):
        policy = SmolVLAPolicy.from_pretrained(folder, config=cfg)
    freeze_unused(policy)  # from_pretrained builds the policy anew, with lerobot's requires_grad
    policy.config.pretrained_path = folder
    return (policy, *_processors(folder, cfg, device))


def adapter_base(folder: str | Path) -> Path:
    """The base policy folder an adapter belongs to (a relative path, as in a release, is relative to it)."""
    base = Path(json.loads((Path(folder) / "adapter_config.json").read_text())["base_model_name_or_path"])
    return base if base.is_absolute() else (Path(folder) / base).resolve()


def load_adapter(folder: str | Path, device: torch.device, make_base: str = ""):
    """A saved LoRA adapter put back on its base policy (the folder recorded in adapter_config.json), with the
    adapter run's processors. `make_base` is the command quoted when the base is missing."""
    from peft import PeftModel

    folder = Path(folder).resolve()
    base = adapter_base(folder)
    if not (base / "model.safetensors").exists():
        raise BaseRunMissingError(
            f"{folder} is a LoRA adapter of the base policy {base}, which does not exist any more. "
            f"Make it again with: {make_base or 'python -m phase3_vla.train (the same profile and run.name)'}")
    policy, _, _ = load_policy(base, device)
    model = PeftModel.from_pretrained(policy, folder).to(device).eval()
    return (model, *_processors(folder, _config(folder), device))


# ------------------------------------------------------------------------------------------------ training

class PolicyModule(nn.Module):
    """SmolVLA + its preprocessor in the project's Trainer convention: `forward(batch, rng) -> (loss, logs)`.

    The flow-matching noise and time come from the Trainer's StepRNG (functions of seed and step), so a
    resumed run draws what the uninterrupted run would have: time ~ Beta(1.5, 1) (lerobot's sample_time,
    t * 0.999 + 0.001), drawn by inversion as u^(1/1.5) since Beta(a, 1) has CDF x^a.

    The loss is SmolVLA's flow-matching MSE, (B, chunk, max_action_dim) per element, from lerobot's own
    `VLAFlowMatching.forward` after lerobot's own input preparation. With `mask_padded_actions` (the default)
    it is averaged over the real action steps and the real action dimensions only: steps a chunk padded past
    the episode's end (`action_is_pad`) and the dimensions SmolVLA pads the 7-d action to (max_action_dim,
    32 in lerobot) do not enter it. lerobot 0.4.4 does neither: its `forward` reads `actions_id_pad` (sic),
    so padded steps stay in, and it averages over all 32 dimensions, of which 25 are zero padding. Without
    the mask this module reproduces lerobot's loss (a test checks). Logs: the loss per real action dimension
    (`loss_dim/<name>`), the unmasked loss lerobot would report, and the fraction of padded steps.

    With `adapter_only` (LoRA), `state_dict` / `load_state_dict` hold only the adapter weights (peft's
    get/set_peft_model_state_dict): checkpoints and export/model.safetensors stay adapter-sized, and the
    frozen base always comes from the base run.
    """

    def __init__(self, model: nn.Module, preprocessor, adapter_only: bool = False, mask_padded_actions: bool = True,
                 action_names: list[str] | None = None):
        super().__init__()
        self.model = model
        self.preprocessor = preprocessor  # lerobot's pipeline (not a Module): tokenizer, device, normalization
        self.adapter_only, self.mask_padded_actions = adapter_only, mask_padded_actions
        self.cfg = base_policy(model).config
        self.action_dim = self.cfg.action_feature.shape[0]
        self.action_names = list(action_names or [f"a{i}" for i in range(self.action_dim)])

    def elementwise(self, batch: dict, noise: torch.Tensor, time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(losses (B, chunk, max_action_dim), is_pad (B, chunk) bool) of a preprocessed batch: lerobot's
        SmolVLAPolicy.forward up to, not including, its reduction."""
        from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

        policy = base_policy(self.model)
        if policy.config.adapt_to_pi_aloha:
            raise NotImplementedError("adapt_to_pi_aloha is not supported by PolicyModule")
        images, img_masks = policy.prepare_images(batch)
        state = policy.prepare_state(batch)
        actions = policy.prepare_action(batch)
        losses = policy.model.forward(images, img_masks, batch[OBS_LANGUAGE_TOKENS],
                                      batch[OBS_LANGUAGE_ATTENTION_MASK], state, actions, noise, time)
        is_pad = batch.get("action_is_pad")
        if is_pad is None:
            is_pad = torch.zeros(losses.shape[:2], dtype=torch.bool, device=losses.device)
        assert batch[ACTION].shape[-1] == self.action_dim
        return losses, is_pad

    def reduce(self, losses: torch.Tensor, is_pad: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The training loss of per-element losses, and its logs (see the class docstring)."""
        real = losses[:, :, :self.action_dim]
        keep = (~is_pad).to(losses.dtype)[:, :, None]  # (B, chunk, 1)
        n = keep.sum().clamp_min(1.0)
        per_dim = (real * keep).sum((0, 1)) / n  # (A,)
        logs = {f"loss_dim/{name}": v for name, v in zip(self.action_names, per_dim.detach())}
        logs["loss_unmasked"] = losses.detach().mean()  # what lerobot 0.4.4 reports and trains on
        logs["padded_steps"] = is_pad.float().mean()
        loss = per_dim.mean() if self.mask_padded_actions else losses.mean()
        return loss, logs

    def forward(self, batch: dict, rng) -> tuple[torch.Tensor, dict]:
        batch = self.preprocessor(batch)
        noise = rng.randn(self.cfg.chunk_size, self.cfg.max_action_dim)  # (B, chunk, max_action_dim)
        time = rng.rand().pow(1 / 1.5) * 0.999 + 0.001  # (B,)
        return self.reduce(*self.elementwise(batch, noise, time))

    def state_dict(self, *args, **kwargs):
        if not self.adapter_only:
            return super().state_dict(*args, **kwargs)
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(self.model)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if not self.adapter_only:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state_dict)
        if strict and result.unexpected_keys:
            raise RuntimeError(f"adapter checkpoint has unexpected keys: {result.unexpected_keys[:3]}")
        return result


@contextlib.contextmanager
def _quiet(*fragments: str):
    """Drop the lines lerobot prints or logs that contain these fragments (noise, or misleading here)."""
    import io

    class Drop(logging.Filter):
        def filter(self, record):
            return not any(f in record.getMessage() for f in fragments)

    root, flt, buf = logging.getLogger(), Drop(), io.StringIO()
    root.addFilter(flt)
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        root.removeFilter(flt)
        kept = [line for line in buf.getvalue().splitlines() if not any(f in line for f in fragments)]
        if kept:
            print("\n".join(kept))
