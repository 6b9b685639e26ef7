"""What `python -m common.release` does besides copying a phase 3 run's export/ (common.release.HOOKS).

A phase 3 run points at other folders by absolute path, which would not exist on another machine:

- a base or full run's `policy/config.json` names its backbone folder (`vlm_model_name`, the generated SmolVLM
  config and tokenizer, no weights): the folder is copied into the release as `backbone/` and the config points
  at it relatively (`../backbone`, resolved against the policy folder by `policy.load_policy`);
- a LoRA run's `adapter/adapter_config.json` names its base policy: it must be released already (the release of
  the base run it was trained on), and the adapter points at that release's `policy/` relatively.

The project-format `model.safetensors` beside them is dropped: phase 3's loaders read lerobot's layout only, and
keeping both would double a release's size.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from common.errors import UserError
from common.runs import RELEASE_MANIFEST, Run, releases_dir


class ReleaseFilesError(UserError, RuntimeError):
    """A phase 3 run cannot be released as it is (its base policy or backbone is not where it should be)."""


def _release_of(run_dir: Path) -> Path | None:
    """The phase 3 release made from `run_dir`, if any."""
    want = Path(run_dir).resolve()  # the same folder, whichever path (symlink) each side recorded it under
    for m in sorted((releases_dir() / "phase3").glob(f"*/{RELEASE_MANIFEST}")):
        source = json.loads(m.read_text())["provenance"].get("source_run")
        if source and Path(source).resolve() == want:
            return m.parent
    return None


def prepare(run: Run, out: Path) -> dict:
    info = json.loads((out / "info.json").read_text())
    (out / "model.safetensors").unlink(missing_ok=True)
    extra: dict = {"kind": info["kind"]}
    policy_cfg = out / "policy" / "config.json"
    if policy_cfg.exists():
        cfg = json.loads(policy_cfg.read_text())
        vlm = Path(cfg["vlm_model_name"])
        if vlm.is_absolute():
            if not vlm.is_dir():
                raise ReleaseFilesError(f"{run.dir}: its backbone folder {vlm} is missing; it is needed in the release")
            shutil.copytree(vlm, out / "backbone")
            cfg["vlm_model_name"] = "../backbone"
            policy_cfg.write_text(json.dumps(cfg, indent=4))
            extra["backbone"] = f"generated SmolVLM folder, copied from {vlm}"
    adapter_cfg = out / "adapter" / "adapter_config.json"
    if adapter_cfg.exists():
        base_run = Path(info["base_run"])
        base = _release_of(base_run)
        if base is None:
            raise ReleaseFilesError(f"{run.dir} is a LoRA adapter of {base_run}, which has no release yet: release "
                                    f"the base first (python -m common.release {base_run})")
        cfg = json.loads(adapter_cfg.read_text())
        cfg["base_model_name_or_path"] = f"../../{base.name}/policy"
        adapter_cfg.write_text(json.dumps(cfg, indent=2))
        policy = out / "adapter" / "config.json"  # the adapter's own copy of the policy config names the backbone too
        cfg = json.loads(policy.read_text())
        cfg["vlm_model_name"] = f"../../{base.name}/backbone"
        policy.write_text(json.dumps(cfg, indent=4))
        extra["base_release"] = f"phase3/{base.name}"
    return extra
