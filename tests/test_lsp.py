"""`archc lsp` over stdio, driven by a real LSP client (pytest-lsp), as an editor starts it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest_lsp = pytest.importorskip("pytest_lsp")
T = pytest.importorskip("lsprotocol.types")

from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ALEXNET = (ROOT / "specs" / "alexnet_lecture.arch").read_text()
URI = "file:///work/alexnet_lecture.arch"


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "archc", "lsp"]),
)
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(T.InitializeParams(capabilities=T.ClientCapabilities()))
    yield
    await lsp_client.shutdown_session()


async def open_doc(client: LanguageClient, text: str, uri: str = URI) -> list[T.Diagnostic]:
    client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            text_document=T.TextDocumentItem(uri=uri, language_id="arch", version=1, text=text)
        )
    )
    await client.wait_for_notification(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return list(client.diagnostics[uri])


async def change(client: LanguageClient, text: str, version: int, uri: str = URI) -> list[T.Diagnostic]:
    client.text_document_did_change(
        T.DidChangeTextDocumentParams(
            text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[T.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )
    await client.wait_for_notification(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return list(client.diagnostics[uri])


def pos(text: str, needle: str, offset: int = 0) -> T.Position:
    """The position of the first `needle` outside comments, plus `offset` characters."""
    for i, line in enumerate(text.split("\n")):
        code = line.split("#", 1)[0]
        if needle in code:
            return T.Position(line=i, character=code.index(needle) + offset)
    raise AssertionError(needle)


def whole(text: str) -> T.Range:
    return T.Range(
        start=T.Position(line=0, character=0), end=T.Position(line=len(text.split("\n")), character=0)
    )


@pytest.mark.asyncio
async def test_valid_spec_has_no_diagnostics_and_shows_shapes(client: LanguageClient) -> None:
    assert await open_doc(client, ALEXNET) == []
    hints = await client.text_document_inlay_hint_async(
        T.InlayHintParams(text_document=T.TextDocumentIdentifier(uri=URI), range=whole(ALEXNET))
    )
    assert hints is not None
    by_line = {h.position.line: h.label for h in hints}
    lines = ALEXNET.split("\n")
    conv1 = pos(ALEXNET, "conv1:").line
    relu1 = pos(ALEXNET, "relu1:").line
    assert by_line[conv1] == "✓ · 34,944 params"  # the line asserts -> 55x55x96, which matches
    assert by_line[relu1] == "55x55x96 · 0 params"
    assert by_line[pos(ALEXNET, "relu2:").line] == "23x23x256 · 0 params"
    # at the end of the code, before any comment
    assert all(h.position.character == len(lines[h.position.line].split("#")[0].rstrip()) for h in hints)


@pytest.mark.asyncio
async def test_hover_layer_key_and_expect(client: LanguageClient) -> None:
    await open_doc(client, ALEXNET)
    at_kind = pos(ALEXNET, "conv K=96", 1)
    hover = await client.text_document_hover_async(
        T.HoverParams(text_document=T.TextDocumentIdentifier(uri=URI), position=at_kind)
    )
    assert hover is not None
    text = hover.contents.value  # type: ignore[union-attr]
    assert "**55x55x96**" in text and "weights 34,848" in text and "biases 96" in text
    assert "MACs 105,415,200" in text and "(227 - 11 + 2*0)/4 + 1 = 55" in text

    at_key = pos(ALEXNET, "S=4")
    hover = await client.text_document_hover_async(
        T.HoverParams(text_document=T.TextDocumentIdentifier(uri=URI), position=at_key)
    )
    assert (
        hover is not None and "**conv.S**" in hover.contents.value and "default `S=1`" in hover.contents.value
    )  # type: ignore[union-attr]

    at_expect = pos(ALEXNET, "expect fc2.weights", 8)
    hover = await client.text_document_hover_async(
        T.HoverParams(text_document=T.TextDocumentIdentifier(uri=URI), position=at_expect)
    )
    assert hover is not None and "16,777,216" in hover.contents.value  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_typing_a_wrong_filter_size_underlines_it_with_the_derivation(client: LanguageClient) -> None:
    await open_doc(client, ALEXNET)
    bad = re.sub(r"(conv1: conv K=96 )F=11", r"\1F=12", ALEXNET)
    # as VS Code sends it: an incremental change of the one character typed
    at = pos(ALEXNET, "conv1: conv K=96 F=11", len("conv1: conv K=96 F=1"))
    client.text_document_did_change(
        T.DidChangeTextDocumentParams(
            text_document=T.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[
                T.TextDocumentContentChangePartial(
                    range=T.Range(start=at, end=T.Position(line=at.line, character=at.character + 1)),
                    text="2",
                )
            ],
        )
    )
    await client.wait_for_notification(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    diags = list(client.diagnostics[URI])
    e202 = [d for d in diags if d.code == "E202"]
    assert e202 and e202[0].range.start.line == pos(bad, "conv1:").line
    assert "conv1 outputs 54x54x96, but the spec says 55x55x96" in e202[0].message
    assert "(227 - 12 + 2*0)/4 + 1 = 54.75 -> 54 (floor)" in e202[0].message
    assert e202[0].severity == T.DiagnosticSeverity.Error and e202[0].source == "archc"
    hover = await client.text_document_hover_async(
        T.HoverParams(text_document=T.TextDocumentIdentifier(uri=URI), position=pos(bad, "F=12"))
    )
    assert hover is not None and "(227 - 12 + 2*0)/4 + 1 = 54" in hover.contents.value  # type: ignore[union-attr]
    # and back: valid again, the diagnostics clear
    assert await change(client, ALEXNET, 3) == []


SEVERAL = """network T
input 227x227x3
conv1: conv K=96 F=11 S=4 -> 55x55x96
relu1: relu
conv2: conv K=16 F=3 )
pool1: maxpol F=3 S=2
conv3: conv K=256 F=5 Q=3
fc 10
"""


@pytest.mark.asyncio
async def test_errors_of_three_phases_show_together_and_shapes_before_them_stay(
    client: LanguageClient,
) -> None:
    uri = "file:///work/several.arch"
    diags = await open_doc(client, SEVERAL, uri)
    codes = {d.code for d in diags}
    assert any(str(c).startswith("E0") for c in codes), codes  # syntax
    assert {"E100", "E101"} <= codes  # names and keys
    lines = {d.range.start.line for d in diags}
    assert {4, 5, 6} <= lines
    hints = await client.text_document_inlay_hint_async(
        T.InlayHintParams(text_document=T.TextDocumentIdentifier(uri=uri), range=whole(SEVERAL))
    )
    assert hints is not None
    assert {h.position.line: h.label for h in hints}.get(3) == "55x55x96 · 0 params"


@pytest.mark.asyncio
async def test_completion_kinds_keys_and_expect_paths(client: LanguageClient) -> None:
    text = "input 32x32x3\nc1: conv K=8 F=3 \nc2: co\nexpect c\n"
    uri = "file:///work/complete.arch"
    await open_doc(client, text, uri)

    async def labels(line: int, character: int) -> dict[str, str | None]:
        result = await client.text_document_completion_async(
            T.CompletionParams(
                text_document=T.TextDocumentIdentifier(uri=uri),
                position=T.Position(line=line, character=character),
            )
        )
        assert isinstance(result, T.CompletionList)
        return {i.label: i.detail for i in result.items}

    keys = await labels(1, len("c1: conv K=8 F=3 "))
    assert "K" not in keys and "F" not in keys and keys["S"] == "default 1" and keys["P"] == "default 0"
    kinds = await labels(2, len("c2: co"))
    assert {"conv", "maxpool", "fc", "relu"} <= set(kinds)
    expect = await labels(3, len("expect c"))
    assert {"params", "weights", "macs", "output", "c1"} <= set(expect)


BLOCKS = """input 32x32x16
block Unit(K) {
  conv K=K F=3 P=1
  relu
}
u1: Unit K=16
u2: Unit K=16
expect u1.params = 2_320
"""


@pytest.mark.asyncio
async def test_definition_references_and_symbols_of_blocks(client: LanguageClient) -> None:
    uri = "file:///work/blocks.arch"
    assert await open_doc(client, BLOCKS, uri) == []
    ident = T.TextDocumentIdentifier(uri=uri)
    where = await client.text_document_definition_async(
        T.DefinitionParams(text_document=ident, position=pos(BLOCKS, "Unit K=16", 1))
    )
    assert isinstance(where, T.Location) and where.range.start == T.Position(line=1, character=6)
    refs = await client.text_document_references_async(
        T.ReferenceParams(
            text_document=ident,
            position=T.Position(line=1, character=7),
            context=T.ReferenceContext(include_declaration=False),
        )
    )
    assert refs is not None and sorted(r.range.start.line for r in refs) == [5, 6]
    to_u1 = await client.text_document_definition_async(
        T.DefinitionParams(text_document=ident, position=pos(BLOCKS, "u1.params", 1))
    )
    assert isinstance(to_u1, T.Location) and to_u1.range.start.line == 5
    hints = await client.text_document_inlay_hint_async(
        T.InlayHintParams(text_document=ident, range=whole(BLOCKS))
    )
    assert hints is not None and {h.position.line: h.label for h in hints}[5] == "32x32x16 · 2,320 params"
    hover = await client.text_document_hover_async(
        T.HoverParams(text_document=ident, position=T.Position(line=1, character=7))
    )
    assert hover is not None and isinstance(hover.contents, T.MarkupContent)
    assert "`Unit(K)`" in hover.contents.value and hover.contents.value.count("params 2,320") == 2
    symbols = await client.text_document_document_symbol_async(T.DocumentSymbolParams(text_document=ident))
    assert symbols is not None and [s.name for s in symbols] == ["Unit(K)", "u1", "u2"]  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_formatting_and_code_actions(client: LanguageClient) -> None:
    text = "input 32x32x3\nc1:   conv  K=8 F=3\npool: maxpol F=2\n"
    uri = "file:///work/fix.arch"
    diags = await open_doc(client, text, uri)
    ident = T.TextDocumentIdentifier(uri=uri)
    e100 = next(d for d in diags if d.code == "E100")
    actions = await client.text_document_code_action_async(
        T.CodeActionParams(
            text_document=ident, range=e100.range, context=T.CodeActionContext(diagnostics=[e100])
        )
    )
    assert actions is not None
    fix = next(a for a in actions if isinstance(a, T.CodeAction) and a.title == "Replace with 'maxpool'")
    assert fix.edit is not None and fix.edit.changes is not None
    edit = fix.edit.changes[uri][0]
    assert edit.new_text == "maxpool" and edit.range == e100.range

    fixed = text.replace("maxpol", "maxpool")
    assert await change(client, fixed, 2, uri) == []
    line1 = T.Range(start=T.Position(line=1, character=0), end=T.Position(line=1, character=0))
    actions = await client.text_document_code_action_async(
        T.CodeActionParams(text_document=ident, range=line1, context=T.CodeActionContext(diagnostics=[]))
    )
    assert actions is not None
    arrow = [a for a in actions if isinstance(a, T.CodeAction) and "computed shape" in a.title]
    assert arrow and arrow[0].edit is not None and arrow[0].edit.changes is not None
    assert arrow[0].edit.changes[uri][0].new_text == " -> 30x30x8"

    edits = await client.text_document_formatting_async(
        T.DocumentFormattingParams(
            text_document=ident, options=T.FormattingOptions(tab_size=2, insert_spaces=True)
        )
    )
    assert edits is not None and len(edits) == 1
    from archc.tools.fmt import format_text

    assert edits[0].new_text == format_text(fixed) != fixed


RESIDUAL = """input 32x32x16
c: conv K=16 F=3 S=3
residual {
  conv K=32 F=3 P=1
}
"""


@pytest.mark.asyncio
async def test_quick_fixes_from_hints_add_a_shortcut_and_padding(client: LanguageClient) -> None:
    uri = "file:///work/residual.arch"
    diags = await open_doc(client, RESIDUAL, uri)
    ident = T.TextDocumentIdentifier(uri=uri)
    by_code = {d.code: d for d in diags}
    assert {"E200", "W001"} <= set(by_code)

    async def fixes(d: T.Diagnostic) -> dict[str, T.TextEdit]:
        actions = await client.text_document_code_action_async(
            T.CodeActionParams(
                text_document=ident, range=d.range, context=T.CodeActionContext(diagnostics=[d])
            )
        )
        assert actions is not None
        out = {}
        for a in actions:
            assert isinstance(a, T.CodeAction) and a.edit is not None and a.edit.changes is not None
            out[a.title] = a.edit.changes[uri][0]
        return out

    shortcut = (await fixes(by_code["E200"]))["Add `shortcut { conv K=32 F=1 }`"]
    assert (
        shortcut.range.start == T.Position(line=4, character=1)
        and shortcut.new_text == " shortcut { conv K=32 F=1 }"
    )
    padding = (await fixes(by_code["W001"]))["Pad with P=2"]  # (32 + 2*2 - 3)/3 + 1 = 12, even
    assert padding.new_text == " P=2" and padding.range.start == T.Position(
        line=1, character=len("c: conv K=16 F=3 S=3")
    )
    resize = (await fixes(by_code["W001"]))["Make the input 30x30x16"]  # (30 - 3)/3 + 1 = 10, even
    assert resize.new_text == "30x30x16" and resize.range.start == T.Position(line=0, character=6)
    fixed = "input 32x32x16\nc: conv K=16 F=3 S=3 P=2\nresidual {\n  conv K=32 F=3 P=1\n} shortcut { conv K=32 F=1 }\n"
    assert await change(client, fixed, 2, uri) == []


@pytest.mark.asyncio
async def test_w001_fixes_spell_padding_and_sizes_per_side(client: LanguageClient) -> None:
    """maxpool F=1x4 on width 122: the padding that fits is P=0x1, the input sizes change the width alone."""
    uri = "file:///work/w001.arch"
    (diag,) = [d for d in await open_doc(client, "input 5x122x2\nmaxpool F=1x4\n", uri) if d.code == "W001"]
    actions = await client.text_document_code_action_async(
        T.CodeActionParams(
            text_document=T.TextDocumentIdentifier(uri=uri), range=diag.range, context=T.CodeActionContext(diagnostics=[diag])
        )
    )
    assert actions is not None
    edits = {
        a.title: a.edit.changes[uri][0].new_text
        for a in actions
        if isinstance(a, T.CodeAction) and a.edit and a.edit.changes and not a.title.startswith("Insert")
    }
    assert edits == {"Pad with P=0x1": " P=0x1", "Make the input 5x120x2": "5x120x2", "Make the input 5x124x2": "5x124x2"}


@pytest.mark.asyncio
async def test_an_error_inside_a_block_lists_its_call_sites(client: LanguageClient) -> None:
    text = "input 32x32x16\nblock U(K) {\n  conv K=K F=40\n}\nu1: U K=8\nu2: U K=8\n"
    uri = "file:///work/inblock.arch"
    (diag,) = [d for d in await open_doc(client, text, uri) if d.code == "E200"]
    assert diag.range.start.line == 2
    assert diag.related_information is not None
    # the call that met it (u2 reads u1's failed output), as the compiler's note says
    assert [(r.location.range.start.line, r.message) for r in diag.related_information] == [(4, "in U K=8, called here")]
    assert "note: in U K=8, called at line 5" in diag.message
    assert diag.code_description is None or diag.code_description.href.endswith("#errors")


@pytest.mark.asyncio
async def test_an_error_of_a_block_whatever_its_arguments_lists_every_call(client: LanguageClient) -> None:
    """An unknown kind in a body is reported once, without notes (checked without a call): every call is related."""
    text = "input 32x32x16\nblock U(K) {\n  cnv K=K F=4\n}\nu1: U K=8\nu2: U K=4\n"
    uri = "file:///work/inblock2.arch"
    (diag,) = [d for d in await open_doc(client, text, uri) if d.code == "E100"]
    assert diag.range.start.line == 2 and "note:" not in diag.message
    assert diag.related_information is not None
    assert sorted(r.location.range.start.line for r in diag.related_information) == [4, 5]


@pytest.mark.asyncio
async def test_a_missing_colon_is_fixed_by_its_did_you_mean(client: LanguageClient) -> None:
    """`conv1 conv K=8 F=3` (issue 10, item 7): the fix puts the colon back, over the name and the kind."""
    text = "input 32x32x3\nconv1 conv K=8 F=3\n"
    uri = "file:///work/colon.arch"
    (e100,) = [d for d in await open_doc(client, text, uri) if d.code == "E100"]
    actions = await client.text_document_code_action_async(
        T.CodeActionParams(
            text_document=T.TextDocumentIdentifier(uri=uri), range=e100.range, context=T.CodeActionContext(diagnostics=[e100])
        )
    )
    assert actions is not None
    fix = next(a for a in actions if isinstance(a, T.CodeAction) and a.title == "Replace with 'conv1: conv'")
    assert fix.edit is not None and fix.edit.changes is not None
    (edit,) = fix.edit.changes[uri]
    fixed = text.replace("conv1 conv", edit.new_text)
    assert (edit.range.start.character, edit.range.end.character) == (0, 10) and fixed.startswith("input 32x32x3\nconv1: conv K=8")
    assert await change(client, fixed, 2, uri) == []
