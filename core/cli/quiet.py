"""Paddle's own chatter kept out of what ``mlcls train``, ``mlcls export`` and ``mlcls dataset``
print: its C++ log lines (glog's ``I1203 ...`` / ``W1203 ...``, oneDNN's notes) and the Python
warnings its modules raise at import or while training (``No ccache found``, BatchNorm's
``When training, we now always track global mean and variance``). They say nothing a user of
these commands can act on and bury mlcls's own lines. Paddle's errors (glog ``E``/``F``,
exceptions) still show; ``--verbose`` shows everything. Library callers of the trainer get
Paddle's warnings as Python gives them: only the commands decide this."""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import Iterator

# glog's levels: 0 INFO, 1 WARNING, 2 ERROR, 3 FATAL. Read once, when Paddle's library loads.
GLOG_LEVEL = "GLOG_minloglevel"
PADDLE_MODULES = r"paddle(\.|$)"  # paddle and its submodules, not paddlex or paddle2onnx


@contextlib.contextmanager
def paddle_quiet(verbose: bool = False) -> Iterator[None]:
    """Within this block, Paddle's warnings and its log lines below ERROR are not shown, unless
    ``verbose``. Enter it before Paddle is imported: glog reads its level only then. A level the
    user set in the environment is kept either way."""
    os.environ.setdefault(GLOG_LEVEL, "0" if verbose else "2")
    if verbose:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=PADDLE_MODULES)
        yield


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Paddle's own warnings and log lines")
