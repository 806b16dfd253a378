"""What the benchmarks need, checked before any work, so that a clone without the fixture or an
optional extra gets one line saying what is missing and how to get it, not a traceback.

The default model and images are the parity fixture's (``shared/reference/`` beside the
checkout, as for the tests: ``tests/shared_paths.py``), or ``$MLCLS_REFERENCE_DIR``, or
``$MLCLS_SHARED_DIR/reference``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLCLS_SHARED_DIR") or REPO.parent / "shared")
REFERENCE = Path(os.environ.get("MLCLS_REFERENCE_DIR") or SHARED / "reference")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
DEMO_MODEL = REPO / "core" / "assets" / "demo_model"

_FIXTURE = (f"provide the parity fixture the default comes from ({REFERENCE}): put the "
            "project's shared/ folder beside the checkout, or set MLCLS_REFERENCE_DIR (or "
            "MLCLS_SHARED_DIR)")


def fail(message: str) -> None:
    """Stop the benchmark with ``message`` on stderr and exit status 2 (nothing was run)."""
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def need_model_dir(path: str | os.PathLike, flag: str = "--model_dir") -> Path:
    """``path`` must be a model directory (``inference.yml`` and the Paddle or ONNX files)."""
    path = Path(path).expanduser()
    if not (path / "inference.yml").is_file():
        fail(f"no model directory at {path} (no inference.yml there); pass {flag} DIR "
             f"(e.g. {flag} {DEMO_MODEL.relative_to(REPO)}, the shipped demo model) or "
             f"{_FIXTURE}")
    return path


def need_images(path: str | os.PathLike, flag: str = "--images", at_least: int = 1
                ) -> list[Path]:
    """``path`` must be a folder holding at least ``at_least`` image files; returns them,
    sorted."""
    path = Path(path).expanduser()
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                    and p.is_file()) if path.is_dir() else []
    if not images:
        what = "holds no image files" if path.is_dir() else "is not a folder"
        fail(f"{path} {what}; pass {flag} DIR (a folder of .jpg/.png/... images) or "
             f"{_FIXTURE}")
    if len(images) < at_least:
        fail(f"{path} holds {len(images)} image file(s); this benchmark needs at least "
             f"{at_least} (pass {flag} DIR with more)")
    return images


def need_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        fail(f"{what} not found: {path}; {_FIXTURE}")
    return path


def need_module(module: str, install: str, python: str | None = None) -> None:
    """``module`` must be importable (in this interpreter, or in ``python``'s environment);
    ``install`` says how to get it."""
    if python is None:
        found = importlib.util.find_spec(module) is not None
    else:
        code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
        try:
            found = subprocess.run([python, "-c", code], capture_output=True,
                                   timeout=60).returncode == 0
        except OSError as exc:
            fail(f"cannot run {python}: {exc.strerror or exc}")
    if not found:
        where = f" in {python}'s environment" if python else ""
        fail(f"needs {module}{where}, which is not installed: {install}")
