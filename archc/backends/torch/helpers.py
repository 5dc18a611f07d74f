"""Small helper classes of the generated PyTorch source, written only when a spec uses them.

PyTorch has no module for a learned positional table, a class token, or
self-attention over `[batch, L, C]` with grouped key/value heads and rotary
positions, so the generated file defines them, after its imports and before
the spec's classes. Each is written with only the features the spec uses:
GPT-2's `Attention` carries no rotary or grouped-query code.

Handlers ask for them by feature (`Feature`, in `Emitted.helpers` beside the
names of `archc.backends.torch.layers.HELPERS`); `source` writes the classes.
Their names are reserved (`NAMES`): a block named `Attention` becomes class
`Attention_`.

>>> print(source({Feature.CLASS_TOKEN}))  # doctest: +ELLIPSIS
class ClassToken(nn.Module):
    \"\"\"`clstoken`: a learned token placed before the first position of [batch, L, C].\"\"\"
...
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum


class Feature(StrEnum):
    """What a layer asks of the file (`Emitted.helpers`): a class, or a feature of `Attention`."""

    POSITIONS = "PositionalEmbedding"
    CLASS_TOKEN = "ClassToken"
    ATTENTION = "Attention"
    GROUPED = "Attention with kv_heads"
    ROTARY = "RotaryEmbedding"  # and Attention with rope


NAMES = ("PositionalEmbedding", "ClassToken", "Attention", "RotaryEmbedding")

_POSITIONS = '''\
class PositionalEmbedding(nn.Module):
    """`posembed`: adds the first L rows of a learned table of positions to [batch, L, C]."""

    def __init__(self, rows: int, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, channels))
        nn.init.normal_(self.weight)  # as nn.Embedding initialises its table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight[: x.shape[1]]
'''

_CLASS_TOKEN = '''\
class ClassToken(nn.Module):
    """`clstoken`: a learned token placed before the first position of [batch, L, C]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, channels))  # as torchvision's ViT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.weight.expand(x.shape[0], -1, -1), x], dim=1)
'''

_ROTARY = '''\
class RotaryEmbedding(nn.Module):
    """Rotary position embedding of [batch, heads, L, width]: channel i and i + width/2 of the
    vector at position p turn together by the angle p * base**(-2i/width)."""

    def __init__(self, width: int, base: float = 10000.0) -> None:
        super().__init__()
        exponents = torch.arange(0, width, 2, dtype=torch.float64) / width
        self.register_buffer("inv_freq", (base**-exponents).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq).repeat(1, 2)  # [L, width]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * angles.cos().to(x.dtype) + rotated * angles.sin().to(x.dtype)
'''


def _attention(grouped: bool, rotary: bool) -> str:
    params = ["self", "channels: int", "heads: int"]
    if grouped:
        params.append("kv_heads: int | None = None")
    params += ["causal: bool = False"]
    if rotary:
        params += ["rope: bool = False", "rope_base: float = 10000.0"]
    params.append("bias: bool = True")
    init = ["super().__init__()", "self.heads = heads"]
    if grouped:
        init.append("self.kv_heads = heads if kv_heads is None else kv_heads")
        init.append("kv_channels = channels // heads * self.kv_heads")
    init.append("self.causal = causal")
    if rotary:
        init.append("self.rope = RotaryEmbedding(channels // heads, rope_base) if rope else None")
    kv_out = "kv_channels" if grouped else "channels"
    init += [
        "self.q = nn.Linear(channels, channels, bias=bias)",
        f"self.k = nn.Linear(channels, {kv_out}, bias=bias)",
        f"self.v = nn.Linear(channels, {kv_out}, bias=bias)",
        "self.o = nn.Linear(channels, channels, bias=bias)",
    ]
    heads_kv = "self.kv_heads" if grouped else "self.heads"
    forward = [
        "batch, length, channels = x.shape",
        "q = self.q(x).view(batch, length, self.heads, -1).transpose(1, 2)  # [batch, heads, L, width]",
        f"k = self.k(x).view(batch, length, {heads_kv}, -1).transpose(1, 2)",
        f"v = self.v(x).view(batch, length, {heads_kv}, -1).transpose(1, 2)",
    ]
    if rotary:
        forward += ["if self.rope is not None:", "    q, k = self.rope(q), self.rope(k)"]
    if grouped:
        forward += [
            "if self.kv_heads != self.heads:  # each key/value head serves a group of query heads",
            "    k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)",
            "    v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)",
        ]
    forward += [
        "y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)",
        "return self.o(y.transpose(1, 2).reshape(batch, length, channels))",
    ]
    what = ["grouped key/value heads"] if grouped else []
    what += ["rotary positions"] if rotary else []
    extra = f",\n    with {' and '.join(what)}" if what else ""
    head = f"    def __init__({', '.join(params)}) -> None:"
    if len(head) > 100:
        head = "    def __init__(\n" + "".join(f"        {p},\n" for p in params) + "    ) -> None:"
    lines = [
        "class Attention(nn.Module):",
        f'    """`attention`: multi-head self-attention over [batch, L, C]{extra}."""',
        "",
        head,
        *(f"        {line}" for line in init),
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        *(f"        {line}" for line in forward),
    ]
    return "\n".join(lines) + "\n"


def source(features: Collection[Feature]) -> str:
    """The helper classes for `features`, in a fixed order, separated as a formatter would."""
    parts = []
    if Feature.POSITIONS in features:
        parts.append(_POSITIONS)
    if Feature.CLASS_TOKEN in features:
        parts.append(_CLASS_TOKEN)
    if Feature.ROTARY in features:
        parts.append(_ROTARY)
    if Feature.ATTENTION in features:
        parts.append(_attention(Feature.GROUPED in features, Feature.ROTARY in features))
    return "\n\n".join(parts)
