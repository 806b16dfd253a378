"""The ``mlcls`` command: PaddleX's flags for prediction, plus subcommands.

    mlcls --pipeline NAME|YAML --input X [--device D] [--save_path DIR] ...
    mlcls --get_pipeline_config NAME [--save_path DIR]
    mlcls SUBCOMMAND ... (plugins, devices, dataset, train, eval, export, batch, serve-ray, tune)

One module per command (``predict`` for the flags above), each with ``build_parser()`` and
``main(argv) -> int``; every parser comes from ``arguments.new_parser`` (defaults shown in
``--help``) and every table is printed by ``table.print_table``. A subcommand's module is
imported only when it runs, so ``mlcls plugins`` and ``mlcls devices`` import neither Paddle
nor OpenCV.

Exit status: 0 success, 1 when any input failed (or the run could not start), 2 usage error,
130 on Ctrl-C, 141 when the reader of the output went away.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable

from ..errors import MlclsError, UsageError
from ..limits import printable
from . import predict
from .arguments import ArgumentParser

__all__ = ["SUBCOMMANDS", "build_parser", "main", "report_errors"]

# subcommand -> its module in this package
SUBCOMMANDS = {
    "plugins": "plugins",
    "devices": "devices",
    "dataset": "dataset",
    "train": "train",
    "eval": "eval",
    "export": "export",
    "batch": "batch",
    "serve-ray": "serve_ray",
    "tune": "tune",
}


def build_parser() -> ArgumentParser:
    """The parser of ``mlcls`` without a subcommand (``predict``'s)."""
    return predict.build_parser(tuple(SUBCOMMANDS))


def subcommand_module(name: str):
    return importlib.import_module(f"{__name__}.{SUBCOMMANDS[name]}")


class _PrintableFormatter(logging.Formatter):
    """Log lines with control characters escaped: a file name cannot forge output lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_PrintableFormatter("mlcls: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    if argv and argv[0] in SUBCOMMANDS:
        module = subcommand_module(argv[0])
        return report_errors(f"mlcls {argv[0]}", lambda: module.main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    return report_errors("mlcls", lambda: predict.run(parser, args, tuple(SUBCOMMANDS)))


def report_errors(prog: str, run: Callable[[], int]) -> int:
    """Run a command; mlcls's own errors become one line on stderr and the exit status:
    2 for usage errors, 1 for the others, 130 on Ctrl-C, 141 when the reader of the output
    goes away. Every subcommand goes through here, so a subcommand just raises."""
    try:
        status = run()
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except UsageError as exc:
        print(f"{prog}: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except MlclsError as exc:
        print(f"{prog}: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`mlcls devices | head`): stop quietly, as a command killed by
        # SIGPIPE does, and let nothing more be flushed to the closed pipe at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
