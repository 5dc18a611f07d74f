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

Adding a kind: one handler in `HANDLERS` (tests assert every registry kind has one).
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

from archc import __version__
from archc.analysis import Analysis, LayerFacts
from archc.backends.onnx.io import (
    EXTERNAL_THRESHOLD,
    Tensor,
    copy_except,
    tensor_header,
    write_model_proto,
    write_streamed,
)
from archc.backends.onnx.lowering import OUTPUT, Lowering, Value, onnx_order
from archc.backends.onnx.lowering import OnnxError as OnnxError  # raised here, and part of this API
from archc.backends.onnx.opsets import checked_opset, rewrites
from archc.backends.weights import GENERATED, generate_chunks, iter_weights
from archc.diagnostics import TargetError
from archc.ir import INPUT, Node
from archc.kinds import resolve_window
from archc.kinds.tensors import tensor_specs

BATCH = "batch"  # the dim_param of the dynamic batch dimension


Handler = Callable[[Lowering, Node, LayerFacts], str | Value]


def _simple(op: str, **fixed: Any) -> Handler:
    def handler(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
        return ctx.emit(op, ctx.inputs(node), node.name, **fixed)

    return handler


def _vanish(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    return ctx.inputs(node)[0]  # dropout at inference: the layer's value is its input's


def _conv(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    a = node.attrs
    win = resolve_window(a, facts.inputs[0], "conv", pool=False)
    ins = [*ctx.inputs(node), f"{node.name}.weight"] + ([f"{node.name}.bias"] if a["bias"] else [])
    return ctx.emit(
        "Conv", ins, node.name,
        kernel_shape=list(win.kernel), strides=list(win.stride), pads=list(win.pads),
        dilations=list(win.dilation), group=a["G"],
    )  # fmt: skip


def _pool(op: str, **fixed: Any) -> Handler:
    def handler(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
        win = resolve_window(node.attrs, facts.inputs[0], node.kind, pool=True)
        return ctx.emit(
            op, ctx.inputs(node), node.name,
            kernel_shape=list(win.kernel), strides=list(win.stride), pads=list(win.pads),
            ceil_mode=int(win.ceil), **fixed,
        )  # fmt: skip

    return handler


def _adaptive(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (h, w, _), (oh, ow, _) = facts.inputs[0].dims, facts.output.dims
    (x,) = ctx.inputs(node)
    if (h, w) == (oh, ow):
        return x  # nothing to pool
    if h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]  # equal windows: one AveragePool is exactly PyTorch's adaptive pool
        return ctx.emit("AveragePool", [x], node.name, kernel_shape=k, strides=k)
    # Uneven windows (13x13 -> 6x6): ONNX has no adaptive pooling, but PyTorch's
    # windows are fixed by the sizes, and a mean over a rectangle is a mean over
    # its columns, then over its rows: x @ Cols^T, then Rows @ that.
    cols = ctx.constant(f"/const/{node.name}/cols", _adaptive_matrix(w, ow).T.copy())
    rows = ctx.constant(f"/const/{node.name}/rows", _adaptive_matrix(h, oh))
    x = ctx.emit("MatMul", [x, cols], f"{node.name}/cols")  # [b, C, H, ow]
    return ctx.emit("MatMul", [rows, x], node.name)  # [b, C, oh, ow]


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """[out, size]: row i averages PyTorch's adaptive window i, [floor(i*size/out), ceil((i+1)*size/out))."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = i * size // out, -(-(i + 1) * size // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _fc(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (x,) = ctx.inputs(node)
    if facts.inputs[0].is_spatial:  # NCHW -> [batch, C*H*W]: C,H,W order, as PyTorch flattens
        x = ctx.emit("Flatten", [x], f"{node.name}/Flatten", axis=1)
    ins = [x, f"{node.name}.weight"] + ([f"{node.name}.bias"] if node.attrs["bias"] else [])
    return ctx.emit("Gemm", ins, node.name, transB=1)  # weight is [N, in], as nn.Linear stores it


def _batchnorm(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    p = node.name
    ins = [*ctx.inputs(node), f"{p}.weight", f"{p}.bias", f"{p}.running_mean", f"{p}.running_var"]
    return ctx.emit("BatchNormalization", ins, p, epsilon=float(node.attrs["eps"]))


def _lrn(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    a = node.attrs
    size, alpha, beta, k = a["size"], float(a["alpha"]), float(a["beta"]), float(a["k"])
    (x,) = ctx.inputs(node)
    if size % 2:
        return ctx.emit("LRN", [x], node.name, size=size, alpha=alpha, beta=beta, bias=k)
    # ONNX's LRN takes odd sizes only. PyTorch's LocalResponseNorm, written out:
    # the mean of x^2 over channels [c - size//2, c + (size-1)//2] (zeros past the
    # ends), then x / (k + alpha * mean)^beta.
    p = node.name
    pads = np.array([0, 0, size // 2, 0, 0, 0, 0, (size - 1) // 2, 0, 0], np.int64)
    axis = ctx.constant("/const/axis1", np.array([1], np.int64))
    sq = ctx.emit("Mul", [x, x], f"{p}/square")
    sq = ctx.emit("Unsqueeze", [sq, axis], f"{p}/unsqueeze")  # [b, 1, C, H, W]: pool over C
    sq = ctx.emit("Pad", [sq, ctx.constant(f"/const/{p}/pads", pads)], f"{p}/pad")
    mean = ctx.emit("AveragePool", [sq], f"{p}/mean", kernel_shape=[size, 1, 1], strides=[1, 1, 1])
    mean = ctx.emit("Squeeze", [mean, axis], f"{p}/squeeze")
    scaled = ctx.emit("Mul", [mean, ctx.constant(f"/const/{p}/alpha", alpha)], f"{p}/alpha")
    base = ctx.emit("Add", [scaled, ctx.constant(f"/const/{p}/k", k)], f"{p}/k")
    div = ctx.emit("Pow", [base, ctx.constant(f"/const/{p}/beta", beta)], f"{p}/beta")
    return ctx.emit("Div", [x, div], p)


def _relu6(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    lo, hi = ctx.constant("/const/zero", 0.0), ctx.constant("/const/six", 6.0)
    return ctx.emit("Clip", [*ctx.inputs(node), lo, hi], node.name)


def _leakyrelu(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    return ctx.emit("LeakyRelu", ctx.inputs(node), node.name, alpha=float(node.attrs["slope"]))


HANDLERS: dict[str, Handler] = {
    "conv": _conv,
    "maxpool": _pool("MaxPool"),
    # count_include_pad=1: PyTorch's AvgPool2d divides by the whole window, padding included.
    "avgpool": _pool("AveragePool", count_include_pad=1),
    "adaptiveavgpool": _adaptive,
    "globalavgpool": _simple("GlobalAveragePool"),
    "fc": _fc,
    "flatten": _simple("Flatten", axis=1),
    "batchnorm": _batchnorm,
    "lrn": _lrn,
    "dropout": _vanish,
    "relu": _simple("Relu"),
    "relu6": _relu6,
    "sigmoid": _simple("Sigmoid"),
    "tanh": _simple("Tanh"),
    "gelu": _simple("Gelu"),  # approximate="none": the exact erf form, as nn.GELU()
    "softmax": _simple("Softmax", axis=1),  # over the channels (the features, when flat)
    "identity": _simple("Identity"),
    "leakyrelu": _leakyrelu,
    "add": _simple("Add"),
    "concat": _simple("Concat", axis=1),
}


def _io(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape])


@dataclass(frozen=True)
class Skeleton:
    """A lowered network without its weights: the model (no initializers) and its constants."""

    model: onnx.ModelProto
    constants: list[TensorProto]
    values: dict[str, str]  # layer name -> the ONNX value holding its output


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
    graph = helper.make_graph(
        ctx.nodes,
        graph_ir.network,
        [_io(INPUT, graph_ir.input_shape.nchw())],
        [_io(OUTPUT, analysis.output_shape.nchw())],
    )
    opsets = [helper.make_opsetid("", ctx.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="archc", producer_version=__version__)
    # The oldest IR version that carries this opset, so older runtimes load the file too.
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return Skeleton(model, list(ctx.constants.values()), values)


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
