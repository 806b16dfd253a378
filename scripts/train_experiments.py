#!/usr/bin/env python
"""Short ``mlcls train`` runs that compare training recipes on two datasets built offline:

* ``digits``: composed handwritten digits (scikit-learn's scans, as the demo model's
  dataset: 64 px, one to three digits): mirroring changes the meaning;
* ``digits96``: the same scans at the issue's size: 96 px, two to four digits per image,
  one per quadrant (``--train 4000 --val 500`` for the issue's set; random scores give
  about 0.30 mAP);
* ``photos``: 2x2 mosaics of crops from ten photographs (scikit-image's samples in the
  reference image set), labelled with the photographs they show: mirroring does not change
  the meaning. Train crops come from the left 60% of each photograph, val crops from the rest.

    .venv/bin/python scripts/train_experiments.py DATASET RECIPE [RECIPE...]
        [--model PP-LCNet_x1_0_ML] [--epochs 6] [--train 1000] [--val 300]
        [--workdir build/experiments]

A RECIPE is a name and extra ``mlcls train`` flags, e.g. ``defaults`` or
``'lr1e-3:--learning_rate 1e-3'``. Prints the val mAP after every epoch and the chance level.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
PHOTOS = ["01_orig_astronaut.png", "02_orig_chelsea.png", "03_orig_coffee.png",
          "06_orig_rocket.jpg", "07_orig_motorcycle_left.png", "09_orig_grace_hopper.jpg",
          "10_orig_china.jpg", "11_orig_flower.jpg", "14_orig_coins.png",
          "15_orig_brick.png"]


def build_photos(root: Path, n_train: int, n_val: int, reference: Path, seed: int = 0):
    names = [p.split("_", 2)[2].rsplit(".", 1)[0] for p in PHOTOS]
    sources = [np.asarray(Image.open(reference / "images" / p).convert("RGB")) for p in PHOTOS]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "label.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names)))
    size, half = 64, 32
    for split, count, (lo, hi), rseed in (("train", n_train, (0.0, 0.6), seed + 1),
                                          ("val", n_val, (0.6, 1.0), seed + 2)):
        rng = np.random.default_rng(rseed)
        lines = []
        for i in range(count):
            picks = rng.choice(len(sources), rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]),
                               replace=False)
            canvas = np.full((size, size, 3), rng.integers(0, 256), np.uint8)
            for cell, k in zip(rng.permutation(4)[:len(picks)], picks):
                src = sources[k]
                h, w = src.shape[:2]
                side = int(rng.integers(min(h, w) // 6, min(h, w) // 3))
                x0 = int(rng.integers(int(lo * w), max(int(lo * w) + 1, int(hi * w) - side)))
                y0 = int(rng.integers(0, h - side))
                crop = Image.fromarray(src[y0:y0 + side, x0:x0 + side]).resize((half, half))
                cy, cx = divmod(int(cell), 2)
                canvas[cy * half:(cy + 1) * half, cx * half:(cx + 1) * half] = np.asarray(crop)
            rel = f"images/{split}_{i:05d}.png"
            Image.fromarray(canvas).save(root / rel)
            vec = ",".join("1" if c in set(picks.tolist()) else "0" for c in range(len(names)))
            lines.append(f"{rel}\t{vec}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


def build_digits96(root: Path, n_train: int, n_val: int, seed: int = 0, size: int = 96):
    """Two to four digits (repeats allowed, so two to four labels at most), each 30-46 px in
    its own quadrant of a tinted, noisy 96 px page; train and val draw from disjoint
    scans."""
    import cv2
    from build_demo_model import NAMES, digit_pools

    tr_pool, va_pool, tr_t, va_t = digit_pools(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "label.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(NAMES)))
    half = size // 2
    for split, count, pool, targets, rseed in (("train", n_train, tr_pool, tr_t, seed + 1),
                                               ("val", n_val, va_pool, va_t, seed + 2)):
        rng = np.random.default_rng(rseed)
        lines = []
        for i in range(count):
            bg = rng.uniform(170, 250) + rng.uniform(-15, 15, 3)
            canvas = (np.ones((size, size, 3), np.float32) * bg
                      + rng.normal(0, 12, (size, size, 3)))
            picks = rng.choice(len(pool), int(rng.integers(2, 5)))
            present = set()
            for idx, cell in zip(picks, rng.permutation(4)):
                side = int(rng.integers(30, 47))
                glyph = np.clip(cv2.resize(pool[idx], (side, side),
                                           interpolation=cv2.INTER_CUBIC), 0, 1)[..., None]
                cy, cx = divmod(int(cell), 2)
                y = cy * half + int(rng.integers(0, half - side + 1))
                x = cx * half + int(rng.integers(0, half - side + 1))
                ink = rng.uniform(0, 110, 3)
                region = canvas[y:y + side, x:x + side]
                canvas[y:y + side, x:x + side] = region * (1 - glyph) + ink * glyph
                present.add(targets[idx])
            rel = f"images/{split}_{i:05d}.png"
            Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(root / rel)
            vec = ",".join("1" if c in present else "0" for c in range(len(NAMES)))
            lines.append(f"{rel}\t{vec}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=["digits", "digits96", "photos"])
    p.add_argument("recipes", nargs="*", help="none: just build the dataset")
    p.add_argument("--model", default="PP-LCNet_x1_0_ML")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=300)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--workdir", default=str(REPO / "build" / "experiments"))
    p.add_argument("--reference", default=str(REPO.parent / "shared" / "reference"))
    args = p.parse_args()
    work = Path(args.workdir)
    data = work / f"{args.dataset}_{args.train}_{args.val}"
    if not (data / "val.txt").is_file():
        if args.dataset == "digits":
            from build_demo_model import build_dataset

            build_dataset(data, args.train, args.val, seed=0)
        elif args.dataset == "digits96":
            build_digits96(data, args.train, args.val)
        else:
            build_photos(data, args.train, args.val, Path(args.reference))
    from build_demo_model import chance_map

    print(f"{args.dataset}: {args.train} train / {args.val} val, chance mAP "
          f"{chance_map(data / 'val.txt'):.3f}", flush=True)
    for recipe in args.recipes:
        name, _, flags = recipe.partition(":")
        out = work / "runs" / f"{args.dataset}_{args.model}_{name}"
        cmd = [sys.executable, "-m", "mlcls.cli", "train", "--dataset", str(data), "--output",
               str(out), "--model", args.model, "--device", "cpu", "--epochs",
               str(args.epochs), "--image_size", str(args.image_size), *shlex.split(flags)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hist = json.loads((out / "history.json").read_text())
        curve = " ".join(f"{v:.3f}" for v in hist["val_map"])
        print(f"{name:<14} val mAP by epoch: {curve}  (best {hist['best_map']:.3f}; "
              f"final loss {hist['loss'][-1]:.3f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
