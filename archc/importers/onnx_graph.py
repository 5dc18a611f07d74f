"""A read-only view of an ONNX graph for the importer's pattern matchers.

The importer (`archc.importers.onnx`) reads a model as `torch.onnx.export`
writes it and covers its nodes with *matches*: each match is one archc layer
(a conv, an attention, a silu written as Sigmoid+Mul) made of some ONNX nodes,
with one input value and one output value. Merges of several computed values
(Add, Concat, Mul of two branches) are not matches: the importer turns them
into `residual`, `add`, `concat` and `multiply` when it recovers the structure.

A matcher is a function `match(view, node) -> Match | None`. The importer
visits the nodes in topological order and, at each node no earlier match has
consumed, tries the matchers of `archc.importers.onnx.MATCHERS` in order
(the sequence matchers of `archc.importers.onnx_sequence` first, then the CNN
ones); the first match wins and its nodes are consumed. A matcher is tried at
the *first* node of its pattern in topological order (for attention: one of
the projections that read x; for silu: the Sigmoid), and may look anywhere
from there (`view.consumers`, `view.producer`).

Nodes that only compute constants (Shape -> Gather -> Concat feeding a
Reshape, Constant) are never visited: `view.is_static(value)` says so, and
`view.static_value(value)` evaluates them.

>>> import onnx
>>> from onnx import helper, TensorProto
>>> g = helper.make_graph(
...     [helper.make_node("Relu", ["x"], ["y"], name="/act/Relu")], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
>>> view = GraphView(helper.make_model(g))
>>> view.shape("y"), view.module_path(view.nodes["/act/Relu"])
((1, 4), 'act')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

# the metadata keys the dynamo exporter writes on every node (torch >= 2.5)
NAME_SCOPES = "pkg.torch.onnx.name_scopes"
CLASS_HIERARCHY = "pkg.torch.onnx.class_hierarchy"
STATIC_OPS = frozenset({"Constant", "Shape", "Size", "ConstantOfShape"})
MAX_EVALUATED = 1 << 22  # elements: the largest constant computed here (positions 0..L-1 of a long sequence)


@dataclass(frozen=True)
class Match:
    """One archc layer made of ONNX nodes.

    `statement` is the layer line without a name (`conv K=64 F=3 P=1 bias=false`);
    `name` the dotted module path it came from (`layer1.0.conv1`, "" when the
    model does not say); `weights` its tensors keyed relative to the layer, as
    archc's PyTorch back-end names them (`weight`, `bias`, `running_mean`, ...).
    `input` and `output` are the ONNX values it reads and writes; `nodes` the
    names (`view.key(node)`) of the nodes it consumed (at least the one it was
    tried at); no value they make other than `output` may be read outside them.
    A `statement` of several layers separates them with `;` (the name and the
    weights are the first's); an empty one passes its input on (Identity, Dropout).
    """

    nodes: frozenset[str]
    input: str
    output: str
    statement: str
    name: str = ""
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)


Matcher = Callable[["GraphView", onnx.NodeProto], "Match | None"]


class Refused(Exception):
    """Raised by a matcher for a node of its op that archc cannot express as written (asymmetric
    padding, a Clip to other bounds): the importer reports the node with this reason, rather than
    trying the other matchers or approximating it."""


def node_key(node: onnx.NodeProto, index: int) -> str:
    """A node's identity: its name, or its position where the exporter left it unnamed."""
    return node.name or f"#{index}"


class GraphView:
    """Nodes by output, consumers, constants as numpy, shapes from shape inference, metadata.

    `model` should hold the graph only: the importer hands large initializers
    in as `weights` (name -> a function reading the array), so that a 100 MB
    model is never copied whole into the view. A batch dimension the model
    leaves open is fixed at 1 for shape inference, so every shape is concrete
    (MACs are counted at batch 1); a static batch (2, 3) stays as exported, and
    `batch` says which. Any other open dimension of the input (a sequence
    length left free at export) is fixed at `length` when exactly one is open;
    `free` lists those the model leaves open, as (input, axis, symbol).
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        weights: Mapping[str, Callable[[], np.ndarray]] | None = None,
        weight_shapes: Mapping[str, tuple[int, ...]] | None = None,
        length: int | None = None,
    ) -> None:
        graph = model.graph
        self.model = model
        self.graph = graph
        self.node_list = list(graph.node)
        self.nodes: dict[str, onnx.NodeProto] = {node_key(n, i): n for i, n in enumerate(self.node_list)}
        self.keys: dict[int, str] = {id(n): node_key(n, i) for i, n in enumerate(self.node_list)}
        self.producers: dict[str, onnx.NodeProto] = {o: n for n in self.node_list for o in n.output if o}
        self._consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.node_list:
            for i in dict.fromkeys(n.input):
                if i:
                    self._consumers.setdefault(i, []).append(n)
        self._readers: dict[str, Callable[[], np.ndarray]] = dict(weights or {})
        self._inits = {t.name: t for t in graph.initializer}
        self._shapes: dict[str, tuple[int, ...]] = dict(weight_shapes or {})
        self._shapes.update({t.name: tuple(t.dims) for t in graph.initializer})
        self.inputs = [i.name for i in graph.input if i.name not in self._inits and i.name not in self._readers]
        self.outputs = [o.name for o in graph.output]
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        # archc names a layer's inner nodes `<layer>/<part>` (`h.0.attention1/scores`)
        self.archc_names = model.producer_name == "archc"
        self._static_cache: dict[str, np.ndarray | None] = {}
        self._is_static: dict[str, bool] = {}
        self._infer(model, length)

    # --- shapes ---------------------------------------------------------------------------
    def _infer(self, model: onnx.ModelProto, length: int | None = None) -> None:
        fixed = onnx.ModelProto()
        fixed.CopyFrom(model)
        self.batch_free = False  # whether the batch was left open (`dynamic_axes`): messages then say N
        self.batch = 1  # the batch shapes are inferred at: 1 where open, else the model's own
        self.free: list[tuple[str, int, str]] = []
        symbols: dict[str, int] = {}
        open_dims: list[onnx.TensorShapeProto.Dimension] = []
        for inp in fixed.graph.input:
            if inp.name in self._inits or inp.name in self._readers:
                continue
            dims = inp.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                if dims[0].dim_param:
                    symbols[dims[0].dim_param] = 1
                dims[0].dim_value = 1  # batch 1: every shape concrete
                self.batch_free = True
            elif dims and inp.name == self.inputs[0]:
                self.batch = dims[0].dim_value
            for axis, d in enumerate(dims):
                if axis and not d.HasField("dim_value"):
                    self.free.append((inp.name, axis, d.dim_param))
                    open_dims.append(d)
        self.length = length if len(open_dims) == 1 else None  # the open length fixed, if one was
        if length is not None and len(open_dims) == 1:  # the one open length, at the length asked for
            if open_dims[0].dim_param:
                symbols.setdefault(open_dims[0].dim_param, length)
            open_dims[0].dim_value = length
        # the exporter's own shapes name the batch (and the length) by the input's symbols: those
        # are fixed too (ONNX's inference keeps them where it stops, e.g. after an attention mask
        # built from shapes)
        for v in [*fixed.graph.value_info, *fixed.graph.output]:
            for d in v.type.tensor_type.shape.dim:
                if not d.HasField("dim_value") and d.dim_param in symbols:
                    d.dim_value = symbols[d.dim_param]
        try:
            inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
        except Exception:  # noqa: BLE001 - an inference failure leaves shapes unknown; matchers say so
            inferred = fixed
        g = inferred.graph
        self.types: dict[str, int] = {}
        for v in [*g.input, *g.value_info, *g.output]:
            t = v.type.tensor_type
            self.types[v.name] = t.elem_type
            dims = t.shape.dim
            if t.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                self._shapes[v.name] = tuple(d.dim_value for d in dims)

    def shape(self, value: str) -> tuple[int, ...] | None:
        """The value's shape at batch 1 (ONNX's order: `[1, C, H, W]`), None when unknown."""
        return self._shapes.get(value)

    # --- graph ----------------------------------------------------------------------------
    def key(self, node: onnx.NodeProto) -> str:
        """The name a `Match` uses for a node."""
        return self.keys[id(node)]

    def producer(self, value: str) -> onnx.NodeProto | None:
        return self.producers.get(value)

    def consumers(self, value: str) -> list[onnx.NodeProto]:
        return self._consumers.get(value, [])

    def only_consumer(self, value: str) -> onnx.NodeProto | None:
        """The one node reading `value`, or None when several (or none, or a graph output) do; a node
        that reads only its shape (Shape, and what computes from shapes alone) does not count."""
        found = [c for c in self.consumers(value) if not all(self.is_static(o) for o in c.output if o)]
        return found[0] if len(found) == 1 and value not in self.outputs else None

    def is_initializer(self, value: str) -> bool:
        return value in self._inits or value in self._readers

    def is_static(self, value: str) -> bool:
        """Whether the value is known before the input is: an initializer, a Constant, or computed
        from those and from shapes only (Shape -> Gather -> Concat as exporters write a Reshape).

        Memoised and iterative: asked of every value along a chain of thousands of nodes, a
        recursive walk was quadratic and ran out of frames.
        """
        memo = self._is_static
        stack, path = [(value, False)], set()  # depth first; `path`: the values being worked out
        while stack:
            top, inputs_done = stack.pop()
            if top in memo:
                continue
            needs = self._static_if(top)
            if isinstance(needs, bool):
                memo[top] = needs
            elif inputs_done:
                memo[top] = all(memo.get(v, False) for v in needs)
                path.discard(top)
            elif top in path:  # a cycle (the checker refuses one): not static
                memo[top] = False
            else:
                path.add(top)
                stack.append((top, True))
                stack += [(v, False) for v in needs if v not in memo]
        return memo[value]

    def _static_if(self, value: str) -> bool | list[str]:
        """Whether `value` is static by itself, or the values it is static if all of."""
        if not value or self.is_initializer(value):
            return True
        node = self.producers.get(value)
        if node is None:
            return False
        if node.op_type in STATIC_OPS:
            return True
        if node.op_type == "CastLike":  # its second input gives a type only (dynamo=True, optimize=False)
            return [node.input[0]]
        return list(node.input)

    def static_value(self, value: str) -> np.ndarray | None:
        """The value of a static value (see `is_static`), or None when it cannot be known here."""
        if value in self._static_cache:
            return self._static_cache[value]
        result = self._evaluate(value)
        self._static_cache[value] = result
        return result

    def _evaluate(self, value: str) -> np.ndarray | None:
        if value in self._readers:
            return self._readers[value]()
        if value in self._inits:
            return numpy_helper.to_array(self._inits[value])
        node = self.producers.get(value)
        if node is None:
            return None
        if node.op_type in ("Identity", "Dropout") and node.input:
            return self.static_value(node.input[0])
        if node.op_type == "Transpose" and node.input:  # weight-sized: numpy, never the evaluator
            x = self.static_value(node.input[0])
            perm = attr(node, "perm")
            return None if x is None else np.transpose(x, perm if perm else None)
        if node.op_type == "Constant":
            return _constant(node)
        if node.op_type == "Shape":
            shape = self.shape(node.input[0])
            if shape is None:
                return None
            start, end = attr(node, "start", 0), attr(node, "end", len(shape))
            return np.array(shape[start:end], np.int64)
        if node.op_type == "Size":
            shape = self.shape(node.input[0])
            return None if shape is None else np.array(math.prod(shape), np.int64)
        if node.op_type == "CastLike":
            x, to = self.static_value(node.input[0]), self.types.get(node.input[1])
            return None if x is None or not to else x.astype(onnx.helper.tensor_dtype_to_np_dtype(to))
        ins = [self.static_value(i) if i else None for i in node.input]
        if any(v is None and i for v, i in zip(ins, node.input, strict=True)):
            return None
        if sum(v.size for v in ins if v is not None) > 4096:
            return None  # shape arithmetic only: never evaluate a weight-sized computation here
        if math.prod(self.shape(value) or ()) > MAX_EVALUATED:
            return None  # nor a large result of small inputs (a Range or a mask at a long length)
        try:
            from onnx.reference import ReferenceEvaluator

            one = onnx.helper.make_graph(
                [node],
                "static",
                [onnx.helper.make_tensor_value_info(i, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                 for i, v in zip(node.input, ins, strict=True) if i and v is not None],
                [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output],
            )
            opsets = [onnx.helper.make_opsetid(o.domain, o.version) for o in self.model.opset_import]
            model = onnx.helper.make_model(one, opset_imports=opsets)
            feeds = {i: v for i, v in zip(node.input, ins, strict=True) if i and v is not None}
            outs: list[Any] = list(ReferenceEvaluator(model).run(None, feeds))  # one array per output
        except Exception:  # noqa: BLE001 - not evaluable here: the caller treats it as unknown
            return None
        return np.asarray(outs[list(node.output).index(value)])

    def source_name(self, value: str) -> str:
        """The initializer a static value comes from, through Identity and Transpose
        (dynamo's `MatMul(x, Transpose(fc.weight))`); "" when none."""
        for _ in range(16):
            if value in self._inits or value in self._readers:
                return value
            node = self.producers.get(value)
            if node is None or node.op_type not in ("Identity", "Transpose", "Cast") or not node.input:
                return ""
            value = node.input[0]
        return ""

    def weight(self, value: str) -> np.ndarray | None:
        """A constant's array (an initializer, also through Identity; float32 for floating point),
        read when asked; None for a value computed from the input."""
        if not self.is_static(value):
            return None
        arr = self.static_value(value)
        if arr is not None and arr.dtype.kind == "f" and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        return arr

    # --- metadata -------------------------------------------------------------------------
    def metadata(self, node: onnx.NodeProto) -> dict[str, str]:
        return {p.key: p.value for p in node.metadata_props}

    def scopes(self, node: onnx.NodeProto) -> list[str]:
        """The module path of a node as a list of attribute names (`['layer1', '0', 'conv1']`).

        From the dynamo exporter's `name_scopes` metadata (a list of the modules'
        attribute names, the root's "" first), else from the TorchScript
        exporter's node name (`/layer1/layer1.0/conv1/Conv`: each part a
        module's name, dotted below its parent), else from archc's own (the
        dotted layer name, before the `/` of an inner node). Empty when the
        model does not say.
        """
        meta = self.metadata(node)
        if NAME_SCOPES in meta:
            # ['', 'layer1', 'layer1.0', 'layer1.0.relu', 'relu_1']: each module's full path, then the op
            names = _listing(meta[NAME_SCOPES])
            return [p for p in names[-2].split(".") if p] if len(names) >= 2 else []
        name = node.name
        if name.startswith("/"):
            pieces = [p for p in name.split("/") if p][:-1]  # the last is the op ("Conv", "Conv_1")
            parts: list[str] = []
            previous = ""
            for piece in pieces:
                # TorchScript writes an indexed child under its container's own name
                # ("/features/features.1/conv/conv.0/Conv"): keep the new part only
                new = piece[len(previous) + 1 :] if previous and piece.startswith(previous + ".") else piece
                parts.extend(p for p in new.split(".") if p)
                previous = piece
            return parts
        if self.archc_names and "/" in name:
            name = name.split("/", 1)[0]
        if name and "/" not in name and not name.startswith("#"):
            return [p for p in name.split(".") if p]
        return []

    def module_path(self, node: onnx.NodeProto) -> str:
        """`scopes` joined with dots: `layer1.0.conv1`."""
        return ".".join(self.scopes(node))

    def scope_classes(self, node: onnx.NodeProto) -> dict[tuple[str, ...], str]:
        """The class of each module around the node (`{('layer1', '0'): 'Bottleneck'}`), from the
        dynamo exporter's `class_hierarchy` beside its `name_scopes`; {} for other exporters."""
        meta = self.metadata(node)
        if CLASS_HIERARCHY not in meta or NAME_SCOPES not in meta:
            return {}
        names, classes = _listing(meta[NAME_SCOPES]), _listing(meta[CLASS_HIERARCHY])
        return {
            tuple(p for p in n.split(".") if p): c.rsplit(".", 1)[-1]
            for n, c in zip(names[1:-1], classes[1:-1], strict=False)
        }

    def describe(self, node: onnx.NodeProto) -> str:
        """A node for an error message: name, op type, input and output shapes; the batch of a
        computed value is `N` where the model leaves it open (`[N, 64, 56, 56]`), as the user wrote it."""
        def text(v: str) -> str:
            shape = self.shape(v)
            batch = self.batch_free and shape is not None and len(shape) > 0 and shape[0] == 1 and not self.is_static(v)
            return _shape_text(shape, "N" if batch else None)

        def shapes(values: Iterator[str] | list[str]) -> str:
            return ", ".join(text(v) for v in values if v)

        return (
            f"node {node.name or '(unnamed)'!r} ({node.op_type}), inputs [{shapes(list(node.input))}] "
            f"-> outputs [{shapes(list(node.output))}]"
        )


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """A node attribute as a Python value (ints, floats, lists, strings), or `default`."""
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.array(onnx.helper.get_attribute_value(a))
        if a.name in ("value_floats", "value_ints"):
            return np.array(list(onnx.helper.get_attribute_value(a)))
    return None


def _listing(text: str) -> list[str]:
    """The exporter's metadata lists are Python literals (`['', 'layer1']`); read them without eval."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def _shape_text(shape: tuple[int, ...] | None, batch: str | None = None) -> str:
    if shape is None:
        return "?"
    dims = [str(d) for d in shape]
    if batch is not None:
        dims[0] = batch
    return "[" + ", ".join(dims) + "]"
