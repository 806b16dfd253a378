"""Tiny multi-label datasets in PaddleX's format, generated for the fine-tuning tests: each
image holds up to three coloured shapes (one class per shape kind)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

NAMES = ["square", "disc", "bar"]


def shape_image(present: set[int], rng: np.random.Generator, size: int = 32) -> Image.Image:
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(180, 256, 3)))
    draw = ImageDraw.Draw(img)
    for cid in sorted(present):
        x, y = (int(v) for v in rng.integers(0, size // 2, 2))
        s = size // 3
        colour = tuple(int(v) for v in rng.integers(0, 120, 3))
        if cid == 0:
            draw.rectangle([x, y, x + s, y + s], fill=colour)
        elif cid == 1:
            draw.ellipse([x, y, x + s, y + s], fill=colour)
        else:
            draw.rectangle([x, y, x + s, y + s // 4], fill=colour)
    return img


def make_dataset(root: Path, n_train: int = 24, n_val: int = 12, seed: int = 0,
                 size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "label.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(NAMES)))
    for split, count in (("train", n_train), ("val", n_val)):
        lines = []
        for i in range(count):
            # every class shows up in every split: cycle through the classes first
            present = {i % len(NAMES)} | {c for c in range(len(NAMES)) if rng.random() < 0.3}
            rel = f"images/{split}_{i:03d}.png"
            shape_image(present, rng, size).save(root / rel)
            vec = ",".join("1" if c in present else "0" for c in range(len(NAMES)))
            lines.append(f"{rel}\t{vec}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root
