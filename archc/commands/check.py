"""`archc check PATH...`: validate specs (files, or directories searched for *.arch).

Formats: `text` (default), `json`, `github` (workflow annotations; chosen
automatically when GITHUB_ACTIONS=true), `junit` (a JUnit XML report: one
test case per spec and one per assertion).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

from archc.analysis import si
from archc.api import CompileResult, compile_file
from archc.commands.common import add_max_layers, use_color
from archc.diagnostics import Diagnostic, Severity, error, render_one, shown, source_lines
from archc.ir import Span
from archc.limits import DEFAULT_MAX_LAYERS

FORMATS = ("text", "json", "github", "junit")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="validate specs", description=__doc__)
    p.add_argument("paths", nargs="+", metavar="PATH", help=".arch files or directories; - reads a spec from standard input")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="CODE",
        type=_warning_codes,
        help="drop these warnings for the run (W001, W002, W003; repeat or separate with commas); "
        "a line's own `# archc: ignore[W001]` comment drops one",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: github under GitHub Actions, else text)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE (json, junit)")
    add_max_layers(p)
    p.set_defaults(run=run, parser=p)


def _warning_codes(text: str) -> frozenset[str]:
    from archc.api import WARNING_CODES

    codes = frozenset(c.strip().upper() for c in text.split(",") if c.strip())
    unknown = sorted(codes - set(WARNING_CODES))
    if unknown or not codes:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or repr(text)} is not a warning code (warnings: {', '.join(WARNING_CODES)})"
        )
    return codes


STDIN = Path("-")  # `archc check -`: the spec on standard input, named <stdin> in messages
STDIN_NAME = "<stdin>"


class Collected(NamedTuple):
    files: list[Path]  # each spec once, in the order named (STDIN for `-`)
    problems: list[tuple[str, Diagnostic]]  # paths that are not specs to read, with why
    trees: dict[Path, Path]  # the directory each file was found in (absent: named on the command line)


def collect(paths: list[str], stdin: bool = False) -> Collected:
    """Spec files under the given paths, and problems with the paths themselves.

    A path that is not a spec (a FIFO, a device, a dangling link, a link that
    leaves a walked directory, or the working directory when named on the
    command line) is a problem named by its path, never read. A directory
    without specs is a problem of code E404. With `stdin`, `-` stands for
    standard input (`STDIN`), once however often it is named.
    """
    from archc.files import why_not_a_spec

    files: list[Path] = []
    problems: list[tuple[str, Diagnostic]] = []
    trees: dict[Path, Path] = {}
    seen: set[Path] = set()

    def add(p: Path, tree: Path | None = None) -> None:
        # `archc check specs specs/a.arch` (or a shell glob with overlaps) checks
        # each file once, not once per way it was named.
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)
            if tree is not None:
                trees[p] = tree

    for raw in paths:
        p = Path(raw)
        if stdin and raw == "-":
            if STDIN not in files:
                files.append(STDIN)
            continue
        problem = why_not_a_spec(p, tree=Path(os.curdir))  # a glob names a pull request's links too
        if problem is not None:
            problems.append((raw, error("E400", problem, None)))
        elif p.is_dir():
            found, refused = _specs_under(p)
            if not found and not refused:
                problems.append((raw, error("E404", "no .arch files in this directory", None)))
            for q in found:
                add(q, p)
            problems += [(str(q), error("E400", why, None)) for q, why in refused]
        else:
            add(p)
    return Collected(files, problems, trees)


def _specs_under(top: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """`*.arch` files below `top`, linked ones inside it too, skipping hidden folders (.git, .venv);
    and the `*.arch` names that are not specs to read, with why (see `archc.files.why_not_a_spec`)."""
    from archc.files import why_not_a_spec

    found: list[Path] = []
    refused: list[tuple[Path, str]] = []
    for folder, subfolders, names in os.walk(top):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in names:
            if not name.endswith(".arch"):
                continue
            path = Path(folder, name)
            why = why_not_a_spec(path, tree=top)
            if why is None and not path.is_dir():
                found.append(path)
            elif why is not None:
                refused.append((path, why))
    return sorted(found), sorted(refused)


def compile_stdin(ignore: frozenset[str] = frozenset(), max_layers: int = DEFAULT_MAX_LAYERS) -> CompileResult:
    """`compile_file` of standard input, named `<stdin>` (read as bytes: a BOM, binary or non-UTF-8
    input is treated as in a file: located, never quoted)."""
    from archc.api import compile_text, decode_source

    data = sys.stdin.buffer.read()
    text, problem = decode_source(data)
    if problem is not None:
        return CompileResult(STDIN_NAME, "", None, (problem,))
    assert text is not None
    return compile_text(text, STDIN_NAME, ignore, max_layers)


def failed(result: CompileResult, strict: bool) -> bool:
    return result.network is None or (strict and bool(result.warnings))


def run(args: argparse.Namespace) -> int:
    fmt = args.format or ("github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text")
    if args.output and fmt not in ("json", "junit"):
        args.parser.error(f"-o writes the json and junit reports; --format {fmt} prints to the terminal")
    files, problems, trees = collect(args.paths, stdin=True)
    empty = [raw for raw, diag in problems if diag.code == "E404"]
    if empty and not files and len(empty) == len(problems):
        args.parser.error(f"no spec found: no .arch files in {', '.join(map(shown, empty))}")
    for raw in empty:  # other paths gave specs: say so, but an empty directory is no spec to count
        print(f"archc: warning: no .arch files in {shown(raw)}", file=sys.stderr)
    problems = [(raw, diag) for raw, diag in problems if diag.code != "E404"]
    if args.output:  # before any spec is checked; a spec found in a directory is an input too
        from archc.files import check_output

        check_output(args.output, *(p for p in args.paths if p != "-"), *(f for f in files if f != STDIN))
    ignore = frozenset().union(*args.ignore)
    results = [
        compile_stdin(ignore, args.max_layers) if f == STDIN else compile_file(f, ignore, args.max_layers, trees.get(f))
        for f in files
    ]
    results += [CompileResult(path, "", None, (diag,)) for path, diag in problems]
    bad = sum(failed(r, args.strict) for r in results)
    if fmt == "json":
        _emit(json.dumps(as_json(results, args.strict), indent=2), args.output)
    elif fmt == "junit":
        from archc.commands.junit import junit_xml

        _emit(junit_xml(results, args.strict), args.output)
    elif fmt == "github":
        print_github(results, args.strict)
    else:
        print_text(results, args.strict)
    return 1 if bad else 0


def _emit(text: str, output: str | None) -> None:
    if output:
        from archc.files import write_atomic

        write_atomic(Path(output), text.encode("utf-8"))
    else:
        print(text)


def print_text(results: list[CompileResult], strict: bool) -> None:
    err_color = use_color(sys.stderr)
    for r in results:
        if r.network is not None:
            net = r.network
            tag = "FAIL" if failed(r, strict) else "ok"
            print(
                f"{tag:4}  {shown(r.path)}  {net.name}  {net.params:,} params  {si(net.macs)} MACs"
                + (f"  ({len(r.warnings)} warning{'s' if len(r.warnings) > 1 else ''})" if r.warnings else "")
            )
        if r.diagnostics:
            print(r.render(color=err_color), file=sys.stderr)
    print(count_line(results, strict))


def count_line(results: list[CompileResult], strict: bool) -> str:
    """The closing line: `3 specs checked: 2 valid, 1 invalid, 1 warning`."""
    bad = sum(failed(r, strict) for r in results)
    warnings = sum(len(r.warnings) for r in results)
    n = len(results)
    line = f"{n} spec{'s' if n != 1 else ''} checked: {n - bad} valid, {bad} invalid"
    if warnings:
        line += f", {warnings} warning{'s' if warnings != 1 else ''}"
        if strict:
            line += " (--strict: warnings fail)"
    return line


def _escape(text: str, prop: bool = False) -> str:
    """GitHub's escaping of a workflow command's data (and, with `prop`, of a property value):
    no input can end the line and so start a forged `::add-mask::` or `::error`."""
    out = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        out = out.replace(":", "%3A").replace(",", "%2C")
    return out


def print_github(results: list[CompileResult], strict: bool) -> None:
    """GitHub workflow commands: `::error file=F,line=L,col=C,title=...::message`."""
    for r in results:
        for d in r.diagnostics:
            level = "error" if d.is_error or strict else "warning"
            loc = f"file={_escape(shown(r.path), True)}"
            if d.span is not None:
                loc += f",line={d.span.line},col={d.span.column}"
                loc += f",endLine={d.span.end_line},endColumn={d.span.end_column}"
            title = f"archc {d.code}"
            body = d.message + "".join(f"\nnote: {n.text(shown(r.path))}" for n in d.notes)
            body += f"\n\nhint: {d.hint}" if d.hint else ""
            print(f"::{level} {loc},title={_escape(title, True)}::{_escape(body)}")
        if r.omitted:  # at most MAX_SHOWN annotations a file: GitHub shows only so many anyway
            print(f"::notice file={_escape(shown(r.path), True)}::{_escape(f'... and {r.omitted:,} more')}")
        if r.network is not None:
            tag = "FAIL" if failed(r, strict) else "ok"
            print(f"{tag}  {_escape(shown(r.path))}  {r.network.params:,} params")
    print(count_line(results, strict))


def diag_json(d: Diagnostic, path: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "severity": str(d.severity),
        "code": d.code,
        "message": d.message,
        "hint": d.hint,
    }
    if d.span is not None:
        out.update(_place(d.span))
    # the calls that led to an error in a block's body, innermost first
    out["notes"] = [{"message": n.text(path), **(_place(n.span) if n.span else {})} for n in d.notes]
    return out


def _place(span: Span) -> dict[str, int]:
    return {"line": span.line, "column": span.column, "end_line": span.end_line, "end_column": span.end_column}


def as_json(results: list[CompileResult], strict: bool) -> dict[str, Any]:
    files = []
    for r in results:
        lines = source_lines(r.text)
        entry: dict[str, Any] = {
            "path": r.path,
            "valid": not failed(r, strict),
            "diagnostics": [diag_json(d, r.path) for d in r.diagnostics],
            "rendered": [
                render_one(d, r.path, lines) for d in r.diagnostics
            ],
            "omitted": r.omitted,  # diagnostics past the MAX_SHOWN kept, as "... and N more" says
        }
        if r.network is not None:
            entry.update(network=r.network.name, params=r.network.params, macs=r.network.macs)
        files.append(entry)
    bad = sum(failed(r, strict) for r in results)
    return {"checked": len(results), "valid": len(results) - bad, "invalid": bad, "files": files}


__all__ = ["FORMATS", "Severity", "as_json", "collect", "register", "run"]
