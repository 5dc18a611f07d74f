"""One PyTorch handler per layer kind: the `nn` module a layer becomes.

A handler reads the layer through a `LayerCtx` (the generator's view of one
layer statement across every instance of its block) and returns the steps of
`__init__` and `forward` it needs. `ctx.key("K")` gives the key as Python
text: the spec's expression when it holds for every instance (`K * 4`), a
literal when all instances agree, else a constructor argument of the class.

Element-wise kinds have one handler, `elementwise`, that reads the kind's
row (`archc.kinds.activations`): its `nn` module and the keys it passes on.

>>> from archc.kinds import KINDS
>>> sorted(HANDLERS) == sorted(KINDS)
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from archc.backends.torch import pyexpr as E
from archc.backends.torch.helpers import Feature
from archc.backends.torch.plan import TorchGenError
from archc.ir import Physical, Shape
from archc.kinds import KINDS, Window
from archc.kinds.dense import flattens, per_position_fc
from archc.kinds.norms import layerscale_shape


@dataclass(frozen=True)
class Rendered:
    """A value as Python text, the expression it came from, and its value per instance."""

    text: str
    sym: E.Sym
    values: tuple[Any, ...]

    def is_default(self, default: Any) -> bool:
        """A literal equal to the torch default everywhere: the keyword can be left out."""
        return isinstance(self.sym, E.Const) and all(E.same(v, default) for v in self.values)


@dataclass(frozen=True)
class Step:
    """`self.<attr> = <ctor>` in __init__ and `y = self.<attr>(x)` in forward;
    or, with no attr, `y = <call>` where `{x}` stands for the input. With both,
    forward is `y = <call>` where `{self}` stands for `self.<attr>`: a parameter,
    `x * self.layer_scale`."""

    attr: str | None
    ctor: str | None = None
    call: str = ""


KEEP: Any = object()  # the layer keeps its input's channel count


@dataclass
class Emitted:
    steps: list[Step]
    channels: Any = KEEP  # an E.Sym, None (unknown), or KEEP
    helpers: tuple[str, ...] = ()  # classes of HELPERS the steps construct, written once into the file


class LayerCtx(Protocol):
    name: str  # the attribute name: the layer's name in its scope
    kind: str
    ins: Sequence[Shape]  # the input shape, one per instance
    outs: Sequence[Shape]  # the output shape, one per instance
    windows: Sequence[Window | None]  # the resolved window (conv, pooling), one per instance
    attrs: Sequence[dict[str, Any]]  # the IR attributes, one per instance
    operands: Sequence[str]  # forward variables of a merge's inputs (add, multiply, concat)
    branches: Sequence[Sequence[Shape]]  # a merge's input shapes, one tuple per instance
    channels: E.Sym | None  # the input channels as an expression, when known
    orders: Sequence[Physical]  # the order it reads a sequence in (batch x L x C or x C x L), per instance

    def key(self, key: str) -> Rendered: ...
    def in_channels(self) -> Rendered: ...
    def check(self, sym: E.Sym | None, values: Sequence[Any], hint: str) -> Rendered: ...
    def attr(self, hint: str) -> str: ...


def ctor(cls: str, *positional: str, **keywords: str | None) -> str:
    """`nn.Conv2d(3, 96, kernel_size=11)`; keywords given as None are left out."""
    parts = [*positional, *(f"{k}={v}" for k, v in keywords.items() if v is not None)]
    return f"{cls}({', '.join(parts)})"


def _kw(value: Rendered, default: Any) -> str | None:
    return None if value.is_default(default) else value.text


def _module(ctx: LayerCtx, text: str, channels: Any = KEEP) -> Emitted:
    return Emitted([Step(ctx.name, text)], channels)


# --- windows ----------------------------------------------------------------------------
def _nd(ctx: LayerCtx, cls: str) -> str:
    """`nn.Conv{}d` for the input's spatial rank: nn.Conv2d on an image."""
    return cls.format(ctx.ins[0].layout.spatial_rank)


def _per_dim(ctx: LayerCtx, value: int) -> tuple[int, ...]:
    return (value,) * ctx.ins[0].layout.spatial_rank


def _torch_pads(win: Window) -> tuple[int, ...]:
    """F.pad's order: the last dim first, begin then end of each (left, right, top, bottom)."""
    return tuple(p for begin, end in reversed(list(zip(win.begin, win.end, strict=True))) for p in (begin, end))


def _padding(ctx: LayerCtx, pool: bool, pad_value: str) -> tuple[list[Step], str | None]:
    """The `padding=` keyword, and a padding module first when the pads are uneven.

    `P=same` with stride 1 and an odd window stays `padding="same"` for conv.
    Otherwise `same` resolves per instance; an uneven pad (top != bottom, the
    extra row at the end) cannot be a Conv2d/pool argument, so a ZeroPad2d (or
    a -inf pad before a max pool) comes first -- torch's own uneven "same"
    would copy the input with a warning each call.
    """
    wins = [w for w in ctx.windows if w is not None]
    assert len(wins) == len(ctx.windows)  # the analysis resolves every conv and pooling window
    same = [a["P"] == "same" for a in ctx.attrs]
    if not any(same):
        return [], _kw(ctx.key("P"), _per_dim(ctx, 0))
    even = all(w.begin == w.end for w in wins)
    if not pool and all(same) and even and all(set(w.stride) == {1} for w in wins):
        return [], ctx.key("P").text
    if even:
        pads = ctx.check(None, [w.begin for w in wins], f"{ctx.name}_padding")
        return [], _kw(pads, _per_dim(ctx, 0))
    sides = ctx.check(None, [_torch_pads(w) for w in wins], f"{ctx.name}_pad")
    pad = ctx.attr(f"{ctx.name}_pad")
    if pad_value == "0":
        module = ctor(_nd(ctx, "nn.ZeroPad{}d"), sides.text)
    else:
        module = ctor(_nd(ctx, "nn.ConstantPad{}d"), sides.text, pad_value)
    return [Step(pad, module)], None


def conv(ctx: LayerCtx) -> Emitted:
    pre, padding = _padding(ctx, pool=False, pad_value="0")
    k = ctx.key("K")
    text = ctor(
        _nd(ctx, "nn.Conv{}d"),
        ctx.in_channels().text,
        k.text,
        kernel_size=ctx.key("F").text,
        stride=_kw(ctx.key("S"), _per_dim(ctx, 1)),
        padding=padding,
        dilation=_kw(ctx.key("D"), _per_dim(ctx, 1)),
        groups=_kw(ctx.key("G"), 1),
        bias=_kw(ctx.key("bias"), True),
    )
    return Emitted([*pre, Step(ctx.name, text)], k.sym)


def convtranspose(ctx: LayerCtx) -> Emitted:
    k = ctx.key("K")
    text = ctor(
        _nd(ctx, "nn.ConvTranspose{}d"),
        ctx.in_channels().text,
        k.text,
        kernel_size=ctx.key("F").text,
        stride=_kw(ctx.key("S"), _per_dim(ctx, 1)),
        padding=_kw(ctx.key("P"), _per_dim(ctx, 0)),
        output_padding=_kw(ctx.key("O"), _per_dim(ctx, 0)),
        groups=_kw(ctx.key("G"), 1),
        bias=_kw(ctx.key("bias"), True),
        dilation=_kw(ctx.key("D"), _per_dim(ctx, 1)),
    )
    return Emitted([Step(ctx.name, text)], k.sym)


def _pool(cls: str, pad_value: str) -> Callable[[LayerCtx], Emitted]:
    def handler(ctx: LayerCtx) -> Emitted:
        pre, padding = _padding(ctx, pool=True, pad_value=pad_value)
        stride = None if all(a["S"] is None for a in ctx.attrs) else ctx.key("S").text
        text = ctor(
            _nd(ctx, cls),
            kernel_size=ctx.key("F").text,
            stride=stride,
            padding=padding,
            ceil_mode=_kw(ctx.key("ceil"), False),
        )
        return Emitted([*pre, Step(ctx.name, text)])

    return handler


def adaptiveavgpool(ctx: LayerCtx) -> Emitted:
    return _module(ctx, ctor(_nd(ctx, "nn.AdaptiveAvgPool{}d"), ctx.key("size").text))


def globalavgpool(ctx: LayerCtx) -> Emitted:
    return _module(ctx, ctor(_nd(ctx, "nn.AdaptiveAvgPool{}d"), "1"))


# --- resampling ----------------------------------------------------------------------------
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def upsample(ctx: LayerCtx) -> Emitted:
    """nn.Upsample: `linear` is PyTorch's bi-/trilinear by rank, corners not aligned."""
    modes = {
        _LINEAR[s.layout.spatial_rank] if a["mode"] == "linear" else "nearest"
        for s, a in zip(ctx.ins, ctx.attrs, strict=True)
    }
    if len(modes) != 1:
        raise TorchGenError(f"{ctx.name}: one block upsamples in several modes or ranks; write two blocks")
    mode = modes.pop()
    linear = mode != "nearest"
    text = ctor(
        "nn.Upsample",
        scale_factor=ctx.key("factor").text,
        mode=f'"{mode}"' if linear else None,
        align_corners="False" if linear else None,
    )
    return _module(ctx, text)


def crop(ctx: LayerCtx) -> Emitted:
    sizes = [tuple(o.spatial) for o in ctx.outs]
    # one tuple per instance (a U-Net's up block crops each skip to its own size): a tuple, never `101`
    same = all(v == sizes[0] for v in sizes)
    text = E.literal(sizes[0], compact=False) if same else ctx.check(None, sizes, f"{ctx.name}_size").text
    return Emitted([Step(ctx.name, ctor("CenterCrop", text))], helpers=("CenterCrop",))


# --- fully connected ---------------------------------------------------------------------
def _flat_features(ctx: LayerCtx, flattened: Callable[[Shape], bool]) -> tuple[E.Sym | None, list[int]]:
    """The flattened input size as `C * H * W` (torchvision's `256 * 6 * 6`), when H, W agree."""
    values = [s.numel if flattened(s) else s.channels for s in ctx.ins]
    if ctx.channels is None:
        return None, values
    if not any(flattened(s) for s in ctx.ins):
        return ctx.channels, values
    sizes = {s.spatial for s in ctx.ins if flattened(s)}
    if len(sizes) != 1:
        return None, values
    spatial = sizes.pop()
    if all(n == 1 for n in spatial):
        return ctx.channels, values
    sym = ctx.channels
    for n in spatial:
        sym = E.Bin("*", sym, E.Const(n))
    return sym, values


def fc(ctx: LayerCtx) -> Emitted:
    """nn.Linear; on a sequence it acts on every position. A tied weight is assigned by the
    network class (`self.lm_head.weight = self.wte.weight`), which sees both layers."""
    steps = []
    flat = [flattens(s) for s in ctx.ins]
    per_position = [per_position_fc(s) for s in ctx.ins]
    if any(flat) and any(per_position):
        raise TorchGenError(
            f"{ctx.name}: one block uses fc on an image (flattened first) and on a sequence (per position); "
            "write two blocks"
        )
    if any(flat):
        # torch.flatten(x, 1) is a no-op on an already flat [batch, N]
        steps.append(Step(None, call="torch.flatten({x}, 1)"))
    sym, values = _flat_features(ctx, flattens)
    n_in = ctx.check(sym, values, f"{ctx.name}_in_features")
    n = ctx.key("N")
    # nn.Linear acts on the last axis: a sequence reaches it held [batch, L, C] (`Traits.sequence`)
    steps.append(Step(ctx.name, ctor("nn.Linear", n_in.text, n.text, bias=_kw(ctx.key("bias"), True))))
    return Emitted(steps, n.sym)


def flatten(ctx: LayerCtx) -> Emitted:
    sym, _ = _flat_features(ctx, lambda s: s.is_spatial)
    return _module(ctx, "nn.Flatten()", sym)


# --- normalisation and the rest ------------------------------------------------------------
def batchnorm(ctx: LayerCtx) -> Emitted:
    c = ctx.in_channels().text
    eps = _kw(ctx.key("eps"), 1e-5)
    # a flat input or a sequence: BatchNorm1d; an image BatchNorm2d; a volume BatchNorm3d
    ranks = [max(s.layout.spatial_rank, 1) for s in ctx.ins]
    if len(set(ranks)) == 1:
        return _module(ctx, ctor(f"nn.BatchNorm{ranks[0]}d", c, eps=eps))
    # one block used on inputs of several ranks: the caller says which
    if set(ranks) == {1, 2}:
        which = ctx.check(None, [r == 2 for r in ranks], f"{ctx.name}_spatial")
        return _module(ctx, ctor(f"(nn.BatchNorm2d if {which.text} else nn.BatchNorm1d)", c, eps=eps))
    rank = ctx.check(None, ranks, f"{ctx.name}_rank")
    return _module(ctx, ctor(f"(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[{rank.text} - 1]", c, eps=eps))


def _channels_last(shape: Shape, order: Physical) -> bool:
    """Whether generated code holds the channels on the last axis (flat features, a sequence
    held batch x L x C), not on axis 1."""
    return shape.layout.channel_axis(order) == len(shape.dims)


def layernorm(ctx: LayerCtx) -> Emitted:
    """nn.LayerNorm over the last axis: a channels-first tensor moves its channels there and back."""
    text = ctor(
        "nn.LayerNorm",
        ctx.in_channels().text,
        eps=_kw(ctx.key("eps"), 1e-5),
        bias=_kw(ctx.key("bias"), True),
    )
    if all(_channels_last(s, order) for s, order in zip(ctx.ins, ctx.orders, strict=True)):
        return _module(ctx, text)
    # [batch, C, ...] -> [batch, ..., C] and back, as torchvision's ConvNeXt permutes around its LayerNorm
    to_last, back = _channels_last_calls(ctx)
    return Emitted([Step(None, call=to_last), Step(ctx.name, text), Step(None, call=back)])


def _channels_last_calls(ctx: LayerCtx) -> tuple[str, str]:
    """`x.permute(0, 2, 3, 1)` and `x.permute(0, 3, 1, 2)` around a layer that reads the channels last.

    permute, as torchvision writes it, exports to ONNX everywhere (torch's TorchScript exporter
    writes `movedim(-1, 1)` as an invalid Transpose). A block used at several ranks (a flat input
    among them, where moving is a no-op) moves with `movedim` instead.
    """
    ranks = {1 + len(s.nchw()) for s in ctx.ins}
    if len(ranks) == 1:
        rank = ranks.pop()
        to_last = (0, *range(2, rank), 1)
        back = (0, rank - 1, *range(1, rank - 1))
        return f"{{x}}.permute{to_last}", f"{{x}}.permute{back}"
    axis = _feature_axis(ctx, ctx.ins)
    return f"{{x}}.movedim({axis}, -1)", f"{{x}}.movedim(-1, {axis})"


def layerscale(ctx: LayerCtx) -> Emitted:
    """A parameter of the module, shaped to broadcast: `x * self.layer_scale`, as torchvision's ConvNeXt."""
    c = ctx.in_channels().text
    ones = {len(layerscale_shape(s)) - 1 for s in ctx.ins}  # [C, 1, 1] on a [batch, C, H, W] image
    if len(ones) != 1:
        raise TorchGenError(f"{ctx.name}: one block scales inputs of several ranks; write two blocks")
    n = ones.pop()
    shape = f"({c},)" if n == 0 else f"({c}, {', '.join(['1'] * n)})"
    init = ctx.key("init").text
    return Emitted([Step(ctx.name, f"nn.Parameter(torch.full({shape}, {init}))", call="{x} * {self}")])


def droppath(ctx: LayerCtx) -> Emitted:
    return Emitted([Step(ctx.name, ctor("DropPath", ctx.key("p").text))], helpers=("DropPath",))


def lrn(ctx: LayerCtx) -> Emitted:
    text = ctor(
        "nn.LocalResponseNorm",
        ctx.key("size").text,
        alpha=_kw(ctx.key("alpha"), 1e-4),
        beta=_kw(ctx.key("beta"), 0.75),
        k=_kw(ctx.key("k"), 1.0),  # torch's default k is 1; the spec's is 2
    )
    return _module(ctx, text)


def _feature_axis(ctx: LayerCtx, shapes: Sequence[Shape]) -> str:
    """The axis of the channels (the features, when flat) in the generated code: 1 (2 for a
    sequence held batch x L x C)."""
    axes = [s.layout.channel_axis(order) for s, order in zip(shapes, ctx.orders, strict=True)]
    return ctx.check(None, axes, f"{ctx.name}_dim").text


# Small modules the generated file defines when a layer needs one (torch has none).
HELPERS: dict[str, str] = {
    "CenterCrop": '''class CenterCrop(nn.Module):
    """The centred window of `size` over the last dims; an odd excess cuts its extra row at the end."""

    def __init__(self, size: tuple[int, ...]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis, n in enumerate(self.size, start=x.dim() - len(self.size)):
            x = x.narrow(axis, (x.shape[axis] - n) // 2, n)
        return x
''',
    "DropPath": '''class DropPath(nn.Module):
    """Stochastic depth: in training, each sample is dropped whole with probability p
    (the others scaled by 1/(1-p)); the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)
''',
}


def elementwise(ctx: LayerCtx) -> Emitted:
    """Any element-wise kind, from its row: `nn.LeakyReLU(negative_slope=0.2)`."""
    row = KINDS[ctx.kind].elementwise
    assert row is not None
    keywords: dict[str, str | None] = {}
    for arg in row.args:
        value = ctx.key(arg.key)
        keywords[arg.torch] = value.text if arg.torch_default is None else _kw(value, arg.torch_default)
    if row.over_features:
        keywords["dim"] = _feature_axis(ctx, ctx.ins)
    # not inplace=True: a residual's shortcut or a sibling branch may still read the input
    return _module(ctx, ctor(row.torch, **keywords))


# --- sequences -----------------------------------------------------------------------------
def embedding(ctx: LayerCtx) -> Emitted:
    d = ctx.key("D")
    return _module(ctx, ctor("nn.Embedding", ctx.key("V").text, d.text), d.sym)


def posembed(ctx: LayerCtx) -> Emitted:
    rows = ctx.check(None, [a["T"] or s.dims[0] for a, s in zip(ctx.attrs, ctx.ins, strict=True)], f"{ctx.name}_T")
    text = ctor("PositionalEmbedding", rows.text, ctx.in_channels().text)
    return Emitted([Step(ctx.name, text)], helpers=(Feature.POSITIONS,))


def clstoken(ctx: LayerCtx) -> Emitted:
    text = ctor("ClassToken", ctx.in_channels().text)
    return Emitted([Step(ctx.name, text)], helpers=(Feature.CLASS_TOKEN,))


def rmsnorm(ctx: LayerCtx) -> Emitted:
    # always eps=: nn.RMSNorm's default is the dtype's machine epsilon, not the spec's 1e-6
    return _module(ctx, ctor("nn.RMSNorm", ctx.in_channels().text, eps=ctx.key("eps").text))


def attention(ctx: LayerCtx) -> Emitted:
    features = {Feature.ATTENTION}
    kv = None
    if any(a["kv"] is not None for a in ctx.attrs):
        kv = ctx.key("kv").text
        features.add(Feature.GROUPED)
    rope = rope_base = None
    if any(a["rope"] for a in ctx.attrs):
        rope = _kw(ctx.key("rope"), False)
        rope_base = _kw(ctx.key("rope_base"), 10000.0)
        features.add(Feature.ROTARY)
    text = ctor(
        "Attention",
        ctx.in_channels().text,
        ctx.key("heads").text,
        kv_heads=kv,
        causal=_kw(ctx.key("causal"), False),
        rope=rope,
        rope_base=rope_base,
        bias=_kw(ctx.key("bias"), True),
    )
    return Emitted([Step(ctx.name, text)], helpers=tuple(sorted(features)))


def tokens(ctx: LayerCtx) -> Emitted:
    # [batch, C, H, W] -> [batch, H*W, C]: positions in row-major order, as ViT flattens patches
    return Emitted([Step(None, call="{x}.flatten(2).transpose(1, 2)")])


def select(ctx: LayerCtx) -> Emitted:
    index = ctx.check(None, [a["index"] for a in ctx.attrs], f"{ctx.name}_index")
    return Emitted([Step(None, call=f"{{x}}[:, {index.text}]")])  # a negative index counts from the end


def _broadcast_operands(ctx: LayerCtx) -> list[str]:
    """The merge's operands, a flat `C` branch indexed to `[batch, C, 1, 1]` where it scales an image.

    A `1x1xC` branch broadcasts in torch as it is; a flat one needs its spatial axes added
    (`s[:, :, None, None]`), the same way in every instance of the block.
    """
    out = []
    for i, operand in enumerate(ctx.operands):
        forms = {_broadcast_index(ins[i], ctx.outs[k], ctx.orders[k]) for k, ins in enumerate(ctx.branches)}
        if len(forms) == 1:
            out.append(operand + forms.pop())
        else:  # a block used on flat and spatial inputs alike: reshape to the other operand's rank
            other = ctx.operands[1 - i] if i == 0 else ctx.operands[0]
            out.append(f"{operand}.reshape(*{operand}.shape, *[1] * ({other}.dim() - {operand}.dim()))")
    return out


def _broadcast_index(shape: Shape, out: Shape, order: Physical) -> str:
    """`[:, :, None, None]` for a flat branch merged into an image (channels first), `[:, None, :]`
    into a sequence held batch x L x C; '' when none is needed."""
    if shape.is_spatial or not out.is_spatial:
        return ""
    rank, channels = 1 + len(out.dims), out.layout.channel_axis(order)
    return "[" + ", ".join(":" if i in (0, channels) else "None" for i in range(rank)) + "]"


def add(ctx: LayerCtx) -> Emitted:
    return Emitted([Step(None, call=" + ".join(_broadcast_operands(ctx)))])


def multiply(ctx: LayerCtx) -> Emitted:
    return Emitted([Step(None, call=" * ".join(_broadcast_operands(ctx)))])


def concat(ctx: LayerCtx) -> Emitted:
    return Emitted([Step(None, call=f"torch.cat([{', '.join(ctx.operands)}], dim={_feature_axis(ctx, ctx.outs)})")])


HANDLERS: dict[str, Callable[[LayerCtx], Emitted]] = {
    "conv": conv,
    "maxpool": _pool("nn.MaxPool{}d", 'float("-inf")'),
    "avgpool": _pool("nn.AvgPool{}d", "0"),  # count_include_pad: padding counts as zeros
    "convtranspose": convtranspose,
    "upsample": upsample,
    "crop": crop,
    "adaptiveavgpool": adaptiveavgpool,
    "globalavgpool": globalavgpool,
    "fc": fc,
    "flatten": flatten,
    "batchnorm": batchnorm,
    "layernorm": layernorm,
    "layerscale": layerscale,
    "droppath": droppath,
    "lrn": lrn,
    "add": add,
    "multiply": multiply,
    "concat": concat,
    "embedding": embedding,
    "posembed": posembed,
    "clstoken": clstoken,
    "rmsnorm": rmsnorm,
    "attention": attention,
    "tokens": tokens,
    "select": select,
    **{name: elementwise for name, kind in KINDS.items() if kind.elementwise is not None},
}
