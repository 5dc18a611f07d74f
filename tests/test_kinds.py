"""Every layer kind is complete: traits, an example line that checks, a handler in each back-end, a docs row.

Adding a kind to a family module (`archc/kinds/*.py`) without the rest fails here.
"""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

import archc
from archc.analysis import analyze
from archc.api import compile_text
from archc.backends.torch.generate import generate_source
from archc.backends.torch.layers import HANDLERS as TORCH_HANDLERS
from archc.ir import INPUT, Graph, Layout, Node, Shape, Span
from archc.kinds import KINDS, Family, LayerKind, Traits, WindowKind, verify
from archc.kinds.kind import Applied, Init, Role, Tensor

KIND_NAMES = sorted(KINDS)
# An input of each layout the language can write, for the example lines.
INPUTS = {
    Layout.IMAGE: "8x8x4",
    Layout.FLAT: "16",
    Layout.SEQUENCE: "16x4",
    Layout.VOLUME: "4x8x8x4",
    Layout.TOKENS: "16 tokens",
}


def _documented_kinds() -> set[str]:
    """Kinds named in the first cell of a table row of docs/language.md."""
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    first_cells = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([a-z0-9]+)`", cell)}


@pytest.mark.parametrize("name", KIND_NAMES)
def test_kind_has_traits(name: str) -> None:
    kind = KINDS[name]
    assert isinstance(kind, LayerKind) and kind.name == name
    assert isinstance(kind.traits, Traits)
    assert isinstance(kind.traits.family, Family) and isinstance(kind.traits.window, WindowKind)
    assert kind.traits.layouts and kind.traits.layouts <= set(Layout)
    assert (kind.traits.merge is not None) == (kind.traits.family is Family.MERGE)
    if kind.traits.window in (WindowKind.CONV, WindowKind.POOL):
        assert {"F", "S", "P"} <= {k.name for k in kind.keys}, "a window needs F, S and P"


@pytest.mark.parametrize("name", KIND_NAMES)
def test_kind_has_a_handler_in_each_backend(name: str) -> None:
    assert name in TORCH_HANDLERS, f"add a PyTorch handler for {name} (archc/backends/torch/layers.py)"
    pytest.importorskip("onnx")
    from archc.backends.onnx.generate import HANDLERS as ONNX_HANDLERS

    assert name in ONNX_HANDLERS, f"add an ONNX handler for {name} (archc/backends/onnx/generate.py)"


@pytest.mark.parametrize("name", KIND_NAMES)
def test_kind_has_a_docs_row(name: str) -> None:
    assert name in _documented_kinds(), f"add a row for {name} to docs/language.md's table of kinds"


@pytest.mark.parametrize("name", KIND_NAMES)
def test_key_docs_read_after_the_key_name(name: str) -> None:
    """Messages say "K is <doc>" and "conv needs K, <doc>": each doc is a noun phrase with its
    article, or "whether ..." for a flag. `bias is the learn a bias per output`, `eps is the added to
    the variance` and lrn's `alpha is the ` were what the hints said (issue 10, item 7)."""
    for key in KINDS[name].keys:
        assert re.match(r"(the|whether) \S", key.doc), f"{name}.{key.name}: {key.doc!r}"
        assert not re.match(r"the (the|a|an) ", key.doc), f"{name}.{key.name}: {key.doc!r}"
        if key.default is None:  # no "(default S=None)": the doc says what leaving it out means
            assert "default" in key.doc or key.type.name == "NAME", f"{name}.{key.name}: {key.doc!r}"


@pytest.mark.parametrize("name", KIND_NAMES)
def test_example_line_checks_on_every_layout_the_kind_takes(name: str) -> None:
    kind = KINDS[name]
    for layout, dims in INPUTS.items():
        net = compile_text(f"input {dims}\n{kind.example}\n", "example.arch")
        if layout not in kind.traits.layouts:
            # the trait is honest: the kind refuses that layout, with a located error
            assert net.errors and {d.code for d in net.errors} == {"E200"}, net.render()
            continue
        assert not net.errors, net.render()
        assert net.network is not None
        verify(net.network.graph)
        assert name in {n.kind for n in net.network.graph.nodes}
        assert generate_source(net.network.analysis)  # the PyTorch back-end writes it


@pytest.mark.parametrize("name", KIND_NAMES)
def test_example_line_lowers_to_onnx(name: str) -> None:
    pytest.importorskip("onnx")
    from archc.backends.onnx.generate import build_model

    kind = KINDS[name]
    layout = next(layout for layout in INPUTS if layout in kind.traits.layouts)
    net = archc.loads(f"input {INPUTS[layout]}\n{kind.example}\n")
    assert build_model(net.analysis, weights="zeros").graph.output[0].name == "output"


@pytest.mark.parametrize("name", [n for n in KIND_NAMES if KINDS[n].elementwise is not None])
def test_elementwise_rows_name_real_modules_and_ops(name: str) -> None:
    row = KINDS[name].elementwise
    assert row is not None
    keys = {k.name for k in KINDS[name].keys}
    assert {arg.key for arg in row.args} <= keys
    torch = pytest.importorskip("torch")
    assert hasattr(torch.nn, row.torch.removeprefix("nn.")), row.torch
    onnx = pytest.importorskip("onnx")
    if row.onnx is not None:
        assert onnx.defs.has(row.onnx), row.onnx


def test_weights_and_biases_are_the_declared_tensors() -> None:
    """Counts derive from the tensors: a tied tensor (an alias) owns nothing, buffers are not parameters."""
    conv = KINDS["conv"]
    net = archc.loads("input 8x8x4\nc: conv K=6 F=3 G=2\n")
    facts = net.analysis.facts["c"]
    layer = facts.applied(net.graph.node("c").attrs)
    tensors = conv.tensors(layer)
    assert [(t.name, t.shape) for t in tensors] == [("weight", (6, 2, 3, 3)), ("bias", (6,))]
    assert conv.counts(layer) == facts.counts == (6 * 2 * 9, 6, 6 * 6 * 6 * 2 * 9)

    tied = Tensor("weight", (10, 16), Role.WEIGHT, Init.KAIMING_UNIFORM, 16, alias="embed.weight")
    dense = KINDS["fc"]._replace(tensors=lambda layer: (tied,))
    flat = Applied({"N": 10, "bias": False}, [Shape.flat(16)], Shape.flat(10), None)
    assert dense.counts(flat) == (0, 0, 160)  # a tied weight owns nothing, but it is multiplied all the same
    assert KINDS["fc"].counts(flat._replace(attrs={"N": 10, "bias": True, "tie": "embed"})) == (0, 10, 160)
    bn = KINDS["batchnorm"].counts(Applied({"eps": 1e-5}, [Shape.flat(16)], Shape.flat(16), None))
    assert bn == (16, 16, 0)


def test_an_unknown_kind_fails_loudly() -> None:
    span = Span(1, 1, 1, 2)
    node = Node.model_construct(
        name="m", kind="mystery", attrs={}, inputs=(INPUT,), span=span, scope="", key_spans={}
    )
    graph = Graph.model_construct(
        network="n",
        input_shape=Shape.flat(4),
        input_span=span,
        nodes=(node,),
        scopes=(),
        assertions=(),
        output="m",
    )
    with pytest.raises(ValueError, match="unknown kind mystery"):
        verify(graph)
    with pytest.raises(KeyError, match="mystery"):
        analyze(graph)
