"""`archc import model.onnx`: a model as `torch.onnx.export` writes it, as a spec and its weights.

Both exporters are read: the TorchScript one (node names `/layer1/layer1.0/conv1/Conv`,
often with batchnorm folded into the convolutions) and `dynamo=True` (nodes
carrying `pkg.torch.onnx.name_scopes` and `class_hierarchy`), and archc's own
ONNX back-end (node names are the dotted layer names). The steps:

1. `onnx_file.load`: the file memory-mapped, its graph validated as `archc run`
   validates a model, its large weights left in the file until read.
2. Matching: the nodes, in topological order, are covered by matchers
   (`MATCHERS`: the sequence patterns of `onnx_sequence` first, then the CNN
   operators of `onnx_cnn`); a node no matcher takes and that is not an Add,
   Mul or Concat of two computed values is an error naming the node, its op
   type and its input and output shapes. `onnx_layout.check_layouts` then makes
   sure the sequence Transposes left out (archc's `conv1/to_NLC`) were layouts.
3. `onnx_structure`: merges, the module hierarchy, blocks and repeats, and the
   text with every weight under its state_dict name.

Nothing here imports torch; numpy and onnx only.

>>> import onnx, tempfile, os
>>> from onnx import helper, TensorProto
>>> g = helper.make_graph(
...     [helper.make_node("Relu", ["x"], ["y"], name="/act/Relu")], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
>>> path = os.path.join(tempfile.mkdtemp(), "tiny.onnx")
>>> onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
>>> print(import_onnx(path).text, end="")
network tiny
input 4
act: relu
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx

from archc.importers.common import Imported, ImportFailure, quoted, spec_name
from archc.importers.onnx_cnn import MATCHERS as CNN_MATCHERS
from archc.importers.onnx_file import OnnxImportError, load
from archc.importers.onnx_graph import GraphView, Match, Matcher, Refused
from archc.importers.onnx_layout import CF, LayoutFailure, check_layouts
from archc.importers.onnx_sequence import shape_of
from archc.importers.onnx_structure import (
    Join,
    Leaf,
    StructureError,
    nest,
    render,
    sequence,
    weight_arrays,
)
from archc.limits import DEFAULT_MAX_SIZE


def _matchers() -> tuple[Matcher, ...]:
    """The sequence matchers (attention, layer norm, ...) first: their patterns start with ops
    the CNN matchers would take alone (a MatMul, a Mul)."""
    try:
        from archc.importers.onnx_sequence import MATCHERS as SEQUENCE_MATCHERS  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # the sequence patterns are an optional module until they land
        return CNN_MATCHERS
    return (*SEQUENCE_MATCHERS, *CNN_MATCHERS)


MERGE_OPS = ("Add", "Mul", "Concat")
# the longest `--length`: ONNX's shape inference materialises the positions 0..L-1 it propagates
# (2 GB and 14 s at 10 million); a million is longer than any model's context
MAX_LENGTH = 1 << 20


def import_onnx(path: str | Path, max_size: int = DEFAULT_MAX_SIZE, length: int | None = None) -> Imported:
    """The spec text and weights of the ONNX model at `path` (raises `ImportFailure`); `length`
    fixes a sequence length the model leaves open (`dynamic_axes` on it)."""
    path = Path(path)
    if length is not None and not 1 <= length <= MAX_LENGTH:
        raise ImportFailure(f"--length {length}: archc imports at 1 to {MAX_LENGTH:,} positions", str(path))
    try:
        loaded = load(path, max_size)
    except OnnxImportError as e:
        raise ImportFailure(str(e)) from e
    view = GraphView(loaded.model, loaded.readers, loaded.shapes, length)
    _check_free(view, path, length)
    try:
        items, order = _with_room(_match, view, path)
        text, weights = _with_room(_spec, view, items, path, order)
    except RecursionError as e:
        raise ImportFailure(f"{path}: the graph is too deep to import (over {_FRAMES:,} frames of nesting)") from e
    return Imported(text, path.name, weights)


def _check_free(view: GraphView, path: Path, length: int | None) -> None:
    """A spec has one fixed input shape: a model that leaves a dimension besides the batch open
    is imported at the `length` given for it, or refused, naming the input and the axis."""
    def axes() -> str:
        return ", ".join(f"axis {axis}" + (f" ({symbol!r})" if symbol else "") for _, axis, symbol in view.free)

    if not view.free:
        if length is not None:
            raise ImportFailure(
                f"--length {length}: the model fixes the shape of its input, "
                f"{', '.join(repr(i) for i in view.inputs)}: nothing to set",
                str(path), "import it without --length")
        return
    inputs = sorted({name for name, _, _ in view.free})
    if len(view.free) > 1:
        raise ImportFailure(
            f"the input {', '.join(map(repr, inputs))} leaves {len(view.free)} dimensions besides the batch "
            f"open ({axes()}): a spec has one fixed input shape", str(path),
            "export the model with fixed sizes (no dynamic_axes / dynamic_shapes but on the batch)")
    if length is None:
        raise ImportFailure(
            f"the input {inputs[0]!r} leaves its sequence length open ({axes()}): a spec has a fixed "
            "length (`input L tokens`, `input LxC`)", str(path),
            "pass --length L to import it at L positions, or export the model with a fixed sequence length")


# The structure walks recurse along chains of nodes, not only into merges: ResNet-152 or a
# `repeat 400 { relu }` needs more than Python's 1,000 frames. They run in a thread of their
# own with a deep stack (reserved, not committed) and a raised recursion limit.
_STACK = 512 << 20
_FRAMES = 100_000
_T = TypeVar("_T")


def _with_room(fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(*args)` with room to recurse `_FRAMES` deep; its exceptions are raised here."""
    result: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the calling thread, raised there
            failure.append(e)

    old_stack, old_limit = threading.stack_size(_STACK), sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, _FRAMES))
    try:
        worker = threading.Thread(target=run, name="archc-import")
        worker.start()
        worker.join()
    finally:
        threading.stack_size(old_stack)
        sys.setrecursionlimit(old_limit)
    if failure:
        raise failure[0]
    return result[0]


def _fail(view: GraphView, path: Path, node: onnx.NodeProto, why: str, hint: str | None = None) -> ImportFailure:
    return ImportFailure(f"{view.describe(node)}: {why}", str(path), hint)


def _match(view: GraphView, path: Path) -> tuple[list[Leaf | Join], str | None]:
    """The layers and merges, and the order the model holds its input in (a sequence's)."""
    matchers = _matchers()
    consumed: set[str] = set()
    alias: dict[str, str] = {}
    items: list[Leaf | Join] = []
    passed: list[tuple[int, Match]] = []  # the matches that pass their input on, in node order

    def resolve(value: str) -> str:
        while value in alias:
            value = alias[value]
        return value

    for index, node in enumerate(view.node_list):
        key = view.key(node)
        if key in consumed or all(view.is_static(o) for o in node.output if o):
            continue
        match: Match | None = None
        try:
            for matcher in matchers:
                match = matcher(view, node)
                if match is not None:
                    break
        except Refused as e:
            raise _fail(view, path, node, f"archc cannot import it: {e}") from e
        if match is not None:
            _check_closed(view, path, match, node)
            consumed |= match.nodes
            if not match.statement:
                alias[match.output] = resolve(match.input)
                passed.append((index, match))
            else:
                items.append(Leaf(match, resolve(match.input), index, node))
            continue
        dynamic = [resolve(i) for i in node.input if i and not view.is_static(i)]
        if node.op_type == "Concat" and len(node.input) == 1 and dynamic:  # torch.cat of one tensor
            alias[node.output[0]] = dynamic[0]
            continue
        if node.op_type in MERGE_OPS and len(dynamic) >= 2 and len(dynamic) == len([i for i in node.input if i]):
            if node.op_type == "Concat" and not _channel_concat(view, node):
                raise _fail(view, path, node, "a concatenation along an axis other than the channels")
            items.append(Join(node, dynamic, node.output[0], index))
            continue
        raise _fail(
            view, path, node, "no archc layer matches this node",
            "archc imports the operators docs/import-onnx.md lists; write this part of the spec by hand",
        )
    order = None
    if len(view.inputs) == 1 and len(view.outputs) == 1:
        try:
            order = check_layouts(view, items, passed, view.inputs[0], view.outputs[0])
        except LayoutFailure as e:
            raise _fail(view, path, e.node, f"archc cannot import it: {e}") from e
    for item in items:
        if isinstance(item, Join):
            item.inputs = [resolve(i) for i in item.inputs]
    _running_concats(items)
    view.outputs = [resolve(o) for o in view.outputs]
    return items, order


def _running_concats(items: list[Leaf | Join]) -> None:
    """DenseNet's running concatenation: `cat(x, y1, ..., yk)` where `cat(x, y1, ..., yk-1)` is
    also computed is that concatenation and `yk`, so each layer's step is one
    `concat { branch { identity } branch { layer } }` of what came before (the same channels in
    the same order)."""
    concats = {tuple(j.inputs): j for j in items if isinstance(j, Join) and j.node.op_type == "Concat"}
    for join in concats.values():
        for k in range(len(join.inputs) - 1, 1, -1):
            prefix = concats.get(tuple(join.inputs[:k]))
            if prefix is not None and prefix is not join and prefix.index < join.index:
                join.inputs = [prefix.output, *join.inputs[k:]]
                break


def _check_closed(view: GraphView, path: Path, match: Match, node: onnx.NodeProto) -> None:
    """A match may hide no value another node reads: else the import would drop a computation."""
    for k in match.nodes:
        inner = view.nodes[k]
        for o in inner.output:
            if not o or o == match.output:
                continue
            # a Shape of it is no computation to lose (the TorchScript exporter reads the shape of
            # torchvision's attention output for the Reshape after it)
            outside = [c for c in view.consumers(o)
                       if view.key(c) not in match.nodes and not all(view.is_static(x) for x in c.output if x)]
            if outside or o in view.outputs:
                raise _fail(view, path, node, f"it reads as '{match.statement}', but {o!r} is also used elsewhere")


def _channel_concat(view: GraphView, node: onnx.NodeProto) -> bool:
    shape = shape_of(view, node.output[0])  # a concat of a crop computed from shapes has no inferred shape
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    rank = len(shape) if shape else 0
    return (rank >= 2 and (axis if axis >= 0 else axis + rank) == 1) or (rank == 3 and axis in (2, -1))


def _spec(view: GraphView, items: list[Leaf | Join], path: Path, order: str | None) -> tuple[str, dict[str, np.ndarray]]:
    if len(view.inputs) != 1 or len(view.outputs) != 1:
        raise ImportFailure(
            f"the model has {len(view.inputs)} inputs and {len(view.outputs)} outputs; archc imports "
            "networks of one input and one output", str(path))
    (x,), (y,) = view.inputs, view.outputs
    if not view.node_list:
        raise ImportFailure(
            f"the graph has no nodes: its output {quoted(y)} is its input {quoted(x)}", str(path),
            "a spec has at least one layer: write `input ...` and `identity` by hand if that is the network",
        )
    header = [f"network {_network_name(path)}", _input_line(view, x, items, path, order)]
    if y == x and not items:  # only Identity or Dropout nodes (aliases): the network passes its input on
        return "\n".join([*header, "identity", ""]), {}
    try:
        body = sequence(view, items, x, y)
    except StructureError as e:
        if e.node is None:
            raise ImportFailure(str(e), str(path)) from e
        raise _fail(view, path, e.node, str(e)) from e
    classes: dict[tuple[str, ...], str] = {}
    for node in view.node_list:
        classes.update(view.scope_classes(node))
    entries = nest(body, view)
    text, layers = render(entries, classes, header)
    return text, weight_arrays(layers)


def _network_name(path: Path) -> str:
    return spec_name(path.stem) if path.stem else "imported"  # `network.onnx` -> `network_`, `café` -> `caf_`


def _name_and_shape(x: str, shape: tuple[int, ...] | list[int] | None) -> str:
    return quoted(x) + (f" ({'x'.join(map(str, shape))})" if shape is not None else "")


def _input_line(view: GraphView, x: str, items: list[Leaf | Join], path: Path, order: str | None) -> str:
    shape = view.shape(x)
    if shape is None or not 2 <= len(shape) <= 5:
        what = "no known shape" if shape is None else f"{len(shape)} axes"
        raise ImportFailure(
            f"the input {_name_and_shape(x, shape)} has {what}: a spec's input has 2 to 5 axes, the batch first "
            "(N C, N C L, N C H W or N C D H W)", str(path),
        )
    dims = shape[1:]
    if min(dims) < 1:
        raise ImportFailure(
            f"the input {_name_and_shape(x, shape)} has an empty axis: a spec's sizes are positive", str(path)
        )
    if view.types.get(x) == onnx.TensorProto.INT64 and len(dims) == 1:
        for item in items:  # token ids: a spec reads them with an embedding, nothing else
            if isinstance(item, Leaf) and item.input == x and not item.match.statement.startswith("embedding "):
                raise _fail(view, path, item.node, f"it reads the integer input {quoted(x)} (token ids)",
                            "archc reads integer inputs as token ids, into an embedding (a Gather of a table)")
        return f"input {dims[0]} tokens"
    if len(dims) == 1:
        return f"input {dims[0]}"
    if len(dims) == 2:  # a sequence: [C, L] before a convolution, [L, C] before sequence layers
        first = next((i for i in items if isinstance(i, Leaf) and i.input == x), None)
        channels_first = order == CF if order is not None else (  # `check_layouts` found how it is read
            first is not None and first.node.op_type in ("Conv", "MaxPool", "AveragePool", "BatchNormalization"))
        length, channels = (dims[1], dims[0]) if channels_first else dims
        return f"input {length}x{channels}"
    return "input " + "x".join(str(d) for d in (*dims[1:], dims[0]))
