"""The elaborated IR: a DAG of built-in layers with dotted hierarchical names.

Typed and immutable (pydantic, frozen, extra="forbid"). Nodes carry what the
user asked for (kind, attributes, inputs, source span); facts derived from
them -- shapes, parameter counts, MACs -- live in `archc.analysis.Analysis`,
never in the nodes.

Shapes are general tuples with a stated layout (`archc.ir.layout`): the front
end says which, nothing guesses it from the number of dimensions.

The front end builds these models with `model_construct` from values it has
already checked, and their schemas are built lazily (`defer_build`): pydantic
validation of every node would double the start-up time of `archc check` and
the cost of a 100,000-layer spec. `verify(graph)` runs the full pydantic
validation and the structural checks; the tests run it over every spec.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from typing import Any, NamedTuple, Self

from pydantic import BaseModel, ConfigDict

from archc.ir.layout import Layout
from archc.ir.written import Block, Expr, Step

INPUT = "input"  # the name of the graph's input; a keyword, so never a layer name


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:  # type: ignore[override]  # pydantic's mypy plugin writes per-model signatures; this one takes any fields
        """pydantic's `model_construct`, for the call the front end makes: every field given.

        A network at `--max-layers` makes millions of these: pydantic's own
        (which looks up aliases and defaults field by field, and gives each
        instance its own set of field names) cost 5 us and 1.1 KB each,
        this 1 us and 0.5 KB. Any other call goes to pydantic's.
        """
        names = _field_names(cls)
        if _fields_set is not None or values.keys() != names:
            return super().model_construct(_fields_set, **values)
        m = cls.__new__(cls)
        _set(m, "__dict__", values)
        # one set per class: pydantic copies it before changing it (`model_copy(update=...)`)
        _set(m, "__pydantic_fields_set__", names)
        _set(m, "__pydantic_extra__", None)
        _set(m, "__pydantic_private__", None)
        return m


_set = object.__setattr__


@functools.cache
def _field_names(cls: type[BaseModel]) -> set[str]:
    return set(cls.__pydantic_fields__)


class Span(NamedTuple):
    """A 1-based source range; `end_column` is exclusive.

    A NamedTuple, not a model: the parser makes one per token, and a pydantic
    model_construct costs ~10 us against ~0.3 us for a tuple (pydantic still
    validates it as a field of the models below).
    """

    line: int
    column: int
    end_line: int
    end_column: int


class Shape(Frozen):
    """A per-sample shape (batch excluded) in a stated layout; dims in the written order.

    >>> Shape.hwc(55, 55, 96).text()
    '55x55x96'
    >>> Shape.flat(4096).text()
    '4096'
    >>> Shape.hwc(7, 7, 512).resized((1, 1)).nchw()
    (512, 1, 1)
    """

    dims: tuple[int, ...]
    layout: Layout

    @classmethod
    def of(cls, layout: Layout, dims: tuple[int, ...]) -> Shape:
        return cls.model_construct(dims=dims, layout=layout)

    @classmethod
    def hwc(cls, h: int, w: int, c: int) -> Shape:
        return cls.model_construct(dims=(h, w, c), layout=Layout.IMAGE)

    @classmethod
    def flat(cls, n: int) -> Shape:
        return cls.model_construct(dims=(n,), layout=Layout.FLAT)

    @property
    def is_spatial(self) -> bool:
        """Whether a window can slide over it (it has positions and features)."""
        return self.layout.spatial_rank > 0

    @property
    def spatial(self) -> tuple[int, ...]:
        """The sizes along the spatial axes, in order: (H, W) of an image; () when flat."""
        return self.dims[: self.layout.spatial_rank]

    @property
    def channels(self) -> int:
        return self.dims[-1]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    def resized(self, spatial: tuple[int, ...], channels: int | None = None) -> Shape:
        """The same layout with new spatial sizes (and channels): what a window makes of it."""
        return Shape.of(self.layout, (*spatial, self.channels if channels is None else channels))

    def text(self) -> str:
        return self.layout.text(self.dims)

    def nchw(self) -> tuple[int, ...]:
        """The per-sample shape as generated code holds it, channels first: (C, H, W) or (N,)."""
        return tuple(self.dims[i] for i in self.layout.physical_order())


class Node(Frozen):
    """One built-in layer (or a residual's add / a concat) of the graph.

    `name` is the dotted path (`layer1.0.conv1`): the PyTorch attribute path,
    the state_dict prefix and the ONNX node/initializer prefix.
    """

    name: str
    kind: str
    attrs: dict[str, Any]
    inputs: tuple[str, ...]
    span: Span  # the kind as written (the residual/concat keyword or label for merges)
    scope: str  # the dotted path of the enclosing block instance / repeat copy ("" at top)
    key_spans: dict[str, Span]  # where each written key's name is, for carets
    exprs: dict[str, Expr] = {}  # each written key as written, in the order written (back-ends reuse it)
    label: Span | None = None  # where its name was written; None when the name was generated


class ScopeKind(StrEnum):
    CALL = "call"  # a named (or generated) block instance
    REPEAT = "repeat"  # a repeat statement; its copies are its children
    COPY = "copy"  # one copy of a repeat, named by its index


class Scope(Frozen):
    """A level of the name hierarchy: a block instance, a repeat or a repeat copy.

    Besides its nodes, a scope records how it was written -- the block and the
    arguments, evaluated and as written, and its body as steps -- so that a
    back-end can write a block's instances as one class without the syntax tree.
    """

    path: str
    kind: ScopeKind
    block: str | None  # the block definition, for CALL scopes (and copies inlining one)
    args: dict[str, Any]  # the evaluated block arguments
    nodes: tuple[str, ...]  # every node under this scope, in forward order
    output: str  # the node whose output is the scope's output
    span: Span
    label: Span | None = None  # where its name was written; None when the name was generated
    arg_exprs: dict[str, Expr] = {}  # the arguments as written ({"count": ...} for a repeat)
    steps: tuple[Step, ...] = ()  # its body, in local names (a repeat's body is in its copies)
    reads: tuple[str, ...] = ()  # the names a repeat's body reads, in order of first use


class Assertion(Frozen):
    """An `-> shape` or `expect`, resolved to what it checks."""

    target: str  # "" (network), a node name or a scope path
    quantity: str  # params weights biases macs output
    op: str
    expected: float | tuple[int, ...]
    text: str  # the value as written, for rounding and messages
    tolerance: float | None
    tolerance_is_percent: bool
    span: Span
    value_span: Span


class Graph(Frozen):
    """The whole elaborated network."""

    network: str
    input_shape: Shape
    input_span: Span
    nodes: tuple[Node, ...]  # in forward (topological) order
    scopes: tuple[Scope, ...]
    assertions: tuple[Assertion, ...]
    output: str  # name of the node producing the network output
    blocks: dict[str, Block] = {}  # the block definitions, by name
    steps: tuple[Step, ...] = ()  # the top-level body, in local names
    # False when the spec had errors: then the graph holds what could be elaborated, and
    # nodes after a failed statement read an input that no node produces.
    complete: bool = True

    # Lookups by name, built once on first use. Cached properties, not fields:
    # they stay out of the IR's JSON and out of validation.
    @cached_property
    def nodes_by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def scopes_by_path(self) -> dict[str, Scope]:
        return {s.path: s for s in self.scopes}

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each node's index in `nodes` (forward order)."""
        return {n.name: i for i, n in enumerate(self.nodes)}

    def node(self, name: str) -> Node:
        """The node called `name`; KeyError if there is none."""
        return self.nodes_by_name[name]

    def scope(self, path: str) -> Scope:
        """The scope at `path`; KeyError if there is none."""
        return self.scopes_by_path[path]

    def parent_scope(self, path: str) -> str:
        """The innermost scope enclosing `path` (a scope or a node's scope), "" at the top level.

        >>> g = Graph.model_construct(scopes=(Scope.model_construct(path="layer1"),))
        >>> g.parent_scope("layer1.0"), g.parent_scope("layer1"), g.parent_scope("fc")
        ('layer1', '', '')
        """
        cut = path.rfind(".")
        while cut > 0:
            if path[:cut] in self.scopes_by_path:
                return path[:cut]
            cut = path.rfind(".", 0, cut)
        return ""


def verify(graph: Graph, arities: Mapping[str, int]) -> Graph:
    """Validate a graph fully: pydantic's validation of every model, then structure.

    Structure: names are unique, every input is produced earlier (the node
    order is topological), every kind is one of `arities` (kind -> inputs
    it takes, 0 for one or more; `archc.kinds.verify` passes the registry's)
    with that many inputs, the input shape has its layout's dimensions,
    scopes list existing nodes as one unbroken run of the node order
    (per-scope totals are sums over that run), and the output exists. Returns the
    re-validated graph; raises ValueError (pydantic's ValidationError is one).
    """
    checked = Graph.model_validate(graph.model_dump())
    if not checked.complete:
        raise ValueError("the graph is incomplete: its spec has errors")
    shape = checked.input_shape
    if len(shape.dims) != len(shape.layout.axes):
        raise ValueError(f"input {shape.dims} does not have the {len(shape.layout.axes)} dims of {shape.layout}")
    seen = {INPUT}
    for node in checked.nodes:
        if node.name in seen:
            raise ValueError(f"duplicate node name {node.name}")
        missing = [i for i in node.inputs if i not in seen]
        if missing:
            raise ValueError(f"{node.name} reads {missing} before they are produced")
        arity = arities.get(node.kind)
        if arity is None:
            raise ValueError(f"{node.name} has unknown kind {node.kind}")
        if (arity and len(node.inputs) != arity) or not node.inputs:
            raise ValueError(f"{node.name} ({node.kind}) has {len(node.inputs)} inputs")
        seen.add(node.name)
    for scope in checked.scopes:
        if not set(scope.nodes) <= seen or scope.output not in seen:
            raise ValueError(f"scope {scope.path} lists unknown nodes")
        first = checked.positions[scope.nodes[0]] if scope.nodes else 0
        if tuple(n.name for n in checked.nodes[first : first + len(scope.nodes)]) != scope.nodes:
            raise ValueError(f"the nodes of scope {scope.path} are not one run of the node order")
    if checked.output not in seen:
        raise ValueError(f"output {checked.output} is not a node")
    return checked
