"""The VLM backbone folder SmolVLA is built from, generated offline (or a real SmolVLM with hub access).

    python -m phase3_vla.make_backbone                     # write the cpu profile's folder, print where and its sizes
    python -m phase3_vla.make_backbone profile=smoke

    from phase3_vla.config import BackboneConfig
    from phase3_vla.backbone import resolve_backbone
    folder = resolve_backbone(BackboneConfig(), image_size=128)   # outputs/phase3/backbones/smolvlm-<digest>/

lerobot's SmolVLA takes its backbone by name (`SmolVLAConfig.vlm_model_name`) and calls
`AutoConfig.from_pretrained`, `AutoProcessor.from_pretrained` (whose tokenizer must expose
`fake_image_token_id` and `global_image_token_id`) and, only with `load_vlm_weights=True`, the weights. So
a folder holding a SmolVLM config, its processor configs and a tokenizer is enough to build SmolVLA with
random weights, and nothing has to be downloaded. `generate_backbone` writes such a folder with
transformers' own classes (`SmolVLMConfig`, `SmolVLMProcessor` = `SmolVLMImageProcessor` +
`SmolVLMVideoProcessor` + a fast tokenizer) so the files are exactly what transformers reads back:

    config.json                      model_type smolvlm: a small Llama text config + a smolvlm_vision config
    preprocessor_config.json         SmolVLMImageProcessor (no image splitting, side = policy.image_size)
    video_preprocessor_config.json   SmolVLMVideoProcessor
    processor_config.json            SmolVLMProcessor (image_seq_len = tokens per image)
    tokenizer.json + tokenizer_config.json + special_tokens_map.json
                                     a byte-level BPE trained with the `tokenizers` library on LIBERO's
                                     instructions, carrying SmolVLM's chat and image special tokens
    backbone.json                    the settings it was made from (and their digest, part of the folder name)

The folder is a pure function of the settings: generating it twice gives identical bytes (a test checks),
and a missing folder is regenerated where a saved policy expects it. With a real backbone (`source=` a hub
id such as HuggingFaceTB/SmolVLM2-500M-Video-Instruct, or a folder holding it) nothing is generated; when
it cannot be fetched the error says how to supply it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from common.errors import UserError
from phase3_vla import hub_offline
from phase3_vla.config import GENERATE, BackboneConfig


FORMAT_VERSION = 1
REAL_SMOLVLM = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"  # SmolVLA's backbone (lerobot's default)

# SmolVLM's special tokens. lerobot's SmolVLA reads fake_image_token_id and global_image_token_id from the
# processor's tokenizer; SmolVLMProcessor reads the image/end-of-utterance names; the row/col tokens are
# those of SmolVLM's split-image prompt (unused without splitting, kept so the vocabulary has SmolVLM's layout).
PAD, BOS = "<|endoftext|>", "<|im_start|>"
NAMED_TOKENS = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                "end_of_utterance_token": "<end_of_utterance>", "global_image_token": "<global-img>",
                "video_token": "<video>"}
SPECIAL_TOKENS = [PAD, BOS, *NAMED_TOKENS.values()] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]

# The BPE's training text: LIBERO-Object's ten instructions and a few words of the other LIBERO suites, so
# that instructions become short token sequences (tokenizer_max_length stays small). Any text still
# tokenizes (byte-level), and the new task's words are in the vocabulary with untrained embeddings, as a
# word the base model never read would be.
_ITEMS = ["alphabet soup", "cream cheese", "salad dressing", "bbq sauce", "ketchup", "tomato sauce", "butter",
          "milk", "chocolate pudding", "orange juice"]
CORPUS = ([f"pick up the {item} and place it in the basket" for item in _ITEMS]
          + ["put the bowl on the plate", "open the top drawer of the cabinet", "turn on the stove",
             "put the wine bottle on top of the cabinet", "push the plate to the front of the stove",
             "put the cream cheese in the bowl", "pick up the black bowl next to the ramekin and place it on the plate"])


class BackboneError(UserError, RuntimeError):
    """The backbone cannot be made or loaded; the message says what to do."""


def spec_of(cfg: BackboneConfig, image_size: int) -> dict:
    """What a generated folder depends on (not where it is written)."""
    spec = {k: v for k, v in asdict(cfg).items() if k not in ("source", "folder")}
    spec["text_intermediate"] = cfg.text_intermediate or 4 * cfg.text_hidden
    spec["vision_intermediate"] = cfg.vision_intermediate or 4 * cfg.vision_hidden
    return {"format_version": FORMAT_VERSION, "image_size": int(image_size), **spec}


def digest(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def default_folder(spec: dict, root: str | Path = "outputs") -> Path:
    from common.runs import outputs_root

    return outputs_root(root) / "phase3" / "backbones" / f"smolvlm-{digest(spec)}"


def tokens_per_image(spec: dict) -> int:
    side = spec["image_size"] // spec["patch_size"] // spec["scale_factor"]
    return side * side


def _tokenizer(vocab_size: int):
    """Byte-level BPE trained on CORPUS, wrapped as a transformers fast tokenizer with SmolVLM's tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    # extra_special_tokens makes `tokenizer.fake_image_token_id` etc. attributes, as in SmolVLM2's tokenizer.
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=NAMED_TOKENS["end_of_utterance_token"],
                                   pad_token=PAD, unk_token=PAD, extra_special_tokens=dict(NAMED_TOKENS),
                                   model_max_length=2048, model_input_names=["input_ids", "attention_mask"])


def generate_backbone(cfg: BackboneConfig, image_size: int, folder: str | Path) -> Path:
    """Write the SmolVLM-style folder for these settings into `folder` (atomically: built beside it in
    `<folder>.tmp`, then renamed). Returns the folder."""
    from transformers import SmolVLMConfig
    from transformers.models.smolvlm import SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    spec = spec_of(cfg, image_size)
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = _tokenizer(spec["vocab_size"])
    side = {"longest_edge": spec["image_size"]}
    # SigLIP's normalization (mean = std = 0.5); SmolVLA does its own [0,1] -> [-1,1] and never calls these
    # image processors, they only have to load.
    norm = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    processor = SmolVLMProcessor(SmolVLMImageProcessor(do_image_splitting=False, size=side, max_image_size=side, **norm),
                                 tok, SmolVLMVideoProcessor(size=side, max_image_size=side, **norm),
                                 image_seq_len=tokens_per_image(spec))
    processor.save_pretrained(tmp)
    head_dim = spec["text_hidden"] // spec["text_heads"]
    config = SmolVLMConfig(
        image_token_id=tok.convert_tokens_to_ids(NAMED_TOKENS["image_token"]), pad_token_id=tok.pad_token_id,
        scale_factor=spec["scale_factor"], tie_word_embeddings=False,
        vision_config={"hidden_size": spec["vision_hidden"], "intermediate_size": spec["vision_intermediate"],
                       "num_hidden_layers": spec["vision_layers"], "num_attention_heads": spec["vision_heads"],
                       "image_size": spec["image_size"], "patch_size": spec["patch_size"]},
        text_config={"model_type": "llama", "hidden_size": spec["text_hidden"],
                     "intermediate_size": spec["text_intermediate"], "num_hidden_layers": spec["text_layers"],
                     "num_attention_heads": spec["text_heads"], "num_key_value_heads": spec["text_kv_heads"],
                     "head_dim": head_dim, "vocab_size": len(tok), "max_position_embeddings": 2048,
                     "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "pad_token_id": tok.pad_token_id,
                     "tie_word_embeddings": False})
    config.save_pretrained(tmp)
    (tmp / "backbone.json").write_text(json.dumps({**spec, "digest": digest(spec)}, indent=1, sort_keys=True))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _matches(folder: Path, spec: dict) -> bool:
    marker = folder / "backbone.json"
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return saved.get("digest") == digest(spec) and all((folder / f).exists() for f in ("config.json", "tokenizer.json"))


def resolve_backbone(cfg: BackboneConfig, image_size: int, root: str | Path = "outputs") -> str:
    """What SmolVLAConfig.vlm_model_name should be: the generated folder (written if missing or stale), or
    the real backbone's hub id / folder after checking that transformers can load its config offline."""
    if cfg.source == GENERATE:
        spec = spec_of(cfg, image_size)
        folder = Path(cfg.folder).expanduser().resolve() if cfg.folder else default_folder(spec, root)
        if not _matches(folder, spec):
            generate_backbone(cfg, image_size, folder)
        return str(folder)
    check_real_backbone(cfg.source)
    return cfg.source


def regenerate_from(spec_file: Path, folder: Path) -> Path:
    """Rebuild a generated backbone from its recorded settings (`backbone.json`) into `folder`: a saved policy
    names its backbone by absolute path, and keeps a copy of backbone.json to survive a cleaned outputs/."""
    spec = json.loads(Path(spec_file).read_text())
    fields = {k: spec[k] for k in asdict(BackboneConfig()) if k in spec}
    cfg = BackboneConfig(source=GENERATE, folder=str(folder), **fields)
    if digest(spec_of(cfg, spec["image_size"])) != spec.get("digest"):
        raise BackboneError(f"{spec_file} does not describe a backbone this version can rebuild "
                            f"(format {spec.get('format_version')}, this code writes {FORMAT_VERSION})")
    return generate_backbone(cfg, spec["image_size"], folder)


def how_to_supply(name: str, key: str = "policy.backbone.source") -> str:
    return (f"With Hugging Face hub access, run with HF_HUB_OFFLINE=0 (the phase 3 commands default to offline) and "
            f"it is downloaded on first use. Without: on a machine with access run `huggingface-cli download {name} "
            f"--local-dir <folder>`, copy the folder here and pass {key}=<folder>; or build SmolVLA on a generated "
            f"backbone instead (policy.backbone.source={GENERATE} policy.init='', the smoke and cpu profiles).")


def check_real_backbone(name: str) -> None:
    """Fail early, in one line, when a real backbone's config cannot be read (offline, not in the HF cache)."""
    from transformers import AutoConfig

    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BackboneError(f"policy.backbone.source={name}: {path} has no config.json (not a SmolVLM folder)")
        return
    try:
        AutoConfig.from_pretrained(name, local_files_only=hub_offline())
    except (OSError, ValueError) as e:
        raise BackboneError(f"policy.backbone.source={name}: cannot load its config ({type(e).__name__}: "
                            f"{str(e).splitlines()[0]}). {how_to_supply(name)}") from None


def describe(spec: dict) -> str:
    return (f"text {spec['text_layers']}x{spec['text_hidden']} (heads {spec['text_heads']}/{spec['text_kv_heads']}), "
            f"vision {spec['vision_layers']}x{spec['vision_hidden']} at {spec['image_size']} px / patch "
            f"{spec['patch_size']}, {tokens_per_image(spec)} tokens per image, vocab <= {spec['vocab_size']}")
