"""`archc fmt [--check] PATH...`: rewrite specs in the canonical layout (see `archc.tools.fmt`).

Files are rewritten atomically, only when they change. With `--check`, nothing
is written: the files that would change are named and the exit status is 1.
A file that does not parse is reported and left alone (exit 1), and so is one
the formatter fails on (a bug in archc: the message names the file); the other
files are still formatted. Directories are searched for *.arch files, never
following a link out of the directory (see `archc.files`); a rewritten file
keeps its mode.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fmt", help="format specs canonically", description=__doc__)
    p.add_argument("paths", nargs="+", metavar="PATH", help=".arch files or directories")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file would change")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from archc.api import CompileResult, read_source
    from archc.commands.check import collect
    from archc.commands.common import report
    from archc.diagnostics import shown
    from archc.files import read_regular, write_atomic
    from archc.tools.fmt import FormatError, format_text

    files, problems, trees = collect(args.paths)
    for raw, diag in problems:
        report(CompileResult(raw, "", None, (diag,)))
    bad = 0  # files that could not be read or parsed
    changed: list[Path] = []
    for path in files:
        text, problem = read_source(path, trees.get(path))  # a FIFO or a device is refused here, never read
        if problem is not None or text is None:
            report(CompileResult(str(path), "", None, (problem,) if problem else ()))
            bad += 1
            continue
        try:
            formatted = format_text(text)
        except FormatError as exc:
            report(CompileResult(str(path), text, None, tuple(exc.diagnostics)))
            bad += 1
            continue
        except Exception as exc:  # a bug in the formatter: name the file, go on with the others
            if os.environ.get("ARCHC_DEBUG"):
                raise
            print(
                f"{shown(str(path))}: internal error in archc fmt: {type(exc).__name__}: {exc}\n"
                "  the file is left unchanged; this is a bug in archc: run again with"
                " ARCHC_DEBUG=1 for the traceback and report it",
                file=sys.stderr,
            )
            bad += 1
            continue
        # Compare bytes, not text: CRLF endings or a BOM also count as a change.
        if formatted.encode("utf-8") == read_regular(path, trees.get(path)):
            continue
        changed.append(path)
        if args.check:
            print(f"would reformat {shown(str(path))}")
        else:
            write_atomic(path, formatted.encode("utf-8"))
            print(f"reformatted {shown(str(path))}")
    verb = "would be reformatted" if args.check else "reformatted"
    print(
        f"{len(changed)} file{'s' if len(changed) != 1 else ''} {verb}, "
        f"{len(files) - len(changed) - bad} unchanged" + (f", {bad} failed" if bad else ""),
        file=sys.stderr,
    )
    return 1 if bad or problems or (args.check and changed) else 0
