"""What every ``mlcls`` parser shares: the help formatter that shows defaults, the parser
class that carries it into sub-parsers, and the argument types more than one command takes."""

from __future__ import annotations

import argparse
import json
from typing import Any


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help where the option has a default and its help
    does not already say it. ``None``, ``False`` and empty defaults mean "not given" and are not
    shown; options whose real default is decided later say so in their own help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not shows_default(action):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def shows_default(action: argparse.Action) -> bool:
    """Whether ``--help`` must show this option's default (tests walk every parser with it)."""
    default = action.default
    if default is argparse.SUPPRESS or default is None or default is False:
        return False
    return not (isinstance(default, (list, tuple, str)) and not default)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter`; sub-parsers made with
    ``add_subparsers().add_parser`` are of this class too, so they show defaults as well."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def new_parser(prog: str, description: str, **kwargs: Any) -> ArgumentParser:
    """The parser of one ``mlcls`` command."""
    return ArgumentParser(prog=prog, description=description, **kwargs)


def threshold(text: str) -> float | list | dict:
    """``--threshold``: a score in [0, 1], or a JSON list/dict of per-class thresholds."""
    text = text.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a number (or a JSON list/dict of per-class thresholds)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value


def positive(text: str) -> int:
    """An integer of at least 1 (batch sizes, worker and replica counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
