"""Receptive fields: for every layer, the input window one output position sees.

For each node, along H and W: `rf` (window size in input pixels), `jump`
(input pixels between neighbouring outputs: the effective stride) and `start`
(centre of the first output's window, in input pixels, the first pixel's
centre being 0.5). The standard recurrence, for a window of effective size
k = D*(F-1)+1, stride s and leading padding p:

    rf' = rf + (k-1)*jump     jump' = jump*s     start' = start + ((k-1)/2 - p)*jump

Where branches meet (residual add, concat) the largest field over the paths
is kept. `adaptiveavgpool` is a window of its largest bin, its stride the
size ratio (rounded where uneven). Layers that mix every position (fc,
flatten, global pooling) see the whole input: their field is at least the
input's size, with one position (jump = the input's size). A network with a
flat input has no spatial field: no layer gets one.
"""

from __future__ import annotations

from typing import Any

from archc.api import Network
from archc.ir import INPUT
from archc.kinds import resolve_window

Field = tuple[tuple[int, int], tuple[int, int], tuple[float, float]]  # rf, jump, start


def receptive_fields(net: Network) -> dict[str, dict[str, Any]]:
    """`{name: {"rf": [h, w], "jump": [h, w], "start": [h, w]}}` for every layer of a spatial network."""
    shape = net.graph.input_shape
    if not shape.is_spatial:
        return {}
    full = (shape.dims[0], shape.dims[1])
    fields: dict[str, Field] = {INPUT: ((1, 1), (1, 1), (0.5, 0.5))}
    out: dict[str, dict[str, Any]] = {}
    for node in net.graph.nodes:
        ins = [fields[i] for i in node.inputs if i in fields]
        rf, jump, start = max(ins, key=lambda f: f[0][0] * f[0][1])
        facts = net.analysis.facts[node.name]
        if node.kind in ("conv", "maxpool", "avgpool", "adaptiveavgpool"):
            new = [_window(node.kind, node.attrs, facts, axis, rf[axis], jump[axis], start[axis]) for axis in (0, 1)]
            rf = (new[0][0], new[1][0])
            jump = (new[0][1], new[1][1])
            start = (new[0][2], new[1][2])
        elif node.kind in ("fc", "flatten", "globalavgpool") and facts.inputs[0].is_spatial:
            rf = (max(rf[0], full[0]), max(rf[1], full[1]))
            jump, start = full, (full[0] / 2, full[1] / 2)
        fields[node.name] = (rf, jump, start)
        out[node.name] = {"rf": list(rf), "jump": list(jump), "start": list(start)}
    return out


def _window(kind: str, attrs: Any, facts: Any, axis: int, rf: int, jump: int, start: float) -> tuple[int, int, float]:
    """One axis of the recurrence for a windowed layer: (rf, jump, start) after it."""
    if kind == "adaptiveavgpool":
        n, o = facts.inputs[0].dims[axis], facts.output.dims[axis]
        k = max(-(-(i + 1) * n // o) - i * n // o for i in range(o))  # the largest bin
        stride, pad = max(1, round(n / o)), 0
    else:
        win = resolve_window(attrs, facts.inputs[0], kind, kind != "conv")
        k = win.dilation[axis] * (win.kernel[axis] - 1) + 1
        stride, pad = win.stride[axis], win.pads[axis]
    return rf + (k - 1) * jump, jump * stride, start + ((k - 1) / 2 - pad) * jump
