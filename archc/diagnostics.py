"""Diagnostics as data, and the one function that renders them.

    specs/bad.arch:3:36: error[E202]: conv1 outputs 55x55x96, but the spec says 56x56x96
        3 | conv1: conv K=96 F=11 S=4 P=0 -> 56x56x96
          |                                    ^~~~~~~~
      hint: (227 + 2*0 - 11)/4 + 1 = 55

Colour only on a terminal. Every failure of the front end is a `Diagnostic`;
callers get them through `SpecError`, the root of which is `ArchError`. A
back-end reports what it cannot write as diagnostics too, unrendered, in a
`TargetError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import NamedTuple

from archc.ir import Span

MAX_SHOWN = 50  # diagnostics of one file; past this, "... and N more"
MAX_QUOTED = 160  # characters of a source line shown under a diagnostic; a longer line is cut around the caret


def source_lines(text: str) -> list[str]:
    """The lines of a spec as the lexer counts them, so a span's line is the line shown.

    A line ends at a newline and nowhere else: a form feed, a vertical tab,
    U+2028 or a lone carriage return is a character inside a line (shown as `?`), as it
    is to the lexer; `str.splitlines` also broke lines at those, so the line
    under a diagnostic was the wrong one.

    >>> source_lines("input 3\\fx\\r\\nrelu\\u2028\\n")
    ['input 3\\x0cx', 'relu\\u2028', '']
    """
    return [line.removesuffix("\r") for line in text.split("\n")]


def shown(text: str) -> str:
    """`text` as it may reach a terminal or a log: itself when every character is
    printable, else Python's repr, whose escapes hide newlines, ESC and the like.

    File names and weight keys come from untrusted input: a name holding ESC
    would drive the terminal, one holding a newline could forge log lines.

    >>> shown("specs/a.arch"), shown("a\\nb.arch"), shown("\\x1b[2J.arch")
    ('specs/a.arch', "'a\\\\nb.arch'", "'\\\\x1b[2J.arch'")
    """
    return text if text.isprintable() else repr(text)


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Note(NamedTuple):
    """A line under a diagnostic: `note: in B K=-8, called at net.arch:12:1`.

    With a span, the renderer adds " at FILE:LINE:COL" (the file is the
    renderer's to name); the language server makes it related information.
    """

    message: str
    span: Span | None = None

    def text(self, path: str | None = None) -> str:
        """The note on one line, its place named in `path` (already `shown`), else by line and column.

        >>> Note("in B K=-8, called", Span(12, 1, 12, 2)).text("net.arch")
        'in B K=-8, called at net.arch:12:1'
        """
        if self.span is None:
            return self.message
        where = f"{path}:" if path else ""
        return f"{self.message} at {where}{self.span.line}:{self.span.column}"


class Diagnostic(NamedTuple):
    severity: Severity
    code: str
    message: str
    span: Span | None
    hint: str | None = None
    notes: tuple[Note, ...] = ()  # the call sites of an error inside a block, innermost first

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def error(code: str, message: str, span: Span | None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, code, message, span, hint)


def warning(code: str, message: str, span: Span | None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(Severity.WARNING, code, message, span, hint)


MAX_SUGGESTION_WORD = 200  # a longer word gets no "did you mean": difflib's cost grows with the square of it
_CLOSEST = 100  # candidates difflib compares, chosen cheaply first from any number of names


class Names:
    """Names to suggest from, sorted and indexed by last dotted part once.

    A network of 300,000 layers made every failing `expect` sort, split and
    compare all of them with difflib (minutes); with this, each costs a lookup.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.sorted = sorted(set(names))
        self._by_leaf: dict[str, list[str]] | None = None
        self._lowered: dict[str, str] | None = None
        self.lowered_sorted: list[str] = []

    def with_leaf(self, leaf: str) -> list[str]:
        if self._by_leaf is None:
            self._by_leaf = {}
            for name in self.sorted:
                self._by_leaf.setdefault(name.rsplit(".", 1)[-1], []).append(name)
        return self._by_leaf.get(leaf, [])

    def lowered(self) -> dict[str, str]:
        if self._lowered is None:
            self._lowered = {c.lower(): c for c in self.sorted}
            self.lowered_sorted = sorted(self._lowered)
        return self._lowered


def _names(candidates: Iterable[str] | Names) -> Names:
    return candidates if isinstance(candidates, Names) else Names(candidates)


def _closest(word: str, pool: list[str]) -> list[str]:
    """At most `_CLOSEST` names of the sorted `pool` near `word`: its neighbours in sorted
    order, which share the longest prefixes with it. difflib compares those alone."""
    import bisect  # only on the error path

    if len(pool) <= _CLOSEST:
        return [c for c in pool if len(c) <= MAX_SUGGESTION_WORD]
    at = bisect.bisect_left(pool, word)
    return [c for c in pool[max(0, at - _CLOSEST // 2) : at + _CLOSEST // 2] if len(c) <= MAX_SUGGESTION_WORD]


def did_you_mean(word: str, candidates: Iterable[str] | Names) -> str | None:
    """A "did you mean" hint for a misspelled word, or None.

    >>> did_you_mean("maxpol", ["maxpool", "avgpool", "conv"])
    "did you mean 'maxpool'?"
    """
    import difflib  # only on the error path

    if len(word) > MAX_SUGGESTION_WORD:
        return None
    names = _names(candidates)
    lowered = names.lowered()
    # the neighbours in sorted order miss a typo in the first letter: those of the lower-cased word too
    near = {*_closest(word, names.sorted), *(lowered[c] for c in _closest(word.lower(), names.lowered_sorted))}
    close = difflib.get_close_matches(word, sorted(near), n=1, cutoff=0.6)
    if not close and word.lower() in lowered:
        close = [lowered[word.lower()]]
    return f"did you mean '{close[0]}'?" if close else None


def did_you_mean_path(path: str, candidates: Iterable[str] | Names) -> str | None:
    """"Did you mean" for a dotted name: the closest path that ends in the same layer, if any.

    >>> did_you_mean_path("layer1.0.conv1", ["layer1.0", "layer1.1", "layer1.0.block.conv1", "layer2.0.block.conv1"])
    "did you mean 'layer1.0.block.conv1'?"
    """
    import difflib  # only on the error path

    if len(path) > MAX_SUGGESTION_WORD:
        return None
    names = _names(candidates)
    same_leaf = _closest(path, names.with_leaf(path.rsplit(".", 1)[-1]))
    if not same_leaf:
        return did_you_mean(path, names)
    best = max(same_leaf, key=lambda c: difflib.SequenceMatcher(None, path, c).ratio())
    return f"did you mean '{best}'?"


class ArchError(Exception):
    """The root of archc's exceptions."""


class SpecError(ArchError):
    """A spec failed to load: carries the diagnostics and their rendered text."""

    def __init__(self, diagnostics: Sequence[Diagnostic], rendered: str) -> None:
        super().__init__(rendered)
        self.diagnostics = tuple(diagnostics)
        self.rendered = rendered


class TargetError(ArchError):
    """A valid network that a target cannot express: its diagnostics, not yet rendered.

    A back-end has the analysed graph, not the source text; the API and the
    CLI render these against the spec (`archc.api.Network.rendering`).
    """

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        super().__init__("; ".join(f"{d.code}: {d.message}" for d in diagnostics))
        self.diagnostics = tuple(diagnostics)


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def severity(self, sev: Severity, text: str) -> str:
        return self._wrap("1;31" if sev is Severity.ERROR else "1;33", text)

    def caret(self, sev: Severity, text: str) -> str:
        return self._wrap("31" if sev is Severity.ERROR else "33", text)

    def hint(self, text: str) -> str:
        return self._wrap("36", text)


def _quoted(src: str, column: int, width: int) -> tuple[str, int, int]:
    """A window of at most MAX_QUOTED characters of a long line around the span.

    Returns the text to show, the caret's column in it and the marker's width:
    a 1 MB one-line spec must not print a megabyte per error.
    """
    if len(src) <= MAX_QUOTED:
        return src, column, width
    width = min(width, MAX_QUOTED // 2)
    start = max(0, min(column - 1 - MAX_QUOTED // 4, len(src) - MAX_QUOTED))
    piece = src[start : start + MAX_QUOTED]
    head = "..." if start > 0 else ""
    tail = "..." if start + MAX_QUOTED < len(src) else ""
    return head + piece + tail, column - start + len(head), width


def render_one(diag: Diagnostic, path: str, lines: Sequence[str], color: bool = False) -> str:
    """Render one diagnostic: location, message, the source line, a caret, a hint.

    `lines` are `source_lines(text)`.
    """
    st = _Style(color)
    path = shown(path)
    head = st.severity(diag.severity, f"{diag.severity}[{diag.code}]")
    if diag.span is None:
        out = [f"{st.bold(path)}: {head}: {diag.message}"]
    else:
        sp = diag.span
        out = [f"{st.bold(f'{path}:{sp.line}:{sp.column}')}: {head}: {diag.message}"]
        # An empty file (or a span just past the last line) still gets its caret
        # line: every located error shows one, unless its text is not given (a
        # binary file is located, never quoted) and the caret would point past it.
        known = lines[sp.line - 1] if 1 <= sp.line <= len(lines) else ""
        if 1 <= sp.line <= max(len(lines), 1) and sp.column <= len(known) + 1:
            src = lines[sp.line - 1] if sp.line <= len(lines) else ""
            gutter = str(sp.line)
            pad = " " * len(gutter)
            end = sp.end_column if sp.end_line == sp.line else len(src) + 1
            width = max(1, min(end, len(src) + 1) - sp.column)
            src, column, width = _quoted(src, sp.column, width)  # before anything walks a 1 MB line
            # one '?' per control character (a terminal escape, a NUL) and a space per tab: columns stay aligned
            src = "".join(ch if ch.isprintable() else " " if ch == "\t" else "?" for ch in src)
            marker = "^" + "~" * (width - 1)
            out.append(f"  {gutter} | {src}")
            out.append(f"  {pad} | {' ' * (column - 1)}{st.caret(diag.severity, marker)}")
    for note in diag.notes:
        out.append(f"  note: {note.text(path)}")
    if diag.hint:
        out.append(st.hint(f"  hint: {diag.hint}"))
    return "\n".join(out)


def in_order(diags: Sequence[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in source order (those without a place first)."""
    return sorted(diags, key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))


def render(diags: Sequence[Diagnostic], path: str, text: str, color: bool = False, omitted: int = 0) -> str:
    """Render diagnostics in source order, capped at MAX_SHOWN ("... and N more").

    `omitted`: diagnostics found but not kept (`CompileResult.omitted`), counted in N.
    """
    lines = source_lines(text)
    ordered = in_order(diags)
    parts = [render_one(d, path, lines, color) for d in ordered[:MAX_SHOWN]]
    more = len(ordered) - len(parts) + omitted
    if more > 0:
        parts.append(f"... and {more:,} more")
    return "\n".join(parts)
