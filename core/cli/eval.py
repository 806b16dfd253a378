"""``mlcls eval``: mAP (integral and 11-point), per-class AP, and precision / recall / F1 at
the model's threshold on a dataset split; ``--calibrate`` finds per-class thresholds."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict

from ..errors import UsageError
from .arguments import ArgumentParser, new_parser
from .table import print_table


def build_parser() -> ArgumentParser:
    p = new_parser("mlcls eval", "Evaluate an exported model on a PaddleX-format multi-label "
                   "dataset.")
    p.add_argument("--model_dir", required=True, help="inference-model directory")
    p.add_argument("--dataset", required=True, help="dataset folder")
    p.add_argument("--split", default="val", choices=("val", "train"),
                   help="the dataset split to score")
    p.add_argument("--device", help="auto (default), cpu, gpu:0, npu:0...")
    p.add_argument("--batch_size", type=int, default=32, help="images per batch")
    p.add_argument("--threshold", type=float,
                   help="one threshold for all classes (default: the model's inference.yml)")
    p.add_argument("--calibrate", action="store_true",
                   help="find the F1-maximising threshold of each class on this split")
    p.add_argument("--write", action="store_true",
                   help="with --calibrate: store the thresholds in the model's inference.yml")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _finite(value):
    """NaN (a metric with nothing to measure) becomes null, so the output is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def print_report(report, names: list[str], header: str, calibrated=None) -> None:
    print(header)
    print(f"mAP (integral)   {_fmt(report.mAP)}")
    print(f"mAP (11-point)   {_fmt(report.mAP_11point)}")
    m, M = report.micro, report.macro
    print(f"at the threshold: micro P {m['precision']:.4f} R {m['recall']:.4f} "
          f"F1 {m['f1']:.4f}; macro P {M['precision']:.4f} R {M['recall']:.4f} "
          f"F1 {M['f1']:.4f}")
    print_table(("id", "class", "pos", "AP", "thresh", "prec", "recall", "F1"), [
        (c, name, report.positives[c], _fmt(report.per_class_ap[c]),
         _fmt(report.threshold[c]), _fmt(report.precision[c]), _fmt(report.recall[c]),
         _fmt(report.f1[c])) for c, name in enumerate(names)], align="><>>>>>>")
    if calibrated is not None:
        c = calibrated
        print(f"calibrated per-class thresholds: micro F1 {c.micro['f1']:.4f}, macro F1 "
              f"{c.macro['f1']:.4f} (measured on the split they were fitted to)")


def run(args: argparse.Namespace) -> int:
    from ..pipeline import create_pipeline
    from ..postprocess import threshold_vector
    from ..training.calibrate import calibrate, write_thresholds
    from ..training.dataset import load_dataset
    from ..training.metrics import evaluate
    from ..training.scoring import score_files

    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.write and not args.calibrate:
        raise UsageError("--write stores calibrated thresholds: add --calibrate")
    dataset = load_dataset(args.dataset)
    split = dataset.splits[args.split]
    bad = [p for p in dataset.errors if p.file in (f"{args.split}.txt", "label.txt")]
    if bad:
        listing = "\n  ".join(map(str, bad[:20]))
        raise UsageError(f"{args.dataset}: {len(bad)} problem(s) in the {args.split} split "
                         f"(run `mlcls dataset check`):\n  {listing}")
    pipeline = create_pipeline("multi_label_image_classification", device=args.device,
                               model_dir=args.model_dir)
    try:
        scores = score_files(pipeline, split.paths, args.batch_size)
        device = pipeline.device
    finally:
        pipeline.close()
    model_labels = pipeline.model.label_list
    if scores.shape[1] != dataset.num_classes:
        raise UsageError(f"{args.model_dir} outputs {scores.shape[1]} classes but "
                         f"{args.dataset} has {dataset.num_classes}")
    if model_labels and model_labels != dataset.label_names:
        print(f"mlcls eval: warning: the model's label_list differs from {args.dataset}'s "
              "label.txt; scoring by class id", file=sys.stderr)
    thr = threshold_vector(args.threshold if args.threshold is not None
                           else pipeline.model.threshold, dataset.num_classes)
    report = evaluate(scores, split.labels, thr)
    calibrated = thresholds = None
    if args.calibrate:
        thresholds = calibrate(scores, split.labels)
        calibrated = evaluate(scores, split.labels, thresholds)
        if args.write:
            try:
                path = write_thresholds(args.model_dir, thresholds)
            except OSError as exc:
                raise UsageError(f"{args.model_dir}: cannot write the thresholds into "
                                 f"inference.yml ({exc.strerror or exc})") from exc
            print(f"mlcls eval: per-class thresholds written to {path}", file=sys.stderr)
    if args.json:
        out = asdict(report)
        out.update({"model_dir": str(args.model_dir), "dataset": str(args.dataset),
                    "split": args.split, "device": device,
                    "label_names": dataset.label_names})
        if calibrated is not None:
            out["calibrated"] = {"threshold": thresholds, "micro": calibrated.micro,
                                 "macro": calibrated.macro, "f1": calibrated.f1}
        print(json.dumps(_finite(out), allow_nan=False))
    else:
        print_report(report, dataset.label_names,
                     f"mlcls eval: {report.images} {args.split} images, "
                     f"{dataset.num_classes} classes, {args.model_dir} on {device}", calibrated)
    return 0


def main(argv: list[str]) -> int:
    return run(build_parser().parse_args(argv))
