"""`archc diff A.arch B.arch [--json] [--changed]`: compare two networks layer by layer.

One row per layer, aligned as a text diff aligns lines (by blocks, kind and
keys, not by generated names): the keys that changed, the output shape,
weights and params on each side and the difference, then the totals. Block
instances and repeats are group rows with their subtotals and changed
arguments (`N 3 -> 18`). Layers only in B are marked `+`, only in A `-`,
changed `~`. The exit status is 0
whether or not the networks differ; 1 if either spec is invalid (a spec whose
only errors are failed `expect`s is still compared, after its errors).
"""

from __future__ import annotations

import argparse
import json
import sys

from archc.api import Network, compile_file
from archc.commands.common import add_max_layers, report, use_color


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("diff", help="compare two specs layer by layer", description=__doc__)
    p.add_argument("a", metavar="A", help="the first .arch file")
    p.add_argument("b", metavar="B", help="the second .arch file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--changed", action="store_true", help="show only the layers that differ")
    add_max_layers(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # both specs' errors are reported, not just the first's
    (net_a, expects_a), (net_b, expects_b) = (_load(p, args.max_layers) for p in (args.a, args.b))
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
    return 1 if expects_a or expects_b else 0


def _load(path: str, max_layers: int) -> tuple[Network | None, bool]:
    """The network, and whether an `expect` of it failed. A spec whose only errors are failed
    `expect`s is still compared (printed after its errors, exit 1): a change that breaks an
    assertion is what one most wants to see side by side."""
    result = compile_file(path, max_layers=max_layers)
    report(result)
    if result.network is not None:
        return result.network, False
    graph, analysis = result.graph, result.analysis
    complete = graph is not None and graph.complete and analysis is not None and not result.partial_diagnostics
    if not complete or not result.errors or any(d.code != "E300" for d in result.errors):
        return None, False
    assert analysis is not None
    return Network(analysis, path, result.text, result.warnings), True


def _rich(d: object, only_changed: bool) -> None:
    """The same table drawn by rich, on a terminal."""
    from rich.console import Console
    from rich.table import Table

    from archc.tools.diff import HEADER, SAME, Diff, arrow, cells, shown_rows, summary_line, total_lines
    from archc.tools.text_table import BORDERS, column_widths, table_width

    assert isinstance(d, Diff)
    style = {"changed": "yellow", "added": "green", "removed": "red", SAME: "dim"}
    rows = [cells(row) for row in shown_rows(d, only_changed)]
    # As `summary`: the layer, kind and changes columns wrap to fit; a count or a shape is never cut
    flexible = (1, 2, 3)
    natural = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    asked = table_width(sys.stdout)
    widths = column_widths(natural, asked, flexible)
    title = f"{d.a.name} -> {d.b.name}  (input {arrow(d.a.graph.input_shape.text(), d.b.graph.input_shape.text())})"
    needed = sum(widths) + BORDERS * len(widths) + 1
    console = Console(file=sys.stdout, highlight=False, width=max(needed, asked or 0, len(title)))
    table = Table(title=title, title_justify="left")
    for i, head in enumerate(HEADER):
        if i in flexible:
            table.add_column(head, justify="left", width=widths[i], overflow="fold")
        else:
            table.add_column(head, justify="right" if i >= 5 else "left", no_wrap=True, min_width=widths[i])
    for row in shown_rows(d, only_changed):
        table.add_row(*cells(row), style=style[row.status] + (" bold" if row.group else ""))
    console.print(table)
    for line in total_lines(d):
        console.print(line)
    console.print(summary_line(d))
