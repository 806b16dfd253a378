"""``mlcls batch``: tag a whole image collection on Ray Data, into Parquet files.

    mlcls batch --input SRC --output DST --pipeline NAME|YAML [--model_dir DIR] [--device D]
                [--engine E] [--batch_size N] [--threshold T] [--address ADDR]
                [--num_workers N] [--resume]

Exit status: 0 when every input was tagged, 1 when some failed (their rows carry the error) or
the job could not run, 2 usage error. Needs the ``ray`` extra. See docs/distributed.md.
"""

from __future__ import annotations

import sys

from .arguments import ArgumentParser, new_parser, positive, threshold


def build_parser() -> ArgumentParser:
    p = new_parser("mlcls batch", "Tag every image of a folder, glob, listing or object store "
                   "on Ray Data; one Parquet row per image (per page for multi-page files).")
    p.add_argument("--input", required=True, metavar="SRC",
                   help="folder (recursive), glob, .txt/.csv/.parquet listing of paths or "
                        "URLs, or a filesystem URI (s3://bucket/prefix)")
    p.add_argument("--output", required=True, metavar="DST",
                   help="folder or URI for the Parquet files (must be empty unless --resume)")
    p.add_argument("--pipeline", required=True,
                   help="multi_label_image_classification, or a pipeline YAML")
    p.add_argument("--model", help="official model name, or a model directory")
    p.add_argument("--model_dir", help="PaddleX inference-model directory (on every node)")
    p.add_argument("--device", help="cpu, gpu, npu, xpu, mlu or auto (Ray gives each worker "
                                    "its own device: no ids here)")
    p.add_argument("--engine", help="inference engine (auto or a name), where supported")
    p.add_argument("--fallback", action="store_true", default=None,
                   help="if the device cannot be used, take its fallback (devices.yaml)")
    p.add_argument("--batch_size", type=positive, default=8, help="images per batch")
    p.add_argument("--threshold", type=threshold,
                   help="score threshold in [0, 1] (or JSON per-class list/dict)")
    p.add_argument("--address", help="Ray cluster to run on (default: start Ray here)")
    p.add_argument("--num_workers", type=positive,
                   help="inference workers (default: one per device; on cpu one per node)")
    p.add_argument("--num_cpus", type=positive,
                   help="CPUs the local Ray may use (without --address; default: all)")
    p.add_argument("--resume", action="store_true",
                   help="DST holds an earlier run's rows: skip the inputs already written")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ..distributed.batch import BatchSettings, run_batch
    from ..errors import UsageError

    if args.address and args.num_cpus:
        raise UsageError("--num_cpus sizes a local Ray; a cluster (--address) has its own")
    settings = BatchSettings(pipeline=args.pipeline, model=args.model,
                             model_dir=args.model_dir, device=args.device, engine=args.engine,
                             batch_size=args.batch_size, threshold=args.threshold,
                             fallback=args.fallback)
    summary = run_batch(args.input, args.output, settings, resume=args.resume,
                        address=args.address, num_workers=args.num_workers,
                        num_cpus=args.num_cpus)
    if summary.inputs == 0:
        print(f"mlcls batch: nothing to do: all {summary.skipped} input(s) are already in "
              f"{summary.output}", file=sys.stderr)
        return 0
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0

