"""Partial results: what is known of a spec with errors (syntax tree, graph, facts).

The CLI still reports only the diagnostics of the stages up to the first that
failed (`CompileResult.diagnostics`); these tests look at what the later
stages built anyway, which an editor shows above the first mistake.
"""

from __future__ import annotations

import pytest

from archc.api import compile_text
from archc.frontend import syntax as S
from archc.frontend.elaborate import FAILED
from archc.frontend.parser import parse, syntax_tree
from archc.kinds import verify

LINE5 = """\
input 8x8x3
conv K=4 F=3
relu
conv K=8 F=3
conv K= F=3
relu
fc 10
"""


def kinds(stmts: tuple[S.Stmt, ...]) -> list[str]:
    return [type(st).__name__ for st in stmts]


# --- the syntax tree ---------------------------------------------------------------------------
def test_a_syntax_error_on_line_5_keeps_lines_1_to_4_and_6_on() -> None:
    program, diags = syntax_tree(LINE5)
    assert [d.code for d in diags] == ["E001"]
    lines = [st.span.line for st in program.statements]
    assert lines == [1, 2, 3, 4, 5, 6, 7]
    assert kinds(program.statements)[4] == "ErrorStmt"
    error = program.statements[4]
    assert (error.span.line, error.span.column, error.span.end_line, error.span.end_column) == (5, 1, 5, 12)
    assert parse(LINE5) == (None, diags)  # `parse` keeps its contract: no tree when there are errors


def test_error_nodes_stand_in_the_body_around_them() -> None:
    text = "block A {\n  repeat 2 {\n    conv K=96 F=\n    relu\n  }\n}\ninput 8x8x3\nrelu nope=\nA\n"
    program, diags = syntax_tree(text)
    assert [d.span.line for d in diags if d.span] == [3, 8]
    block, inp, err, call = program.statements
    assert isinstance(block, S.BlockDef) and isinstance(inp, S.InputDecl) and isinstance(call, S.LayerStmt)
    assert isinstance(err, S.ErrorStmt) and err.span.line == 8
    (rep,) = block.body
    assert isinstance(rep, S.Repeat) and kinds(rep.body) == ["ErrorStmt", "LayerStmt"]


def test_an_error_on_a_line_that_opens_a_body_stands_in_that_body() -> None:
    # (recovery once gave up on a line that opens a body; it skips the statement alone now)
    text = "input 8x8x3\nrelu\nrepeat 2 { conv K=\n  relu\n}\nfc 10  # the end\n"
    program, diags = syntax_tree(text)
    assert len(diags) == 1
    assert kinds(program.statements) == ["InputDecl", "LayerStmt", "Repeat", "LayerStmt"]
    rep = program.statements[2]
    assert isinstance(rep, S.Repeat) and kinds(rep.body) == ["ErrorStmt", "LayerStmt"]
    err = rep.body[0].span
    assert (err.line, err.column, err.end_line, err.end_column) == (3, 12, 3, 20)  # `conv K=`


def test_an_error_inside_a_body_keeps_the_statements_around_it() -> None:
    # the `}` on line 6 closes the repeat, so block B is never closed: E002 says so, and keeps its body
    text = "input 8x8x3\nblock B {\n  relu\n  repeat 2 { conv K=\n  relu\n}\nB\n"
    program, diags = syntax_tree(text)
    assert [d.code for d in diags] == ["E001", "E002"]
    _, block = program.statements
    assert isinstance(block, S.BlockDef) and kinds(block.body) == ["LayerStmt", "Repeat", "LayerStmt"]
    assert kinds(block.body[1].body) == ["ErrorStmt", "LayerStmt"]  # type: ignore[union-attr]


def test_an_unclosed_brace_keeps_its_body() -> None:
    program, diags = syntax_tree("input 8x8x3\nr: repeat 2 {\n  conv K=4 F=1\n  relu\n")
    assert [d.code for d in diags] == ["E002"]
    _, rep = program.statements
    assert isinstance(rep, S.Repeat) and kinds(rep.body) == ["LayerStmt", "LayerStmt"]


def test_a_head_waiting_for_its_brace_is_one_error_node() -> None:
    # the error is on line 3 (`}` where the body's `{` should be): the head on line 2 and
    # that `}` are one error node, and the statements after it are kept
    program, diags = syntax_tree("input 8x8x3\nrepeat 2\n}\nrelu\n")
    assert diags
    assert kinds(program.statements) == ["InputDecl", "ErrorStmt", "LayerStmt"]
    err = program.statements[1].span
    assert (err.line, err.end_line) == (2, 3)


# --- the graph and its facts -------------------------------------------------------------------
def test_after_a_syntax_error_the_layers_above_it_have_shapes() -> None:
    r = compile_text(LINE5, "t.arch")
    assert r.network is None and [d.code for d in r.diagnostics] == ["E001"]
    assert r.program is not None and kinds(r.program.statements)[4] == "ErrorStmt"
    assert r.graph is not None and not r.graph.complete
    assert [n.name for n in r.graph.nodes] == ["conv1", "relu1", "conv2", "relu2", "fc1"]
    assert r.graph.node("relu2").inputs == (FAILED,)  # what the failed line would have fed it
    assert r.analysis is not None and not r.analysis.complete
    assert {name: f.output.dims for name, f in r.analysis.facts.items()} == {
        "conv1": (6, 6, 4),
        "relu1": (6, 6, 4),
        "conv2": (4, 4, 8),
    }
    assert r.assertions == ()  # as before: known once the spec elaborated
    with pytest.raises(ValueError, match="incomplete"):
        verify(r.graph)


def test_a_shape_error_at_layer_3_leaves_the_facts_of_layers_1_and_2() -> None:
    text = "input 8x8x3\nc1: conv K=4 F=3 -> 6x6x4\nr1: relu\nc3: conv K=4 F=9\nfc 10\n"
    r = compile_text(text, "t.arch")
    assert [d.code for d in r.diagnostics] == ["E200"] and r.partial_diagnostics == ()
    assert r.graph is not None and r.graph.complete  # elaboration was fine
    assert r.analysis is not None and not r.analysis.complete
    assert list(r.analysis.facts) == ["c1", "r1"]
    assert r.analysis.facts["c1"].params == 4 * 3 * 3 * 3 + 4
    assert r.assertions == r.graph.assertions  # the arrow on c1 is known, though not checked


def test_a_failing_repeat_keeps_the_copies_before_it() -> None:
    # each copy halves the size: 8 -> 4 -> 2 -> 1, and the fourth pool has nothing to pool
    r = compile_text("input 8x8x3\nr: repeat 5 { conv K=3 F=3 P=1; maxpool F=2 }\nfc 10\n", "t.arch")
    assert [d.code for d in r.diagnostics] == ["E200"]
    assert r.analysis is not None
    assert list(r.analysis.facts) == [
        "r.0.conv1", "r.0.maxpool1", "r.1.conv1", "r.1.maxpool1", "r.2.conv1", "r.2.maxpool1", "r.3.conv1"
    ]  # fmt: skip
    assert r.analysis.facts["r.2.maxpool1"].output.dims == (1, 1, 3)
    copy = r.analysis.totals_under("r.1")
    assert copy.params == 3 * 3 * 3 * 3 + 3 and copy.macs == 4 * 4 * 3 * 27


def test_an_elaboration_error_inside_a_repeat_keeps_what_came_before() -> None:
    r = compile_text("input 8x8x3\nrelu\nrepeat 3 { conv K=4 F=1; nope }\nfc 10\n", "t.arch")
    assert [d.code for d in r.diagnostics] == ["E100"]
    assert r.graph is not None and not r.graph.complete
    assert [n.name for n in r.graph.nodes] == ["relu1", "repeat1.0.conv1", "fc1"]
    assert r.graph.node("fc1").inputs == (FAILED,)
    assert r.analysis is not None and list(r.analysis.facts) == ["relu1", "repeat1.0.conv1"]


def test_errors_of_the_later_stages_are_kept_apart() -> None:
    """Every independent error of a file in one run: the CLI still shows the syntax error
    alone, and what elaboration found on the rest of the file is there too."""
    r = compile_text("input 8x8x3\nconv K=\nrelu\nconvv K=4 F=1\nc: relu\nc: relu\n", "t.arch")
    assert [d.code for d in r.diagnostics] == ["E001"]
    assert [(d.code, d.span.line) for d in r.partial_diagnostics if d.span] == [("E100", 4), ("E111", 6)]
    assert "E100" not in r.render()


def test_no_input_no_graph_but_the_tree() -> None:
    r = compile_text("conv K=4 F=3\nrelu\n", "t.arch")
    assert [d.code for d in r.diagnostics] == ["E118"]
    assert r.graph is None and r.analysis is None
    assert r.program is not None and kinds(r.program.statements) == ["LayerStmt", "LayerStmt"]


def test_a_valid_spec_is_complete_everywhere() -> None:
    r = compile_text("input 8x8x3\nb: repeat 2 { conv K=3 F=3 P=1 }\n", "t.arch")
    assert r.network is not None and r.partial_diagnostics == ()
    assert r.graph is r.network.graph and r.analysis is r.network.analysis
    assert r.graph.complete and r.analysis.complete
    verify(r.graph)
