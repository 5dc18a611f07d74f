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

from archc.api import Network, compile_file, gc_paused
from archc.commands.common import report, use_color
from archc.tools.text_table import fixed_width


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("summary", help="per-layer table of shapes, params and MACs", description=__doc__)
    p.add_argument("spec", metavar="SPEC", help="a .arch file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--explain", action="store_true", help="show how each shape and count is derived")
    p.add_argument("--rf", action="store_true", help="add receptive field, jump and start per layer")
    p.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16", "int8"),
        default="float32",
        help="element type for the memory figures: parameters, activations, KV cache (default float32)",
    )
    p.set_defaults(run=run)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def _size(n: int) -> str:
    """`12.34 MiB`; from a gigabyte on, decimal and binary both: `13.5 GB = 12.55 GiB`."""
    if n < 10**9:
        return _mib(n)
    return f"{n / 1e9:,.1f} GB = {n / 2**30:,.2f} GiB"


def run(args: argparse.Namespace) -> int:
    result = compile_file(args.spec)
    report(result)
    net = result.network
    if net is None:
        if args.json:  # still one JSON object on stdout, for tools that parse it
            from archc.commands.check import diag_json

            diagnostics = [diag_json(d) for d in result.diagnostics]
            print(json.dumps({"path": args.spec, "valid": False, "diagnostics": diagnostics}, indent=2))
        return 1
    with gc_paused():  # one dict or row per layer, and no cycles among them
        return _print(args, net)


def _print(args: argparse.Namespace, net: Network) -> int:
    from archc.tools.summary import DTYPES, activation_bytes, attr_text, kv_cache, rows, summary_json

    rf = None
    if args.rf:
        from archc.analysis.receptive import receptive_fields

        rf = receptive_fields(net.analysis)
    if args.json:
        from archc.tools.json_text import indented

        print(indented(summary_json(net, rf, args.dtype)))
        return 0

    from archc.analysis import si

    extra = None
    if rf is not None and not rf:
        print("(no receptive fields: the network's input is flat)", file=sys.stderr)
    if rf:
        extra = {
            name: {
                "rf": "x".join(f"{r:g}" for r in v["rf"]),
                "jump": "x".join(f"{j:g}" for j in v["jump"]),
                "start": ",".join(f"{s:g}" for s in v["start"]),
            }
            for name, v in rf.items()
        }
    headers = ["Layer", "Kind", "Output", "Params", "MACs"] + (["RF", "Jump", "Start"] if extra else [])
    all_rows = rows(net, explain=args.explain, extra=extra)
    table: list[tuple[bool, list[str]]] = []  # (is a group row, cells)
    for row in all_rows:
        kind = row.kind
        if not row.group:
            node = net.graph.node(row.name)
            kind = f"{row.kind} {attr_text(node.kind, node.attrs)}".strip()
        cells = ["  " * row.depth + row.name, kind, row.output]
        cells += [f"{row.params:,}" if row.params else "-", f"{row.macs:,}" if row.macs else "-"]
        if extra:
            cells += [row.extra.get("rf", ""), row.extra.get("jump", ""), row.extra.get("start", "")]
        table.append((row.group, cells))

    t = net.analysis.totals
    footer = [
        f"Params:      {_with_si(t.params)} = {t.weights:,} weights + {t.biases:,} biases",
        f"MACs:        {_with_si(t.macs)}, {si(2 * t.macs)} FLOPs at batch 1",
        f"Output:      {net.analysis.output_shape.text()}",
        f"Param size:  {_size(t.params * DTYPES[args.dtype])} ({args.dtype})",
        f"Activations: {_size(activation_bytes(net, args.dtype))} at batch 1 ({args.dtype}, input and every layer output)",
    ]
    cache = kv_cache(net, args.dtype)
    if cache is not None:
        how = (
            f"2 x {cache.layers} layers x {cache.tokens:,} tokens x {cache.width:,} x {DTYPES[args.dtype]} bytes"
            if cache.width
            else f"keys and values of {cache.layers} causal attention layers"
        )
        footer.append(
            f"KV cache:    {_size(cache.nbytes)} at {cache.tokens:,} tokens, batch 1 ({args.dtype}): {how}"
        )
    if args.explain:
        footer += ["", "Derivations"]
        for row in all_rows:
            if row.explain:
                footer.append(f"{row.name}  ({row.kind} -> {row.output})")
                footer += [f"    {line}" for line in row.explain]
    title = f"{net.name}  (input {net.graph.input_shape.text()})"
    try:
        _print_rich(title, headers, table, footer)
    except ImportError:  # the core install has no rich: the same table in plain text
        print(title)
        print("\n".join(fixed_width([headers, *(cells for _, cells in table)], right=range(2, len(headers)))))
        print("\n".join(footer))
    return 0


def _print_rich(
    title: str, headers: list[str], table: list[tuple[bool, list[str]]], footer: list[str]
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    color = use_color(sys.stdout)
    console = Console(
        file=sys.stdout,
        force_terminal=color,
        no_color=not color,
        width=None if sys.stdout.isatty() else 120,
        highlight=False,
    )
    grid = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        grid.add_column(header, justify="left" if i < 2 else "right", no_wrap=True)
    for group, cells in table:
        styled = [Text(c, style="bold") if group and i < 2 else Text(c) for i, c in enumerate(cells)]
        grid.add_row(*styled, style="dim" if group else None)
    console.print(grid)
    for line in footer:
        console.print(Text(line, style="bold") if line == "Derivations" else line)


def _with_si(n: int) -> str:
    """`28,823,912 (28.82M)`; below 1,000 the SI form would only repeat the number."""
    from archc.analysis import si

    return f"{n:,} ({si(n)})" if n >= 1000 else f"{n:,}"
