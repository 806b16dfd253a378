"""README's exit-status table lists every status the CLI can end with, and no other."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlcls.cli import report_errors
from mlcls.errors import MlclsError, UsageError

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "core" / "cli"
ARGPARSE_USAGE_STATUS = 2  # argparse's parser.error(): a bad flag or flag value


def _int_constants(node: ast.AST | None) -> set[int]:
    """The literal exit statuses an expression can evaluate to (``1 if failed else 0``)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _int_constants(node.body) | _int_constants(node.orelse)
    return set()


def statuses_in_code() -> set[int]:
    found = {ARGPARSE_USAGE_STATUS}
    for path in [*CLI.rglob("*.py"), REPO / "core" / "serving" / "runner.py"]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Return):
                found |= _int_constants(node.value)
            elif isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("sys.exit", "SystemExit", "exit", "os._exit") or \
                        name.endswith(".exit"):
                    for arg in node.args[:1]:
                        found |= _int_constants(arg)
    return found


def statuses_in_readme() -> set[int]:
    text = (REPO / "README.md").read_text()
    start = text.index("Exit status")
    table = text[start:].split("\n\n")[1]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}


def test_readme_lists_every_exit_status_the_cli_uses():
    in_code = statuses_in_code()
    assert {0, 1, 2, 130} <= in_code  # the parse found the statuses it should
    assert statuses_in_readme() == in_code


@pytest.mark.parametrize(("raised", "status"), [
    (UsageError("bad flag"), 2), (MlclsError("no model"), 1), (KeyboardInterrupt(), 130)])
def test_every_error_class_ends_with_its_documented_status(raised, status, capsys):
    def run() -> int:
        raise raised

    assert report_errors("mlcls", run) == status
    assert capsys.readouterr().err.startswith("mlcls: ")


@pytest.mark.parametrize("command", [["plugins"], ["devices"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(command):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        proc = subprocess.run([sys.executable, "-m", "mlcls.cli", *command], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
