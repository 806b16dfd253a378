"""Every script in benchmarks/ answers --help, and without the parity fixture stops at once with
one line saying what it needs (exit status 2), never a traceback. Run from a copy of the
folder beside no shared/ fixture, as in a fresh clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py"))
NEEDS_FIXTURE = [s for s in SCRIPTS if s != "bench_train.py"]  # bench_train makes its images


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """benchmarks/ in a folder with no shared/ beside it and no fixture variables."""
    root = tmp_path_factory.mktemp("clone") / "repo"
    shutil.copytree(BENCHMARKS, root / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def run(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLCLS_REFERENCE_DIR", "MLCLS_SHARED_DIR")}
    return subprocess.run([sys.executable, *args], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_every_script_is_covered():
    assert SCRIPTS == ["bench_batch.py", "bench_pipeline.py", "bench_serving.py",
                       "bench_serving_memory.py", "bench_train.py"]
    listed = (BENCHMARKS / "README.md").read_text()
    assert all(f"`{name}`" in listed for name in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(clone, script):
    done = run(clone, f"benchmarks/{script}", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and "Traceback" not in done.stderr


@pytest.mark.parametrize("script", NEEDS_FIXTURE)
def test_without_the_fixture_it_says_what_it_needs(clone, script):
    done = run(clone, f"benchmarks/{script}")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    message = done.stderr.strip()
    assert message.startswith(f"{script}: ") and len(message.splitlines()) == 1, message
    assert "MLCLS_REFERENCE_DIR" in message and str(clone.parent / "shared") in message
