"""Analysis of a layer graph: shapes, weights, biases, MACs; assertions; warnings.

The facts live here (`Analysis`), never in the IR nodes. Passes are plain
functions run in the order of `PASSES`; each reads the graph and what earlier
passes found, and adds facts and diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import cached_property
from itertools import accumulate
from math import isqrt
from typing import Any

from archc.analysis import orders as sequence_orders
from archc.diagnostics import Diagnostic, Note, error, warning
from archc.ir import INPUT, Assertion, Frozen, Graph, Layout, Node, Physical, ScopeKind, Shape, written_layout
from archc.ir.written import call_text
from archc.kinds import KINDS, Applied, Counts, ShapeError, Topic, Window, WindowKind, apply, uneven_division


class LayerFacts(Frozen):

    name: str
    kind: str
    inputs: tuple[Shape, ...]
    output: Shape
    window: Window | None  # the resolved geometry of a conv/pool window, per spatial dim
    weights: int
    biases: int
    macs: int

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def counts(self) -> Counts:
        return Counts(self.weights, self.biases, self.macs)

    def applied(self, attrs: dict[str, Any]) -> Applied:
        """The layer as its kind's rules read it (tensors, MACs, explanations), given its node's attributes."""
        return Applied(attrs, self.inputs, self.output, self.window)


class Totals(Frozen):

    weights: int = 0
    biases: int = 0
    macs: int = 0
    activations: int = 0  # output elements at batch 1

    @property
    def params(self) -> int:
        return self.weights + self.biases


class Analysis(Frozen):
    """Everything derived from a graph. `facts` is keyed by node name, in forward order.

    Of an incomplete graph, or after shape errors, `facts` holds every node whose
    inputs are known and whose shape rule held, and `totals` sums those.
    """

    graph: Graph
    facts: dict[str, LayerFacts]
    totals: Totals
    orders: dict[str, Physical]  # how generated code holds each sequence value (`archc.analysis.orders`)

    @property
    def complete(self) -> bool:
        """Whether every node of a complete graph has its facts."""
        return self.graph.complete and len(self.facts) == len(self.graph.nodes)

    @property
    def output_shape(self) -> Shape:
        return self.shape_of(self.graph.output)

    def order_of(self, name: str) -> Physical:
        """How generated code holds a value: a sequence's order; channels first for everything else."""
        return self.orders.get(name, Physical.CHANNELS_FIRST)

    def physical(self, name: str) -> tuple[int, ...]:
        """A value's per-sample dims as generated code holds them: (C, H, W) of an image, (L, C) of a
        sequence held channels last."""
        shape = self.shape_of(name)
        return tuple(shape.dims[i] for i in shape.layout.physical_order(self.order_of(name)))

    def reads(self, node: Node) -> Physical:
        """The order in which a layer reads its sequence inputs."""
        return sequence_orders.reads(node, self.orders)

    def transposed(self, node: Node) -> tuple[bool, ...]:
        """For each input of a layer: whether it is a sequence held the other way (a transpose first)."""
        wanted = self.reads(node)
        return tuple(i in self.orders and self.orders[i] is not wanted for i in node.inputs)

    def shape_of(self, name: str) -> Shape:
        if name == INPUT:
            return self.graph.input_shape
        return self.facts[name].output

    def totals_under(self, target: str) -> Totals:
        """Totals for the network (""), one node, or a scope (block instance, repeat)."""
        if not target:
            return self.totals
        if target in self.facts:
            return _sum([self.facts[target]])
        return self.scope_totals[target]

    @cached_property
    def scope_totals(self) -> dict[str, Totals]:
        """Every scope's totals, computed once: a scope's nodes are one run of the node
        order (`archc.ir.verify` checks it), so each total is a difference of running sums."""
        facts = [self.facts.get(n.name) for n in self.graph.nodes]  # None past an error
        weights = [0, *accumulate(f.weights if f is not None else 0 for f in facts)]
        biases = [0, *accumulate(f.biases if f is not None else 0 for f in facts)]
        macs = [0, *accumulate(f.macs if f is not None else 0 for f in facts)]
        activations = [0, *accumulate(f.output.numel if f is not None else 0 for f in facts)]
        positions = self.graph.positions
        out = {}
        for scope in self.graph.scopes:
            a = positions[scope.nodes[0]] if scope.nodes else 0
            b = a + len(scope.nodes)
            out[scope.path] = Totals.model_construct(
                weights=weights[b] - weights[a],
                biases=biases[b] - biases[a],
                macs=macs[b] - macs[a],
                activations=activations[b] - activations[a],
            )
        return out

    def output_of(self, target: str) -> Shape:
        if not target:
            return self.output_shape
        if target in self.facts:
            return self.facts[target].output
        return self.shape_of(self.graph.scope(target).output)


def _sum(facts: list[LayerFacts]) -> Totals:
    return Totals.model_construct(
        weights=sum(f.weights for f in facts),
        biases=sum(f.biases for f in facts),
        macs=sum(f.macs for f in facts),
        activations=sum(f.output.numel for f in facts),
    )


class _State:
    """What the passes share. (A plain class: dataclass creation costs start-up time.)"""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.facts: dict[str, LayerFacts] = {}
        self.diags: list[Diagnostic] = []
        self.analysis: Analysis | None = None


def call_notes(graph: Graph, scope: str) -> tuple[Note, ...]:
    """The block calls that made the scope `scope` (a node's `scope`), innermost first:
    what an error at a line of a block's body notes (`in B K=-8, called at net.arch:12:1`).

    Repeats of plain statements add none: their copies are the statements as written.
    """
    notes = []
    path = scope
    while path:
        found = graph.scopes_by_path.get(path)
        if found is not None and found.block is not None and found.kind in (ScopeKind.CALL, ScopeKind.COPY):
            notes.append(Note(f"in {call_text(found.block, found.arg_exprs, found.args)}, called", found.span))
        path = graph.parent_scope(path)
    return tuple(notes)


def _in_calls(diag: Diagnostic, graph: Graph, scope: str) -> Diagnostic:
    notes = call_notes(graph, scope)
    return diag._replace(notes=notes) if notes else diag


def _error_span(node: Node, key: str | None) -> object:
    if key and key in node.key_spans:
        return node.key_spans[key]
    return node.span


def infer_shapes(state: _State) -> None:
    """Shapes and counts, node by node; an error stops only the paths through that node."""
    shapes: dict[str, Shape] = {INPUT: state.graph.input_shape}
    for node in state.graph.nodes:
        ins = [shapes.get(i) for i in node.inputs]
        if any(s is None for s in ins):
            continue  # upstream already failed
        in_shapes = [s for s in ins if s is not None]
        kind = KINDS[node.kind]
        try:
            out, window = apply(kind, node.attrs, in_shapes)
        except ShapeError as exc:
            hint = exc.hint or _flat_input_hint(node, shapes, state.graph)
            diag = error("E200", f"{node.name}: {exc.message}", _error_span(node, exc.key), hint)  # type: ignore[arg-type]
            state.diags.append(_in_calls(diag, state.graph, node.scope))
            continue
        counts = kind.counts(Applied(node.attrs, in_shapes, out, window))
        tie = node.attrs.get("tie")
        if tie is not None and tie in state.facts:
            problem = _tie_problem(node, Applied(node.attrs, in_shapes, out, window), state.facts[tie], state.graph)
            if problem is not None:
                state.diags.append(_in_calls(problem, state.graph, node.scope))
                continue
        shapes[node.name] = out
        state.facts[node.name] = LayerFacts.model_construct(
            name=node.name,
            kind=node.kind,
            inputs=tuple(in_shapes),
            output=out,
            window=window,
            weights=counts.weights,
            biases=counts.biases,
            macs=counts.macs,
        )


def _flat_input_hint(node: Node, shapes: dict[str, Shape], graph: Graph) -> str | None:
    """Where a flat vector that a spatial layer cannot read came from, and what to write instead.

    It said "put it before the first fc/flatten" of `input 784` followed by a conv, a spec with no fc.
    """
    if shapes[node.inputs[0]].layout is not Layout.FLAT or Layout.FLAT in KINDS[node.kind].traits.layouts:
        return None
    source = node.inputs[0]
    # back over the layers that keep their input's shape (relu, dropout) to the one that made it
    while source != INPUT and shapes[graph.node(source).inputs[0]] == shapes[source]:
        source = graph.node(source).inputs[0]
    declare = ""
    if graph.input_shape.layout is Layout.FLAT:
        n = graph.input_shape.dims[0]
        image = next(
            (f"{side}x{side}x{c}" for c in (1, 3) if n % c == 0 and (side := isqrt(n // c)) ** 2 * c == n), None
        )
        declare = f"e.g. `input {image}` for an image or `input {n}x1` for a signal" if image else f"e.g. `input {n}x1` for a signal"
    if source == INPUT:
        return f"the network's input is a flat vector: declare its layout, {declare}"
    producer = graph.node(source)
    hint = f"{producer.name} ({producer.kind}) outputs a flat vector: put the {node.kind} before it"
    return f"{hint}, and declare the input's layout, {declare}" if declare else hint


def _tie_problem(node: Node, layer: Applied, owner: LayerFacts, graph: Graph) -> Diagnostic | None:
    """LANGUAGE.md "Tying": the owner's weight must be `N x C` for an input of C features."""
    kind = KINDS[node.kind]
    tied = next(t for t in kind.tensors(layer) if t.alias is not None)
    owner_node = graph.node(owner.name)
    owned = next(
        t for t in KINDS[owner.kind].tensors(owner.applied(owner_node.attrs)) if f"{owner.name}.{t.name}" == tied.alias
    )
    if owned.shape == tied.shape:
        return None
    have = "x".join(map(str, owned.shape))
    need = "x".join(map(str, tied.shape))
    hint = f"{node.name} needs N={owned.shape[0]} outputs" if owned.shape[1:] == tied.shape[1:] else None
    if hint is None and owner.kind == "embedding":
        hint = f"an fc tied to an embedding of V={owned.shape[0]}, D={owned.shape[1]} reads D features and gives V"
    return error(
        "E200",
        f"{node.name}: tie={owner.name} shares a weight of {have} ({owner.name}.weight), "
        f"but this {node.kind} needs {need} (N x C for an input of {layer.ins[0].text()})",
        node.key_spans.get("tie", node.span),
        hint,
    )


_SLIDING = (WindowKind.CONV, WindowKind.POOL)  # windows that slide over their input (not a transposed one)


def warn_uneven(state: _State) -> None:
    """LANGUAGE.md "Warnings": a conv/pool window that silently crops its input."""
    for node in state.graph.nodes:
        facts = state.facts.get(node.name)
        if facts is None or facts.window is None or KINDS[node.kind].traits.window not in _SLIDING:
            continue
        pool = KINDS[node.kind].traits.window is WindowKind.POOL
        found = uneven_division(node.attrs, facts.window, facts.inputs[0], pool)
        if found is not None:
            diag = warning("W001", f"{node.name}: {found.message}", node.span, found.hint)
            state.diags.append(_in_calls(diag, state.graph, node.scope))


def build(state: _State) -> None:
    shapes = {name: f.output for name, f in state.facts.items()}
    shapes[INPUT] = state.graph.input_shape
    state.analysis = Analysis.model_construct(
        graph=state.graph,
        facts=state.facts,
        totals=_sum(list(state.facts.values())),
        orders=sequence_orders.assign(state.graph, shapes),
    )


def check_assertions(state: _State) -> None:
    """Every assertion whose target is known: an error (of shape, name or key) makes the
    checks of what depends on it moot, and only those (`expect layer1.params` is checked
    when a layer of layer4 is wrong; `expect params`, of the whole network, is not)."""
    analysis = state.analysis
    if analysis is None:
        return
    for a in state.graph.assertions:
        if not (analysis.complete or _known(a.target, analysis)):
            continue
        diag = check_assertion(a, analysis)
        if diag is not None:
            # an `-> shape` in a block's body: the calls; on a call: the calls around it
            inside = analysis.graph.node(a.target).scope if a.target in analysis.facts else a.target.rpartition(".")[0]
            state.diags.append(_in_calls(diag, state.graph, inside))


def _known(target: str, analysis: Analysis) -> bool:
    """Whether a layer or a scope has all its facts (a failed statement leaves the rest of
    its scope without them: they read its missing output)."""
    if target in analysis.facts:
        return True
    scope = analysis.graph.scopes_by_path.get(target) if target else None
    if scope is None:
        return False
    return (scope.output == INPUT or scope.output in analysis.facts) and all(n in analysis.facts for n in scope.nodes)


PASSES: tuple[Callable[[_State], None], ...] = (infer_shapes, warn_uneven, build, check_assertions)


def analyze(graph: Graph) -> tuple[Analysis, list[Diagnostic]]:
    """Run every pass; return the analysis (see `Analysis.complete`) and the diagnostics."""
    state = _State(graph)
    for run in PASSES:
        run(state)
    assert state.analysis is not None  # `build` made it
    return state.analysis, state.diags


# --- assertions ----------------------------------------------------------------------
def fmt_int(n: int) -> str:
    return f"{n:,}"


def si(n: float) -> str:
    """28823912 -> '28.82M' (and T from 1e12 on: a 7B model's MACs at 4k tokens are 31.46T).

    Past 9,999T a suffix would only sit after an exponent (`4.254e+25T`): plain `4.254e+37`.

    >>> si(28823912), si(31.46e12), si(4.254e37)
    ('28.82M', '31.46T', '4.254e+37')
    """
    if abs(n) >= 1e16:
        return f"{n:.4g}"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{suffix}"
    return f"{n:g}"


def written_unit(text: str) -> Decimal:
    """The value of the last digit written: '28.82M' -> 10000, '28_823_912' -> 1.

    >>> [int(written_unit(t)) for t in ("28.82M", "34.8K", "4M", "28_823_912")]
    [10000, 100, 1000000, 1]
    """
    clean = text.replace("_", "")
    scale = Decimal(1)
    if clean and clean[-1] in "KMG":
        scale = Decimal(10) ** {"K": 3, "M": 6, "G": 9}[clean[-1]]
        clean = clean[:-1]
    exponent = Decimal(clean).as_tuple().exponent
    assert isinstance(exponent, int)
    return (Decimal(1).scaleb(exponent)) * scale


def _describe(a: Assertion) -> str:
    target = f"{a.target}." if a.target else ""
    tol = ""
    if a.tolerance is not None:
        tol = f" ± {a.tolerance:g}{'%' if a.tolerance_is_percent else ''}"
    return f"expect {target}{a.quantity} {a.op} {a.text}{tol}"


def check_assertion(a: Assertion, analysis: Analysis) -> Diagnostic | None:
    """None if the assertion holds, else an error naming expected and actual."""
    if a.quantity == "output":
        actual_shape = analysis.output_of(a.target)
        expected = a.expected
        assert isinstance(expected, tuple)
        if written_layout(expected) is actual_shape.layout and actual_shape.dims == expected:
            return None
        who = a.target or "the network"
        hint = _derivation_hint(analysis, a.target)
        # A `-> shape` is a shape error, E202; an `expect`, whatever its quantity, E300
        if a.span == a.value_span:  # written as `-> shape`
            msg = f"{who} outputs {actual_shape.text()}, but the spec says {a.text}"
            return error("E202", msg, a.value_span, hint)
        msg = f"{_describe(a)} failed: {who} outputs {actual_shape.text()}"
        return error("E300", msg, a.value_span, hint)

    totals = analysis.totals_under(a.target)
    counts = {"params": totals.params, "weights": totals.weights, "biases": totals.biases, "macs": totals.macs}
    actual = counts[a.quantity]
    ok, how = _holds(a, actual)
    if ok:
        return None
    msg = f"{_describe(a)} failed: actual {a.quantity} {fmt_int(actual)}"
    if abs(actual) >= 1000:  # below 1K the SI form repeats the number: "75 (75)"
        msg += f" ({si(actual)})"
    if how:
        msg += f"; {how}"
    hint = None
    if a.op == "=" and a.tolerance is None and written_unit(a.text) > 1:
        hint = f"write the exact value ({actual:_}) or add a tolerance (± 1%)"
    elif a.op == "=" and a.tolerance is None:
        hint = f"the exact value is {actual:_}"
    join = analysis.facts.get(a.target)
    merge = KINDS[join.kind].traits.merge if join is not None else None
    if merge is not None:
        residual = join is not None and join.kind == "add" and not analysis.graph.node(a.target).attrs.get("broadcast")
        noun = "residual's sum" if residual else merge.noun
        hint = (
            f"'{a.target}' names the {noun} alone, which has no {a.quantity}; to total a residual or "
            "merge with its branches, make it a block and name the call (`fire2: Fire SQ=16 E=64`)"
        )
    elif a.quantity == "params" and totals.biases and _holds(a, totals.weights)[0]:
        # The lecture's slides count weights only: `expect conv1.params = 34_848`.
        who = f"{a.target}'s" if a.target else "the network's"
        hint = (
            f"that is {who} weight count; params are weights + biases "
            f"({totals.weights:,} + {totals.biases:,}): write `weights` to check the weights alone"
        )
    return error("E300", msg, a.value_span, hint)


def _holds(a: Assertion, actual: int) -> tuple[bool, str]:
    """Whether a count assertion holds for `actual`, and what to add to its message if not."""
    expected = a.expected
    assert isinstance(expected, (int, float))
    if a.op == "=":
        if a.tolerance is not None:
            allowed = abs(expected) * a.tolerance / 100 if a.tolerance_is_percent else a.tolerance
            how = f"off by {abs(actual - expected) / expected * 100:.2f}%" if expected else ""
            return abs(actual - expected) <= allowed, how
        unit = written_unit(a.text)
        diff = Decimal(actual) - Decimal(str(expected))
        how = "" if unit == 1 else f"rounded to the digits written, {actual:,} is {_round_like(actual, a.text)}"
        return -unit / 2 <= diff < unit / 2, how  # what ROUND_HALF_UP to that digit gives
    ok = {
        "<": actual < expected,
        "<=": actual <= expected,
        ">": actual > expected,
        ">=": actual >= expected,
    }[a.op]
    # A budget compares exact values: `>= 62.38M` means >= 62,380,000.
    return ok, f"{a.text} is {fmt_int(round(expected))} exactly" if "." in a.text and a.text[-1] in "KMG" else ""


def _round_like(actual: int, text: str) -> str:
    unit = written_unit(text)
    clean = text.replace("_", "")
    suffix = clean[-1] if clean[-1] in "KMG" else ""
    scale = Decimal(10) ** {"K": 3, "M": 6, "G": 9}.get(suffix, 0)
    places = unit / scale
    value = (Decimal(actual) / scale).quantize(places, rounding="ROUND_HALF_UP")
    return f"{value}{suffix}"


def _derivation_hint(analysis: Analysis, target: str) -> str | None:
    facts = analysis.facts.get(target)
    if facts is None and target:  # a block call or repeat: say which layer ends it
        scope = analysis.graph.scopes_by_path.get(target)
        last = scope.output if scope is not None else None
        if last is None or last not in analysis.facts:
            return None
        how = _derivation_hint(analysis, last) or "`archc summary --explain` derives each shape"
        return f"its last layer, {last}, outputs {analysis.facts[last].output.text()}: {how}"
    if facts is None or facts.window is None:
        return None
    layer = facts.applied(analysis.graph.node(target).attrs)
    lines = KINDS[facts.kind].explain(layer, facts.counts)
    shape_lines = [line.text for line in lines if line.topic is Topic.SHAPE]
    return "; ".join(shape_lines) if shape_lines else None
