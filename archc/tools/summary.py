"""Per-layer summaries of an analysed network: rows for the table, and the JSON document.

The rows are plain data; `archc.commands.summary` draws them with rich.
Block instances and repeats become group rows with their totals, their
layers indented below them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archc.api import Network
from archc.ir import Graph, Layout, Scope, ScopeKind
from archc.kinds import KINDS, per_dimension_attrs, show_value
from archc.kinds.sequence import kv_width


@dataclass(frozen=True)
class Row:
    depth: int
    name: str
    kind: str
    output: str
    params: int
    macs: int
    group: bool = False
    explain: tuple[str, ...] = field(default=())
    extra: dict[str, str] = field(default_factory=dict)


class _Chains:
    """The scopes around each scope path, outermost first; each computed once, from its parent's."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.known: dict[str, tuple[str, ...]] = {"": ()}

    def __call__(self, path: str) -> tuple[str, ...]:
        missing = []
        while path not in self.known:
            missing.append(path)
            path = self.graph.parent_scope(path)
        chain = self.known[path]
        for inner in reversed(missing):
            if inner in self.graph.scopes_by_path:
                chain = (*chain, inner)
            self.known[inner] = chain
        return chain


def _scope_label(scope: Scope) -> str:
    if scope.kind is ScopeKind.REPEAT:
        return f"repeat x{scope.args.get('count', 0)}"
    if scope.block:
        args = " ".join(f"{k}={show_value(v)}" for k, v in scope.args.items())
        return f"{scope.block} {args}".strip()
    return "copy"


def attr_text(kind: str, attrs: dict[str, Any]) -> str:
    """The attributes that differ from their defaults, as the spec writes them."""
    spec = KINDS[kind]
    parts = []
    for key in spec.keys:
        value = attrs.get(key.name)
        if value is None or key.is_default(value):
            continue
        parts.append(f"{key.name}={show_value(value)}")
    return " ".join(parts)


def rows(net: Network, explain: bool = False, extra: dict[str, dict[str, str]] | None = None) -> list[Row]:
    """Table rows in forward order, with a group row where each scope opens."""
    analysis = net.analysis
    chains = _Chains(net.graph)
    open_chain: tuple[str, ...] = ()
    out: list[Row] = []
    for node in net.graph.nodes:
        chain = chains(node.scope)
        common = len(chain) if chain is open_chain else 0  # most rows stay in the scope of the row before
        while common < min(len(chain), len(open_chain)) and chain[common] == open_chain[common]:
            common += 1
        for depth in range(common, len(chain)):
            scope = net.graph.scope(chain[depth])
            totals = analysis.totals_under(scope.path)
            out.append(
                Row(
                    depth=depth,
                    name=scope.path,
                    kind=_scope_label(scope),
                    output=analysis.shape_of(scope.output).text(),
                    params=totals.params,
                    macs=totals.macs,
                    group=True,
                )
            )
        open_chain = chain
        facts = analysis.facts[node.name]
        lines: tuple[str, ...] = ()
        if explain:
            lines = tuple(line.text for line in KINDS[node.kind].explain(facts.applied(node.attrs), facts.counts))
        out.append(
            Row(
                depth=len(chain),
                name=node.name,
                kind=node.kind,
                output=facts.output.text(),
                params=facts.params,
                macs=facts.macs,
                explain=lines,
                extra=(extra or {}).get(node.name, {}),
            )
        )
    return out


def summary_json(net: Network, rf: dict[str, dict[str, Any]] | None = None, dtype: str = "float32") -> dict[str, Any]:
    """The `archc summary --json` document (schema in README.md); sizes in bytes of `dtype`."""
    analysis = net.analysis
    totals = analysis.totals
    layers = []
    for node in net.graph.nodes:
        f = analysis.facts[node.name]
        attrs = per_dimension_attrs(KINDS[node.kind], node.attrs, f.inputs[0].layout.spatial_rank)
        entry: dict[str, Any] = {
            "name": node.name,
            "kind": node.kind,
            "inputs": list(node.inputs),
            "output": list(f.output.dims),
            "params": f.params,
            "weights": f.weights,
            "biases": f.biases,
            "macs": f.macs,
            # a key whose default is "none" (`tie`, a pool's `S`) and that was not written is left out
            "attrs": {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items() if v is not None},
        }
        if rf and node.name in rf:
            entry["receptive_field"] = rf[node.name]
        layers.append(entry)
    blocks = []
    for scope in net.graph.scopes:
        t = analysis.totals_under(scope.path)
        blocks.append(
            {
                "name": scope.path,
                "kind": str(scope.kind),
                "block": scope.block,
                "args": scope.args,
                "output": list(analysis.shape_of(scope.output).dims),
                "params": t.params,
                "weights": t.weights,
                "biases": t.biases,
                "macs": t.macs,
            }
        )
    doc: dict[str, Any] = {
        "network": net.name,
        "input": list(net.graph.input_shape.dims),
        "output": list(analysis.output_shape.dims),
        "params": totals.params,
        "weights": totals.weights,
        "biases": totals.biases,
        "macs": totals.macs,
        "flops": 2 * totals.macs,
        "dtype": dtype,
        "param_bytes": totals.params * DTYPES[dtype],
        "activation_bytes": activation_bytes(net, dtype),
        "layers": layers,
        "blocks": blocks,
        "warnings": [d.message for d in net.warnings],
    }
    cache = kv_cache(net, dtype)
    if cache is not None:
        doc["kv_cache"] = {"layers": cache.layers, "tokens": cache.tokens, "bytes": cache.nbytes}
    return doc


def activation_bytes(net: Network, dtype: str = "float32") -> int:
    """Bytes of the input and every layer output at batch 1, in `dtype` (token ids are int64).

    >>> import archc
    >>> activation_bytes(archc.loads("input 4 tokens\\nembedding V=10 D=8")), 4 * 8 + 4 * 8 * 4
    (160, 160)
    """
    size = DTYPES[dtype]
    inp = net.graph.input_shape
    input_bytes = inp.numel * (ID_BYTES if inp.layout is Layout.TOKENS else size)
    return net.analysis.totals.activations * size + input_bytes


# bytes per element of the dtypes `archc summary --dtype` takes
DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
ID_BYTES = 8  # token ids are int64


@dataclass(frozen=True)
class KVCache:
    """What causal attention keeps per token while generating: keys and values of every layer."""

    layers: int  # causal attention layers
    tokens: int  # the spec's context length (the attention's L)
    width: int  # E = C*kv/heads, when every layer agrees; else 0
    nbytes: int  # 2 * sum over layers of L * E * bytes, at batch 1


def kv_cache(net: Network, dtype: str = "float32") -> KVCache | None:
    """The KV cache at the spec's context length and batch 1 (`2 * layers * L * E * bytes`), or None
    without causal attention.

    >>> import archc
    >>> net = archc.loads("input 16 tokens\\nembedding V=10 D=8\\nrepeat 2 { attention 4 kv=2 causal=true }")
    >>> kv_cache(net, "float16")
    KVCache(layers=2, tokens=16, width=4, nbytes=512)
    """
    size = DTYPES[dtype]
    found = []
    for node in net.graph.nodes:
        if node.kind == "attention" and node.attrs["causal"]:
            length, c = net.analysis.facts[node.name].inputs[0].dims
            found.append((length, kv_width(node.attrs, c)))
    if not found:
        return None
    lengths, widths = {n for n, _ in found}, {e for _, e in found}
    return KVCache(
        layers=len(found),
        tokens=max(lengths),
        width=widths.pop() if len(widths) == 1 else 0,
        nbytes=sum(2 * n * e * size for n, e in found),
    )
