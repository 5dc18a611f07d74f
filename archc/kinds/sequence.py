"""Sequence kinds (contract v2): token embeddings, positions, a class token, RMSNorm,
attention, and the reshapes between images and sequences (`tokens`, `select`).

A sequence `LxC` is held `batch x L x C` by all of them (`Traits.sequence`), as
PyTorch's sequence modules hold it; `archc.analysis.orders` says where generated
code transposes to meet a kind that wants channels first.

>>> import archc
>>> net = archc.loads("input 16 tokens\\nembedding V=100 D=32\\nattention 4 kv=2 causal=true")
>>> [(f.kind, f.output.text(), f.weights, f.macs) for f in net.analysis.facts.values()]
[('embedding', '16x32', 3200, 0), ('attention', '16x32', 3072, 65536)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from archc.ir import Layout, Physical, Shape
from archc.kinds.kind import (
    SEQUENCE,
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
    same_shape,
)

LAST = Physical.CHANNELS_LAST
ROPE_BASE = 10000.0  # LANGUAGE.md: "rotary position embedding (base 10000)"


def _n(value: int) -> str:
    return f"{value:,}"


# --- embedding ---------------------------------------------------------------------------
def _embedding_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return Shape.of(Layout.SEQUENCE, (ins[0].dims[0], attrs["D"]))


def _embedding_tensors(layer: Applied) -> tuple[Tensor, ...]:
    return (Tensor("weight", (layer.attrs["V"], layer.attrs["D"]), Role.WEIGHT, Init.NORMAL),)


def _embedding_explain(layer: Applied, counts: Counts) -> list[Line]:
    v, d = layer.attrs["V"], layer.attrs["D"]
    return [
        Line(Topic.SHAPE, f"each of the {layer.ins[0].dims[0]:,} token ids picks a row of {d}"),
        Line(Topic.PARAMS, f"{v}*{d} = {_n(counts.weights)} weights (one row per token id)"),
        Line(Topic.MACS, "a table lookup: no MACs"),
    ]


# --- positions and the class token ----------------------------------------------------------
def _posembed_check(attrs: Attrs, ins: Sequence[Shape]) -> None:
    rows, length = attrs["T"], ins[0].dims[0]
    if rows is not None and rows < length:
        raise ShapeError(
            f"posembed T={rows} has fewer rows than the {length} positions of its input {ins[0].text()}",
            key="T",
            hint=f"T must be at least L ({length}); leave T out for a table of exactly L rows",
        )


def _rows(layer: Applied) -> int:
    rows: int | None = layer.attrs["T"]
    return layer.ins[0].dims[0] if rows is None else rows


def _posembed_tensors(layer: Applied) -> tuple[Tensor, ...]:
    # A table of positions, as GPT-2's nn.Embedding `wpe` is: initialised as nn.Embedding is.
    return (Tensor("weight", (_rows(layer), layer.ins[0].channels), Role.WEIGHT, Init.NORMAL),)


def _posembed_explain(layer: Applied, counts: Counts) -> list[Line]:
    rows, (length, c) = _rows(layer), layer.ins[0].dims
    used = "all of them" if rows == length else f"the first {length} of them"
    return [
        Line(Topic.SHAPE, f"adds a learned row of {c} to each position: {rows} rows, {used}"),
        Line(Topic.PARAMS, f"{rows}*{c} = {_n(counts.weights)} weights"),
    ]


def _clstoken_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    length, c = ins[0].dims
    return Shape.of(Layout.SEQUENCE, (length + 1, c))


def _clstoken_tensors(layer: Applied) -> tuple[Tensor, ...]:
    # [1, 1, C] and zeros, as torchvision's ViT holds and initialises its class_token
    return (Tensor("weight", (1, 1, layer.ins[0].channels), Role.WEIGHT, Init.ZEROS),)


def _clstoken_explain(layer: Applied, counts: Counts) -> list[Line]:
    length, c = layer.ins[0].dims
    return [
        Line(Topic.SHAPE, f"a learned token placed first: {length} + 1 = {length + 1} positions"),
        Line(Topic.PARAMS, f"{c} weights"),
    ]


# --- RMSNorm ------------------------------------------------------------------------------
def _rmsnorm_tensors(layer: Applied) -> tuple[Tensor, ...]:
    return (Tensor("weight", (layer.ins[0].channels,), Role.WEIGHT, Init.ONES),)


def _rmsnorm_explain(layer: Applied, counts: Counts) -> list[Line]:
    c = layer.ins[0].channels
    return [Line(Topic.PARAMS, f"{c} scales (no shift): x / sqrt(mean(x^2 over {c}) + eps) * scale")]


# --- attention ------------------------------------------------------------------------------
def kv_heads(attrs: Attrs) -> int:
    """The key/value heads: `kv`, or `heads` when it is not written."""
    kv: int | None = attrs["kv"]
    heads: int = attrs["heads"]
    return heads if kv is None else kv


def kv_width(attrs: Attrs, channels: int) -> int:
    """E = C*kv/heads: the width of the key and value projections."""
    heads: int = attrs["heads"]
    return channels // heads * kv_heads(attrs)


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _attention_check(attrs: Attrs, ins: Sequence[Shape]) -> None:
    c, heads, kv = ins[0].channels, attrs["heads"], kv_heads(attrs)
    if c % heads:
        raise ShapeError(
            f"attention heads={heads} does not divide the {c} channels of {ins[0].text()}",
            key="heads",
            hint=f"heads must divide C={c}: one of {_divisors(c)}",
        )
    if heads % kv:
        raise ShapeError(
            f"attention kv={kv} does not divide heads={heads}: each key/value head serves a whole "
            "group of query heads",
            key="kv",
            hint=f"kv must divide heads={heads}: one of {_divisors(heads)}",
        )
    if attrs["rope"] and (c // heads) % 2:
        raise ShapeError(
            f"rotary position embedding turns pairs of channels, but each head has {c // heads} (odd)",
            key="rope",
            hint="choose heads so that C/heads is even",
        )


def _attention_tensors(layer: Applied) -> tuple[Tensor, ...]:
    c = layer.ins[0].channels
    e = kv_width(layer.attrs, c)
    out: list[Tensor] = []
    for proj, n in (("q", c), ("k", e), ("v", e), ("o", c)):  # nn.Linear(C, n) each
        out.append(Tensor(f"{proj}.weight", (n, c), Role.WEIGHT, Init.KAIMING_UNIFORM, c))
        if layer.attrs["bias"]:
            out.append(Tensor(f"{proj}.bias", (n,), Role.BIAS, Init.FAN_IN_UNIFORM, c))
    return tuple(out)


def _attention_macs(layer: Applied, weights: int) -> int:
    """LANGUAGE.md: `L*(2*C*C + 2*C*E)` for the projections plus `2*L*L*C` for the scores and
    the weighted sum (the full L*L, also when causal)."""
    length, c = layer.ins[0].dims
    e = kv_width(layer.attrs, c)
    return length * (2 * c * c + 2 * c * e) + 2 * length * length * c


def _attention_explain(layer: Applied, counts: Counts) -> list[Line]:
    a = layer.attrs
    length, c = layer.ins[0].dims
    heads, kv = a["heads"], kv_heads(a)
    width = c // heads
    e = kv_width(a, c)
    shape = f"heads {heads} x {width} = {c}"
    if kv != heads:
        shape += f", kv {kv} x {width} = {e}"
    bias = f" + {_n(counts.biases)} biases" if a["bias"] else " (no bias)"
    if e == c:
        projections = f"q,k,v,o: 4 x ({c}*{c})"
    else:
        projections = f"q,o: 2 x ({c}*{c}) + k,v: 2 x ({c}*{e})"
    lines = [Line(Topic.PARAMS, f"{shape}; {projections} = {_n(counts.weights)} weights{bias}")]
    if kv != heads:
        lines.append(Line(Topic.SHAPE, f"grouped-query: each key/value head serves {heads // kv} query heads"))
    if a["causal"]:
        lines.append(Line(Topic.SHAPE, "causal: position i attends to positions 0..i"))
    if a["rope"]:
        lines.append(Line(Topic.SHAPE, f"rotary position embedding (base {a['rope_base']:g}) on queries and keys"))
    project = length * (2 * c * c + 2 * c * e)
    scores = 2 * length * length * c
    lines.append(
        Line(
            Topic.MACS,
            f"projections {length}*{_n(2 * c * c + 2 * c * e)} = {_n(project)} + scores and weighted sum "
            f"2*{length}*{length}*{c} = {_n(scores)}: {_n(counts.macs)} MACs",
        )
    )
    return lines


# --- reshapes -----------------------------------------------------------------------------
def _tokens_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return Shape.of(Layout.SEQUENCE, (math.prod(ins[0].spatial), ins[0].channels))


def _tokens_explain(layer: Applied, counts: Counts) -> list[Line]:
    shape = layer.ins[0]
    positions = "*".join(str(n) for n in shape.spatial)
    order = ", ".join(shape.layout.spatial_axes)
    return [
        Line(
            Topic.SHAPE,
            f"{shape.text()} -> ({positions})x{shape.channels} = {layer.out.text()}, "
            f"positions in row-major order ({order}; {shape.layout.spatial_axes[-1]} fastest)",
        )
    ]


def select_index(attrs: Attrs, length: int) -> int:
    """The position `select` picks, counted from the start: `select -1` on 197 positions is 196."""
    index: int = attrs["index"]
    return index + length if index < 0 else index


def _select_check(attrs: Attrs, ins: Sequence[Shape]) -> None:
    length, index = ins[0].dims[0], attrs["index"]
    if not -length <= index < length:
        raise ShapeError(
            f"select {index} is out of range for the {length} positions of {ins[0].text()}",
            key="index",
            hint=f"positions are 0..{length - 1} from the start, or -1..-{length} from the end",
        )


def _select_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return Shape.flat(ins[0].channels)


def _select_explain(layer: Applied, counts: Counts) -> list[Line]:
    length = layer.ins[0].dims[0]
    index = select_index(layer.attrs, length)
    written = layer.attrs["index"]
    which = f"position {index}" if written >= 0 else f"position {written} = {length}{written} = {index}"
    return [Line(Topic.SHAPE, f"{which} of {length}: {layer.out.text()} features")]


_SEQUENCE_TRAITS = Traits(Family.EMBEDDING, SEQUENCE, sequence=LAST)

KINDS = (
    LayerKind(
        "embedding",
        "Token embedding: each token id picks a learned row of D (a table of V rows).",
        _embedding_infer,
        Traits(Family.EMBEDDING, frozenset({Layout.TOKENS}), sequence=LAST),
        example="embedding V=100 D=8",
        keys=(
            Key("V", KeyType.POS_INT, doc="the vocabulary size (rows of the table)"),
            Key("D", KeyType.POS_INT, doc="the width of each row"),
        ),
        tensors=_embedding_tensors,
        explain=_embedding_explain,
    ),
    LayerKind(
        "posembed",
        "Learned positions: adds the first L rows of a TxC table.",
        same_shape,
        _SEQUENCE_TRAITS,
        example="posembed T=20",
        keys=(Key("T", KeyType.POS_INT, None, doc="the number of rows in the table (default: the input's L; at least L)"),),
        check=_posembed_check,
        tensors=_posembed_tensors,
        explain=_posembed_explain,
    ),
    LayerKind(
        "clstoken",
        "A learned class token placed before the first position: LxC -> (L+1)xC.",
        _clstoken_infer,
        _SEQUENCE_TRAITS,
        example="clstoken",
        tensors=_clstoken_tensors,
        explain=_clstoken_explain,
    ),
    LayerKind(
        "rmsnorm",
        "RMS normalisation over C at every position, with a learned scale.",
        same_shape,
        Traits(Family.NORM, frozenset({Layout.FLAT, Layout.SEQUENCE}), sequence=LAST),
        example="rmsnorm eps=1e-5",
        keys=(Key("eps", KeyType.POS_FLOAT, 1e-6, doc="the constant added to the mean square"),),
        tensors=_rmsnorm_tensors,
        explain=_rmsnorm_explain,
    ),
    LayerKind(
        "attention",
        "Multi-head self-attention over the positions (kv heads, causal mask, rotary positions).",
        same_shape,
        Traits(Family.ATTENTION, SEQUENCE, mixes_positions=True, sequence=LAST),
        example="attention 2 kv=1 causal=true rope=true bias=false",
        keys=(
            Key("heads", KeyType.POS_INT, doc="the number of query heads (each of width C/heads)"),
            Key("kv", KeyType.POS_INT, None, doc="the number of key/value heads (default: heads; fewer: grouped-query)"),
            Key("causal", KeyType.BOOL, False, doc="whether to mask later positions"),
            Key("rope", KeyType.BOOL, False, doc="whether to apply rotary position embeddings to queries and keys"),
            Key("rope_base", KeyType.POS_FLOAT, ROPE_BASE, doc="the rotary embedding's base"),
            Key("bias", KeyType.BOOL, True, doc="whether to learn biases in the four projections"),
        ),
        positional="heads",
        check=_attention_check,
        tensors=_attention_tensors,
        macs=_attention_macs,
        explain=_attention_explain,
    ),
    LayerKind(
        "tokens",
        "An image as a sequence: HxWxC -> (H*W)xC, positions in row-major order.",
        _tokens_infer,
        Traits(Family.RESHAPE, frozenset({Layout.IMAGE, Layout.VOLUME}), sequence=LAST),
        example="tokens",
        explain=_tokens_explain,
    ),
    LayerKind(
        "select",
        "One position of a sequence: LxC -> C (0 the first, -1 the last).",
        _select_infer,
        Traits(Family.RESHAPE, SEQUENCE, sequence=LAST),
        example="select -1",
        keys=(Key("index", KeyType.INT, doc="the position (negative: from the end)"),),
        positional="index",
        check=_select_check,
        explain=_select_explain,
    ),
)
