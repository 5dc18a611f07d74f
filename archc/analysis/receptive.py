"""Receptive fields: for every layer, the input window one output position sees.

For each node, along each spatial dim (H and W of an image): `rf` (window
size in input pixels), `jump` (input pixels between neighbouring outputs: the
effective stride) and `start` (centre of the first output's window, in input
pixels, the first pixel's centre being 0.5). The standard recurrence, for a
window of effective size k = D*(F-1)+1, stride s and leading padding p:

    rf' = rf + (k-1)*jump     jump' = jump*s     start' = start + ((k-1)/2 - p)*jump

Where branches meet (add, multiply, concat) the largest field over the paths
is kept. A transposed convolution, upsampling and cropping move fields by
their kind's own rule (`archc.kinds.resampling`): the first two shrink the
jump below one input step. `adaptiveavgpool` is a window of its largest bin, its stride the
size ratio (rounded where uneven). Layers that mix every position (fc,
flatten, global pooling) see the whole input: their field is at least the
input's size, with one position (jump = the input's size). A network with a
flat input has no spatial field: no layer gets one. Nor does a windowed
layer over positions of another rank than the input's (a 1-D conv over the
`tokens` of an image: its window is no box of the image), nor any layer
that only it feeds.
"""

from __future__ import annotations

import math
from typing import Any

from archc.analysis.analyze import Analysis, LayerFacts
from archc.ir import INPUT
from archc.kinds import KINDS, WindowKind

Field = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]  # rf, jump, start; one entry per spatial dim


def receptive_fields(analysis: Analysis) -> dict[str, dict[str, Any]]:
    """`{name: {"rf": [h, w], "jump": [h, w], "start": [h, w]}}` for every layer of a spatial network."""
    shape = analysis.graph.input_shape
    if not shape.is_spatial:
        return {}
    full = shape.spatial
    rank = len(full)
    fields: dict[str, Field] = {INPUT: ((1,) * rank, (1,) * rank, (0.5,) * rank)}
    out: dict[str, dict[str, Any]] = {}
    for node in analysis.graph.nodes:
        ins = [fields[i] for i in node.inputs if i in fields]
        if not ins:  # only after a layer without a field
            continue
        rf, jump, start = max(ins, key=lambda f: math.prod(f[0]))
        facts = analysis.facts[node.name]
        kind = KINDS[node.kind]
        traits = kind.traits
        windowed = kind.receptive is not None or facts.window is not None or traits.window is WindowKind.ADAPTIVE
        if windowed and not len(facts.inputs[0].spatial) == rank == len(facts.output.spatial):
            continue  # a window over `tokens` of an image: its positions are no box of the input's
        if kind.receptive is not None:  # convtranspose, upsample, crop: the kind's own rule
            layer = facts.applied(node.attrs)
            new = [kind.receptive(layer, axis, rf[axis], jump[axis], start[axis]) for axis in range(rank)]
            rf = tuple(r for r, _, _ in new)
            jump = tuple(j for _, j, _ in new)
            start = tuple(s for _, _, s in new)
        elif facts.window is not None or traits.window is WindowKind.ADAPTIVE:
            new = [_window(facts, axis, rf[axis], jump[axis], start[axis]) for axis in range(rank)]
            rf = tuple(r for r, _, _ in new)
            jump = tuple(j for _, j, _ in new)
            start = tuple(s for _, _, s in new)
        elif traits.mixes_positions and facts.inputs[0].is_spatial and facts.output.spatial != facts.inputs[0].spatial:
            # (fc on a sequence keeps its positions: each output sees its own position only)
            rf = tuple(max(r, n) for r, n in zip(rf, full, strict=True))
            jump, start = full, tuple(n / 2 for n in full)
        fields[node.name] = (rf, jump, start)
        out[node.name] = {"rf": _numbers(rf), "jump": _numbers(jump), "start": list(start)}
    return out


def _numbers(values: tuple[float, ...]) -> list[float | int]:
    """Whole numbers as ints (a field of 7, a jump of 2); a jump that upsampling made 0.5 stays a float."""
    return [int(v) if float(v).is_integer() else v for v in values]


def _window(facts: LayerFacts, axis: int, rf: float, jump: float, start: float) -> tuple[float, float, float]:
    """One axis of the recurrence for a windowed layer: (rf, jump, start) after it."""
    win = facts.window
    if win is None:  # adaptive pooling: its windows follow from the input and output sizes
        n, o = facts.inputs[0].spatial[axis], facts.output.spatial[axis]
        k = max(-(-(i + 1) * n // o) - i * n // o for i in range(o))  # the largest bin
        stride, pad = max(1, round(n / o)), 0
    else:
        k = win.dilation[axis] * (win.kernel[axis] - 1) + 1
        stride, pad = win.stride[axis], win.begin[axis]
    return rf + (k - 1) * jump, jump * stride, start + ((k - 1) / 2 - pad) * jump
