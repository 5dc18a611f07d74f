"""How generated code holds each sequence: `batch x C x L` or `batch x L x C`.

LANGUAGE.md's table of layouts: a sequence `LxC` is `batch x C x L` around
convolutions and pooling and `batch x L x C` around sequence layers. Each kind
says which it wants (`Traits.sequence`); element-wise kinds and merges take
either and keep it. This pass gives every sequence value (the input and each
layer's output) its order, once, for both back-ends:

- a kind with a preference reads its sequence inputs in that order and gives
  its sequence output in it; a back-end transposes an input held the other way;
- a kind without one gives the order of its first sequence input (a merge's
  other inputs are transposed to it);
- the network's input is held as the first kind downstream of it that has a
  preference wants it (through kinds without one), else `batch x L x C`.

So `input 16000x1` before a 1-D conv is `[batch, 1, 16000]`, `input 100x64`
before attention `[batch, 100, 64]`, and a transpose appears only where a
sequence passes from a convolution to a sequence layer or back.
"""

from __future__ import annotations

from collections.abc import Mapping

from archc.ir import INPUT, Graph, Layout, Node, Physical, Shape
from archc.kinds import KINDS

DEFAULT = Physical.CHANNELS_LAST  # a sequence no kind has a preference for


def reads(node: Node, orders: Mapping[str, Physical]) -> Physical:
    """The order in which `node` reads its inputs: for sequences, as above; anything else
    (an image, a flat vector) is held channels first."""
    if not any(i in orders for i in node.inputs):
        return Physical.CHANNELS_FIRST
    return _gives(node, orders)


def _gives(node: Node, orders: Mapping[str, Physical]) -> Physical:
    """The order of a layer's sequence output: its kind's, else that of its first sequence input."""
    wanted = KINDS[node.kind].traits.sequence
    if wanted is not None:
        return wanted
    return next((orders[i] for i in node.inputs if i in orders), DEFAULT)


def assign(graph: Graph, shapes: Mapping[str, Shape]) -> dict[str, Physical]:
    """The order of every sequence value: the input's and each layer's output (by name).

    `shapes` holds the input's and every analysed layer's output shape.
    """
    orders: dict[str, Physical] = {}
    if graph.input_shape.layout is Layout.SEQUENCE:
        orders[INPUT] = _wanted_downstream(graph)
    for node in graph.nodes:
        shape = shapes.get(node.name)
        if shape is not None and shape.layout is Layout.SEQUENCE:
            orders[node.name] = _gives(node, orders)
    return orders


def _wanted_downstream(graph: Graph) -> Physical:
    """The preference of the first kind that reads the input, directly or through kinds without one."""
    reached = {INPUT}
    for node in graph.nodes:
        if not reached.intersection(node.inputs):
            continue
        wanted = KINDS[node.kind].traits.sequence
        if wanted is not None:
            return wanted
        reached.add(node.name)
    return DEFAULT
