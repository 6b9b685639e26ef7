"""Write the generated SmolVLM-style backbone folder a profile's policy is built from, and print where it is.

    python -m phase3_vla.make_backbone                     # the cpu profile's folder and its sizes
    python -m phase3_vla.make_backbone profile=smoke
    lerobot-train ... --policy.vlm_model_name=$(python -m phase3_vla.make_backbone | head -1)

Training does this by itself when the folder is missing; this command is for using the folder elsewhere (lerobot's
own trainer). What the folder holds: phase3_vla/backbone.py.
"""
from __future__ import annotations


from common.config import cli
from common.errors import command
from phase3_vla.backbone import describe, resolve_backbone, spec_of
from phase3_vla.config import GENERATE, READS, Phase3Config


@command
def main(argv: list[str] | None = None) -> str:
    cfg = cli(Phase3Config, "phase3/train", argv, __doc__, reads=READS["make_backbone"])
    folder = resolve_backbone(cfg.policy.backbone, cfg.policy.image_size, cfg.run.root)
    if cfg.policy.backbone.source == GENERATE:
        print(f"{folder}\n  {describe(spec_of(cfg.policy.backbone, cfg.policy.image_size))}")
    else:
        print(f"{folder} (a real backbone: its config loads)")
    return folder


if __name__ == "__main__":
    main()
