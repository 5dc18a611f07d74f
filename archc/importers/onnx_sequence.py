"""Matchers for the sequence layers of an ONNX graph: embeddings, norms, attention, GELU.

Each matcher is `match(view, node) -> Match | None` (`archc.importers.onnx_graph`),
tried at the first node of its pattern. They recognise what `torch.onnx.export`
writes, with the TorchScript exporter and with `dynamo=True`, for archc's own
generated modules, `nn.MultiheadAttention` / `nn.TransformerEncoderLayer`, and
modules written as Hugging Face's GPT-2 and torchvision's ViT are.

Attention is recognised by what it computes, not by one exporter's op sequence
(the exporters write the same module as 12 to 60 nodes, and `nn.MultiheadAttention`
alone has three forms): from a Softmax fed by a MatMul of two computed values,
the matcher finds the projections (one packed QKV, a packed KV or three), the
module's input `x` (`[batch, L, C]`) and output, reads heads and key/value heads
from the shapes, and then *runs* the subgraph between `x` and the output with
onnxruntime on a random input beside archc's own attention with those weights.
Only an exact match (full or causal, with or without rotary positions) becomes
an `attention` line; anything else that looks like attention is an
`UnrecognisedSequence` error (E900) at the Softmax, so an import never
approximates. GELU written out is checked the same way. docs/import-onnx-sequence.md
lists the patterns.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx

from archc.importers.common import ImportFailure
from archc.importers.onnx_graph import MAX_EVALUATED, GraphView, Match, Matcher, Refused, attr

# ops that only move or relabel elements: what lies between a module's input and its projections
LAYOUT_OPS = frozenset(
    {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Cast", "Dropout"}
)
# what the score path may hold between QK^T and the Softmax (scale, mask)
SCORE_OPS = frozenset({"Mul", "Div", "Add", "Where", "Cast", "Identity"})
MAX_REGION = 400  # nodes: a larger region between x and the output is not one attention
MAX_SCORES = 2 << 30  # bytes: the scores of the longest attention run to check it (32 heads at 4,096 positions)
SEARCH_DEPTH = 24  # nodes from a projection to its Softmax (nn.MultiheadAttention's packed form: ~16)


class UnrecognisedSequence(ImportFailure):
    """A subgraph that looks like a sequence layer but cannot be imported exactly."""


@dataclass(frozen=True)
class Linear:
    """A projection as torch holds it: `weight` [out, in], its nodes, input and output values."""

    weight: np.ndarray
    bias: np.ndarray | None
    nodes: tuple[onnx.NodeProto, ...]
    input: str
    output: str


# --- small helpers -------------------------------------------------------------------------
_SHAPES: weakref.WeakKeyDictionary[GraphView, dict[str, tuple[int, ...]]] = weakref.WeakKeyDictionary()


def shape_of(view: GraphView, value: str) -> tuple[int, ...] | None:
    """`view.shape`, or where ONNX's shape inference gave up, the shape inferred again once the
    graph's small static values (shape arithmetic) are folded into constants: the TorchScript
    exporter slices GPT-2's causal mask at `kl - ql : kl`, computed from Shapes, which stops
    inference (and with it every shape after the first attention)."""
    found = view.shape(value)
    if found is not None or not value:
        return found
    if view not in _SHAPES:
        _SHAPES[view] = _folded_shapes(view)
    return _SHAPES[view].get(value)


def _folded_shapes(view: GraphView) -> dict[str, tuple[int, ...]]:
    """Shapes node by node, in graph order, where `view.shape` has none: each node's outputs
    inferred alone, from its inputs' shapes and its static inputs' values (evaluated with the
    shapes found so far). Shape arithmetic stays small; weights are read as memory-mapped views."""
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = dict(view.types)
    values: dict[str, np.ndarray | None] = {}
    opsets = list(view.model.opset_import)

    def shape(v: str) -> tuple[int, ...] | None:
        return view.shape(v) or shapes.get(v)

    def infer(
        node: onnx.NodeProto, feeds: dict[str, np.ndarray], specs: dict[str, tuple[int, tuple[int, ...]]]
    ) -> Any:
        graph = onnx.helper.make_graph(
            [node],
            "one",
            [onnx.helper.make_tensor_value_info(k, t, d) for k, (t, d) in specs.items()],
            [],
            [onnx.numpy_helper.from_array(a, k) for k, a in feeds.items()],
        )
        model = onnx.helper.make_model(graph, opset_imports=opsets, ir_version=view.model.ir_version)
        return onnx.shape_inference.infer_shapes(model, data_prop=True).graph.value_info

    def static(v: str) -> np.ndarray | None:
        if v in values:
            return values[v]
        found = view.static_value(v)
        if found is None:
            node = view.producer(v)
            if node is not None and node.op_type == "Shape":
                full = shape(node.input[0])
                if full is not None:
                    start, end = attr(node, "start", 0), attr(node, "end", len(full))
                    found = np.array(full[start:end], np.int64)
            elif node is not None and node.op_type not in ("Constant",):
                ins = [static(i) if i else None for i in node.input]
                if (
                    all(a is not None for a, i in zip(ins, node.input, strict=True) if i)
                    and sum(a.size for a in ins if a is not None) <= 4096
                    and math.prod(shape(v) or ()) <= MAX_EVALUATED  # a Range to a long length
                ):
                    found = _evaluate(
                        node,
                        {i: a for i, a in zip(node.input, ins, strict=True) if i and a is not None},
                        opsets,
                    )
        values[v] = found
        return found

    for node in view.node_list:
        outs = [o for o in node.output if o]
        if all(shape(o) is not None for o in outs):
            continue  # static nodes too: a sliced mask's shape is what the Where after it needs
        feeds: dict[str, np.ndarray] = {}
        specs: dict[str, tuple[int, tuple[int, ...]]] = {}
        for i in node.input:
            if not i or i in feeds or i in specs:
                continue
            arr = static(i) if view.is_static(i) else None
            if arr is not None and arr.size <= 4096:
                feeds[i] = np.asarray(arr)
            elif arr is not None:
                specs[i] = (onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), tuple(arr.shape))
            elif shape(i) is not None and i in types:
                specs[i] = (types[i], shape(i) or ())
            else:
                break
        else:
            try:
                inferred = infer(node, feeds, specs)
            except Exception:  # noqa: BLE001 - this node's shapes stay unknown
                continue
            for v in inferred:
                t = v.type.tensor_type
                dims = t.shape.dim
                types[v.name] = t.elem_type
                if t.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                    shapes[v.name] = tuple(d.dim_value for d in dims)
    return shapes


def _evaluate(node: onnx.NodeProto, feeds: dict[str, np.ndarray], opsets: list[Any]) -> np.ndarray | None:
    """One node on constant inputs (shape arithmetic), or None when it cannot run alone."""
    from onnx.reference import ReferenceEvaluator

    try:
        graph = onnx.helper.make_graph(
            [node],
            "static",
            [
                onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                for k, a in feeds.items()
            ],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output],
        )
        outs = list(ReferenceEvaluator(onnx.helper.make_model(graph, opset_imports=opsets)).run(None, feeds))
    except Exception:  # noqa: BLE001 - not evaluable here
        return None
    return np.asarray(outs[0])


def _computed(view: GraphView, value: str) -> bool:
    return bool(value) and not view.is_static(value)


def _computed_inputs(view: GraphView, node: onnx.NodeProto) -> list[str]:
    return [i for i in node.input if _computed(view, i)]


def _readers(view: GraphView, value: str) -> list[onnx.NodeProto]:
    """The nodes that read a value's elements (a Shape of it reads only its shape)."""
    return [c for c in view.consumers(value) if not all(view.is_static(o) for o in c.output if o)]


def _reader(view: GraphView, value: str) -> onnx.NodeProto | None:
    """The one node reading `value`'s elements, or None (several, none, or a graph output)."""
    found = _readers(view, value)
    return found[0] if len(found) == 1 and value not in view.outputs else None


def _scalar(view: GraphView, value: str) -> float | None:
    arr = view.static_value(value)
    if arr is None or arr.size != 1:
        return None
    return float(arr.reshape(()))


def _number(x: float) -> str:
    """A float as a spec writes it: `1e-5`, `0.5`; float32 noise rounded off (9.99999974e-06 -> 1e-5)."""
    text = f"{float(f'{x:.6g}'):g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _name(view: GraphView, nodes: Iterable[onnx.NodeProto], fallback: str = "") -> str:
    """The dotted module path the nodes share (their common prefix), or `fallback`."""
    paths = [view.scopes(n) for n in nodes]
    paths = [p for p in paths if p]
    if not paths:
        return fallback
    common = paths[0]
    for p in paths[1:]:
        k = 0
        while k < min(len(common), len(p)) and common[k] == p[k]:
            k += 1
        common = common[:k]
    return ".".join(common) or fallback


def _describe(view: GraphView, node: onnx.NodeProto) -> str:
    """`view.describe`, with the shapes shape inference could not give."""

    def shapes(values: Sequence[str]) -> str:
        found = [shape_of(view, v) for v in values if v]
        return ", ".join("?" if f is None else "[" + ", ".join(map(str, f)) + "]" for f in found)

    return f"node {node.name or '(unnamed)'!r} ({node.op_type}), inputs [{shapes(list(node.input))}] -> outputs [{shapes(list(node.output))}]"


def _param_name(initializer: str) -> str:
    """`wte.weight` -> `wte`; `encoder.pos_embedding` stays."""
    return initializer[: -len(".weight")] if initializer.endswith(".weight") else initializer


def _source_initializer(view: GraphView, value: str, through: frozenset[str]) -> tuple[str, list[str]] | None:
    """The initializer a static value is read from through `through` ops, and the ops passed."""
    ops: list[str] = []
    while not view.is_initializer(value):
        node = view.producer(value)
        if node is None or node.op_type not in through or not node.input:
            return None
        ops.append(node.op_type)
        value = node.input[0]
    return value, ops


def _static_array(view: GraphView, value: str) -> np.ndarray | None:
    """A static tensor, also a Transpose of a large initializer (the view evaluates small ones only)."""
    arr = view.weight(value)
    if arr is not None:
        return arr
    node = view.producer(value)
    if node is not None and node.op_type == "Transpose" and view.is_initializer(node.input[0]):
        base = view.weight(node.input[0])
        if base is not None:
            perm = attr(node, "perm")
            return np.ascontiguousarray(np.transpose(base, perm))
    return None


def linear_at(view: GraphView, node: onnx.NodeProto) -> Linear | None:
    """A MatMul (+ Add of a static bias) or a Gemm with a static weight, as torch's [out, in] weight."""
    if node.op_type == "Gemm":
        if attr(node, "transA", 0) or not _computed(view, node.input[0]) or _computed(view, node.input[1]):
            return None
        w = _static_array(view, node.input[1])
        if w is None or w.ndim != 2:
            return None
        alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
        w = w if attr(node, "transB", 0) else w.T
        w = (w * np.float32(alpha)).astype(np.float32) if alpha != 1.0 else w
        bias = None
        if len(node.input) > 2 and node.input[2]:
            b = view.weight(node.input[2])
            if b is None or b.size != w.shape[0]:
                return None
            bias = (b.reshape(-1) * np.float32(beta)).astype(np.float32)
        return Linear(np.ascontiguousarray(w), bias, (node,), node.input[0], node.output[0])
    if node.op_type != "MatMul":
        return None
    data, weight = node.input
    if not _computed(view, data) or _computed(view, weight):
        return None
    w = _static_array(view, weight)
    if w is None or w.ndim != 2:
        return None
    nodes: tuple[onnx.NodeProto, ...] = (node,)
    out, bias = node.output[0], None
    add = _reader(view, out)
    if add is not None and add.op_type == "Add":
        other = [i for i in add.input if i != out]
        if len(other) == 1 and not _computed(view, other[0]):
            b = view.weight(other[0])
            if b is not None and b.size == w.shape[1] and b.shape[-1:] == (w.shape[1],):
                bias, nodes, out = b.reshape(-1).astype(np.float32), (node, add), add.output[0]
    return Linear(np.ascontiguousarray(w.T), bias, nodes, data, out)


def _producer_linear(view: GraphView, node: onnx.NodeProto) -> Linear | None:
    """The projection a node belongs to: a MatMul/Gemm, or the bias Add after a MatMul."""
    found = linear_at(view, node)
    if found is not None:
        return found
    if node.op_type == "Add":
        for i in node.input:
            p = view.producer(i)
            if p is not None and p.op_type == "MatMul":
                found = linear_at(view, p)
                if found is not None and found.output == node.output[0]:
                    return found
    return None


# --- running a subgraph --------------------------------------------------------------------
def _submodel(
    view: GraphView, region: Sequence[onnx.NodeProto], x: str, y: str, x_shape: tuple[int, ...] | None = None
) -> onnx.ModelProto:
    """The region between `x` and `y` as a model of its own, with the constants it reads.

    Static values the region reads are computed by their own nodes (taken along),
    except that a Shape of a value outside the region becomes the constant shape.
    """
    nodes = list(region)
    produced = {o for n in nodes for o in n.output}
    initializers: dict[str, np.ndarray] = {}
    todo = [i for n in nodes for i in n.input]
    seen: set[str] = set()
    while todo:
        v = todo.pop()
        if not v or v in seen or v == x or v in produced:
            continue
        seen.add(v)
        if view.is_initializer(v):
            arr = view.static_value(v)
            if arr is None:
                raise UnrecognisedSequence(f"cannot read the initializer {v!r}")
            initializers[v] = arr
            continue
        p = view.producer(v)
        if p is None:
            raise UnrecognisedSequence(f"the value {v!r} comes from outside the layer")
        if p.op_type == "Shape" and p.input[0] != x and p.input[0] not in produced:
            arr = view.static_value(v)
            if arr is None:  # ONNX's inference gave up before it (a mask built from shapes)
                full = shape_of(view, p.input[0])
                if full is not None:
                    arr = np.array(full[attr(p, "start", 0) : attr(p, "end", len(full))], np.int64)
            if arr is None:
                raise UnrecognisedSequence(f"the shape {v!r} is unknown")
            initializers[v] = arr
            continue
        nodes.append(p)
        produced.update(o for o in p.output if o)
        todo.extend(p.input)
    order = {id(n): i for i, n in enumerate(view.node_list)}
    nodes.sort(key=lambda n: order[id(n)])
    shape_x, shape_y = x_shape or shape_of(view, x), None if x_shape else shape_of(view, y)
    graph = onnx.helper.make_graph(
        nodes,
        "region",
        [onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, shape_x)],
        [onnx.helper.make_tensor_value_info(y, onnx.TensorProto.FLOAT, shape_y)],
        [onnx.numpy_helper.from_array(a, k) for k, a in initializers.items()],
    )
    opsets = [onnx.helper.make_opsetid(o.domain, o.version) for o in view.model.opset_import]
    return onnx.helper.make_model(graph, opset_imports=opsets, ir_version=view.model.ir_version)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failure is reported as the import's error, not logged too
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x})[0])


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-4) -> bool:
    if a.shape != b.shape:
        return False
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    return float(np.abs(a - b).max(initial=0.0)) <= rtol * scale


def _dead(view: GraphView, value: str) -> bool:
    """Whether a computed value is read for its shape only (or not at all)."""
    return value not in view.outputs and not _readers(view, value)


def _region(view: GraphView, x: str, y: str) -> list[onnx.NodeProto]:
    """The computed nodes on the paths from `x` to `y`, in graph order; an error when the region
    reads another computed value or lets an intermediate value out."""
    found: dict[int, onnx.NodeProto] = {}
    todo = [y]
    seen: set[str] = set()
    while todo:
        v = todo.pop()
        if v in seen or v == x or not _computed(view, v):
            continue
        seen.add(v)
        p = view.producer(v)
        if p is None:
            raise UnrecognisedSequence(f"the layer reads the graph input {v!r} besides {x!r}")
        if id(p) in found:
            continue
        found[id(p)] = p
        if len(found) > MAX_REGION:
            raise UnrecognisedSequence(f"more than {MAX_REGION} nodes between {x!r} and {y!r}")
        todo.extend(p.input)
    # nodes that read the region only for shapes of their own (the TorchScript exporter
    # transposes k twice, once for a Shape) belong to it
    for n in list(found.values()):
        for o in n.output:
            for c in view.consumers(o):
                outs = [r for r in c.output if r]
                if (
                    id(c) not in found
                    and any(_computed(view, r) for r in outs)
                    and all(_dead(view, r) for r in outs)
                ):
                    found[id(c)] = c
    order = {id(n): i for i, n in enumerate(view.node_list)}
    region = sorted(found.values(), key=lambda n: order[id(n)])
    inside = set(found)
    for n in region:
        for o in n.output:
            if o == y or not o:
                continue
            readers = _readers(view, o)
            if o in view.outputs or any(id(c) not in inside for c in readers):
                raise UnrecognisedSequence(
                    f"{view.describe(n)}: its output {o!r} is also read outside the layer"
                )
    return region


# --- attention -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Core:
    """The scores and weighted sum: QK^T -> Softmax -> AV, or one ONNX `Attention` op (opset 23,
    as the dynamo exporter writes `scaled_dot_product_attention` there), which is all three."""

    softmax: onnx.NodeProto
    qk: onnx.NodeProto
    av: onnx.NodeProto

    @property
    def q(self) -> str:
        return str(self.qk.input[0])

    @property
    def k(self) -> str:
        return str(self.qk.input[1])

    @property
    def v(self) -> str:
        return str(self.av.input[2] if self.av.op_type == "Attention" else self.av.input[1])

    @property
    def out(self) -> str:
        return str(self.av.output[0])


_ANALYSED: weakref.WeakKeyDictionary[GraphView, dict[str, Match | None]] = weakref.WeakKeyDictionary()


def _core(view: GraphView, softmax: onnx.NodeProto) -> _Core | None:
    """QK^T -> (scale, mask) -> Softmax -> AV, both MatMuls of computed values; None when the
    Softmax is something else (a classifier's output). An `Attention` op of computed q, k and v
    is its own core (its mask, scale and softcap are checked by the run, as the written-out ones)."""
    if softmax.op_type == "Attention":
        if len(softmax.input) < 3 or not all(_computed(view, i) for i in softmax.input[:3]):
            return None
        return _Core(softmax, softmax, softmax)
    if not softmax.input or not _computed(view, softmax.input[0]):
        return None
    v = softmax.input[0]
    qk = None
    for _ in range(8):
        p = view.producer(v)
        if p is None:
            return None
        if p.op_type == "MatMul":
            if all(_computed(view, i) for i in p.input):
                qk = p
            break
        if p.op_type not in SCORE_OPS:
            return None
        computed = _computed_inputs(view, p)
        if p.op_type == "Where":
            computed = [i for i in p.input[1:] if _computed(view, i)]
        if len(computed) != 1:
            return None
        v = computed[0]
    if qk is None:
        return None
    out, av = softmax.output[0], None
    for _ in range(4):
        readers = _readers(view, out)
        matmuls = [
            c for c in readers if c.op_type == "MatMul" and c.input[0] == out and _computed(view, c.input[1])
        ]
        if matmuls:
            av = matmuls[0]
            break
        guard = _nan_guard(view, out, readers)
        if guard is not None:
            out = guard
            continue
        passes = [c for c in readers if c.op_type in ("Cast", "Dropout", "Identity")]
        if len(passes) != 1:
            return None
        out = passes[0].output[0]
    if av is None:
        return None
    return _Core(softmax, qk, av)


def _nan_guard(view: GraphView, value: str, readers: list[onnx.NodeProto]) -> str | None:
    """`Where(IsNaN(p), 0, p)` after the Softmax (the dynamo exporter writes it for
    `scaled_dot_product_attention`, whose fully masked rows would be NaN): its output, or None.
    The region run decides whether the guard changes anything."""
    if len(readers) != 2 or {c.op_type for c in readers} != {"IsNaN", "Where"}:
        return None
    isnan = next(c for c in readers if c.op_type == "IsNaN")
    where = next(c for c in readers if c.op_type == "Where")
    if list(where.input[:1]) != [isnan.output[0]] or where.input[2] != value or _computed(view, where.input[1]):
        return None
    return str(where.output[0])


def _ancestors(view: GraphView, value: str, stop: set[str]) -> set[int]:
    """ids of the computed nodes `value` depends on, not looking past `stop` values."""
    found: set[int] = set()
    todo, seen = [value], set()
    while todo:
        v = todo.pop()
        if v in seen or v in stop or not _computed(view, v):
            continue
        seen.add(v)
        p = view.producer(v)
        if p is None or id(p) in found:
            continue
        found.add(id(p))
        if len(found) > MAX_REGION:
            break
        todo.extend(p.input)
    return found


def _projections_before(view: GraphView, values: Sequence[str]) -> list[Linear]:
    """The nearest projections (static-weight linears) upstream of `values`."""
    found: dict[int, Linear] = {}
    todo = [(v, 0) for v in values]
    seen: set[str] = set()
    while todo:
        v, depth = todo.pop()
        if v in seen or not _computed(view, v) or depth > SEARCH_DEPTH:
            continue
        seen.add(v)
        p = view.producer(v)
        if p is None:
            continue
        lin = _producer_linear(view, p)
        if lin is not None:
            found[id(lin.nodes[0])] = lin
            continue
        todo.extend((i, depth + 1) for i in p.input)
    return list(found.values())


def _module_input(view: GraphView, value: str, channels: int) -> str | None:
    """Up from a projection's input through layout ops to the module's input, [batch, L, C] (the
    batch 1 where the model leaves it open, else its own: a [L, batch, C] value is not it)."""
    for _ in range(6):
        found = shape_of(view, value)
        if found is not None and len(found) == 3 and found[0] == view.batch and found[2] == channels:
            return value
        p = view.producer(value)
        if p is None or p.op_type not in LAYOUT_OPS:
            return None
        computed = _computed_inputs(view, p)
        if len(computed) != 1:
            return None
        value = computed[0]
    return None


def _module_output(view: GraphView, value: str, shape: tuple[int, ...]) -> str | None:
    """Down from the output projection through layout ops to the value shaped `shape`."""
    for _ in range(6):
        if shape_of(view, value) == shape:
            return value
        c = _reader(view, value)
        if c is None or c.op_type not in LAYOUT_OPS:
            return None
        value = c.output[0]
    return None


def _rotate(t: np.ndarray, base: float, positions: np.ndarray) -> np.ndarray:
    """archc's rotary embedding of [batch, heads, len(positions), width] ("rotate half", as
    GPT-NeoX and Llama)."""
    width = t.shape[-1]
    inv_freq = base ** -(np.arange(0, width, 2, dtype=np.float64) / width)
    angles = np.tile(np.outer(positions.astype(np.float64), inv_freq), (1, 2))
    half = width // 2
    rotated = np.concatenate([-t[..., half:], t[..., :half]], axis=-1)
    out: np.ndarray = t * np.cos(angles) + rotated * np.sin(angles)
    return out


def _reference_attention(
    x: np.ndarray,
    w: dict[str, np.ndarray],
    heads: int,
    kv: int,
    rows: np.ndarray,
) -> Callable[[bool, float | None], np.ndarray]:
    """archc's `attention` (the generated `Attention` module) in numpy at the query positions
    `rows`: a function of (causal, rotary base or None) giving [batch, len(rows), C]. Each output
    position reads only its own row of scores, so a few rows check it at any length; the
    projections are computed once for every hypothesis (float32 products, float64 after)."""
    batch, length, channels = x.shape
    width = channels // heads

    def project(key: str, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = (x.astype(np.float32) @ w[f"{key}.weight"].T).astype(np.float64)
        if f"{key}.bias" in w:
            out = out + w[f"{key}.bias"]
        return out

    q0 = project("q", x[:, rows]).reshape(batch, len(rows), heads, width).transpose(0, 2, 1, 3)
    k0 = project("k", x).reshape(batch, length, kv, width).transpose(0, 2, 1, 3)
    v = np.repeat(
        project("v", x).reshape(batch, length, kv, width).transpose(0, 2, 1, 3), heads // kv, axis=1
    )
    allowed = rows[:, None] >= np.arange(length)[None, :]

    def attend(causal: bool, rope: float | None) -> np.ndarray:
        q, k = q0, k0
        if rope is not None:
            q, k = _rotate(q, rope, rows), _rotate(k, rope, np.arange(length))
        scores = q @ np.repeat(k, heads // kv, axis=1).transpose(0, 1, 3, 2) / math.sqrt(width)
        if causal:
            scores = np.where(allowed, scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        p = scores / scores.sum(axis=-1, keepdims=True)
        y = (p @ v).transpose(0, 2, 1, 3).reshape(batch, len(rows), channels)
        return project("o", y)

    return attend


def _rotary_bases(view: GraphView, region: Sequence[onnx.NodeProto], width: int) -> list[float]:
    """Rotary bases a region may use: read from a table of inverse frequencies base**(-2i/width)
    among its constants (archc's and Hugging Face's `inv_freq`), else the contract's 10000."""
    found: list[float] = []
    # the constants the region reads, and those they are computed from (cos and sin of positions
    # times inv_freq are static: computed from a Shape and the table)
    todo = [i for n in region for i in n.input if i and not _computed(view, i)]
    seen: set[str] = set()
    while todo and len(seen) < 4 * MAX_REGION:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        p = view.producer(i)
        if p is not None:
            todo.extend(v for v in p.input if v and not _computed(view, v))
        shape = shape_of(view, i)
        if shape is None or math.prod(shape) > 4096:
            continue
        arr = view.static_value(i)
        if arr is None or arr.dtype.kind != "f" or width < 4:
            continue
        flat = arr.reshape(-1).astype(np.float64)
        if arr.ndim >= 2 and arr.shape[-1] == width and arr.shape[-2] > 1:
            # a table of cos(p * inv_freq), as the dynamo exporter folds it: row 1 holds the angles
            table = arr.reshape(-1, arr.shape[-2], width)[0].astype(np.float64)
            if not np.allclose(table[0], 1.0):
                continue
            flat = np.arccos(np.clip(table[1, : width // 2], -1.0, 1.0))
        elif arr.size != width // 2:
            continue
        if abs(flat[0] - 1.0) > 1e-4 or not 0 < flat[1] < 1:
            continue
        base = float(flat[1] ** (-width / 2))
        # float32 tables give the base to a few digits only; the region run decides between
        # the roundings (10000, 500000 are what models use)
        for digits in (1, 2, 3, 6):
            rounded = float(f"{base:.{digits}g}")
            if rounded not in found:
                found.append(rounded)
    return found if 10000.0 in found else [*found, 10000.0]


def _attention(view: GraphView, core: _Core) -> Match:
    def fail(why: str) -> UnrecognisedSequence:
        return UnrecognisedSequence(
            f"looks like attention but cannot be imported as one: {why}",
            location=_describe(view, core.softmax),
            hint="archc's `attention` is self-attention over [batch, L, C] with q, k, v and output projections "
            "and scores scaled by 1/sqrt(C/heads)",
        )

    q_val, k_val, v_val = core.q, core.k, core.v
    inputs = _projections_before(view, [q_val, k_val, v_val])
    outs = _projections_after(view, core.out)
    if len(outs) != 1 or not inputs:
        raise fail("no input and output projections around it")
    o = outs[0]
    channels = o.weight.shape[0]
    xs = {_module_input(view, lin.input, channels) for lin in inputs}
    if len(xs) != 1 or None in xs:
        raise fail(f"its projections do not all read one [batch, L, {channels}] input")
    x = xs.pop()
    assert x is not None
    shape = shape_of(view, x)
    assert shape is not None
    length = shape[1]
    y = _module_output(view, o.output, shape)
    if y is None:
        raise fail(f"the output projection does not lead to a [batch, {length}, {channels}] output")
    region = _region(view, x, y)
    inside = {id(n) for n in region}
    if any(id(n) not in inside for lin in [*inputs, o] for n in lin.nodes):
        raise fail("a projection lies outside the subgraph between its input and output")
    extra = [
        n
        for n in region
        if n.op_type in ("Conv", "Gemm", "MatMul")
        and not any(n is m for lin in [*inputs, o] for m in lin.nodes)
        and n not in (core.qk, core.av)
    ]
    if extra:
        raise fail(f"it holds another product ({view.describe(extra[0])})")

    # which projection feeds q, k and v
    role: dict[str, Linear] = {}
    for key, value in (("q", q_val), ("k", k_val), ("v", v_val)):
        up = _ancestors(view, value, {x})
        hits = [lin for lin in inputs if id(lin.nodes[0]) in up]
        if len(hits) != 1:
            raise fail(f"{key} is computed from {len(hits)} projections")
        role[key] = hits[0]
    width_shape = shape_of(view, q_val)
    if width_shape is None:
        raise fail("the shape of the queries is unknown")
    width = width_shape[-1]
    if core.qk.op_type == "Attention" and len(width_shape) == 3:  # its 3-D form: [batch, L, heads*width]
        width //= max(1, int(attr(core.qk, "q_num_heads", 1)))
    if width <= 0 or channels % width:
        raise fail(f"a head width of {width} does not divide {channels} channels")
    heads = channels // width
    weights: dict[str, np.ndarray] = {}
    biases: list[bool] = []
    packed = {id(lin.nodes[0]): lin for lin in role.values()}
    if len(packed) == 1:  # one packed projection: rows q | k | v
        lin = role["q"]
        e2 = lin.weight.shape[0] - channels
        if e2 <= 0 or e2 % 2:
            raise fail(f"a packed projection of {lin.weight.shape[0]} outputs for {channels} channels")
        e = e2 // 2
        bounds = {"q": (0, channels), "k": (channels, channels + e), "v": (channels + e, channels + 2 * e)}
    elif len(packed) == 2 and role["k"] is role["v"] and role["q"] is not role["k"]:
        e2 = role["k"].weight.shape[0]
        e = e2 // 2
        bounds = {"q": (0, channels), "k": (0, e), "v": (e, e2)}
    elif len(packed) == 3:
        bounds = {key: (0, role[key].weight.shape[0]) for key in ("q", "k", "v")}
        e = role["k"].weight.shape[0]
    else:
        raise fail("its projections are shared in a way archc cannot write")
    for key, (lo, hi) in bounds.items():
        lin = role[key]
        weights[f"{key}.weight"] = np.ascontiguousarray(lin.weight[lo:hi])
        biases.append(lin.bias is not None)
        if lin.bias is not None:
            weights[f"{key}.bias"] = np.ascontiguousarray(lin.bias[lo:hi])
    weights["o.weight"] = o.weight
    biases.append(o.bias is not None)
    if o.bias is not None:
        weights["o.bias"] = o.bias
    if weights["q.weight"].shape != (channels, channels) or o.weight.shape != (channels, channels):
        raise fail("the query and output projections are not square")
    if e % width or heads % (e // width) or weights["v.weight"].shape[0] != e:
        raise fail(f"key/value projections of {e} outputs do not make whole heads of width {width}")
    kv = e // width
    if any(biases) and not all(biases):
        # the dynamo exporter drops an all-zero bias (nn.MultiheadAttention's out_proj starts at
        # zeros); archc's `bias` is all or none, and a zero bias computes the same
        for key in ("q", "k", "v", "o"):
            if f"{key}.bias" not in weights:
                weights[f"{key}.bias"] = np.zeros(weights[f"{key}.weight"].shape[0], np.float32)

    # run the region beside archc's attention: exact or an error. A region the same as one run
    # before but for its projections' weights (the next layer of the model) computes the same
    # attention of its own weights: its answer is taken, not run again (2 s a layer for GPT-2)
    model = _submodel(view, region, x, y)
    projections = {view.source_name(i) for lin in [*inputs, o] for n in lin.nodes for i in n.input if i}
    signature = _signature(model, projections - {""})
    known = _RUN.setdefault(view, {})
    if signature in known:
        was_causal, was_rope = known[signature]
        return _attention_match(view, core, region, x, y, heads, kv, was_causal, was_rope, biases, weights)
    scores = shape[0] * heads * length * length * 4  # bytes of one [batch, heads, L, L] float32
    if scores > MAX_SCORES:
        raise fail(
            f"checking it means running it at {length:,} positions, whose scores alone take "
            f"{scores / 2**30:.1f} GiB (over {MAX_SCORES // 2**30} GiB): import it at a shorter length "
            "(export with the length open and pass --length L; the spec's length is one number to change)"
        )
    rng = np.random.default_rng(0)
    sample = rng.standard_normal(shape).astype(np.float32)
    rows = np.unique(
        np.linspace(0, length - 1, min(length, 24)).astype(np.int64)
    )  # first and last among them
    try:
        got = _run(model, sample)
    except Exception as exc:  # noqa: BLE001 - any failure to run the region means it is not understood
        why = f"its subgraph does not run on its own ({str(exc).splitlines()[0][:200]})"
        table = _short_table(view) if view.length is not None else None
        if table is not None:  # a table of positions shorter than the length asked for (GPT-2's wpe)
            raise fail(f"the model's positions are rows of {table[0]!r}, a table of {table[1]} positions, fewer "
                       f"than the {view.length} asked for: import at --length {table[1]} or less") from None
        if view.length is not None:  # the TorchScript exporter traces some reshapes at the export's length
            why += (f"; at the length asked for ({view.length}) the model may not run at all, where its "
                    "exporter fixed the length it was exported at in a reshape: import it at that length")
        raise fail(why) from None
    causal, rope = None, None
    bases: list[float | None] = [None, *_rotary_bases(view, region, width)]
    reference = _reference_attention(sample, weights, heads, kv, rows)
    for base in bases:
        for candidate in (False, True):
            if _close(got.reshape(shape)[:, rows], reference(candidate, base)):
                causal, rope = candidate, base
                break
        if causal is not None:
            break
    if causal is None:
        raise fail(
            f"with {heads} heads of width {width}"
            + (f", {kv} key/value heads" if kv != heads else "")
            + " it computes neither causal nor full attention (another scale, mask or position encoding?)"
        )
    known[signature] = (causal, rope)
    return _attention_match(view, core, region, x, y, heads, kv, causal, rope, biases, weights)


def _short_table(view: GraphView) -> tuple[str, int] | None:
    """A table the model reads positions from (a Gather of a constant [rows, C] at static indices)
    with fewer rows than `--length` asked for, or None."""
    assert view.length is not None
    for node in view.node_list:
        if node.op_type != "Gather" or attr(node, "axis", 0) != 0 or not view.is_initializer(node.input[0]):
            continue
        rows = shape_of(view, node.input[0])
        if rows is not None and len(rows) == 2 and rows[0] < view.length and view.is_static(node.input[1]):
            return node.input[0], rows[0]
    return None


# what the run of a region found, by the region's signature (`_signature`)
_RUN: weakref.WeakKeyDictionary[GraphView, dict[str, tuple[bool, float | None]]] = weakref.WeakKeyDictionary()


def _signature(model: onnx.ModelProto, weights: set[str]) -> str:
    """The region's computation without its projections' weights: ops, attributes and wiring
    (values renamed in order of use), the input's shape, the weights' shapes, and every other
    constant by value (a mask, a scale, a rotary table)."""
    names: dict[str, str] = {}
    digest = hashlib.sha256()

    def value(v: str) -> str:
        return names.setdefault(v, f"%{len(names)}") if v else ""

    for t in model.graph.initializer:
        digest.update(f"{value(t.name)}:{t.data_type}:{list(t.dims)}:".encode())
        if t.name not in weights:
            digest.update(np.ascontiguousarray(onnx.numpy_helper.to_array(t)).tobytes())
    for i in model.graph.input:
        digest.update(f"in {value(i.name)} {i.type.SerializeToString().hex()}".encode())
    for n in model.graph.node:
        attrs = b"".join(a.SerializeToString() for a in sorted(n.attribute, key=lambda a: a.name))
        wiring = ",".join(value(v) for v in n.input) + ">" + ",".join(value(v) for v in n.output)
        digest.update(f"{n.domain}:{n.op_type}:{wiring}:".encode() + attrs)
    digest.update(",".join(value(o.name) for o in model.graph.output).encode())
    return digest.hexdigest()


def _attention_match(
    view: GraphView, core: _Core, region: Sequence[onnx.NodeProto], x: str, y: str, heads: int, kv: int,
    causal: bool, rope: float | None, biases: list[bool], weights: dict[str, np.ndarray],
) -> Match:
    statement = f"attention {heads}"
    if kv != heads:
        statement += f" kv={kv}"
    if causal:
        statement += " causal=true"
    if rope is not None:
        statement += " rope=true"
        if rope != 10000.0:
            statement += f" rope_base={_number(rope)}"
    if not any(biases):
        statement += " bias=false"
    return Match(
        nodes=frozenset(view.key(n) for n in region),
        input=x,
        output=y,
        statement=statement,
        name=_name(view, [core.qk, core.softmax, core.av]),
        weights=weights,
    )


def _projections_after(view: GraphView, value: str) -> list[Linear]:
    """The output projection: down from the weighted sum through layout ops to a linear."""
    for _ in range(8):
        c = _reader(view, value)
        if c is None:
            return []
        lin = linear_at(view, c)
        if lin is not None:
            return [lin]
        if c.op_type not in LAYOUT_OPS:
            return []
        value = c.output[0]
    return []


def _softmaxes(view: GraphView, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Softmax (and `Attention`) nodes downstream of `node` within SEARCH_DEPTH computed nodes."""
    found: list[onnx.NodeProto] = []
    todo = [(o, 0) for o in node.output]
    seen: set[str] = set()
    while todo:
        v, depth = todo.pop(0)
        if v in seen or depth > SEARCH_DEPTH or len(seen) > 4 * MAX_REGION:
            continue
        seen.add(v)
        for c in view.consumers(v):
            if c.op_type in ("Softmax", "Attention"):
                found.append(c)
            else:
                todo.extend((o, depth + 1) for o in c.output if o)
    return found


def match_attention(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """One `attention` from the whole subgraph between its input and its output projection."""
    if not any(n.op_type in ("Softmax", "Attention") for n in view.node_list):
        return None
    cache = _ANALYSED.setdefault(view, {})
    key = view.key(node)
    for softmax in _softmaxes(view, node):
        skey = view.key(softmax)
        if skey not in cache:
            core = _core(view, softmax)
            cache[skey] = None if core is None else _attention(view, core)
        found = cache[skey]
        if found is not None and key in found.nodes:
            return found
    return None


# --- embeddings, positions, class token, tokens, select ------------------------------------
def match_embedding(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Gather of a static [V, D] table at computed token ids."""
    if node.op_type != "Gather" or attr(node, "axis", 0) != 0 or len(node.input) != 2:
        return None
    table, ids = node.input
    if not view.is_initializer(table) or not _computed(view, ids):
        return None
    shape = shape_of(view, table)
    if shape is None or len(shape) != 2:
        return None
    arr = view.weight(table)
    if arr is None:
        return None
    v, d = shape
    return Match(
        nodes=frozenset({view.key(node)}),
        input=ids,
        output=node.output[0],
        statement=f"embedding V={v} D={d}",
        name=view.module_path(node) or _param_name(table),
        weights={"weight": arr},
    )


_TABLES: weakref.WeakKeyDictionary[GraphView, dict[str, str]] = weakref.WeakKeyDictionary()


def _embedding_tables(view: GraphView) -> dict[str, str]:
    """initializer -> the embedding's name, for every token embedding in the graph (once per view)."""
    if view not in _TABLES:
        found = {}
        for n in view.node_list:
            if n.op_type == "Gather" and attr(n, "axis", 0) == 0 and len(n.input) == 2:
                table, ids = n.input
                if (
                    view.is_initializer(table)
                    and _computed(view, ids)
                    and len(shape_of(view, table) or ()) == 2
                ):
                    found[table] = view.module_path(n) or _param_name(table)
        _TABLES[view] = found
    return _TABLES[view]


def _position_table(view: GraphView, value: str, length: int, channels: int) -> tuple[np.ndarray, str] | None:
    """The learned table a static positional operand reads its first `length` rows from."""
    node = view.producer(value)
    if view.is_initializer(value):
        arr = view.weight(value)
        if arr is not None and arr.shape in ((1, length, channels), (length, channels)):
            return arr.reshape(length, channels), _param_name(value)
        return None
    if node is None:
        return None
    if node.op_type in ("Cast", "Identity") and attr(node, "to", onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT:
        # transformers casts the looked-up positions to the token embedding's dtype
        return _position_table(view, node.input[0], length, channels)
    if node.op_type == "Gather" and view.is_initializer(node.input[0]) and attr(node, "axis", 0) == 0:
        rows = shape_of(view, node.input[0])
        if rows is None or len(rows) != 2:
            return None
        if rows[0] < length:
            if view.length is not None and rows[1] == channels:  # --length past the table's end
                raise Refused(
                    f"the positions it adds are rows of {node.input[0]!r}, a table of {rows[0]} positions, "
                    f"fewer than the {length} asked for: import at --length {rows[0]} or less"
                )
            return None
        table = view.weight(node.input[0])
        idx = view.static_value(node.input[1])
        if table is None or idx is None or table.ndim != 2 or table.shape[1] != channels:
            return None
        if not np.array_equal(idx.reshape(-1), np.arange(length)):
            return None
        return table, _param_name(node.input[0])
    if node.op_type == "Slice" and view.is_initializer(node.input[0]):
        table = view.weight(node.input[0])
        starts = view.static_value(node.input[1])
        ends = view.static_value(node.input[2])
        axes = view.static_value(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        steps = view.static_value(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        if table is None or starts is None or ends is None:
            return None
        rows_axis = table.ndim - 2
        if (
            table.shape[-1] != channels
            or table.ndim not in (2, 3)
            or (table.ndim == 3 and table.shape[0] != 1)
        ):
            return None
        axes_l = list(range(len(starts))) if axes is None else [int(a) % table.ndim for a in axes.reshape(-1)]
        if axes_l != [rows_axis] or int(starts.reshape(-1)[0]) != 0:
            return None
        if steps is not None and int(steps.reshape(-1)[0]) != 1:
            return None
        if min(int(ends.reshape(-1)[0]), table.shape[rows_axis]) != length:
            return None
        return table.reshape(-1, channels), _param_name(node.input[0])
    return None


def match_posembed(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Add of a learned positional table (a [1, L, C] parameter, or the first L rows of one)."""
    if node.op_type != "Add" or len(node.input) != 2:
        return None
    computed = _computed_inputs(view, node)
    if len(computed) != 1:
        return None
    x = computed[0]
    other = node.input[1] if node.input[0] == x else node.input[0]
    shape = shape_of(view, x)
    if shape is None or len(shape) != 3 or shape_of(view, node.output[0]) != shape:
        return None
    found = _position_table(view, other, shape[1], shape[2])
    if found is None:
        return None
    table, name = found
    module = view.module_path(node)
    if "." not in name and module:
        # a folded table's generated name says nothing; its own module (archc's `posembed`) does,
        # but a container that adds it in its forward (GPT-2's transformer) names its layers
        name = f"{module}.{name}" if _container(view, module) else module
    rows = table.shape[0]
    statement = "posembed" if rows == shape[1] else f"posembed T={rows}"
    return Match(
        nodes=frozenset({view.key(node)}),
        input=x,
        output=node.output[0],
        statement=statement,
        name=name,
        weights={"weight": np.ascontiguousarray(table)},
    )


_CONTAINERS: weakref.WeakKeyDictionary[GraphView, set[str]] = weakref.WeakKeyDictionary()


def _container(view: GraphView, module: str) -> bool:
    """Whether some node lies in a module inside `module`."""
    if view not in _CONTAINERS:
        found: set[str] = set()
        for n in view.node_list:
            scopes = view.scopes(n)
            found.update(".".join(scopes[:k]) for k in range(1, len(scopes)))
        _CONTAINERS[view] = found
    return module in _CONTAINERS[view]


def match_clstoken(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Concat on the positions of a learned [1, 1, C] token (expanded to the batch) before x."""
    if node.op_type != "Concat" or len(node.input) != 2 or attr(node, "axis") not in (1, -2):
        return None
    token, x = node.input
    if not _computed(view, x) or _computed(view, token):
        return None
    shape = shape_of(view, x)
    if shape is None or len(shape) != 3:
        return None
    source = _source_initializer(view, token, frozenset({"Expand", "Tile", "Identity", "Reshape", "Cast"}))
    if source is None:
        return None
    arr = view.weight(source[0])
    name = _param_name(source[0])
    if arr is not None and arr.shape == (shape[0], 1, shape[2]) and shape[0] > 1 and (arr == arr[:1]).all():
        # at a static batch the dynamo exporter folds token.expand(batch, -1, -1) into a constant of
        # `batch` equal rows: the token is one of them, its parameter's name is gone
        arr, name = arr[:1], view.module_path(node)
    if arr is None or arr.size != shape[2]:
        return None
    return Match(
        nodes=frozenset({view.key(node)}),
        input=x,
        output=node.output[0],
        statement="clstoken",
        name=name,
        weights={"weight": arr.reshape(1, 1, shape[2]).astype(np.float32)},
    )


def match_tokens(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """[batch, C, H, W] -> Reshape [batch, C, H*W] -> Transpose (0, 2, 1): `tokens` (flatten(2).transpose(1, 2))."""
    if node.op_type not in ("Reshape", "Flatten") or not _computed(view, node.input[0]):
        return None
    before, after = shape_of(view, node.input[0]), shape_of(view, node.output[0])
    if before is None or after is None or len(before) < 4:
        return None
    if after != (before[0], before[1], math.prod(before[2:])):
        return None
    t = _reader(view, node.output[0])
    if t is None or t.op_type != "Transpose" or list(attr(t, "perm", [])) != [0, 2, 1]:
        return None
    return Match(
        nodes=frozenset({view.key(node), view.key(t)}),
        input=node.input[0],
        output=t.output[0],
        statement="tokens",
        name="",
    )


def match_select(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """x[:, i] on [batch, L, C]: Gather on axis 1 at a static scalar, or Slice + Squeeze."""
    x = node.input[0] if node.input else ""
    shape = shape_of(view, x) if _computed(view, x) else None
    if shape is None or len(shape) != 3:
        return None
    length = shape[1]
    if node.op_type == "Gather" and attr(node, "axis", 0) in (1, -2):
        idx = view.static_value(node.input[1]) if not _computed(view, node.input[1]) else None
        if idx is None or idx.ndim != 0:
            return None
        nodes, out, index = [node], node.output[0], int(idx)
    elif node.op_type == "Slice":
        starts, ends = view.static_value(node.input[1]), view.static_value(node.input[2])
        axes = view.static_value(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if starts is None or ends is None or axes is None or [int(a) % 3 for a in axes.reshape(-1)] != [1]:
            return None
        start, end = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])
        start = start + length if start < 0 else start
        if shape_of(view, node.output[0]) != (shape[0], 1, shape[2]) or not 0 <= start < length:
            return None
        sq = _reader(view, node.output[0])
        if sq is None or sq.op_type != "Squeeze" or shape_of(view, sq.output[0]) != (shape[0], shape[2]):
            return None
        del end
        nodes, out, index = [node, sq], sq.output[0], start
    else:
        return None
    if not -length <= index < length:
        return None
    return Match(
        nodes=frozenset(view.key(n) for n in nodes),
        input=x,
        output=out,
        statement=f"select {index}",
        name="",
    )


# --- linear layers on sequences ------------------------------------------------------------
def _fc_statement(n: int, bias: bool, tie: str | None = None) -> str:
    text = f"fc {n}"
    if not bias:
        text += " bias=false"
    if tie:
        text += f" tie={tie}"
    return text


def _tie(view: GraphView, lin: Linear, node: onnx.NodeProto) -> str | None:
    """The embedding whose table this projection's weight is (the same initializer, its Transpose,
    or an equal copy, as the TorchScript exporter writes a tied weight)."""
    tables = _embedding_tables(view)
    if not tables:
        return None
    weight_value = node.input[1]
    source = _source_initializer(view, weight_value, frozenset({"Transpose", "Identity"}))
    if source is not None and source[0] in tables:
        return tables[source[0]]
    for table, name in tables.items():
        if shape_of(view, table) == lin.weight.shape:
            arr = view.weight(table)
            if arr is not None and np.array_equal(arr, lin.weight):
                return name
    return None


def match_tied_fc(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """A projection whose weight is a token embedding's table: `fc N tie=NAME`."""
    lin = linear_at(view, node)
    if lin is None:
        return None
    tie = _tie(view, lin, node)
    if tie is None:
        return None
    scope = view.module_path(node).rpartition(".")[0]
    if scope and tie.startswith(scope + "."):  # a tie names its layer from the fc's own scope
        tie = tie[len(scope) + 1 :]
    weights = {} if lin.bias is None else {"bias": lin.bias}
    return Match(
        nodes=frozenset(view.key(n) for n in lin.nodes),
        input=lin.input,
        output=lin.output,
        statement=_fc_statement(lin.weight.shape[0], lin.bias is not None, tie),
        name=view.module_path(node),
        weights=weights,
    )


def match_position_linear(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Hugging Face's Conv1D on [batch, L, C]: Reshape to [batch*L, C] -> Gemm -> Reshape to
    [batch, L, N]; one `fc N` per position."""
    if node.op_type != "Reshape" or not _computed(view, node.input[0]):
        return None
    before = shape_of(view, node.input[0])
    if (
        before is None
        or len(before) != 3
        or shape_of(view, node.output[0]) != (before[0] * before[1], before[2])
    ):
        return None
    gemm = _reader(view, node.output[0])
    lin = None if gemm is None else linear_at(view, gemm)
    if gemm is None or lin is None:
        return None
    back = _reader(view, lin.output)
    n = lin.weight.shape[0]
    if (
        back is None
        or back.op_type != "Reshape"
        or shape_of(view, back.output[0]) != (before[0], before[1], n)
    ):
        return None
    tie = _tie(view, lin, gemm)
    weights = {} if tie else {"weight": lin.weight}
    if lin.bias is not None:
        weights["bias"] = lin.bias
    return Match(
        nodes=frozenset(view.key(k) for k in (node, *lin.nodes, back)),
        input=node.input[0],
        output=back.output[0],
        statement=_fc_statement(n, lin.bias is not None, tie),
        name=_name(view, lin.nodes),
        weights=weights,
    )


# --- norms and GELU ------------------------------------------------------------------------
def match_layernorm(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """LayerNormalization over the last axis."""
    if node.op_type != "LayerNormalization" or not _computed(view, node.input[0]):
        return None
    shape = shape_of(view, node.input[0])
    axis = attr(node, "axis", -1)
    if shape is None or axis not in (-1, len(shape) - 1):
        return None
    scale = view.weight(node.input[1])
    bias = view.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None or scale.shape != (shape[-1],) or (bias is not None and bias.shape != (shape[-1],)):
        return None
    eps = float(np.float32(attr(node, "epsilon", 1e-5)))
    statement = "layernorm"
    if abs(eps - 1e-5) > 1e-12:
        statement += f" eps={_number(eps)}"
    weights = {"weight": scale}
    if bias is None:
        statement += " bias=false"
    else:
        weights["bias"] = bias
    return Match(
        nodes=frozenset({view.key(node)}),
        input=node.input[0],
        output=node.output[0],
        statement=statement,
        name=view.module_path(node),
        weights=weights,
    )


def match_channel_layernorm(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """LayerNorm over the channels of an image (a sequence, a volume): a Transpose to channels
    last, LayerNormalization over the last axis and a Transpose back, as archc writes it and as
    torchvision's LayerNorm2d (ConvNeXt) is exported."""
    if node.op_type != "Transpose" or not _computed(view, node.input[0]):
        return None
    shape = shape_of(view, node.input[0])
    if shape is None or len(shape) < 3:
        return None
    rank = len(shape)
    if list(attr(node, "perm", [])) != [0, *range(2, rank), 1]:
        return None
    norm = _reader(view, node.output[0])
    back = None if norm is None else _reader(view, norm.output[0])
    if norm is None or back is None or back.op_type != "Transpose" or list(attr(back, "perm", [])) != [0, rank - 1, *range(1, rank - 1)]:
        return None
    inner = match_layernorm(view, norm)
    if inner is None:
        return None
    return Match(
        nodes=frozenset({view.key(node), *inner.nodes, view.key(back)}),
        input=node.input[0],
        output=back.output[0],
        statement=inner.statement,
        name=inner.name,
        weights=inner.weights,
    )


def _reduce_last(view: GraphView, node: onnx.NodeProto, rank: int) -> bool:
    """A ReduceMean over the last axis that keeps it (axes as an attribute, or an input from opset 18)."""
    if node.op_type != "ReduceMean" or not attr(node, "keepdims", 1):
        return False
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        found = view.static_value(node.input[1])
        axes = None if found is None else found.reshape(-1).tolist()
    return axes is not None and [int(a) % rank for a in axes] == [rank - 1]


def _vector_after(view: GraphView, x: str, op: str, size: int) -> tuple[np.ndarray, onnx.NodeProto] | None:
    """The static [size] operand of the `op` node that alone reads x (a norm's scale or shift), and
    that node."""
    node = _reader(view, x)
    if node is None or node.op_type != op or x not in node.input:
        return None
    others = [i for i in node.input if i != x]
    if len(others) != 1 or _computed(view, others[0]):
        return None
    w = view.weight(others[0])
    return (w.reshape(size), node) if w is not None and w.size == size and w.shape[-1:] == (size,) else None


def match_layernorm_decomposed(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """LayerNorm as opsets before 17 write it: (x - mean) / sqrt(var + eps) * weight + bias."""
    if node.op_type != "ReduceMean" or not _computed(view, node.input[0]):
        return None
    x = node.input[0]
    shape = shape_of(view, x)
    if shape is None or not _reduce_last(view, node, len(shape)):
        return None
    sub = _reader(view, node.output[0])
    if sub is None or sub.op_type != "Sub" or list(sub.input) != [x, node.output[0]]:
        return None
    d = sub.output[0]
    square = [c for c in _readers(view, d) if c.op_type in ("Pow", "Mul")]
    div = [c for c in _readers(view, d) if c.op_type == "Div"]
    if len(square) != 1 or len(div) != 1 or len(_readers(view, d)) != 2:
        return None
    sq = square[0]
    if (sq.op_type == "Pow" and _static_operand(view, sq, d) != 2.0) or (
        sq.op_type == "Mul" and list(sq.input) != [d, d]
    ):
        return None
    var = _reader(view, sq.output[0])
    if var is None or not _reduce_last(view, var, len(shape)):
        return None
    add = _reader(view, var.output[0])
    eps = None if add is None or add.op_type != "Add" else _static_operand(view, add, var.output[0])
    if add is None or eps is None:
        return None
    sqrt = _reader(view, add.output[0])
    if sqrt is None or sqrt.op_type != "Sqrt" or list(div[0].input) != [d, sqrt.output[0]]:
        return None
    chain = [node, sub, sq, var, add, sqrt, div[0]]
    out = div[0].output[0]
    c = shape[-1]
    found: dict[str, np.ndarray] = {}
    for op, key in (("Mul", "weight"), ("Add", "bias")):
        after = _vector_after(view, out, op, c)
        if after is not None:
            found[key], applied = after
            chain.append(applied)
            out = applied.output[0]
    weight, bias = found.get("weight"), found.get("bias")
    # nn.LayerNorm always has a weight; a missing bias is `bias=false`, a missing scale is ones
    weights = {"weight": (np.ones(c, np.float32) if weight is None else weight).astype(np.float32)}
    eps32 = float(np.float32(eps))
    statement = "layernorm" if abs(eps32 - 1e-5) <= 1e-12 else f"layernorm eps={_number(eps32)}"
    if bias is None:
        statement += " bias=false"
    else:
        weights["bias"] = bias.astype(np.float32)
    return Match(
        nodes=frozenset(view.key(n) for n in chain),
        input=x,
        output=out,
        statement=statement,
        name=_name(view, chain),
        weights=weights,
    )


def _static_operand(view: GraphView, node: onnx.NodeProto, x: str) -> float | None:
    others = [i for i in node.input if i != x]
    return _scalar(view, others[0]) if len(others) == 1 and not _computed(view, others[0]) else None


def match_rmsnorm(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """x * 1/sqrt(mean(x^2) + eps) * weight, as the exporters decompose nn.RMSNorm (also a
    RMSNormalization op, opset 23)."""
    if node.op_type == "RMSNormalization":
        x = node.input[0]
        shape = shape_of(view, x)
        scale = view.weight(node.input[1])
        if (
            shape is None
            or scale is None
            or scale.shape != (shape[-1],)
            or attr(node, "axis", -1) not in (-1, len(shape) - 1)
        ):
            return None
        eps = float(np.float32(attr(node, "epsilon", 1e-5)))
        return Match(
            frozenset({view.key(node)}),
            x,
            node.output[0],
            f"rmsnorm eps={_number(eps)}",
            view.module_path(node),
            {"weight": scale},
        )
    if node.op_type not in ("Pow", "Mul") or not node.input or not _computed(view, node.input[0]):
        return None
    x = node.input[0]
    shape = shape_of(view, x)
    if shape is None:
        return None
    if node.op_type == "Pow" and _static_operand(view, node, x) != 2.0:
        return None
    if node.op_type == "Mul" and list(node.input) != [x, x]:
        return None
    # Pow -> ReduceMean(last axis) -> Add(eps) -> Sqrt -> Reciprocal | Div(1, .) -> Mul(x, .) -> Mul(weight),
    # or Sqrt -> Div(x, .) (archc's own)
    chain = [node]
    mean = _reader(view, node.output[0])
    if mean is None or mean.op_type != "ReduceMean" or not attr(mean, "keepdims", 1):
        return None
    axes = attr(mean, "axes")
    if axes is None and len(mean.input) > 1:
        found = view.static_value(mean.input[1])
        axes = None if found is None else found.reshape(-1).tolist()
    if axes is None or [int(a) % len(shape) for a in axes] != [len(shape) - 1]:
        return None
    add = _reader(view, mean.output[0])
    if add is None or add.op_type != "Add":
        return None
    epsilon = _static_operand(view, add, mean.output[0])
    if epsilon is None:
        return None
    sqrt = _reader(view, add.output[0])
    if sqrt is None:
        return None
    chain += [mean, add]
    inv: onnx.NodeProto | None = sqrt
    scaled: onnx.NodeProto | None = None
    divided = _reader(view, sqrt.output[0]) if sqrt.op_type == "Sqrt" else None
    if divided is not None and divided.op_type == "Div" and list(divided.input) == [x, sqrt.output[0]]:
        chain += [sqrt, divided]  # x / sqrt(...), as archc writes it
        scaled = divided
    elif sqrt.op_type == "Rsqrt":
        chain.append(sqrt)
    else:
        if sqrt.op_type != "Sqrt":
            return None
        inv = _reader(view, sqrt.output[0])
        if inv is None or inv.op_type not in ("Reciprocal", "Div"):
            return None
        if inv.op_type == "Div" and (inv.input[1] != sqrt.output[0] or _scalar(view, inv.input[0]) != 1.0):
            return None
        chain += [sqrt, inv]
    if scaled is None:
        assert inv is not None
        found = _reader(view, inv.output[0])
        if found is None or found.op_type != "Mul" or set(found.input) != {x, inv.output[0]}:
            return None
        chain.append(found)
        scaled = found
    out = scaled.output[0]
    weight = np.ones(shape[-1], np.float32)
    last = _reader(view, out)
    if last is not None and last.op_type == "Mul":
        other = [i for i in last.input if i != out]
        w = view.weight(other[0]) if len(other) == 1 and not _computed(view, other[0]) else None
        if w is not None and w.shape == (shape[-1],):
            chain.append(last)
            out, weight = last.output[0], w
    return Match(
        nodes=frozenset(view.key(n) for n in chain),
        input=x,
        output=out,
        statement=f"rmsnorm eps={_number(float(np.float32(epsilon)))}",
        name=_name(view, chain),
        weights={"weight": weight.astype(np.float32)},
    )


def match_gelu(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """The Gelu op (opset 20), or GELU written out: exact (Erf) or tanh-approximated."""
    if node.op_type == "Gelu" and _computed(view, node.input[0]):
        approx = attr(node, "approximate", "none")
        statement = "gelu" if approx == "none" else "gelu approx=tanh"
        return Match(
            frozenset({view.key(node)}), node.input[0], node.output[0], statement, view.module_path(node)
        )
    if not node.input or not _computed(view, node.input[0]):
        return None
    x = node.input[0]
    if node.op_type not in ("Mul", "Pow", "Div"):
        return None
    # the Tanh or Erf the pattern goes through, within a few steps of x
    core = _descendant(view, x, ("Tanh", "Erf"), 4)
    if core is None:
        return None
    one = _reader(view, core.output[0])
    if one is None or one.op_type != "Add" or _static_operand(view, one, core.output[0]) != 1.0:
        return None
    y = _reader(view, one.output[0])
    if y is None or y.op_type != "Mul":
        return None
    # the last two products in either order: x * (1 + erf) then * 0.5, or (as dynamo writes
    # nn.GELU at opset 18) 0.5 * (1 + erf) then * x; the run below checks the whole
    after = _reader(view, y.output[0])
    if after is not None and after.op_type == "Mul" and (
        _static_operand(view, after, y.output[0]) == 0.5
        or (x in after.input and _static_operand(view, y, one.output[0]) == 0.5)
    ):
        y = after
    try:
        region = _region(view, x, y.output[0])
    except UnrecognisedSequence:
        return None
    if view.key(node) not in {view.key(n) for n in region} or any(
        n.op_type not in ("Mul", "Pow", "Add", "Div", "Tanh", "Erf") for n in region
    ):
        return None
    shape = shape_of(view, x)
    if shape is None:
        return None
    # element-wise: a short sample of the same rank checks it (scalar constants broadcast)
    small = (*(1,) * (len(shape) - 1), 241)
    sample = np.linspace(-6, 6, 241, dtype=np.float32).reshape(small)
    try:
        got = _run(_submodel(view, region, x, y.output[0], small), sample)
    except Exception:  # noqa: BLE001 - not runnable alone: not this pattern
        return None
    s = sample.astype(np.float64)
    if core.op_type == "Tanh":
        want = 0.5 * s * (1 + np.tanh(math.sqrt(2 / math.pi) * (s + 0.044715 * s**3)))
        statement = "gelu approx=tanh"
    else:
        from math import erf

        want = 0.5 * s * (1 + np.array([erf(v) for v in (s / math.sqrt(2)).reshape(-1)]).reshape(s.shape))
        statement = "gelu"
    if not _close(got, want, 1e-5):
        return None
    return Match(frozenset(view.key(n) for n in region), x, y.output[0], statement, _name(view, region))


def _descendant(view: GraphView, value: str, ops: Sequence[str], depth: int) -> onnx.NodeProto | None:
    todo = [(value, 0)]
    seen: set[str] = set()
    while todo:
        v, d = todo.pop(0)
        if v in seen or d >= depth:
            continue
        seen.add(v)
        for c in view.consumers(v):
            if c.op_type in ops:
                return c
            todo.extend((o, d + 1) for o in c.output if o)
    return None


def match_same_reshape(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """A Reshape to the shape its input already has, the batch left free (Hugging Face's
    `hidden_states.view(output_shape)` before the head): nothing to write."""
    if node.op_type != "Reshape" or len(node.input) != 2 or not _computed(view, node.input[0]):
        return None
    before = shape_of(view, node.input[0])
    if before is None or shape_of(view, node.output[0]) != before:
        return None
    target = view.static_value(node.input[1])
    # -1 or 0 first: the same shape at batch 1 is the same shape at every batch (a model exported
    # at a static batch runs at that batch only)
    if target is None or target.ndim != 1 or target.size != len(before):
        return None
    if int(target[0]) not in (-1, 0) and (view.batch_free or int(target[0]) != before[0]):
        return None
    return Match(nodes=frozenset({view.key(node)}), input=node.input[0], output=node.output[0], statement="")


def _with_shape_readers(matcher: Matcher) -> Matcher:
    """The matcher, its matches also holding the nodes that read their inner values' shapes only
    (Shape, and the constant arithmetic after it): the TorchScript exporter takes the shape of
    nearly every intermediate value, and a match may leave no value of its own read outside it."""

    def match(view: GraphView, node: onnx.NodeProto) -> Match | None:
        found = matcher(view, node)
        if found is None:
            return None
        keys = set(found.nodes)
        todo = [o for k in found.nodes for o in view.nodes[k].output if o and o != found.output]
        while todo:
            for c in view.consumers(todo.pop()):
                key = view.key(c)
                if key not in keys and all(view.is_static(o) for o in c.output if o):
                    keys.add(key)
                    todo.extend(o for o in c.output if o)
        return found if len(keys) == len(found.nodes) else replace(found, nodes=frozenset(keys))

    match.__name__ = matcher.__name__
    match.__doc__ = matcher.__doc__
    return match


# In the order the importer tries them: attention before the linears it holds, a tied
# projection before the plain per-position one.
MATCHERS: tuple[Matcher, ...] = tuple(
    _with_shape_readers(m)
    for m in (
        match_attention,
        match_embedding,
        match_posembed,
        match_clstoken,
        match_tokens,
        match_select,
        match_layernorm,
        match_channel_layernorm,
        match_layernorm_decomposed,
        match_rmsnorm,
        match_gelu,
        match_tied_fc,
        match_position_linear,
        match_same_reshape,
    )
)
