"""Matchers for the convolutional operators `torch.onnx.export` writes (see `onnx_graph` for the protocol).

Each reads one op (two for silu and for fc written as MatMul+Add) and says it
as an archc layer line, with the tensors under the names archc's PyTorch
back-end gives them. What an op says that archc cannot (asymmetric padding,
average pooling that does not count padding, a Gemm with alpha) is `Refused`
with the reason, never approximated.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from archc.backends.onnx.generate import adaptive_matrix
from archc.importers.onnx_graph import GraphView, Match, Matcher, Refused, attr
from archc.importers.onnx_sequence import shape_of

EPS = 1e-5  # batchnorm's default epsilon (stored as float32 in ONNX)


def sizes(values: list[int] | tuple[int, ...]) -> str:
    """`3` when every dimension agrees, else `3x7`."""
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def layer_name(view: GraphView, node: onnx.NodeProto, weight: str = "") -> str:
    """The module path: the weight's own name less `.weight` where the exporter kept it
    (`layer1.0.conv1.weight`), else the node's scope."""
    source = view.source_name(weight) if weight else ""
    if source.endswith(".weight") and "::" not in source and "/" not in source:
        return source[: -len(".weight")]
    return view.module_path(node)


def _one(view: GraphView, node: onnx.NodeProto, statement: str, name: str = "", **weights: np.ndarray) -> Match:
    return Match(frozenset({view.key(node)}), node.input[0], node.output[0], statement, name, weights)


def _padding(node: onnx.NodeProto, rank: int, kernel: list[int], strides: list[int], dilations: list[int],
             in_shape: tuple[int, ...] | None) -> str:
    auto = attr(node, "auto_pad", "NOTSET")
    if auto == "VALID":
        return "0"
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if auto == "SAME_LOWER":
            raise Refused("auto_pad SAME_LOWER puts the odd padding first; archc's P=same puts it last")
        return "same"
    pads = list(attr(node, "pads", [0] * (2 * rank)))
    begin, end = pads[:rank], pads[rank:]
    if begin == end:
        return sizes(begin)
    if in_shape is not None and len(in_shape) == rank + 2:  # TensorFlow's "same" (odd pixel last) is P=same
        same_begin, same_end = [], []
        for n, f, s, d in zip(in_shape[2:], kernel, strides, dilations, strict=True):
            total = max((-(-n // s) - 1) * s + d * (f - 1) + 1 - n, 0)
            same_begin.append(total // 2)
            same_end.append(total - total // 2)
        if begin == same_begin and end == same_end:
            return "same"
    raise Refused(f"asymmetric padding {pads} (begin {begin}, end {end}), which archc's P cannot say")


def conv(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Conv -> `conv K F S P D G bias`."""
    if node.op_type != "Conv":
        return None
    w = view.weight(node.input[1])
    if w is None:
        raise Refused("its weight is computed, not a constant of the model")
    bias = view.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    rank = w.ndim - 2
    kernel = list(attr(node, "kernel_shape", w.shape[2:]))
    strides = list(attr(node, "strides", [1] * rank))
    dilations = list(attr(node, "dilations", [1] * rank))
    group = attr(node, "group", 1)
    pad = _padding(node, rank, kernel, strides, dilations, view.shape(node.input[0]))
    # S, P and G always: the block maker unifies blocks that differ in them and drops them where default
    parts = [f"conv K={w.shape[0]} F={sizes(kernel)} S={sizes(strides)} P={pad}"]
    parts += [f"D={sizes(dilations)}"] if set(dilations) != {1} else []
    parts += [f"G={group}"]
    parts += ["bias=false"] if bias is None else []
    weights = {"weight": w} | ({"bias": bias} if bias is not None else {})
    return _one(view, node, " ".join(parts), layer_name(view, node, node.input[1]), **weights)


def convtranspose(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """ConvTranspose -> `convtranspose K F S P O D G bias`."""
    if node.op_type != "ConvTranspose":
        return None
    w = view.weight(node.input[1])
    if w is None:
        raise Refused("its weight is computed, not a constant of the model")
    if attr(node, "output_shape") is not None or attr(node, "auto_pad", "NOTSET") != "NOTSET":
        raise Refused("output_shape or auto_pad, which archc's convtranspose does not take (write pads)")
    bias = view.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    rank, group = w.ndim - 2, attr(node, "group", 1)
    kernel = list(attr(node, "kernel_shape", w.shape[2:]))
    strides = list(attr(node, "strides", [1] * rank))
    dilations = list(attr(node, "dilations", [1] * rank))
    outpad = list(attr(node, "output_padding", [0] * rank))
    pads = list(attr(node, "pads", [0] * (2 * rank)))
    if pads[:rank] != pads[rank:]:
        raise Refused(f"asymmetric padding {pads}, which archc's P cannot say")
    parts = [f"convtranspose K={w.shape[1] * group} F={sizes(kernel)}"]
    parts += [f"S={sizes(strides)}"] if set(strides) != {1} else []
    parts += [f"P={sizes(pads[:rank])}"] if set(pads) != {0} else []
    parts += [f"O={sizes(outpad)}"] if set(outpad) != {0} else []
    parts += [f"D={sizes(dilations)}"] if set(dilations) != {1} else []
    parts += [f"G={group}"] if group != 1 else []
    parts += ["bias=false"] if bias is None else []
    weights = {"weight": w} | ({"bias": bias} if bias is not None else {})
    return _one(view, node, " ".join(parts), layer_name(view, node, node.input[1]), **weights)


def batchnorm(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """BatchNormalization (inference) -> `batchnorm eps`."""
    if node.op_type != "BatchNormalization":
        return None
    if attr(node, "training_mode", 0) or any(o for o in node.output[1:]):
        raise Refused("training mode (running statistics updated), which an inference spec cannot say")
    arrays = [view.weight(v) for v in node.input[1:5]]
    if any(a is None for a in arrays):
        raise Refused("its scale, bias, mean or variance is computed, not a constant of the model")
    eps = float(attr(node, "epsilon", EPS))
    text = "batchnorm" if math.isclose(eps, EPS, rel_tol=1e-6) else f"batchnorm eps={eps:.6g}"
    names = ("weight", "bias", "running_mean", "running_var")
    weights = {n: a for n, a in zip(names, arrays, strict=True) if a is not None}
    return _one(view, node, text, layer_name(view, node, node.input[1]), **weights)


_SIMPLE = {"Relu": "relu", "Tanh": "tanh", "HardSwish": "hardswish"}


def activation(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Relu, Tanh, HardSwish, Clip(0, 6), HardSigmoid(1/6, 1/2), LeakyRelu, Gelu, Sigmoid
    (Sigmoid+Mul: silu; HardSigmoid+Mul: hardswish)."""
    op, name = node.op_type, view.module_path(node)
    if op in _SIMPLE:
        return _one(view, node, _SIMPLE[op], name)
    if op == "Clip":
        low, high = _clip_bounds(view, node)
        if low == 0 and high == 6:
            return _one(view, node, "relu6", name)
        if low == 0 and high is None:
            return _one(view, node, "relu", name)
        raise Refused(f"Clip to [{low}, {high}]; archc writes relu (0, inf) and relu6 (0, 6)")
    if op == "HardSigmoid":
        alpha, beta = attr(node, "alpha", 0.2), attr(node, "beta", 0.5)
        if math.isclose(alpha, 1 / 6, rel_tol=1e-5) and math.isclose(beta, 0.5, rel_tol=1e-6):
            return _gated(view, node, "hardswish") or _one(view, node, "hardsigmoid", name)
        raise Refused(f"HardSigmoid alpha={alpha:.6g} beta={beta:.6g}; archc's is PyTorch's (1/6, 1/2)")
    if op == "LeakyRelu":
        slope = float(attr(node, "alpha", 0.01))
        text = "leakyrelu" if math.isclose(slope, 0.01, rel_tol=1e-6) else f"leakyrelu slope={slope:.6g}"
        return _one(view, node, text, name)
    if op == "Gelu":
        approx = attr(node, "approximate", "none")
        return _one(view, node, "gelu" if approx == "none" else "gelu approx=tanh", name)
    if op == "Sigmoid":
        return _gated(view, node, "silu") or _one(view, node, "sigmoid", name)
    return None


def _gated(view: GraphView, node: onnx.NodeProto, kind: str) -> Match | None:
    """`x * gate(x)`: the gate's only reader a Mul by the gate's own input (silu: Sigmoid;
    hardswish: HardSigmoid(1/6, 1/2), as archc writes both), named by the Mul's scope."""
    x, gate = node.input[0], node.output[0]
    mul = view.only_consumer(gate)
    if mul is not None and mul.op_type == "Mul" and sorted(mul.input) == sorted([x, gate]):
        return Match(frozenset({view.key(node), view.key(mul)}), x, mul.output[0], kind, view.module_path(mul))
    return None


def _clip_bounds(view: GraphView, node: onnx.NodeProto) -> tuple[float | None, float | None]:
    def bound(i: int, key: str) -> float | None:
        if len(node.input) > i and node.input[i]:
            value = view.static_value(node.input[i])
            if value is None:
                raise Refused("its bounds are computed from the input")
            return float(value)
        found = attr(node, key)
        return None if found is None else float(found)

    low, high = bound(1, "min"), bound(2, "max")
    return low, (None if high is not None and math.isinf(high) else high)


def softmax(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Softmax over the channels (axis 1 of an image, the last of a flat vector or sequence)."""
    if node.op_type != "Softmax":
        return None
    shape = view.shape(node.input[0])
    rank = len(shape) if shape else 0
    axis = attr(node, "axis", -1 if view.opset >= 13 else 1)
    axis = axis + rank if axis < 0 else axis
    # a sequence's channels: its last axis held channels last, axis 1 held first (onnx_layout checks which)
    if (rank >= 3 and axis == 1) or (rank in (2, 3) and axis == rank - 1):
        return _one(view, node, "softmax", view.module_path(node))
    raise Refused(f"softmax over axis {axis} of a rank-{rank} value; archc's is over the channels")


def pool(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """MaxPool, AveragePool -> `maxpool`/`avgpool F S P ceil`; GlobalAveragePool; ReduceMean over H, W."""
    op = node.op_type
    if op == "GlobalAveragePool":
        return _one(view, node, "globalavgpool", view.module_path(node))
    if op == "ReduceMean":
        return _reduce_mean(view, node)
    if op not in ("MaxPool", "AveragePool"):
        return None
    if op == "MaxPool" and len(node.output) > 1 and node.output[1] and view.consumers(node.output[1]):
        raise Refused("its indices are used (max unpooling), which archc cannot say")
    kernel = list(attr(node, "kernel_shape"))
    rank = len(kernel)
    strides = list(attr(node, "strides", [1] * rank))
    if set(attr(node, "dilations", [1] * rank)) != {1}:
        raise Refused("dilated pooling, which archc's pools do not take")
    pad = _padding(node, rank, kernel, strides, [1] * rank, view.shape(node.input[0]))
    if op == "AveragePool" and pad != "0" and not attr(node, "count_include_pad", 0):
        raise Refused("average pooling that leaves padding out of the count (count_include_pad=0); "
                      "archc's avgpool counts it, as PyTorch's default")
    kind = "maxpool" if op == "MaxPool" else "avgpool"
    parts = [f"{kind} F={sizes(kernel)}"]
    parts += [f"S={sizes(strides)}"] if strides != kernel else []
    parts += [f"P={pad}"] if pad != "0" else []
    parts += ["ceil=true"] if attr(node, "ceil_mode", 0) else []
    return _one(view, node, " ".join(parts), view.module_path(node))


def _reduce_mean(view: GraphView, node: onnx.NodeProto) -> Match | None:
    shape = view.shape(node.input[0])
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = view.static_value(node.input[1])
        axes = None if value is None else [int(a) for a in np.ravel(value)]
    if shape is None or axes is None or len(shape) < 3:
        return None
    rank = len(shape)
    if sorted(a + rank if a < 0 else a for a in axes) != list(range(2, rank)):
        return None  # a mean over the channels (layer norm written out): not a pooling
    text = "globalavgpool" if attr(node, "keepdims", 1) else "globalavgpool; flatten"
    return _one(view, node, text, view.module_path(node))


def layerscale(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Mul by a constant per-channel vector (`[C, 1, 1]` on an image, `[C]` when flat or on a
    sequence) -> `layerscale`, its tensor under the layer's own name (ConvNeXt's `layer_scale`)."""
    if node.op_type != "Mul" or len(node.input) != 2:
        return None
    constant = [i for i in node.input if view.is_initializer(i)]
    computed = [i for i in node.input if not view.is_static(i)]
    if len(constant) != 1 or len(computed) != 1:
        return None
    shape, w = view.shape(computed[0]), view.weight(constant[0])
    if shape is None or w is None or len(shape) < 2:
        return None
    tokens = len(shape) == 3 and view.shape(node.output[0]) == shape and w.shape == (shape[-1],)
    flat = len(shape) == 2 and w.shape == (shape[1],)
    image = w.shape == (shape[1], *[1] * (len(shape) - 2))
    if not (tokens or flat or image):
        return None
    source = view.source_name(constant[0])
    name = source if "::" not in source and "/" not in source else view.module_path(node)
    return Match(frozenset({view.key(node)}), computed[0], node.output[0], "layerscale", name, {"": w})


def crop(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Slices of the spatial axes (one per axis, as `x[:, :, 2:14, 2:14]` exports), centred as a
    whole (an odd excess cut at the end) -> `crop`. Starts and ends may be computed from shapes
    (a U-Net's `d = (e.shape[2] - m.shape[2]) // 2; e[:, :, d:d+h, d:d+w]`), which stops ONNX's
    shape inference: shapes are then `shape_of`'s, inferred again with them folded."""
    shape = shape_of(view, node.input[0])
    if not _spatial_slice(view, node) or shape is None or view.is_static(node.input[0]):
        return None
    chain, begins = [node], [0] * (len(shape) - 2)
    while True:
        last = chain[-1]
        for axis in range(2, len(shape)):
            start = _slice_start(view, last, axis)
            if start is None:
                return None
            begins[axis - 2] += start
        after = view.only_consumer(last.output[0])
        if after is None or not _spatial_slice(view, after):
            break
        chain.append(after)
    out = shape_of(view, chain[-1].output[0])
    assert out is not None  # checked by _spatial_slice
    spatial, kept = shape[2:], out[2:]
    if begins != [(n - k) // 2 for n, k in zip(spatial, kept, strict=True)]:
        raise Refused(f"a crop to {list(kept)} starting at {begins}, not centred as archc's crop "
                      "(it cuts (n-k)//2 at the start and the rest at the end)")
    statement = "" if list(kept) == list(spatial) else f"crop {sizes(list(kept))}"
    return Match(frozenset(view.key(n) for n in chain), node.input[0], chain[-1].output[0], statement,
                 view.module_path(node))


def _spatial_slice(view: GraphView, node: onnx.NodeProto) -> bool:
    """A Slice (opset 10 on) of steps 1 that keeps the batch and the channels of a map."""
    if node.op_type != "Slice" or len(node.input) < 3:
        return False
    shape, out = shape_of(view, node.input[0]), shape_of(view, node.output[0])
    if shape is None or out is None or len(shape) < 3 or len(out) != len(shape) or shape[:2] != out[:2]:
        return False
    steps = view.static_value(node.input[4]) if len(node.input) > 4 and node.input[4] else None
    if steps is not None and any(int(s) != 1 for s in np.ravel(steps)):
        raise Refused("a Slice with steps other than 1, which archc's crop cannot say")
    return True


def _slice_start(view: GraphView, node: onnx.NodeProto, axis: int) -> int | None:
    """Where the Slice starts on `axis` (0 where it does not cut it), or None when not a constant."""
    n = shape_of(view, node.input[0])
    starts = view.static_value(node.input[1])
    axes = view.static_value(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if starts is None or n is None:
        return None
    listed = [int(a) % len(n) for a in np.ravel(axes)] if axes is not None else list(range(np.size(starts)))
    if axis not in listed:
        return 0
    start = int(np.ravel(starts)[listed.index(axis)])
    return max(0, start + n[axis]) if start < 0 else min(start, n[axis])


def reshape(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Flatten, Reshape or Squeeze to `[batch, n]` -> `flatten`; Identity, Dropout pass their input on."""
    op = node.op_type
    if op in ("Identity", "Dropout"):
        if op == "Dropout" and len(node.output) > 1 and node.output[1] and view.consumers(node.output[1]):
            raise Refused("its mask is used, which an inference spec cannot say")
        return _one(view, node, "", view.module_path(node))
    if op not in ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Expand"):
        return None
    before, after = view.shape(node.input[0]), view.shape(node.output[0])
    if before is None or after is None:
        return None
    if _broadcast(view, node, before, after):
        return _one(view, node, "", view.module_path(node))
    if op in ("Unsqueeze", "Expand"):
        return None
    if op == "Flatten" and attr(node, "axis", 1) != 1:
        raise Refused(f"Flatten at axis {attr(node, 'axis')}; archc flattens everything but the batch")
    if len(after) == 2 and after[1] == math.prod(before[1:]) and len(before) >= 2:
        if op == "Squeeze" and len(before) > 2 and any(d != 1 for d in before[2:]):
            return None
        return _one(view, node, "flatten" if len(before) > 2 else "", view.module_path(node))
    return None


def _broadcast(view: GraphView, node: onnx.NodeProto, before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    """A value made ready for a broadcasting merge and read by nothing else: a flat `[b, C]` as
    `[b, C, 1, 1]` (SE from nn.Linear: `y.view(b, c, 1, 1)`), or a value expanded to the shape of
    what it is multiplied by or added to (`y.expand_as(x)`). archc's `multiply` and `add` broadcast
    a flat or `1x1xC` branch themselves, so neither is a layer."""
    if node.op_type == "Expand":
        # the batch and the channels kept: a per-channel value over every position (not CBAM's
        # [b, 1, H, W] over the channels, which archc's merges do not broadcast)
        ok = len(before) == len(after) > 2 and before[:2] == after[:2] and set(before[2:]) in ({1}, set(after[2:]))
    else:
        ok = len(before) == 2 and len(after) > 2 and after[:2] == before and set(after[2:]) == {1}
    if not ok or view.is_static(node.input[0]):
        return False
    readers = [c for c in view.consumers(node.output[0]) if not all(view.is_static(o) for o in c.output if o)]
    if not readers or node.output[0] in view.outputs:
        return False
    for c in readers:
        if c.op_type == "Expand":
            if view.shape(c.output[0]) is None or not _broadcast(view, c, after, view.shape(c.output[0]) or ()):
                return False
            continue
        others = [i for i in c.input if i != node.output[0]]
        if c.op_type not in ("Mul", "Add") or len(others) != 1 or view.is_static(others[0]):
            return False
        shape = view.shape(others[0])
        if shape is None or len(shape) != len(after) or view.shape(c.output[0]) != shape or shape[1] != after[1]:
            return False
    return True


def gemm(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Gemm, or MatMul (+ Add of a constant bias) on a constant weight -> `fc N bias`."""
    if node.op_type == "Gemm":
        if attr(node, "transA", 0) or not math.isclose(attr(node, "alpha", 1.0), 1.0) or not math.isclose(attr(node, "beta", 1.0), 1.0):
            raise Refused("a Gemm with transA, alpha or beta, which archc's fc does not say")
        w = view.weight(node.input[1])
        if w is None:
            raise Refused("its weight is computed, not a constant of the model")
        w = w if attr(node, "transB", 0) else w.T
        bias = view.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return _fc(view, node, frozenset({view.key(node)}), node.output[0], w, bias)
    if node.op_type != "MatMul":
        return None
    w = view.weight(node.input[1])
    if w is None or w.ndim != 2 or view.is_static(node.input[0]):
        return None  # a product of two computed values: attention's, not an fc
    nodes, out, bias = frozenset({view.key(node)}), node.output[0], None
    add = view.only_consumer(out)
    if add is not None and add.op_type == "Add":
        other = add.input[1] if add.input[0] == out else add.input[0]
        b = view.weight(other) if view.is_static(other) else None
        if b is not None and b.size == w.shape[1]:
            nodes, out, bias = nodes | {view.key(add)}, add.output[0], b.reshape(-1)
    return _fc(view, node, nodes, out, w.T, bias)


def _fc(view: GraphView, node: onnx.NodeProto, nodes: frozenset[str], out: str, w: np.ndarray,
        bias: np.ndarray | None) -> Match:
    shape = view.shape(node.input[0])
    if shape is not None and len(shape) > 3:
        raise Refused(f"a product on a rank-{len(shape)} value; archc's fc flattens first (add a Flatten)")
    w = np.ascontiguousarray(w)
    if bias is not None:
        bias = bias.reshape(-1)
    text = f"fc {w.shape[0]}" + (" bias=false" if bias is None else "")
    weights = {"weight": w} | ({"bias": bias} if bias is not None else {})
    return Match(nodes, node.input[0], out, text, layer_name(view, node, node.input[1]), weights)


def _number(x: float) -> str:
    """A float attribute as a spec writes it (float32 noise dropped: `1e-4`, not `9.99999974738e-05`)."""
    return f"{float(np.float32(x)):.6g}"


def _keys(values: dict[str, float], defaults: dict[str, float]) -> str:
    """` key=value` for each value that is not its kind's default."""
    return "".join(f" {k}={_number(v)}" for k, v in values.items() if not math.isclose(v, defaults[k], rel_tol=1e-6))


_LRN_DEFAULTS = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}  # archc's lrn (PyTorch's, but k=2)


def lrn(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """LRN of an odd size -> `lrn`; PyTorch's LocalResponseNorm written out (any size, any rank:
    archc's own for even sizes and 1-D/3-D maps, torch's export) from its Mul(x, x)."""
    if node.op_type == "LRN":
        size = int(attr(node, "size"))
        if size % 2 == 0:
            raise Refused(f"an LRN of even size {size}: ONNX's sums one channel more after each channel than "
                          "before, PyTorch's (and archc's lrn) one more before")
        values = {"size": size, "alpha": attr(node, "alpha", 1e-4), "beta": attr(node, "beta", 0.75),
                  "k": attr(node, "bias", 1.0)}
        return _one(view, node, "lrn" + _keys(values, _LRN_DEFAULTS), view.module_path(node))
    if node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]:
        return _lrn_written_out(view, node)
    return None


def _lrn_written_out(view: GraphView, square: onnx.NodeProto) -> Match | None:
    """x / (k + alpha * mean(x^2 over a window of channels))^beta, the mean an AveragePool of
    [size, 1...] over the channels (held as the first pooled axis) padded by size//2 zeros before
    and (size-1)//2 after, as `torch.nn.functional.local_response_norm` computes it."""
    x = square.input[0]
    shape = view.shape(x)
    if shape is None or len(shape) < 3 or view.is_static(x):
        return None
    chain, value = [square], square.output[0]
    moves: dict[str, onnx.NodeProto] = {}  # the first of each op that moves or pools the squares
    scalars: dict[str, float] = {}  # Mul: alpha, Add: k, Pow: beta
    while True:  # along the one reader of each value, to the Div of x by it
        after = view.only_consumer(value)
        if after is None or len(chain) > 12:
            return None
        chain.append(after)
        if after.op_type == "Div":
            if list(after.input) != [x, value] or view.shape(value) != shape:
                return None
            break
        statics = [i for i in after.input if i != value]
        if after.op_type in ("Reshape", "Unsqueeze", "Squeeze", "Pad", "AveragePool"):
            if any(not view.is_static(i) for i in statics):
                return None
            moves.setdefault(after.op_type, after)
        elif after.op_type in ("Mul", "Add", "Pow") and len(statics) == 1 and after.op_type not in scalars:
            constant = view.static_value(statics[0])
            if constant is None or constant.size != 1:
                return None
            scalars[after.op_type] = float(np.ravel(constant)[0])
        else:
            return None
        value = after.output[0]
    pool, pad = moves.get("AveragePool"), moves.get("Pad")
    if pool is None or pad is None or {"Mul", "Add", "Pow"} - set(scalars):
        return None
    c, pooled = shape[1], view.shape(pool.input[0])
    kernel = list(attr(pool, "kernel_shape", []))
    size = kernel[0] if kernel else 0
    pads = view.static_value(pad.input[1]) if len(pad.input) > 1 else attr(pad, "pads")
    fill = view.static_value(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else None
    # the channels are the pool's first window axis, every other axis of the window 1, stride 1
    if (pooled is None or len(pooled) != len(kernel) + 2 or pooled[2] != c + size - 1 or set(kernel[1:]) - {1}
            or set(attr(pool, "strides", [1])) != {1} or set(attr(pool, "pads", [0])) != {0}
            or pads is None or attr(pad, "mode", "constant") != "constant" or (fill is not None and np.any(fill))):
        return None
    rank, before_after = len(pooled), [int(p) for p in np.ravel(pads)]
    others = [p for i, p in enumerate(before_after) if i % rank != 2]
    if len(before_after) != 2 * rank or before_after[2] != size // 2 or before_after[rank + 2] != (size - 1) // 2 or any(others):
        return None
    if math.prod(pooled[1:]) != math.prod(shape[1:]) + (size - 1) * math.prod(shape[2:]) or pooled[1] != 1:
        return None  # [b, 1, C + pads, positions]: the channels kept in order, one axis of them
    values = {"size": size, "alpha": scalars["Mul"], "beta": scalars["Pow"], "k": scalars["Add"]}
    return Match(frozenset(view.key(n) for n in chain), x, chain[-1].output[0],
                 "lrn" + _keys(values, _LRN_DEFAULTS), view.module_path(chain[-1]))


# ONNX's Resize modes that pick input floor(o/f) at an integer factor f (PyTorch's `nearest`):
# asymmetric o/f floored, and the half-pixel ones (o+0.5)/f-0.5 rounded, whose fraction is never 1/2
_NEAREST = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil"),
            ("pytorch_half_pixel", "round_prefer_floor"), ("pytorch_half_pixel", "round_prefer_ceil"),
            ("tf_half_pixel_for_nn", "floor")}


def upsample(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Resize (Upsample before opset 10) by integer factors of the spatial axes -> `upsample F`:
    nearest as PyTorch's, or `mode=linear` (half-pixel: corners not aligned)."""
    if node.op_type not in ("Resize", "Upsample"):
        return None
    shape = view.shape(node.input[0])
    out = _resized(view, node, shape)
    if shape is None or out is None or len(shape) < 3:
        raise Refused("its input or output shape is not known here")
    factors = [o / n for n, o in zip(shape, out, strict=True)]
    if factors[:2] != [1, 1] or any(f < 1 or f != int(f) for f in factors[2:]):
        raise Refused(f"a resize from {list(shape[1:])} to {list(out[1:])}; archc's upsample multiplies each "
                      "spatial dimension by a whole factor and keeps the channels")
    mode = attr(node, "mode", "nearest")
    where = attr(node, "coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" and view.opset >= 11 else "asymmetric")
    if mode == "nearest" and (where, attr(node, "nearest_mode", "round_prefer_floor" if view.opset >= 11 else "floor")) in _NEAREST:
        text = f"upsample {sizes([int(f) for f in factors[2:]])}"
    elif mode == "linear" and where in ("half_pixel", "pytorch_half_pixel"):
        text = f"upsample {sizes([int(f) for f in factors[2:]])} mode=linear"
    else:
        raise Refused(f"a {mode} resize with coordinate_transformation_mode {where}; archc's upsample is nearest "
                      "(input floor(o/f)) or linear with half-pixel centres (align_corners=False)")
    return _one(view, node, text, view.module_path(node))


def _resized(view: GraphView, node: onnx.NodeProto, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """A Resize's output shape: inferred, else from its static scales or sizes."""
    out = view.shape(node.output[0])
    if out is not None or shape is None:
        return out
    at = 1 if node.op_type == "Upsample" or view.opset < 11 else 2
    scales = view.static_value(node.input[at]) if len(node.input) > at and node.input[at] else attr(node, "scales")
    found = view.static_value(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    axes = list(attr(node, "axes", range(len(shape))))
    if found is not None and np.size(found) == len(axes):
        full = list(shape)
        for a, v in zip(axes, np.ravel(found), strict=True):
            full[a] = int(v)
        return tuple(full)
    if scales is not None and np.size(scales) == len(axes):
        full = list(shape)
        for a, v in zip(axes, np.ravel(scales), strict=True):
            full[a] = math.floor(shape[a] * float(v))
        return tuple(full)
    return None


def _averages(view: GraphView, value: str, size: int, transposed: bool) -> int | None:
    """The output size when `value` is a constant averaging matrix of PyTorch's adaptive windows
    over `size` positions (`[out, size]`, or `[size, out]` when transposed), else None."""
    m = view.weight(value) if view.is_static(value) else None
    if m is None or m.ndim != 2:
        return None
    m = m.T if transposed else m
    out = m.shape[0]
    if m.shape[1] != size or out == 0:
        return None
    first = np.zeros(size, np.float32)  # the first window alone, before building the whole matrix:
    first[: -(-size // out)] = 1.0 / -(-size // out)  # every fc's weight is tried here (GPT-2's lm_head)
    if not np.allclose(m[0], first, atol=1e-7) or not np.allclose(m, adaptive_matrix(size, out), atol=1e-7):
        return None
    return int(m.shape[0])


def adaptive(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """Adaptive average pooling of uneven windows as archc writes it (ONNX has none): the map
    times averaging matrices, `x @ Cols^T` then `Rows @ x` (`Frames @` first on a volume, between
    Reshapes) -> `adaptiveavgpool`. Tried before `gemm`, which would read `x @ Cols^T` as an fc."""
    shape = view.shape(node.input[0]) if node.input else None
    if node.op_type not in ("MatMul", "Reshape") or shape is None or len(shape) not in (3, 4, 5) or view.is_static(node.input[0]):
        return None
    chain, outs = [node], list(shape[2:])
    if len(shape) == 5:  # [b, C, D, H*W], Frames @ it, back to [b, C, od, H, W]
        frames = view.only_consumer(node.output[0])
        back = None if frames is None else view.only_consumer(frames.output[0])
        if (node.op_type != "Reshape" or view.shape(node.output[0]) != (*shape[:3], shape[3] * shape[4])
                or frames is None or frames.op_type != "MatMul" or frames.input[1] != node.output[0]
                or back is None or back.op_type != "Reshape"):
            return None
        od = _averages(view, frames.input[0], shape[2], False)
        if od is None or view.shape(back.output[0]) != (*shape[:2], od, *shape[3:]):
            return None
        chain, outs[0] = [node, frames, back], od
        cols = view.only_consumer(back.output[0])
        if cols is None:
            return None
        chain.append(cols)
    elif node.op_type != "MatMul":
        return None
    cols = chain[-1]
    if cols.op_type != "MatMul" or cols.input[0] != (chain[-2].output[0] if len(chain) > 1 else node.input[0]):
        return None
    ow = _averages(view, cols.input[1], shape[-1], True)
    if ow is None:
        return None
    outs[-1] = ow
    if len(shape) > 3:
        rows = view.only_consumer(cols.output[0])
        oh = None if rows is None or rows.op_type != "MatMul" or rows.input[1] != cols.output[0] else (
            _averages(view, rows.input[0], shape[-2], False))
        if rows is None or oh is None:
            return None
        chain.append(rows)
        outs[-2] = oh
    if outs == list(shape[2:]):
        return None  # archc writes no node for that
    return Match(frozenset(view.key(n) for n in chain), node.input[0], chain[-1].output[0],
                 f"adaptiveavgpool {sizes(outs)}", view.module_path(chain[-1]))


def _swap(view: GraphView, node: onnx.NodeProto) -> bool:
    """A Transpose (0, 2, 1) of a computed rank-3 value: positions and channels swapped."""
    shape = view.shape(node.input[0]) if node.input else None
    return (node.op_type == "Transpose" and shape is not None and len(shape) == 3
            and list(attr(node, "perm", [])) == [0, 2, 1] and not view.is_static(node.input[0]))


def layout(view: GraphView, node: onnx.NodeProto) -> Match | None:
    """A Transpose (0, 2, 1) of a sequence: archc's language holds `LxC` channels first around
    convolutions and channels last around sequence layers, and writes this Transpose between them
    (`conv1/to_NLC`; torch's Conv1d -> transpose(1, 2) -> Linear too). Left out here; once every
    node is matched, `onnx_layout.check_layouts` makes sure it was a layout and no computation."""
    return _one(view, node, "", view.module_path(node)) if _swap(view, node) else None


# `adaptive` before `gemm`: its first product is by a constant matrix, as an fc's
MATCHERS: tuple[Matcher, ...] = (
    conv, convtranspose, batchnorm, activation, softmax, pool, lrn, upsample, adaptive, layerscale, crop, reshape, gemm,
    layout)
