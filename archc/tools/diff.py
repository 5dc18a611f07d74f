"""The layer-by-layer comparison of two networks (`archc diff`), as the lecture compares AlexNet and ZFNet.

    >>> import archc
    >>> a = archc.loads("input 227x227x3\\nconv1: conv K=96 F=11 S=4\\nrelu", "a.arch")
    >>> b = archc.loads("input 227x227x3\\nconv1: conv K=96 F=7 S=4\\nrelu", "b.arch")
    >>> d = diff(a, b)
    >>> row = d.rows[0]
    >>> row.name, row.changes, row.weights.diff
    ('conv1', [('F', '11', '7')], -20736)

Layers are aligned as a text diff aligns lines: a longest common subsequence
(difflib's) of the two layer lists, each layer read as its enclosing blocks,
its kind and its keys, and its name where the spec wrote one. Generated names
(`relu3`, `layer1.0`) take no part, so inserting one unnamed conv shows one
added row, not every later layer renamed. Within a stretch that differs,
layers of the same kind in the same blocks (and the same written name) pair up
as changed; the rest are added or removed. Rows are grouped by block instance
and repeat, as `archc summary` groups them, each group row with its subtotals
and its changed arguments (`N 3 -> 18`).

The alignment is bounded, since specs come from pull requests: the common
head and tail are matched first, in linear time, and the LCS runs on the rest
only while the pairs of equal tokens it would visit stay under `LCS_BUDGET`
(difflib's cost: 20,000 flat `relu` lines against the same with one changed
took minutes); past it, that stretch is paired position by position, which
is linear and still shows every difference, only less closely aligned.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from archc.analysis import LayerFacts
from archc.api import Network
from archc.ir import Graph, Node, Scope, ScopeKind
from archc.kinds import KINDS, same_value, show_value
from archc.tools.summary import scope_label
from archc.tools.text_table import fixed_width

SAME, CHANGED, ADDED, REMOVED = "same", "changed", "added", "removed"
LCS_BUDGET = 2_000_000  # pairs of equal tokens difflib may visit in one stretch (about a quarter second)


@dataclass(frozen=True)
class Pair:
    """A count on each side (None where the layer is absent) and B - A."""

    a: int | None
    b: int | None

    @property
    def diff(self) -> int:
        return (self.b or 0) - (self.a or 0)

    def json(self) -> dict[str, int | None]:
        return {"a": self.a, "b": self.b, "diff": self.diff}


@dataclass(frozen=True)
class Row:
    name: str  # B's name; A's for a removed layer
    status: str  # same | changed | added | removed
    kind: tuple[str | None, str | None]  # a group's: its block and arguments, `repeat x3`
    changes: list[tuple[str, str, str]]  # (key, A's value, B's value), as the spec writes them
    output: tuple[str | None, str | None]
    weights: Pair
    biases: Pair
    params: Pair
    macs: Pair
    names: tuple[str | None, str | None] = (None, None)  # on each side (generated names may differ)
    depth: int = 0  # how many block instances and repeats enclose it
    group: bool = False  # a block instance, repeat or repeat copy, with its subtotals


@dataclass(frozen=True)
class Diff:
    a: Network
    b: Network
    rows: list[Row]
    totals: dict[str, Pair] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        same_io = self.a.graph.input_shape == self.b.graph.input_shape
        return same_io and all(r.status == SAME for r in self.rows)


def _attr_changes(na: Node, nb: Node) -> list[tuple[str, str, str]]:
    if na.kind != nb.kind:
        return []  # the kind column says it; other keys do not compare
    keys = [k.name for k in KINDS[na.kind].keys]
    out = []
    for key in keys:
        va, vb = na.attrs.get(key), nb.attrs.get(key)
        if not same_value(va, vb):  # `F=3` and `F=3x3` are the same window
            out.append((key, "-" if va is None else show_value(va), "-" if vb is None else show_value(vb)))
    return out


def _row(na: Node | None, fa: LayerFacts | None, nb: Node | None, fb: LayerFacts | None, depth: int) -> Row:
    def pair(attr: str) -> Pair:
        return Pair(getattr(fa, attr) if fa else None, getattr(fb, attr) if fb else None)

    changes = _attr_changes(na, nb) if na is not None and nb is not None else []
    kind = (na.kind if na else None, nb.kind if nb else None)
    output = (fa.output.text() if fa else None, fb.output.text() if fb else None)
    counts = _counts(pair)
    names = (na.name if na else None, nb.name if nb else None)
    if na is None:
        status = ADDED
    elif nb is None:
        status = REMOVED
    elif changes or kind[0] != kind[1] or output[0] != output[1] or any(p.diff for p in counts):
        status = CHANGED
    else:
        status = SAME
    name = names[1] or names[0] or ""
    return Row(name, status, kind, changes, output, *counts, names=names, depth=depth)


def _value_key(value: Any) -> str:
    """A key's value as it compares: `F=3` and `F=3x3` are the same window."""
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        value = value[0]
    return show_value(value)


class _Tokens:
    """What aligns a layer: its enclosing scopes (kind, block, a written name), its kind, its keys,
    and its name where one was written; never a generated name."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.chains: dict[str, tuple[Hashable, ...]] = {"": ()}

    def scopes(self, path: str) -> tuple[Hashable, ...]:
        if path not in self.chains:
            parent = self.scopes(self.graph.parent_scope(path))
            scope = self.graph.scopes_by_path.get(path)
            if scope is None:  # a dotted level that is no scope of its own
                self.chains[path] = parent
            else:
                # a written name, or a repeat copy's index: copy i of A is copy i of B
                own = scope.label is not None or scope.kind is ScopeKind.COPY
                label = path.rpartition(".")[2] if own else None
                self.chains[path] = (*parent, (str(scope.kind), scope.block, label))
        return self.chains[path]

    def loose(self, node: Node) -> Hashable:
        """The same layer, possibly changed: same scopes, kind and written name."""
        written = node.name.rpartition(".")[2] if node.label is not None else None
        return (self.scopes(node.scope), node.kind, written)

    def exact(self, node: Node) -> Hashable:
        keys = tuple(sorted((k, _value_key(v)) for k, v in node.attrs.items() if v is not None))
        return (self.loose(node), keys)


def align(a: list[Node], b: list[Node], graph_a: Graph, graph_b: Graph) -> list[tuple[Node | None, Node | None]]:
    """The two layer lists merged: pairs of the same layer, and (layer, None) / (None, layer) for the rest.

    An LCS over the exact tokens; within each stretch that differs, an LCS over
    the loose tokens pairs the changed layers.
    """
    ta, tb = _Tokens(graph_a), _Tokens(graph_b)
    out: list[tuple[Node | None, Node | None]] = []
    exact_a, exact_b = [ta.exact(n) for n in a], [tb.exact(n) for n in b]
    for tag, i1, i2, j1, j2 in _opcodes(exact_a, exact_b):
        if tag == "equal":
            out.extend(zip(a[i1:i2], b[j1:j2], strict=True))
            continue
        loose_a, loose_b = [ta.loose(n) for n in a[i1:i2]], [tb.loose(n) for n in b[j1:j2]]
        for tag2, k1, k2, l1, l2 in _opcodes(loose_a, loose_b):
            if tag2 == "equal":
                out.extend(zip(a[i1 + k1 : i1 + k2], b[j1 + l1 : j1 + l2], strict=True))
            else:
                out.extend((n, None) for n in a[i1 + k1 : i1 + k2])
                out.extend((None, n) for n in b[j1 + l1 : j1 + l2])
    return out


Opcode = tuple[str, int, int, int, int]


def _opcodes(x: Sequence[Hashable], y: Sequence[Hashable]) -> list[Opcode]:
    """difflib's opcodes for `x` -> `y`, in bounded time: "equal" pairs the layers of its
    stretches one to one (each row then says itself whether they differ)."""
    n, m = len(x), len(y)
    head = 0
    while head < min(n, m) and x[head] == y[head]:
        head += 1
    tail = 0
    while tail < min(n, m) - head and x[n - 1 - tail] == y[m - 1 - tail]:
        tail += 1
    out: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    mx, my = x[head : n - tail], y[head : m - tail]
    if mx or my:
        count = Counter(my)
        if sum(count[t] for t in mx) <= LCS_BUDGET:
            matcher = difflib.SequenceMatcher(None, mx, my, autojunk=False)
            out.extend((tag, head + i1, head + i2, head + j1, head + j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes())
        else:  # too many equal tokens for an LCS: position by position
            k = min(len(mx), len(my))
            out.append(("equal", head, head + k, head, head + k))
            if len(mx) > k:
                out.append(("delete", head + k, n - tail, head + k, head + k))
            if len(my) > k:
                out.append(("insert", head + k, head + k, head + k, m - tail))
    if tail:
        out.append(("equal", n - tail, n, m - tail, m))
    return out


def _chain(graph: Graph, path: str) -> list[str]:
    """The scope paths around a layer, outermost first."""
    chain = []
    while path:
        if path in graph.scopes_by_path:
            chain.append(path)
        path = graph.parent_scope(path)
    return chain[::-1]


def _scope_pairs(pairs: list[tuple[Node | None, Node | None]], a: Graph, b: Graph) -> dict[str, str]:
    """B's scopes and the A scope each stands for: the scope at the same depth around the first
    pair of layers they hold, when both have the same kind and block."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for na, nb in pairs:
        if na is None or nb is None:
            continue
        ca, cb = _chain(a, na.scope), _chain(b, nb.scope)
        for sa, sb in zip(ca, cb, strict=False):
            if sb in out or sa in taken:
                continue
            xa, xb = a.scopes_by_path[sa], b.scopes_by_path[sb]
            if (xa.kind, xa.block) == (xb.kind, xb.block):
                out[sb] = sa
                taken.add(sa)
    return out


def _arg_changes(sa: Scope, sb: Scope) -> list[tuple[str, str, str]]:
    """Changed block arguments, `N 3 -> 18`; a repeat's count as `count`."""
    out = []
    for key in dict.fromkeys([*sa.args, *sb.args]):
        va, vb = sa.args.get(key), sb.args.get(key)
        if not same_value(va, vb):
            out.append((key, "-" if va is None else show_value(va), "-" if vb is None else show_value(vb)))
    return out


def _group_row(d_a: Network, d_b: Network, sa: str | None, sb: str | None, depth: int) -> Row:
    xa = d_a.graph.scopes_by_path[sa] if sa else None
    xb = d_b.graph.scopes_by_path[sb] if sb else None
    ta = d_a.analysis.totals_under(sa) if sa else None
    tb = d_b.analysis.totals_under(sb) if sb else None

    def pair(attr: str) -> Pair:
        return Pair(getattr(ta, attr) if ta else None, getattr(tb, attr) if tb else None)

    changes = _arg_changes(xa, xb) if xa is not None and xb is not None else []
    output = (
        d_a.analysis.shape_of(xa.output).text() if xa else None,
        d_b.analysis.shape_of(xb.output).text() if xb else None,
    )
    kind = (scope_label(xa) if xa else None, scope_label(xb) if xb else None)
    if changes:  # the changes column shows the arguments
        kind = (_block_word(xa) if xa else None, _block_word(xb) if xb else None)
    status = ADDED if xa is None else REMOVED if xb is None else CHANGED if changes else SAME
    name = sb or sa or ""
    return Row(name, status, kind, changes, output, *_counts(pair), names=(sa, sb), depth=depth, group=True)


def _counts(pair: Callable[[str], Pair]) -> tuple[Pair, Pair, Pair, Pair]:
    """Weights, biases, params and MACs, in Row's order."""
    return pair("weights"), pair("biases"), pair("params"), pair("macs")


def _block_word(scope: Scope) -> str:
    """What a group is, without its arguments (the changes column has those): `Stage`, `repeat`, `copy`."""
    if scope.kind is ScopeKind.REPEAT:
        return "repeat"
    return scope.block or "copy"


def diff(a: Network, b: Network) -> Diff:
    """Compare two analysed networks layer by layer."""
    pairs = align(list(a.graph.nodes), list(b.graph.nodes), a.graph, b.graph)
    b_to_a = _scope_pairs(pairs, a.graph, b.graph)
    a_to_b = {sa: sb for sb, sa in b_to_a.items()}
    rows: list[Row] = []
    open_groups: list[tuple[str | None, str | None]] = []
    for na, nb in pairs:
        groups: list[tuple[str | None, str | None]]
        if nb is not None:
            groups = [(b_to_a.get(sb), sb) for sb in _chain(b.graph, nb.scope)]
        else:
            assert na is not None
            groups = [(sa, a_to_b.get(sa)) for sa in _chain(a.graph, na.scope)]
        common = 0
        while common < min(len(groups), len(open_groups)) and groups[common] == open_groups[common]:
            common += 1
        for depth in range(common, len(groups)):
            rows.append(_group_row(a, b, *groups[depth], depth))
        open_groups = groups
        rows.append(
            _row(
                na,
                a.analysis.facts[na.name] if na else None,
                nb,
                b.analysis.facts[nb.name] if nb else None,
                len(groups),
            )
        )
    _mark_changed_groups(rows)
    ta, tb = a.analysis.totals, b.analysis.totals
    totals = {
        "params": Pair(ta.params, tb.params),
        "weights": Pair(ta.weights, tb.weights),
        "biases": Pair(ta.biases, tb.biases),
        "macs": Pair(ta.macs, tb.macs),
    }
    return Diff(a, b, rows, totals)


def _mark_changed_groups(rows: list[Row]) -> None:
    """A group that holds a differing row, or whose counts or output differ, is changed.

    One pass with a stack of the open groups (a group holds the rows after it
    that are deeper than it), so 30,000 nested repeat copies stay linear.
    """
    open_groups: list[list[int | bool]] = []  # [index of an open group, whether a row inside it differs]

    def close() -> None:
        i, inner = open_groups.pop()
        row = rows[int(i)]
        counts = (row.weights, row.biases, row.params, row.macs)
        if row.status == SAME and (inner or any(p.diff for p in counts) or row.output[0] != row.output[1]):
            rows[int(i)] = replace(row, status=CHANGED)
        if rows[int(i)].status != SAME and open_groups:
            open_groups[-1][1] = True

    for i, row in enumerate(rows):
        while open_groups and rows[int(open_groups[-1][0])].depth >= row.depth:
            close()
        if row.group:
            open_groups.append([i, False])
        elif row.status != SAME and open_groups:
            open_groups[-1][1] = True
    while open_groups:
        close()


def _side(net: Network) -> dict[str, Any]:
    return {
        "path": net.path,
        "network": net.name,
        "input": list(net.graph.input_shape.dims),
        "output": list(net.analysis.output_shape.dims),
        "layers": len(net.graph.nodes),
    }


def diff_json(d: Diff) -> dict[str, Any]:
    """The `archc diff --json` document.

    `{"a": SIDE, "b": SIDE, "identical": bool, "layers": [LAYER...], "blocks": [BLOCK...],
    "totals": {Q: PAIR}}` where SIDE is `{path, network, input, output, layers}` (shapes as
    lists, [H, W, C] or [N]), LAYER is `{name, names: {a, b}, status, kind: {a, b}, changes:
    [{key, a, b}], output: {a, b}, weights, biases, params, macs, depth}` with status
    same|changed|added|removed, a side absent as null, in the aligned order; BLOCK is a block
    instance, repeat or repeat copy with the same fields, its kind the block's name (`repeat`,
    `copy`), its changes the changed arguments and its counts the subtotals; PAIR is
    `{a, b, diff}` (diff = b - a) and Q is params, weights, biases, macs.
    """

    def dims(text: str | None) -> list[int] | None:
        return None if text is None else [int(x) for x in text.split("x")]

    def entry(r: Row) -> dict[str, Any]:
        return {
            "name": r.name,
            "names": {"a": r.names[0], "b": r.names[1]},
            "status": r.status,
            "kind": {"a": r.kind[0], "b": r.kind[1]},
            "changes": [{"key": k, "a": va, "b": vb} for k, va, vb in r.changes],
            "output": {"a": dims(r.output[0]), "b": dims(r.output[1])},
            "weights": r.weights.json(),
            "biases": r.biases.json(),
            "params": r.params.json(),
            "macs": r.macs.json(),
            "depth": r.depth,
        }

    return {
        "a": _side(d.a),
        "b": _side(d.b),
        "identical": d.identical,
        "layers": [entry(r) for r in d.rows if not r.group],
        "blocks": [entry(r) for r in d.rows if r.group],
        "totals": {k: p.json() for k, p in d.totals.items()},
    }


# --- text --------------------------------------------------------------------------------------
MARK = {SAME: " ", CHANGED: "~", ADDED: "+", REMOVED: "-"}


def arrow(a: str | None, b: str | None) -> str:
    """`55x55x96 -> 56x56x96`, or one value when both sides agree or only one side has the layer."""
    if a == b or a is None or b is None:
        return a or b or ""
    return f"{a} -> {b}"


def count_cell(p: Pair) -> str:
    """`34,848 -> 14,112 (-20,736)`, `614,400` when equal, `+36,864` for an added layer, `-` for none."""
    if p.a is None or p.b is None:
        return f"{p.diff:+,}" if p.diff else "-"
    if p.a == p.b:
        return f"{p.a:,}" if p.a else "-"
    return f"{p.a:,} -> {p.b:,} ({p.diff:+,})"


def name_cell(r: Row) -> str:
    """The layer's name, indented by its depth; `relu3 (A: relu2)` where the generated names differ."""
    name = r.name
    a, b = r.names
    if a is not None and b is not None and a != b:
        name = f"{b} (A: {a})"
    return "  " * r.depth + name


def cells(r: Row) -> list[str]:
    """One table row: mark, layer, kind, changes, output, weights, params."""
    changes = ", ".join(f"{k} {va} -> {vb}" for k, va, vb in r.changes)
    return [
        MARK[r.status],
        name_cell(r),
        arrow(*r.kind),
        changes,
        arrow(*r.output),
        count_cell(r.weights),
        count_cell(r.params),
    ]


HEADER = ["", "layer", "kind", "changes", "output", "weights", "params"]


def shown_rows(d: Diff, only_changed: bool = False) -> list[Row]:
    """The rows to print: all, or (`--changed`) those that differ, with the groups that hold them."""
    if not only_changed:
        return d.rows
    return [r for r in d.rows if r.status != SAME]


def total_lines(d: Diff) -> list[str]:
    out = []
    for key, p in d.totals.items():
        value = f"{p.a:,}" if p.a == p.b else f"{p.a:,} -> {p.b:,} ({p.diff:+,})"
        out.append(f"{key:8} {value}")
    return out


def summary_line(d: Diff) -> str:
    layers = [r for r in d.rows if not r.group]
    changed = sum(r.status != SAME for r in layers)
    return f"{changed} of {len(layers)} layers differ" if changed else "no layer differs"


def plain_text(d: Diff, only_changed: bool = False) -> str:
    """The comparison as a fixed-width table, then the totals (stable: tests read it)."""
    rows = [HEADER] + [cells(r) for r in shown_rows(d, only_changed)]
    lines = [f"{d.a.name} ({d.a.path}) -> {d.b.name} ({d.b.path})"]
    lines.append(f"input {arrow(d.a.graph.input_shape.text(), d.b.graph.input_shape.text())}")
    lines.append("")
    lines.extend(fixed_width(rows))
    lines.append("")
    lines.extend(total_lines(d))
    lines.append(summary_line(d))
    return "\n".join(lines)
