"""`archc summary SPEC [--json] [--explain] [--rf]`: the per-layer table, like torchinfo.

Name, kind, output (HxWxC), params and MACs per layer; block instances and
repeats as indented groups with their totals; then the network's totals.
`--explain` adds the lecture's derivation of every shape and count, `--rf`
each layer's receptive field, jump (effective stride) and start.
"""

from __future__ import annotations

import argparse
import json
import sys

from archc.commands.common import load_or_report, use_color


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("summary", help="per-layer table of shapes, params and MACs", description=__doc__)
    p.add_argument("spec", metavar="SPEC", help="a .arch file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--explain", action="store_true", help="show how each shape and count is derived")
    p.add_argument("--rf", action="store_true", help="add receptive field, jump and start per layer")
    p.set_defaults(run=run)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def run(args: argparse.Namespace) -> int:
    net = load_or_report(args.spec)
    if net is None:
        return 1
    from archc.summary import activation_bytes, rows, summary_json

    rf = None
    if args.rf:
        from archc.receptive import receptive_fields

        rf = receptive_fields(net)
    if args.json:
        print(json.dumps(summary_json(net, rf), indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from archc.analysis import si

    console = Console(
        file=sys.stdout,
        force_terminal=use_color(sys.stdout),
        no_color=not use_color(sys.stdout),
        width=None if sys.stdout.isatty() else 120,
        highlight=False,
    )
    extra = None
    if rf is not None:
        extra = {
            name: {"rf": f"{v['rf'][0]}x{v['rf'][1]}", "jump": f"{v['jump'][0]}x{v['jump'][1]}", "start": f"{v['start'][0]:g},{v['start'][1]:g}"}
            for name, v in rf.items()
        }
    table = Table(title=f"{net.name}  (input {net.graph.input_shape.text()})", title_justify="left")
    table.add_column("Layer", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Output", justify="right", no_wrap=True)
    table.add_column("Params", justify="right", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    if extra is not None:
        for col in ("RF", "Jump", "Start"):
            table.add_column(col, justify="right", no_wrap=True)
    from archc.summary import attr_text

    all_rows = rows(net, explain=args.explain, extra=extra)
    for row in all_rows:
        indent = "  " * row.depth
        if row.group:
            name = Text(f"{indent}{row.name}", style="bold")
            kind = Text(row.kind, style="bold")
        else:
            name = Text(f"{indent}{row.name}")
            node = net.graph.node(row.name)
            attrs = attr_text(node.kind, node.attrs)
            kind = Text(f"{row.kind} {attrs}".strip())
        cells: list[Text | str] = [name, kind, row.output, f"{row.params:,}" if row.params else "-", f"{row.macs:,}" if row.macs else "-"]
        if extra is not None:
            cells += [row.extra.get("rf", ""), row.extra.get("jump", ""), row.extra.get("start", "")]
        table.add_row(*cells, style="dim" if row.group else None)
    console.print(table)
    t = net.analysis.totals
    console.print(f"Params:      {t.params:,} ({si(t.params)}) = {t.weights:,} weights + {t.biases:,} biases")
    console.print(f"MACs:        {t.macs:,} ({si(t.macs)}), {si(2 * t.macs)} FLOPs at batch 1")
    console.print(f"Output:      {net.analysis.output_shape.text()}")
    console.print(f"Param size:  {_mib(t.params * 4)} (float32)")
    console.print(f"Activations: {_mib(activation_bytes(net))} at batch 1 (float32, input and every layer output)")
    if args.explain:
        console.print()
        console.print(Text("Derivations", style="bold"))
        for row in all_rows:
            if row.explain:
                console.print(f"{row.name}  ({row.kind} -> {row.output})")
                for line in row.explain:
                    console.print(f"    {line}")
    return 0
