"""`archc fmt [--check] [--diff] PATH...`: rewrite specs in the canonical layout (see `archc.tools.fmt`).

Files are rewritten atomically, only when they change, keeping their line
endings (CRLF stays CRLF) and a UTF-8 byte-order mark. With `--check`, nothing
is written: each file that would change is named with why (`line 3 changes`,
`mixed line endings`), and the exit status is 1. `--diff` writes nothing either
and prints the change as a unified diff (exit 1 when there is one).
A file that does not parse is reported and left alone (exit 1), and so is one
the formatter fails on (a bug in archc: the message names the file); the other
files are still formatted. Directories are searched for *.arch files, never
following a link out of the directory (see `archc.files`); a rewritten file
keeps its mode.
"""

from __future__ import annotations

import argparse
import codecs
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fmt", help="format specs canonically", description=__doc__)
    p.add_argument("paths", nargs="+", metavar="PATH", help=".arch files or directories")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each file that would change, and why")
    p.add_argument("--diff", action="store_true", help="write nothing; print what would change as a unified diff (exit 1 if any)")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    from archc.api import CompileResult, read_source
    from archc.commands.check import collect
    from archc.commands.common import report
    from archc.diagnostics import shown
    from archc.files import read_regular, write_atomic
    from archc.tools import fmt

    files, problems, trees = collect(args.paths)
    if not files and problems and all(diag.code == "E404" for _, diag in problems):
        args.parser.error(f"no spec found: no .arch files in {', '.join(shown(raw) for raw, _ in problems)}")
    dry = args.check or args.diff
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
        # read_source drops a BOM (and keeps CRLF); fmt keeps the BOM too: the file's own text
        original = (fmt.BOM if read_regular(path, trees.get(path)).startswith(codecs.BOM_UTF8) else "") + text
        try:
            formatted = fmt.format_source(original)
        except fmt.FormatError as exc:
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
        if formatted == original:
            continue
        changed.append(path)
        if args.diff:
            sys.stdout.write(fmt.unified_diff(original, formatted, shown(str(path))))
        if args.check:
            print(f"would reformat {shown(str(path))}: {fmt.why_reformatted(original, formatted)}")
        elif not dry:
            write_atomic(path, formatted.encode("utf-8"))
            print(f"reformatted {shown(str(path))}")
    verb = "would be reformatted" if dry else "reformatted"
    print(
        f"{len(changed)} file{'s' if len(changed) != 1 else ''} {verb}, "
        f"{len(files) - len(changed) - bad} unchanged" + (f", {bad} failed" if bad else ""),
        file=sys.stderr,
    )
    return 1 if bad or problems or (dry and changed) else 0
