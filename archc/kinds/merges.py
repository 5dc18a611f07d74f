"""Kinds that join branches: a residual's add and concat. The front end makes them from
`residual { } shortcut { }` and `concat { branch { } ... }`; they are not written as layers."""

from __future__ import annotations

from collections.abc import Sequence

from archc.ir import Shape
from archc.kinds.kind import FLAT_OR_SPATIAL, Attrs, Family, LayerKind, Merge, ShapeError, Traits, Window
from archc.kinds.windows import window_out


def _add_infer(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
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


KINDS = (
    LayerKind(
        "add",
        "The sum of a residual's body and shortcut (written `residual {...}`).",
        _add_infer,
        Traits(Family.MERGE, FLAT_OR_SPATIAL, merge=Merge("+", "residual's sum")),
        example="residual { relu }",
        user=False,
        arity=2,
    ),
    LayerKind(
        "concat",
        "Channel concatenation of branches (written `concat { branch {...} ... }`).",
        _concat_infer,
        Traits(Family.MERGE, FLAT_OR_SPATIAL, merge=Merge("concat", "concatenation")),
        example="concat { branch { relu } branch { identity } }",
        user=False,
        arity=0,
    ),
)
