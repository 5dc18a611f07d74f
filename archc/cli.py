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

from archc.diagnostics import ArchError, SpecError
from archc.version import __version__

# name -> one-line help; a command's module is imported only when it runs (start-up time)
COMMANDS = {
    "check": "validate specs",
    "summary": "per-layer table of shapes, params and MACs",
    "compile": "write PyTorch source or an ONNX model",
    "run": "run a spec or an ONNX model on onnxruntime",
    "diff": "compare two specs layer by layer",
    "fmt": "rewrite specs in the canonical layout",
    "graph": "draw the network (DOT, SVG, PNG)",
    "lsp": "language server for editors (stdio)",
    "import": "turn a Caffe prototxt or an ONNX model into a spec",
}
MODULES = {"import": "importer"}  # `import` is a Python keyword: no module may be named so


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archc",
        description="Compile and validate .arch network specs.",
    )
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    for name, help_text in COMMANDS.items():
        if chosen is None or name == chosen:
            importlib.import_module(f"archc.commands.{MODULES.get(name, name)}").register(sub)
        else:
            sub.add_parser(name, help=help_text)  # listed in --help; never run
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except SpecError as exc:  # already rendered as file:line:col diagnostics
        print(exc.rendered, file=sys.stderr)
        return 1
    except ArchError as exc:
        print(f"archc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("archc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the last line of defence: no tracebacks for users
        if os.environ.get("ARCHC_DEBUG"):
            raise
        print(
            f"archc: internal error: {type(exc).__name__}: {exc}\n"
            "  this is a bug in archc; run again with ARCHC_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 3
