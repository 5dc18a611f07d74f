"""The state of one lowering to ONNX: the nodes so far, and each value with its axis order.

Every value knows the order its axes are held in (`Value.order`, batch
first: `NCHW`, `NC`). A handler asks for its inputs in the order it reads
them; where that differs from the order a value was made in, one
`Transpose` is inserted and reused by every later reader. ONNX's own order
(channels first, as PyTorch's) is the default on both sides, so a network
whose layers all use it has no Transpose at all.

`emit` writes an op through the opset's rewrites when it has one
(`archc.backends.onnx.opsets.rewrites`): an op newer than the opset becomes
older ops, so handlers always ask for the op they mean.

>>> import archc
>>> net = archc.loads("input 4x4x2\\nconv1: conv K=2 F=1")
>>> ctx = Lowering(net.analysis, 20, {})
>>> ctx.values["conv1"] = Value("conv1", "NHWC")  # as if conv1 were made channels last
>>> ctx.value("conv1", "NCHW"), ctx.value("conv1", "NCHW"), [n.op_type for n in ctx.nodes]
('conv1/to_NCHW', 'conv1/to_NCHW', ['Transpose'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archc.analysis import Analysis
from archc.diagnostics import ArchError, Diagnostic
from archc.ir import INPUT, Layout, Node, Physical, Shape

OUTPUT = "output"  # the graph's output value
CONSTANT_PREFIX = "/const/"  # the initializers archc adds (shapes, masks, averaging matrices); no state_dict key has a /


class OnnxError(ArchError):
    """The network cannot be written as ONNX with the options given."""


def onnx_order(shape: Shape, order: Physical = Physical.CHANNELS_FIRST) -> str:
    """The axis order a value of this shape is held in, batch first: channels first, as PyTorch
    holds images (`NCHW`); a sequence as `archc.analysis.orders` holds it (`NLC` or `NCL`).

    >>> from archc.ir import Layout
    >>> onnx_order(Shape.hwc(4, 4, 2)), onnx_order(Shape.of(Layout.SEQUENCE, (6, 4)), Physical.CHANNELS_LAST)
    ('NCHW', 'NLC')
    """
    layout = shape.layout
    if layout is Layout.FLAT:
        return "NC"
    if layout is Layout.TOKENS:
        return "NT"
    if layout is not Layout.SEQUENCE:
        order = Physical.CHANNELS_FIRST  # images and volumes are always channels first
    return "N" + "".join(layout.axes[i] for i in layout.physical_order(order))


def channels_last_order(shape: Shape) -> str:
    """The same axes with the channels last (`NHWC`): where LayerNormalization normalises."""
    return "N" + shape.layout.spatial_axes + "C"


@dataclass(frozen=True)
class Value:
    """An ONNX value and the order of its axes (`NCHW`: batch, channels, height, width)."""

    name: str
    order: str


# (lowering, inputs, node name, output name or None, **attributes) -> the output value:
# how an opset writes an op (see Lowering.emit)
Rewrite = Callable[..., str]


@dataclass
class Lowering:
    """One lowering: nodes emitted so far, where each layer's value lives, and in what order.

    `rewrites` are the ops the opset writes otherwise (`archc.backends.onnx.opsets.rewrites`).
    """

    analysis: Analysis
    opset: int
    rewrites: Mapping[str, Rewrite]
    node: Node | None = None  # the layer being lowered, for diagnostics
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    values: dict[str, Value] = field(default_factory=dict)
    transposed: dict[tuple[str, str], str] = field(default_factory=dict)  # (value, order) -> its Transpose
    constants: dict[str, TensorProto] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    declared: dict[str, tuple[int, ...]] = field(default_factory=dict)  # value -> per-sample shape, stated

    def __post_init__(self) -> None:
        self.values[INPUT] = Value(INPUT, self.order_of(INPUT))

    def order_of(self, layer: str) -> str:
        """The axis order of a layer's output (or the input) as the analysis holds it."""
        return onnx_order(self.analysis.shape_of(layer), self.analysis.order_of(layer))

    def value(self, layer: str, order: str) -> str:
        """A layer's output (or the input) as an ONNX value in the axis order `order`.

        Where the value was made in another order, a Transpose is inserted, once.
        """
        made = self.values[layer]
        if made.order == order:
            return made.name
        key = (made.name, order)
        if key not in self.transposed:
            perm = [made.order.index(axis) for axis in order]
            self.transposed[key] = self.emit("Transpose", [made.name], f"{made.name}/to_{order}", perm=perm)
        return self.transposed[key]

    def inputs(self, node: Node) -> list[str]:
        """The node's inputs as ONNX values, each in ONNX's own order for its shape (a sequence in
        the order the layer reads it: `archc.analysis.orders`)."""
        shapes = self.analysis.facts[node.name].inputs
        reads = self.analysis.reads(node)
        return [self.value(i, onnx_order(s, reads)) for i, s in zip(node.inputs, shapes, strict=True)]

    def emit(self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs: Any) -> str:
        """Write one op: the opset's rewrite of it if it has one, else one node (`add`)."""
        rewrite = self.rewrites.get(op)
        if rewrite is not None:
            return rewrite(self, inputs, name, output, **attrs)
        return self.add(op, inputs, name, output, **attrs)

    def add(self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs: Any) -> str:
        """Add one node; its output value is named `output` (default: the node's name).

        A layer may be named `output`: its value then gets a `/` name, so that it
        cannot clash with the graph's own `output` (the final value is renamed so).
        """
        out = output or (name if name != OUTPUT else f"{name}/value")
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def constant(self, name: str, value: float | np.ndarray) -> str:
        """A constant initializer (float32 unless an array says otherwise), made once per name.

        Its name starts with `CONSTANT_PREFIX` (`/const/`), so it can never be a
        layer's or a weight's: every other initializer is named by its PyTorch
        state_dict key, which has no `/`.
        """
        assert name.startswith(CONSTANT_PREFIX), name
        array = value if isinstance(value, np.ndarray) else np.array(value, np.float32)
        made = self.constants.get(name)
        if made is None:
            self.constants[name] = numpy_helper.from_array(array, name)
        else:  # one name, one value: a float `one` and an int64 `one` made an invalid model (Add of int64)
            assert numpy_helper.to_array(made).dtype == array.dtype and np.array_equal(
                numpy_helper.to_array(made), array
            ), f"the constant {name} is made with two values"
        return name

    def ints(self, name: str, values: list[int]) -> str:
        """An int64 constant (shapes, axes, indices), named `/const/<name>`: a name shared by layers
        (`zero`, `one`) says its type (`/const/int64/one`), since float constants are named so too."""
        return self.constant(f"{CONSTANT_PREFIX}{name}", np.array(values, np.int64))

    def weight_t(self, tensor: str) -> str:
        """`tensor` transposed ([N, C] -> [C, N]: nn.Linear's weight as MatMul takes it), made once.

        onnxruntime folds it into a constant when the session starts; the file holds one copy.
        """
        key = (tensor, "T")
        if key not in self.transposed:
            self.transposed[key] = self.emit("Transpose", [tensor], f"{tensor}/T", perm=[1, 0])
        return self.transposed[key]
