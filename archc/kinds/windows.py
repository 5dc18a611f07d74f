"""Kinds with a window over the spatial dims: conv, maxpool, avgpool, adaptive and global pooling.

The window keys keep what was written (`F=3`, `F=3x5`) until the input is
known; `resolve_window` then gives the geometry once, for as many spatial
dims as the input has, and the analysis stores it in the layer's facts
(`LayerFacts.window`), where explanations, warnings, receptive fields and the
back-ends read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from archc.ir import Physical, Shape
from archc.kinds.kind import (
    SPATIAL,
    Applied,
    Attrs,
    Counts,
    Family,
    InferFn,
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
    per_dimension,
    per_position,
    show_value,
)

# How messages name one line of an input along each spatial axis, and its size.
_UNITS = {"D": "frame", "H": "row", "W": "column", "L": "position"}
_SIZES = {"D": "depth", "H": "height", "W": "width", "L": "length"}


class Uneven(NamedTuple):
    """An uneven window division (LANGUAGE.md "Warnings")."""

    message: str
    hint: str
    key: str


# --- arithmetic -------------------------------------------------------------------------
def window_out(n: int, f: int, s: int, pad_begin: int, pad_end: int, d: int, ceil: bool) -> int:
    """Output length of a conv/pool window along one dim, as PyTorch computes it.

    >>> window_out(227, 11, 4, 0, 0, 1, False)
    55
    >>> window_out(56, 3, 2, 0, 0, 1, True)   # ceil: the last window starts inside
    28
    """
    span = n + pad_begin + pad_end - d * (f - 1) - 1
    if not ceil:
        return max(span // s + 1, 0)
    # Rounding up, a window larger than the input still gives one output when it
    # starts inside (1x1 input, F=1x2 S=2 ceil: 1x1), as PyTorch and onnxruntime
    # compute; this returned 0 (an error) for every span < 0 before.
    out = -(-span // s) + 1
    # PyTorch: the last window must start inside the input or its left padding.
    if (out - 1) * s >= n + pad_begin:
        out -= 1
    return max(out, 0)


def same_pads(n: int, f: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow-style 'same' padding: output ceil(n/s); extra padding at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (f - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _x(values: Sequence[int]) -> str:
    return "x".join(str(v) for v in values)


def sizes(kind: str, key: Key, value: Any, shape: Shape) -> tuple[int, ...]:
    """A per-dimension key's value for `shape`'s spatial dims; a count that does not fit is an error."""
    rank = shape.layout.spatial_rank
    got: tuple[int, ...] = per_dimension(key, value, rank)
    if len(got) != rank:
        raise ShapeError(
            f"{kind} {key.name}={_x(got)} gives {len(got)} sizes, but the {shape.layout.noun} "
            f"{shape.text()} has {rank} spatial dimension{'s' if rank != 1 else ''} ({shape.layout.spatial_axes})",
            key=key.name,
            hint=f"write one size for every dimension ({key.name}=3), or one per dimension "
            f"({key.name}={_x([3] * rank)})",
        )
    return got


def resolve_window(attrs: Attrs, shape: Shape, kind: LayerKind) -> Window:
    """The geometry of a conv/pool window on `shape`: kernel, stride, dilation, pads, output sizes."""
    name = kind.name
    keys = {k.name: k for k in kind.keys}
    n = shape.spatial
    f = sizes(name, keys["F"], attrs["F"], shape)
    s = f if attrs.get("S") is None else sizes(name, keys["S"], attrs["S"], shape)
    d = sizes(name, keys["D"], attrs["D"], shape) if "D" in keys else (1,) * len(n)
    ceil = bool(attrs.get("ceil", False))
    if attrs["P"] == "same":
        same = [same_pads(*args) for args in zip(n, f, s, d, strict=True)]
        begin, end = tuple(b for b, _ in same), tuple(e for _, e in same)
    else:
        begin = end = sizes(name, keys["P"], attrs["P"], shape)
        if kind.traits.window is WindowKind.POOL and any(2 * p > k for p, k in zip(begin, f, strict=True)):
            raise ShapeError(
                f"{name} padding P={show_value(begin)} is more than half the window F={show_value(f)}",
                key="P",
                hint="pooling padding may be at most F/2 (PyTorch and ONNX runtimes require it)",
            )
    out = tuple(window_out(n[i], f[i], s[i], begin[i], end[i], d[i], ceil) for i in range(len(n)))
    if any(o < 1 for o in out):
        extent = [di * (fi - 1) + 1 for fi, di in zip(f, d, strict=True)]
        raise ShapeError(
            f"{name} output would be {_x(out)}: the {_x(extent)} window does not fit "
            f"the {_x(n)} input with padding {_x(begin)}",
            key="F",
            hint="use a smaller F, more padding P, or a larger input",
        )
    return Window(f, s, d, begin, end, ceil, out)


# --- explanations and warnings -------------------------------------------------------------
def window_explain(win: Window, shape: Shape) -> list[str]:
    """`(227 - 11 + 2*0)/4 + 1 = 55` for each spatial dim (once when all agree)."""
    lines = []
    for axis, (label, n) in enumerate(zip(shape.layout.spatial_axes, shape.spatial, strict=True)):
        f, s, d = win.kernel[axis], win.stride[axis], win.dilation[axis]
        begin, end = win.begin[axis], win.end[axis]
        fexpr = str(f) if d == 1 else f"({d}*({f}-1)+1)"  # the dilated window's extent
        pad = f"2*{begin}" if begin == end else f"{begin}+{end}"
        num = n - (d * (f - 1) + 1) + begin + end
        exact = num / s + 1
        shown = f"{exact:g}"
        result = win.out[axis]
        rounded = -int(-num // s) + 1 if win.ceil else num // s + 1
        tail = f"{shown}" if exact == result else f"{shown} -> {rounded} ({'ceil' if win.ceil else 'floor'})"
        if rounded != result:  # PyTorch's ceil rule: no window may start in the right padding
            tail += f" -> {result} (the last window would start in the padding, so it is dropped)"
        lines.append((label, f"({n} - {fexpr} + {pad})/{s} + 1 = {tail}"))
    if all(body == lines[0][1] for _, body in lines):
        return [lines[0][1]]
    return [f"{label}: {body}" for label, body in lines]


def uneven_division(attrs: Attrs, win: Window, shape: Shape, pool: bool = False) -> Uneven | None:
    """The warning for a window that stops short of its input's end (LANGUAGE.md "Warnings"), or None.

    Along each spatial axis, windows that cover the input without gaps (the
    effective window `D(F-1)+1` at least the stride) leave the last
    `(n + 2P - D(F-1) - 1) mod S` lines of the padded input unread; the
    warning is for those past the end padding: lines of the input itself.
    Every affected side is named; the hint gives input sizes that divide
    evenly and, when one exists, a padding valid for this layer (a pool's at
    most F/2 along each axis), spelled per axis where the axes differ.

    >>> from archc.ir import Shape
    >>> w = Window((11, 11), (4, 4), (1, 1), (0, 0), (0, 0), False, (54, 54))
    >>> uneven_division({"P": 0}, w, Shape.hwc(224, 224, 3)).message
    '(224 - 11 + 2*0)/4 = 53.25 is not a whole number along H and W; the last row and the last column of the input are never read'
    """
    if win.ceil or attrs.get("P") == "same":
        return None
    axes = shape.layout.spatial_axes
    lost: dict[int, int] = {}  # axis -> lines of the input never read
    rems: dict[int, int] = {}
    for axis in range(len(axes)):
        n, s = shape.spatial[axis], win.stride[axis]
        eff = win.dilation[axis] * (win.kernel[axis] - 1) + 1
        if eff < s:
            continue  # gaps between the windows by design (a 1x1 stride-2 projection)
        rem = (n + win.begin[axis] + win.end[axis] - eff) % s
        if rem > win.end[axis]:  # not only padding goes unread
            lost[axis], rems[axis] = rem - win.end[axis], rem
    if not lost:
        return None
    divisions = {axis: _division(win, shape, axis) for axis in lost}
    sides = " and ".join(axes[a] for a in lost)
    if len(set(divisions.values())) == 1:
        what = f"{next(iter(divisions.values()))} is not a whole number along {sides}"
    else:
        what = " and ".join(f"{d} along {axes[a]}" for a, d in divisions.items()) + " are not whole numbers"
    pieces = [
        f"last {_UNITS[axes[a]]}" if k == 1 else f"last {k} {_UNITS[axes[a]]}s" for a, k in lost.items()
    ]
    verb = "is" if len(pieces) == 1 and lost[next(iter(lost))] == 1 else "are"
    message = f"{what}; the {' and the '.join(pieces)} of the input {verb} never read"
    return Uneven(message, f"{' or '.join(_fixes(win, shape, rems, pool))} divides evenly", "F")


def _division(win: Window, shape: Shape, axis: int) -> str:
    n, s = shape.spatial[axis], win.stride[axis]
    eff = win.dilation[axis] * (win.kernel[axis] - 1) + 1
    begin, end = win.begin[axis], win.end[axis]
    pad = f"2*{begin}" if begin == end else f"{begin}+{end}"
    return f"({n} - {eff} + {pad})/{s} = {(n + begin + end - eff) / s:g}"


def _fixes(win: Window, shape: Shape, rems: dict[int, int], pool: bool) -> list[str]:
    """Input sizes that divide evenly along the affected axes, and the nearest valid padding that does."""
    n = shape.spatial
    low = tuple(n[a] - rems[a] if a in rems else n[a] for a in range(len(n)))
    high = tuple(n[a] + win.stride[a] - rems[a] if a in rems else n[a] for a in range(len(n)))
    if len(rems) == 1 and len(set(n)) > 1:  # one side of a non-square input: name that side
        (axis,) = rems
        fixes = [f"an input {_SIZES[shape.layout.spatial_axes[axis]]} of {low[axis]} or {high[axis]}"]
    else:
        fixes = [f"an input of {_x(low)} or {_x(high)}"]
    pads = list(win.begin)
    for axis in rems:
        eff = win.dilation[axis] * (win.kernel[axis] - 1) + 1
        s, most = win.stride[axis], (win.kernel[axis] // 2 if pool else n[axis] + eff)
        nearest = nearest_padding(n[axis], eff, s, win.begin[axis], most)
        if nearest is None:
            return fixes  # no padding divides evenly along this axis (2P cannot change its parity)
        pads[axis] = nearest
    fixes.append(f"padding P={show_value(tuple(pads))}")
    return fixes


def nearest_padding(n: int, eff: int, s: int, begin: int, most: int) -> int | None:
    """The padding `p` in 0..most nearest to `begin` (the smaller of two as near) with
    `(n + 2p - eff) % s == 0`, or None; in O(1), not a scan of 0..most.

    A conv's paddings run up to the input size: scanning them for a stride
    of 2^31-1 never ended. `2p = eff - n (mod s)` has its solutions every
    `s` (odd stride) or `s/2` (even stride, when `eff - n` is even) from the
    least one, `p0`; the nearest to `begin` is one of those around it.

    >>> nearest_padding(224, 11, 4, 0, 235), nearest_padding(10, 3, 3, 0, 13), nearest_padding(7, 3, 2, 0, 10)
    (None, 1, 0)
    """
    target = (eff - n) % s
    if s % 2 == 0:
        if target % 2:
            return None
        step, p0 = s // 2, target // 2
    else:
        step, p0 = s, target * ((s + 1) // 2) % s  # (s+1)/2 is the inverse of 2 modulo an odd s
    near = p0 + (min(max(begin, 0), most) - p0) // step * step
    found = [p for p in (near - step, near, near + step, near + 2 * step) if 0 <= p <= most]
    return min(found, key=lambda p: (abs(p - begin), p)) if found else None


# --- kinds ---------------------------------------------------------------------------------
def _common_divisors(a: int, b: int, most: int = 12) -> list[int]:
    """The first `most` common divisors of a and b, by trial division up to sqrt(gcd), not up to min(a, b).

    >>> _common_divisors(96, 64)
    [1, 2, 4, 8, 16, 32]
    """
    g = math.gcd(a, b)
    small, large = [], []
    for x in range(1, math.isqrt(g) + 1):
        if g % x == 0:
            small.append(x)
            if x != g // x:
                large.append(g // x)
    return (small + large[::-1])[:most]


def _groups_divide(attrs: Attrs, ins: Sequence[Shape]) -> None:
    c, g, k = ins[0].channels, attrs["G"], attrs["K"]
    if c % g or k % g:
        divisors = _common_divisors(c, k)  # listing every divisor up to 1e8 took 11 s
        more = ", ..." if len(divisors) == 12 and divisors[-1] != math.gcd(c, k) else ""
        raise ShapeError(
            f"groups G={g} must divide both the input channels ({c}) and K ({k})",
            key="G",
            hint=f"divisors of both: {', '.join(str(x) for x in divisors)}{more}",
        )


def _window_shape(channels_from_key: str | None) -> InferFn:
    """The output of a window: its sizes, and K channels (conv) or the input's (pooling)."""

    def infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
        assert window is not None  # resolved for every windowed kind
        return ins[0].resized(window.out, attrs[channels_from_key] if channels_from_key else None)

    return infer


def _conv_tensors(layer: Applied) -> tuple[Tensor, ...]:
    assert layer.window is not None
    a = layer.attrs
    per_group = layer.ins[0].channels // a["G"]
    fan_in = per_group * math.prod(layer.window.kernel)
    weight = Tensor(
        "weight", (a["K"], per_group, *layer.window.kernel), Role.WEIGHT, Init.KAIMING_UNIFORM, fan_in
    )
    if not a["bias"]:
        return (weight,)
    return weight, Tensor("bias", (a["K"],), Role.BIAS, Init.FAN_IN_UNIFORM, fan_in)


def _conv_explain(layer: Applied, counts: Counts) -> list[Line]:
    assert layer.window is not None
    a = layer.attrs
    c, k, g = layer.ins[0].channels, a["K"], a["G"]
    window = "*".join(str(f) for f in layer.window.kernel)
    cin = f"{c}" if g == 1 else f"({c}/{g})"
    lines = [Line(Topic.SHAPE, text) for text in window_explain(layer.window, layer.ins[0])]
    bias = f" + {counts.biases:,} biases" if a["bias"] else " (no bias)"
    lines.append(Line(Topic.PARAMS, f"({window}*{cin})*{k} = {counts.weights:,} weights{bias}"))
    outputs = "*".join(str(n) for n in layer.out.spatial)
    lines.append(Line(Topic.MACS, f"{outputs}*{k} outputs * ({window}*{cin}) = {counts.macs:,} MACs"))
    return lines


def _pool_explain(layer: Applied, counts: Counts) -> list[Line]:
    assert layer.window is not None
    lines = [Line(Topic.SHAPE, text) for text in window_explain(layer.window, layer.ins[0])]
    return [*lines, Line(Topic.PARAMS, "no parameters")]


def _adaptive_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return ins[0].resized(sizes("adaptiveavgpool", _ADAPTIVE_SIZE, attrs["size"], ins[0]))


def _adaptive_explain(layer: Applied, counts: Counts) -> list[Line]:
    """PyTorch's split: output i averages input rows floor(i*n/out) to ceil((i+1)*n/out)."""
    lines = []
    shape = layer.ins[0]
    if all(out == 1 for out in layer.out.spatial):
        return _global_explain(layer, counts)
    for label, n, out in zip(shape.layout.spatial_axes, shape.spatial, layer.out.spatial, strict=True):
        if n % out == 0:
            body = f"{n}/{out}: {out} window{'s' if out > 1 else ''} of {n // out}, stride {n // out}"
        else:
            widths = [-(-(i + 1) * n // out) - i * n // out for i in range(out)]
            body = (
                f"{n} into {out}: window i covers floor(i*{n}/{out}) to ceil((i+1)*{n}/{out}), "
                f"{min(widths) if min(widths) == max(widths) else f'{min(widths)} to {max(widths)}'} wide, overlapping"
            )
        lines.append((label, body))
    if all(body == lines[0][1] for _, body in lines):
        texts = [lines[0][1]]
    else:
        texts = [f"{label}: {body}" for label, body in lines]
    return [*(Line(Topic.SHAPE, t) for t in texts), Line(Topic.PARAMS, "no parameters")]


def _global_explain(layer: Applied, counts: Counts) -> list[Line]:
    shape = layer.ins[0]
    where = "x".join(str(n) for n in shape.spatial)
    positions = math.prod(shape.spatial)
    text = f"the mean of {where} = {positions:,} positions per channel: {layer.out.text()}"
    return [Line(Topic.SHAPE, text), Line(Topic.PARAMS, "no parameters")]


def _global_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return ins[0].resized((1,) * ins[0].layout.spatial_rank)


_POOL_KEYS = (
    Key("F", KeyType.SIZES, doc="the window size, n or HxW"),
    Key("S", KeyType.SIZES, None, doc="the stride (default: F, the window size)"),
    Key("P", KeyType.PAD, 0, doc="the zero padding on each side, or same"),
    Key("ceil", KeyType.BOOL, False, doc="whether to round the output size up"),
)
_ADAPTIVE_SIZE = Key("size", KeyType.SIZES, doc="the output size, n or HxW")
_FIRST = Physical.CHANNELS_FIRST  # a sequence is held batch x C x L around convolutions and pooling
_POOL = Traits(Family.POOL, SPATIAL, WindowKind.POOL, sequence=_FIRST)

KINDS = (
    LayerKind(
        "conv",
        "2-D convolution: K filters of FxF, stride S, padding P, dilation D, groups G.",
        _window_shape("K"),
        Traits(Family.CONV, SPATIAL, WindowKind.CONV, sequence=_FIRST),
        example="conv K=8 F=3 S=2 P=1 D=1 G=2 bias=false",
        keys=(
            Key("K", KeyType.POS_INT, doc="the number of filters (output channels)"),
            Key("F", KeyType.SIZES, doc="the filter size, n or HxW"),
            Key("S", KeyType.SIZES, 1, doc="the stride"),
            Key("P", KeyType.PAD, 0, doc="the zero padding on each side, or same"),
            Key("D", KeyType.SIZES, 1, doc="the dilation"),
            Key("G", KeyType.POS_INT, 1, doc="the number of groups"),
            Key("bias", KeyType.BOOL, True, doc="whether to learn a bias per filter"),
        ),
        check=_groups_divide,
        tensors=_conv_tensors,
        macs=per_position,
        explain=_conv_explain,
    ),
    LayerKind(
        "maxpool",
        "Max pooling over FxF windows (stride S, default F).",
        _window_shape(None),
        _POOL,
        example="maxpool F=3 S=2 P=1 ceil=true",
        keys=_POOL_KEYS,
        explain=_pool_explain,
    ),
    LayerKind(
        "avgpool",
        "Average pooling over FxF windows (stride S, default F); padding counts as zeros.",
        _window_shape(None),
        _POOL,
        example="avgpool F=2",
        keys=_POOL_KEYS,
        explain=_pool_explain,
    ),
    LayerKind(
        "adaptiveavgpool",
        "Average pooling to a fixed n x n (or HxW) output.",
        _adaptive_infer,
        Traits(Family.POOL, SPATIAL, WindowKind.ADAPTIVE, sequence=_FIRST),
        example="adaptiveavgpool 3",
        keys=(_ADAPTIVE_SIZE,),
        positional="size",
        explain=_adaptive_explain,
    ),
    LayerKind(
        "globalavgpool",
        "Average over all of H and W: 1x1xC.",
        _global_infer,
        Traits(Family.POOL, SPATIAL, mixes_positions=True, sequence=_FIRST),
        example="globalavgpool",
        explain=_global_explain,
    ),
)
