"""The ONNX back-end: the IR lowered to an ONNX graph with `onnx.helper`, never through torch.

The graph takes `input` (float32 NCHW `[batch, C, H, W]`, or `[batch, N]` when
flat) and gives `output`, with a dynamic batch dimension named "batch". Node
names are the dotted layer names; initializer names are `tensor_specs` names,
i.e. the PyTorch state_dict keys. Values are named after the layer that makes
them; helper nodes and constants use names with a `/`, which no layer can have.

>>> import archc
>>> net = archc.loads("input 8x8x3\\nconv1: conv K=4 F=3 P=same\\nrelu\\nfc 2")
>>> model = build_model(net, weights="zeros")
>>> [(n.name, n.op_type) for n in model.graph.node]
[('conv1', 'Conv'), ('relu1', 'Relu'), ('fc1/Flatten', 'Flatten'), ('fc1', 'Gemm')]

Adding a kind: one handler in `HANDLERS` (tests assert every registry kind has
one); an element-wise kind needs none, `_elementwise` reads its row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archc import __version__
from archc.analysis import LayerFacts
from archc.api import Network
from archc.backends.onnx.io import (
    EXTERNAL_THRESHOLD,
    Tensor,
    copy_except,
    tensor_header,
    write_model_proto,
    write_streamed,
)
from archc.backends.weights import GENERATED, generate_chunks, iter_weights
from archc.diagnostics import ArchError, Diagnostic, SpecError, error, render
from archc.ir import INPUT, Node
from archc.kinds import KINDS
from archc.kinds.dense import flattens, per_position_fc
from archc.kinds.resampling import crop_offsets
from archc.kinds.tensors import tensor_specs

# The newest opset that every onnxruntime the extras allow (>= 1.24.3) runs, and
# the one that brings Gelu. A newer default would shut out runtimes still in
# use: on an H200, onnxruntime-gpu 1.31.1 (the newest GPU wheel) refused
# opset 28's IR version 14 ("max supported IR version: 13"). Opset 20 needs IR
# 9. `--opset` picks another, up to the newest the installed onnx knows;
# tests/test_onnx_gen.py runs a model with every kind at each opset from 13.
DEFAULT_OPSET = 20
# Softmax over axis 1 alone needs 13 (before it, Softmax flattened everything from
# the axis on); Clip's min/max as inputs needs 11.
MIN_OPSET = 13
# Kinds whose ONNX op is newer than MIN_OPSET: (opset, why).
KIND_MIN_OPSET = {
    name: kind.elementwise.onnx_opset
    for name, kind in KINDS.items()
    if kind.elementwise is not None and kind.elementwise.onnx_opset is not None
}
BATCH = "batch"  # the dim_param of the dynamic batch dimension
MAX_CONSTANT_BYTES = 64 << 20  # constants a lowering may add for one layer (uneven adaptive pooling)
OUTPUT = "output"


class OnnxError(ArchError):
    """The network cannot be written as ONNX with the options given."""


@dataclass
class Lowering:
    """The state of one lowering: nodes emitted so far and where each layer's value lives."""

    net: Network
    opset: int
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=lambda: {INPUT: INPUT})
    constants: dict[str, TensorProto] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    declared: dict[str, tuple[int, ...]] = field(default_factory=dict)  # value -> per-sample shape, stated

    def inputs(self, node: Node) -> list[str]:
        return [self.values[i] for i in node.inputs]

    def emit(self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs: Any) -> str:
        """Add one node; its output value is named `output` (default: the node's name).

        A layer may be named `output`: its value then gets a `/` name, so that it
        cannot clash with the graph's own `output` (the final value is renamed so).
        """
        out = output or (name if name != OUTPUT else f"{name}/value")
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def constant(self, name: str, value: float | np.ndarray) -> str:
        """A constant initializer (float32 unless an array says otherwise), made once per name.

        Its name starts with `/`, so it can never be a layer's or a weight's.
        """
        if name not in self.constants:
            array = value if isinstance(value, np.ndarray) else np.array(value, np.float32)
            self.constants[name] = numpy_helper.from_array(array, name)
        return name


Handler = Callable[[Lowering, Node, LayerFacts], str]


def _simple(op: str, **fixed: Any) -> Handler:
    def handler(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
        return ctx.emit(op, ctx.inputs(node), node.name, **fixed)

    return handler


def _elementwise(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    """Any element-wise kind, from its row: its op, attributes and constant inputs."""
    row = KINDS[node.kind].elementwise
    assert row is not None
    if row.onnx is None:
        return ctx.inputs(node)[0]  # the identity at inference: the layer's value is its input's
    ins = [*ctx.inputs(node), *(ctx.constant(f"/const/{name}", value) for name, value in row.onnx_constants)]
    attrs = {arg.onnx: node.attrs[arg.key] for arg in row.args if arg.onnx is not None}
    attrs.update(row.onnx_attrs)
    if row.over_features:
        attrs["axis"] = facts.inputs[0].layout.channel_axis()
    if row.onnx_gate:  # x * op(x)
        gate = ctx.emit(row.onnx, ins, f"{node.name}/{row.onnx.lower()}", **attrs)
        return ctx.emit("Mul", [ins[0], gate], node.name)
    return ctx.emit(row.onnx, ins, node.name, **attrs)


def _window_attrs(facts: LayerFacts) -> dict[str, Any]:
    win = facts.window
    assert win is not None  # resolved by the analysis for every conv and pooling layer
    return {"kernel_shape": list(win.kernel), "strides": list(win.stride), "pads": list(win.pads)}


def _conv(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    a = node.attrs
    assert facts.window is not None
    ins = [*ctx.inputs(node), f"{node.name}.weight"] + ([f"{node.name}.bias"] if a["bias"] else [])
    dilations = list(facts.window.dilation)
    return ctx.emit("Conv", ins, node.name, **_window_attrs(facts), dilations=dilations, group=a["G"])


def _convtranspose(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    a, win = node.attrs, facts.window
    assert win is not None  # resolved by the analysis
    ins = [*ctx.inputs(node), f"{node.name}.weight"] + ([f"{node.name}.bias"] if a["bias"] else [])
    return ctx.emit(
        "ConvTranspose",
        ins,
        node.name,
        kernel_shape=list(win.kernel),
        strides=list(win.stride),
        pads=list(win.pads),
        output_padding=list(win.output_padding),
        dilations=list(win.dilation),
        group=a["G"],
    )


def _upsample(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    """Resize by the factors: PyTorch's nearest picks floor(out / f) (ONNX: asymmetric, floor);
    its linear without aligned corners is ONNX's half_pixel."""
    (x,) = ctx.inputs(node)
    shape, out = facts.inputs[0], facts.output
    factors = [o / n for n, o in zip(shape.spatial, out.spatial, strict=True)]
    scales = ctx.constant(f"/const/{node.name}/scales", np.array([1.0, 1.0, *factors], np.float32))
    if node.attrs["mode"] == "nearest":
        how = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        how = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    out_value = ctx.emit("Resize", [x, "", scales], node.name, **how)
    # ONNX's shape inference scales the batch too (by 1.0) and loses its name: state the shape
    ctx.declared[out_value] = out.nchw()
    return out_value


def _crop(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (x,) = ctx.inputs(node)
    shape = facts.inputs[0]
    begin, _ = crop_offsets(node.attrs, shape)
    if facts.output == shape:
        return x  # nothing to cut
    first = 1 + len(shape.nchw()) - shape.layout.spatial_rank  # the spatial axes are the last ones
    axes = list(range(first, first + shape.layout.spatial_rank))
    ends = [b + n for b, n in zip(begin, facts.output.spatial, strict=True)]
    p = node.name
    ins = [
        x,
        ctx.constant(f"/const/{p}/starts", np.array(begin, np.int64)),
        ctx.constant(f"/const/{p}/ends", np.array(ends, np.int64)),
        ctx.constant(f"/const/{p}/axes", np.array(axes, np.int64)),
    ]
    return ctx.emit("Slice", ins, p)


def _layerscale(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    # the initializer is named after the layer (its state_dict key): the node's value takes another name
    return ctx.emit("Mul", [*ctx.inputs(node), node.name], node.name, output=f"{node.name}/scaled")


def _identity(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    """A layer that is the identity at inference (droppath): its value is its input's, no node."""
    return ctx.inputs(node)[0]


def _pool(op: str, **fixed: Any) -> Handler:
    def handler(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
        assert facts.window is not None
        ceil_mode = int(facts.window.ceil)
        return ctx.emit(op, ctx.inputs(node), node.name, **_window_attrs(facts), ceil_mode=ceil_mode, **fixed)

    return handler


def _adaptive(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    sizes, outs = facts.inputs[0].spatial, facts.output.spatial
    (x,) = ctx.inputs(node)
    if sizes == outs:
        return x  # nothing to pool
    if all(n % o == 0 for n, o in zip(sizes, outs, strict=True)):
        k = [n // o for n, o in zip(sizes, outs, strict=True)]  # equal windows: one AveragePool is exactly PyTorch's
        return ctx.emit("AveragePool", [x], node.name, kernel_shape=k, strides=k)
    # Uneven windows (13x13 -> 6x6): ONNX has no adaptive pooling, but PyTorch's
    # windows are fixed by the sizes, and a mean over a box is a mean along each
    # of its axes in turn: x @ Cols^T, then Rows @ that. (MatMul reaches the last
    # two axes: an image's, or a sequence's one.) A volume's frames come first:
    # [b, C, D, H, W] as [b, C, D, H*W], Frames @ that, and back.
    size = 4 * sum(n * o for n, o in zip(sizes, outs, strict=True))
    if size > MAX_CONSTANT_BYTES:  # 40 bytes of spec must not become an 800 MB file
        shown = "x".join(map(str, sizes)), "x".join(map(str, outs))
        ctx.diagnostics.append(error(
            "E603",
            f"{node.name}: adaptiveavgpool from {shown[0]} to {shown[1]} has uneven windows, which ONNX needs as "
            f"averaging matrices of {size:,} bytes (more than {MAX_CONSTANT_BYTES:,})",
            node.span,
            f"an output size that divides {shown[0]} becomes one AveragePool, with no constants",
        ))  # fmt: skip
        return x
    p = node.name
    rank = len(sizes)
    cols = ctx.constant(f"/const/{p}/cols", _adaptive_matrix(sizes[-1], outs[-1]).T.copy())
    if rank == 1:
        return ctx.emit("MatMul", [x, cols], p)
    c = facts.inputs[0].channels
    if rank == 3 and sizes[0] != outs[0]:
        frames = ctx.constant(f"/const/{p}/frames", _adaptive_matrix(sizes[0], outs[0]))
        flat = ctx.constant(f"/const/{p}/hw", np.array([0, c, sizes[0], sizes[1] * sizes[2]], np.int64))
        x = ctx.emit("Reshape", [x, flat], f"{p}/hw")
        x = ctx.emit("MatMul", [frames, x], f"{p}/frames")  # [b, C, od, H*W]
        volume = ctx.constant(f"/const/{p}/dhw", np.array([0, c, outs[0], sizes[1], sizes[2]], np.int64))
        x = ctx.emit("Reshape", [x, volume], f"{p}/dhw")
    rows = ctx.constant(f"/const/{p}/rows", _adaptive_matrix(sizes[-2], outs[-2]))
    x = ctx.emit("MatMul", [x, cols], f"{p}/cols")  # [b, C, (D,) H, ow]
    return ctx.emit("MatMul", [rows, x], p)  # [b, C, (D,) oh, ow]


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """[out, size]: row i averages PyTorch's adaptive window i, [floor(i*size/out), ceil((i+1)*size/out))."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = i * size // out, -(-(i + 1) * size // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _fc(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (x,) = ctx.inputs(node)
    bias = [f"{node.name}.bias"] if node.attrs["bias"] else []
    shape = facts.inputs[0]
    if per_position_fc(shape):
        # every position of a [batch, C, L] sequence: a 1-wide Conv over L with the [N, C] weight
        # given a window axis ([N, C, 1]; onnxruntime folds the Unsqueeze of an initializer)
        axes = ctx.constant("/const/axes2", np.array([2], np.int64))
        weight = ctx.emit("Unsqueeze", [f"{node.name}.weight", axes], f"{node.name}/weight")
        return ctx.emit("Conv", [x, weight, *bias], node.name, kernel_shape=[1])
    if flattens(shape):  # NCHW -> [batch, C*H*W]: C,H,W order, as PyTorch flattens
        x = ctx.emit("Flatten", [x], f"{node.name}/Flatten", axis=1)
    return ctx.emit("Gemm", [x, f"{node.name}.weight", *bias], node.name, transB=1)  # weight [N, in], as nn.Linear


def _batchnorm(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    p = node.name
    ins = [*ctx.inputs(node), f"{p}.weight", f"{p}.bias", f"{p}.running_mean", f"{p}.running_var"]
    return ctx.emit("BatchNormalization", ins, p, epsilon=float(node.attrs["eps"]))


LAYERNORM_OPSET = 17  # ONNX added LayerNormalization in opset 17


def _layernorm(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    """LayerNormalization over the channels: on the last axis, transposed there and back when the
    channels are on axis 1 (images, volumes); written out in plain ops below opset 17."""
    p, shape = node.name, facts.inputs[0]
    (x,) = ctx.inputs(node)
    eps = float(node.attrs["eps"])
    bias = [f"{p}.bias"] if node.attrs["bias"] else []
    rank = 1 + len(shape.nchw())
    axis = shape.layout.channel_axis()
    if ctx.opset < LAYERNORM_OPSET:
        return _layernorm_written_out(ctx, node, x, axis, rank, eps)
    if axis == rank - 1:
        return ctx.emit("LayerNormalization", [x, f"{p}.weight", *bias], p, axis=-1, epsilon=eps)
    last = [i for i in range(rank) if i != axis] + [axis]
    back = [last.index(i) for i in range(rank)]
    x = ctx.emit("Transpose", [x], f"{p}/to_last", perm=last)
    x = ctx.emit("LayerNormalization", [x, f"{p}.weight", *bias], f"{p}/norm", axis=-1, epsilon=eps)
    return ctx.emit("Transpose", [x], p, perm=back)


def _layernorm_written_out(ctx: Lowering, node: Node, x: str, axis: int, rank: int, eps: float) -> str:
    """(x - mean) / sqrt(var + eps) * weight + bias over the channel axis, in place (opsets 13-16)."""
    p = node.name
    mean = ctx.emit("ReduceMean", [x], f"{p}/mean", axes=[axis], keepdims=1)
    centred = ctx.emit("Sub", [x, mean], f"{p}/centred")
    var = ctx.emit("ReduceMean", [ctx.emit("Mul", [centred, centred], f"{p}/square")], f"{p}/var", axes=[axis], keepdims=1)
    std = ctx.emit("Sqrt", [ctx.emit("Add", [var, ctx.constant(f"/const/{p}/eps", eps)], f"{p}/var_eps")], f"{p}/std")
    y = ctx.emit("Div", [centred, std], f"{p}/normed")
    after = rank - 1 - axis  # the [C] parameters broadcast as [C, 1, ...] over the axes after the channels
    shaped = ctx.constant(f"/const/shape{after}", np.array([-1] + [1] * after, np.int64))

    def per_channel(name: str) -> str:
        return ctx.emit("Reshape", [name, shaped], f"{p}/{name.rsplit('.', 1)[1]}_shaped") if after else name

    y = ctx.emit("Mul", [y, per_channel(f"{p}.weight")], f"{p}/scaled" if node.attrs["bias"] else p)
    if node.attrs["bias"]:
        y = ctx.emit("Add", [y, per_channel(f"{p}.bias")], p)
    return y


def _lrn(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    a = node.attrs
    size, alpha, beta, k = a["size"], float(a["alpha"]), float(a["beta"]), float(a["k"])
    (x,) = ctx.inputs(node)
    shape = facts.inputs[0]
    if size % 2 and shape.layout.spatial_rank == 2:  # onnxruntime's LRN takes NCHW only
        return ctx.emit("LRN", [x], node.name, size=size, alpha=alpha, beta=beta, bias=k)
    # ONNX's LRN takes odd sizes only. PyTorch's LocalResponseNorm, written out:
    # the mean of x^2 over channels [c - size//2, c + (size-1)//2] (zeros past the
    # ends), then x / (k + alpha * mean)^beta. The positions are one axis
    # ([b, 1, C, H*W]) so the channels pool as the first of two spatial axes at any rank.
    p = node.name
    c = shape.channels
    pads = np.array([0, 0, size // 2, 0, 0, 0, (size - 1) // 2, 0], np.int64)
    sq = ctx.emit("Mul", [x, x], f"{p}/square")
    sq = ctx.emit("Reshape", [sq, ctx.constant(f"/const/lrn{c}", np.array([0, 1, c, -1], np.int64))], f"{p}/positions")
    sq = ctx.emit("Pad", [sq, ctx.constant(f"/const/{p}/pads", pads)], f"{p}/pad")
    mean = ctx.emit("AveragePool", [sq], f"{p}/mean", kernel_shape=[size, 1], strides=[1, 1])
    dims = ctx.constant(f"/const/{p}/dims", np.array([0, *shape.nchw()], np.int64))
    mean = ctx.emit("Reshape", [mean, dims], f"{p}/unflatten")
    scaled = ctx.emit("Mul", [mean, ctx.constant(f"/const/{p}/alpha", alpha)], f"{p}/alpha")
    base = ctx.emit("Add", [scaled, ctx.constant(f"/const/{p}/k", k)], f"{p}/k")
    div = ctx.emit("Pow", [base, ctx.constant(f"/const/{p}/beta", beta)], f"{p}/beta")
    return ctx.emit("Div", [x, div], p)


def _elementwise_merge(op: str) -> Handler:
    """Add or Mul over the branches, in order; ONNX broadcasts a `[batch, C, 1, 1]` branch itself,
    and a flat `[batch, C]` one is unsqueezed to that first (its trailing axis would meet W, not C)."""

    def handler(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
        out = facts.output
        values = []
        for i, (value, shape) in enumerate(zip(ctx.inputs(node), facts.inputs, strict=True)):
            if out.is_spatial and not shape.is_spatial:
                rank, channels = 1 + len(out.nchw()), out.layout.channel_axis()
                axes = np.array([a for a in range(rank) if a not in (0, channels)], np.int64)
                name = ctx.constant(f"/const/axes{'_'.join(map(str, axes))}", axes)
                value = ctx.emit("Unsqueeze", [value, name], f"{node.name}/branch{i + 1}")
            values.append(value)
        acc = values[0]
        for k, value in enumerate(values[1:], start=2):
            last = k == len(values)
            acc = ctx.emit(op, [acc, value], node.name if last else f"{node.name}/{op.lower()}{k - 1}")
        return acc

    return handler


def _concat(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    return ctx.emit("Concat", ctx.inputs(node), node.name, axis=facts.output.layout.channel_axis())


HANDLERS: dict[str, Handler] = {
    "conv": _conv,
    "maxpool": _pool("MaxPool"),
    # count_include_pad=1: PyTorch's AvgPool2d divides by the whole window, padding included.
    "avgpool": _pool("AveragePool", count_include_pad=1),
    "convtranspose": _convtranspose,
    "upsample": _upsample,
    "crop": _crop,
    "adaptiveavgpool": _adaptive,
    "globalavgpool": _simple("GlobalAveragePool"),
    "fc": _fc,
    "flatten": _simple("Flatten", axis=1),
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "layerscale": _layerscale,
    "droppath": _identity,
    "lrn": _lrn,
    "add": _elementwise_merge("Add"),
    "multiply": _elementwise_merge("Mul"),
    "concat": _concat,
    **{name: _elementwise for name, kind in KINDS.items() if kind.elementwise is not None},
}


def default_opset() -> int:
    """DEFAULT_OPSET, or the newest the installed onnx knows when that is older."""
    return min(DEFAULT_OPSET, onnx.defs.onnx_opset_version())


def _opset(net: Network, opset: int | None) -> int:
    newest = onnx.defs.onnx_opset_version()
    opset = default_opset() if opset is None else opset
    if not MIN_OPSET <= opset <= newest:
        raise OnnxError(
            f"opset {opset} is out of range: archc writes opsets {MIN_OPSET} to {newest} "
            f"(the newest the installed onnx {onnx.__version__} knows); the default is {DEFAULT_OPSET}"
        )
    diags = [
        error(
            "E602",
            f"{node.name}: {node.kind} needs ONNX opset {KIND_MIN_OPSET[node.kind][0]} or newer "
            f"({KIND_MIN_OPSET[node.kind][1]}), but opset {opset} was asked for",
            node.span,
            f"use --opset {KIND_MIN_OPSET[node.kind][0]} or newer (the default is {DEFAULT_OPSET})",
        )
        for node in net.graph.nodes
        if node.kind in KIND_MIN_OPSET and opset < KIND_MIN_OPSET[node.kind][0]
    ]
    _raise(net, diags)
    return opset


def _raise(net: Network, diags: list[Diagnostic]) -> None:
    if diags:
        raise SpecError(diags, render(diags, net.path, net.text))


def _io(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape])


@dataclass(frozen=True)
class Skeleton:
    """A lowered network without its weights: the model (no initializers) and its constants."""

    model: onnx.ModelProto
    constants: list[TensorProto]
    values: dict[str, str]  # layer name -> the ONNX value holding its output


def lower(net: Network, opset: int | None = None) -> Skeleton:
    """Lower the IR to ONNX nodes; raises `SpecError` for what ONNX cannot express."""
    ctx = Lowering(net, _opset(net, opset))
    for node in net.graph.nodes:
        ctx.values[node.name] = HANDLERS[node.kind](ctx, node, net.analysis.facts[node.name])
    _raise(net, ctx.diagnostics)
    last = ctx.values[net.graph.output]
    if last == INPUT:  # every layer vanished: the output still needs a node of its own
        ctx.emit("Identity", [INPUT], net.graph.output, output=OUTPUT)
    else:  # rename the final value to `output` wherever it appears
        for n in ctx.nodes:
            n.output[:] = [OUTPUT if v == last else v for v in n.output]
            n.input[:] = [OUTPUT if v == last else v for v in n.input]
    values = {k: OUTPUT if v == last else v for k, v in ctx.values.items() if k != INPUT}
    declared = [_io(OUTPUT if v == last else v, shape) for v, shape in ctx.declared.items() if v != last]
    graph = helper.make_graph(
        ctx.nodes,
        net.name,
        [_io(INPUT, net.graph.input_shape.nchw())],
        [_io(OUTPUT, net.analysis.output_shape.nchw())],
        value_info=declared,
    )
    opsets = [helper.make_opsetid("", ctx.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="archc", producer_version=__version__)
    # The oldest IR version that carries this opset, so older runtimes load the file too.
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return Skeleton(model, list(ctx.constants.values()), values)


def build_model(net: Network, weights: Any = "random", seed: int = 0, opset: int | None = None) -> onnx.ModelProto:
    """The whole model in memory, weights included (see `archc.backends.weights.make_weights`)."""
    skel = lower(net, opset)
    model = skel.model
    for spec, arr in iter_weights(net, weights, seed):
        model.graph.initializer.append(numpy_helper.from_array(arr, spec.name))
    model.graph.initializer.extend(skel.constants)
    return model


def save_model(model: onnx.ModelProto, path: Path, threshold: int = EXTERNAL_THRESHOLD) -> list[Path]:
    """Write atomically; tensors go to `<path>.data` when they exceed `threshold` bytes.

    Returns the files written. The model in memory is left as it was.
    """
    return write_model_proto(model, Path(path), threshold)


def write_model(
    net: Network,
    path: Path,
    weights: Any = "random",
    seed: int = 0,
    opset: int | None = None,
    threshold: int = EXTERNAL_THRESHOLD,
) -> list[Path]:
    """`save_model(build_model(...))` holding one weight tensor in memory at a time.

    The same bytes as `save_model(build_model(net, weights, seed, opset), path)`.
    Returns the files written: the model, then its external data if any.
    """
    skel = lower(net, opset)
    specs = tensor_specs(net)
    if isinstance(weights, str) and weights in GENERATED:
        stream = generate_chunks(specs, weights, seed)  # one 4 MB buffer, reused
    else:  # loaded weights: validated in full before anything is written
        stream = iter([(spec, iter([arr])) for spec, arr in iter_weights(net, weights, seed)])

    def next_tensor(name: str) -> Callable[[], Iterable[Any]]:
        def take() -> Iterable[Any]:
            spec, chunks = next(stream)
            assert spec.name == name  # the writer asks in tensor_specs order
            # ONNX raw data is little-endian float32
            return (np.ascontiguousarray(c, dtype="<f4") for c in chunks)

        return take

    tensors = [Tensor(tensor_header(s.name, s.shape), s.numel * 4, next_tensor(s.name)) for s in specs]
    tensors += [Tensor(c, 0, list) for c in skel.constants]  # small: written whole
    return write_streamed(copy_except(skel.model, "graph"), skel.model.graph, tensors, Path(path), threshold)
