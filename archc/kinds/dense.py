"""Dense kinds: fc (fully connected) and flatten.

On an image or a volume, both flatten first, channels outermost (C,H,W
order), as a PyTorch network flattens an NCHW tensor: `flattens` says when,
and the back-ends ask it too. On a sequence (`LxC`) fc acts on every
position (`LxC` -> `LxN`), as `nn.Linear` does on a sequence's last axis;
flatten turns any layout into `N`. `fc N tie=NAME` shares the weight of an
earlier embedding or fc (weight tying): it owns none of it (`Tensor.alias`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from archc.ir import Layout, Physical, Shape
from archc.kinds.kind import (
    ANY_FEATURES,
    Applied,
    Attrs,
    Counts,
    Family,
    Init,
    Key,
    KeyType,
    LayerKind,
    Line,
    Role,
    Tensor,
    Topic,
    Traits,
    Window,
)


def flattens(shape: Shape) -> bool:
    """Whether fc lays this input out flat first (an image: C*H*W features); a sequence it applies per position."""
    return shape.is_spatial and not per_position_fc(shape)


def per_position_fc(shape: Shape) -> bool:
    """Whether fc acts on every position of this input (a sequence, `LxC` -> `LxN`)."""
    return shape.layout is Layout.SEQUENCE


def fc_inputs(shape: Shape) -> int:
    """The features one application of fc reads: C per position of a sequence, else all of them."""
    return shape.channels if per_position_fc(shape) else shape.numel


def _fc_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    if per_position_fc(ins[0]):
        return ins[0].resized(ins[0].spatial, attrs["N"])
    return Shape.flat(attrs["N"])


def _fc_tensors(layer: Applied) -> tuple[Tensor, ...]:
    n_in, n = fc_inputs(layer.ins[0]), layer.attrs["N"]
    tie = layer.attrs.get("tie")
    alias = None if tie is None else f"{tie}.weight"
    weight = Tensor("weight", (n, n_in), Role.WEIGHT, Init.KAIMING_UNIFORM, n_in, alias)  # nn.Linear's [out, in]
    if not layer.attrs["bias"]:
        return (weight,)
    return weight, Tensor("bias", (n,), Role.BIAS, Init.FAN_IN_UNIFORM, n_in)


def _fc_macs(layer: Applied, weights: int) -> int:
    """Every output position times in*N: a tied weight is multiplied as often as an owned one."""
    outputs: int = layer.attrs["N"]
    return math.prod(layer.out.spatial) * fc_inputs(layer.ins[0]) * outputs


def _fc_explain(layer: Applied, counts: Counts) -> list[Line]:
    shape = layer.ins[0]
    n = layer.attrs["N"]
    n_in = "*".join(str(d) for d in shape.dims)
    bias = f" + {counts.biases:,} biases" if layer.attrs["bias"] else " (no bias)"
    lines = []
    if flattens(shape):
        order = shape.layout.flat_order()
        lines.append(Line(Topic.SHAPE, f"flatten {shape.text()} -> {shape.numel:,} inputs ({order} order)"))
    tie = layer.attrs.get("tie")
    if per_position_fc(shape):
        (length,) = shape.spatial
        weights = f"{shape.channels * n:,} weights tied to {tie} (counted there)" if tie else f"{counts.weights:,} weights"
        lines.append(Line(Topic.SHAPE, f"at each of the {length:,} positions: {shape.channels} -> {n} features"))
        lines.append(Line(Topic.PARAMS, f"{shape.channels}*{n} = {weights}{bias}"))
        lines.append(Line(Topic.MACS, f"{length:,} positions * {shape.channels}*{n} = {counts.macs:,} MACs"))
        return lines
    weights = f"{shape.numel * n:,} weights tied to {tie} (counted there)" if tie else f"{counts.weights:,} weights"
    lines.append(Line(Topic.PARAMS, f"({n_in})*{n} = {weights}{bias}"))
    lines.append(Line(Topic.MACS, f"{counts.macs:,} MACs"))
    return lines


def _flatten_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return Shape.flat(ins[0].numel)


KINDS = (
    LayerKind(
        "fc",
        "Fully connected layer with N outputs; flattens an image or volume first (C,H,W order); "
        "on a sequence LxC it acts on every position (LxN).",
        _fc_infer,
        Traits(Family.DENSE, ANY_FEATURES, mixes_positions=True, sequence=Physical.CHANNELS_LAST),
        example="fc 10 bias=false",
        keys=(
            Key("N", KeyType.POS_INT, doc="the number of outputs"),
            Key("bias", KeyType.BOOL, True, doc="whether to learn a bias per output"),
            Key("tie", KeyType.NAME, None, doc="the earlier embedding or fc whose weight this layer shares"),
        ),
        positional="N",
        tensors=_fc_tensors,
        macs=_fc_macs,
        explain=_fc_explain,
    ),
    LayerKind(
        "flatten",
        "Flattens any layout to N, channels outermost: HxWxC to H*W*C (C,H,W order).",
        _flatten_infer,
        # channels outermost: a sequence is flattened from batch x C x L
        Traits(Family.RESHAPE, ANY_FEATURES, mixes_positions=True, sequence=Physical.CHANNELS_FIRST),
        example="flatten",
    ),
)
