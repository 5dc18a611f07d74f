"""Kinds that join branches: elementwise `add` (also a residual's sum), `multiply`, and `concat`.

The front end makes them from `residual { } shortcut { }`, `concat { branch { } ... }`,
`add { branch { } ... }` and `multiply { branch { } ... }`; they are not written as layers.

`add` and `multiply` broadcast as the contract says: branches must end at the same
shape, except that one ending at `1x1xC` (`1xC`, `1x1x1xC`) or at a flat `C` scales or
shifts every position of the others (squeeze-and-excitation). A residual's sum
does not broadcast: its body and shortcut must have equal shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from archc.ir import Shape
from archc.kinds.kind import (
    ANY_FEATURES,
    Applied,
    Attrs,
    Counts,
    Family,
    Key,
    KeyType,
    LayerKind,
    Line,
    Merge,
    ShapeError,
    Topic,
    Traits,
    Window,
)
from archc.kinds.windows import window_out


def pointwise(shape: Shape) -> bool:
    """A shape that broadcasts over positions: flat `C`, or 1 at every spatial dim (`1x1xC`)."""
    return all(n == 1 for n in shape.spatial)


def broadcast_target(ins: Sequence[Shape]) -> Shape:
    """The shape an elementwise merge gives: the first branch that is not pointwise
    (else the first spatial one, `1x1xC` over `C`); raises ShapeError when a branch fits neither rule."""
    full = [s for s in ins if not pointwise(s)]
    target = full[0] if full else next((s for s in ins if s.is_spatial), ins[0])
    for i, s in enumerate(ins, start=1):
        if s == target:
            continue
        fits = pointwise(s) and s.channels == target.channels and (not s.is_spatial or s.layout is target.layout)
        if not fits:
            first = ins.index(target) + 1
            hint = (
                f"end every branch at {target.text()}, or at {_pointwise_text(target)} or {target.channels} "
                "to scale every position (as squeeze-and-excitation does)"
            )
            raise ShapeError(
                f"branch {first} ends at {target.text()} but branch {i} at {s.text()}: the shapes of an "
                "elementwise merge must be equal, or one must be per channel",
                hint=hint,
            )
    return target


def _pointwise_text(shape: Shape) -> str:
    return shape.resized((1,) * shape.layout.spatial_rank).text() if shape.is_spatial else shape.text()


def _add_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    if attrs.get("broadcast"):
        return broadcast_target(ins)
    body, shortcut = ins
    if body != shortcut:
        # Suggest the projection that fits when there is one (a 1x1 conv with the
        # body's channels and the stride that maps H, the same ratio along every dim), not a template.
        example = "shortcut { conv K=<channels> F=1 S=<stride> }"
        if body.is_spatial and shortcut.is_spatial and body.layout is shortcut.layout:
            ratios = {-(-n // m) for n, m in zip(shortcut.spatial, body.spatial, strict=True)}
            stride = -(-shortcut.spatial[0] // body.spatial[0])
            if (
                len(ratios) == 1
                and window_out(shortcut.spatial[0], 1, stride, 0, 0, 1, False) == body.spatial[0]
            ):
                example = f"shortcut {{ conv K={body.channels} F=1{f' S={stride}' if stride > 1 else ''} }}"
        elif not body.is_spatial:
            example = f"shortcut {{ fc {body.numel} }}"
        raise ShapeError(
            f"residual body outputs {body.text()} but the shortcut gives {shortcut.text()}",
            hint=f"add a shortcut that maps {shortcut.text()} to {body.text()}, e.g. {example}",
        )
    return body


def _multiply_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    return broadcast_target(ins)


def _concat_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    first = ins[0]
    if all(not s.is_spatial for s in ins):
        return Shape.flat(sum(s.numel for s in ins))
    spatial = next(s for s in ins if s.is_spatial).layout
    for i, s in enumerate(ins[1:], start=2):
        if not s.is_spatial or s.layout is not first.layout or s.spatial != first.spatial:
            raise ShapeError(
                f"concat branches must end at the same {' and '.join(spatial.spatial_axes)}: "
                f"branch 1 ends at {first.text()}, branch {i} at {s.text()}",
                hint="give the branches the same stride and padding (P=same keeps H and W)",
            )
    return first.resized(first.spatial, sum(s.channels for s in ins))


def _elementwise_explain(symbol: str, noun: str) -> Callable[[Applied, Counts], list[Line]]:
    def explain(layer: Applied, counts: Counts) -> list[Line]:
        shapes = f" {symbol} ".join(s.text() for s in layer.ins)
        if not layer.attrs.get("broadcast") and symbol == "+":  # a residual: body + shortcut
            text = f"body {layer.ins[0].text()} + shortcut {layer.ins[1].text()}, element by element = {layer.out.text()}"
        elif all(s == layer.out for s in layer.ins):
            text = f"{shapes}, element by element = {layer.out.text()}"
        else:
            per = ", ".join(s.text() for s in layer.ins if s != layer.out)
            text = f"{shapes} = {layer.out.text()}: {per} holds one value per channel, applied at every position"
        return [Line(Topic.SHAPE, text), Line(Topic.PARAMS, f"no parameters (a {noun})")]

    return explain


def _concat_explain(layer: Applied, counts: Counts) -> list[Line]:
    if not layer.out.is_spatial:
        sizes = " + ".join(str(s.numel) for s in layer.ins)
        text = f"{sizes} = {layer.out.numel} features, the branches end to end"
    else:
        channels = " + ".join(str(s.channels) for s in layer.ins)
        where = "x".join(str(n) for n in layer.out.spatial)
        text = f"channels {channels} = {layer.out.channels}, every branch at {where}: {layer.out.text()}"
    return [Line(Topic.SHAPE, text), Line(Topic.PARAMS, "no parameters")]


_MERGE_TRAITS = (Family.MERGE, ANY_FEATURES)

KINDS = (
    LayerKind(
        "add",
        "Elementwise sum of branches (written `add { branch {...} ... }`, or a residual's body + shortcut).",
        _add_infer,
        Traits(*_MERGE_TRAITS, merge=Merge("+", "sum")),
        example="add { branch { relu } branch { identity } }",
        explain=_elementwise_explain("+", "sum"),
        keys=(
            Key(
                "broadcast",
                KeyType.BOOL,
                False,
                doc="whether per-channel branches scale every position (add { }; a residual's sum has equal shapes)",
            ),
        ),
        user=False,
        arity=0,
    ),
    LayerKind(
        "multiply",
        "Elementwise product of branches (written `multiply { branch {...} ... }`): squeeze-and-excitation.",
        _multiply_infer,
        Traits(*_MERGE_TRAITS, merge=Merge("×", "product")),
        example="multiply { branch { identity } branch { sigmoid } }",
        explain=_elementwise_explain("*", "product"),
        user=False,
        arity=0,
    ),
    LayerKind(
        "concat",
        "Channel concatenation of branches (written `concat { branch {...} ... }`).",
        _concat_infer,
        Traits(*_MERGE_TRAITS, merge=Merge("concat", "concatenation")),
        example="concat { branch { relu } branch { identity } }",
        explain=_concat_explain,
        user=False,
        arity=0,
    ),
)
