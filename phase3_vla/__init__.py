"""Phase 3: VLA finetuning on LIBERO: LIBERO offline (libero_env), the scripted LIBERO-Object expert (expert,
expert_eval), its demonstrations as LeRobotDatasets (collect, staging, dataset), SmolVLA on a local backbone
(backbone, policy), base training, LoRA/full finetuning and evaluation (train, finetune, eval, experiments).
See README.md.

Nothing is fetched from the Hugging Face hub unless the user asks (HF_HUB_OFFLINE=0): the default is set here,
when the package is first imported, and every hub call also passes `local_files_only=hub_offline()` so that the
rule holds even when huggingface_hub was imported (and read its environment) before this package.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def hub_offline() -> bool:
    """True unless the user turned the hub on (HF_HUB_OFFLINE=0), read now rather than at import."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().upper() in {"1", "ON", "YES", "TRUE"}
