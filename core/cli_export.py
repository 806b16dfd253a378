"""``mlcls export``: a training checkpoint -> a model directory the pipeline loads."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mlcls export", description="Export a checkpoint written by `mlcls train` to "
        "inference.json + inference.pdiparams + inference.yml (sigmoid in the graph).")
    p.add_argument("--checkpoint", required=True,
                   help="OUTPUT/epoch_N, OUTPUT/best_model, or a model.pdparams in them")
    p.add_argument("--output", required=True, help="the model directory to write")
    p.add_argument("--threshold", type=float, default=0.5, help="default 0.5")
    args = p.parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        p.error(f"--threshold {args.threshold} is outside [0, 1]")
    from .training.export import export_checkpoint

    target = export_checkpoint(args.checkpoint, args.output, args.threshold)
    print(f"exported {args.checkpoint} to {target}")
    return 0
