"""`archc summary SPEC [--json] [--explain] [--rf] [--input SHAPE] [--format table|markdown|csv]`: the per-layer table, like torchinfo.

Name, kind, output (HxWxC), params and MACs per layer with each one's share
of the network's; block instances and repeats as indented groups with their
totals; then the network's totals, trainable parameters apart from buffers
(batchnorm's running statistics). `--explain` adds the lecture's derivation
of every shape and count, `--rf` each layer's receptive field, jump
(effective stride) and start. `--input` summarises the spec at another input
size without editing it: its `->` and `expect` checks, written for its own
input, are then reported, not enforced.

Numbers are never cut: on a terminal (or with COLUMNS set) the layer and kind
columns wrap to fit; written to a file or a pipe, the table has its full width.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from archc.api import CompileResult, Network, compile_file, compile_text, gc_paused
from archc.commands.common import add_max_layers, report, use_color
from archc.tools.text_table import BORDERS, column_widths, fixed_width, table_width

if TYPE_CHECKING:
    from archc.tools.summary import AtInput

FORMATS = ("table", "markdown", "csv")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("summary", help="per-layer table of shapes, params and MACs", description=__doc__)
    p.add_argument("spec", metavar="SPEC", help="a .arch file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--explain", action="store_true", help="show how each shape and count is derived")
    p.add_argument("--rf", action="store_true", help="add receptive field, jump and start per layer")
    p.add_argument(
        "--input",
        metavar="SHAPE",
        help="summarise at another input size, as `input` writes it: HxWxC, LxC, DxHxWxC, N, or 'N tokens'",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default), markdown (a GitHub table, for notes and papers) or csv (one record per row)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16", "int8"),
        default="float32",
        help="element type for the memory figures: parameters, activations, KV cache (default float32)",
    )
    add_max_layers(p)
    p.set_defaults(run=run, parser=p)


RICH_MAX_ROWS = 2_000  # past this, the plain-text table


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def _size(n: int) -> str:
    """`12.34 MiB`; from a gigabyte on, decimal and binary both: `13.5 GB = 12.55 GiB`."""
    if n < 10**9:
        return _mib(n)
    return f"{n / 1e9:,.1f} GB = {n / 2**30:,.2f} GiB"


def _input_form(parser: argparse.ArgumentParser, text: str) -> str:
    """The `--input` value, checked as an `input` line alone; a usage error (exit 2) if it is not one."""
    shape = " ".join(text.split())
    probe = compile_text(f"input {shape}\n", "--input")  # an input alone: only "no layers" (E141) is expected
    if "\n" in text or any(d.is_error and d.code != "E141" for d in probe.diagnostics):
        parser.error(
            f"--input {text!r}: not an input size; write it as `input` does: "
            "224x224x3 (HxWxC), 16000x1 (LxC), 16x112x112x3 (DxHxWxC), 784 (N) or '1024 tokens'"
        )
    return shape


def run(args: argparse.Namespace) -> int:
    shape = _input_form(args.parser, args.input) if args.input else None
    result = compile_file(args.spec, max_layers=args.max_layers)
    net = result.network
    at = None
    if net is not None and shape is not None:
        from archc.tools.summary import at_input

        at = at_input(result, shape)  # its warnings are the ones at the new size: the spec's own are not shown
        result, net = at.result, at.network
    report(result)
    if net is None:
        if args.json:  # still one JSON object on stdout, for tools that parse it
            from archc.commands.check import diag_json

            diagnostics = [diag_json(d) for d in result.diagnostics]
            print(json.dumps({"path": args.spec, "valid": False, "diagnostics": diagnostics}, indent=2))
        if at is not None:
            print(f"archc: the spec does not hold together at input {shape} (it was written for {at.written.text()})", file=sys.stderr)
        return 1
    with gc_paused():  # one dict or row per layer, and no cycles among them
        if at is not None:
            _report_checks(at, shape or "", result)
        return _print(args, net, at)


def _report_checks(at: AtInput, shape: str, result: CompileResult) -> None:
    """The spec's `->` and `expect` that do not hold at the new size: notes, not errors."""
    now = result.graph.input_shape if result.graph is not None else None
    if now is not None and now.layout is not at.written.layout:
        print(
            f"note: --input {shape} is {now.layout.value} ({now.layout.noun}), the spec's input {at.written.text()} "
            f"is {at.written.layout.value} ({at.written.layout.noun})",
            file=sys.stderr,
        )
    if not at.failed:
        return
    n, total = len(at.failed), len(at.checks)
    print(
        f"note: {n} of the spec's {total} checks (`->` and `expect`) were written for input {at.written.text()} "
        f"and do not hold at {shape}; with --input they are reported, not enforced:",
        file=sys.stderr,
    )
    for a, diag in at.failed:
        where = f"{result.path}:{a.value_span.line}:{a.value_span.column}"
        print(f"  {where}: {diag.message}", file=sys.stderr)


def _rf_cells(net: Network) -> dict[str, dict[str, str]] | None:
    from archc.analysis.receptive import receptive_fields

    rf = receptive_fields(net.analysis)
    if not rf:
        print("(no receptive fields: the network's input is flat)", file=sys.stderr)
        return None
    return {
        name: {
            "rf": "x".join(f"{r:g}" for r in v["rf"]),
            "jump": "x".join(f"{j:g}" for j in v["jump"]),
            "start": ",".join(f"{s:g}" for s in v["start"]),
        }
        for name, v in rf.items()
    }


def _print(args: argparse.Namespace, net: Network, at: AtInput | None) -> int:
    from archc.tools.summary import (
        DTYPES,
        activation_bytes,
        attr_text,
        buffer_names,
        buffers,
        kv_cache,
        rows,
        share,
        summary_json,
    )

    if args.json:
        from archc.tools.json_text import indented

        rf = None
        if args.rf:
            from archc.analysis.receptive import receptive_fields

            rf = receptive_fields(net.analysis)
        doc = summary_json(net, rf, args.dtype, explain=args.explain)
        if at is not None:
            doc["written_input"] = list(at.written.dims)
            doc["checks"] = _checks_json(at)
        print(indented(doc))
        return 0

    from archc.analysis import si

    extra = _rf_cells(net) if args.rf else None
    t = net.analysis.totals
    headers = ["Layer", "Kind", "Output", "Params", "% params", "MACs", "% MACs"]
    headers += ["RF", "Jump", "Start"] if extra else []
    all_rows = rows(net, explain=args.explain, extra=extra)
    table: list[tuple[bool, list[str]]] = []  # (is a group row, cells)
    records: list[list[Any]] = []  # the CSV's, numbers as numbers
    for row in all_rows:
        kind = row.kind
        if not row.group:
            node = net.graph.node(row.name)
            kind = f"{row.kind} {attr_text(node.kind, node.attrs)}".strip()
        cells = ["  " * row.depth + row.name, kind, row.output]
        cells += [f"{row.params:,}" if row.params else "-", share(row.params, t.params)]
        cells += [f"{row.macs:,}" if row.macs else "-", share(row.macs, t.macs)]
        if extra:
            cells += [row.extra.get("rf", ""), row.extra.get("jump", ""), row.extra.get("start", "")]
        table.append((row.group, cells))
        record: list[Any] = [row.name, row.depth, "group" if row.group else "layer", kind, row.output]
        record += [row.params, _pct(row.params, t.params), row.macs, _pct(row.macs, t.macs)]
        if extra:
            record += [row.extra.get("rf", ""), row.extra.get("jump", ""), row.extra.get("start", "")]
        if args.explain:
            record.append("\n".join(text for _, text in row.explain))
        records.append(record)

    if args.format == "csv":
        from archc.tools.summary import csv_text

        names = ["layer", "depth", "row", "kind", "output", "params", "params_pct", "macs", "macs_pct"]
        names += ["rf", "jump", "start"] if extra else []
        names += ["explain"] if args.explain else []
        sys.stdout.write(csv_text(names, records))
        return 0

    held = buffers(net)
    n_held = sum(held.values())
    footer = [
        f"Params:      {_with_si(t.params)} = {t.weights:,} weights + {t.biases:,} biases, all trainable",
    ]
    if n_held:
        footer.append(
            f"Buffers:     {_with_si(n_held)}: {', '.join(buffer_names(net))} of {len(held)} "
            f"layer{'s' if len(held) > 1 else ''}; state, not trained, not in Params; "
            f"{_size(n_held * DTYPES[args.dtype])} ({args.dtype})"
        )
    footer += [
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
    derivations: list[str] = []
    if args.explain:
        for row in all_rows:
            if row.explain:
                derivations.append(f"{row.name}  ({row.kind} -> {row.output})")
                derivations += [f"    {text}" for _, text in row.explain]
    title = f"{net.name}  (input {net.graph.input_shape.text()})"
    if at is not None:
        title += f", the spec's own input is {at.written.text()}"
    right = set(range(2, len(headers)))
    if args.format == "markdown":
        from archc.tools.summary import markdown_table

        print(f"**{title}**\n")
        print("\n".join(markdown_table(headers, table, right)))
        print()
        print("\n".join("- " + " ".join(line.split()) for line in footer))  # no column to align in Markdown
        if derivations:
            print("\n**Derivations**\n\n```text")
            print("\n".join(derivations))
            print("```")
        return 0
    if derivations:
        footer += ["", "Derivations", *derivations]
    try:
        if len(table) > RICH_MAX_ROWS:  # rich lays a table out at ~2 ms a row: 20,000 rows took 25 s
            raise ImportError
        _print_rich(title, headers, table, footer)
    except ImportError:  # the core install has no rich (or the table is long): the same table in plain text
        print(title)
        print("\n".join(fixed_width([headers, *(cells for _, cells in table)], right=right)))
        print("\n".join(footer))
    return 0


def _pct(n: int, total: int) -> float:
    return round(100 * n / total, 4) if total else 0.0


def _checks_json(at: AtInput) -> list[dict[str, Any]]:
    failed = {id(a): d for a, d in at.failed}
    return [
        {
            "line": a.value_span.line,
            "column": a.value_span.column,
            "holds": id(a) not in failed,
            "message": failed[id(a)].message if id(a) in failed else None,
        }
        for a in at.checks
    ]


FLEXIBLE = (0, 1)  # the layer and kind columns: they wrap; numbers and shapes never do


def _print_rich(title: str, headers: list[str], table: list[tuple[bool, list[str]]], footer: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    natural = [max(len(r[i]) for r in [headers, *(cells for _, cells in table)]) for i in range(len(headers))]
    asked = table_width(sys.stdout)
    widths = column_widths(natural, asked, FLEXIBLE)
    needed = sum(widths) + BORDERS * len(widths) + 1
    color = use_color(sys.stdout)
    console = Console(
        file=sys.stdout,
        force_terminal=color,
        no_color=not color,
        width=max(needed, asked or 0, len(title)),  # wider than asked rather than a number cut
        highlight=False,
    )
    grid = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        if i in FLEXIBLE:
            grid.add_column(header, justify="left", width=widths[i], overflow="fold")
        else:
            grid.add_column(header, justify="right", no_wrap=True, min_width=widths[i])
    for group, cells in table:
        styled = [Text(c, style="bold") if group and i < 2 else Text(c) for i, c in enumerate(cells)]
        grid.add_row(*styled, style="dim" if group else None)
    console.print(grid)
    for line in footer:
        console.print(Text(line, style="bold") if line == "Derivations" else Text(line), soft_wrap=True)


def _with_si(n: int) -> str:
    """`28,823,912 (28.82M)`; below 1,000 the SI form would only repeat the number."""
    from archc.analysis import si

    return f"{n:,} ({si(n)})" if n >= 1000 else f"{n:,}"
