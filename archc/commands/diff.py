"""`archc diff A.arch B.arch [--json] [--changed]`: compare two networks layer by layer.

One row per layer, aligned by name: the keys that changed, the output shape,
weights and params on each side and the difference, then the totals. Layers
only in B are marked `+`, only in A `-`, changed `~`. The exit status is 0
whether or not the networks differ; 1 if either spec is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys

from archc.commands.common import add_max_layers, load_or_report, use_color


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("diff", help="compare two specs layer by layer", description=__doc__)
    p.add_argument("a", metavar="A", help="the first .arch file")
    p.add_argument("b", metavar="B", help="the second .arch file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--changed", action="store_true", help="show only the layers that differ")
    add_max_layers(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    net_a = load_or_report(args.a, max_layers=args.max_layers)
    net_b = load_or_report(args.b, max_layers=args.max_layers)  # report both specs' errors, not just the first
    if net_a is None or net_b is None:
        return 1
    from archc.tools.diff import diff, diff_json, plain_text

    d = diff(net_a, net_b)
    if args.json:
        print(json.dumps(diff_json(d), indent=2))
    else:
        try:
            if not use_color(sys.stdout):
                raise ImportError("plain text off a terminal")
            _rich(d, args.changed)
        except ImportError:  # not a terminal, or the core install without rich
            print(plain_text(d, args.changed))
    return 0


def _rich(d: object, only_changed: bool) -> None:
    """The same table drawn by rich, on a terminal."""
    from rich.console import Console
    from rich.table import Table

    from archc.tools.diff import HEADER, SAME, Diff, arrow, cells, total_lines

    assert isinstance(d, Diff)
    style = {"changed": "yellow", "added": "green", "removed": "red", SAME: "dim"}
    # Never squeeze the table into a narrow default: wide rows wrap better than "…" cells.
    console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 160)
    title = f"{d.a.name} -> {d.b.name}  (input {arrow(d.a.graph.input_shape.text(), d.b.graph.input_shape.text())})"
    table = Table(title=title, title_justify="left")
    for i, head in enumerate(HEADER):
        table.add_column(head, justify="right" if i >= 5 else "left", no_wrap=i != 3, min_width=1)
    for row in d.rows:
        if only_changed and row.status == SAME:
            continue
        table.add_row(*cells(row), style=style[row.status])
    console.print(table)
    for line in total_lines(d):
        console.print(line)
