"""Which way each sequence is held, and whether the Transposes the import leaves out are layouts.

archc's language holds `LxC` channels first (`[batch, C, L]`) around convolutions,
pooling and batchnorm and channels last (`[batch, L, C]`) around fc, attention and
the other sequence layers (`archc.analysis.orders`); its ONNX back-end writes a
`Transpose` (0, 2, 1) where one meets the other (`conv1/to_NLC`), and so does
torch's `Conv1d -> x.transpose(1, 2) -> Linear`. A spec never states a layout,
so the matcher `onnx_cnn.layout` leaves every such Transpose out, and this pass,
run once every node is matched, checks that doing so changed nothing:

- each layer with a preferred order (`Traits.sequence`: conv, batchnorm, flatten
  channels first; fc, attention, rmsnorm channels last; a layer norm read through
  Transposes channels first, else last) reads a value the model holds that way;
- the values an Add or Mul joins are held alike, and a Concat of the channels
  (axis 1, or 2) joins values held channels first (last);
- the network's input and output are held as archc would hold them for the
  imported spec (the input as the first layer downstream with an order reads
  it, the output as what makes it), so the spec's ONNX takes and gives the
  model's own tensors.

A Conv1d reading a transposed Conv1d's output (which convolves over the
channels) fails the first rule: an error at the Transpose, or at the layer
where no Transpose is to blame (an fc's `[batch, L, C]` output read by a Conv1d
as `[batch, C, L]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from archc.importers.onnx_graph import GraphView, Match, Refused
from archc.importers.onnx_sequence import shape_of
from archc.importers.onnx_structure import Join, Leaf
from archc.ir import Physical
from archc.kinds import KINDS

CF, CL = Physical.CHANNELS_FIRST, Physical.CHANNELS_LAST
FREE, FREE_SWAPPED = "the input's", "the input's swapped"  # the input's order until a layer reads it


def _flip(order: str | None) -> str | None:
    return {CF: CL, CL: CF, FREE: FREE_SWAPPED, FREE_SWAPPED: FREE}.get(order or "")


def _wants(view: GraphView, leaf: Leaf) -> tuple[str | None, str | None]:
    """The order a matched layer reads its sequence in and gives its own: its kind's
    (`Traits.sequence`), None for either where the kind keeps what it gets."""
    kind = _kind(leaf)
    if kind == "layernorm":  # over the channels: through Transposes of a map, or on the last axis
        return (CF, CF) if leaf.node.op_type == "Transpose" else (CL, CL)
    if kind == "layerscale":  # a [C] vector broadcasts on the last axis, [C, 1] on the first
        w = leaf.match.weights.get("")
        return (CL, CL) if w is None or w.ndim == 1 else (CF, CF)
    if kind == "softmax":  # over the channels: axis 1 of [b, C, L], the last of [b, L, C]
        axis = next((a.i for a in leaf.node.attribute if a.name == "axis"), -1 if view.opset >= 13 else 1)
        return (CF, CF) if axis == 1 else (CL, CL)
    wanted = KINDS[kind].traits.sequence if kind in KINDS else None
    return wanted, wanted


@dataclass
class _Pass:
    view: GraphView
    free: str | None = None  # what the input's order turned out to be, once a layer read it
    held: dict[str, str] = field(default_factory=dict)  # ONNX value -> how the model holds it
    archc: dict[str, str] = field(default_factory=dict)  # ONNX value -> how archc would hold it
    swaps: dict[str, onnx.NodeProto] = field(default_factory=dict)  # value -> the Transpose left out before it

    def sequence(self, value: str) -> bool:
        shape = shape_of(self.view, value)
        return shape is not None and len(shape) == 3

    def order(self, value: str) -> str | None:
        found = self.held.get(value)
        if found in (FREE, FREE_SWAPPED) and self.free is not None:
            return self.free if found == FREE else _flip(self.free)
        return found

    def read(self, value: str, wanted: str, node: onnx.NodeProto, what: str) -> None:
        """`node` reads `value` in order `wanted`: the model must hold it so."""
        held = self.order(value)
        if held in (FREE, FREE_SWAPPED):
            self.free = wanted if held == FREE else _flip(wanted)
        elif held is not None and held != wanted:
            swap = self.swaps.get(value)
            if swap is not None:
                raise _LayoutError(swap, f"it turns a sequence held {_flip(held)} into one held {held}, but {what} "
                                         f"reads it {wanted}: this Transpose mixes positions and channels, a "
                                         "computation archc's language cannot say (only a layout change is left out)")
            raise _LayoutError(node, f"{what} reads a sequence held {held} as {wanted} (its positions as channels)")


class _LayoutError(Exception):
    def __init__(self, node: onnx.NodeProto, why: str) -> None:
        super().__init__(why)
        self.node = node


def check_layouts(
    view: GraphView, items: list[Leaf | Join], passed: list[tuple[int, Match]], x: str, y: str
) -> str | None:
    """The order the model holds its sequence input in (None when it is no sequence); raises
    `LayoutFailure` at the node where leaving out the Transposes in `passed` (the matches of
    no statement, in node order: each passes its input on) would change what the model computes."""
    run = _Pass(view)
    if run.sequence(x):
        run.held[x] = FREE
        run.archc[x] = _archc_input(view, items, passed, x)
    events: list[tuple[int, Leaf | Join | Match]] = [(i.index, i) for i in items]
    events += passed
    events.sort(key=lambda e: e[0])
    try:
        for _, event in events:
            if isinstance(event, Match):
                _pass_on(run, event)
            elif isinstance(event, Leaf):
                _layer(run, event)
            else:
                _join(run, event)
        if run.sequence(x) and run.free is None:
            run.free = run.archc[x]  # read by nothing with an order: as archc would hold it
        for value, node in ((x, None), (y, view.producer(y))):
            held, archc = run.order(value), run.archc.get(value)
            if held is not None and archc is not None and held != archc:
                blame = run.swaps.get(value) or node or next(iter(run.swaps.values()), None)
                if blame is None:
                    break
                where = "input" if value == x else "output"
                raise _LayoutError(blame, f"the model holds its {where} sequence {held}, where archc holds the "
                                          f"imported spec's {archc} (as its first layer with an order reads the input, "
                                          "and the last layer gives the output); export the model taking and giving "
                                          "its sequences in that layout")
    except _LayoutError as e:
        raise LayoutFailure(e.node, str(e)) from e
    return run.order(x) if run.sequence(x) else None


class LayoutFailure(Refused):
    """A Transpose the import would leave out that is a computation (or a model whose input or
    output the imported spec would hold the other way): `node` is where to report it."""

    def __init__(self, node: onnx.NodeProto, why: str) -> None:
        super().__init__(why)
        self.node = node


def _pass_on(run: _Pass, match: Match) -> None:
    """A match of no statement: its output is its input (a layout Transpose: swapped)."""
    node = run.view.producer(match.output)
    if not run.sequence(match.output) or not run.sequence(match.input):
        return
    swap = node is not None and node.op_type == "Transpose"
    held = run.held.get(match.input)
    if held is not None:
        run.held[match.output] = (_flip(held) or held) if swap else held
    if match.input in run.archc:
        run.archc[match.output] = run.archc[match.input]
    if swap and node is not None:
        run.swaps[match.output] = node
    elif match.input in run.swaps:
        run.swaps[match.output] = run.swaps[match.input]


def _layer(run: _Pass, leaf: Leaf) -> None:
    reads, gives = _wants(run.view, leaf)
    source = leaf.match.input
    if reads is not None and run.sequence(source):
        run.read(source, reads, leaf.node, f"'{leaf.match.statement}'")
    out = leaf.match.output
    if not run.sequence(out):
        return
    if gives is not None:
        run.held[out] = run.archc[out] = gives
        return
    if source in run.held:
        run.held[out] = run.held[source]
    if source in run.archc:
        run.archc[out] = run.archc[source]
    if source in run.swaps:
        run.swaps[out] = run.swaps[source]


def _join(run: _Pass, join: Join) -> None:
    inputs = [i for i in join.node.input if i and run.sequence(i)]
    if not inputs or not run.sequence(join.output):
        return
    what = f"the {join.node.op_type} {join.node.name or '(unnamed)'!r}"
    if join.node.op_type == "Concat":
        axis = next((a.i for a in join.node.attribute if a.name == "axis"), 0) % 3
        wanted: str | None = CF if axis == 1 else CL  # the channels: axis 1 of [b, C, L], 2 of [b, L, C]
    else:  # element-wise: the inputs held alike (a [C, L] + [L, C] of C == L would mix them)
        wanted = next((o for o in map(run.order, inputs) if o in (CF, CL)), None)
    for i in inputs:
        if wanted is not None:
            run.read(i, wanted, join.node, what)
    first = inputs[0]
    held = wanted or run.order(first)
    if held is not None:
        run.held[join.output] = held
    if first in run.archc:
        run.archc[join.output] = run.archc[first]  # archc brings the other inputs to the first's order
    for i in inputs:
        if i in run.swaps:
            run.swaps[join.output] = run.swaps[i]


def _archc_input(view: GraphView, items: list[Leaf | Join], passed: list[tuple[int, Match]], x: str) -> str:
    """As `archc.analysis.orders` holds the spec's input: the order of the first layer downstream
    of it (through layers and merges of none) that has one; channels last when none does."""
    reached = {x}
    through = {m.output: m.input for _, m in passed}
    for item in sorted(items, key=lambda i: i.index):
        inputs = [item.match.input] if isinstance(item, Leaf) else [i for i in item.node.input if i]
        resolved = set()
        for i in inputs:
            while i in through and i not in reached:
                i = through[i]
            resolved.add(i)
        if not reached & resolved:
            continue
        if isinstance(item, Leaf):
            kind = _kind(item)
            preferred = KINDS[kind].traits.sequence if kind in KINDS else None
            if preferred is not None:
                return preferred
        reached.add(item.output)
    return CL


def _kind(leaf: Leaf) -> str:
    """The kind of a matched layer (the first, where a statement holds several)."""
    return leaf.match.statement.split(";")[0].split()[0]
