"""`archc lsp [--tcp PORT]`: the language server, over stdio (or TCP, for debugging).

Editors start it: shapes and parameter counts as inlay hints, diagnostics as you
type, hover derivations, completion, go to definition, formatting and quick
fixes. It needs the optional extra: `pip install 'archc[lsp]'`.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lsp", help="language server for editors (stdio)", description=__doc__)
    p.add_argument(
        "--tcp", type=int, metavar="PORT", default=None, help="listen on a TCP port instead of stdio"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on with --tcp (default 127.0.0.1)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from archc.lsp.server import main
    except ImportError as exc:  # pygls / lsprotocol are the optional extra
        print(
            f"archc lsp: needs the lsp extra ({exc.name} is missing): pip install 'archc[lsp]'",
            file=sys.stderr,
        )
        return 1
    main(tcp=args.tcp, host=args.host)
    return 0
