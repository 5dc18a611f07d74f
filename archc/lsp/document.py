"""What the language server knows of one open document, computed once per version.

Pure Python over `archc.api.compile_text`: no pygls here, so the features can be
tested and benchmarked without a client. Positions are 0-based (line, character)
as LSP counts them; spans from the front end are 1-based with an exclusive end.

Statements map to what the compiler made of them by their span: a layer's node
and a block call's or repeat's scope carry the span of the statement that made
them. A statement inside a block definition or a repeat body makes several
nodes (one per instance); those show their kind's facts only on hover, where
every instance is listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from archc.analysis import LayerFacts
from archc.analysis.analyze import check_assertion, fmt_int
from archc.api import CompileResult, compile_text
from archc.diagnostics import Diagnostic
from archc.frontend import syntax as S
from archc.ir import Node, Scope, Span
from archc.kinds import KINDS, show_value

QUANTITIES = ("params", "weights", "biases", "macs", "output")
KEYWORDS = (
    "network",
    "input",
    "block",
    "repeat",
    "residual",
    "shortcut",
    "concat",
    "branch",
    "add",
    "multiply",
    "expect",
)


class Located(NamedTuple):
    """A statement with the block definition it is written in (None at top level)."""

    stmt: S.Stmt
    block: S.BlockDef | None
    depth: int  # bodies around it (blocks, repeats, residuals, branches)


def contains(span: Span, line: int, col: int) -> bool:
    """Whether the 1-based position (line, col) falls in `span` (its end included, for a cursor after a word)."""
    if (line, col) < (span.line, span.column):
        return False
    return (line, col) <= (span.end_line, span.end_column)


def walk_located(stmts: Sequence[S.Stmt]) -> Iterator[Located]:
    """Every statement in source order, with its enclosing block definition; iterative."""
    stack: list[tuple[Iterator[S.Stmt], S.BlockDef | None]] = [(iter(stmts), None)]
    while stack:
        it, block = stack[-1]
        st = next(it, None)
        if st is None:
            stack.pop()
            continue
        yield Located(st, block, len(stack) - 1)
        inner_block = st if isinstance(st, S.BlockDef) else block
        if isinstance(st, S.Residual) and st.shortcut:
            stack.append((iter(st.shortcut), inner_block))
        inner = st.branches if isinstance(st, S.Concat) else getattr(st, "body", None)
        if inner:
            stack.append((iter(inner), inner_block))


def dims_text(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims)


class Document:
    """One version of a document: the compile result and the indexes the features use."""

    def __init__(self, uri: str, text: str, filename: str | None = None) -> None:
        self.uri = uri
        self.text = text
        self.lines = text.split("\n")
        self.result: CompileResult = compile_text(text, filename or _filename(uri))
        program = self.result.program
        self.statements: list[Located] = list(walk_located(program.statements)) if program else []
        self.blocks: dict[str, S.BlockDef] = {
            loc.stmt.name: loc.stmt for loc in self.statements if isinstance(loc.stmt, S.BlockDef)
        }
        self.nodes_at: dict[Span, list[Node]] = {}
        self.scopes_at: dict[Span, list[Scope]] = {}
        graph = self.result.graph
        if graph is not None:
            for node in graph.nodes:
                self.nodes_at.setdefault(node.span, []).append(node)
            for scope in graph.scopes:
                self.scopes_at.setdefault(scope.span, []).append(scope)

    # --- what the compiler said ------------------------------------------------------
    @property
    def diagnostics(self) -> list[Diagnostic]:
        """Every finding: the stages up to the first that failed, then what the later
        stages found on the partial results, each once."""
        seen: set[tuple[str, Span | None, str]] = set()
        out: list[Diagnostic] = []
        for d in (*self.result.diagnostics, *self.result.partial_diagnostics):
            key = (d.code, d.span, d.message)
            if key not in seen:
                seen.add(key)
                out.append(d)
        if not any(d.code == "E202" for d in out):
            out += self._arrow_checks()
        return out

    def _arrow_checks(self) -> list[Diagnostic]:
        """The `-> shape` of every layer whose shape is known, when the compiler stopped
        checking them (it checks assertions of complete analyses only)."""
        graph, analysis = self.result.graph, self.result.analysis
        if graph is None or analysis is None or self.result.network is not None:
            return []
        out = []
        for a in graph.assertions:
            if a.quantity != "output" or a.span != a.value_span:
                continue
            output = graph.scopes_by_path[a.target].output if a.target in graph.scopes_by_path else a.target
            if output not in analysis.facts:
                continue
            found = check_assertion(a, analysis)
            if found is not None:
                out.append(found)
        return out

    def facts(self, node: Node) -> LayerFacts | None:
        analysis = self.result.analysis
        return analysis.facts.get(node.name) if analysis is not None else None

    # --- finding things ---------------------------------------------------------------
    def statement_at(self, line: int, col: int) -> Located | None:
        """The innermost statement that starts on 1-based `line` (a layer, a call, an expect...)."""
        best: Located | None = None
        for loc in self.statements:
            label = getattr(loc.stmt, "label", None)
            first = label.span.line if isinstance(label, S.Label) else loc.stmt.span.line
            if first == line and (best is None or loc.depth >= best.depth):
                best = loc
        return best

    def word_at(self, line: int, col: int) -> tuple[str, Span] | None:
        """The name (dotted allowed) under the 1-based cursor."""
        if not 1 <= line <= len(self.lines):
            return None
        text = self.lines[line - 1]
        for m in re.finditer(r"[A-Za-z_][\w.]*", text):
            if m.start() + 1 <= col <= m.end() + 1:
                return m.group(), Span(line, m.start() + 1, line, m.end() + 1)
        return None

    def layer_nodes(self, st: S.LayerStmt) -> list[Node]:
        return self.nodes_at.get(st.span, [])

    def scopes(self, st: S.Stmt) -> list[Scope]:
        """The scopes a call or repeat made (their span is the label's, when it has one)."""
        label = getattr(st, "label", None)
        return self.scopes_at.get(st.span) or (self.scopes_at.get(label.span, []) if label else [])

    def merge_nodes(self, st: S.Stmt) -> list[Node]:
        label = getattr(st, "label", None)
        return self.nodes_at.get(st.span) or (self.nodes_at.get(label.span, []) if label else [])

    # --- what the features show ---------------------------------------------------------
    def layer_hint(self, st: S.Stmt) -> str | None:
        """The inlay hint at the end of a layer, call, repeat or merge line, or None."""
        if isinstance(st, S.LayerStmt) and st.kind in KINDS:
            nodes = self.layer_nodes(st)
            if len(nodes) != 1:
                return None  # in a block definition or repeat body: one per instance
            f = self.facts(nodes[0])
            if f is None:
                return None
            return self._with_arrow(
                st.arrow, f.output.dims, f"{f.output.text()} · {fmt_int(f.params)} params"
            )
        if isinstance(st, S.LayerStmt | S.Repeat | S.Residual | S.Concat):
            scopes = self.scopes(st)
            if isinstance(st, S.Residual | S.Concat) and not scopes:
                nodes = self.merge_nodes(st)
                if len(nodes) == 1 and (f := self.facts(nodes[0])) is not None:
                    return self._with_arrow(st.arrow, f.output.dims, f.output.text())
                return None
            if len(scopes) != 1 or self.result.analysis is None:
                return None
            scope = scopes[0]
            analysis = self.result.analysis
            if scope.output not in analysis.facts:
                return None
            shape = analysis.facts[scope.output].output
            totals = analysis.totals_under(scope.path)
            return self._with_arrow(st.arrow, shape.dims, f"{shape.text()} · {fmt_int(totals.params)} params")
        return None

    @staticmethod
    def _with_arrow(arrow: S.ShapeLit | None, dims: tuple[int, ...], hint: str) -> str | None:
        if arrow is None:
            return hint
        if tuple(arrow.dims) != tuple(dims):
            return None  # a mismatch is an error already
        rest = hint.split(" · ", 1)[1:]
        return " · ".join(["✓", *rest])

    def hover_layer(self, st: S.LayerStmt) -> str | None:
        spec = KINDS.get(st.kind)
        if spec is None:
            return self.hover_call(st)
        nodes = self.layer_nodes(st)
        lines = [f"**{st.kind}**" + (f" — {spec.doc}" if getattr(spec, "doc", "") else "")]
        for node in nodes[:8]:
            f = self.facts(node)
            if f is None:
                lines.append(f"`{node.name}`: shape unknown (an earlier error)")
                continue
            lines.append(
                f"`{node.name}`: {' + '.join(i.text() for i in f.inputs)} → **{f.output.text()}**  \n"
                f"weights {fmt_int(f.weights)} · biases {fmt_int(f.biases)} · "
                f"params {fmt_int(f.params)} · MACs {fmt_int(f.macs)}"
            )
            if len(nodes) == 1:
                explain = spec.explain(f.applied(node.attrs), f.counts)
                if explain:
                    lines.append("```\n" + "\n".join(line.text for line in explain) + "\n```")
        if len(nodes) > 8:
            lines.append(f"... and {len(nodes) - 8} more instances")
        if not nodes:
            lines.append("not elaborated (an earlier error, or a block that is never called)")
        return "\n\n".join(lines)

    def hover_block(self, name: str) -> str | None:
        """A block's signature and the totals of each of its calls."""
        calls = [
            loc.stmt for loc in self.statements if isinstance(loc.stmt, S.LayerStmt) and loc.stmt.kind == name
        ]
        text = self.hover_call(calls[0], calls[1:]) if calls else None
        if text is None and name in self.blocks:
            return f"**block** `{self.signature(self.blocks[name])}` · never called"
        return text

    def hover_call(self, st: S.LayerStmt, more: Sequence[S.LayerStmt] = ()) -> str | None:
        block = self.blocks.get(st.kind)
        if block is None:
            return None
        lines = [f"**block** `{self.signature(block)}`"]
        analysis = self.result.analysis
        scopes = [scope for call in (st, *more) for scope in self.scopes(call)]
        for scope in scopes[:8]:
            if analysis is None or scope.output not in analysis.facts:
                lines.append(f"`{scope.path}`: shape unknown")
                continue
            t = analysis.totals_under(scope.path)
            lines.append(
                f"`{scope.path}` → **{analysis.facts[scope.output].output.text()}** · "
                f"params {fmt_int(t.params)} · MACs {fmt_int(t.macs)}"
            )
        if len(scopes) > 8:
            lines.append(f"... and {len(scopes) - 8} more calls")
        return "\n\n".join(lines)

    @staticmethod
    def signature(block: S.BlockDef) -> str:
        params = ", ".join(
            p.name + (f"={_expr_text(p.default)}" if p.default is not None else "") for p in block.params
        )
        return f"{block.name}({params})"

    def hover_key(self, kind: str, key: str) -> str | None:
        spec = KINDS.get(kind)
        if spec is None:
            return None
        for k in spec.keys:
            if k.name == key:
                default = "required" if k.required else f"default `{k.name}={show_value(k.default)}`"
                return f"**{kind}.{k.name}**: {k.doc or k.type}  \n{default}"
        return None

    def hover_expect(self, st: S.Expect) -> str | None:
        analysis = self.result.analysis
        target = ".".join(st.path)
        if analysis is None:
            return None
        try:
            if st.quantity == "output":
                actual = analysis.output_of(target).text()
            else:
                actual = fmt_int(int(getattr(analysis.totals_under(target), st.quantity)))
        except (KeyError, ValueError, AttributeError):
            return None
        return f"`{target or 'network'}.{st.quantity}` is **{actual}**"

    def block_references(self, name: str) -> list[Span]:
        """Every place the block `name` is called."""
        return [
            loc.stmt.span
            for loc in self.statements
            if isinstance(loc.stmt, S.LayerStmt) and loc.stmt.kind == name
        ]

    def layer_names(self) -> list[str]:
        graph = self.result.graph
        return [n.name for n in graph.nodes] if graph is not None else []

    def paths(self) -> list[str]:
        graph = self.result.graph
        if graph is None:
            return []
        return [n.name for n in graph.nodes] + [s.path for s in graph.scopes]

    def arrow_fix(self, st: S.Stmt) -> str | None:
        """` -> shape` to append to a statement, when its output is known and it has none."""
        if getattr(st, "arrow", "missing") is not None:
            return None
        hint = self.layer_hint(st)
        return f" -> {hint.split(' · ')[0]}" if hint else None


def _expr_text(e: S.Expr) -> str:
    if isinstance(e, S.Number | S.Dims):
        return e.text
    if isinstance(e, S.Ref):
        return e.name
    if isinstance(e, S.Neg):
        return f"-{_expr_text(e.operand)}"
    return f"{_expr_text(e.left)} {e.op} {_expr_text(e.right)}"


def _filename(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri
