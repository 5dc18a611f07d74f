"""The canonical layout of `.arch` source (`archc fmt`).

    >>> print(format_text("input 8x8x3\\nc:conv  F=3   K=4->6x6x4 # first\\nrelu;fc 10\\n"), end="")
    input 8x8x3
    c: conv K=4 F=3 -> 6x6x4  # first
    relu
    fc 10

Rules: one statement per line; bodies indented by two spaces; `name: kind`,
then positional values, then keys in the registry's order (a block call's keys
in the block's parameter order); one space between tokens, none inside
expressions; the `->` of consecutive layer lines aligned in a column; trailing
comments of consecutive lines aligned too; full-line comments kept where they
are; at most one blank line in a row, none at the start or end of a body.
A body of one plain layer, or an empty one, goes on its head's line (`repeat 2
{ relu }`, `block E {}`) unless that would bring the comments of two lines onto
one; a brace on the line below its head moves up, and the comments of the lines
it leaves go above the head. Every comment keeps a line of its own.
Numbers, shapes and parentheses are printed exactly as written.

It prints from the syntax tree of the one parser (`archc.frontend.parser`),
which keeps what this needs: every text as written, the parentheses around
expressions, where braces stand, and the comments with their places. The
result is checked against the input: both must parse to the same syntax tree
(apart from positions and the order of keys), so a bug here can never change
what a spec means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archc.diagnostics import ArchError, Diagnostic
from archc.frontend import syntax as S
from archc.frontend.parser import parse
from archc.kinds import KINDS

INDENT = "  "


class FormatError(ArchError):
    """The text does not parse; `diagnostics` say why (rendered by the caller)."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics[0].message if diagnostics else "syntax error")
        self.diagnostics = diagnostics


@dataclass
class _Fold:
    """A body folded onto its head's line: `srcs[start:inner]` came from the head line,
    `srcs[inner:close]` from the one statement inside, `srcs[close:end]` from the closing line."""

    key: tuple[int, int]  # the opening brace's line and column
    start: int
    inner: int
    close: int
    end: int | None  # None: to the end of the line

    def shifted(self, by: int, end: int) -> _Fold:
        """The same fold inside another one, whose inner part starts at `by` and ends at `end`."""
        stop = end if self.end is None else by + self.end
        return _Fold(self.key, by + self.start, by + self.inner, by + self.close, stop)


@dataclass
class _Line:
    indent: int
    code: str  # for a layer line, the part before the arrow
    srcs: list[int]  # the source lines its tokens come from (none for comments and blanks)
    arrow: str | None = None  # "-> 55x55x96"
    layer: bool = False
    comment: str | None = None  # a trailing comment
    blank: bool = False
    folds: list[_Fold] = field(default_factory=list)  # the bodies folded onto this line
    # full-line comments to print above: source line, text, and the place in `srcs` they come from
    above: list[tuple[int, str, int]] = field(default_factory=list)


def expression(e: S.Expr) -> str:
    """An expression as written, without spaces: `(SQ+1)//2`.

    Iterative: `fc 1+1+...+1` of 100,000 terms is a tree as deep as it is long.
    """
    out: list[str] = []
    todo: list[S.Expr | str] = [e]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        close = ")" * item.parens
        if isinstance(item, S.BinOp):
            todo += [close, item.right, item.op, item.left]
        elif isinstance(item, S.Neg):
            todo += [close, item.operand, "-"]
        else:
            todo.append(close)
            todo.append(item.name if isinstance(item, S.Ref) else item.text)
        out.append("(" * item.parens)
    return "".join(out)


def _last_line(st: S.Stmt) -> int:
    """The line a statement ends on: its last closing brace (an arrow after it is on that line)."""
    if isinstance(st, S.Residual) and st.shortcut_braces is not None:
        return st.shortcut_braces.close.line
    braces: S.Braces | None = getattr(st, "braces", None)
    return braces.close.line if braces is not None else st.span.line  # other statements fit on one line


def _code_lines(stmts: tuple[S.Stmt, ...]) -> set[int]:
    """The lines that hold code: a statement's first line, its braces and `shortcut`."""
    lines = set()
    for st in S.walk(stmts):
        lines.add(st.span.line)
        braces: S.Braces | None = getattr(st, "braces", None)
        if braces is not None:
            lines.update((braces.open.line, braces.close.line))
        if isinstance(st, S.Residual) and st.shortcut_keyword is not None and st.shortcut_braces is not None:
            lines.update((st.shortcut_keyword.line, st.shortcut_braces.open.line, st.shortcut_braces.close.line))
    return lines


class _Printer:
    """Walks the tree once, emitting `_Line`s; comments are interleaved by position."""

    def __init__(self, program: S.Program, nofold: set[tuple[int, int]]) -> None:
        self.nofold = nofold  # the bodies (by opening brace) that must not be folded onto one line
        code_lines = _code_lines(program.statements)
        comments = [(c.span.line, c.text.rstrip()) for c in program.comments]
        self.trailing = {line: text for line, text in comments if line in code_lines}
        self.pending = [(line, text) for line, text in comments if line not in code_lines]
        self.lines: list[_Line] = []
        self.params = {
            st.name: [p.name for p in st.params] for st in program.statements if isinstance(st, S.BlockDef)
        }

    # layout
    def emit(self, indent: int, code: str, src: int | list[int] | None, **kw: Any) -> None:
        srcs = src if isinstance(src, list) else [src] if src else []
        self.lines.append(_Line(indent, code, srcs, **kw))

    def blank(self) -> None:
        if self.lines and not self.lines[-1].blank:
            self.lines.append(_Line(0, "", [], blank=True))

    def flush(self, before: int, indent: int, prev_end: int | None) -> int | None:
        """Emit the full-line comments above source line `before`; return the last line used."""
        while self.pending and self.pending[0][0] < before:
            line, text = self.pending.pop(0)
            if prev_end is not None and line - prev_end >= 2:
                self.blank()
            self.emit(indent, text, None)
            prev_end = line
        return prev_end

    def items(self, stmts: tuple[S.Stmt, ...], indent: int, end: int) -> bool:
        """A statement list up to source line `end`; False if it printed nothing at all."""
        first = len(self.lines)
        prev_end: int | None = None
        for st in stmts:
            start = st.span.line  # every statement's span is on its first line
            prev_end = self.flush(start, indent, prev_end)
            if prev_end is not None and start - prev_end >= 2:
                self.blank()
            self.statement(st, indent)
            prev_end = _last_line(st)
        self.flush(end, indent, prev_end)
        return len(self.lines) > first

    def body(
        self,
        head: str,
        start: int,
        stmts: tuple[S.Stmt, ...],
        braces: S.Braces,
        indent: int,
        joined: bool = False,
    ) -> None:
        """`head {`, the statements indented, `}`; `joined` continues the line before: `} shortcut {`.

        `start` is the head's source line: the brace may sit on a later one.
        """
        opening, closing = braces
        srcs = sorted({start, opening.line})
        if joined:
            self.close(f" {head} {{", *srcs)
        else:
            self.emit(indent, f"{head} {{", srcs)
        # A brace on a later line joins the head's line: the comments of the lines before it
        # (trailing the head, or full-line between) go above the head (see `render`).
        line = self.lines[-1]
        place = len(line.srcs) - len(srcs)  # where this head starts in its line (after `}` if joined)
        line.above.extend(
            (n, self.trailing.pop(n), place) for n in range(start, srcs[-1]) if n in self.trailing
        )
        while self.pending and self.pending[0][0] < srcs[-1]:
            line.above.append((*self.pending.pop(0), place))
        first = len(self.lines)
        key = (opening.line, opening.column)
        if not self.items(stmts, indent + 1, closing.line) and key not in self.nofold:
            line = self.lines[-1]  # an empty body stays on its head's line: `{}`
            line.folds.append(_Fold(key, 0, len(line.srcs), len(line.srcs), None))
            self.close("}", closing.line)
            return
        inner = self.lines[first:]
        if len(inner) == 1 and inner[0].layer and not inner[0].blank and key not in self.nofold:
            # One plain layer: `repeat 2 { Basic K=64 }` reads better on one line.
            # (Unless that would put comments of two lines on one: see `_Printer.conflicts`.)
            only = inner[0]
            del self.lines[first:]
            line = self.lines[-1]
            at_inner = len(line.srcs)
            at_close = at_inner + len(only.srcs)
            line.folds.extend(f.shifted(at_inner, at_close) for f in only.folds)
            line.above.extend((n, text, at_inner + at) for n, text, at in only.above)
            line.code += f" {only.code}{' ' + only.arrow if only.arrow else ''} }}"
            line.srcs.extend(only.srcs)
            line.srcs.append(closing.line)
            line.folds.append(_Fold(key, 0, at_inner, at_close, None))
            return
        self.emit(indent, "}", closing.line)

    def close(self, text: str, *srcs: int) -> None:
        """Continue the last line: `} shortcut {`, `} -> 56x56x64`, `{}`."""
        self.lines[-1].code += text
        self.lines[-1].srcs.extend(srcs)

    # statements, one method per kind of statement
    def statement(self, st: S.Stmt, indent: int) -> None:
        if isinstance(st, S.LayerStmt):
            self.layer(st, indent)
        elif isinstance(st, S.NetworkDecl):
            self.emit(indent, f"network {st.name}", st.span.line)
        elif isinstance(st, S.InputDecl):
            unit = f" {st.unit.name}" if st.unit is not None else ""  # `tokens` in `input 1024 tokens`
            self.emit(indent, f"input {st.shape.text}{unit}", st.span.line)
        elif isinstance(st, S.Expect):
            self.expect(st, indent)
        elif isinstance(st, S.BlockDef):
            params = [p.name + (f"={expression(p.default)}" if p.default is not None else "") for p in st.params]
            head = f"block {st.name}" + (f"({', '.join(params)})" if params else "")
            self.body(head, st.span.line, st.body, st.braces, indent)
        elif isinstance(st, S.Repeat):
            first = len(self.lines)
            self.body(f"{_label(st.label)}repeat {expression(st.times)}", st.span.line, st.body, st.braces, indent)
            self._arrow(st.arrow, first)
        elif isinstance(st, S.Residual):
            first = len(self.lines)
            self.body(f"{_label(st.label)}residual", st.span.line, st.body, st.braces, indent)
            if st.shortcut is not None and st.shortcut_keyword is not None and st.shortcut_braces is not None:
                self.body("shortcut", st.shortcut_keyword.line, st.shortcut, st.shortcut_braces, indent, joined=True)
            self._arrow(st.arrow, first)
        elif isinstance(st, S.Concat):
            first = len(self.lines)
            self.body(f"{_label(st.label)}{st.op}", st.span.line, st.branches, st.braces, indent)
            self._arrow(st.arrow, first)
        elif isinstance(st, S.Branch):
            self.body("branch", st.span.line, st.body, st.braces, indent)
        elif isinstance(st, S.Shortcut):
            self.body("shortcut", st.span.line, st.body, st.braces, indent)
        else:  # pragma: no cover - a tree with error nodes is never formatted
            raise AssertionError(f"archc fmt cannot print {type(st).__name__}")

    def expect(self, st: S.Expect, indent: int) -> None:
        value = st.value.text
        parts = ["expect", ".".join((*st.path, st.quantity)), st.written_op, value]
        if st.tolerance_sign is not None:
            parts.append(f"{st.tolerance_sign} {st.tolerance_text}{'%' if st.tolerance_is_percent else ''}")
        self.emit(indent, " ".join(parts), st.span.line)

    def layer(self, st: S.LayerStmt, indent: int) -> None:
        order = [k.name for k in KINDS[st.kind].keys] if st.kind in KINDS else self.params.get(st.kind, [])

        def rank(item: tuple[int, S.KeyArg]) -> tuple[int, int]:
            i, kw = item
            return (order.index(kw.key) if kw.key in order else len(order), i)

        # positional values first, as written; then the keys in the kind's (or block's) order
        words = [_label(st.label) + st.kind, *(expression(e) for e in st.positional)]
        words += [f"{kw.key}={expression(kw.value)}" for _, kw in sorted(enumerate(st.keywords), key=rank)]
        self.emit(
            indent,
            " ".join(words),
            st.span.line,
            arrow=f"-> {st.arrow.text}" if st.arrow is not None else None,
            layer=True,
        )

    def _arrow(self, arrow: S.ShapeLit | None, first: int) -> None:
        """`-> shape` after a body; a statement that fit on one line aligns it like a layer."""
        if arrow is None:
            return
        text = f"-> {arrow.text}"
        if len(self.lines) == first + 1 and self.lines[-1].arrow is None:
            self.lines[-1].arrow = text
            self.lines[-1].layer = True
            self.lines[-1].srcs.append(arrow.span.line)
        else:
            self.close(f" {text}", arrow.span.line)

    # output
    def _owners(self) -> dict[int, int]:
        """The output line each trailing comment goes to: the last one with code from its line."""
        last = {src: i for i, line in enumerate(self.lines) for src in line.srcs}
        owners = {}
        for src in sorted(self.trailing):
            if src not in last:  # pragma: no cover - every line of code prints somewhere
                last[src] = max((i for s, i in last.items() if s < src), default=0)
            owners[src] = last[src]
        return owners

    def conflicts(self) -> set[tuple[int, int]]:
        """Folded bodies that joined the comments of two lines (head, statement, `}`) into one.

        Such a body is printed unfolded instead, so that every comment keeps a line of its own.
        Only the first on each line: once it is unfolded, a body that was joined to the same
        line (`} shortcut {`) may fit after all.
        """
        found = set()
        owners = self._owners()
        for i, line in enumerate(self.lines):
            # where in `srcs` each comment that lands on this line comes from (its last place),
            # and where the comments to go above it come from: above a fold's head they are
            # above its head line folded or not, but from its other parts they would move
            where = {s: j for j, s in enumerate(line.srcs) if owners.get(s) == i}
            clashes = []
            for fold in line.folds:
                end = len(line.srcs) if fold.end is None else fold.end
                places = [j for j in where.values() if fold.start <= j < end]
                places += [j for _, _, j in line.above if fold.inner <= j < end]
                if len({(j >= fold.inner) + (j >= fold.close) for j in places}) > 1:
                    clashes.append(fold.key)
            if clashes:
                found.add(min(clashes))
        return found

    def render(self) -> str:
        notes: dict[int, list[tuple[int, str]]] = {}
        for src, i in self._owners().items():
            notes.setdefault(i, []).append((src, self.trailing[src]))
        lines: list[_Line] = []
        for i, line in enumerate(self.lines):
            # Comments of several source lines that met on one line (`repeat 2  # a`, then
            # `{  # b` below it): the last one after the code, the others above it, in order.
            others = notes.get(i, [])
            if others:
                line.comment = others.pop()[1]
            above = sorted([(n, text) for n, text, _ in line.above] + others)
            indent = line.indent + line.code.startswith("}")  # above `} shortcut {`: still in the body
            lines.extend(_Line(indent, text, []) for _, text in above)
            lines.append(line)
        while lines and lines[-1].blank:
            lines.pop()
        _align_arrows(lines)
        _align_comments(lines)
        out = []
        for line in lines:
            text = "" if line.blank else INDENT * line.indent + line.code
            out.append(text + (line.comment or ""))
        return "\n".join(out) + "\n" if out else ""


def _label(label: S.Label | None) -> str:
    """`name: `, or "" for an unnamed statement."""
    return f"{label.name}: " if label is not None else ""


def _align_arrows(lines: list[_Line]) -> None:
    """Within a run of consecutive layer lines, put every `->` in one column."""
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and lines[j].layer and lines[j].indent == lines[i].indent:
            j += 1
        run = [ln for ln in lines[i:j] if ln.arrow]
        if run:
            width = max(len(ln.code) for ln in run)
            for ln in run:
                ln.code = f"{ln.code.ljust(width)} {ln.arrow}"
                ln.arrow = None
        i = max(j, i + 1)


def _align_comments(lines: list[_Line]) -> None:
    """Trailing comments of consecutive lines start in one column, two spaces past the code."""
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and lines[j].comment and not lines[j].blank:
            j += 1
        run = lines[i:j]
        if run:
            width = max(len(INDENT * ln.indent + ln.code) for ln in run) + 2
            for ln in run:
                ln.comment = " " * (width - len(INDENT * ln.indent + ln.code)) + (ln.comment or "")
        i = max(j, i + 1)


# What formatting may change: where things stand, and the comments (checked on their own).
_LAYOUT_FIELDS = frozenset({"span", "value_span", "braces", "shortcut_keyword", "shortcut_braces", "comments"})


def _skeleton(node: Any) -> list[Any]:
    """A syntax tree without its layout, keys sorted: what formatting must preserve.

    Flat (a pre-order list of node types, field names and values), and built
    iteratively: comparing nested tuples 100,000 deep (a long `1+1+...`)
    would exhaust the stack.
    """
    out: list[Any] = []
    todo: list[Any] = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, tuple) and hasattr(type(item), "_fields"):  # a syntax node (a NamedTuple)
            names = [n for n in getattr(type(item), "_fields") if n not in _LAYOUT_FIELDS]  # noqa: B009 - unknown to mypy
        elif isinstance(item, tuple):
            out.append(("(", len(item)))
            todo += reversed(item)
            continue
        else:
            out.append(item)
            continue
        fields = {n: getattr(item, n) for n in names}
        if isinstance(item, S.LayerStmt):
            fields["keywords"] = tuple(sorted(item.keywords, key=lambda kw: kw.key))
        out.append((type(item).__name__, tuple(fields)))
        todo += reversed(fields.values())
    return out


def format_text(text: str) -> str:
    """The canonical layout of a spec; raises `FormatError` if it does not parse."""
    program, diags = parse(text)
    if program is None:
        raise FormatError(diags)
    nofold: set[tuple[int, int]] = set()
    while True:  # each round unfolds at least one more body, so this ends
        printer = _Printer(program, nofold)
        printer.items(program.statements, 0, 1 << 30)
        conflicts = printer.conflicts()
        if not conflicts:
            break
        nofold |= conflicts
    out = printer.render()
    again, _ = parse(out)
    if again is None or _skeleton(again) != _skeleton(program):
        # Never write a file whose meaning changed: this is a bug in the formatter.
        raise AssertionError("archc fmt would change the meaning of this spec")
    # Nor one that lost a comment, or moved one past another.
    if [c.text.rstrip() for c in again.comments] != [c.text.rstrip() for c in program.comments]:
        raise AssertionError("archc fmt would lose or reorder a comment of this spec")
    return out


BOM = "\ufeff"


def line_ending(text: str) -> str:
    """The file's line ending: `\\r\\n` when most lines end so, else `\\n` (`fmt` keeps it).

    >>> line_ending("input 4\\r\\nfc 3\\r\\n"), line_ending("input 4\\nfc 3\\n"), line_ending("input 4")
    ('\\r\\n', '\\n', '\\n')
    """
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def format_source(text: str) -> str:
    """`format_text` of a file's whole text, keeping what is the file's own: its line endings
    (CRLF stays CRLF) and a UTF-8 byte-order mark at the start.

    >>> format_source("\\ufeffinput 4\\r\\nfc   3\\r\\n") == "\\ufeffinput 4\\r\\nfc 3\\r\\n"
    True
    """
    bom = BOM if text.startswith(BOM) else ""
    body = text[len(bom) :]
    return bom + format_text(body.replace("\r\n", "\n")).replace("\n", line_ending(body))


def why_reformatted(before: str, after: str) -> str:
    """What `fmt --check` says about a file it would change: what kind of change, and where first.

    >>> why_reformatted("input 4\\nfc   3\\n", "input 4\\nfc 3\\n")
    'line 2 changes (1 line in all)'
    >>> why_reformatted("input 4\\r\\nfc 3\\n", "input 4\\r\\nfc 3\\r\\n")
    'mixed line endings (1 CRLF, 1 LF): every line would end in CRLF'
    """
    old, new = before.splitlines(), after.splitlines()
    crlf = before.count("\r\n")
    lf = before.count("\n") - crlf
    mixed = f"mixed line endings ({crlf} CRLF, {lf} LF): every line would end in {'CRLF' if crlf >= lf else 'LF'}"
    if old == new:  # the same lines: only their endings differ
        return mixed if crlf and lf else "the last line has no line ending"
    import difflib

    changed = [
        (i1, max(i2 - i1, j2 - j1))
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
        if tag != "equal"
    ]
    first = changed[0][0] + 1
    count = sum(n for _, n in changed)
    where = f"line {min(first, len(old) or 1)} changes ({count} line{'s' if count != 1 else ''} in all)"
    return f"{where}; {mixed}" if crlf and lf else where


def unified_diff(before: str, after: str, path: str) -> str:
    """`fmt --diff`: the change as a unified diff, `path` before and after (line endings as written)."""
    import difflib

    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), path, f"{path} (formatted)"
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
