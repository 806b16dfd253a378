"""The ``mlcls`` command as a package (``mlcls.cli``): every parser shows its defaults in
``--help``, and every table goes through the one printer."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from mlcls.cli import SUBCOMMANDS, build_parser, subcommand_module
from mlcls.cli.arguments import shows_default
from mlcls.cli.table import format_table


def _parsers(parser: argparse.ArgumentParser, name: str):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from _parsers(subparser, f"{name} {sub}")


def every_parser():
    yield from _parsers(build_parser(), "mlcls")
    for sub in SUBCOMMANDS:
        yield from _parsers(subcommand_module(sub).build_parser(), f"mlcls {sub}")


PARSERS = dict(every_parser())


def test_every_subcommand_and_action_has_a_parser():
    wanted = {"mlcls", *(f"mlcls {sub}" for sub in SUBCOMMANDS),
              *(f"mlcls dataset {action}" for action in ("check", "split", "convert"))}
    assert wanted <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_shows_every_default(name):
    """Each option with a default other than None/False/empty says it in its --help line, and
    the help renders (no stray % in a help text)."""
    parser = PARSERS[name]
    formatter = parser._get_formatter()
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or not shows_default(action):
            continue
        text = formatter._expand_help(action)
        if "default" not in text or str(action.default) not in text:
            missing.append(f"{'/'.join(action.option_strings) or action.dest}: {text!r}")
    assert not missing, f"{name} --help does not show these defaults: {missing}"
    assert parser.format_help()


def test_help_of_a_subcommand_shows_its_defaults_on_the_command_line():
    done = subprocess.run([sys.executable, "-m", "mlcls.cli", "tune", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "(default: cpu)" in done.stdout and "(default: 6.0)" in done.stdout


def test_help_says_a_default_only_once():
    text = PARSERS["mlcls export"].format_help()
    assert text.count("(default: 0.5)") == 1 and text.count("(default: paddle)") == 1


def test_table_pads_columns_and_aligns_numbers():
    lines = format_table(("id", "class", "train"), [(0, "square", 9), (10, "bar", 120)],
                         align="><>", indent="  ")
    assert lines == ["  id  class   train",
                     "   0  square      9",
                     "  10  bar       120"]
    assert format_table(("a", "b"), [("x", "")]) == ["a  b", "x"]  # no trailing blanks
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        format_table(("a", "b"), [("x",)])


def test_the_subcommands_print_tables_only_through_the_printer():
    """No command module formats a column by hand (``:<{width}``, ``.ljust(``...): every table
    goes through mlcls.cli.table."""
    import inspect
    import re

    hand_made = re.compile(r"\.ljust\(|\.rjust\(|:[<>]\{|:[<>]\d|:\d+s\}")
    for sub in SUBCOMMANDS:
        source = inspect.getsource(subcommand_module(sub))
        assert not hand_made.search(source), f"mlcls {sub} pads columns itself"


@pytest.mark.parametrize("module", ["mlcls", "mlcls.cli"])
def test_python_dash_m_runs_the_command(module):
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("mlcls "), done.stderr
