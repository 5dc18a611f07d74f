"""A diagram of an analysed network in Graphviz DOT (`archc graph`).

    >>> import archc
    >>> net = archc.loads("input 8x8x3\\nc1: conv K=4 F=3\\nrelu", "tiny.arch")
    >>> dot = to_dot(net)
    >>> '"c1" [' in dot and '"input" -> "c1"' in dot and 'conv K=4 F=3 + relu' in dot
    True
    >>> '"c1" -> "relu1"' in to_dot(net, fold=False)
    True

One box per layer, top to bottom (`rankdir="LR"`: left to right): its name,
kind with the keys that differ from their defaults, output shape and
parameters. An activation that follows a layer as its only reader is drawn in
that layer's box (`conv K=64 F=3 P=1 + relu`); `fold=False` (`archc graph
--all`) gives it a box of its own. Edges follow the layers' inputs, so a
residual's shortcut and the branches of a merge appear as branches, in the
order the spec writes them (the statements are written in forward order,
which Graphviz keeps from left to right); the shortcut edge into a residual's
add is dashed. Block instances, repeats and repeat copies are clusters
labelled with the block and its arguments. `collapse=True` draws each
outermost block instance (or repeat copy) as one box.

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


RANKDIRS = ("TB", "LR", "BT", "RL")
# element-wise kinds that are not activations: they keep their own box
_NOT_ACTIVATIONS = frozenset({"dropout", "droppath", "identity"})


@dataclass
class _Cluster:
    scope: Scope | None  # None for the top level
    # its boxes (DOT statements) and child clusters, each at the forward position of its first layer:
    # Graphviz places siblings left to right in the order they are written, so branches keep theirs
    items: list[tuple[int, str | _Cluster]] = field(default_factory=list)


def is_activation(kind: str) -> bool:
    """A kind drawn in the box of the layer before it (relu, gelu, sigmoid, softmax ...)."""
    return KINDS[kind].traits.family is Family.ELEMENTWISE and kind not in _NOT_ACTIVATIONS


def _node_stmt(net: Network, node: Node, folded: list[Node]) -> str:
    """A layer's box; `folded`: the activations drawn in it, in order (its output is the last one's)."""
    facts = net.analysis.facts[node.name]
    traits = KINDS[node.kind].traits
    fill = _FILL.get(traits.family, "#ffffff")
    if traits.merge is not None:
        label = _html([("b", traits.merge.symbol), ("small", facts.output.text())])
        return f'{quote(node.name)} [label={label}, shape=ellipse, fillcolor="{fill}", tooltip={quote(node.name)}]'
    kind = " + ".join(f"{n.kind} {attr_text(n.kind, n.attrs)}".strip() for n in [node, *folded])
    output = net.analysis.facts[folded[-1].name].output if folded else facts.output
    lines = [("b", node.name), ("", kind), ("small", output.text())]
    if facts.params:
        lines[-1] = ("small", f"{output.text()}  ·  {facts.params:,} params")
    tooltip = f", tooltip={quote(' + '.join(n.name for n in [node, *folded]))}" if folded else ""
    return f'{quote(node.name)} [label={_html(lines)}, fillcolor="{fill}"{tooltip}]'


def _instance_stmt(net: Network, scope: Scope) -> str:
    totals = net.analysis.totals_under(scope.path)
    shape = net.analysis.shape_of(scope.output).text()
    title = _scope_title(scope).split(": ", 1)
    lines = [("b", title[0]), ("", title[1]), ("small", f"{shape}  ·  {totals.params:,} params")]
    return f'{quote(scope.path)} [label={_html(lines)}, fillcolor="#e6e0f8", penwidth=1.5]'


def to_dot(net: Network, collapse: bool = False, fold: bool = True, rankdir: str = "TB") -> str:
    """The network as DOT text (deterministic: same spec, same text)."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, not {rankdir!r}")
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

    folded = _fold(net, rep) if fold else {}

    clusters: dict[str, _Cluster] = {"": _Cluster(None)}
    for s in scopes:
        if not _within(s.path, collapsed, parent):
            clusters[s.path] = _Cluster(s)
    position = net.graph.positions
    for path, cluster in clusters.items():
        if path:
            up = parent[path]
            while up not in clusters:
                up = parent[up]
            clusters[up].items.append((_first(net, by_path[path]), cluster))

    shape = net.graph.input_shape.text()
    clusters[""].items.append(
        (-1, f'{quote(INPUT)} [label={_html([("b", "input"), ("small", shape)])}, shape=ellipse, fillcolor="#ffffff"]')
    )
    for node in net.graph.nodes:
        if rep[node.name] == node.name:
            stmt = _node_stmt(net, node, folded.get(node.name, []))
            clusters[node.scope if node.scope in clusters else ""].items.append((position[node.name], stmt))
    for path in collapsed:
        up = parent[path]
        while up not in clusters:
            up = parent[up]
        clusters[up].items.append((_first(net, by_path[path]), _instance_stmt(net, by_path[path])))
    for cluster in clusters.values():
        cluster.items.sort(key=lambda item: item[0])

    out = [
        f"digraph {quote(net.name)} {{",
        f"  rankdir={rankdir};",
        '  graph [fontname="Helvetica", fontsize=12, nodesep=0.3, ranksep=0.3, '
        f"labelloc=t, label={_html([('b', net.name), ('small', f'{net.params:,} params, {net.macs:,} MACs')])}];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, margin="0.15,0.05"];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    counter = [0]
    _emit_cluster(clusters[""], out, 1, counter)
    out.extend(_edges(net, rep))
    out.extend(_branch_order(net, rep))
    out.append("}")
    return "\n".join(out) + "\n"


def _first(net: Network, scope: Scope) -> int:
    """The forward position of a scope's first layer (of the value it passes on, when it has none)."""
    first = scope.nodes[0] if scope.nodes else scope.output
    return net.graph.positions.get(first, -1)


def _fold(net: Network, rep: dict[str, str]) -> dict[str, list[Node]]:
    """Activations drawn in the box before them: {box: [activation, ...]}; `rep` maps each to its box.

    An activation folds into the layer it reads when it is that layer's only reader
    (a branch that reads the value before the activation needs the two apart), in the
    same cluster, and the layer is not a merge (the sum's ellipse stays a symbol).
    """
    readers: dict[str, int] = {}
    for node in net.graph.nodes:
        for src in node.inputs:
            readers[src] = readers.get(src, 0) + 1
    readers[net.graph.output] = readers.get(net.graph.output, 0) + 1
    nodes = {n.name: n for n in net.graph.nodes}
    folded: dict[str, list[Node]] = {}
    for node in net.graph.nodes:
        if not is_activation(node.kind) or rep[node.name] != node.name or len(node.inputs) != 1:
            continue
        src = node.inputs[0]
        host = rep.get(src, src)
        if src == INPUT or readers.get(src, 0) != 1 or host not in nodes:
            continue
        if nodes[host].scope != node.scope or KINDS[nodes[host].kind].traits.merge is not None:
            continue
        rep[node.name] = host
        folded.setdefault(host, []).append(node)
    return folded


def _within(path: str, collapsed: set[str], parent: dict[str, str]) -> bool:
    """Whether scope `path` is one of the `collapsed` scopes or lies inside one."""
    while path:
        if path in collapsed:
            return True
        path = parent[path]
    return False


def _emit_cluster(cluster: _Cluster, out: list[str], depth: int, counter: list[int]) -> None:
    pad = "  " * depth
    for _, child in cluster.items:
        if isinstance(child, str):
            out.append(pad + child + ";")
            continue
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


def _branch_order(net: Network, rep: dict[str, str]) -> list[str]:
    """Invisible edges that hold each merge's branches left to right in the order written.

    Graphviz reorders siblings to cross fewer edges, and clusters defeat its
    `ordering` attribute; a `rank=same` chain of the branches' first boxes holds
    them. Only where every branch starts at a layer that reads the same fork, so
    that the chain adds no rank of its own.
    """
    nodes = {n.name: n for n in net.graph.nodes}
    readers: dict[str, int] = {}
    for node in net.graph.nodes:
        for src in node.inputs:
            readers[src] = readers.get(src, 0) + 1
    out = []
    for node in net.graph.nodes:
        merge = KINDS[node.kind].traits.merge
        if merge is None or len(node.inputs) < 2 or (node.kind == "add" and not node.attrs.get("broadcast")):
            continue  # a residual's shortcut is drawn dashed beside its body, in no order
        heads = []
        for end in node.inputs:
            cur = end
            while cur in nodes and len(nodes[cur].inputs) == 1 and readers.get(nodes[cur].inputs[0], 0) == 1:
                cur = nodes[cur].inputs[0]
            heads.append(cur)
        forks = {nodes[h].inputs for h in heads if h in nodes}
        boxes = [rep.get(h, h) for h in heads]
        if len(forks) != 1 or any(h not in nodes for h in heads) or len(set(boxes)) != len(boxes):
            continue
        if any(b != h for b, h in zip(boxes, heads, strict=True)):
            continue  # a branch inside a collapsed box
        chain = " -> ".join(quote(b) for b in boxes)
        out.append(f"  {{ rank=same; {chain} [style=invis]; }}")
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
