"""Re-splitting a dataset and converting COCO instance annotations to PaddleX's multi-label
format. Lists that already exist are kept as ``<name>.bak`` before being replaced."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..results import atomic_write
from .dataset import LABEL_FILE, SPLITS


def _write_lines(path: Path, lines: list[str]) -> None:
    if path.exists():
        shutil.copy2(path, path.with_suffix(path.suffix + ".bak"))
    atomic_write(path, lambda fh: fh.write("".join(f"{line}\n" for line in lines)), mode="w")


def split_dataset(root: str | Path, train_percent: int, val_percent: int,
                  seed: int = 0) -> dict[str, int]:
    """Pool the lines of train.txt and val.txt, shuffle them and deal them out again."""
    root = Path(root).expanduser()
    if train_percent < 0 or val_percent < 0 or train_percent + val_percent != 100:
        raise UsageError(f"--train_percent ({train_percent}) and --val_percent "
                         f"({val_percent}) must be non-negative and add up to 100")
    lines: list[str] = []
    for name in SPLITS:
        path = root / f"{name}.txt"
        if path.is_file():
            lines += [ln for ln in path.read_text(encoding="utf-8-sig").splitlines()
                      if ln.strip()]
    lines = list(dict.fromkeys(lines))  # an image listed in both splits is dealt once
    if not lines:
        raise UsageError(f"{root}: neither train.txt nor val.txt lists any image")
    order = np.random.default_rng(seed).permutation(len(lines))
    n_train = round(len(lines) * train_percent / 100)
    parts = {"train": [lines[i] for i in order[:n_train]],
             "val": [lines[i] for i in order[n_train:]]}
    for name, part in parts.items():
        _write_lines(root / f"{name}.txt", part)
    return {name: len(part) for name, part in parts.items()}


def _load_coco(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable COCO annotation file ({exc})") from exc
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise UsageError(f"{path}: a COCO annotation file needs an '{key}' list")
    return data


def coco_to_lines(data: dict, cat_index: dict[int, int], image_dir: Path, root: Path,
                  where: Path) -> list[str]:
    """One '<path>\\t<vector>' line per image; images without annotations get all zeros."""
    present: dict[int, set[int]] = {img["id"]: set() for img in data["images"]}
    for ann in data.get("annotations") or []:
        if ann.get("image_id") not in present:
            raise UsageError(f"{where}: annotation {ann.get('id')} refers to image "
                             f"{ann.get('image_id')}, which is not in 'images'")
        if ann.get("category_id") not in cat_index:
            raise UsageError(f"{where}: annotation {ann.get('id')} has category "
                             f"{ann.get('category_id')}, which is not in 'categories'")
        present[ann["image_id"]].add(cat_index[ann["category_id"]])
    lines = []
    for img in data["images"]:
        rel = os.path.relpath(image_dir / img["file_name"], root).replace(os.sep, "/")
        vec = ",".join("1" if c in present[img["id"]] else "0" for c in range(len(cat_index)))
        lines.append(f"{rel}\t{vec}")
    return lines


def convert_coco(annotations: dict[str, Path], image_dir: Path, output: Path) -> dict[str, int]:
    """``annotations`` maps a split name to its COCO file. Category ids become contiguous
    class ids in ascending order of the COCO id; label.txt gets their names."""
    datasets = {split: _load_coco(path) for split, path in annotations.items()}
    first = next(iter(datasets.values()))
    cats = sorted(first["categories"], key=lambda c: c["id"])
    for split, data in datasets.items():
        if sorted(c["id"] for c in data["categories"]) != [c["id"] for c in cats]:
            raise UsageError(f"{annotations[split]}: its categories differ from "
                             f"{next(iter(annotations.values()))}'s")
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    output.mkdir(parents=True, exist_ok=True)
    _write_lines(output / LABEL_FILE, [f"{i} {c['name']}" for i, c in enumerate(cats)])
    counts = {}
    for split, data in datasets.items():
        lines = coco_to_lines(data, cat_index, image_dir, output, annotations[split])
        _write_lines(output / f"{split}.txt", lines)
        counts[split] = len(lines)
    return counts
