"""Phase 3: VLA finetuning on LIBERO (SmolVLA through lerobot, full and LoRA), offline.

Public surface (what phases 4 and 5, notebooks and tests may import):

    config      Phase3Config, LiberoConfig, PolicyConfig, BackboneConfig, DemoCollectConfig, ...
    libero_env  prepare, make_env, task_info, frame_of (LIBERO-Object without network access)
    expert      PickPlaceExpert, run_episode, attempt_rng (the scripted demonstrator)
    staging     the staged demonstration files a collection writes before the datasets
    dataset     write_lerobot_dataset, open_dataset, dataset_identity (LeRobotDataset v3 on disk)
    frames      ChunkedFrames, open_training_set (frames with their action chunk, for training)
    backbone    resolve_backbone, generate_backbone (the SmolVLM-style folder SmolVLA is built from)
    policy      build_policy, load_policy, load_adapter, save_policy, wrap_lora, PolicyModule
    training    finding runs and releases (find_run, require_base, export_of), PolicyTrainer
    rollouts    evaluate (play a policy in LIBERO, episodes on disk), summarize, wilson

Entry points (`python -m phase3_vla.<name>`, used by other code only through `main`): collect, expert_eval, train,
finetune, eval, experiments, filmstrip, make_backbone, libero_info. See README.md.

Nothing is fetched from the Hugging Face hub unless the user asks (HF_HUB_OFFLINE=0): the default is set here,
when the package is first imported, and every hub call also passes `local_files_only=hub_offline()` so that the
rule holds even when huggingface_hub was imported (and read its environment) before this package.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def hub_offline() -> bool:
    """True unless the user turned the hub on (HF_HUB_OFFLINE=0), read now rather than at import."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().upper() in {"1", "ON", "YES", "TRUE"}
