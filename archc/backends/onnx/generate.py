"""The ONNX back-end: the IR lowered to an ONNX graph with `onnx.helper`, never through torch.

The graph takes `input` (float32 NCHW `[batch, C, H, W]`, `[batch, N]` when
flat, `[batch, L, C]` or `[batch, C, L]` for a sequence as `archc.analysis.orders`
holds it; int64 `[batch, T]` for token ids) and gives `output`, with a dynamic
batch dimension named "batch". Node
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
from typing import Any, NamedTuple

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
from archc.backends.onnx.lowering import OUTPUT, Lowering, Value, channels_last_order
from archc.backends.onnx.lowering import OnnxError as OnnxError  # raised here, and part of this API
from archc.backends.onnx.opsets import checked_opset, rewrites
from archc.backends.weights import GENERATED, generate_chunks, iter_weights
from archc.diagnostics import TargetError, error
from archc.ir import INPUT, Layout, Node
from archc.kinds import KINDS, Window
from archc.kinds.dense import flattens, per_position_fc
from archc.kinds.resampling import crop_offsets
from archc.kinds.sequence import kv_heads, select_index
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
        attrs["axis"] = facts.inputs[0].layout.channel_axis(ctx.analysis.reads(node))
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
        win = facts.window
        assert win is not None
        (x,) = ctx.inputs(node)
        attrs = {**_window_attrs(facts), "ceil_mode": int(win.ceil), **fixed}
        if win.ceil:
            plan = ceil_pool_plan(win, facts.inputs[0].spatial, average=op == "AveragePool")
            attrs.update(pads=plan.pads, ceil_mode=int(plan.ceil))
            if plan.zeros is not None:  # PyTorch's divisors: the padding as zeros, counted as the input
                pads = np.array([0, 0, *plan.zeros[: len(win.kernel)], 0, 0, *plan.zeros[len(win.kernel) :]], np.int64)
                x = ctx.emit("Pad", [x, ctx.constant(f"/const/{node.name}/pads", pads)], f"{node.name}/pad")
                attrs["count_include_pad"] = 0
        return ctx.emit(op, [x], node.name, **attrs)

    return handler


class PoolPlan(NamedTuple):
    """How ONNX computes a ceil-mode pool as PyTorch does (see `ceil_pool_plan`)."""

    pads: list[int]  # the pool's `pads`
    ceil: bool  # its `ceil_mode`
    zeros: list[int] | None = None  # a `Pad` of zeros before it (begins, then ends), for an average


def _onnx_out(n: int, f: int, s: int, begin: int, end: int, ceil: bool) -> int:
    """ONNX's output length of a pooling window, as its shape inference computes it (no window is dropped)."""
    span = n + begin + end - f
    return (-(-span // s) if ceil else span // s) + 1


def ceil_pool_plan(win: Window, sizes: tuple[int, ...], average: bool) -> PoolPlan:
    """ONNX pooling that gives a ceil-mode pool PyTorch's windows, its output size and its divisors.

    PyTorch drops a last window that would start in the right padding
    (`archc.kinds.windows.window_out`); ONNX's shape inference does not, so
    with the layer's own padding ONNX declares one output more than
    onnxruntime (and PyTorch) computes: the model fails
    `onnx.checker.check_model(full_check=True)` and onnxruntime warns that the
    shapes do not merge. The padding such a window would start in is never
    read, so the rule implies a smaller one: just what the last window kept
    reaches (`reach`, past the input's end), after which the division is
    exact and both roundings agree. Where that would be less than no padding
    (a window shorter than its stride), floor mode, with the other dimensions'
    partial windows padded out to whole ones: a max ignores padding. An
    average divides by the padding it counts, which PyTorch limits to the
    written padding: then the padding is made zeros by a `Pad` first, and the
    pool counts only what it reads (`count_include_pad=0`).

    >>> w = Window((2, 2), (2, 2), (1, 1), (1, 1), (1, 1), True, (2, 2))
    >>> ceil_pool_plan(w, (3, 3), average=True)  # 3x3, F=2 S=2 P=1 ceil: PyTorch gives 2x2
    PoolPlan(pads=[1, 1, 0, 0], ceil=True, zeros=None)
    """
    n, f, s, b, e, out = sizes, win.kernel, win.stride, win.begin, win.end, win.out
    dims = range(len(n))
    reach = [(out[i] - 1) * s[i] + f[i] - n[i] - b[i] for i in dims]
    ends = [e[i] if _onnx_out(n[i], f[i], s[i], b[i], e[i], True) == out[i] else reach[i] for i in dims]
    if all(end >= 0 for end in ends):
        return PoolPlan([*b, *ends], True)
    ends = [max(r, 0) for r in reach]
    if not average or all(ends[i] <= e[i] for i in dims):  # no divisor changes
        return PoolPlan([*b, *ends], False)
    zeros = [min(e[i], ends[i]) for i in dims]
    return PoolPlan([0] * len(n) + [ends[i] - zeros[i] for i in dims], False, [*b, *zeros])


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
    cols = ctx.constant(f"/const/{p}/cols", adaptive_matrix(sizes[-1], outs[-1]).T.copy())
    if rank == 1:
        return ctx.emit("MatMul", [x, cols], p)
    c = facts.inputs[0].channels
    if rank == 3 and sizes[0] != outs[0]:
        frames = ctx.constant(f"/const/{p}/frames", adaptive_matrix(sizes[0], outs[0]))
        flat = ctx.constant(f"/const/{p}/hw", np.array([0, c, sizes[0], sizes[1] * sizes[2]], np.int64))
        x = ctx.emit("Reshape", [x, flat], f"{p}/hw")
        x = ctx.emit("MatMul", [frames, x], f"{p}/frames")  # [b, C, od, H*W]
        volume = ctx.constant(f"/const/{p}/dhw", np.array([0, c, outs[0], sizes[1], sizes[2]], np.int64))
        x = ctx.emit("Reshape", [x, volume], f"{p}/dhw")
    rows = ctx.constant(f"/const/{p}/rows", adaptive_matrix(sizes[-2], outs[-2]))
    x = ctx.emit("MatMul", [x, cols], f"{p}/cols")  # [b, C, (D,) H, ow]
    return ctx.emit("MatMul", [rows, x], p)  # [b, C, (D,) oh, ow]


def adaptive_matrix(size: int, out: int) -> np.ndarray:
    """[out, size]: row i averages PyTorch's adaptive window i, [floor(i*size/out), ceil((i+1)*size/out)).
    The ONNX importer reads an uneven adaptive pooling back by this matrix."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = i * size // out, -(-(i + 1) * size // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _fc(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (x,) = ctx.inputs(node)
    tie = node.attrs.get("tie")
    weight = f"{tie if tie is not None else node.name}.weight"  # a tied weight is stored once, at its owner
    bias = [f"{node.name}.bias"] if node.attrs["bias"] else []
    shape = facts.inputs[0]
    if per_position_fc(shape):  # [batch, L, C] @ [C, N] at every position (`Traits.sequence`: read channels last)
        if not bias:
            return ctx.emit("MatMul", [x, ctx.weight_t(weight)], node.name)
        y = ctx.emit("MatMul", [x, ctx.weight_t(weight)], f"{node.name}/MatMul")
        return ctx.emit("Add", [y, *bias], node.name)
    if flattens(shape):  # NCHW -> [batch, C*H*W]: C,H,W order, as PyTorch flattens
        x = ctx.emit("Flatten", [x], f"{node.name}/Flatten", axis=1)
    return ctx.emit("Gemm", [x, weight, *bias], node.name, transB=1)  # weight [N, in], as nn.Linear


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
                rank, channels = 1 + len(out.dims), out.layout.channel_axis(ctx.analysis.reads(node))
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
    axis = facts.output.layout.channel_axis(ctx.analysis.order_of(node.name))
    return ctx.emit("Concat", ctx.inputs(node), node.name, axis=axis)


# --- sequences (held [batch, L, C]) -------------------------------------------------------------
def _embedding(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (ids,) = ctx.inputs(node)  # int64 [batch, T]
    return ctx.emit("Gather", [f"{node.name}.weight", ids], node.name, axis=0)


def _posembed(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (x,) = ctx.inputs(node)
    length = facts.inputs[0].dims[0]
    table = f"{node.name}.weight"
    if node.attrs["T"] not in (None, length):  # the first L rows of T
        table = ctx.emit(
            "Slice",
            [table, ctx.ints("int64/zero", [0]), ctx.ints(f"{node.name}/rows", [length]), ctx.ints("int64/zero", [0])],
            f"{node.name}/rows",
        )
    return ctx.emit("Add", [x, table], node.name)


def _batch_of(ctx: Lowering, x: str) -> str:
    """The batch size of `x`, as a 1-element int64 tensor (for Expand)."""
    shape = ctx.emit("Shape", [x], f"{x}/Shape")
    one = ctx.ints("int64/one", [1])
    return ctx.emit("Slice", [shape, ctx.ints("int64/zero", [0]), one], f"{x}/batch")


def _clstoken(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (x,) = ctx.inputs(node)
    size = ctx.emit("Concat", [_batch_of(ctx, x), ctx.ints("int64/one_one", [1, 1])], f"{node.name}/size", axis=0)
    token = ctx.emit("Expand", [f"{node.name}.weight", size], f"{node.name}/expand")  # [batch, 1, C]
    return ctx.emit("Concat", [token, x], node.name, axis=1)


def _reduce_mean_last(ctx: Lowering, x: str, name: str) -> str:
    """The mean over the last axis, kept: ReduceMean's axes became an input in opset 18."""
    if ctx.opset >= 18:
        return ctx.emit("ReduceMean", [x, ctx.ints("int64/last", [-1])], name, keepdims=1)
    return ctx.emit("ReduceMean", [x], name, axes=[-1], keepdims=1)


def _rmsnorm(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    """x / sqrt(mean(x^2) + eps) * scale, written out (RMSNormalization came in opset 23) in the
    form onnxruntime fuses into SimplifiedLayerNormalization."""
    (x,) = ctx.inputs(node)
    p = node.name
    square = ctx.emit("Pow", [x, ctx.constant("/const/two", 2.0)], f"{p}/square")
    mean = _reduce_mean_last(ctx, square, f"{p}/mean")
    shifted = ctx.emit("Add", [mean, ctx.constant(f"/const/{p}/eps", float(node.attrs["eps"]))], f"{p}/eps")
    root = ctx.emit("Sqrt", [shifted], f"{p}/sqrt")
    normed = ctx.emit("Div", [x, root], f"{p}/normalized")
    return ctx.emit("Mul", [normed, f"{p}.weight"], p)


def _rotary_tables(length: int, width: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of the angles p * base**(-2i/width), [L, width], as the PyTorch helper computes them."""
    exponents = np.arange(0, width, 2, dtype=np.float64) / width
    inv_freq = (base**-exponents).astype(np.float32)
    angles = np.outer(np.arange(length, dtype=np.float32), inv_freq).astype(np.float32)
    angles = np.concatenate([angles, angles], axis=1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _rotate(ctx: Lowering, x: str, name: str, tables: tuple[str, str], width: int) -> str:
    """x * cos + rotate_half(x) * sin on [batch, heads, L, width]; rotate_half(x) = [-x2, x1]."""
    cos, sin = tables
    half = ctx.ints(f"halves{width}", [width // 2, width // 2])
    first = f"{name}/x1"
    second = f"{name}/x2"
    ctx.nodes.append(helper.make_node("Split", [x, half], [first, second], name=f"{name}/split", axis=-1))
    negated = ctx.emit("Neg", [second], f"{name}/neg")
    rotated = ctx.emit("Concat", [negated, first], f"{name}/rotate_half", axis=-1)
    turned = ctx.emit("Mul", [rotated, sin], f"{name}/sin")
    kept = ctx.emit("Mul", [x, cos], f"{name}/cos")
    return ctx.emit("Add", [kept, turned], name)


def _attention(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    """Multi-head self-attention in standard operators.

    A MatMul for each of q, k and v (nn.Linear's weights, transposed: onnxruntime folds that
    into a constant when the session starts), heads split by Reshape and Transpose, scores
    scaled after their MatMul (onnxruntime fuses the scale into it), a constant additive causal
    mask, Softmax over the last axis, the weighted sum, heads joined and the output projection.

    Against the other forms, on onnxruntime 1.32's CPU provider (`bench/bench_sequence.py --forms`:
    GPT-2's block, batch 8, one thread): k transposed as q is (optimised into this same graph),
    one q,k,v MatMul + Split and Reshape + Gemm projections came within the run-to-run noise
    (+-4%); the opset-23 `Attention` op, same outputs, 1-8% faster on the block, 1-2% of GPT-2,
    whose GEMMs are 95% of its time: not worth a newer default opset. onnxruntime's CPU
    AttentionFusion matches BERT's graph with a mask input, or GPT-2's Gemm export, only: it
    fuses neither this graph nor torch.onnx.export's.
    """
    (x,) = ctx.inputs(node)
    a, p = node.attrs, node.name
    length, c = facts.inputs[0].dims
    heads, kv = a["heads"], kv_heads(a)
    width = c // heads
    outs = []
    for n in ("q", "k", "v"):  # three MatMuls, as three nn.Linear: no copy to split one result apart
        y = ctx.emit("MatMul", [x, ctx.weight_t(f"{p}.{n}.weight")], f"{p}/{n}_matmul")
        outs.append(ctx.emit("Add", [y, f"{p}.{n}.bias"], f"{p}/{n}") if a["bias"] else y)
    q, k, v = (
        # named by every value it holds: two attentions of one width at two lengths (a class token between)
        ctx.emit("Reshape", [t, ctx.ints(f"heads{length}x{n}x{width}", [0, length, n, width])], f"{t}/heads")
        for t, n in zip(outs, (heads, kv, kv), strict=True)
    )
    q = ctx.emit("Transpose", [q], f"{p}/q_t", perm=[0, 2, 1, 3])  # [batch, heads, L, width]
    v = ctx.emit("Transpose", [v], f"{p}/v_t", perm=[0, 2, 1, 3])
    if a["rope"]:
        rope = f"/const/rope{length}x{width}b{a['rope_base']:g}"
        if f"{rope}/cos" not in ctx.constants:  # made once, shared by every layer
            cos, sin = _rotary_tables(length, width, float(a["rope_base"]))
            ctx.constant(f"{rope}/cos", cos)
            ctx.constant(f"{rope}/sin", sin)
        tables = (f"{rope}/cos", f"{rope}/sin")
        q = _rotate(ctx, q, f"{p}/q_rope", tables, width)
        k = ctx.emit("Transpose", [k], f"{p}/k_t", perm=[0, 2, 1, 3])
        k = _rotate(ctx, k, f"{p}/k_rope", tables, width)
        k = ctx.emit("Transpose", [k], f"{p}/k_tt", perm=[0, 1, 3, 2])  # [batch, kv, width, L]
    else:
        k = ctx.emit("Transpose", [k], f"{p}/k_t", perm=[0, 2, 3, 1])  # [batch, kv, width, L]
    if kv != heads:  # each key/value head serves heads/kv query heads, as repeat_interleave gives them
        group = heads // kv
        k, v = (
            _repeat_heads(ctx, t, f"{p}/{n}_groups", kv, group, dims)
            for t, n, dims in ((k, "k", [width, length]), (v, "v", [length, width]))
        )
    scores = ctx.emit("MatMul", [q, k], f"{p}/scores")
    scores = ctx.emit("Mul", [scores, ctx.constant(f"/const/scale{width}", 1.0 / float(np.sqrt(width)))], f"{p}/scaled")
    if a["causal"]:
        mask = f"/const/causal{length}"
        if mask not in ctx.constants:  # made once (4 MB at L=1024), shared by every layer
            ctx.constant(mask, np.triu(np.full((length, length), -np.inf, np.float32), k=1))
        scores = ctx.emit("Add", [scores, mask], f"{p}/masked")
    probs = ctx.emit("Softmax", [scores], f"{p}/softmax", axis=-1)
    y = ctx.emit("MatMul", [probs, v], f"{p}/weighted")  # [batch, heads, L, width]
    y = ctx.emit("Transpose", [y], f"{p}/joined", perm=[0, 2, 1, 3])
    y = ctx.emit("Reshape", [y, ctx.ints(f"seq{length}x{c}", [0, length, c])], f"{p}/heads_joined")
    if not a["bias"]:
        return ctx.emit("MatMul", [y, ctx.weight_t(f"{p}.o.weight")], p)
    y = ctx.emit("MatMul", [y, ctx.weight_t(f"{p}.o.weight")], f"{p}/o")
    return ctx.emit("Add", [y, f"{p}.o.bias"], p)


def _repeat_heads(ctx: Lowering, x: str, name: str, kv: int, group: int, dims: list[int]) -> str:
    """[batch, kv, a, b] -> [batch, kv*group, a, b], each head repeated `group` times in a row."""
    x = ctx.emit("Unsqueeze", [x, ctx.ints("int64/axis2", [2])], f"{name}/unsqueeze")  # [batch, kv, 1, a, b]
    shape = ctx.ints(f"{name}/expand", [1, 1, group, 1, 1])
    x = ctx.emit("Expand", [x, shape], f"{name}/expand")
    return ctx.emit("Reshape", [x, ctx.ints(f"{name}/shape", [0, kv * group, *dims])], name)


def _tokens(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (x,) = ctx.inputs(node)  # [batch, C, H, W] -> [batch, C, H*W] -> [batch, H*W, C]
    flat = ctx.emit("Reshape", [x, ctx.ints(f"{node.name}/shape", [0, facts.inputs[0].channels, -1])], f"{node.name}/flat")
    return ctx.emit("Transpose", [flat], node.name, perm=[0, 2, 1])


def _select(ctx: Lowering, node: Node, facts: LayerFacts) -> str:
    (x,) = ctx.inputs(node)
    index = select_index(node.attrs, facts.inputs[0].dims[0])
    position = ctx.constant(f"/const/{node.name}/index", np.array(index, np.int64))  # a scalar: the axis goes
    return ctx.emit("Gather", [x, position], node.name, axis=1)


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
    "embedding": _embedding,
    "posembed": _posembed,
    "clstoken": _clstoken,
    "rmsnorm": _rmsnorm,
    "attention": _attention,
    "tokens": _tokens,
    "select": _select,
    **{name: _elementwise for name, kind in KINDS.items() if kind.elementwise is not None},
}


def _io(name: str, shape: tuple[int, ...], ids: bool = False) -> onnx.ValueInfoProto:
    """A graph input or output: float32, or int64 for token ids, with the dynamic batch first."""
    return helper.make_tensor_value_info(name, TensorProto.INT64 if ids else TensorProto.FLOAT, [BATCH, *shape])


@dataclass(frozen=True)
class Skeleton:
    """A lowered network without its weights: the model (no initializers) and its constants."""

    model: onnx.ModelProto
    constants: list[TensorProto]
    values: dict[str, str]  # layer name -> the ONNX value holding its output
    orders: dict[str, str]  # layer name -> the axis order that value is held in (`NCHW`, `NHWC`)


def lower(analysis: Analysis, opset: int | None = None, outputs: Iterable[str] = ()) -> Skeleton:
    """Lower the IR to ONNX nodes; raises `TargetError` (diagnostics) for what the opset cannot express.

    `outputs` names layers whose values the graph also gives, after `output`,
    under their value names (`Skeleton.values`), as the layer holds them (`--check`
    compares the logits before a final softmax this way).
    """
    graph_ir = analysis.graph
    opset = checked_opset(opset)
    ctx = Lowering(analysis, opset, rewrites(opset))
    for node in graph_ir.nodes:
        ctx.node = node
        facts = analysis.facts[node.name]
        made = HANDLERS[node.kind](ctx, node, facts)
        ctx.values[node.name] = made if isinstance(made, Value) else Value(made, ctx.order_of(node.name))
    if ctx.diagnostics:
        raise TargetError(ctx.diagnostics)
    last = ctx.value(graph_ir.output, ctx.order_of(graph_ir.output))
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
        [_io(INPUT, analysis.physical(INPUT), ids=graph_ir.input_shape.layout is Layout.TOKENS)],
        [_io(OUTPUT, analysis.physical(graph_ir.output))],
        value_info=declared,
    )
    for name in outputs:
        if values.get(name, OUTPUT) not in (OUTPUT, INPUT):  # the input or the output itself is no extra value
            graph.output.append(helper.make_tensor_value_info(values[name], TensorProto.FLOAT, None))
    opsets = [helper.make_opsetid("", ctx.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="archc", producer_version=__version__)
    # The oldest IR version that carries this opset, so older runtimes load the file too.
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return Skeleton(model, list(ctx.constants.values()), values, orders)


def build_model(
    analysis: Analysis,
    weights: Any = "random",
    seed: int = 0,
    opset: int | None = None,
    outputs: Iterable[str] = (),
) -> onnx.ModelProto:
    """The whole model in memory, weights included (see `archc.backends.weights.make_weights`);
    `outputs`: layers whose values it gives too (see `lower`)."""
    skel = lower(analysis, opset, outputs)
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
