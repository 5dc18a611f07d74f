"""The VS Code extension's TextMate grammar, run as VS Code runs it (vscode-textmate and
vscode-oniguruma in Node), scopes every spec in specs/ as archc's own parser reads it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from archc.frontend import syntax as S
from archc.frontend.parser import syntax_tree
from archc.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
FIXTURE = VSCODE / "test"
SPECS = sorted((ROOT / "specs").glob("*.arch"))


def test_extension_manifest_names_the_language_and_grammar() -> None:
    manifest = json.loads((VSCODE / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    assert language["id"] == "arch" and language["extensions"] == [".arch"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert (VSCODE / grammar["path"]).is_file() and grammar["scopeName"] == "source.arch"
    assert (VSCODE / language["configuration"]).is_file()
    assert manifest["contributes"]["configuration"]["properties"]["archc.path"]["default"] == "archc"
    json.loads((VSCODE / "language-configuration.json").read_text())


def test_grammar_highlights_every_layer_kind() -> None:
    grammar = json.loads((VSCODE / "syntaxes" / "arch.tmLanguage.json").read_text())
    (kind_rule,) = [
        p for p in grammar["repository"]["statement"]["patterns"] if p.get("name") == "support.type.kind.arch"
    ]
    listed = set(kind_rule["match"].removeprefix("\\b(").removesuffix(")\\b").split("|"))
    missing = sorted(k for k, spec in KINDS.items() if spec.user and k not in listed)
    assert not missing, (
        f"add {missing} to support.type.kind.arch in editors/vscode/syntaxes/arch.tmLanguage.json"
    )


@pytest.fixture(scope="module")
def tokens() -> dict[str, list[tuple[int, int, str, list[str]]]]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (FIXTURE / "node_modules" / "vscode-textmate").is_dir():
        pytest.skip("run `npm ci` in editors/vscode/test first (.ci/run does)")
    proc = subprocess.run(
        ["node", str(FIXTURE / "tokenize.js"), *map(str, SPECS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return {Path(f).name: [tuple(t) for t in toks] for f, toks in json.loads(proc.stdout).items()}


def scope_at(toks: list[tuple[int, int, str, list[str]]], line: int, col: int) -> tuple[str, list[str]]:
    """The text and scopes of the token at 0-based (line, col)."""
    for t_line, start, text, scopes in toks:
        if t_line == line and start <= col < start + len(text):
            return text, scopes
    raise AssertionError(f"no token at {line}:{col}")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_grammar_scopes_agree_with_the_parser(
    tokens: dict[str, list[tuple[int, int, str, list[str]]]], spec: Path
) -> None:
    toks = tokens[spec.name]
    program, diags = syntax_tree(spec.read_text())
    assert not diags
    checked = 0

    def expect(span: object, scope: str, text: str | None = None) -> None:
        nonlocal checked
        line, col = span.line - 1, span.column - 1  # type: ignore[attr-defined]
        got, scopes = scope_at(toks, line, col)
        assert any(s.startswith(scope) for s in scopes), (spec.name, line + 1, got, scopes, scope)
        if text is not None:
            assert got == text, (spec.name, line + 1, got, text)
        checked += 1

    for c in program.comments:
        expect(c.span, "comment.line.number-sign.arch")
    for st in S.walk(program.statements):
        label = getattr(st, "label", None)
        if label is not None:
            expect(label.span, "entity.name.label.arch", label.name)
        arrow = getattr(st, "arrow", None)
        if arrow is not None:
            expect(
                arrow.span,
                "constant.numeric.shape.arch"
                if "x" in arrow.text or "×" in arrow.text
                else "constant.numeric.arch",
            )
        if isinstance(st, S.LayerStmt):
            if st.kind in KINDS:
                expect(st.span, "support.type.kind.arch", st.kind)
            for kw in st.keywords:
                expect(kw.span, "variable.parameter.key.arch", kw.key)
                if isinstance(kw.value, S.Number):
                    expect(kw.value.span, "constant.numeric.arch", kw.value.text)
        elif isinstance(st, S.BlockDef):
            expect(st.span, "entity.name.function.block.arch", st.name)
        elif isinstance(st, S.Expect):
            expect(st.value_span, "constant.numeric")
            expect(st.span, "support.constant.quantity.arch" if not st.path else "variable.other.path.arch")
        elif isinstance(st, S.InputDecl):
            expect(st.shape.span, "constant.numeric.shape.arch", st.shape.text)
        elif (
            isinstance(st, S.Repeat | S.Residual | S.Concat) and label is None
        ):  # else the span is the label's
            expect(st.span, "keyword.control.arch")
    assert checked > 10
