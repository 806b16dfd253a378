"""``mlcls dataset check|split|convert``: PaddleX's multi-label dataset format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from .arguments import ArgumentParser, new_parser
from .quiet import add_verbose_flag, paddle_quiet
from .table import print_table


def build_parser() -> ArgumentParser:
    p = new_parser("mlcls dataset", "Check, re-split or convert a multi-label dataset "
                   "(PaddleX's format).")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("check", help="validate a dataset and show its class histogram",
                       description="Validate a dataset (label.txt, train.txt, val.txt and "
                       "every image they list) and show its class histogram.")
    c.add_argument("dataset", help="folder with images/, label.txt, train.txt, val.txt")
    c.add_argument("--output", help="where histogram.png goes (default: DATASET/check)")
    c.add_argument("--no_decode", action="store_true", help="skip decoding every image")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    add_verbose_flag(c)
    s = sub.add_parser("split", help="pool train.txt and val.txt and split them again",
                       description="Pool train.txt and val.txt and split them again (the "
                       "previous lists are kept as *.txt.bak).")
    s.add_argument("dataset", help="dataset folder")
    s.add_argument("--train_percent", type=int, required=True,
                   help="share of the images for train.txt")
    s.add_argument("--val_percent", type=int, required=True,
                   help="share of the images for val.txt (the two add up to 100)")
    s.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    v = sub.add_parser("convert", help="COCO instance annotations -> label.txt, train.txt, "
                       "val.txt", description="Write label.txt, train.txt and val.txt from "
                       "COCO instance annotations.")
    v.add_argument("dataset", help="folder with images/ and annotations/instance_train.json, "
                   "annotations/instance_val.json (PaddleX's COCO layout)")
    v.add_argument("--train", help="COCO file for the train split (overrides the layout)")
    v.add_argument("--val", help="COCO file for the val split (overrides the layout)")
    v.add_argument("--images", help="folder the COCO file_name values are relative to "
                   "(default: DATASET/images)")
    return p


def check(args: argparse.Namespace) -> int:
    from ..training.dataset import class_histogram, load_dataset
    from ..training.plots import bar_chart

    ds = load_dataset(args.dataset, decode=not args.no_decode)
    hist = class_histogram(ds)
    out = Path(args.output) if args.output else ds.root / "check"
    png = None
    if ds.label_names:
        png = bar_chart(out / "histogram.png", ds.label_names, hist,
                        f"images per class ({ds.root.name})")
    counts = {name: len(split.paths) for name, split in ds.splits.items()}
    if args.json:
        print(json.dumps({"dataset": str(ds.root), "ok": not ds.errors,
                          "num_classes": ds.num_classes, "label_names": ds.label_names,
                          "images": counts, "histogram": hist,
                          "histogram_png": str(png) if png else None,
                          "problems": [vars(p) for p in ds.problems]}))
    else:
        for problem in ds.problems:
            print(problem)
        print(f"{ds.root}: {ds.num_classes} classes; " + ", ".join(
            f"{n} {name} images" for name, n in counts.items()))
        if ds.label_names:
            print_table(("id", "class", *hist), [
                (c, name, *(hist[s][c] for s in hist)) for c, name in enumerate(ds.label_names)],
                align="><" + ">" * len(hist))
        if png:
            print(f"histogram saved to {png}")
        errors, warnings = len(ds.errors), len(ds.problems) - len(ds.errors)
        print(f"{'FAILED' if errors else 'OK'}: {errors} error(s), {warnings} warning(s)")
    return 1 if ds.errors else 0


def convert(args: argparse.Namespace) -> int:
    from ..training.dataset_tools import convert_coco

    root = Path(args.dataset).expanduser()
    files = {"train": Path(args.train) if args.train else
             root / "annotations" / "instance_train.json",
             "val": Path(args.val) if args.val else root / "annotations" / "instance_val.json"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise UsageError(f"COCO annotation file(s) not found: {', '.join(missing)}")
    counts = convert_coco(files, Path(args.images) if args.images else root / "images", root)
    print(f"{root}: wrote label.txt, " + ", ".join(f"{split}.txt ({n} images)"
                                                   for split, n in counts.items()))
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "check":
        with paddle_quiet(args.verbose):
            return check(args)
    if args.action == "split":
        from ..training.dataset_tools import split_dataset

        counts = split_dataset(args.dataset, args.train_percent, args.val_percent, args.seed)
        print(f"{args.dataset}: " + ", ".join(f"{n} {s} images" for s, n in counts.items())
              + " (previous lists kept as *.txt.bak)")
        return 0
    return convert(args)
