"""Draw a batch of dataset samples to a PNG, with the action taken on every frame written under it.

    python -m phase1_world_model.show_batch                       # Breakout train split -> <data>/media/batch_train.png
    python -m phase1_world_model.show_batch data.game=Pong split=test num=16 run.seed=3

One row per sample: the K context frames, each captioned with its action (the action taken while that
frame was shown), then the next frame, captioned with the sign-clipped reward and END when the step ends
a life or the game. Padded context (before the episode's first frame) is drawn grey and captioned "pad".
Looking at it is the quickest check that frames and actions line up: in Breakout, the paddle in the next
frame should have moved the way the last caption says.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.checkpoint import atomic_write
from common.config import cli
from common.errors import command
from phase1_world_model.config import ShowBatchConfig
from phase1_world_model.dataset import AtariWorldModelDataset

CAPTION = 14  # pixels of text band under each frame
GAP = 4  # pixels between frames
ARROW = 16  # extra gap before the next frame


def render(ds: AtariWorldModelDataset, indices: list[int], scale: int = 3) -> Image.Image:
    """The picture described in the module docstring, for dataset items `indices`."""
    K = ds.context
    h, w = ds.frames.shape[2] * scale, ds.frames.shape[3] * scale
    cell_w, cell_h = w + GAP, h + CAPTION + GAP
    img = Image.new("RGB", (K * cell_w + ARROW + w + GAP, len(indices) * cell_h + CAPTION), (24, 24, 24))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((2, 1), f"{ds.game} {ds.split}: context frames with the action taken on each  ->  next frame",
              fill=(220, 220, 220), font=font)

    def paste(frame: np.ndarray, x: int, y: int) -> None:
        pic = Image.fromarray(frame.transpose(1, 2, 0)).resize((w, h), Image.NEAREST)
        img.paste(pic, (x, y))

    for row, i in enumerate(indices):
        item = ds[i]
        y = CAPTION + row * cell_h
        for k in range(K):
            x = k * cell_w
            if item["mask"][k]:
                paste(item["obs"][k].numpy(), x, y)
                text = ds.action_meanings[int(item["act"][k])]
            else:
                draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(90, 90, 90))
                text = "pad"
            draw.text((x + 2, y + h + 1), text, fill=(255, 255, 0), font=font)
        x = K * cell_w + ARROW
        draw.text((x - ARROW + 2, y + h // 2 - 6), "->", fill=(220, 220, 220), font=font)
        paste(item["next_obs"].numpy(), x, y)
        caption = f"ep {int(item['episode'])} t+1={int(item['t']) + 1} r={int(item['reward']):+d}"
        draw.text((x + 2, y + h + 1), caption + (" END" if item["end"] else ""), fill=(120, 220, 255), font=font)
    return img


@command
def main(argv: list[str] | None = None) -> Path:
    cfg = cli(ShowBatchConfig, "phase1/show_batch", argv, __doc__)
    ds = AtariWorldModelDataset.for_game(cfg.data.game, cfg.run.root, cfg.data.folder, split=cfg.split,
                                         context=cfg.context)
    rng = np.random.default_rng(cfg.run.seed)
    indices = sorted(rng.choice(len(ds), size=min(cfg.num, len(ds)), replace=False).tolist())
    img = render(ds, indices, cfg.scale)
    out = Path(cfg.out) if cfg.out else ds.root / "media" / f"batch_{cfg.split}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: img.save(f, format="PNG"))
    print(f"show_batch: {len(indices)} samples of {ds} -> {out}")
    return out


if __name__ == "__main__":
    main()
