"""The front-end pipeline (read -> parse -> elaborate -> analyse) and the `Network` facade.

>>> import archc
>>> net = archc.loads("input 227x227x3\\nconv1: conv K=96 F=11 S=4\\nfc 10", filename="tiny.arch")
>>> net.params, net.output_shape, net.layers[0].output
(2938954, (10,), (55, 55, 96))
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from archc.analysis import Analysis, LayerFacts, analyze
from archc.diagnostics import (
    MAX_SHOWN,
    Diagnostic,
    SpecError,
    TargetError,
    error,
    in_order,
    render,
    source_lines,
)
from archc.frontend import syntax as S
from archc.frontend.elaborate import elaborate
from archc.frontend.parser import comment_slips, parse_tree
from archc.ir import Assertion, Graph, Span
from archc.kinds import KINDS, per_dimension_attrs
from archc.limits import DEFAULT_MAX_LAYERS

if TYPE_CHECKING:  # the generators import torch / onnx; never on the path of `check`
    import onnx
    import torch


class Layer(NamedTuple):
    """One built-in layer as the API reports it (shapes in HWC order, or (N,) when flat)."""

    name: str
    kind: str
    output: tuple[int, ...]
    params: int
    weights: int
    biases: int
    macs: int
    attrs: dict[str, Any]


class CompileResult(NamedTuple):
    """What compiling a spec gave: the network if it is valid, and whatever could be
    known of it if not, so that an editor can show the shapes above a mistake.

    `diagnostics` are what `archc check` reports: every independent error. After
    a syntax error, those of the parse alone; else those of elaboration (names,
    keys, blocks) and of the analysis, which reports only what the nodes of known
    inputs show (the layers after a failed statement have none) and checks the
    assertions whose target is known. The stages after a syntax error still ran,
    on partial results: the syntax tree with error nodes (`program`), the graph of
    what could be elaborated (`graph`, `graph.complete` False) and the facts of
    every node whose inputs are known (`analysis`). What they found is in
    `partial_diagnostics` (some of it may only follow from the earlier errors).
    """

    path: str
    text: str
    network: Network | None
    diagnostics: tuple[Diagnostic, ...]
    assertions: tuple[Assertion, ...] = ()  # known once the spec elaborated
    program: S.Program | None = None
    graph: Graph | None = None  # None when the spec has no usable input
    analysis: Analysis | None = None
    partial_diagnostics: tuple[Diagnostic, ...] = ()
    omitted: int = 0  # diagnostics found past the MAX_SHOWN kept (in source order): "... and N more"

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if not d.is_error)

    def render(self, color: bool = False) -> str:
        return render(self.diagnostics, self.path, self.text, color, self.omitted)


class Network:
    """An analysed network: totals, shapes, per-layer facts, and the generators.

    The back-ends take `analysis`; what they cannot write they report as
    diagnostics, which the methods here render against the spec.
    """

    def __init__(self, analysis: Analysis, path: str, text: str, warnings: tuple[Diagnostic, ...]):
        self.analysis = analysis
        self.graph: Graph = analysis.graph
        self.path = path
        self.text = text
        self.warnings = warnings

    def __repr__(self) -> str:
        return f"<Network {self.name}: {self.params:,} params, {self.macs:,} MACs>"

    @property
    def name(self) -> str:
        return self.graph.network

    @property
    def params(self) -> int:
        return self.analysis.totals.params

    @property
    def weights(self) -> int:
        return self.analysis.totals.weights

    @property
    def biases(self) -> int:
        return self.analysis.totals.biases

    @property
    def macs(self) -> int:
        return self.analysis.totals.macs

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input_shape.dims

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.analysis.output_shape.dims

    @property
    def layers(self) -> list[Layer]:
        return [_layer(node.attrs, f) for node, f in self._pairs()]

    def _pairs(self) -> list[tuple[Any, LayerFacts]]:
        return [(n, self.analysis.facts[n.name]) for n in self.graph.nodes]

    @contextmanager
    def rendering(self) -> Iterator[None]:
        """Run a back-end: the diagnostics it reports become a `SpecError` rendered against this spec."""
        try:
            yield
        except TargetError as exc:
            raise SpecError(exc.diagnostics, render(exc.diagnostics, self.path, self.text)) from None

    def torch_source(self) -> str:
        """Standalone PyTorch source for the network (what `archc compile -o net.py` writes)."""
        from archc.backends.torch.generate import generate_source

        with self.rendering():
            return generate_source(self.analysis, self.path)

    def to_torch(self) -> torch.nn.Module:
        """A live `torch.nn.Module`, built from the same source the generator emits."""
        from archc.backends.torch.generate import build_module

        with self.rendering():
            return build_module(self.analysis)

    def to_onnx(
        self, path: str | Path | None = None, weights: Any = "random", seed: int = 0, opset: int | None = None
    ) -> onnx.ModelProto:
        """Build the ONNX model (and write it atomically when `path` is given)."""
        from archc.backends.onnx.generate import build_model, save_model

        with self.rendering():
            model = build_model(self.analysis, weights=weights, seed=seed, opset=opset)
        if path is not None:
            save_model(model, Path(path))
        return model


def _layer(attrs: dict[str, Any], f: LayerFacts) -> Layer:
    # window keys as the layer uses them, one value per spatial dim: F=3 on an image is (3, 3)
    attrs = per_dimension_attrs(KINDS[f.kind], attrs, f.inputs[0].layout.spatial_rank)
    return Layer(f.name, f.kind, f.output.dims, f.params, f.weights, f.biases, f.macs, attrs)


def _network_name(filename: str) -> str:
    stem = Path(filename).stem if filename and not filename.startswith("<") else "network"
    return re.sub(r"\W", "_", stem) or "network"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that form no cycles.

    The front end allocates millions of small objects and frees none of them
    until the end, and a summary of a big spec makes one dict per layer: the
    cyclic GC's repeated passes over everything alive would make big specs
    quadratic (100k layers: 9 s with it, far less without). Reference counting
    still frees what these build and drop.

    What was built is long-lived: it goes straight to the oldest generation
    (`freeze` then `unfreeze` moves every tracked object there), else the first
    young collection after the pause would trace all of it (0.5 s for 100k layers).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


WARNING_CODES = ("W001", "W002", "W003")  # what `--ignore` and `# archc: ignore[...]` may name
# `# archc: ignore[W001]` (or `ignore[W001, W002]`) in a line's comment silences those warnings there
_IGNORE_COMMENT = re.compile(r"archc:\s*ignore\[\s*([A-Za-z0-9_]+(?:\s*,\s*[A-Za-z0-9_]+)*)\s*\]")


def ignored_on_lines(text: str) -> dict[int, frozenset[str]]:
    """The warning codes each line's comment silences: `{3: {"W001"}}` for `conv ...  # archc: ignore[W001]`.

    >>> ignored_on_lines("input 8x8x3\\nconv K=4 F=2 S=2  # crops on purpose; archc: ignore[W001]\\n")
    {2: frozenset({'W001'})}
    """
    found: dict[int, frozenset[str]] = {}
    for number, line in enumerate(source_lines(text), start=1):  # the lines the lexer counts
        _, hash_, comment = line.partition("#")  # the language has no strings: the first # starts the comment
        if hash_:
            codes = [c.strip() for m in _IGNORE_COMMENT.finditer(comment) for c in m.group(1).split(",")]
            if codes:
                found[number] = frozenset(codes)
    return found


def _unignored(diags: list[Diagnostic], text: str, ignore: frozenset[str]) -> list[Diagnostic]:
    """The diagnostics less the warnings a run (`--ignore W001`) or their line's comment silences."""
    if not any(not d.is_error for d in diags):
        return diags
    lines = ignored_on_lines(text) if "ignore" in text else {}
    return [
        d
        for d in diags
        if d.is_error
        or (d.code not in ignore and (d.span is None or d.code not in lines.get(d.span.line, ())))
    ]


def compile_text(
    text: str,
    filename: str = "<string>",
    ignore: frozenset[str] = frozenset(),
    max_layers: int = DEFAULT_MAX_LAYERS,
) -> CompileResult:
    """Parse, elaborate and analyse source text; never raises on a bad spec.

    Warnings whose code is in `ignore`, or that a `# archc: ignore[CODE]` comment on their line names, are dropped.
    `max_layers`: the most layers the spec may elaborate to (`--max-layers`),
    counted before a repeat or block call makes them (E140).
    """
    with gc_paused():
        return _compile_text(text, filename, ignore, max_layers)


def _compile_text(
    text: str, filename: str, ignore: frozenset[str] = frozenset(), max_layers: int = DEFAULT_MAX_LAYERS
) -> CompileResult:
    if not text.strip():
        diag = error(
            "E401",
            "the file is empty",
            Span(line=1, column=1, end_line=1, end_column=1),
            "a spec needs at least `input HxWxC` and one layer",
        )
        return CompileResult(filename, text, None, (diag,))
    program, diags, omitted = parse_tree(text)
    # After a syntax error `diags` are the parse's: a blanked line may have defined a block
    # or a name the rest reads. The later stages still run, their findings kept apart.
    parsed = not diags
    partial: list[Diagnostic] = []
    graph, more = elaborate(program, _network_name(filename), max_layers)
    (diags if parsed else partial).extend(comment_slips(more, text))
    elaborated = parsed and graph is not None and graph.complete
    analysis = None
    if graph is not None:
        analysis, more = analyze(graph)
        # The analysis reports only what nodes of known inputs show (and the assertions
        # on them): independent of the elaboration's errors, so reported with them.
        (diags if parsed else partial).extend(more)
    diags, partial = _unignored(diags, text, ignore), _unignored(partial, text, ignore)
    found = (program, graph, analysis, tuple(_capped(partial)[0]))
    diags, more_omitted = _capped(diags)
    omitted += more_omitted
    if not elaborated or analysis is None or not analysis.complete or any(d.is_error for d in diags):
        assertions = graph.assertions if elaborated and graph is not None else ()
        return CompileResult(filename, text, None, tuple(diags), assertions, *found, omitted)
    assert graph is not None
    warnings = tuple(d for d in diags if not d.is_error)
    network = Network(analysis, filename, text, warnings)
    return CompileResult(filename, text, network, tuple(diags), graph.assertions, *found, omitted)


def _capped(diags: list[Diagnostic]) -> tuple[list[Diagnostic], int]:
    """At most MAX_SHOWN diagnostics, the first in source order (kept in the order found), and how many more.

    Every output (text, JSON, GitHub annotations, JUnit) shows what is kept and
    "... and N more": a spec with 100,000 bad lines makes a report of 50.
    """
    if len(diags) <= MAX_SHOWN:
        return diags, 0
    first = {id(d) for d in in_order(diags)[:MAX_SHOWN]}
    return [d for d in diags if id(d) in first], len(diags) - MAX_SHOWN


def read_source(path: Path, tree: Path | None = None) -> tuple[str | None, Diagnostic | None]:
    """Read a spec file; unreadable, binary and non-UTF-8 files become diagnostics.

    `tree`: the directory the file was found in, which a symbolic link must not
    leave (default: the working directory; see `archc.files.read_regular`).
    """
    from archc.files import NotASpecFile, read_regular

    try:
        data = read_regular(path, tree)  # a FIFO, a device or a /proc file is refused, never read
    except FileNotFoundError:
        return None, error("E400", "no such file", None, "check the path")
    except IsADirectoryError:
        return None, error("E400", "is a directory, not a .arch file", None, "archc check accepts directories")
    except NotASpecFile as exc:
        return None, error("E400", str(exc), None, "archc reads .arch specs from regular files only")
    except OSError as exc:
        return None, error("E400", f"cannot read the file: {exc.strerror}", None)
    return decode_source(data)


def decode_source(data: bytes) -> tuple[str | None, Diagnostic | None]:
    """A spec's bytes as text (a UTF-8 BOM dropped); binary and non-UTF-8 bytes become diagnostics."""
    if b"\x00" in data:
        line, col = _position(data, data.index(b"\x00"))
        return None, error(
            "E402",
            "this is a binary file, not a .arch spec",
            Span(line=line, column=col, end_line=line, end_column=col + 1),
            "archc reads .arch text files",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # columns count characters, as the renderer does, not bytes
        line, col = _position(data, exc.start)
        return None, error(
            "E403",
            f"the file is not UTF-8 (byte 0x{data[exc.start]:02x})",
            Span(line=line, column=col, end_line=line, end_column=col + 1),
            "save the spec as UTF-8",
        )
    return text, None


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters, as the renderer counts) of a byte offset."""
    start = data.rfind(b"\n", 0, offset) + 1
    before = data[start:offset].decode("utf-8", errors="replace")
    return data.count(b"\n", 0, offset) + 1, len(before) + 1


def compile_file(
    path: str | Path,
    ignore: frozenset[str] = frozenset(),
    max_layers: int = DEFAULT_MAX_LAYERS,
    tree: Path | None = None,
) -> CompileResult:
    """`compile_text` of a file; unreadable, binary and non-UTF-8 files are diagnostics too.

    A file that is not a spec (binary, not UTF-8) is located but none of its
    lines is quoted: it may be anything a link pointed at. `tree`: see `read_source`.
    """
    text, problem = read_source(Path(path), tree)
    if problem is not None:
        return CompileResult(str(path), "", None, (problem,))
    assert text is not None
    return compile_text(text, str(path), ignore, max_layers)


def _raise_if_invalid(result: CompileResult) -> Network:
    if result.network is None:
        raise SpecError(result.errors, result.render())
    return result.network


def load(path: str | Path, max_layers: int = DEFAULT_MAX_LAYERS) -> Network:
    """Load and check a `.arch` file; raises `SpecError` with rendered diagnostics."""
    return _raise_if_invalid(compile_file(path, max_layers=max_layers))


def loads(text: str, filename: str = "<string>", max_layers: int = DEFAULT_MAX_LAYERS) -> Network:
    """Load and check spec text; `filename` names it in messages (and names the network)."""
    return _raise_if_invalid(compile_text(text, filename, max_layers=max_layers))
