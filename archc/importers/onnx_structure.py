"""From matched layers to spec text: merges, the module hierarchy, blocks and repeats.

Three steps, each on the result of the one before:

1. **Merges** (`sequence`): the matched layers form a graph over ONNX values.
   Where a value is read by several layers (a fork), its branches must meet
   again in one Add, Mul or Concat of those branches: that becomes a
   `residual` (an Add of equal shapes; the longer branch is the body), an
   `add` (a broadcast Add), a `multiply` or a `concat`. Anything else (a
   fork whose branches never meet, or meet in pieces) is an error.
2. **Hierarchy** (`nest`): each layer's module path (`layer1.0.conv1`) says
   which module it is in; consecutive statements of one module become one
   scope. A paramless layer whose path is itself a module with children is a
   functional call in that module (`F.relu` in `forward`), else a module of
   its own (`self.relu`).
3. **Blocks** (`render`): each scope is a block call. Scopes whose bodies are
   the same but for integers are calls of one block; an integer that varies
   between them becomes a parameter (named after the key it sets: `K`, `S`),
   or an expression of one (`K*4`) where it is always a multiple. A module's
   consecutive children `0, 1, ...` that are the same call with the same
   arguments become a `repeat`; when they are all of the module, the module
   is the repeat (`layer1: repeat 3 { Bottleneck K=64 }`, names
   `layer1.0.conv1` as PyTorch's). Other numbered children are named `_0`,
   ..., or `first` and `rest` for one child and a repeat of the others.

Every layer with weights is named (generated names are never relied on), so
the weights' state_dict names are known here: `render` returns them with the text.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import onnx

from archc.importers.common import KEYWORDS
from archc.importers.onnx_graph import GraphView, Match
from archc.importers.onnx_sequence import shape_of
from archc.kinds import KINDS


class StructureError(Exception):
    """The graph cannot be written with archc's merges; `node` is where (for the message)."""

    def __init__(self, message: str, node: onnx.NodeProto | None = None) -> None:
        super().__init__(message)
        self.node = node


# --- step 1: merges ---------------------------------------------------------------------------
@dataclass(eq=False)
class Leaf:
    match: Match
    input: str
    index: int
    node: onnx.NodeProto

    @property
    def output(self) -> str:
        return self.match.output


@dataclass(eq=False)
class Join:
    node: onnx.NodeProto
    inputs: list[str]
    output: str
    index: int


@dataclass(eq=False)
class Merge:
    form: str  # residual, add, multiply, concat
    join: Join
    branches: list[list[Leaf | Merge]]
    operands: list[list[Leaf | Merge]]  # the branches in the order the join reads them


def sequence(view: GraphView, items: list[Leaf | Join], start: str, end: str) -> list[Leaf | Merge]:
    """The items from the value `start` to `end` as a sequence of layers and merges."""
    readers: dict[str, list[Leaf | Join]] = {}
    for item in items:
        for value in dict.fromkeys([item.input] if isinstance(item, Leaf) else item.inputs):
            readers.setdefault(value, []).append(item)
    order = {id(item): k for k, item in enumerate(items)}

    def reach(first: Leaf | Join) -> set[int]:
        seen: set[int] = set()
        work = [first]
        while work:
            item = work.pop()
            if id(item) in seen:
                continue
            seen.add(id(item))
            work.extend(readers.get(item.output, []))
        return seen

    def chain(value: str, stop: Join | None) -> tuple[list[Leaf | Merge], str]:
        out: list[Leaf | Merge] = []
        while True:
            nexts = readers.get(value, [])
            if stop is not None and all(r is stop for r in nexts) and nexts:
                return out, value
            if value == end and stop is None:
                if nexts:
                    raise StructureError(f"the output {value!r} is also read inside the graph", view.producer(value))
                return out, value
            if not nexts:
                raise StructureError(f"the value {value!r} is read by nothing and is not the output", view.producer(value))
            if len(nexts) == 1 and isinstance(nexts[0], Leaf):
                out.append(nexts[0])
                value = nexts[0].output
                continue
            if len(nexts) == 1:  # a merge reached from one side: its other inputs come from elsewhere
                join = nexts[0]
                assert isinstance(join, Join)
                raise StructureError(
                    "its inputs do not all branch from one value (archc writes merges of branches "
                    "that start together)", join.node)
            merged, value = fork(value, nexts)
            out += merged

    def fork(value: str, nexts: list[Leaf | Join]) -> tuple[list[Leaf | Merge], str]:
        """The merges of the branches that start at `value`, innermost first: a residual whose
        body starts with another residual forks twice at one value."""
        # a head: the items a branch has so far, the reader it goes on from (None: from `value`
        # at its end), and all it reaches
        heads: list[tuple[list[Leaf | Merge], Leaf | Join | None, str, set[int]]] = [
            ([], r, value, reach(r)) for r in nexts]
        while len(heads) > 1:
            counts: dict[int, int] = {}
            for *_, seen in heads:
                for k in seen:
                    counts[k] = counts.get(k, 0) + 1
            shared = [items[order[k]] for k, n in counts.items() if n > 1]
            joins = sorted((j for j in shared if isinstance(j, Join)), key=lambda j: order[id(j)])
            if not joins or joins[0].inputs.count(value) > 1:
                raise StructureError(
                    f"the {len(nexts)} readers of {value!r} do not meet again in one Add, Mul or Concat",
                    view.producer(value))
            join = joins[0]
            meeting = [h for h in heads if id(join) in h[3]]
            branches: dict[str, list[Leaf | Merge]] = {}
            for done, reader, at, _ in meeting:
                if reader is join:
                    body, ends = done, at
                elif isinstance(reader, Leaf):
                    rest, ends = chain(reader.output, join)
                    body = [*done, reader, *rest]
                elif reader is None:
                    rest, ends = chain(at, join)
                    body = [*done, *rest]
                else:  # another merge, reached from this side only
                    raise StructureError(
                        "its inputs do not all branch from one value (archc writes merges of branches "
                        "that start together)", reader.node)
                if ends not in join.inputs or ends in branches:
                    raise StructureError("its branches do not meet in one merge", join.node)
                branches[ends] = body
            if sorted(branches) != sorted(join.inputs):
                raise StructureError(
                    "its inputs do not all branch from one value (archc writes merges of branches "
                    "that start together)", join.node)
            merge = _merge(view, join, [branches[i] for i in join.inputs])
            heads = [h for h in heads if id(join) not in h[3]]
            heads.append(([merge], None, join.output, reach(join)))
        done, reader, at, _ = heads[0]
        if reader is not None:  # one reader left of several: they met before it
            raise StructureError("its branches do not meet in one merge", view.producer(value))
        return done, at

    def chain_from(first: Leaf, stop: Join) -> tuple[list[Leaf | Merge], str]:
        rest, ends = chain(first.output, stop)
        return [first, *rest], ends

    body, _ = chain(start, None)
    return body


def _merge(view: GraphView, join: Join, branches: list[list[Leaf | Merge]]) -> Merge:
    op = join.node.op_type
    flat = _flattened(view, join, branches)
    if flat is not None:  # `a + b + c`: one add of three branches, not a residual in a residual
        return Merge({"Concat": "concat", "Mul": "multiply"}.get(op, "add"), join, flat, flat)
    if op == "Concat":
        return Merge("concat", join, branches, branches)
    if op == "Mul":
        return Merge("multiply", join, branches, branches)
    # shape_of: GPT-2's first shortcut (the embeddings' sum) has no shape after the TorchScript
    # exporter's Range of positions stops ONNX's inference. The shapes of the Add's own inputs,
    # not of the values the import reads them as: a 1-D attention (held channels last) around a
    # convolution's output (first) reads it through a Transpose the import leaves out; and equal
    # sizes: an `expand_as` left out is a broadcast, not a residual
    shapes = {shape_of(view, i) for i in join.node.input if i}
    sizes = {math.prod(s) if s is not None else None for s in (shape_of(view, i) for i in join.inputs)}
    if len(branches) == 2 and len(shapes) == 1 and len(sizes) == 1:
        body, shortcut = sorted(branches, key=_size, reverse=True)
        return Merge("residual", join, [body, shortcut] if shortcut else [body], branches)
    return Merge("add", join, branches, branches)


def _flattened(view: GraphView, join: Join, branches: list[list[Leaf | Merge]]) -> list[list[Leaf | Merge]] | None:
    """The branches of one n-ary merge where a branch is only another merge of the same kind of
    branches from the same fork (`Add(Add(a, b), c)`, as `a + b + c` is exported), computing
    exactly what the nodes compute: a concat's inner concats in their places (along the same
    axis); the first inner sum or product first, then the other operand, as `+` and `*` are
    commutative but not associative in floating point. None where there is nothing to flatten."""
    op = join.node.op_type

    def same(b: list[Leaf | Merge]) -> Merge | None:
        inner = b[0] if len(b) == 1 and isinstance(b[0], Merge) else None
        if inner is None or inner.join.node.op_type != op or len(inner.operands) < 2:
            return None
        return inner if op != "Concat" or _axis(view, inner.join.node) == _axis(view, join.node) else None

    inners = [same(b) for b in branches]
    if op == "Concat":
        if not any(inners):
            return None
        return [part for b, m in zip(branches, inners, strict=True) for part in (m.operands if m else [b])]
    first = next((k for k, m in enumerate(inners) if m), None)
    if first is None or len(branches) != 2:
        return None
    inner = inners[first]
    assert inner is not None
    return [*inner.operands, branches[1 - first]]


def _axis(view: GraphView, node: onnx.NodeProto) -> int:
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    shape = view.shape(node.output[0])
    return axis + len(shape) if axis < 0 and shape else axis


def _size(branch: list[Leaf | Merge]) -> int:
    return sum(1 if isinstance(s, Leaf) else 1 + sum(_size(b) for b in s.branches) for s in branch)


# --- step 2: hierarchy ------------------------------------------------------------------------
Path = tuple[str, ...]


@dataclass(eq=False)
class LayerE:
    leaf: Leaf
    name: str | None


@dataclass(eq=False)
class MergeE:
    form: str
    branches: list[list[Entry]]
    name: str | None = None  # its label, where the model gives one (archc's own ONNX)


@dataclass(eq=False)
class ScopeE:
    name: str
    path: Path
    entries: list[Entry]
    layer: bool = False  # a layer's own module (a merge sunk into it): its class names no block
    # filled by `render`: the body's text with integer slots, and the integers
    template: Template | None = None


@dataclass(eq=False)
class RepeatE:
    name: str
    copies: list[ScopeE]


Entry = LayerE | MergeE | ScopeE | RepeatE
_E = TypeVar("_E", LayerE, ScopeE)  # what `_outside_merges` collects


def _path(text: str) -> Path:
    return tuple(p for p in text.split(".") if p)


def nest(body: list[Leaf | Merge], view: GraphView) -> list[Entry]:
    """The sequence as scopes: statements of one module grouped under its name.

    A merge goes in the module its sum is computed in. Where that would open one child
    module twice in a scope (`for m in self.l: x = m(x) + x` sums in the parent: `l`,
    then `l` again), each such merge goes instead in the deepest module that holds all
    its layers (`l.0`, `l.1`, ...), so the child opens once and its numbered children are
    a repeat; no weight's name changes, as merges name nothing."""
    containers: set[Path] = set()
    layers: set[Path] = set()
    for leaf in _leaves(body):
        if leaf.match.weights:
            p = _path(leaf.match.name)
            layers.add(p)
            containers.update(p[:k] for k in range(len(p)))
    sunk: dict[int, Path] = {}
    owners: dict[int, Path] = {}

    def owner(item: Leaf | Merge) -> Path:
        if isinstance(item, Leaf):
            p = _path(item.match.name)
            if item.match.weights or p not in containers:
                return p[:-1]
            return p
        if id(item) in sunk:
            return sunk[id(item)]
        if id(item) not in owners:
            own = _path(view.module_path(item.join.node))
            paths = [own if own in containers or not own else own[:-1]]
            paths += [owner(s) for b in item.branches for s in b]
            owners[id(item)] = _common(paths)
        return owners[id(item)]

    def here(item: Leaf | Merge, base: Path) -> bool:
        """Whether the item is written in the scope `base` itself (not in a child's)."""
        o = owner(item)
        return o[: len(base)] != base or len(o) == len(base)

    def opened(items: list[Leaf | Merge], base: Path) -> list[str]:
        """The children of `base` that placing `items` there opens, once per opening."""
        names: list[str] = []
        last = None
        for item in items:
            if here(item, base):
                last = None
                if isinstance(item, Merge):
                    for b in item.branches:
                        names += opened(b, base)
                continue
            child = owner(item)[len(base)]
            if child != last:
                names.append(child)
                last = child
        return names

    def inner(item: Merge, base: Path) -> Path:
        """The deepest module holding every layer of the merge (a layer with weights being its own
        module; a paramless one computed in `base` itself, as `F.relu` there, goes along)."""
        paths: list[Path] = []
        for s in _leaves([item]):
            p = _path(s.match.name)
            o = p if s.match.weights else owner(s)
            if s.match.weights or not here(s, base):
                paths.append(o)
        found = _common(paths) if paths else base
        return found if len(found) > len(base) and found[: len(base)] == base else base

    def sink(items: list[Leaf | Merge], base: Path, twice: set[str]) -> bool:
        moved = False
        for item in items:
            if not isinstance(item, Merge) or not here(item, base):
                continue
            if not set(opened([item], base)) & twice:
                continue
            target = inner(item, base)
            if target != base:
                sunk[id(item)] = target
                owners.clear()  # the merges around it may now sit deeper too
                moved = True
            else:
                for b in item.branches:
                    moved |= sink(b, base, twice)
        return moved

    def label(item: Merge, base: Path) -> str | None:
        """A merge's own name (`a: add {`): archc's ONNX names its last node after the merge
        (`u.a`); a torch exporter names the module the sum is computed in, no label."""
        own = _path(view.module_path(item.join.node))
        if not view.archc_names or id(item) in sunk or own in containers or own[:-1] != base or not own:
            return None
        return own[-1]

    def place(items: list[Leaf | Merge], base: Path, taken: dict[str, int] | None = None) -> list[Entry]:
        """The items as the entries of the scope `base`; `taken` counts the children opened in
        it so far (the branches of its merges are in it too)."""
        names = opened(items, base)
        while len(set(names)) < len(names):
            before = dict(sunk)
            if not sink(items, base, {n for n in names if names.count(n) > 1}):
                break
            now = opened(items, base)
            if len(now) - len(set(now)) >= len(names) - len(set(names)):  # no better: a shared module
                sunk.clear()
                sunk.update(before)
                owners.clear()
                break
            names = now
        taken = {} if taken is None else taken
        out: list[Entry] = []
        for item in items:
            if here(item, base):
                out.append(_entry(item, base, lambda b: place(b, base, taken), label))
                continue
            child = owner(item)[len(base)]
            path = (*base, child)
            last = out[-1] if out else None
            if isinstance(last, ScopeE) and last.path == path:
                last.entries.append(item)  # type: ignore[arg-type]  # placed below
                continue
            # a module called again apart from its first call (its weights shared, or its children
            # called from the parent with other statements between) is written once per call: `f2`
            name = child
            if child in taken and not child.isdigit():  # an index is named later, apart anyway
                k = taken[child] + 1
                while f"{child}{k}" in taken:
                    k += 1
                name = f"{child}{k}"
            taken[child] = taken.get(child, 0) + 1
            taken.setdefault(name, 1)
            out.append(ScopeE(name, path, [item], layer=path in layers))  # type: ignore[list-item]
        for e in out:
            if isinstance(e, ScopeE):
                e.entries = place(e.entries, e.path)  # type: ignore[arg-type]
        return out

    return place(body, ())


def _entry(item: Leaf | Merge, base: Path, place: Any, label: Any) -> Entry:
    if isinstance(item, Leaf):
        p = _path(item.match.name)
        name = p[-1] if len(p) == len(base) + 1 and p[: len(base)] == base else None
        return LayerE(item, name)
    return MergeE(item.form, [place(b) for b in item.branches], label(item, base))


def _common(paths: list[Path]) -> Path:
    if not paths:
        return ()
    first = paths[0]
    n = 0
    while all(len(p) > n and p[n] == first[n] for p in paths):
        n += 1
    return first[:n]


def _leaves(body: list[Leaf | Merge]) -> list[Leaf]:
    out: list[Leaf] = []
    for s in body:
        if isinstance(s, Leaf):
            out.append(s)
        else:
            for b in s.branches:
                out += _leaves(b)
    return out


# --- step 3: blocks and text ------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    index: int  # into the template's values
    key: str  # the key it sets (names a parameter)
    default: int | None = None  # the key's default: a literal default is not written
    less: int = 0  # written as `N-1`: the count of a stage's other blocks, N being all of them


# keys the CNN matchers always write, so that blocks differing in a stride are one block
# with a parameter; where the value is the default in every call, it is left out again
DEFAULTS = {"S": 1, "P": 0, "G": 1, "D": 1, "O": 0}


@dataclass(frozen=True)
class Call:
    scope: ScopeE
    offset: int  # where its values start in the caller's


@dataclass(frozen=True, eq=False)
class Label:
    """`name: ` of a block call or repeat; a `Sequential` index gets its name once blocks have theirs."""
    entry: ScopeE | RepeatE


Part = str | Slot | Call | Label


@dataclass(eq=False)
class Template:
    lines: list[tuple[int, list[Part]]] = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    cached: tuple[Any, ...] | None = None  # the key, fixed once taken: index names come later

    def slot(self, value: int, key: str, default: int | None = None, less: int = 0) -> Slot:
        self.values.append(value)
        return Slot(len(self.values) - 1, key, default, less)

    def call(self, scope: ScopeE) -> Call:
        assert scope.template is not None
        c = Call(scope, len(self.values))
        self.values += scope.template.values
        return c

    def key(self) -> tuple[Any, ...]:
        if self.cached is None:
            self.cached = self._key()
        return self.cached

    def _key(self) -> tuple[Any, ...]:
        def part(p: Part) -> Any:
            if isinstance(p, Slot):
                return ("#", p.key, p.less)
            if isinstance(p, Call):
                assert p.scope.template is not None
                return ("call", p.scope.template.key())
            if isinstance(p, Label):
                return ("label", "#" if p.entry.name.isdigit() else p.entry.name)
            return p

        return tuple((indent, tuple(part(p) for p in parts)) for indent, parts in self.lines)


_INT = re.compile(r"\d+")
_BASE = re.compile(r"_\d+$")


def _name(text: str) -> str:
    """A module attribute as an archc name: `0` -> `_0`, a keyword gets a trailing `_`."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text) or "_"  # ASCII: `café` -> `caf_`
    if name[0].isdigit():
        name = "_" + name
    return name + "_" if name in KEYWORDS or keyword.iskeyword(name) else name


def _layer_names(entries: list[Entry]) -> None:
    """Names unique in the scope: a paramless layer's repeated name, a name that only repeats its
    kind (`relu: relu`, `relu1: relu`) and a `Sequential` index are dropped; a layer with weights and no name is
    named by its kind (`conv`, or `conv1`, `conv2` where there are several), as a person would."""
    layers = _outside_merges(entries, LayerE)
    for e in layers:
        kind = e.leaf.match.statement.split()[0]
        # a paramless layer named by its kind and a number (`relu1` as archc generates it, `relu_1`
        # as TorchScript numbers a second call) is as well unnamed: only weights need their names.
        # So is one named by another kind and a number: archc's `adaptiveavgpool1` read as an avgpool
        found = re.fullmatch(r"([a-z0-9]*?[a-z])(_?\d+)?", e.name or "")
        generated = found is not None and (found.group(1) == kind or (found.group(2) is not None and found.group(1) in KINDS))
        if e.name is not None and (e.name.isdigit() or (generated and not e.leaf.match.weights)):
            e.name = None
    counts: dict[str, int] = {}
    for e in layers:
        if e.name is not None:
            e.name = _name(e.name)
            base = e.name if e.leaf.match.weights else _BASE.sub("", e.name)  # relu, relu_1: one module
            counts[base] = counts.get(base, 0) + 1
    taken = {e.name for e in layers if e.name is not None}
    for e in layers:
        if e.name is not None and not e.leaf.match.weights and counts[_BASE.sub("", e.name)] > 1:
            e.name = None
    for m in _merges(entries):  # a merge's label names no weights: left out where it would clash
        if m.name is not None:
            m.name = None if re.fullmatch(r"(residual|add|multiply|concat)\d*", m.name) else _name(m.name)
        if m.name is not None and m.name in taken:
            m.name = None
        elif m.name is not None:
            taken.add(m.name)
    seen: set[str] = set()
    unnamed = [_short(e) for e in layers if e.name is None and e.leaf.match.weights]
    for e in layers:
        if e.name is not None and e.name in seen:
            e.name = _fresh(e.name, taken)
        if e.name is None and e.leaf.match.weights:
            kind = _short(e)
            if unnamed.count(kind) == 1 and kind not in taken:
                e.name = kind
                taken.add(kind)
            else:
                e.name = _fresh(kind, taken, start=1)
        if e.name is not None:
            seen.add(e.name)


def _merges(entries: list[Entry]) -> list[MergeE]:
    """The merges in `entries` and in their branches (not inside scopes)."""
    out: list[MergeE] = []
    for e in entries:
        if isinstance(e, MergeE):
            out.append(e)
            for b in e.branches:
                out += _merges(b)
    return out


def _short(e: LayerE) -> str:
    """The name a layer with weights gets from its kind: `conv`, `bn`, `fc`, ..."""
    kind = e.leaf.match.statement.split()[0]
    return {"batchnorm": "bn", "layernorm": "ln", "convtranspose": "deconv"}.get(kind, kind)


def _fresh(base: str, taken: set[str], start: int = 2) -> str:
    k = start
    while f"{base}{k}" in taken:
        k += 1
    taken.add(f"{base}{k}")
    return f"{base}{k}"


def _inline(entries: list[Entry]) -> list[Entry]:
    """A module holding one layer is that layer under the module's name (`classifier: fc 10`,
    `downsample: conv ...`), not a block of one line."""
    out: list[Entry] = []
    for e in entries:
        if isinstance(e, ScopeE) and len(e.entries) == 1 and isinstance(e.entries[0], LayerE):
            e = LayerE(e.entries[0].leaf, e.name)
        elif isinstance(e, MergeE):
            e.branches = [_inline(b) for b in e.branches]
        out.append(e)
    return out


def _prepare(entries: list[Entry], nested: bool = False) -> list[Entry]:
    """Bottom-up: children's templates, repeats of numbered children, names of numbered children."""
    for scope in _outside_merges(entries, ScopeE):
        scope.entries = _prepare(scope.entries, nested=True)
    entries = _inline(entries)
    _layer_names(entries)
    for scope in _outside_merges(entries, ScopeE):
        scope.template = _template(scope.entries)
    if nested and _counted(entries):
        return [RepeatE("0", entries)]  # type: ignore[arg-type]  # checked: all ScopeE
    out: list[Entry] = []
    k = 0
    while k < len(entries):
        e = entries[k]
        run: list[ScopeE] = []
        if isinstance(e, ScopeE) and e.name.isdigit():
            run = [e]
            while k + len(run) < len(entries):
                nxt = entries[k + len(run)]
                if not (isinstance(nxt, ScopeE) and nxt.name.isdigit() and _same(nxt, e)):
                    break
                run.append(nxt)
        # a module whose children are all numbered is a repeat, even of one copy (`repeat N-1`
        # with N=2): its children keep PyTorch's names (`rest.0.conv1`)
        whole = nested and len(run) == len(entries) and run[0].name == "0"
        out.append(RepeatE(run[0].name, run) if len(run) > 1 or whole else e)
        k += max(len(run), 1)
    numbered = [e for e in out if isinstance(e, ScopeE | RepeatE) and e.name.isdigit()]
    if len(numbered) == len(out) == 2 and [e.name for e in numbered] == ["0", "1"]:
        # torchvision's stages: a first block that changes the shape, then copies of another
        numbered[0].name = "first"
        second = numbered[1]
        rest = second if isinstance(second, RepeatE) else RepeatE("1", [second])
        rest.name = "rest"
        out[1] = rest
    named: list[ScopeE | RepeatE] = [*_outside_merges(out, ScopeE), *(r for r in out if isinstance(r, RepeatE))]
    for n in named:
        if n.name not in ("first", "rest") and not n.name.isdigit():  # indices: named by `_index_names`
            n.name = _name(n.name)
    return out


def _counted(entries: list[Entry]) -> bool:
    """Whether a module's children are all one call named by a counter (torchvision's ViT:
    `encoder_layer_0` ... `encoder_layer_11`): the module is then a repeat, as a person writes it."""
    if len(entries) < 2 or not all(isinstance(e, ScopeE) for e in entries):
        return False
    found = [re.fullmatch(r"(\w*?[A-Za-z_])(\d+)", e.name) for e in entries if isinstance(e, ScopeE)]
    if not all(found):
        return False
    prefixes = {m.group(1) for m in found if m}
    numbers = [int(m.group(2)) for m in found if m]
    scopes = [e for e in entries if isinstance(e, ScopeE)]
    return (len(prefixes) == 1 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
            and all(_same(e, scopes[0]) for e in scopes))


def _outside_merges(entries: list[Entry], cls: type[_E]) -> list[_E]:
    """The entries of type `cls` in `entries` and, recursively, in the branches of its merges
    (not inside scopes: each scope is its own list)."""
    out: list[_E] = []
    for e in entries:
        if isinstance(e, cls):
            out.append(e)
        elif isinstance(e, MergeE):
            for b in e.branches:
                out += _outside_merges(b, cls)
    return out


def _same(a: ScopeE, b: ScopeE) -> bool:
    assert a.template is not None and b.template is not None
    return a.template.key() == b.template.key() and a.template.values == b.template.values


def _whole_repeat(e: ScopeE) -> RepeatE | None:
    """A module whose children are all `0..n-1`, one repeat: the module is the repeat."""
    if len(e.entries) == 1 and isinstance(e.entries[0], RepeatE) and e.entries[0].name in ("0", "_0"):
        return RepeatE(e.name, e.entries[0].copies)
    return None


def _template(entries: list[Entry]) -> Template:
    t = Template()
    _lines(entries, t, 0)
    return t


def _lines(entries: list[Entry], t: Template, indent: int) -> None:
    for e in entries:
        if isinstance(e, LayerE):
            for k, stmt in enumerate(s.strip() for s in e.leaf.match.statement.split(";")):
                label = [f"{e.name}: "] if e.name and k == 0 else []
                t.lines.append((indent, [*label, *_statement(stmt, t)]))
        elif isinstance(e, MergeE):
            label = [f"{e.name}: "] if e.name else []
            if e.form == "residual":
                t.lines.append((indent, [*label, "residual {"]))
                _lines(e.branches[0], t, indent + 1)
                if len(e.branches) > 1:
                    t.lines.append((indent, ["} shortcut {"]))
                    _lines(e.branches[1], t, indent + 1)
                t.lines.append((indent, ["}"]))
            else:
                t.lines.append((indent, [*label, f"{e.form} {{"]))
                for b in e.branches:
                    t.lines.append((indent + 1, ["branch {"]))
                    _lines(b or [], t, indent + 2)
                    if not b:
                        t.lines.append((indent + 2, ["identity"]))
                    t.lines.append((indent + 1, ["}"]))
                t.lines.append((indent, ["}"]))
        elif isinstance(e, ScopeE):
            whole = _whole_repeat(e)
            if whole is not None:
                _repeat(whole, t, indent, Label(e))
            else:
                t.lines.append((indent, [Label(e), t.call(e)]))
        else:
            _repeat(e, t, indent, Label(e))


def _repeat(e: RepeatE, t: Template, indent: int, label: Label) -> None:
    # a stage's `rest` after its `first`: `repeat N-1` with N the stage's blocks, as torchvision counts them
    less = 1 if e.name == "rest" else 0
    t.lines.append((indent, [label, "repeat ", t.slot(len(e.copies) + less, "N", less=less), " {"]))
    t.lines.append((indent + 1, [t.call(e.copies[0])]))
    t.lines.append((indent, ["}"]))


def _statement(stmt: str, t: Template) -> list[Part]:
    words = stmt.split()
    parts: list[Part] = [words[0]]
    for w in words[1:]:
        key, eq, value = w.partition("=")
        if not eq:
            key, value = "N", w
        parts.append(" ")
        if eq:
            parts.append(f"{key}=")
        default = DEFAULTS.get(key) if words[0] in ("conv", "convtranspose") else None
        parts.append(t.slot(int(value), key, default) if _INT.fullmatch(value) else value)
    return parts


@dataclass
class Block:
    name: str
    template: Template
    instances: list[ScopeE]
    exprs: list[str | None] = field(default_factory=list)  # per slot: None when literal
    params: list[tuple[str, int]] = field(default_factory=list)  # name, defining slot
    defaults: dict[str, int] = field(default_factory=dict)  # a parameter's default: S=1, as conv's
    base: str = ""  # the name before a number made it unique (`Bottleneck` for `Bottleneck2`)


def render(entries: list[Entry], classes: dict[Path, str], header: list[str]) -> tuple[str, list[tuple[str, LayerE]]]:
    """The spec text (blocks first, then `header` and the body) and every layer with weights
    with its state_dict prefix."""
    entries = _prepare(entries)
    root = _template(entries)
    blocks: dict[tuple[Any, ...], Block] = {}
    order: list[Block] = []

    def collect(t: Template) -> None:
        for _, parts in t.lines:
            for p in parts:
                if isinstance(p, Call):
                    assert p.scope.template is not None
                    collect(p.scope.template)
                    key = p.scope.template.key()
                    if key not in blocks:
                        blocks[key] = Block("", p.scope.template, [])
                        order.append(blocks[key])
                    if p.scope not in blocks[key].instances:
                        blocks[key].instances.append(p.scope)

    collect(root)
    used: set[str] = set()
    for b in order:
        _parameterise(b, blocks)
        b.name, b.base = _block_name(b, classes, used)
    _variant_names(order)
    _index_names(entries, blocks)
    text = [_render_block(b, blocks) for b in order]
    body = [_line(indent, parts, lambda s: str(root.values[s.index]), blocks, root) for indent, parts in root.lines]
    spec = "\n".join([*header, *body, "", *text]) + "\n"
    return spec, _weights(entries, ())


def _index_names(entries: list[Entry], blocks: dict[tuple[Any, ...], Block]) -> None:
    """`Sequential` indices as names a person would write: the block called, in snake case
    (`features.1` calling `InvertedResidual` -> `inverted_residual`, or `inverted_residual1`,
    `inverted_residual2`, ... where several siblings call one block), as archc names cannot be digits."""
    siblings: list[Entry] = []

    def gather(es: list[Entry]) -> None:
        for e in es:
            siblings.append(e)
            if isinstance(e, MergeE):
                for b in e.branches:
                    gather(b)

    gather(entries)

    def block_of(e: ScopeE | RepeatE) -> str:
        scope = e if isinstance(e, ScopeE) else e.copies[0]
        whole = _whole_repeat(scope) if isinstance(e, ScopeE) else None
        if whole is not None:
            scope = whole.copies[0]
        assert scope.template is not None
        return _snake(blocks[scope.template.key()].base)

    numbered = [e for e in siblings if isinstance(e, ScopeE | RepeatE) and e.name.isdigit()]
    taken = {e.name for e in siblings if isinstance(e, LayerE | ScopeE | RepeatE) and e.name and not e.name.isdigit()}
    bases = [block_of(e) for e in numbered]
    for n, base in zip(numbered, bases, strict=True):
        if bases.count(base) == 1 and base not in taken:
            n.name = base
            taken.add(base)
        else:
            n.name = _fresh(base + "_" if base[-1].isdigit() else base, taken, start=1)  # conv_relu6_1
    for s in siblings:
        if isinstance(s, ScopeE):
            whole = _whole_repeat(s)
            for copy in whole.copies if whole is not None else [s]:
                _index_names(copy.entries, blocks)
        elif isinstance(s, RepeatE):
            for copy in s.copies:
                _index_names(copy.entries, blocks)


def _snake(name: str) -> str:
    """`InvertedResidual` -> `inverted_residual`, `SEBlock` -> `se_block`, `ConvBNReLU6` ->
    `conv_bn_relu6` (a keyword gets `_`)."""
    for kind, word in KIND_WORDS.items():
        name = name.replace(word, kind.capitalize()) if len(word) > 2 and word != kind.capitalize() else name
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", name) or ["block"]
    return _name("_".join(w.lower() for w in words))


def _parameterise(b: Block, blocks: dict[tuple[Any, ...], Block]) -> None:
    columns = list(zip(*(s.template.values for s in b.instances if s.template is not None), strict=True))
    keys: dict[int, str] = {}
    defaults: dict[int, int] = {}
    for _, parts in b.template.lines:
        for p in parts:
            if isinstance(p, Slot):
                keys[p.index] = p.key
                if p.default is not None:
                    defaults[p.index] = p.default
            elif isinstance(p, Call):
                assert p.scope.template is not None
                child = blocks[p.scope.template.key()]
                for pname, k in child.params:
                    keys[p.offset + k] = pname.rstrip("0123456789") or pname
                    if pname in child.defaults:
                        defaults[p.offset + k] = child.defaults[pname]
    names: set[str] = set()
    for j, column in enumerate(columns):
        if len(set(column)) == 1:
            b.exprs.append(None)
            continue
        expr = None
        for pname, k in b.params:
            other = columns[k]
            if column == other:
                expr = pname
            elif all(o and c % o == 0 for c, o in zip(column, other, strict=True)) and len({c // o for c, o in zip(column, other, strict=True)}) == 1:
                expr = f"{pname}*{column[0] // other[0]}"
            elif all(c and o % c == 0 for c, o in zip(column, other, strict=True)) and len({o // c for c, o in zip(column, other, strict=True)}) == 1:
                expr = f"{pname}//{other[0] // column[0]}"
            elif any(column) and (d := _divisor(column, other)) is not None:
                expr = f"{pname}//{d}"  # a padding of half the window: P=F//2
            if expr is not None:
                break
        if expr is None:
            base = keys.get(j, "V")
            base = base if re.fullmatch(r"[A-Za-z_]\w*", base) and base not in KEYWORDS else "V"
            expr = base if base not in names else _fresh(base, names)
            names.add(expr)
            b.params.append((expr, j))
            if j in defaults:
                b.defaults[expr] = defaults[j]
        b.exprs.append(expr)
    # a repeat's count after the widths it repeats, as a person writes `Stage(K, N)`, not `Stage(N, K)`
    b.params.sort(key=lambda p: p[0].rstrip("0123456789") == "N")


def _divisor(column: tuple[int, ...], other: tuple[int, ...]) -> int | None:
    """d such that every value is the other's value // d (P = F//2 for windows 3, 5 and 1)."""
    c, o = next((c, o) for c, o in zip(column, other, strict=True) if c)
    return next((d for d in range(2, o // c + 1) if all(c == o // d for c, o in zip(column, other, strict=True))), None)


KIND_WORDS = {"conv": "Conv", "batchnorm": "BN", "relu": "ReLU", "relu6": "ReLU6", "silu": "SiLU", "fc": "FC",
              "hardswish": "Hardswish", "sigmoid": "Sigmoid", "maxpool": "MaxPool", "avgpool": "AvgPool"}


def _kinds_name(t: Template) -> str | None:
    """A block of a few layers and no structure named by its kinds, as torchvision's
    `Conv2dNormActivation` is written `ConvBNReLU6` (where the exporter gave no class name)."""
    kinds: list[str] = []
    for _, parts in t.lines:
        words = [p for p in parts if isinstance(p, str) and not p.endswith(": ") and p.strip()]
        if not words or not re.fullmatch(r"[a-z][a-z0-9]*", words[0]) or words[0] not in KIND_WORDS:
            return None
        if words[0] not in kinds:
            kinds.append(words[0])
    return "".join(KIND_WORDS[k] for k in kinds) if 1 < len(kinds) <= 3 else None


CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})  # classes that say nothing of a block


def _block_name(b: Block, classes: dict[Path, str], used: set[str]) -> tuple[str, str]:
    found = [c for c in (classes.get(s.path) for s in b.instances if not s.layer) if c not in CONTAINERS]
    name = next((c for c in found if c), None) or _kinds_name(b.template)
    if name is None:
        leaf = b.instances[0].path[-1] if b.instances[0].path else "block"
        if leaf.isdigit() and len(b.instances[0].path) > 1:
            leaf = b.instances[0].path[-2].rstrip("0123456789") + "_block"
        name = "".join(w[:1].upper() + w[1:] for w in re.split(r"[\W_]+", leaf.rstrip("0123456789")) if w) or "Block"
    name = re.sub(r"\W", "", name) or "Block"
    if name[0].isdigit():
        name = "B" + name
    base = name
    if name in used:
        name = _fresh(name, used)
    used.add(name)
    return name, base


def _variant_names(order: list[Block]) -> None:
    """Forms of one block named by what sets them apart, as a person names them: torchvision's
    first Bottleneck of a stage has a `downsample`, so it is `BottleneckDownsample` and the
    others `Bottleneck` (not `Bottleneck` and `Bottleneck2`). Where the names a form adds do
    not tell the forms apart, they keep their numbers."""
    groups: dict[str, list[Block]] = {}
    for b in order:
        groups.setdefault(b.base, []).append(b)
    taken = {b.name for b in order}
    for base, forms in groups.items():
        if len(forms) < 2:
            continue
        labels = {id(b): _labels(b.template) for b in forms}
        plain = min(forms, key=lambda b: len(labels[id(b)]))
        names: dict[int, str] = {id(plain): base}
        for b in forms:
            extra = [x for x in labels[id(b)] if x not in labels[id(plain)]]
            if b is not plain and extra:
                names[id(b)] = base + "".join(w[:1].upper() + w[1:] for w in re.split(r"_+", extra[0]) if w)
        mine = {b.name for b in forms}
        wanted = list(names.values())
        if len(names) == len(forms) and len(set(wanted)) == len(wanted) and not (set(wanted) & (taken - mine)):
            for b in forms:
                b.name = names[id(b)]
            taken = (taken - mine) | set(wanted)


def _labels(t: Template) -> list[str]:
    """The names a block's lines give (`downsample: ...`), in order."""
    out: list[str] = []
    for _, parts in t.lines:
        for p in parts:
            if isinstance(p, str) and p.endswith(": "):
                out.append(p[:-2])
            elif isinstance(p, Label):
                out.append(p.entry.name)
    return out


def _render_block(b: Block, blocks: dict[tuple[Any, ...], Block]) -> str:
    def value(s: Slot) -> str:
        expr = b.exprs[s.index]
        return expr if expr is not None else str(b.template.values[s.index])

    # parameters with defaults last, as a person writes `block B(K, F, S=1)`
    ordered = sorted(b.params, key=lambda p: p[0] in b.defaults)
    params = ", ".join(n if n not in b.defaults else f"{n}={b.defaults[n]}" for n, _ in ordered)
    head = f"block {b.name}({params}) {{" if params else f"block {b.name} {{"
    lines = [_line(indent + 1, parts, value, blocks, b.template) for indent, parts in b.template.lines]
    return "\n".join([head, *lines, "}", ""])


def _line(indent: int, parts: list[Part], value: Any, blocks: dict[tuple[Any, ...], Block], t: Template) -> str:
    out: list[str] = []
    for p in parts:
        if isinstance(p, Slot):
            text = value(p)
            if p.less:
                text = str(int(text) - p.less) if text.isdigit() else f"{text}-{p.less}"
            if p.default is not None and text == str(p.default) and len(out) >= 2 and out[-1].endswith("="):
                del out[-2:]  # " S=" of a stride that is 1 in every call
                continue
            out.append(text)
        elif isinstance(p, Label):
            out.append(f"{p.entry.name}: ")
        elif isinstance(p, Call):
            assert p.scope.template is not None
            child = blocks[p.scope.template.key()]
            args = [f"{n}={v}" for n, j in child.params
                    if (v := value(Slot(p.offset + j, n))) != str(child.defaults.get(n))]
            out.append(" ".join([child.name, *args]))
        else:
            out.append(p)
    return "  " * indent + "".join(out)


def _weights(entries: list[Entry], prefix: Path) -> list[tuple[str, LayerE]]:
    out: list[tuple[str, LayerE]] = []
    for e in entries:
        if isinstance(e, LayerE):
            if e.leaf.match.weights:
                assert e.name is not None
                out.append((".".join((*prefix, e.name)), e))
        elif isinstance(e, MergeE):
            for b in e.branches:
                out += _weights(b, prefix)
        elif isinstance(e, ScopeE):
            whole = _whole_repeat(e)
            if whole is not None:
                out += _weights([whole], prefix)
            else:
                out += _weights(e.entries, (*prefix, e.name))
        else:
            for k, copy in enumerate(e.copies):
                out += _weights(copy.entries, (*prefix, e.name, str(k)))
    return out


def weight_arrays(layers: list[tuple[str, LayerE]]) -> dict[str, np.ndarray]:
    """The tensors under their state_dict names (`layer1.0.conv1.weight`)."""
    # the key "" is the layer's own tensor (layerscale's): named after the layer alone
    return {f"{prefix}.{k}" if k else prefix: v for prefix, e in layers for k, v in e.leaf.match.weights.items()}
