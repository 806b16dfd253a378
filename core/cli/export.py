"""``mlcls export``: a training checkpoint -> a model directory the pipeline loads; a
checkpoint or a model directory -> ``inference.onnx``."""

from __future__ import annotations

import argparse

from .arguments import ArgumentParser, new_parser
from .quiet import add_verbose_flag, paddle_quiet

DEFAULT_THRESHOLD = 0.5  # a checkpoint's export; a model directory keeps its own


def build_parser() -> ArgumentParser:
    p = new_parser(
        "mlcls export", "Export a checkpoint written by `mlcls train` to inference.json + "
        "inference.pdiparams + inference.yml (sigmoid in the graph), or, with --format onnx, "
        "a checkpoint or an inference-model directory to inference.onnx + inference.yml for "
        "ONNX runtimes (edge devices; mlcls's ONNX engines without Paddle).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint",
                        help="OUTPUT/epoch_N, OUTPUT/best_model, or a model.pdparams in them")
    source.add_argument("--model_dir", help="an inference-model directory (with --format onnx)")
    p.add_argument("--output", required=True, help="the model directory to write")
    p.add_argument("--format", choices=("paddle", "onnx"), default="paddle",
                   help="paddle: Paddle inference files; onnx: inference.onnx")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"score threshold written into a checkpoint's export (default: "
                   f"{DEFAULT_THRESHOLD}); a model directory keeps its own")
    add_verbose_flag(p)
    return p


def main(argv: list[str]) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        p.error(f"--threshold {args.threshold} is outside [0, 1]")
    if args.model_dir and args.format != "onnx":
        p.error("--model_dir is already a Paddle inference model; it exports with --format onnx")
    if args.model_dir and args.threshold is not None:
        p.error("--threshold applies to a checkpoint's export; edit the model's inference.yml")
    with paddle_quiet(args.verbose):
        if args.format == "onnx":
            return _export_onnx(args)
        from ..training.export import export_checkpoint

        target = export_checkpoint(args.checkpoint, args.output, _threshold(args))
    print(f"exported {args.checkpoint} to {target}")
    return 0


def _threshold(args: argparse.Namespace) -> float:
    return DEFAULT_THRESHOLD if args.threshold is None else args.threshold


def _export_onnx(args: argparse.Namespace) -> int:
    """Through the Paddle inference files: a checkpoint is exported to a scratch folder first,
    then converted like any model directory (the converter runs in a child process)."""
    import tempfile
    from pathlib import Path

    from ..backends.onnx_model import export_onnx_dir
    from ..model import load_model_dir

    if args.model_dir:
        target = export_onnx_dir(load_model_dir(args.model_dir), Path(args.output))
        print(f"exported {args.model_dir} to {target} (inference.onnx, inference.yml)")
        return 0
    from ..training.export import export_checkpoint

    out = Path(args.output).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.paddle.", dir=out.parent) as tmp:
        paddle_dir = export_checkpoint(args.checkpoint, Path(tmp) / "inference",
                                       _threshold(args))
        target = export_onnx_dir(load_model_dir(paddle_dir), out)
    print(f"exported {args.checkpoint} to {target} (inference.onnx, inference.yml)")
    return 0
