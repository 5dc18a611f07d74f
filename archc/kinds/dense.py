"""Dense kinds: fc (fully connected) and flatten.

On an image, both flatten first, channels outermost (C,H,W order), as a
PyTorch network flattens an NCHW tensor: `flattens` says when, and the
back-ends ask it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from archc.ir import Shape
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
    per_position,
)


def flattens(shape: Shape) -> bool:
    """Whether fc and flatten lay this input out flat first (an image: C*H*W features)."""
    return shape.is_spatial


def _fc_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return Shape.flat(attrs["N"])


def _fc_tensors(layer: Applied) -> tuple[Tensor, ...]:
    n_in, n = layer.ins[0].numel, layer.attrs["N"]
    weight = Tensor("weight", (n, n_in), Role.WEIGHT, Init.KAIMING_UNIFORM, n_in)  # nn.Linear's [out, in]
    if not layer.attrs["bias"]:
        return (weight,)
    return weight, Tensor("bias", (n,), Role.BIAS, Init.FAN_IN_UNIFORM, n_in)


def _fc_explain(layer: Applied, counts: Counts) -> list[Line]:
    shape = layer.ins[0]
    n_in = "*".join(str(d) for d in shape.dims)
    bias = f" + {counts.biases:,} biases" if layer.attrs["bias"] else " (no bias)"
    lines = []
    if flattens(shape):
        order = shape.layout.flat_order()
        lines.append(Line(Topic.SHAPE, f"flatten {shape.text()} -> {shape.numel:,} inputs ({order} order)"))
    lines.append(Line(Topic.PARAMS, f"({n_in})*{layer.attrs['N']} = {counts.weights:,} weights{bias}"))
    lines.append(Line(Topic.MACS, f"{counts.macs:,} MACs"))
    return lines


def _flatten_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return Shape.flat(ins[0].numel)


KINDS = (
    LayerKind(
        "fc",
        "Fully connected layer with N outputs; flattens a spatial input first (C,H,W order).",
        _fc_infer,
        Traits(Family.DENSE, FLAT_OR_SPATIAL, mixes_positions=True),
        example="fc 10 bias=false",
        keys=(
            Key("N", KeyType.POS_INT, doc="number of outputs"),
            Key("bias", KeyType.BOOL, True, doc="learn a bias per output"),
        ),
        positional="N",
        tensors=_fc_tensors,
        macs=per_position,
        explain=_fc_explain,
    ),
    LayerKind(
        "flatten",
        "Flattens HxWxC to H*W*C (C,H,W order).",
        _flatten_infer,
        Traits(Family.RESHAPE, FLAT_OR_SPATIAL, mixes_positions=True),
        example="flatten",
    ),
)
