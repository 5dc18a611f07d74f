"""Per-layer summaries of an analysed network: rows for the table, and the JSON document.

The rows are plain data; `archc.commands.summary` draws them with rich.
Block instances and repeats become group rows with their totals, their
layers indented below them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from archc.analysis import check_assertion
from archc.analysis.tensors import Role, tensor_specs
from archc.api import CompileResult, Network, compile_text
from archc.diagnostics import Diagnostic
from archc.frontend.syntax import InputDecl
from archc.ir import Assertion, Graph, Layout, Scope, ScopeKind, Shape
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
    explain: tuple[tuple[str, str], ...] = field(default=())  # (topic, text) lines
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


def scope_label(scope: Scope) -> str:
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
                    kind=scope_label(scope),
                    output=analysis.shape_of(scope.output).text(),
                    params=totals.params,
                    macs=totals.macs,
                    group=True,
                )
            )
        open_chain = chain
        facts = analysis.facts[node.name]
        lines: tuple[tuple[str, str], ...] = ()
        if explain:
            lines = explain_lines(net, node.name)
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


def explain_lines(net: Network, name: str) -> tuple[tuple[str, str], ...]:
    """A layer's derivation of its shape and counts, as (topic, text) lines."""
    node = net.graph.node(name)
    facts = net.analysis.facts[name]
    return tuple((str(line.topic), line.text) for line in KINDS[node.kind].explain(facts.applied(node.attrs), facts.counts))


def buffers(net: Network) -> dict[str, int]:
    """Elements of each layer's buffers (batchnorm's running mean and variance): state that
    the state_dict holds and training does not learn, so not counted in params."""
    out: dict[str, int] = {}
    for t in tensor_specs(net.analysis):
        if t.role is Role.BUFFER:
            out[t.layer] = out.get(t.layer, 0) + t.numel
    return out


def buffer_names(net: Network) -> list[str]:
    """The kinds of buffers a network holds, `running_mean`, `running_var`, first seen first."""
    names: dict[str, None] = {}
    for t in tensor_specs(net.analysis):
        if t.role is Role.BUFFER:
            names[t.name.rpartition(".")[2]] = None
    return list(names)


def share(n: int, total: int) -> str:
    """A layer's share of a total: `12.3%`, `<0.1%` for a small non-zero share, `-` for none.

    >>> share(9_408, 11_689_512), share(128, 11_689_512), share(0, 10), share(5, 5)
    ('0.1%', '<0.1%', '-', '100.0%')
    """
    if not n or not total:
        return "-"
    pct = 100 * n / total
    return "<0.1%" if pct < 0.05 else f"{pct:.1f}%"


def summary_json(
    net: Network,
    rf: dict[str, dict[str, Any]] | None = None,
    dtype: str = "float32",
    explain: bool = False,
) -> dict[str, Any]:
    """The `archc summary --json` document (schema in README.md); sizes in bytes of `dtype`."""
    analysis = net.analysis
    totals = analysis.totals
    held = buffers(net)
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
            "buffers": held.get(node.name, 0),
            "macs": f.macs,
            # a key whose default is "none" (`tie`, a pool's `S`) and that was not written is left out
            "attrs": {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items() if v is not None},
        }
        if rf and node.name in rf:
            entry["receptive_field"] = rf[node.name]
        if explain:
            entry["explain"] = [{"topic": topic, "text": text} for topic, text in explain_lines(net, node.name)]
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
                "buffers": sum(held.get(n, 0) for n in scope.nodes),
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
        "buffers": sum(held.values()),
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


# --- another input size ------------------------------------------------------------------------
@dataclass(frozen=True)
class AtInput:
    """A spec compiled again with its `input` line replaced (`archc summary --input`).

    The spec's `->` and `expect` checks were written for its own input; at
    another size they are reported (`failed`: each one that does not hold, with
    the error it would be), not enforced. Every other error still fails.
    """

    result: CompileResult  # of the rewritten text; its diagnostics without the failed checks
    network: Network | None  # None when the spec does not hold together at this size
    written: Shape  # the spec's own input
    checks: tuple[Assertion, ...]  # every `->` and `expect` of the spec
    failed: tuple[tuple[Assertion, Diagnostic], ...]


def at_input(original: CompileResult, shape: str) -> AtInput:
    """Compile `original` (a valid spec) again with `input SHAPE`: `224x224x3`, `1000 tokens`, `16000x1`."""
    assert original.network is not None and original.program is not None
    decl = next(s for s in original.program.statements if isinstance(s, InputDecl))
    start, end = decl.shape.span, (decl.unit.span if decl.unit is not None else decl.shape.span)
    lines = original.text.split("\n")
    line = lines[start.line - 1]  # an input line is one line: the grammar has no line breaks in it
    lines[start.line - 1] = line[: start.column - 1] + shape + line[end.end_column - 1 :]
    text = "\n".join(lines)
    result = compile_text(text, original.path)
    failed: list[tuple[Assertion, Diagnostic]] = []
    network = result.network
    analysis = result.analysis
    if network is None and analysis is not None and analysis.complete and result.graph is not None:
        for a in result.graph.assertions:
            diag = check_assertion(a, analysis)
            if diag is not None:
                failed.append((a, diag))
        moot = {d for _, d in failed}
        others = tuple(d for d in result.diagnostics if d not in moot)
        if not any(d.is_error for d in others):
            warnings = tuple(d for d in others if not d.is_error)
            network = Network(analysis, original.path, text, warnings)
        result = result._replace(diagnostics=others)
    checks = result.graph.assertions if result.graph is not None else ()
    return AtInput(result, network, original.network.graph.input_shape, checks, tuple(failed))


# --- markdown and CSV ----------------------------------------------------------------------------
def markdown_table(headers: list[str], table: list[tuple[bool, list[str]]], right: set[int]) -> list[str]:
    """A GitHub-flavoured Markdown table; group rows (block instances, repeats) in bold.

    >>> markdown_table(["Layer", "Params"], [(True, ["b", "10"]), (False, ["b.c|d", "10"])], {1})
    ['| Layer | Params |', '| :--- | ---: |', '| **b** | **10** |', '| b.c\\\\|d | 10 |']
    """

    def cell(text: str, bold: bool) -> str:
        text = text.strip().replace("|", "\\|")
        return f"**{text}**" if bold and text and text != "-" else text

    out = ["| " + " | ".join(headers) + " |"]
    out.append("| " + " | ".join("---:" if i in right else ":---" for i in range(len(headers))) + " |")
    for group, cells in table:
        out.append("| " + " | ".join(cell(c, group) for c in cells) + " |")
    return out


def csv_text(headers: list[str], records: list[list[Any]]) -> str:
    """CSV as the csv module writes it (quoted where needed), one record a line, `\\n` line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(records)
    return buf.getvalue()
