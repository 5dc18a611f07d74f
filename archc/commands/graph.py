"""`archc graph SPEC [-o net.svg|net.png|net.pdf|net.dot] [--collapse] [--all] [--rankdir LR]`: draw the network.

One box per layer (name, kind, output shape, params), top to bottom (`--rankdir
LR`: left to right); an activation that follows a layer is drawn in its box
(`conv K=64 F=3 P=1 + relu`), and `--all` gives every layer its own box;
residual and concat branches drawn as branches, in the order the spec writes
them, block instances as labelled clusters. `--collapse` draws each block
instance as one box. Without `-o`, or with
`-o NAME.dot`/`.gv`, it writes DOT text, which needs nothing installed; SVG,
PNG and PDF need Graphviz's `dot` on PATH.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archc.commands.common import add_max_layers, load_or_report
from archc.diagnostics import shown

SUFFIXES = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png", ".pdf": "pdf"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("graph", help="draw the network (DOT, SVG, PNG, PDF)", description=__doc__)
    p.add_argument("spec", metavar="SPEC", help="a .arch file")
    p.add_argument("-o", "--output", metavar="FILE", help="NAME.dot, .gv, .svg, .png or .pdf (default: DOT on stdout)")
    p.add_argument("--collapse", action="store_true", help="one box per block instance")
    p.add_argument("--all", action="store_true", help="a box for every layer: activations not folded into the layer before")
    p.add_argument(
        "--rankdir",
        choices=("TB", "LR", "BT", "RL"),
        default="TB",
        help="direction of the layers: TB top to bottom (default), LR left to right, BT, RL",
    )
    add_max_layers(p)
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    fmt = "dot"
    if args.output:
        suffix = Path(args.output).suffix.lower()
        if suffix not in SUFFIXES:
            args.parser.error(f"-o {shown(args.output)}: the name must end in {', '.join(SUFFIXES)}")
        fmt = SUFFIXES[suffix]
    from archc.files import check_output, write_atomic

    if args.output:
        check_output(args.output, args.spec)
    net = load_or_report(args.spec, max_layers=args.max_layers)
    if net is None:
        return 1
    from archc.tools.graph import GraphvizMissing, render, to_dot

    dot = to_dot(net, collapse=args.collapse, fold=not args.all, rankdir=args.rankdir)
    if fmt == "dot":
        if args.output:
            write_atomic(Path(args.output), dot.encode("utf-8"))
        else:
            sys.stdout.write(dot)
        return 0
    try:
        data = render(dot, fmt)
    except GraphvizMissing as exc:
        print(f"archc: error: writing .{fmt} needs Graphviz's `dot`, which is not on PATH\n  hint: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"archc: error: {exc}", file=sys.stderr)
        return 1
    write_atomic(Path(args.output), data)
    print(f"wrote {shown(args.output)}", file=sys.stderr)
    return 0
