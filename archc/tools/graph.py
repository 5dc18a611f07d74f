"""A diagram of an analysed network in Graphviz DOT (`archc graph`).

    >>> import archc
    >>> net = archc.loads("input 8x8x3\\nc1: conv K=4 F=3\\nrelu", "tiny.arch")
    >>> dot = to_dot(net)
    >>> '"c1" [' in dot and '"input" -> "c1"' in dot and '"c1" -> "relu1"' in dot
    True

One box per layer, top to bottom: its name, kind with the keys that differ
from their defaults, output shape and parameters. Edges follow the layers'
inputs, so a residual's shortcut and the branches of a merge appear as branches;
the shortcut edge into a residual's add is dashed. Block instances, repeats
and repeat copies are clusters labelled with the block and its arguments.
`collapse=True` draws each outermost block instance (or repeat copy) as one box.

Every label is an HTML-like label built from escaped text, and every node id a
quoted, escaped string, since names come from user specs.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass, field

from archc.api import Network
from archc.ir import INPUT, Node, Scope, ScopeKind
from archc.kinds import KINDS, Family, show_value
from archc.tools.summary import attr_text

RENDERED = ("svg", "png", "pdf")  # formats that need Graphviz's `dot`
INSTALL_HINT = "install Graphviz (apt-get install graphviz, or brew install graphviz) or write DOT with -o NAME.dot"

# fill colours by family: convolutions blue, pooling green, fc orange, normalisation yellow
_FILL = {
    Family.CONV: "#cfe2f3",
    Family.POOL: "#d9ead3",
    Family.DENSE: "#fce5cd",
    Family.NORM: "#fff2cc",
    Family.MERGE: "#ead1dc",
    Family.EMBEDDING: "#d0e0e3",
    Family.ATTENTION: "#f4cccc",
}
_CLUSTER_FILL = ("#f7f7f7", "#ececec")  # alternate by depth so nested clusters stand apart


class GraphvizMissing(Exception):
    """`dot` is not on PATH."""


def quote(text: str) -> str:
    """A DOT quoted string: `a"b` -> `"a\\"b"`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(lines: list[tuple[str, str]]) -> str:
    """An HTML-like label from (style, text) lines; style is "b", "small" or ""."""
    parts = []
    for style, text in lines:
        esc = html.escape(text, quote=True)
        if style == "b":
            esc = f"<B>{esc}</B>"
        elif style == "small":
            esc = f'<FONT POINT-SIZE="10" COLOR="#444444">{esc}</FONT>'
        parts.append(esc)
    return "<" + "<BR/>".join(parts) + ">"


def _scope_title(scope: Scope) -> str:
    if scope.kind is ScopeKind.REPEAT:
        return f"{scope.path}: repeat x{scope.args.get('count', 0)}"
    args = " ".join(f"{k}={show_value(v)}" for k, v in scope.args.items())
    what = f"{scope.block} {args}".strip() if scope.block else "copy"
    return f"{scope.path}: {what}"


@dataclass
class _Cluster:
    scope: Scope | None  # None for the top level
    nodes: list[str] = field(default_factory=list)  # DOT statements of its own boxes
    children: list[_Cluster] = field(default_factory=list)


def _node_stmt(net: Network, node: Node) -> str:
    facts = net.analysis.facts[node.name]
    traits = KINDS[node.kind].traits
    fill = _FILL.get(traits.family, "#ffffff")
    if traits.merge is not None:
        label = _html([("b", traits.merge.symbol), ("small", facts.output.text())])
        return f'{quote(node.name)} [label={label}, shape=ellipse, fillcolor="{fill}", tooltip={quote(node.name)}]'
    kind = f"{node.kind} {attr_text(node.kind, node.attrs)}".strip()
    lines = [("b", node.name), ("", kind), ("small", facts.output.text())]
    if facts.params:
        lines[-1] = ("small", f"{facts.output.text()}  ·  {facts.params:,} params")
    return f'{quote(node.name)} [label={_html(lines)}, fillcolor="{fill}"]'


def _instance_stmt(net: Network, scope: Scope) -> str:
    totals = net.analysis.totals_under(scope.path)
    shape = net.analysis.shape_of(scope.output).text()
    title = _scope_title(scope).split(": ", 1)
    lines = [("b", title[0]), ("", title[1]), ("small", f"{shape}  ·  {totals.params:,} params")]
    return f'{quote(scope.path)} [label={_html(lines)}, fillcolor="#e6e0f8", penwidth=1.5]'


def to_dot(net: Network, collapse: bool = False) -> str:
    """The network as DOT text (deterministic: same spec, same text)."""
    scopes = list(net.graph.scopes)
    by_path = net.graph.scopes_by_path
    parent = {s.path: net.graph.parent_scope(s.path) for s in scopes}
    # the box each layer is drawn in: itself, or its outermost collapsed instance
    rep: dict[str, str] = {INPUT: INPUT}
    collapsed: set[str] = set()
    for node in net.graph.nodes:
        rep[node.name] = node.name
        if collapse and node.scope:
            chain = [node.scope]
            while parent.get(chain[-1]):
                chain.append(parent[chain[-1]])
            outer = [p for p in chain if by_path[p].kind is not ScopeKind.REPEAT]
            if outer:
                rep[node.name] = outer[-1]
                collapsed.add(outer[-1])

    clusters: dict[str, _Cluster] = {"": _Cluster(None)}
    for s in scopes:
        if not _within(s.path, collapsed, parent):
            clusters[s.path] = _Cluster(s)
    for path, cluster in clusters.items():
        if path:
            up = parent[path]
            while up not in clusters:
                up = parent[up]
            clusters[up].children.append(cluster)

    shape = net.graph.input_shape.text()
    clusters[""].nodes.append(
        f'{quote(INPUT)} [label={_html([("b", "input"), ("small", shape)])}, shape=ellipse, fillcolor="#ffffff"]'
    )
    for node in net.graph.nodes:
        if rep[node.name] == node.name:
            clusters[node.scope if node.scope in clusters else ""].nodes.append(_node_stmt(net, node))
    position = net.graph.positions
    for path in sorted(collapsed, key=lambda p: position[by_path[p].nodes[0]]):
        up = parent[path]
        while up not in clusters:
            up = parent[up]
        clusters[up].nodes.append(_instance_stmt(net, by_path[path]))

    out = [
        f"digraph {quote(net.name)} {{",
        "  rankdir=TB;",
        '  graph [fontname="Helvetica", fontsize=12, nodesep=0.3, ranksep=0.3, '
        f"labelloc=t, label={_html([('b', net.name), ('small', f'{net.params:,} params, {net.macs:,} MACs')])}];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, margin="0.15,0.05"];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    counter = [0]
    _emit_cluster(clusters[""], out, 1, counter)
    out.extend(_edges(net, rep))
    out.append("}")
    return "\n".join(out) + "\n"


def _within(path: str, collapsed: set[str], parent: dict[str, str]) -> bool:
    """Whether scope `path` is one of the `collapsed` scopes or lies inside one."""
    while path:
        if path in collapsed:
            return True
        path = parent[path]
    return False


def _emit_cluster(cluster: _Cluster, out: list[str], depth: int, counter: list[int]) -> None:
    pad = "  " * depth
    out.extend(pad + stmt + ";" for stmt in cluster.nodes)
    for child in cluster.children:
        counter[0] += 1
        assert child.scope is not None
        fill = _CLUSTER_FILL[depth % 2]
        label = _html([("b", _scope_title(child.scope))])
        out.append(f"{pad}subgraph cluster_{counter[0]} {{")
        out.append(f'{pad}  label={label}; style="rounded,filled"; fillcolor="{fill}"; color="#999999";')
        out.append(f"{pad}  labeljust=l; fontsize=11;")
        _emit_cluster(child, out, depth + 1, counter)
        out.append(f"{pad}}}")


def _edges(net: Network, rep: dict[str, str]) -> list[str]:
    seen: set[tuple[str, str]] = set()
    out = []
    for node in net.graph.nodes:
        for i, src in enumerate(node.inputs):
            a, b = rep[src], rep[node.name]
            if a == b or (a, b) in seen:
                continue
            seen.add((a, b))
            # the second input of a residual's add is its shortcut (a written `add` has branches)
            shortcut = node.kind == "add" and i == 1 and not node.attrs.get("broadcast")
            style = ' [style=dashed, label=" shortcut", fontsize=9, fontcolor="#777777"]' if shortcut else ""
            out.append(f"  {quote(a)} -> {quote(b)}{style};")
    return out


def render(dot_text: str, fmt: str, timeout: float = 120) -> bytes:
    """Run Graphviz's `dot -T<fmt>`; raises GraphvizMissing, or RuntimeError with dot's message."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissing(INSTALL_HINT)
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"running dot failed: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
    return proc.stdout
