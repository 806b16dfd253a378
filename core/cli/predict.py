"""``mlcls --pipeline ... --input ...``: PaddleX's flags (plus ``--device``, ``--engine``) for
tagging images, ``--get_pipeline_config`` and ``--serve``: everything but the subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

from ..errors import UsageError
from ..limits import printable
from .arguments import ArgumentParser, new_parser, positive, threshold


def build_parser(subcommands: tuple[str, ...] = ()) -> ArgumentParser:
    p = new_parser(
        "mlcls", "Tag images with every label that applies, on any device."
        + (f" Subcommands: {', '.join(subcommands)} (mlcls SUBCOMMAND --help)."
           if subcommands else ""))
    p.add_argument("--pipeline", help="multi_label_image_classification, or a pipeline YAML")
    p.add_argument("--input", nargs="+",
                   help="image or PDF file(s), directory, or http(s) URL")
    p.add_argument("--device", help="auto (default), cpu, gpu:0, gpu:1,2, npu:0, xpu:0, mlu:0")
    p.add_argument("--fallback", action="store_true", default=None,
                   help="if the device cannot be used, take its fallback (devices.yaml)")
    p.add_argument("--use_hpip", action="store_true", default=False,
                   help="PaddleX's high-performance inference: in mlcls, the fastest engine "
                   "measured for the device (the same as --engine auto; docs/engines.md)")
    p.add_argument("--engine", help="inference engine: auto (default: devices.yaml's order "
                   "for the device), paddle, ... (mlcls devices lists them)")
    p.add_argument("--save_path", help="folder for <name>_res.json and <name>_res.<ext> "
                   "(default: results are only printed)")
    p.add_argument("--threshold", type=threshold,
                   help="score threshold in [0, 1] (or JSON per-class list/dict; default: "
                        "the pipeline YAML's, else the model's inference.yml)")
    p.add_argument("--model", help="official model name, or a model directory")
    p.add_argument("--model_dir", help="PaddleX inference-model directory")
    p.add_argument("--batch_size", type=positive,
                   help="images per batch (default: the pipeline YAML's, else 1)")
    p.add_argument("--get_pipeline_config", metavar="NAME",
                   help="write the default pipeline YAML to --save_path (default: .)")
    p.add_argument("--serve", action="store_true", help="serve the pipeline over HTTP")
    from ..serving.settings import add_serve_arguments

    add_serve_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="do not print each result")
    p.add_argument("--version", action="version", version=_version())
    return p


def _version() -> str:
    from .. import __version__

    return f"mlcls {__version__}"


def run(parser: argparse.ArgumentParser, args: argparse.Namespace,
        subcommands: tuple[str, ...] = ()) -> int:
    if args.get_pipeline_config:
        return _write_config(args.get_pipeline_config, args.save_path)
    if args.serve:
        return importlib.import_module("mlcls.serving").serve_from_args(args)
    if not args.input:
        parser.error("--input is required (or use --get_pipeline_config, --serve, "
                     f"or a subcommand: {', '.join(subcommands)})")
    if not args.pipeline:
        parser.error("--pipeline is required: multi_label_image_classification or a YAML")
    return _predict(args)


def _write_config(name: str, save_path: str | None) -> int:
    from ..config import PIPELINE_NAMES, default_config_text
    from ..results import atomic_write

    if name not in PIPELINE_NAMES:
        raise UsageError(f"unknown pipeline '{name}': use {' or '.join(PIPELINE_NAMES)}")
    target = Path(save_path or ".")
    if target.suffix.lower() not in (".yaml", ".yml"):
        target = target / f"{name}.yaml"
    text = default_config_text()
    atomic_write(target, lambda fh: fh.write(text), mode="w")
    print(f"The pipeline configuration is saved to {target}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..inputs import expand_inputs
    from ..pipeline import create_pipeline
    from ..progress import Progress, StderrRelay

    if args.save_path:
        check_save_path(args.save_path)
    pipeline = create_pipeline(args.pipeline, device=args.device, model=args.model,
                               model_dir=args.model_dir, batch_size=args.batch_size,
                               threshold=args.threshold, fallback=args.fallback,
                               engine=args.engine, use_hpip=args.use_hpip)
    items = list(expand_inputs(args.input if len(args.input) > 1 else args.input[0]))
    progress = Progress(len(items))
    failed = 0
    try:
        with StderrRelay(progress):  # warnings from C libraries go above the bar, not over it
            for res in pipeline.predict(items):
                progress.clear()
                if not res.ok:
                    failed += 1
                elif not args.quiet:
                    res.print()
                if res.ok and args.save_path:
                    res.save_all(args.save_path)
                progress.update(res.ok)
    finally:
        progress.close()
        pipeline.close()
    total = len(items)
    if failed or total > 1:
        where = f"; results in {printable(args.save_path)}" if args.save_path else ""
        print(f"mlcls: {total - failed} of {total} image(s) classified on {pipeline.device}, "
              f"{failed} failed{where}", file=sys.stderr)
    return 1 if failed else 0


def check_save_path(save_path: str) -> None:
    """Refuse, before any work, a --save_path that cannot take a set of results: an existing
    file (``/dev/null`` included), a name that looks like one file, a folder (or the nearest
    existing parent of one to be made) that cannot be written."""
    from ..inputs import IMAGE_SUFFIXES

    path = Path(save_path)
    shown = printable(save_path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix == ".json":
        raise UsageError(f"--save_path {shown}: looks like a file name ({suffix}); give a "
                         "folder, where every input gets <name>_res.json and <name>_res.<ext>")
    if path.exists() and not path.is_dir():
        raise UsageError(f"--save_path {shown}: exists and is not a folder")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--save_path {shown}: {printable(str(probe))} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mlcls-write-test-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UsageError(f"--save_path {shown}: cannot write in {printable(str(probe))} "
                         f"({exc.strerror or exc})") from None
