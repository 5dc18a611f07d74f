"""Dense kinds: fc (fully connected) and flatten.

On an image, both flatten first, channels outermost (C,H,W order), as a
PyTorch network flattens an NCHW tensor: `flattens` says when, and the
back-ends ask it too. On a sequence `LxC`, fc acts on every position
(`LxN`), as nn.Linear does on `batch x L x C`; `flatten` still flattens,
channels outermost. `fc N tie=NAME` shares the weight of an earlier
embedding or fc (weight tying): it owns none of it (`Tensor.alias`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from archc.ir import Layout, Physical, Shape
from archc.kinds.kind import (
    FLAT_OR_SPATIAL,
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
    """Whether fc lays this input out flat first (an image: C*H*W features; a sequence: no, per position)."""
    return shape.is_spatial and shape.layout is not Layout.SEQUENCE


def fc_inputs(shape: Shape) -> int:
    """The features an fc reads at once: C of a sequence (per position), else all of them."""
    return shape.channels if shape.layout is Layout.SEQUENCE else shape.numel


def _fc_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    if ins[0].layout is Layout.SEQUENCE:
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
    shape, n = layer.ins[0], layer.attrs["N"]
    per_position = shape.layout is Layout.SEQUENCE
    n_in = str(shape.channels) if per_position else "*".join(str(d) for d in shape.dims)
    bias = f" + {counts.biases:,} biases" if layer.attrs["bias"] else " (no bias)"
    lines = []
    if flattens(shape):
        order = shape.layout.flat_order()
        lines.append(Line(Topic.SHAPE, f"flatten {shape.text()} -> {shape.numel:,} inputs ({order} order)"))
    if per_position:
        lines.append(Line(Topic.SHAPE, f"on each of the {shape.dims[0]:,} positions: {shape.channels} -> {n}"))
    tie = layer.attrs.get("tie")
    if tie is not None:
        size = math.prod((n, fc_inputs(shape)))
        lines.append(Line(Topic.PARAMS, f"({n_in})*{n} = {size:,} weights tied to {tie} (counted there){bias}"))
    else:
        lines.append(Line(Topic.PARAMS, f"({n_in})*{n} = {counts.weights:,} weights{bias}"))
    macs = f"{shape.dims[0]}*{n_in}*{n} = " if per_position else ""
    lines.append(Line(Topic.MACS, f"{macs}{counts.macs:,} MACs"))
    return lines


def _flatten_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return Shape.flat(ins[0].numel)


KINDS = (
    LayerKind(
        "fc",
        "Fully connected layer with N outputs; flattens a spatial input first (C,H,W order).",
        _fc_infer,
        Traits(Family.DENSE, FLAT_OR_SPATIAL, mixes_positions=True, sequence=Physical.CHANNELS_LAST),
        example="fc 10 bias=false",
        keys=(
            Key("N", KeyType.POS_INT, doc="number of outputs"),
            Key("bias", KeyType.BOOL, True, doc="learn a bias per output"),
            Key("tie", KeyType.NAME, None, doc="share the weight of this earlier embedding or fc"),
        ),
        positional="N",
        tensors=_fc_tensors,
        macs=_fc_macs,
        explain=_fc_explain,
    ),
    LayerKind(
        "flatten",
        "Flattens HxWxC to H*W*C (C,H,W order).",
        _flatten_infer,
        # channels outermost: a sequence is flattened from batch x C x L
        Traits(Family.RESHAPE, FLAT_OR_SPATIAL, mixes_positions=True, sequence=Physical.CHANNELS_FIRST),
        example="flatten",
    ),
)
