"""Fixed-width text tables, for output that must not depend on rich (the core install)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Container, Sequence
from typing import IO

BORDERS = 3  # rich's "│ " ... " │" per column, plus one
MIN_FLEXIBLE = 12  # narrower, a wrapped name is more lines than text


def fixed_width(rows: Sequence[Sequence[str]], right: Container[int] = (), gap: str = "  ") -> list[str]:
    """Rows padded to column widths; columns in `right` are right-aligned.

    >>> fixed_width([["name", "params"], ["conv1", "34,944"]], right={1})
    ['name   params', 'conv1  34,944']
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        gap.join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def table_width(stream: IO[str]) -> int | None:
    """The columns to fit: COLUMNS when set, else a terminal's width; None (full width) off a terminal."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if hasattr(stream, "isatty") and stream.isatty():
        return shutil.get_terminal_size().columns
    return None


def column_widths(natural: list[int], width: int | None, flexible: Sequence[int] = (0, 1)) -> list[int]:
    """Each column's width for a boxed table: its natural width, or the `flexible` (text) columns
    narrowed, the widest first, until the table fits `width`; never below MIN_FLEXIBLE, never a
    number narrowed (a table that cannot fit is wider than asked).

    >>> column_widths([30, 20, 10, 8], None), column_widths([30, 20, 10, 8], 60)
    ([30, 20, 10, 8], [14, 15, 10, 8])
    >>> column_widths([30, 20, 10, 8], 20)  # too narrow: the minimum, wider than asked
    [12, 12, 10, 8]
    """
    overhead = BORDERS * len(natural) + 1
    if width is None or sum(natural) + overhead <= width:
        return natural
    fixed = sum(w for i, w in enumerate(natural) if i not in flexible)
    room = width - overhead - fixed
    flex = {i: natural[i] for i in flexible}
    floor = {i: min(natural[i], MIN_FLEXIBLE) for i in flexible}
    # narrow the widest flexible column one step at a time: an even narrowing, as a reader wants
    while sum(flex.values()) > room:
        widest = max(flex, key=lambda i: (flex[i] - floor[i], -i))
        if flex[widest] <= floor[widest]:
            break
        flex[widest] -= 1
    return [flex.get(i, w) for i, w in enumerate(natural)]
