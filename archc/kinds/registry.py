"""The one registry of layer kinds.

Each `LayerKind` knows its keys (with types and defaults), its shape rule, its
weight/bias/MAC counts, how to explain them the way the lecture does, and its
documentation. Adding a kind means: an entry here, a handler in each back-end
(`archc.backends.torch.generate`, `archc.backends.onnx.generate`), and nothing else (the parser reads any
name as a kind). `tests/test_registry.py` asserts every back-end has a handler
for every kind.

All rules take and return `archc.ir.Shape` (HWC or flat) and never touch
torch: `archc check` imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from archc.ir import Shape

Attrs = dict[str, Any]
Pair = tuple[int, int]


class KeyType(StrEnum):
    POS_INT = "positive integer"
    PAIR = "n or HxW (positive)"
    PAD = "n, HxW or same"
    FLOAT = "number"
    POS_FLOAT = "positive number"
    PROB = "probability in [0, 1)"
    BOOL = "true or false"


REQUIRED = object()


class Key(NamedTuple):
    name: str
    type: KeyType
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class ShapeError(Exception):
    """A layer cannot be applied to its input; `key` names the attribute to blame."""

    def __init__(self, message: str, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.hint = hint


class Counts(NamedTuple):
    weights: int = 0
    biases: int = 0
    macs: int = 0


class Uneven(NamedTuple):
    """An uneven window division (LANGUAGE.md "Warnings")."""

    message: str
    hint: str
    key: str


class Window(NamedTuple):
    """The resolved geometry of a conv/pool along H and W."""

    kernel: Pair
    stride: Pair
    dilation: Pair
    pads: tuple[int, int, int, int]  # top, left, bottom, right (ONNX order is t, l, b, r)
    ceil: bool
    out: Pair


InferFn = Callable[[Attrs, Sequence[Shape]], Shape]
CountFn = Callable[[Attrs, Sequence[Shape], Shape], Counts]
ExplainFn = Callable[[Attrs, Sequence[Shape], Shape], list[str]]


def _no_counts(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> Counts:
    return Counts()


def _no_explain(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> list[str]:
    return []


class LayerKind(NamedTuple):
    name: str
    doc: str
    infer: InferFn
    keys: tuple[Key, ...] = ()
    positional: str | None = None  # which key a positional value fills
    counts: CountFn = _no_counts
    explain: ExplainFn = _no_explain
    user: bool = True  # False for graph-structure kinds (residual add, concat)
    arity: int = 1  # inputs; 0 means "one or more"

    def key(self, name: str) -> Key | None:
        for k in self.keys:
            if k.name == name:
                return k
        return None


# --- shared arithmetic ---------------------------------------------------------------
def window_out(n: int, f: int, s: int, pad_begin: int, pad_end: int, d: int, ceil: bool) -> int:
    """Output length of a conv/pool window along one side, as PyTorch computes it.

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


def _spatial(shape: Shape, kind: str) -> tuple[int, int, int]:
    if not shape.is_spatial:
        raise ShapeError(
            f"{kind} needs a spatial input (HxWxC), but its input is the flat vector {shape.text()}",
            hint="put it before the first fc/flatten",
        )
    h, w, c = shape.dims
    return h, w, c


def resolve_window(attrs: Attrs, shape: Shape, kind: str, pool: bool) -> Window:
    h, w, _ = _spatial(shape, kind)
    f: Pair = attrs["F"]
    s: Pair = attrs["S"] if attrs.get("S") is not None else f
    d: Pair = attrs.get("D", (1, 1))
    ceil = bool(attrs.get("ceil", False))
    if attrs["P"] == "same":
        top, bottom = same_pads(h, f[0], s[0], d[0])
        left, right = same_pads(w, f[1], s[1], d[1])
    else:
        top = bottom = attrs["P"][0]
        left = right = attrs["P"][1]
        if pool and (2 * top > f[0] or 2 * left > f[1]):
            raise ShapeError(
                f"{kind} padding P={top if top == left else f'{top}x{left}'} is more than half "
                f"the window F={f[0] if f[0] == f[1] else f'{f[0]}x{f[1]}'}",
                key="P",
                hint="pooling padding may be at most F/2 (PyTorch and ONNX runtimes require it)",
            )
    out = (
        window_out(h, f[0], s[0], top, bottom, d[0], ceil),
        window_out(w, f[1], s[1], left, right, d[1], ceil),
    )
    if out[0] < 1 or out[1] < 1:
        eff = (d[0] * (f[0] - 1) + 1, d[1] * (f[1] - 1) + 1)
        raise ShapeError(
            f"{kind} output would be {out[0]}x{out[1]}: the {eff[0]}x{eff[1]} window does not fit "
            f"the {h}x{w} input with padding {top}x{left}",
            key="F",
            hint="use a smaller F, more padding P, or a larger input",
        )
    return Window(f, s, d, (top, left, bottom, right), ceil, out)


def _pad_text(win: Window, axis: int) -> str:
    begin, end = win.pads[axis], win.pads[axis + 2]
    return f"2*{begin}" if begin == end else f"{begin}+{end}"


def window_explain(attrs: Attrs, ins: Sequence[Shape], out: Shape, kind: str) -> list[str]:
    """`(227 - 11 + 2*0)/4 + 1 = 55` for each side (once when both agree)."""
    win = resolve_window(attrs, ins[0], kind, kind != "conv")
    h, w, _ = ins[0].dims
    lines = []
    for axis, (n, label) in enumerate(((h, "H"), (w, "W"))):
        f, s, d = win.kernel[axis], win.stride[axis], win.dilation[axis]
        fexpr = str(f) if d == 1 else f"({d}*({f}-1)+1)"  # the dilated window's extent
        num = n - (d * (f - 1) + 1) + win.pads[axis] + win.pads[axis + 2]
        exact = num / s + 1
        shown = f"{exact:g}"
        result = win.out[axis]
        rounded = -int(-num // s) + 1 if win.ceil else num // s + 1
        tail = f"{shown}" if exact == result else f"{shown} -> {rounded} ({'ceil' if win.ceil else 'floor'})"
        if rounded != result:  # PyTorch's ceil rule: no window may start in the right padding
            tail += f" -> {result} (the last window would start in the padding, so it is dropped)"
        lines.append(f"{label}: ({n} - {fexpr} + {_pad_text(win, axis)})/{s} + 1 = {tail}")
    if lines[0][3:] == lines[1][3:]:
        return [lines[0][3:]]
    return lines


def uneven_division(attrs: Attrs, shape: Shape, kind: str) -> Uneven | None:
    """The warning for an input that the window silently crops, or None."""
    if attrs.get("ceil") or attrs.get("P") == "same" or not shape.is_spatial:
        return None
    win = resolve_window(attrs, shape, kind, kind != "conv")
    h, w, _ = shape.dims
    for axis, n in enumerate((h, w)):
        f, s, d = win.kernel[axis], win.stride[axis], win.dilation[axis]
        p = win.pads[axis]
        eff = d * (f - 1) + 1
        rem = (n + 2 * p - eff) % s
        if rem == 0:
            continue
        side = "H" if axis == 0 else "W"
        pexpr = f"2*{p}"
        # The caller prefixes the layer's name; the kind here made it read
        # "conv1: conv: ...". Along W the cropped lines are columns, not rows.
        unit = "row" if axis == 0 else "column"
        cropped = f"last {unit} of the input is" if rem == 1 else f"last {rem} {unit}s of the input are"
        # (zoo) The `rem` unread lines are the end of the *padded* input: when
        # they fit in the P lines of padding (ResNet's 3x3/2 P=1 on 56), no
        # input is lost and "of the input" would be false.
        lost = rem - p
        if lost <= 0:
            cropped = f"last {unit} of padding is" if rem == 1 else f"last {rem} {unit}s of padding are"
        elif p > 0:
            cropped = f"last {unit} of the input is" if lost == 1 else f"last {lost} {unit}s of the input are"
        tail = "never read (no input is lost)" if lost <= 0 else "never read"
        message = (
            f"({n} - {eff} + {pexpr})/{s} = {(n + 2 * p - eff) / s:g} is not a whole number "
            f"along {side}; the {cropped} {tail}"
        )
        size = "an input" if h == w else ("an input height" if axis == 0 else "an input width")
        fixes = [f"{size} of {n - rem} or {n + s - rem}"]
        for extra in range(1, s + 1):
            if (n + 2 * (p + extra) - eff) % s == 0:
                fixes.append(f"padding P={p + extra}")
                break
        return Uneven(message, f"{' or '.join(fixes)} divides evenly", "F")
    return None


# --- kinds ---------------------------------------------------------------------------
def _conv_infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    _, _, c = _spatial(ins[0], "conv")
    g, k = attrs["G"], attrs["K"]
    if c % g or k % g:
        raise ShapeError(
            f"groups G={g} must divide both the input channels ({c}) and K ({k})",
            key="G",
            hint=f"divisors of both: {', '.join(str(x) for x in range(1, min(c, k) + 1) if c % x == 0 and k % x == 0)}",
        )
    win = resolve_window(attrs, ins[0], "conv", pool=False)
    return Shape.hwc(win.out[0], win.out[1], k)


def _conv_count(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> Counts:
    fh, fw = attrs["F"]
    c, k, g = ins[0].channels, attrs["K"], attrs["G"]
    weights = fh * fw * (c // g) * k
    biases = k if attrs["bias"] else 0
    ho, wo, _ = out.dims
    return Counts(weights, biases, ho * wo * weights)


def _conv_explain(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> list[str]:
    fh, fw = attrs["F"]
    c, k, g = ins[0].channels, attrs["K"], attrs["G"]
    counts = _conv_count(attrs, ins, out)
    cin = f"{c}" if g == 1 else f"({c}/{g})"
    lines = window_explain(attrs, ins, out, "conv")
    bias = f" + {counts.biases:,} biases" if attrs["bias"] else " (no bias)"
    lines.append(f"({fh}*{fw}*{cin})*{k} = {counts.weights:,} weights{bias}")
    ho, wo, _ = out.dims
    lines.append(f"{ho}*{wo}*{k} outputs * ({fh}*{fw}*{cin}) = {counts.macs:,} MACs")
    return lines


def _pool_infer(kind: str) -> InferFn:
    def infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
        win = resolve_window(attrs, ins[0], kind, pool=True)
        return Shape.hwc(win.out[0], win.out[1], ins[0].channels)

    return infer


def _pool_explain(kind: str) -> ExplainFn:
    def explain(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> list[str]:
        return [*window_explain(attrs, ins, out, kind), "no parameters"]

    return explain


def _adaptive_infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    _, _, c = _spatial(ins[0], "adaptiveavgpool")
    h, w = attrs["size"]
    return Shape.hwc(h, w, c)


def _global_infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    _, _, c = _spatial(ins[0], "globalavgpool")
    return Shape.hwc(1, 1, c)


def _fc_infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    return Shape.flat(attrs["N"])


def _fc_count(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> Counts:
    n_in, n = ins[0].numel, attrs["N"]
    return Counts(n_in * n, n if attrs["bias"] else 0, n_in * n)


def _fc_explain(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> list[str]:
    counts = _fc_count(attrs, ins, out)
    shape = ins[0]
    n_in = "*".join(str(d) for d in shape.dims) if shape.is_spatial else str(shape.numel)
    bias = f" + {counts.biases:,} biases" if attrs["bias"] else " (no bias)"
    lines = []
    if shape.is_spatial:
        lines.append(f"flatten {shape.text()} -> {shape.numel:,} inputs (C,H,W order)")
    lines.append(f"({n_in})*{attrs['N']} = {counts.weights:,} weights{bias}")
    lines.append(f"{counts.macs:,} MACs")
    return lines


def _flatten_infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    return Shape.flat(ins[0].numel)


def _same(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    return ins[0]


def _bn_count(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> Counts:
    c = ins[0].channels
    return Counts(c, c, 0)


def _bn_explain(attrs: Attrs, ins: Sequence[Shape], out: Shape) -> list[str]:
    c = ins[0].channels
    return [f"{c} scales + {c} shifts (running mean and variance are buffers)"]


def _lrn_infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    _spatial(ins[0], "lrn")
    return ins[0]


def _add_infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    body, shortcut = ins
    if body != shortcut:
        # Suggest the projection that fits when there is one (a 1x1 conv with the
        # body's channels and the stride that maps H and W), not a template.
        example = "shortcut { conv K=<channels> F=1 S=<stride> }"
        if body.is_spatial and shortcut.is_spatial:
            (bh, bw, bc), (sh, sw, _) = body.dims, shortcut.dims
            stride = -(-sh // bh) if bh else 1
            if stride == -(-sw // bw) and window_out(sh, 1, stride, 0, 0, 1, False) == bh:
                example = f"shortcut {{ conv K={bc} F=1{f' S={stride}' if stride > 1 else ''} }}"
        elif not body.is_spatial:
            example = f"shortcut {{ fc {body.numel} }}"
        raise ShapeError(
            f"residual body outputs {body.text()} but the shortcut gives {shortcut.text()}",
            hint=f"add a shortcut that maps {shortcut.text()} to {body.text()}, e.g. {example}",
        )
    return body


def _concat_infer(attrs: Attrs, ins: Sequence[Shape]) -> Shape:
    first = ins[0]
    if all(not s.is_spatial for s in ins):
        return Shape.flat(sum(s.numel for s in ins))
    for i, s in enumerate(ins[1:], start=2):
        if not s.is_spatial or s.dims[:2] != first.dims[:2]:
            raise ShapeError(
                f"concat branches must end at the same H and W: branch 1 ends at {first.text()}, "
                f"branch {i} at {s.text()}",
                hint="give the branches the same stride and padding (P=same keeps H and W)",
            )
    h, w, _ = first.dims
    return Shape.hwc(h, w, sum(s.channels for s in ins))


_WINDOW_KEYS = (
    Key("F", KeyType.PAIR, doc="window size, n or HxW"),
    Key("S", KeyType.PAIR, None, doc="stride; defaults to F for pooling"),
    Key("P", KeyType.PAD, (0, 0), doc="zero padding on each side, or same"),
)

KINDS: dict[str, LayerKind] = {
    k.name: k
    for k in (
        LayerKind(
            "conv",
            "2-D convolution: K filters of FxF, stride S, padding P, dilation D, groups G.",
            _conv_infer,
            keys=(
                Key("K", KeyType.POS_INT, doc="number of filters (output channels)"),
                Key("F", KeyType.PAIR, doc="filter size, n or HxW"),
                Key("S", KeyType.PAIR, (1, 1), doc="stride"),
                Key("P", KeyType.PAD, (0, 0), doc="zero padding on each side, or same"),
                Key("D", KeyType.PAIR, (1, 1), doc="dilation"),
                Key("G", KeyType.POS_INT, 1, doc="groups"),
                Key("bias", KeyType.BOOL, True, doc="learn a bias per filter"),
            ),
            counts=_conv_count,
            explain=_conv_explain,
        ),
        LayerKind(
            "maxpool",
            "Max pooling over FxF windows (stride S, default F).",
            _pool_infer("maxpool"),
            keys=(*_WINDOW_KEYS, Key("ceil", KeyType.BOOL, False, doc="round the output size up")),
            explain=_pool_explain("maxpool"),
        ),
        LayerKind(
            "avgpool",
            "Average pooling over FxF windows (stride S, default F); padding counts as zeros.",
            _pool_infer("avgpool"),
            keys=(*_WINDOW_KEYS, Key("ceil", KeyType.BOOL, False, doc="round the output size up")),
            explain=_pool_explain("avgpool"),
        ),
        LayerKind(
            "adaptiveavgpool",
            "Average pooling to a fixed n x n (or HxW) output.",
            _adaptive_infer,
            keys=(Key("size", KeyType.PAIR, doc="output size, n or HxW"),),
            positional="size",
        ),
        LayerKind("globalavgpool", "Average over all of H and W: 1x1xC.", _global_infer),
        LayerKind(
            "fc",
            "Fully connected layer with N outputs; flattens a spatial input first (C,H,W order).",
            _fc_infer,
            keys=(
                Key("N", KeyType.POS_INT, doc="number of outputs"),
                Key("bias", KeyType.BOOL, True, doc="learn a bias per output"),
            ),
            positional="N",
            counts=_fc_count,
            explain=_fc_explain,
        ),
        LayerKind("flatten", "Flattens HxWxC to H*W*C (C,H,W order).", _flatten_infer),
        LayerKind(
            "batchnorm",
            "Batch normalisation (inference form): 2C parameters, running statistics are buffers.",
            _same,
            keys=(Key("eps", KeyType.POS_FLOAT, 1e-5, doc="added to the variance"),),
            counts=_bn_count,
            explain=_bn_explain,
        ),
        LayerKind(
            "lrn",
            "Local response normalisation across channels (PyTorch/ONNX semantics: alpha/size).",
            _lrn_infer,
            keys=(
                Key("size", KeyType.POS_INT, 5, doc="channels in the window"),
                Key("alpha", KeyType.FLOAT, 1e-4),
                Key("beta", KeyType.FLOAT, 0.75),
                Key("k", KeyType.FLOAT, 2.0),
            ),
        ),
        LayerKind(
            "dropout",
            "Dropout with probability p; the identity at inference.",
            _same,
            keys=(Key("p", KeyType.PROB, 0.5, doc="drop probability"),),
            positional="p",
        ),
        *(
            LayerKind(name, doc, _same)
            for name, doc in (
                ("relu", "max(x, 0)"),
                ("relu6", "min(max(x, 0), 6)"),
                ("sigmoid", "1 / (1 + exp(-x))"),
                ("tanh", "tanh(x)"),
                ("gelu", "x * Phi(x) (exact, erf form)"),
                ("softmax", "softmax over the channels (the features, when flat)"),
                ("identity", "y = x"),
            )
        ),
        LayerKind(
            "leakyrelu",
            "max(x, 0) + slope * min(x, 0)",
            _same,
            keys=(Key("slope", KeyType.FLOAT, 0.01, doc="negative slope"),),
        ),
        LayerKind(
            "add",
            "The sum of a residual's body and shortcut (written `residual {...}`).",
            _add_infer,
            user=False,
            arity=2,
        ),
        LayerKind(
            "concat",
            "Channel concatenation of branches (written `concat { branch {...} ... }`).",
            _concat_infer,
            user=False,
            arity=0,
        ),
    )
}

USER_KINDS = tuple(name for name, k in KINDS.items() if k.user)


# --- key values ------------------------------------------------------------------------
def coerce(key: Key, value: Any) -> Any:
    """Normalise a key's value to its type, or raise ValueError with a sentence.

    >>> coerce(Key("F", KeyType.PAIR), 3)
    (3, 3)
    >>> coerce(Key("P", KeyType.PAD), "same")
    'same'
    """
    t = key.type
    if t is KeyType.BOOL:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key.name} takes true or false, not {_show(value)}")
    if isinstance(value, bool):
        raise ValueError(f"{key.name} takes a {t}, not {_show(value)}")
    if t is KeyType.POS_INT:
        if isinstance(value, int) and value > 0:
            return value
        raise ValueError(f"{key.name} must be a positive integer, not {_show(value)}")
    if t in (KeyType.PAIR, KeyType.PAD):
        if t is KeyType.PAD and value == "same":
            return "same"
        pair = (value, value) if isinstance(value, int) else value
        ok = isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(v, int) for v in pair)
        low = 0 if t is KeyType.PAD else 1
        if ok and all(v >= low for v in pair):
            return pair
        what = "a non-negative integer, HxW or same" if t is KeyType.PAD else "a positive integer or HxW"
        raise ValueError(f"{key.name} must be {what}, not {_show(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        v = float(value)
        if t is KeyType.POS_FLOAT and v <= 0:
            raise ValueError(f"{key.name} must be positive, not {_show(value)}")
        if t is KeyType.PROB and not 0 <= v < 1:
            raise ValueError(f"{key.name} must be in [0, 1), not {_show(value)}")
        return v
    raise ValueError(f"{key.name} takes a {t}, not {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def show_value(value: Any) -> str:
    """A key's value as the spec would write it."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return str(value[0])
    if isinstance(value, float):
        return f"{value:g}"
    return _show(value)
