"""Receptive fields: for every layer, the input window one output position sees.

For each node, along H and W: `rf` (window size in input pixels), `jump`
(input pixels between neighbouring outputs: the effective stride) and `start`
(centre of the first output's window, in input pixels, the first pixel's
centre being 0.5). The standard recurrence, for a window of effective size
k = D*(F-1)+1, stride s and leading padding p:

    rf' = rf + (k-1)*jump     jump' = jump*s     start' = start + ((k-1)/2 - p)*jump

Where branches meet (residual add, concat) the largest field over the paths
is kept. Layers that mix every position (fc, flatten, global and adaptive
pooling) see the whole input: their field is the input's size.
"""

from __future__ import annotations

from typing import Any

from archc.api import Network
from archc.ir import INPUT
from archc.registry import resolve_window

Field = tuple[tuple[int, int], tuple[int, int], tuple[float, float]]  # rf, jump, start


def receptive_fields(net: Network) -> dict[str, dict[str, Any]]:
    """`{name: {"rf": [h, w], "jump": [h, w], "start": [h, w]}}` for every layer."""
    shape = net.graph.input_shape
    full = (shape.dims[0], shape.dims[1]) if shape.is_spatial else (shape.dims[0], 1)
    fields: dict[str, Field] = {INPUT: ((1, 1), (1, 1), (0.5, 0.5))}
    out: dict[str, dict[str, Any]] = {}
    for node in net.graph.nodes:
        ins = [fields[i] for i in node.inputs if i in fields]
        rf, jump, start = max(ins, key=lambda f: f[0][0] * f[0][1])
        if node.kind in ("conv", "maxpool", "avgpool"):
            facts = net.analysis.facts[node.name]
            win = resolve_window(node.attrs, facts.inputs[0], node.kind, node.kind != "conv")
            new = []
            for axis in (0, 1):
                k = win.dilation[axis] * (win.kernel[axis] - 1) + 1
                new.append(
                    (
                        rf[axis] + (k - 1) * jump[axis],
                        jump[axis] * win.stride[axis],
                        start[axis] + ((k - 1) / 2 - win.pads[axis]) * jump[axis],
                    )
                )
            rf = (new[0][0], new[1][0])
            jump = (new[0][1], new[1][1])
            start = (new[0][2], new[1][2])
        elif node.kind in ("fc", "flatten", "globalavgpool", "adaptiveavgpool"):
            rf, start = full, (full[0] / 2, full[1] / 2)
        fields[node.name] = (rf, jump, start)
        out[node.name] = {"rf": list(rf), "jump": list(jump), "start": list(start)}
    return out
