"""The layer-by-layer comparison of two networks (`archc diff`), as the lecture compares AlexNet and ZFNet.

    >>> import archc
    >>> a = archc.loads("input 227x227x3\\nconv1: conv K=96 F=11 S=4\\nrelu", "a.arch")
    >>> b = archc.loads("input 227x227x3\\nconv1: conv K=96 F=7 S=4\\nrelu", "b.arch")
    >>> d = diff(a, b)
    >>> row = d.rows[0]
    >>> row.name, row.changes, row.weights.diff
    ('conv1', [('F', '11', '7')], -20736)

Layers are aligned by their full dotted name. Unnamed layers get generated
names by kind and position (`relu3` is the third unnamed relu in its scope),
so among unnamed layers this aligns by position. The rows follow the layer
order of B, with layers only in A placed where A has them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from archc.analysis import LayerFacts
from archc.api import Network
from archc.ir import Node
from archc.kinds import KINDS, same_value, show_value
from archc.tools.text_table import fixed_width

SAME, CHANGED, ADDED, REMOVED = "same", "changed", "added", "removed"


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
    name: str
    status: str  # same | changed | added | removed
    kind: tuple[str | None, str | None]
    changes: list[tuple[str, str, str]]  # (key, A's value, B's value), as the spec writes them
    output: tuple[str | None, str | None]
    weights: Pair
    biases: Pair
    params: Pair
    macs: Pair


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


def _row(name: str, na: Node | None, fa: LayerFacts | None, nb: Node | None, fb: LayerFacts | None) -> Row:
    def pair(attr: str) -> Pair:
        return Pair(getattr(fa, attr) if fa else None, getattr(fb, attr) if fb else None)

    changes = _attr_changes(na, nb) if na is not None and nb is not None else []
    kind = (na.kind if na else None, nb.kind if nb else None)
    output = (fa.output.text() if fa else None, fb.output.text() if fb else None)
    counts = {k: pair(k) for k in ("weights", "biases", "params", "macs")}
    if na is None:
        status = ADDED
    elif nb is None:
        status = REMOVED
    elif changes or kind[0] != kind[1] or output[0] != output[1] or any(p.diff for p in counts.values()):
        status = CHANGED
    else:
        status = SAME
    return Row(name, status, kind, changes, output, **counts)


def _order(names_a: list[str], names_b: list[str]) -> list[str]:
    """B's order, with A-only names where A has them (a diff's merge of the two lists)."""
    in_b = set(names_b)
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=names_a, b=names_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            out.extend(n for n in names_a[i1:i2] if n not in in_b)  # moved names stay at B's place
        if tag != "delete":
            out.extend(names_b[j1:j2])
    return out


def diff(a: Network, b: Network) -> Diff:
    """Compare two analysed networks layer by layer."""
    nodes_a = {n.name: n for n in a.graph.nodes}
    nodes_b = {n.name: n for n in b.graph.nodes}
    rows = [
        _row(
            name,
            nodes_a.get(name),
            a.analysis.facts.get(name),
            nodes_b.get(name),
            b.analysis.facts.get(name),
        )
        for name in _order(list(nodes_a), list(nodes_b))
    ]
    ta, tb = a.analysis.totals, b.analysis.totals
    totals = {
        "params": Pair(ta.params, tb.params),
        "weights": Pair(ta.weights, tb.weights),
        "biases": Pair(ta.biases, tb.biases),
        "macs": Pair(ta.macs, tb.macs),
    }
    return Diff(a, b, rows, totals)


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

    `{"a": SIDE, "b": SIDE, "identical": bool, "layers": [LAYER...], "totals": {Q: PAIR}}` where
    SIDE is `{path, network, input, output, layers}` (shapes as lists, [H, W, C] or [N]),
    LAYER is `{name, status, kind: {a, b}, changes: [{key, a, b}], output: {a, b}, weights,
    biases, params, macs}` with status same|changed|added|removed, a side absent as null,
    PAIR is `{a, b, diff}` (diff = b - a) and Q is params, weights, biases, macs.
    """

    def dims(text: str | None) -> list[int] | None:
        return None if text is None else [int(x) for x in text.split("x")]

    return {
        "a": _side(d.a),
        "b": _side(d.b),
        "identical": d.identical,
        "layers": [
            {
                "name": r.name,
                "status": r.status,
                "kind": {"a": r.kind[0], "b": r.kind[1]},
                "changes": [{"key": k, "a": va, "b": vb} for k, va, vb in r.changes],
                "output": {"a": dims(r.output[0]), "b": dims(r.output[1])},
                "weights": r.weights.json(),
                "biases": r.biases.json(),
                "params": r.params.json(),
                "macs": r.macs.json(),
            }
            for r in d.rows
        ],
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


def cells(r: Row) -> list[str]:
    """One table row: mark, layer, kind, changes, output, weights, params."""
    changes = ", ".join(f"{k} {va} -> {vb}" for k, va, vb in r.changes)
    return [
        MARK[r.status],
        r.name,
        arrow(*r.kind),
        changes,
        arrow(*r.output),
        count_cell(r.weights),
        count_cell(r.params),
    ]


HEADER = ["", "layer", "kind", "changes", "output", "weights", "params"]


def total_lines(d: Diff) -> list[str]:
    out = []
    for key, p in d.totals.items():
        value = f"{p.a:,}" if p.a == p.b else f"{p.a:,} -> {p.b:,} ({p.diff:+,})"
        out.append(f"{key:8} {value}")
    return out


def plain_text(d: Diff, only_changed: bool = False) -> str:
    """The comparison as a fixed-width table, then the totals (stable: tests read it)."""
    rows = [HEADER] + [cells(r) for r in d.rows if r.status != SAME or not only_changed]
    lines = [f"{d.a.name} ({d.a.path}) -> {d.b.name} ({d.b.path})"]
    lines.append(f"input {arrow(d.a.graph.input_shape.text(), d.b.graph.input_shape.text())}")
    lines.append("")
    lines.extend(fixed_width(rows))
    lines.append("")
    lines.extend(total_lines(d))
    changed = sum(r.status != SAME for r in d.rows)
    lines.append(f"{changed} of {len(d.rows)} layers differ" if changed else "no layer differs")
    return "\n".join(lines)
