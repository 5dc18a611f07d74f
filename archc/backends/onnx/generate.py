"""The ONNX back-end: the IR lowered to an ONNX graph with `onnx.helper`, never through torch.

The graph takes `input` (float32 NCHW `[batch, C, H, W]`, or `[batch, N]` when
flat) and gives `output`, with a dynamic batch dimension named "batch". Node
names are the dotted layer names; initializer names are `tensor_specs` names,
i.e. the PyTorch state_dict keys. Values are named after the layer that makes
them; helper nodes and constants use names with a `/`, which no layer can have.

>>> import archc
>>> net = archc.loads("input 8x8x3\\nconv1: conv K=4 F=3 P=same\\nrelu\\nfc 2")
>>> model = build_model(net.analysis, weights="zeros")
>>> [(n.name, n.op_type) for n in model.graph.node]
[('conv1', 'Conv'), ('relu1', 'Relu'), ('fc1/Flatten', 'Flatten'), ('fc1', 'Gemm')]

Handlers emit the op they mean; an op newer than the opset asked for is
written out in older ops (`archc.backends.onnx.opsets`). Each value knows
the axis order it is held in; a handler reads its inputs in ONNX's own order
for their shapes unless it asks otherwise, and a Transpose appears only where
two orders meet (`archc.backends.onnx.lowering`).

Adding a kind: one handler in `HANDLERS` (tests assert every registry kind has
one); an element-wise kind needs none, `_elementwise` reads its row.
A handler returns its output value, in ONNX's own order for the output's
shape, or as a `Value` with the order it made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archc.analysis import Analysis, LayerFacts
from archc.analysis.tensors import tensor_specs
from archc.backends.onnx.io import (
    EXTERNAL_THRESHOLD,
    Tensor,
    copy_except,
    tensor_header,
    write_model_proto,
    write_streamed,
)
from archc.backends.onnx.lowering import OUTPUT, Lowering, Value, channels_last_order, onnx_order
from archc.backends.onnx.lowering import OnnxError as OnnxError  # raised here, and part of this API
from archc.backends.onnx.opsets import checked_opset, rewrites
from archc.backends.weights import GENERATED, generate_chunks, iter_weights
from archc.diagnostics import TargetError, error
from archc.ir import INPUT, Node
from archc.kinds import KINDS
from archc.kinds.dense import flattens, per_position_fc
from archc.kinds.resampling import crop_offsets
from archc.version import __version__

BATCH = "batch"  # the dim_param of the dynamic batch dimension
MAX_CONSTANT_BYTES = 64 << 20  # constants a lowering may add for one layer (uneven adaptive pooling)


Handler = Callable[[Lowering, Node, LayerFacts], str | Value]


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


def _layernorm(ctx: Lowering, node: Node, facts: LayerFacts) -> Value:
    """LayerNormalization over the channels, on the last axis: the input is read channels last
    (one Transpose from an image or volume, none when flat) and the output stays so."""
    p, shape = node.name, facts.inputs[0]
    order = channels_last_order(shape)
    x = ctx.value(node.inputs[0], order)
    bias = [f"{p}.bias"] if node.attrs["bias"] else []
    out = ctx.emit("LayerNormalization", [x, f"{p}.weight", *bias], p, axis=-1, epsilon=float(node.attrs["eps"]))
    return Value(out, order)


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


def _io(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape])


@dataclass(frozen=True)
class Skeleton:
    """A lowered network without its weights: the model (no initializers) and its constants."""

    model: onnx.ModelProto
    constants: list[TensorProto]
    values: dict[str, str]  # layer name -> the ONNX value holding its output
    orders: dict[str, str]  # layer name -> the axis order that value is held in (`NCHW`, `NHWC`)


def lower(analysis: Analysis, opset: int | None = None) -> Skeleton:
    """Lower the IR to ONNX nodes; raises `TargetError` (diagnostics) for what the opset cannot express."""
    graph_ir = analysis.graph
    opset = checked_opset(opset)
    ctx = Lowering(analysis, opset, rewrites(opset))
    for node in graph_ir.nodes:
        ctx.node = node
        facts = analysis.facts[node.name]
        made = HANDLERS[node.kind](ctx, node, facts)
        ctx.values[node.name] = made if isinstance(made, Value) else Value(made, onnx_order(facts.output))
    if ctx.diagnostics:
        raise TargetError(ctx.diagnostics)
    last = ctx.value(graph_ir.output, onnx_order(analysis.output_shape))
    if last == INPUT:  # every layer vanished: the output still needs a node of its own
        ctx.emit("Identity", [INPUT], graph_ir.output, output=OUTPUT)
    else:  # rename the final value to `output` wherever it appears
        for n in ctx.nodes:
            n.output[:] = [OUTPUT if v == last else v for v in n.output]
            n.input[:] = [OUTPUT if v == last else v for v in n.input]
    values = {k: OUTPUT if v.name == last else v.name for k, v in ctx.values.items() if k != INPUT}
    orders = {k: v.order for k, v in ctx.values.items() if k != INPUT}
    declared = [_io(OUTPUT if v == last else v, shape) for v, shape in ctx.declared.items() if v != last]
    graph = helper.make_graph(
        ctx.nodes,
        graph_ir.network,
        [_io(INPUT, graph_ir.input_shape.nchw())],
        [_io(OUTPUT, analysis.output_shape.nchw())],
        value_info=declared,
    )
    opsets = [helper.make_opsetid("", ctx.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="archc", producer_version=__version__)
    # The oldest IR version that carries this opset, so older runtimes load the file too.
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return Skeleton(model, list(ctx.constants.values()), values, orders)


def build_model(
    analysis: Analysis, weights: Any = "random", seed: int = 0, opset: int | None = None
) -> onnx.ModelProto:
    """The whole model in memory, weights included (see `archc.backends.weights.make_weights`)."""
    skel = lower(analysis, opset)
    model = skel.model
    for spec, arr in iter_weights(analysis, weights, seed):
        model.graph.initializer.append(numpy_helper.from_array(arr, spec.name))
    model.graph.initializer.extend(skel.constants)
    return model


def save_model(model: onnx.ModelProto, path: Path, threshold: int = EXTERNAL_THRESHOLD) -> list[Path]:
    """Write atomically; tensors go to `<path>.data` when they exceed `threshold` bytes.

    Returns the files written. The model in memory is left as it was.
    """
    return write_model_proto(model, Path(path), threshold)


def write_model(
    analysis: Analysis,
    path: Path,
    weights: Any = "random",
    seed: int = 0,
    opset: int | None = None,
    threshold: int = EXTERNAL_THRESHOLD,
) -> list[Path]:
    """`save_model(build_model(...))` holding one weight tensor in memory at a time.

    The same bytes as `save_model(build_model(analysis, weights, seed, opset), path)`.
    Returns the files written: the model, then its external data if any.
    """
    skel = lower(analysis, opset)
    specs = tensor_specs(analysis)
    if isinstance(weights, str) and weights in GENERATED:
        stream = generate_chunks(specs, weights, seed)  # one 4 MB buffer, reused
    else:  # loaded weights: validated in full before anything is written
        stream = iter([(spec, iter([arr])) for spec, arr in iter_weights(analysis, weights, seed)])

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
