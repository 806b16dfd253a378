"""The one table printer of the ``mlcls`` commands: columns padded to their widest cell, two
spaces apart, text left-aligned and numbers right-aligned where the caller says so, no trailing
blanks (so a table pastes cleanly and ``split()`` finds its cells)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def format_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *,
                 align: str | None = None, indent: str = "") -> list[str]:
    """The lines of a table. ``align`` has one character per column, ``<`` (left, the
    default) or ``>`` (right: numbers); every cell is printed with ``str``."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    ncols = len(header)
    if any(len(row) != ncols for row in cells):
        raise ValueError(f"every row needs {ncols} cells")
    align = align or "<" * ncols
    if len(align) != ncols or set(align) - {"<", ">"}:
        raise ValueError(f"align needs one of '<' or '>' per column, got {align!r}")
    widths = [max(len(row[i]) for row in cells) for i in range(ncols)]
    return [(indent + "  ".join(cell.rjust(w) if a == ">" else cell.ljust(w)
                                for cell, w, a in zip(row, widths, align))).rstrip()
            for row in cells]


def print_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *,
                align: str | None = None, indent: str = "", file: TextIO | None = None) -> None:
    """Print :func:`format_table`'s lines (to stdout unless ``file`` is given)."""
    for line in format_table(header, rows, align=align, indent=indent):
        print(line, file=file or sys.stdout)
