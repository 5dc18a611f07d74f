"""`archc lsp`: the language server (pygls 2.x over stdio, or TCP for debugging).

Each open document is compiled once per version (`archc.lsp.document.Document`);
every feature reads that. Changes are debounced: a burst of keystrokes compiles
the last version only, and its diagnostics are published as soon as it is done.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer

from archc.diagnostics import Diagnostic, Severity
from archc.frontend import syntax as S
from archc.ir import Span, written_layout
from archc.kinds import KINDS, show_value
from archc.lsp.document import KEYWORDS, QUANTITIES, Document, dims_text
from archc.version import __version__

DEBOUNCE_S = 0.01  # long enough to coalesce a burst of changes, short enough to feel immediate
_DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "language.md"


class ArchServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("archc", __version__)
        self.documents: dict[str, tuple[int | None, Document]] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}

    def document(self, uri: str) -> Document:
        text_doc = self.workspace.get_text_document(uri)
        cached = self.documents.get(uri)
        if cached is not None and cached[0] == text_doc.version and cached[1].text == text_doc.source:
            return cached[1]
        doc = Document(uri, text_doc.source)
        self.documents[uri] = (text_doc.version, doc)
        return doc

    def publish(self, uri: str) -> None:
        doc = self.document(uri)
        version = self.documents[uri][0]
        diagnostics = [to_lsp(d, doc) for d in doc.diagnostics]
        self.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )

    def schedule(self, uri: str) -> None:
        task = self.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        self.pending[uri] = asyncio.ensure_future(self._later(uri))

    async def _later(self, uri: str) -> None:
        await asyncio.sleep(DEBOUNCE_S)
        self.pending.pop(uri, None)
        self.publish(uri)


def rng(span: Span | None) -> T.Range:
    if span is None:
        return T.Range(start=T.Position(line=0, character=0), end=T.Position(line=0, character=0))
    return T.Range(
        start=T.Position(line=span.line - 1, character=span.column - 1),
        end=T.Position(line=span.end_line - 1, character=span.end_column - 1),
    )


def to_lsp(d: Diagnostic, doc: Document) -> T.Diagnostic:
    message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
    message += "".join(f"\nnote: {n.message}" + (f" at line {n.span.line}" if n.span else "") for n in d.notes)
    # the calls that led to the error, as the compiler noted them; else every call of its block
    sites = [(n.span, f"{n.message} here") for n in d.notes if n.span is not None] or _call_sites(d, doc)
    related = [
        T.DiagnosticRelatedInformation(location=T.Location(uri=doc.uri, range=rng(span)), message=text)
        for span, text in sites
    ]
    return T.Diagnostic(
        range=rng(d.span),
        message=message,
        severity=T.DiagnosticSeverity.Error if d.severity is Severity.ERROR else T.DiagnosticSeverity.Warning,
        code=d.code,
        code_description=T.CodeDescription(href=_DOCS.as_uri() + "#errors") if _DOCS.exists() else None,
        source="archc",
        related_information=related or None,
        data={"hint": d.hint} if d.hint else None,
    )


def _call_sites(d: Diagnostic, doc: Document) -> list[tuple[Span, str]]:
    """For an error inside a block definition: the calls of that block."""
    if d.span is None:
        return []
    for block in doc.blocks.values():
        if block.braces.open.line <= d.span.line <= block.braces.close.line:
            return [(span, f"{block.name} called here") for span in doc.block_references(block.name)]
    return []


server = ArchServer()


@server.feature(T.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: ArchServer, params: T.DidOpenTextDocumentParams) -> None:
    ls.publish(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: ArchServer, params: T.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: ArchServer, params: T.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.documents.pop(uri, None)
    task = ls.pending.pop(uri, None)
    if task is not None:
        task.cancel()
    ls.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


@server.feature(T.TEXT_DOCUMENT_INLAY_HINT)
def inlay_hints(ls: ArchServer, params: T.InlayHintParams) -> list[T.InlayHint]:
    doc = ls.document(params.text_document.uri)
    first, last = params.range.start.line + 1, params.range.end.line + 1
    hints = []
    for loc in doc.statements:
        st = loc.stmt
        if not first <= st.span.line <= last:
            continue
        label = doc.layer_hint(st)
        if label is None:
            continue
        line = _hint_line(st)
        text = doc.lines[line - 1] if line <= len(doc.lines) else ""
        code = text.split("#", 1)[0].rstrip()
        hints.append(
            T.InlayHint(
                position=T.Position(line=line - 1, character=len(code)),
                label=label,
                padding_left=True,
            )
        )
    return hints


def _hint_line(st: S.Stmt) -> int:
    braces = getattr(st, "braces", None)
    if isinstance(st, S.Residual) and st.shortcut_braces is not None:
        return st.shortcut_braces.close.line
    return int(braces.close.line) if braces is not None else st.span.line


@server.feature(T.TEXT_DOCUMENT_HOVER)
def hover(ls: ArchServer, params: T.HoverParams) -> T.Hover | None:
    doc = ls.document(params.text_document.uri)
    line, col = params.position.line + 1, params.position.character + 1
    found = doc.word_at(line, col)
    loc = doc.statement_at(line, col)
    if found is None or loc is None:
        return None
    word, span = found
    st = loc.stmt
    text: str | None = None
    if isinstance(st, S.LayerStmt):
        key = next((k for k in st.keywords if k.span.line == line and k.span.column == span.column), None)
        if key is not None and st.kind in KINDS:
            about_key = doc.hover_key(st.kind, key.key)
            layer = doc.hover_layer(st)
            text = "\n\n---\n\n".join(t for t in (about_key, layer) if t) or None
        elif word in doc.blocks:
            text = doc.hover_call(st) if st.kind == word else doc.hover_block(word)
        else:
            text = doc.hover_layer(st)
    elif isinstance(st, S.Expect):
        text = doc.hover_expect(st)
    elif isinstance(st, S.BlockDef) and word == st.name:
        text = doc.hover_block(st.name)
    elif isinstance(st, S.Repeat | S.Residual | S.Concat):
        hint = doc.layer_hint(st)
        text = f"**{type(st).__name__.lower()}** → {hint}" if hint else None
    if text is None:
        return None
    return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text), range=rng(span))


_KIND_RE = re.compile(r"^\s*(?:[A-Za-z_]\w*\s*:\s*)?([A-Za-z_]\w*)\b")


@server.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions(trigger_characters=[" ", ".", "="]))
def completion(ls: ArchServer, params: T.CompletionParams) -> T.CompletionList:
    doc = ls.document(params.text_document.uri)
    line = doc.lines[params.position.line] if params.position.line < len(doc.lines) else ""
    before = line[: params.position.character]
    items: list[T.CompletionItem] = []
    stripped = before.lstrip()
    if stripped.startswith("expect"):
        for q in QUANTITIES:
            items.append(T.CompletionItem(label=q, kind=T.CompletionItemKind.Property, detail="quantity"))
        for p in doc.paths():
            items.append(
                T.CompletionItem(label=p, kind=T.CompletionItemKind.Reference, detail="layer or instance")
            )
        return T.CompletionList(is_incomplete=False, items=items)
    if re.search(r"\btie\s*=\s*[\w.]*$", before):
        for name in doc.layer_names():
            items.append(T.CompletionItem(label=name, kind=T.CompletionItemKind.Reference, detail="layer"))
        return T.CompletionList(is_incomplete=False, items=items)
    m = _KIND_RE.match(before)
    typing_kind = m is None or m.end() >= len(before)
    if not typing_kind and m is not None:
        kind = m.group(1)
        spec = KINDS.get(kind)
        written = set(re.findall(r"\b(\w+)\s*=", before))
        if spec is not None:
            for k in spec.keys:
                if k.name in written:
                    continue
                detail = "required" if k.required else f"default {show_value(k.default)}"
                items.append(
                    T.CompletionItem(
                        label=k.name,
                        kind=T.CompletionItemKind.Field,
                        detail=detail,
                        documentation=k.doc or None,
                        insert_text=f"{k.name}=",
                    )
                )
        elif kind in doc.blocks:
            for param in doc.blocks[kind].params:
                if param.name not in written:
                    items.append(
                        T.CompletionItem(
                            label=param.name, kind=T.CompletionItemKind.Field, insert_text=f"{param.name}="
                        )
                    )
        return T.CompletionList(is_incomplete=False, items=items)
    for name, spec in KINDS.items():
        if spec.user:
            items.append(T.CompletionItem(label=name, kind=T.CompletionItemKind.Class, detail=spec.doc))
    for name, block in doc.blocks.items():
        items.append(
            T.CompletionItem(label=name, kind=T.CompletionItemKind.Function, detail=doc.signature(block))
        )
    for word in KEYWORDS:
        items.append(T.CompletionItem(label=word, kind=T.CompletionItemKind.Keyword))
    return T.CompletionList(is_incomplete=False, items=items)


def _target(doc: Document, line: int, col: int) -> tuple[str, str] | None:
    """What is under the cursor: ("block", name) or ("layer", dotted path)."""
    found = doc.word_at(line, col)
    if found is None:
        return None
    word = found[0]
    if word in doc.blocks:
        return "block", word
    text = doc.lines[line - 1]
    if text.lstrip().startswith("expect") or re.search(r"\btie\s*=\s*" + re.escape(word), text):
        path = word
        paths = set(doc.paths())
        while path and path not in paths and "." in path:
            path = path.rsplit(".", 1)[0]  # `conv1.weights`: the layer
        if path in paths:
            return "layer", path
    return None


def _definition_span(doc: Document, what: str, name: str) -> Span | None:
    if what == "block":
        return doc.blocks[name].span
    graph = doc.result.graph
    if graph is None:
        return None
    for node in graph.nodes:
        if node.name == name:
            return node.label or node.span
    for scope in graph.scopes:
        if scope.path == name:
            return scope.label or scope.span
    return None


@server.feature(T.TEXT_DOCUMENT_DEFINITION)
def definition(ls: ArchServer, params: T.DefinitionParams) -> T.Location | None:
    doc = ls.document(params.text_document.uri)
    target = _target(doc, params.position.line + 1, params.position.character + 1)
    if target is None:
        return None
    span = _definition_span(doc, *target)
    return T.Location(uri=doc.uri, range=rng(span)) if span is not None else None


@server.feature(T.TEXT_DOCUMENT_REFERENCES)
def references(ls: ArchServer, params: T.ReferenceParams) -> list[T.Location]:
    doc = ls.document(params.text_document.uri)
    target = _target(doc, params.position.line + 1, params.position.character + 1)
    if target is None:
        return []
    what, name = target
    spans: list[Span] = []
    if what == "block":
        spans = doc.block_references(name)
    else:
        pattern = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?![\w])")
        for i, text in enumerate(doc.lines, 1):
            if text.lstrip().startswith("expect") or "tie" in text:
                spans += [Span(i, m.start() + 1, i, m.end() + 1) for m in pattern.finditer(text)]
    if params.context.include_declaration:
        decl = _definition_span(doc, what, name)
        if decl is not None:
            spans.insert(0, decl)
    return [T.Location(uri=doc.uri, range=rng(s)) for s in spans]


@server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def symbols(ls: ArchServer, params: T.DocumentSymbolParams) -> list[T.DocumentSymbol]:
    doc = ls.document(params.text_document.uri)
    program = doc.result.program
    return _symbols(program.statements, doc) if program is not None else []


def _symbols(stmts: tuple[S.Stmt, ...], doc: Document) -> list[T.DocumentSymbol]:
    out: list[T.DocumentSymbol] = []
    for st in stmts:
        label = getattr(st, "label", None)
        name: str | None = None
        kind = T.SymbolKind.Variable
        children: tuple[S.Stmt, ...] = ()
        if isinstance(st, S.BlockDef):
            name, kind, children = doc.signature(st), T.SymbolKind.Function, st.body
        elif isinstance(st, S.Repeat):
            name, kind, children = (
                (label.name + ": " if label else "") + "repeat",
                T.SymbolKind.Array,
                st.body,
            )
        elif isinstance(st, S.Residual):
            name, kind = (label.name + ": " if label else "") + "residual", T.SymbolKind.Struct
            children = st.body + (st.shortcut or ())
        elif isinstance(st, S.Concat):
            name, kind = (label.name + ": " if label else "") + st.op, T.SymbolKind.Struct
            children = tuple(x for b in st.branches if isinstance(b, S.Branch) for x in b.body)
        elif isinstance(st, S.LayerStmt) and label is not None:
            name = label.name
            kind = T.SymbolKind.Function if st.kind in doc.blocks else T.SymbolKind.Variable
        if name is None:
            continue
        whole = Span(st.span.line if label is None else label.span.line, 1, _hint_end(st), 1 << 16)
        selection = label.span if label is not None else st.span
        detail = doc.layer_hint(st) if not isinstance(st, S.BlockDef) else None
        out.append(
            T.DocumentSymbol(
                name=name,
                kind=kind,
                detail=detail or (st.kind if isinstance(st, S.LayerStmt) else None),
                range=rng(whole),
                selection_range=rng(selection),
                children=_symbols(children, doc) or None,
            )
        )
    return out


def _hint_end(st: S.Stmt) -> int:
    return _hint_line(st)


@server.feature(T.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: ArchServer, params: T.DocumentFormattingParams) -> list[T.TextEdit] | None:
    from archc.tools.fmt import FormatError, format_text

    doc = ls.document(params.text_document.uri)
    try:
        formatted = format_text(doc.text)
    except FormatError:
        return None  # the diagnostics already say why it does not parse
    if formatted == doc.text:
        return []
    end = T.Position(line=len(doc.lines), character=0)
    return [T.TextEdit(range=T.Range(start=T.Position(line=0, character=0), end=end), new_text=formatted)]


_DID_YOU_MEAN = re.compile(r"did you mean '([^']+)'\?")


@server.feature(
    T.TEXT_DOCUMENT_CODE_ACTION, T.CodeActionOptions(code_action_kinds=[T.CodeActionKind.QuickFix])
)
def code_actions(ls: ArchServer, params: T.CodeActionParams) -> list[T.CodeAction]:
    doc = ls.document(params.text_document.uri)
    uri = params.text_document.uri
    actions: list[T.CodeAction] = []
    for d in doc.diagnostics:
        if d.span is None or not _overlaps(rng(d.span), params.range) or not d.hint:
            continue
        m = _DID_YOU_MEAN.search(d.hint)
        if m is None:
            continue
        actions.append(
            T.CodeAction(
                title=f"Replace with '{m.group(1)}'",
                kind=T.CodeActionKind.QuickFix,
                diagnostics=[to_lsp(d, doc)],
                is_preferred=True,
                edit=_edit(uri, rng(d.span), m.group(1)),
            )
        )
    first, last = params.range.start.line + 1, params.range.end.line + 1
    for loc in doc.statements:
        st = loc.stmt
        if not first <= st.span.line <= last:
            continue
        fix = doc.arrow_fix(st)
        if fix is None:
            continue
        line = _hint_line(st)
        code = doc.lines[line - 1].split("#", 1)[0].rstrip()
        pos = T.Position(line=line - 1, character=len(code))
        actions.append(
            T.CodeAction(
                title=f"Insert the computed shape '{fix.strip()}'",
                kind=T.CodeActionKind.RefactorRewrite,
                edit=_edit(uri, T.Range(start=pos, end=pos), fix),
            )
        )
    for d in doc.diagnostics:
        if d.code == "E202" and d.span is not None and _overlaps(rng(d.span), params.range):
            actual = re.search(r"outputs (\S+), but", d.message)
            if actual:
                actions.append(
                    T.CodeAction(
                        title=f"Change the shape to {actual.group(1)}",
                        kind=T.CodeActionKind.QuickFix,
                        diagnostics=[to_lsp(d, doc)],
                        edit=_edit(uri, rng(d.span), actual.group(1)),
                    )
                )
    for d in doc.diagnostics:
        if d.span is None or not d.hint or not _overlaps(rng(d.span), params.range):
            continue
        for title, where, text in _hint_fixes(doc, d):
            actions.append(
                T.CodeAction(
                    title=title,
                    kind=T.CodeActionKind.QuickFix,
                    diagnostics=[to_lsp(d, doc)],
                    edit=_edit(uri, where, text),
                )
            )
    return actions


_SHORTCUT = re.compile(r"e\.g\. (shortcut \{.*\})")
_PADDING = re.compile(r"padding P=(\d+(?:x\d+)*)")  # one value, or one per side: P=0x1
# W001's sizes: every spatial side ("an input of 223x223 or 227x227") or one ("an input width of 120 or 124")
_INPUT = re.compile(r"an input(?: (depth|height|width|length))? of (\d+(?:x\d+)*) or (\d+(?:x\d+)*)")
_SIDES = {"depth": "D", "height": "H", "width": "W", "length": "L"}


def _stmt_with_span(doc: Document, span: Span) -> S.Stmt | None:
    for loc in doc.statements:
        label = getattr(loc.stmt, "label", None)
        if loc.stmt.span == span or (isinstance(label, S.Label) and label.span == span):
            return loc.stmt
    return None


def _hint_fixes(doc: Document, d: Diagnostic) -> list[tuple[str, T.Range, str]]:
    """The fixes a hint spells out: E200's shortcut, W001's padding or input size."""
    assert d.span is not None and d.hint is not None
    st = _stmt_with_span(doc, d.span)
    fixes: list[tuple[str, T.Range, str]] = []
    if d.code == "E200" and isinstance(st, S.Residual) and st.shortcut is None:
        m = _SHORTCUT.search(d.hint)
        if m is not None:
            at = rng(st.braces.close).end
            fixes.append((f"Add `{m.group(1)}`", T.Range(start=at, end=at), " " + m.group(1)))
    if d.code == "W001" and isinstance(st, S.LayerStmt):
        m = _PADDING.search(d.hint)
        if m is not None:
            written = next((kw for kw in st.keywords if kw.key == "P"), None)
            if written is not None:
                fixes.append((f"Pad with P={m.group(1)}", rng(written.value.span), m.group(1)))
            else:
                last = max(
                    [kw.value.span for kw in st.keywords] + [e.span for e in st.positional] + [st.span]
                )
                at = rng(last).end
                fixes.append((f"Pad with P={m.group(1)}", T.Range(start=at, end=at), f" P={m.group(1)}"))
        m = _INPUT.search(d.hint)
        nodes = doc.layer_nodes(st)
        decl = next((loc.stmt for loc in doc.statements if isinstance(loc.stmt, S.InputDecl)), None)
        if m is not None and decl is not None and len(nodes) == 1 and nodes[0].inputs == ("input",):
            dims = [str(n) for n in decl.shape.dims]
            axes = written_layout(decl.shape.dims)
            side = m.group(1)
            for size in m.groups()[1:]:
                if side is None and len(size.split("x")) == len(dims) - 1:  # every spatial side
                    shape = "x".join([*size.split("x"), dims[-1]])
                elif side is not None and axes is not None and _SIDES[side] in axes.spatial_axes:
                    axis = axes.spatial_axes.index(_SIDES[side])
                    shape = "x".join([*dims[:axis], size, *dims[axis + 1 :]])
                else:
                    continue
                fixes.append((f"Make the input {shape}", rng(decl.shape.span), shape))
    return fixes


def _edit(uri: str, where: T.Range, text: str) -> T.WorkspaceEdit:
    return T.WorkspaceEdit(changes={uri: [T.TextEdit(range=where, new_text=text)]})


def _overlaps(a: T.Range, b: T.Range) -> bool:
    return (a.start.line, a.start.character) <= (b.end.line, b.end.character) and (
        b.start.line,
        b.start.character,
    ) <= (a.end.line, a.end.character)


def main(tcp: int | None = None, host: str = "127.0.0.1") -> Any:
    if tcp is not None:
        return server.start_tcp(host, tcp)
    return server.start_io()


__all__ = ["dims_text", "main", "server"]
