"""The layer kinds: one `KINDS` table, filled by one module per family.

`windows` (conv and pooling), `resampling` (convtranspose, upsample, crop),
`dense` (fc, flatten), `norms` (batchnorm, layernorm, lrn, layerscale),
`activations` (element-wise kinds as table rows, and droppath) and `merges`
(add, multiply, concat) and `sequence` (embeddings, attention and the
kinds of sequence models);
`kind` holds what they share. `apply` is how the analysis applies a kind to
its inputs; `tensors` lists a network's tensors from the kinds' declarations.

Adding a kind: a `LayerKind` in its family's module, one handler per back-end
(`archc.backends.torch.layers`, `archc.backends.onnx.generate`; an element-wise
row needs none), a row in docs/language.md. `tests/test_kinds.py` fails until
each is there.
"""

from __future__ import annotations

from collections.abc import Sequence

from archc.ir import Graph, Layout, Shape
from archc.ir import verify as verify_structure
from archc.kinds import activations, dense, merges, norms, resampling, sequence, windows
from archc.kinds.kind import REQUIRED as REQUIRED
from archc.kinds.kind import Applied as Applied
from archc.kinds.kind import Attrs as Attrs
from archc.kinds.kind import Counts as Counts
from archc.kinds.kind import Elementwise as Elementwise
from archc.kinds.kind import Family as Family
from archc.kinds.kind import Key as Key
from archc.kinds.kind import KeyArg as KeyArg
from archc.kinds.kind import KeyType as KeyType
from archc.kinds.kind import LayerKind as LayerKind
from archc.kinds.kind import Line as Line
from archc.kinds.kind import ShapeError as ShapeError
from archc.kinds.kind import Topic as Topic
from archc.kinds.kind import Traits as Traits
from archc.kinds.kind import Window as Window
from archc.kinds.kind import WindowKind as WindowKind
from archc.kinds.kind import coerce as coerce
from archc.kinds.kind import per_dimension as per_dimension
from archc.kinds.kind import per_dimension_attrs as per_dimension_attrs
from archc.kinds.kind import same_value as same_value
from archc.kinds.kind import show_value as show_value
from archc.kinds.windows import Uneven as Uneven
from archc.kinds.windows import resolve_window as resolve_window
from archc.kinds.windows import uneven_division as uneven_division
from archc.kinds.windows import window_explain as window_explain

KINDS: dict[str, LayerKind] = {
    k.name: k
    for family in (windows, resampling, dense, norms, activations, merges, sequence)
    for k in family.KINDS
}
# The words CHOICE keys take (`mode=nearest`, `approx=tanh`): values, as `same` and `true` are.
CHOICE_WORDS = frozenset(word for k in KINDS.values() for key in k.keys for word in key.choices)

USER_KINDS = tuple(name for name, k in KINDS.items() if k.user)

_WINDOWED = (WindowKind.CONV, WindowKind.POOL)


def apply(kind: LayerKind, attrs: Attrs, ins: Sequence[Shape]) -> tuple[Shape, Window | None]:
    """The output shape of a layer, and its window when it has one; raises ShapeError.

    In order: the input's layout, the kind's own preconditions, the window, the shape rule.
    """
    for shape in ins:
        if shape.layout not in kind.traits.layouts:
            raise _wrong_layout(kind, shape)
    kind.check(attrs, ins)
    window = None
    if kind.traits.window in _WINDOWED:
        window = windows.resolve_window(attrs, ins[0], kind)
    elif kind.traits.window is WindowKind.TRANSPOSED:
        window = resampling.resolve_transposed(attrs, ins[0], kind)
    return kind.infer(attrs, ins, window), window


def _wrong_layout(kind: LayerKind, shape: Shape) -> ShapeError:
    if shape.layout is Layout.TOKENS:  # LANGUAGE.md: "the first layer must be an embedding"
        return ShapeError(
            f"{kind.name} cannot read token ids ({shape.text()}): the layer after `input T tokens` "
            "must be an embedding",
            hint="add `embedding V=<vocabulary> D=<width>` first, e.g. embedding V=50257 D=768",
        )
    if Layout.TOKENS in kind.traits.layouts:
        return ShapeError(
            f"{kind.name} reads token ids, but its input is the {shape.layout.noun} {shape.text()}",
            hint="declare the input as token ids: `input 1024 tokens`",
        )
    if Layout.SEQUENCE in kind.traits.layouts and shape.layout.spatial_rank > 1:
        return ShapeError(
            f"{kind.name} needs a sequence (LxC), but its input is the {shape.layout.noun} {shape.text()}",
            hint="add `tokens` first: it turns HxWxC into a sequence of (H*W)xC",
        )
    accepted = sorted(kind.traits.layouts, key=list(Layout).index)
    names = [layout.value for layout in accepted]
    forms = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    spatial = all(layout.spatial_rank for layout in accepted)
    needs = f"a spatial input ({forms})" if spatial else f"an input of {forms}"
    # A flat input's hint depends on where it came from (the input line, an fc): the analysis gives it.
    return ShapeError(f"{kind.name} needs {needs}, but its input is the {shape.layout.noun} {shape.text()}")


def verify(graph: Graph) -> Graph:
    """`archc.ir.verify` with the registry's kinds and arities: the full IR check the tests run."""
    return verify_structure(graph, {name: k.arity for name, k in KINDS.items()})
