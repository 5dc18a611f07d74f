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

MAX_SHOWN = 50  # past this, "... and N more"


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


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A "did you mean" hint for a misspelled word, or None.

    >>> did_you_mean("maxpol", ["maxpool", "avgpool", "conv"])
    "did you mean 'maxpool'?"
    """
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f"did you mean '{close[0]}'?" if close else None


def did_you_mean_path(path: str, candidates: Iterable[str]) -> str | None:
    """"Did you mean" for a dotted name: the closest path that ends in the same layer, if any.

    >>> did_you_mean_path("layer1.0.conv1", ["layer1.0", "layer1.1", "layer1.0.block.conv1", "layer2.0.block.conv1"])
    "did you mean 'layer1.0.block.conv1'?"
    """
    import difflib  # only on the error path

    leaf = path.rsplit(".", 1)[-1]
    same_leaf = sorted({c for c in candidates if c.rsplit(".", 1)[-1] == leaf})
    if not same_leaf:
        return did_you_mean(path, candidates)
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


def render_one(diag: Diagnostic, path: str, lines: Sequence[str], color: bool = False) -> str:
    """Render one diagnostic: location, message, the source line, a caret, a hint."""
    st = _Style(color)
    path = shown(path)
    head = st.severity(diag.severity, f"{diag.severity}[{diag.code}]")
    if diag.span is None:
        out = [f"{st.bold(path)}: {head}: {diag.message}"]
    else:
        sp = diag.span
        out = [f"{st.bold(f'{path}:{sp.line}:{sp.column}')}: {head}: {diag.message}"]
        # An empty file (or a span just past the last line) still gets its caret
        # line: every located error shows one.
        if 1 <= sp.line <= max(len(lines), 1):
            src = lines[sp.line - 1].rstrip("\r\n").expandtabs(1) if lines else ""
            # one '?' per control character (a terminal escape, a NUL): columns stay aligned
            src = "".join(ch if ch.isprintable() else "?" for ch in src)
            gutter = str(sp.line)
            pad = " " * len(gutter)
            end = sp.end_column if sp.end_line == sp.line else len(src) + 1
            width = max(1, min(end, len(src) + 1) - sp.column)
            marker = "^" + "~" * (width - 1)
            out.append(f"  {gutter} | {src}")
            out.append(f"  {pad} | {' ' * (sp.column - 1)}{st.caret(diag.severity, marker)}")
    for note in diag.notes:
        out.append(f"  note: {note.text(path)}")
    if diag.hint:
        out.append(st.hint(f"  hint: {diag.hint}"))
    return "\n".join(out)


def render(diags: Sequence[Diagnostic], path: str, text: str, color: bool = False) -> str:
    """Render diagnostics in source order, errors capped at MAX_SHOWN."""
    lines = text.splitlines()
    ordered = sorted(
        diags, key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0)
    )
    shown = ordered[:MAX_SHOWN]
    parts = [render_one(d, path, lines, color) for d in shown]
    if len(ordered) > MAX_SHOWN:
        parts.append(f"... and {len(ordered) - MAX_SHOWN} more")
    return "\n".join(parts)
