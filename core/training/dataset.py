"""PaddleX's multi-label dataset format: reading it and checking it.

    DIR/images/...          the images (any layout below DIR)
    DIR/label.txt           "<id> <name>" per line, ids 0..N-1
    DIR/train.txt, val.txt  "<path relative to DIR>\\t<N comma-separated 0/1 values>"

Every problem found is reported with its file and line, so that one pass fixes them all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from ..inputs import decode_bytes

SPLITS = ("train", "val")
LABEL_FILE = "label.txt"


@dataclass
class Problem:
    """One thing wrong with the dataset: where, and what."""

    file: str
    line: int | None  # 1-based; None for the file as a whole
    message: str
    severity: str = "error"  # or "warning": the dataset can still be trained on

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class Split:
    name: str
    paths: list[Path] = field(default_factory=list)  # absolute
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    lines: list[int] = field(default_factory=list)  # line of each sample in its list file


@dataclass
class Dataset:
    root: Path
    label_names: list[str]
    splits: dict[str, Split]
    problems: list[Problem]

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def read_label_file(path: Path, problems: list[Problem]) -> list[str]:
    """Class names by id; ids must be 0..N-1 (any order in the file)."""
    if not path.is_file():
        problems.append(Problem(path.name, None, "missing: it lists '<id> <name>' per class"))
        return []
    names: dict[int, str] = {}
    for no, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        first, _, name = line.partition(" ")
        name = name.strip()
        if not first.lstrip("-").isdigit() or not name:
            problems.append(Problem(path.name, no, f"expected '<id> <name>', got {raw!r}"))
            continue
        cid = int(first)
        if cid < 0:
            problems.append(Problem(path.name, no, f"class id {cid} is negative"))
        elif cid in names:
            problems.append(Problem(path.name, no, f"class id {cid} appears again "
                                    f"(already '{names[cid]}')"))
        elif name in names.values():
            problems.append(Problem(path.name, no, f"class name '{name}' appears twice",
                                    "warning"))
            names[cid] = name
        else:
            names[cid] = name
    if not names:
        problems.append(Problem(path.name, None, "no classes listed"))
        return []
    missing = sorted(set(range(max(names) + 1)) - set(names))
    if missing:
        problems.append(Problem(path.name, None, "class ids must run from 0 without gaps; "
                                f"missing {', '.join(map(str, missing[:10]))}"))
    return [names.get(i, f"class_{i}") for i in range(max(names) + 1)]


def _parse_line(raw: str) -> tuple[str, str] | None:
    if "\t" in raw:
        path, _, vec = raw.rpartition("\t")
    else:  # tolerate a space, as long as the path itself has none after the last one
        path, _, vec = raw.rpartition(" ")
    path, vec = path.strip(), vec.strip()
    return (path, vec) if path and vec else None


def read_split(root: Path, name: str, num_classes: int, problems: list[Problem],
               required: bool = True) -> Split:
    """Parse ``<name>.txt``; bad lines are reported and left out."""
    fname = f"{name}.txt"
    split = Split(name)
    path = root / fname
    if not path.is_file():
        if required:
            problems.append(Problem(fname, None, "missing: it lists '<image path>\\t<0/1 "
                                    "vector>' per image"))
        return split
    seen: dict[str, int] = {}
    rows = []
    for no, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not raw.strip():
            continue
        parsed = _parse_line(raw.rstrip("\r\n"))
        if parsed is None:
            problems.append(Problem(fname, no, "expected '<image path>\\t<comma-separated "
                                    f"0/1 values>', got {raw!r}"))
            continue
        rel, vec = parsed
        parts = [v.strip() for v in vec.split(",")]
        if any(v not in ("0", "1") for v in parts):
            bad = next(v for v in parts if v not in ("0", "1"))
            problems.append(Problem(fname, no, f"label vector has {bad!r}; only 0 and 1 are "
                                    "allowed"))
            continue
        if num_classes and len(parts) != num_classes:
            problems.append(Problem(fname, no, f"label vector has {len(parts)} values but "
                                    f"{LABEL_FILE} has {num_classes} classes"))
            continue
        if rel in seen:
            problems.append(Problem(fname, no, f"{rel} is listed again (first on line "
                                    f"{seen[rel]})"))
            continue
        seen[rel] = no
        image = (root / rel)
        if not image.is_file():
            problems.append(Problem(fname, no, f"image not found: {rel}"))
            continue
        if not any(p == "1" for p in parts):
            problems.append(Problem(fname, no, f"{rel} has no label (all zeros)", "warning"))
        split.paths.append(image.resolve())
        split.lines.append(no)
        rows.append([int(v) for v in parts])
    split.labels = np.array(rows, dtype=np.int64).reshape(len(rows), num_classes)
    return split


def decode_problems(split: Split, root: Path) -> list[Problem]:
    """Decode every image of ``split``; one problem per image that cannot be read."""
    out = []
    for path, no in zip(split.paths, split.lines):
        try:
            decode_bytes(path.read_bytes(), str(path))
        except (InputError, OSError) as exc:
            reason = exc.reason if isinstance(exc, InputError) else str(exc)
            out.append(Problem(f"{split.name}.txt", no,
                               f"{path.relative_to(root)} cannot be decoded: {reason}"))
    return out


def _drop_lines(split: Split, lines: set[int | None]) -> None:
    keep = [i for i, no in enumerate(split.lines) if no not in lines]
    split.paths = [split.paths[i] for i in keep]
    split.lines = [split.lines[i] for i in keep]
    split.labels = split.labels[keep]


def load_dataset(root: str | Path, decode: bool = False) -> Dataset:
    """Read a dataset and collect its problems (``decode``: also decode every image)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root}: dataset directory does not exist")
    problems: list[Problem] = []
    names = read_label_file(root / LABEL_FILE, problems)
    splits = {s: read_split(root, s, len(names), problems) for s in SPLITS}
    if decode:
        for split in splits.values():
            bad = decode_problems(split, root.resolve())
            problems.extend(bad)
            _drop_lines(split, {p.line for p in bad})
    _cross_checks(names, splits, problems)
    problems.sort(key=lambda p: (p.file, p.line or 0))
    return Dataset(root, names, splits, problems)


def _cross_checks(names: list[str], splits: dict[str, Split], problems: list[Problem]) -> None:
    for split in splits.values():
        if not split.paths and f"{split.name}.txt" not in {p.file for p in problems}:
            problems.append(Problem(f"{split.name}.txt", None, "no usable image listed"))
    train, val = splits.get("train"), splits.get("val")
    if train is not None and len(train.paths) and names:
        for cid in np.flatnonzero(train.labels.sum(0) == 0):
            problems.append(Problem("train.txt", None, f"class {cid} ('{names[cid]}') has no "
                                    "training image", "warning"))
    if val is not None and len(val.paths) and names:
        for cid in np.flatnonzero(val.labels.sum(0) == 0):
            problems.append(Problem("val.txt", None, f"class {cid} ('{names[cid]}') has no "
                                    "validation image: its AP cannot be measured", "warning"))
    if train is not None and val is not None:
        both = Counter(set(train.paths)) & Counter(set(val.paths))
        for path in sorted(both)[:20]:
            problems.append(Problem("val.txt", val.lines[val.paths.index(path)],
                                    f"{path.name} is in train.txt too: validation would "
                                    "measure memory", "warning"))


def class_histogram(dataset: Dataset) -> dict[str, list[int]]:
    """Images per class, per split."""
    return {name: ([int(v) for v in split.labels.sum(0)] if len(split.paths)
                   else [0] * dataset.num_classes)
            for name, split in dataset.splits.items()}
