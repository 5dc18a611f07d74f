"""What every importer shares: the result it returns, the error it raises, and `finish`.

An importer writes spec text as a person would (named layers, blocks, merges),
without the header comment or the totals; `finish` adds those, formats the
text and checks it. A spec that does not check is a bug in the importer, never
the user's: `ImporterBug` says so and shows the spec's diagnostics.

>>> spec = finish(Imported("input 8x8x3\\nconv1: conv K=4 F=3\\nrelu\\n", "tiny.prototxt"))
>>> print(spec, end="")  # doctest: +ELLIPSIS
# imported by archc 0.1.0 from tiny.prototxt
input 8x8x3
conv1: conv K=4 F=3
relu
<BLANKLINE>
expect params = 112
expect macs = 3_888
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archc.api import CompileResult, Network, compile_text
from archc.diagnostics import ArchError, Diagnostic, error, render, shown
from archc.frontend.parser import KEYWORDS as PARSER_KEYWORDS
from archc.ir import Span
from archc.limits import MAX_NUMBER
from archc.tools.fmt import format_text
from archc.version import __version__

if TYPE_CHECKING:  # numpy only where weights are imported (ONNX); never for a prototxt
    import numpy


@dataclass
class Imported:
    """What an importer found."""

    text: str  # the spec (block definitions + body), unformatted, without the header comment and expects
    source: str  # the file name for the header comment
    weights: dict[str, numpy.ndarray] | None = None  # by state_dict name (the spec's tensor names)


MAX_NAME = 80  # characters of a name from the model quoted in a message; a longer one is cut in its middle
MAX_MESSAGE = 4_000  # characters of a message or hint: whatever a model holds, an error is a few lines


def quoted(name: str) -> str:
    """A name from the model (a layer, a node, a blob) as a message quotes it: escaped when it
    holds a newline or ESC, and a long one cut in its middle, with its length.

    >>> quoted("conv1"), quoted("a\x1b[2J"), quoted("n" * 1_000_000)  # doctest: +ELLIPSIS
    ("'conv1'", "'a\\\\x1b[2J'", "'nnn...nnn' (1,000,000 characters)")
    """
    if len(name) <= MAX_NAME:
        return f"'{name}'" if name.isprintable() else repr(name)
    head, tail = _escaped(name[: MAX_NAME * 3 // 4]), _escaped(name[-MAX_NAME // 4 :], from_end=True)
    return f"'{head}...{tail}' ({len(name):,} characters)"


def _escaped(chars: str, from_end: bool = False) -> str:
    """`chars` with each unprintable one escaped (`\\t`), cut to the whole escapes that fit their length."""
    out, size = [], 0
    for c in reversed(chars) if from_end else chars:
        piece = c if c.isprintable() else repr(c)[1:-1]
        if size + len(piece) > len(chars):
            break
        out.append(piece)
        size += len(piece)
    return "".join(reversed(out) if from_end else out)


def bounded(text: str) -> str:
    """A message of a bounded size: a run of over `MAX_NAME * 2` characters without a space (a
    name some code quoted whole) cut in its middle, then the whole cut to `MAX_MESSAGE`."""
    def cut(m: re.Match[str]) -> str:
        run = m[0]
        return f"{run[:MAX_NAME]}...{run[-MAX_NAME // 2:]} ({len(run):,} characters)"

    if len(text) <= MAX_NAME * 2:
        return text
    text = re.sub(rf"\S{{{MAX_NAME * 2 + 1},}}", cut, text)
    if len(text) > MAX_MESSAGE:
        left = len(text) - MAX_MESSAGE
        text = f"{text[: MAX_MESSAGE * 3 // 4]} ... ({left:,} characters left out) ... {text[-MAX_MESSAGE // 4 :]}"
    return text


class ImportFailure(ArchError):
    """The model uses something the importer cannot express (or is not a model it can read).

    `location` says where: `file:line:col` in a prototxt, or the ONNX node (its
    name, op type, input and output shapes). Made with `at`, the error also
    shows the source line with a caret under the offending token, as a spec
    error does. Rendered as `LOCATION: error[E900]: message` and a hint.
    """

    CODE = "E900"

    def __init__(self, message: str, location: str | None = None, hint: str | None = None) -> None:
        # a 5 MB node name, quoted whole by some message, is printed cut: `bounded`
        message, hint = bounded(message), None if hint is None else bounded(hint)
        self.message, self.location, self.hint = message, location, hint
        self.diagnostic: Diagnostic | None = None  # with a span, when the source is text
        self.source_path, self.source_text = "", ""
        super().__init__(message)

    @classmethod
    def at(
        cls, path: str, text: str, line: int, column: int, message: str, hint: str | None = None, width: int = 1
    ) -> ImportFailure:
        """An error at `line`:`column` (1-based) of a text file, shown with its line and a caret."""
        failure = cls(message, f"{path}:{line}:{column}", hint)
        span = Span(line=line, column=column, end_line=line, end_column=column + max(width, 1))
        failure.diagnostic = error(cls.CODE, failure.message, span, failure.hint)
        failure.source_path, failure.source_text = path, text
        return failure

    def render(self, color: bool = False) -> str:
        """The message as `archc import` prints it (with the caret line when the source is text)."""
        if self.diagnostic is not None:
            return render(
                [self.diagnostic], self.source_path, _lines_up_to(self.source_text, self.diagnostic), color
            )
        head = f"{shown(self.location)}: " if self.location else ""
        return f"{head}error[{self.CODE}]: {self.message}" + (f"\n  hint: {self.hint}" if self.hint else "")

    def __str__(self) -> str:
        return self.render()


def _lines_up_to(text: str, diag: Diagnostic) -> str:
    """The text up to the diagnostic's line: rendering a 100 MB file's error splits only what it shows."""
    line = diag.span.line if diag.span is not None else 0
    cut = -1
    for _ in range(line):
        cut = text.find("\n", cut + 1)
        if cut < 0:
            return text
    return text[:cut]


# the language's keywords cannot name a layer or the network
KEYWORDS = frozenset(PARSER_KEYWORDS)


def spec_name(text: str) -> str:
    """A model's name (a file's stem, a layer's name) as a spec's name: ASCII letters, digits and `_`
    (any other character, `/` or `é`, becomes `_`), never a leading digit, a keyword with a `_` after it.

    >>> spec_name("inception_3a/1x1"), spec_name("5x5"), spec_name("network"), spec_name("café")
    ('inception_3a_1x1', '_5x5', 'network_', 'caf_')
    """
    clean = re.sub(r"[^A-Za-z0-9_]", "_", text)
    clean = clean if clean and not clean[0].isdigit() else f"_{clean}"
    return f"{clean}_" if clean in KEYWORDS else clean


class ImporterBug(ArchError):
    """An importer wrote a spec that does not check: a bug in archc, reported with the spec's diagnostics."""


def header(source: str) -> str:
    return f"# imported by archc {__version__} from {shown(source)}\n"


def finish(imported: Imported) -> str:
    """The spec `archc import` writes: header comment, the importer's text, the totals asserted, formatted.

    Raises `ImporterBug` when the text (or its formatted form) does not check,
    or when the weights do not fit the spec.
    """
    name = f"<imported from {imported.source}>"
    text = header(imported.source) + imported.text.rstrip("\n") + "\n"
    network = _checked(compile_text(text, name), imported.source)
    for what, total in (("parameters", network.params), ("MACs", network.macs)):
        if total > MAX_NUMBER:  # `expect` takes numbers up to archc's limit
            raise ImportFailure(
                f"the model has {total:,} {what}, more than a spec can assert (at most 1e18)",
                shown(imported.source),
            )
    text += f"\nexpect params = {network.params:_}\nexpect macs = {network.macs:_}\n"
    try:
        formatted = format_text(text)
    except ArchError as exc:
        raise ImporterBug(f"the imported spec of {shown(imported.source)} does not format: {exc}") from exc
    network = _checked(compile_text(formatted, name), imported.source)
    if imported.weights is not None:
        from archc.analysis.tensors import tensor_specs
        from archc.backends.weights import validate

        try:
            validate(network.analysis, tensor_specs(network.analysis), imported.weights)
        except ArchError as exc:
            raise ImporterBug(f"the weights imported from {shown(imported.source)} do not fit its spec: {exc}") from exc
    return formatted


# the language's limits (archc.limits): a model past them is too large for a spec, which is no bug
LIMITS = frozenset({"E121", "E140", "E142"})


def _checked(result: CompileResult, source: str) -> Network:
    if result.network is None and result.errors and all(d.code in LIMITS for d in result.errors):
        raise ImportFailure(
            f"the model is beyond the limits of a spec (README, \"Untrusted input\"):\n{result.render()}",
            shown(source),
        )
    if result.network is None:
        raise ImporterBug(
            f"the spec imported from {shown(source)} does not check: either the model holds values no "
            "network can have (a group count or a dimension of 0, say; the errors below name them), or "
            f"archc's importer has a bug: if the model runs in onnxruntime, please report it with the model:\n"
            f"{result.render()}"
        )
    return result.network
