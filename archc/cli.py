"""The `archc` command: argument parsing and dispatch to `archc.commands.*`.

Each command is one module with `register(subparsers)` and `run(args) -> int`.
Those modules keep heavy imports (rich, torch, onnx) inside `run`, so that
`archc check` starts fast. Exit codes: 0 ok, 1 invalid spec or failed run,
2 usage error (argparse), 3 internal error (a bug: please report it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from archc import __version__
from archc.diagnostics import ArchError

COMMANDS = ("check", "summary", "compile", "run", "diff", "fmt", "graph")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archc",
        description="Compile and validate .arch network specs.",
    )
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"archc.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"archc.commands.{name}":
                continue  # a command not built yet in this checkout
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ArchError as exc:
        print(f"archc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("archc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks for users
        if os.environ.get("ARCHC_DEBUG"):
            raise
        print(
            f"archc: internal error: {type(exc).__name__}: {exc}\n"
            "  this is a bug in archc; run again with ARCHC_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 3
