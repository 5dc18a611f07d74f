"""Fixed-width text tables, for output that must not depend on rich (the core install)."""

from __future__ import annotations

from collections.abc import Container, Sequence


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
