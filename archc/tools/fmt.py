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

The main parser drops comments and builds no tree, so this module has its
own lark parser over the same grammar: `keep_all_tokens` keeps every brace
and parenthesis, and a lexer callback collects the (ignored) comments. The
result is checked against the input: both must parse to the same syntax tree
(apart from positions and the order of keys), so a bug here can never change
what a spec means.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass, field
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from archc.diagnostics import ArchError, Diagnostic
from archc.frontend import syntax as S
from archc.frontend.parser import grammar_text, parse
from archc.kinds import KINDS

INDENT = "  "
_SEPARATORS = ("_NL", "SEMICOLON")


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


class _Comments:
    """A parser whose lexer hands every comment to the list of the parse in progress."""

    def __init__(self) -> None:
        self.found: list[Token] = []
        self.lock = threading.Lock()  # one list per parse: no two parses at once
        self.parser = Lark(
            grammar_text(),
            parser="lalr",
            lexer="contextual",
            propagate_positions=True,
            keep_all_tokens=True,
            maybe_placeholders=False,
            lexer_callbacks={"COMMENT": self.found.append},
        )

    def parse(self, text: str) -> tuple[Tree[Token], list[Token]]:
        with self.lock:
            self.found.clear()
            tree = self.parser.parse(text)
            return tree, list(self.found)


@functools.cache
def _parser() -> _Comments:
    return _Comments()


def _tokens(tree: Tree[Token] | Token) -> list[Token]:
    """The tokens under `tree`, in order. Iterative: lark's `scan_values` recurses, and
    `fc 1+1+...+1` of 100,000 terms is a tree 100,000 deep."""
    found: list[Token] = []
    todo: list[Tree[Token] | Token] = [tree]
    while todo:
        item = todo.pop()
        if isinstance(item, Token):
            found.append(item)
        else:
            todo += reversed(item.children)
    return found


def _text(tree: Tree[Token] | Token) -> str:
    """An expression, shape or value exactly as written, without spaces: `(SQ+1)//2`."""
    return "".join(str(t) for t in _tokens(tree))


def _first_line(tree: Tree[Token] | Token) -> int:
    return _tokens(tree)[0].line or 0


def _last_line(tree: Tree[Token] | Token) -> int:
    return _tokens(tree)[-1].end_line or 0


class _Printer:
    """Walks the tree once, emitting `_Line`s; comments are interleaved by position."""

    def __init__(self, tree: Tree[Token], comments: list[Token], nofold: set[tuple[int, int]]) -> None:
        self.nofold = nofold  # the bodies (by opening brace) that must not be folded onto one line
        code_lines = {
            t.line for t in _tokens(tree) if t.type not in _SEPARATORS and t.line is not None
        }
        self.trailing = {c.line: str(c).rstrip() for c in comments if c.line in code_lines}
        self.pending = [(c.line or 0, str(c).rstrip()) for c in comments if c.line not in code_lines]
        self.lines: list[_Line] = []
        self.params = {
            str(st.children[1]): [str(_tokens(p)[0]) for p in _params(st)]
            for st in tree.children
            if isinstance(st, Tree) and st.data == "block_def"
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

    def items(self, children: list[Any], indent: int, end: int) -> bool:
        """A statement list up to source line `end`; False if it printed nothing at all."""
        first = len(self.lines)
        prev_end: int | None = None
        for child in children:
            if not isinstance(child, Tree):
                continue  # separators and braces: the layout replaces them
            start = _first_line(child)
            prev_end = self.flush(start, indent, prev_end)
            if prev_end is not None and start - prev_end >= 2:
                self.blank()
            getattr(self, child.data)(child, indent)
            prev_end = _last_line(child)
        self.flush(end, indent, prev_end)
        return len(self.lines) > first

    def body(self, head: str, start: int, body: Tree[Token], indent: int, joined: bool = False) -> None:
        """`head {`, the statements indented, `}`; `joined` continues the line before: `} shortcut {`.

        `start` is the head's source line: the brace may sit on a later one.
        """
        kids = body.children
        at = next(i for i, k in enumerate(kids) if isinstance(k, Token) and str(k) == "{")
        opening, closing = kids[at], kids[-1]
        assert isinstance(opening, Token) and isinstance(closing, Token)
        srcs = sorted({start, opening.line or 0})
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
        key = (opening.line or 0, opening.column or 0)
        if not self.items(kids[at + 1 : -1], indent + 1, closing.line or 0) and key not in self.nofold:
            line = self.lines[-1]  # an empty body stays on its head's line: `{}`
            line.folds.append(_Fold(key, 0, len(line.srcs), len(line.srcs), None))
            self.close("}", closing.line or 0)
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
            line.srcs.append(closing.line or 0)
            line.folds.append(_Fold(key, 0, at_inner, at_close, None))
            return
        self.emit(indent, "}", closing.line or 0)

    def close(self, text: str, *srcs: int) -> None:
        """Continue the last line: `} shortcut {`, `} -> 56x56x64`, `{}`."""
        self.lines[-1].code += text
        self.lines[-1].srcs.extend(srcs)

    # statements, one method per grammar rule
    def network_decl(self, st: Tree[Token], indent: int) -> None:
        self.emit(indent, f"network {st.children[1]}", _first_line(st))

    def input_decl(self, st: Tree[Token], indent: int) -> None:
        self.emit(indent, f"input {_text(st.children[1])}", _first_line(st))

    def expect_stmt(self, st: Tree[Token], indent: int) -> None:
        parts = [_text(c) for c in st.children[:4]]
        if len(st.children) > 4:
            tol = [str(t) for t in _tokens(st.children[4])]
            parts.append(f"{tol[0]} {''.join(tol[1:])}")
        self.emit(indent, " ".join(parts), _first_line(st))

    def layer(self, st: Tree[Token], indent: int) -> None:
        label, rest = _label(st.children)
        kind = str(rest[0])
        arrow = rest[-1] if isinstance(rest[-1], Tree) and rest[-1].data == "arrow" else None
        args = [a for a in rest[1:] if isinstance(a, Tree) and a.data in ("positional", "keyword")]
        order = [k.name for k in KINDS[kind].keys] if kind in KINDS else self.params.get(kind, [])

        def rank(item: tuple[int, Tree[Token]]) -> tuple[int, int]:
            i, arg = item
            if arg.data == "positional":
                return (-1, i)  # positional values first, as written
            key = str(arg.children[0])
            return (order.index(key) if key in order else len(order), i)

        words = [label + kind] + [_arg(a) for _, a in sorted(enumerate(args), key=rank)]
        self.emit(
            indent,
            " ".join(words),
            _first_line(st),
            arrow=f"-> {_text(arrow.children[1])}" if arrow is not None else None,
            layer=True,
        )

    def block_def(self, st: Tree[Token], indent: int) -> None:
        params = [_text(p) for p in _params(st)]
        head = f"block {st.children[1]}" + (f"({', '.join(params)})" if params else "")
        self.body(head, _first_line(st), st.children[-1], indent)  # type: ignore[arg-type]

    def repeat(self, st: Tree[Token], indent: int) -> None:
        label, (_kw, count, body, *arrow) = _label(st.children)
        first = len(self.lines)
        self.body(f"{label}repeat {_text(count)}", _first_line(st), body, indent)
        self._arrow(arrow, first)

    repeat_arrow = repeat

    def residual(self, st: Tree[Token], indent: int) -> None:
        label, (_kw, body, *extras) = _label(st.children)
        first = len(self.lines)
        self.body(f"{label}residual", _first_line(st), body, indent)
        for extra in extras:
            if extra.data == "shortcut_clause":
                self.body("shortcut", _first_line(extra), extra.children[1], indent, joined=True)
        self._arrow([e for e in extras if e.data == "arrow"], first)

    residual_arrow = residual

    def merge(self, st: Tree[Token], indent: int) -> None:
        label, (kw, body, *arrow) = _label(st.children)
        first = len(self.lines)
        self.body(f"{label}{kw}", _first_line(st), body, indent)
        self._arrow(arrow, first)

    merge_arrow = merge

    def branch(self, st: Tree[Token], indent: int) -> None:
        self.body("branch", _first_line(st), st.children[1], indent)  # type: ignore[arg-type]

    def shortcut(self, st: Tree[Token], indent: int) -> None:
        self.body("shortcut", _first_line(st), st.children[1], indent)  # type: ignore[arg-type]

    def _arrow(self, arrow: list[Any], first: int) -> None:
        """`-> shape` after a body; a statement that fit on one line aligns it like a layer."""
        if not arrow:
            return
        text = f"-> {_text(arrow[0].children[1])}"
        if len(self.lines) == first + 1 and self.lines[-1].arrow is None:
            self.lines[-1].arrow = text
            self.lines[-1].layer = True
            self.lines[-1].srcs.append(_first_line(arrow[0]))
        else:
            self.close(f" {text}", _first_line(arrow[0]))

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


def _label(children: list[Any]) -> tuple[str, list[Any]]:
    """`name: ` (or "") and the other children."""
    if children and isinstance(children[0], Tree) and children[0].data == "label":
        return f"{children[0].children[0]}: ", list(children[1:])
    return "", list(children)


def _params(block_def: Tree[Token]) -> list[Tree[Token]]:
    """The `param` subtrees of a block definition (none when it has no parentheses)."""
    found = [c for c in block_def.children if isinstance(c, Tree) and c.data == "block_params"]
    return [p for p in found[0].children if isinstance(p, Tree)] if found else []


def _arg(arg: Tree[Token]) -> str:
    if arg.data == "positional":
        return _text(arg.children[0])
    return f"{arg.children[0]}={_text(arg.children[2])}"


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


def _skeleton(node: Any) -> list[Any]:
    """A syntax tree without positions, keys sorted: what formatting must preserve.

    Flat (a pre-order list of node types, field names and values), and built
    iteratively: comparing nested tuples 100,000 deep (a long `1+1+...`)
    would exhaust the stack. Syntax nodes are NamedTuples (dataclasses are
    accepted too); positions are every field named `span` or `value_span`.
    """
    out: list[Any] = []
    todo: list[Any] = [node]
    while todo:
        item = todo.pop()
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            names = [f.name for f in dataclasses.fields(item)]
        elif isinstance(item, tuple) and hasattr(type(item), "_fields"):
            names = list(getattr(type(item), "_fields"))  # noqa: B009 - a NamedTuple's, unknown to mypy here
        elif isinstance(item, tuple):
            out.append(("(", len(item)))
            todo += reversed(item)
            continue
        else:
            out.append(item)
            continue
        fields = {n: getattr(item, n) for n in names if n not in ("span", "value_span")}
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
    try:
        tree, comments = _parser().parse(text)
    except UnexpectedInput as exc:  # pragma: no cover - the main parser accepted the same grammar
        raise FormatError(diags) from exc
    nofold: set[tuple[int, int]] = set()
    while True:  # each round unfolds at least one more body, so this ends
        printer = _Printer(tree, comments, nofold)
        printer.items(tree.children, 0, 1 << 30)
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
    if [str(c).rstrip() for c in _parser().parse(out)[1]] != [str(c).rstrip() for c in comments]:
        raise AssertionError("archc fmt would lose or reorder a comment of this spec")
    return out
