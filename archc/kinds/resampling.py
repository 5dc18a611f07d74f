"""Kinds that grow or cut the spatial dims, as a U-Net's decoder does: convtranspose, upsample, crop.

`convtranspose` has a window (`WindowKind.TRANSPOSED`): `resolve_transposed`
gives its geometry once, for the input's spatial rank, and the analysis
stores it in `LayerFacts.window` like a convolution's, its O in
`Window.output_padding`. `upsample` and `crop` take one size for every
spatial dim or one per dim, as window keys do.

Receptive fields (`LayerKind.receptive`): a transposed convolution of
stride S is read as the input spread S apart (zeros between), then a
stride-1 convolution with padding `D(F-1) - P`: the jump shrinks to
`jump/S`, the field grows by `D(F-1)` of those smaller steps. Upsampling by
f shrinks the jump to `jump/f`; `linear` also reads a second input (the
field grows by one input step) and centres output 0 at `(0.5/f - 0.5)` of
an input step from input 0, as half-pixel interpolation places it. A crop
moves the start by its offset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from archc.ir import Physical, Shape
from archc.kinds.kind import (
    SPATIAL,
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
    ShapeError,
    Tensor,
    Topic,
    Traits,
    Window,
    WindowKind,
    show_value,
)
from archc.kinds.windows import sizes


def _x(values: Sequence[int]) -> str:
    return "x".join(str(v) for v in values)


# --- convtranspose ---------------------------------------------------------------------------
def transposed_out(n: int, f: int, s: int, p: int, o: int, d: int) -> int:
    """Output length of a transposed convolution along one dim, as PyTorch computes it.

    >>> transposed_out(28, 2, 2, 0, 0, 1), transposed_out(7, 3, 2, 1, 1, 1)
    (56, 14)
    """
    return (n - 1) * s - 2 * p + d * (f - 1) + o + 1


def resolve_transposed(attrs: Attrs, shape: Shape, kind: LayerKind) -> Window:
    """The geometry of a transposed convolution on `shape`; raises ShapeError when PyTorch would refuse it."""
    name = kind.name
    keys = {k.name: k for k in kind.keys}
    n = shape.spatial
    f = sizes(name, keys["F"], attrs["F"], shape)
    s = sizes(name, keys["S"], attrs["S"], shape)
    p = sizes(name, keys["P"], attrs["P"], shape)
    o = sizes(name, keys["O"], attrs["O"], shape)
    d = sizes(name, keys["D"], attrs["D"], shape)
    if any(oi >= si and oi >= di for oi, si, di in zip(o, s, d, strict=True)):
        raise ShapeError(
            f"{name} output padding O={show_value(o)} must be smaller than the stride S={show_value(s)} "
            f"or the dilation D={show_value(d)}",
            key="O",
            hint="O adds at most S-1 rows at the end, to reach a size that S alone skips over",
        )
    out = tuple(transposed_out(*args) for args in zip(n, f, s, p, o, d, strict=True))
    if any(v < 1 for v in out):
        raise ShapeError(
            f"{name} output would be {_x(out)}: the padding P={show_value(p)} removes more than the "
            f"{_x(n)} input spreads to",
            key="P",
            hint="use less padding P, or a larger F or S",
        )
    return Window(f, s, d, p, p, False, out, o)


def _ct_check(attrs: Attrs, ins: Sequence[Shape]) -> None:
    c, g, k = ins[0].channels, attrs["G"], attrs["K"]
    if c % g or k % g:
        raise ShapeError(
            f"groups G={g} must divide both the input channels ({c}) and K ({k})",
            key="G",
            hint=f"divisors of both: {', '.join(str(x) for x in range(1, min(c, k) + 1) if c % x == 0 and k % x == 0)}",
        )


def _ct_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    assert window is not None  # resolved for every transposed window
    return ins[0].resized(window.out, attrs["K"])


def _ct_tensors(layer: Applied) -> tuple[Tensor, ...]:
    assert layer.window is not None
    a = layer.attrs
    c, per_group = layer.ins[0].channels, a["K"] // a["G"]
    # PyTorch's weight is [C, K/G, *F]; its init reads fan_in from dim 1: (K/G) * F
    fan_in = per_group * math.prod(layer.window.kernel)
    weight = Tensor("weight", (c, per_group, *layer.window.kernel), Role.WEIGHT, Init.KAIMING_UNIFORM, fan_in)
    if not a["bias"]:
        return (weight,)
    return weight, Tensor("bias", (a["K"],), Role.BIAS, Init.FAN_IN_UNIFORM, fan_in)


def _ct_macs(layer: Applied, weights: int) -> int:
    """Every input position is multiplied by its whole window: positions * F*C*(K/G)."""
    return math.prod(layer.ins[0].spatial) * weights


def _ct_explain(layer: Applied, counts: Counts) -> list[Line]:
    win, shape = layer.window, layer.ins[0]
    assert win is not None
    a = layer.attrs
    lines = []
    for axis, label in enumerate(shape.layout.spatial_axes):
        n, f, s, d = shape.spatial[axis], win.kernel[axis], win.stride[axis], win.dilation[axis]
        p, o = win.begin[axis], win.output_padding[axis]
        extent = f"({f}-1)" if d == 1 else f"{d}*({f}-1)"
        lines.append((label, f"({n} - 1)*{s} - 2*{p} + {extent} + {o} + 1 = {win.out[axis]}"))
    if all(body == lines[0][1] for _, body in lines):
        out = [Line(Topic.SHAPE, lines[0][1])]
    else:
        out = [Line(Topic.SHAPE, f"{label}: {body}") for label, body in lines]
    window = "*".join(str(f) for f in win.kernel)
    k = f"{a['K']}" if a["G"] == 1 else f"({a['K']}/{a['G']})"
    bias = f" + {counts.biases:,} biases" if a["bias"] else " (no bias)"
    out.append(Line(Topic.PARAMS, f"({window}*{shape.channels})*{k} = {counts.weights:,} weights{bias}"))
    positions = "*".join(str(n) for n in shape.spatial)
    out.append(Line(Topic.MACS, f"{positions} inputs * ({window}*{shape.channels})*{k} = {counts.macs:,} MACs"))
    return out


def _ct_receptive(layer: Applied, axis: int, rf: float, jump: float, start: float) -> tuple[float, float, float]:
    win = layer.window
    assert win is not None
    k = win.dilation[axis] * (win.kernel[axis] - 1) + 1
    step = jump / win.stride[axis]
    return rf + (k - 1) * step, step, start + (win.begin[axis] - (k - 1) / 2) * step


# --- upsample and crop -------------------------------------------------------------------------
_FACTOR = Key("factor", KeyType.SIZES, doc="the scale factor, n or one per dimension")
_CROP = Key("size", KeyType.SIZES, doc="the size to keep, n or one per dimension")


def _up_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    factor = sizes("upsample", _FACTOR, attrs["factor"], ins[0])
    return ins[0].resized(tuple(n * f for n, f in zip(ins[0].spatial, factor, strict=True)))


def _up_explain(layer: Applied, counts: Counts) -> list[Line]:
    shape = layer.ins[0]
    factor = sizes("upsample", _FACTOR, layer.attrs["factor"], shape)
    how = "nearest neighbour" if layer.attrs["mode"] == "nearest" else "linear interpolation, corners not aligned"
    sides = ", ".join(f"{n}*{f} = {n * f}" for n, f in zip(shape.spatial, factor, strict=True))
    return [Line(Topic.SHAPE, f"{sides} ({how})"), Line(Topic.PARAMS, "no parameters")]


def _up_receptive(layer: Applied, axis: int, rf: float, jump: float, start: float) -> tuple[float, float, float]:
    f = sizes("upsample", _FACTOR, layer.attrs["factor"], layer.ins[0])[axis]
    if layer.attrs["mode"] == "nearest":
        return rf, jump / f, start
    return rf + jump, jump / f, start + (0.5 / f - 0.5) * jump


def crop_offsets(attrs: Attrs, shape: Shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The rows (columns, frames) a centred crop cuts at the start and at the end of each dim;
    an odd excess cuts the extra one at the end.

    >>> from archc.ir import Shape
    >>> crop_offsets({"size": 56}, Shape.hwc(64, 63, 512))
    ((4, 3), (4, 4))
    """
    keep = sizes("crop", _CROP, attrs["size"], shape)
    begin = tuple((n - k) // 2 for n, k in zip(shape.spatial, keep, strict=True))
    end = tuple(n - k - b for n, k, b in zip(shape.spatial, keep, begin, strict=True))
    return begin, end


def _crop_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    keep = sizes("crop", _CROP, attrs["size"], ins[0])
    if any(k > n for k, n in zip(keep, ins[0].spatial, strict=True)):
        raise ShapeError(
            f"crop to {_x(keep)} needs an input at least that large, but it is {ins[0].text()}",
            key="size",
            hint="a crop only cuts; to grow a map use upsample or convtranspose",
        )
    return ins[0].resized(keep)


def _crop_explain(layer: Applied, counts: Counts) -> list[Line]:
    begin, end = crop_offsets(layer.attrs, layer.ins[0])
    axes = layer.ins[0].layout.spatial_axes
    cuts = ", ".join(f"{a}: {b} at the start, {e} at the end" for a, b, e in zip(axes, begin, end, strict=True))
    return [Line(Topic.SHAPE, f"centred: cuts {cuts}"), Line(Topic.PARAMS, "no parameters")]


def _crop_receptive(layer: Applied, axis: int, rf: float, jump: float, start: float) -> tuple[float, float, float]:
    begin, _ = crop_offsets(layer.attrs, layer.ins[0])
    return rf, jump, start + begin[axis] * jump


KINDS = (
    LayerKind(
        "convtranspose",
        "Transposed convolution (1-D, 2-D or 3-D by the input): K filters of FxF, stride S, padding P, "
        "output padding O, dilation D, groups G.",
        _ct_infer,
        Traits(Family.CONV, SPATIAL, WindowKind.TRANSPOSED, sequence=Physical.CHANNELS_FIRST),
        example="convtranspose K=8 F=3 S=2 P=1 O=1 D=1 G=2 bias=false",
        keys=(
            Key("K", KeyType.POS_INT, doc="the number of filters (output channels)"),
            Key("F", KeyType.SIZES, doc="the filter size, n or HxW"),
            Key("S", KeyType.SIZES, 1, doc="the stride"),
            Key("P", KeyType.OFFSETS, 0, doc="the padding removed from each side of the output"),
            Key("O", KeyType.OFFSETS, 0, doc="the output padding: rows added at the end"),
            Key("D", KeyType.SIZES, 1, doc="the dilation"),
            Key("G", KeyType.POS_INT, 1, doc="the number of groups"),
            Key("bias", KeyType.BOOL, True, doc="whether to learn a bias per filter"),
        ),
        check=_ct_check,
        tensors=_ct_tensors,
        macs=_ct_macs,
        explain=_ct_explain,
        receptive=_ct_receptive,
    ),
    LayerKind(
        "upsample",
        "Every spatial dim times a factor: nearest neighbour, or linear (bi-/trilinear, corners not aligned).",
        _up_infer,
        Traits(Family.RESHAPE, SPATIAL, sequence=Physical.CHANNELS_FIRST),
        example="upsample 2 mode=linear",
        keys=(
            _FACTOR,
            Key("mode", KeyType.CHOICE, "nearest", doc="the interpolation: nearest or linear", choices=("nearest", "linear")),
        ),
        positional="factor",
        explain=_up_explain,
        receptive=_up_receptive,
    ),
    LayerKind(
        "crop",
        "The centred window of a given size; an odd excess cuts the extra row (column, frame) at the end.",
        _crop_infer,
        Traits(Family.RESHAPE, SPATIAL, sequence=Physical.CHANNELS_FIRST),
        example="crop 3",
        keys=(_CROP,),
        positional="size",
        explain=_crop_explain,
        receptive=_crop_receptive,
    ),
)
