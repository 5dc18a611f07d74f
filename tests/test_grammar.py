"""Every lexical and syntactic form of LANGUAGE.md parses, into the syntax tree it means.

These tests look at `archc.frontend.syntax` nodes (what was written), not at shapes:
`test_elaborate.py` and `test_shapes.py` cover what the forms mean.
"""

from __future__ import annotations

import re
import time

import pytest

from archc.api import compile_text
from archc.frontend import parser as P
from archc.frontend import syntax as S
from archc.frontend.parser import parse, parse_number


def prog(text: str) -> S.Program:
    program, diags = parse(text)
    assert not diags, [d.message for d in diags]
    assert program is not None
    return program


def stmts(text: str) -> list[S.Stmt]:
    return list(prog(text).statements)


def one(text: str) -> S.Stmt:
    (st,) = stmts(text)
    return st


def layer(text: str) -> S.LayerStmt:
    st = one(text)
    assert isinstance(st, S.LayerStmt)
    return st


def kw(st: S.LayerStmt) -> dict[str, S.Expr]:
    return {k.key: k.value for k in st.keywords}


def ok(text: str) -> None:
    """The text compiles without errors (end to end)."""
    r = compile_text(text, "t.arch")
    assert not r.errors, r.render()


# --- the parser itself -------------------------------------------------------------
def test_grammar_is_lalr() -> None:
    assert P._parser().options.parser == "lalr"


# --- lexical --------------------------------------------------------------------------
def test_comments_run_to_end_of_line() -> None:
    got = stmts("# a comment\ninput 3x3x3  # trailing\n#\nrelu # relu\n")
    assert [type(s).__name__ for s in got] == ["InputDecl", "LayerStmt"]


@pytest.mark.parametrize(
    "text",
    [
        "input 8x8x3\nrelu\nrelu\n",
        "input 8x8x3; relu; relu",
        "input 8x8x3;relu;relu;",
        "\n\n input 8x8x3 \n\n relu ;; \n relu\n\n",
        "input 8x8x3\r\nrelu\r\nrelu\r\n",
    ],
)
def test_statements_end_at_newline_or_semicolon(text: str) -> None:
    got = stmts(text)
    assert [type(s).__name__ for s in got] == ["InputDecl", "LayerStmt", "LayerStmt"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("96", 96),
        ("4_096", 4096),
        ("28_823_912", 28_823_912),
        ("0.5", 0.5),
        ("1e-4", 1e-4),
        ("2E3", 2000.0),
        ("34.8K", 34_800),
        ("27.55M", 27_550_000),
        ("0.71G", 710_000_000),
        ("4M", 4_000_000),
        (".5", 0.5),
    ],
)
def test_numbers(text: str, value: float) -> None:
    got = parse_number(text)
    assert got == value
    assert type(got) is type(value)


def test_quantities_in_expect_keep_the_written_text() -> None:
    st = one("expect params = 27.55M")
    assert isinstance(st, S.Expect)
    assert isinstance(st.value, S.Number)
    assert (st.value.value, st.value.text) == (27_550_000, "27.55M")


@pytest.mark.parametrize("name", ["conv1", "_x", "A", "layer_1_b", "Fire2", "x9"])
def test_names(name: str) -> None:
    st = layer(f"{name}: relu")
    assert st.label is not None and st.label.name == name


def test_block_names_may_use_any_case() -> None:
    got = stmts("block FIRE_module { relu }\nFIRE_module")
    assert isinstance(got[0], S.BlockDef) and got[0].name == "FIRE_module"
    assert isinstance(got[1], S.LayerStmt) and got[1].kind == "FIRE_module"


# --- input and network ---------------------------------------------------------------------
def test_network_and_input_hwc() -> None:
    net, inp = stmts("network AlexNet\ninput 227x227x3")
    assert isinstance(net, S.NetworkDecl) and net.name == "AlexNet"
    assert isinstance(inp, S.InputDecl) and inp.shape.dims == (227, 227, 3)


def test_input_flat() -> None:
    inp = one("input 4096")
    assert isinstance(inp, S.InputDecl) and inp.shape.dims == (4096,)


def test_input_with_unicode_times() -> None:
    inp = one("input 227×227×3")
    assert isinstance(inp, S.InputDecl) and inp.shape.dims == (227, 227, 3)


# --- layer lines -----------------------------------------------------------------------------
def test_layer_line_all_parts() -> None:
    st = layer("conv1: conv K=96 F=11 S=4 P=0 -> 55x55x96")
    assert st.label is not None and st.label.name == "conv1"
    assert st.kind == "conv"
    assert st.positional == ()
    assert {k: v.value for k, v in kw(st).items()} == {"K": 96, "F": 11, "S": 4, "P": 0}  # type: ignore[union-attr]
    assert st.arrow is not None and st.arrow.dims == (55, 55, 96)


def test_layer_bare_kind() -> None:
    st = layer("relu")
    assert (st.label, st.kind, st.positional, st.keywords, st.arrow) == (None, "relu", (), (), None)


def test_positional_and_flat_arrow() -> None:
    st = layer("fc1: fc 4096 -> 4096")
    assert [p.value for p in st.positional] == [4096]  # type: ignore[union-attr]
    assert st.arrow is not None and st.arrow.dims == (4096,)


def test_positional_then_keywords() -> None:
    st = layer("fc 10 bias=false")
    assert len(st.positional) == 1 and set(kw(st)) == {"bias"}


@pytest.mark.parametrize("key", ["F", "S", "P", "D"])
def test_hxw_values(key: str) -> None:
    st = layer(f"conv K=8 F=3 {key}=3x1" if key != "F" else "conv K=8 F=3x1")
    value = kw(st)[key]
    assert isinstance(value, S.Dims) and value.value == (3, 1)


def test_p_same_bias_false_ceil_true() -> None:
    st = layer("conv K=8 F=3 P=same bias=false")
    assert isinstance(kw(st)["P"], S.Ref) and kw(st)["P"].name == "same"  # type: ignore[union-attr]
    assert isinstance(kw(st)["bias"], S.Ref) and kw(st)["bias"].name == "false"  # type: ignore[union-attr]
    st = layer("maxpool F=3 S=2 ceil=true")
    assert isinstance(kw(st)["ceil"], S.Ref) and kw(st)["ceil"].name == "true"  # type: ignore[union-attr]


def test_name_may_equal_a_kind() -> None:
    st = layer("fc: fc 1000")
    assert st.label is not None and st.label.name == "fc" and st.kind == "fc"


def test_span_of_a_layer_is_its_kind() -> None:
    st = layer("  conv1: conv K=3 F=3")
    assert (st.span.line, st.span.column, st.span.end_column) == (1, 10, 14)


# --- expressions ---------------------------------------------------------------------------
def _expr(text: str) -> S.Expr:
    (p,) = layer(f"fc {text}").positional
    return p


def show(e: S.Expr) -> str:
    if isinstance(e, S.BinOp):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, S.Neg):
        return f"(-{show(e.operand)})"
    if isinstance(e, S.Ref):
        return e.name
    if isinstance(e, S.Number):
        return e.text
    return "x".join(map(str, e.value))


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("E*4", "(E * 4)"),
        ("(SQ+1)//2", "((SQ + 1) // 2)"),
        ("A+B*C", "(A + (B * C))"),
        ("A-B-C", "((A - B) - C)"),
        ("A*B//C", "((A * B) // C)"),
        ("(A+B)*(C-1)", "((A + B) * (C - 1))"),
        ("-A+1", "((-A) + 1)"),
        ("K*2 + 4_096", "((K * 2) + 4_096)"),
    ],
)
def test_arithmetic_precedence(text: str, tree: str) -> None:
    assert show(_expr(text)) == tree


def test_keyword_values_take_expressions() -> None:
    st = layer("conv K=(SQ+1)//2 F=3")
    assert show(kw(st)["K"]) == "((SQ + 1) // 2)"


# --- blocks ------------------------------------------------------------------------------------
def test_block_with_params_and_defaults() -> None:
    st = one("block Basic(K, S=1, E=K*4) {\n  conv K=K F=3 S=S\n}")
    assert isinstance(st, S.BlockDef)
    assert [p.name for p in st.params] == ["K", "S", "E"]
    assert st.params[0].default is None
    assert isinstance(st.params[1].default, S.Number) and st.params[1].default.value == 1
    assert show(st.params[2].default) == "(K * 4)"  # type: ignore[arg-type]
    assert len(st.body) == 1


@pytest.mark.parametrize("text", ["block Stem { conv K=8 F=3; relu }", "block Stem() { conv K=8 F=3; relu }"])
def test_block_without_parameters(text: str) -> None:
    st = one(text)
    assert isinstance(st, S.BlockDef) and st.params == () and len(st.body) == 2


def test_block_one_line_and_many_lines_agree() -> None:
    a = one("block B(K) { conv K=K F=1; relu }")
    b = one("block B(K) {\n  conv K=K F=1\n\n  relu\n}")
    assert isinstance(a, S.BlockDef) and isinstance(b, S.BlockDef)
    assert [s.kind for s in a.body] == [s.kind for s in b.body] == ["conv", "relu"]  # type: ignore[union-attr]


def test_block_call_with_keywords_and_arrow() -> None:
    st = layer("layer2: Basic K=128 S=2 -> 28x28x128")
    assert st.kind == "Basic" and set(kw(st)) == {"K", "S"}
    assert st.arrow is not None and st.arrow.dims == (28, 28, 128)


# --- residual, concat, repeat ------------------------------------------------------------------
def test_residual_without_shortcut() -> None:
    st = one("residual {\n  conv K=8 F=3 P=1\n  relu\n}")
    assert isinstance(st, S.Residual) and st.shortcut is None and len(st.body) == 2


def test_residual_with_shortcut_same_line() -> None:
    st = one("residual { conv K=8 F=3 P=1 } shortcut { conv K=8 F=1 }")
    assert isinstance(st, S.Residual) and st.shortcut is not None and len(st.shortcut) == 1


def test_residual_with_shortcut_next_line() -> None:
    res, sc = stmts("residual {\n  relu\n}\nshortcut {\n  conv K=8 F=1\n}")
    assert isinstance(res, S.Residual) and res.shortcut is None
    assert isinstance(sc, S.Shortcut) and len(sc.body) == 1  # joined by the elaborator


def test_language_md_basic_block_compiles() -> None:
    ok(
        """input 56x56x64
block Basic(K, S=1) {
  residual {                       # y = body(x) + shortcut(x)
    conv K=K F=3 S=S P=1 bias=false
    batchnorm
    relu
    conv K=K F=3 P=1 bias=false
    batchnorm
  } shortcut {                     # optional; identity when absent
    conv K=K F=1 S=S bias=false
    batchnorm
  }
  relu
}
layer1: repeat 2 { Basic K=64 }
layer2: Basic K=128 S=2
"""
    )


def test_concat_one_line_and_many() -> None:
    a = one("concat { branch { conv K=4 F=1; relu } branch { conv K=4 F=3 P=1; relu } }")
    b = one("concat {\n  branch {\n    conv K=4 F=1\n  }\n  branch { conv K=4 F=3 P=1 }\n}")
    for st in (a, b):
        assert isinstance(st, S.Concat) and len(st.branches) == 2
        assert all(isinstance(br, S.Branch) for br in st.branches)


def test_add_and_multiply_merges_parse_like_concat() -> None:
    for op in ("add", "multiply"):
        st = one(f"se: {op} {{ branch {{ identity }} branch {{ globalavgpool; sigmoid }} }} -> 7x7x4")
        assert isinstance(st, S.Concat) and st.op == op and len(st.branches) == 2
        assert st.label is not None and st.label.name == "se" and st.arrow is not None
    assert one("concat { branch { relu } }").op == "concat"  # type: ignore[union-attr]


@pytest.mark.parametrize("word", ["add", "multiply"])
def test_add_and_multiply_are_keywords(word: str) -> None:
    prog, diags = parse(f"input 4\n{word}: relu\n")
    assert prog is None and diags[0].message == f"'{word}' is a keyword and cannot name a layer"
    prog, diags = parse(f"input 4\n{word}\n")
    assert prog is None and diags[0].message.startswith("missing '{' to open the body")


def test_language_md_fire_block_compiles() -> None:
    ok(
        """input 55x55x96
block Fire(SQ, E) {
  conv K=SQ F=1; relu
  concat {                         # channel concatenation of the branches
    branch { conv K=E F=1; relu }
    branch { conv K=E F=3 P=1; relu }
  }
}
fire2: Fire SQ=16 E=64 -> 55x55x128
"""
    )


def test_repeat_with_expression_count() -> None:
    st = one("repeat N*2+1 { relu }")
    assert isinstance(st, S.Repeat) and show(st.times) == "((N * 2) + 1)"


def test_named_repeat_and_arrow() -> None:
    st = one("layer1: repeat 2 { Basic K=64 } -> 56x56x64")
    assert isinstance(st, S.Repeat) and st.label is not None and st.label.name == "layer1"
    assert st.arrow is not None and st.arrow.dims == (56, 56, 64)


@pytest.mark.parametrize(
    ("text", "cls"),
    [
        ("r: residual { relu } -> 8x8x3", S.Residual),
        ("r: residual { relu } shortcut { relu } -> 8x8x3", S.Residual),
        ("c: concat { branch { relu } } -> 8x8x3", S.Concat),
    ],
)
def test_compound_statements_take_labels_and_arrows(text: str, cls: type) -> None:
    st = one(text)
    assert isinstance(st, cls)
    assert st.label is not None and st.arrow is not None  # type: ignore[attr-defined]


def test_closed_statements_need_no_separator() -> None:
    got = stmts("repeat 2 { relu } relu")
    assert [type(s).__name__ for s in got] == ["Repeat", "LayerStmt"]


# --- expect ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "path", "quantity", "op", "value", "tol", "pct"),
    [
        ("expect params = 28_823_912", (), "params", "=", 28_823_912, None, False),
        ("expect params == 28_823_912", (), "params", "=", 28_823_912, None, False),
        ("expect params = 28.82M", (), "params", "=", 28_820_000, None, False),
        ("expect weights = 27.55M ± 5%", (), "weights", "=", 27_550_000, 5.0, True),
        ("expect weights = 27.55M +- 5%", (), "weights", "=", 27_550_000, 5.0, True),
        ("expect weights = 27.55M +/- 5%", (), "weights", "=", 27_550_000, 5.0, True),
        ("expect biases = 10_000 ± 600", (), "biases", "=", 10_000, 600.0, False),
        ("expect macs = 0.66G ± 1%", (), "macs", "=", 660_000_000, 1.0, True),
        ("expect params <= 30M", (), "params", "<=", 30_000_000, None, False),
        ("expect params < 30M", (), "params", "<", 30_000_000, None, False),
        ("expect params >= 1K", (), "params", ">=", 1000, None, False),
        ("expect macs > 1G", (), "macs", ">", 1_000_000_000, None, False),
        ("expect conv1.params = 34_848", ("conv1",), "params", "=", 34_848, None, False),
        ("expect layer1.0.conv1.params = 36_864", ("layer1", "0", "conv1"), "params", "=", 36_864, None, False),
    ],
)
def test_expect_numbers(
    text: str, path: tuple[str, ...], quantity: str, op: str, value: int, tol: float | None, pct: bool
) -> None:
    st = one(text)
    assert isinstance(st, S.Expect)
    assert isinstance(st.value, S.Number)
    assert (st.path, st.quantity, st.op, st.value.value, st.tolerance, st.tolerance_is_percent) == (
        path,
        quantity,
        op,
        value,
        tol,
        pct,
    )


@pytest.mark.parametrize(
    ("text", "path", "dims"),
    [
        ("expect output = 1000", (), None),
        ("expect conv1.output = 55x55x96", ("conv1",), (55, 55, 96)),
        ("expect layer1.1.output = 56x56x64", ("layer1", "1"), (56, 56, 64)),
    ],
)
def test_expect_shapes(text: str, path: tuple[str, ...], dims: tuple[int, ...] | None) -> None:
    st = one(text)
    assert isinstance(st, S.Expect) and st.path == path and st.quantity == "output"
    if dims is None:
        assert isinstance(st.value, S.Number) and st.value.value == 1000
    else:
        assert isinstance(st.value, S.Dims) and st.value.value == dims


# --- every syntax-error label is reachable, wherever the mistake is ------------------------------
EXAMPLES = [(label, ex) for label, exs in P._SYNTAX_EXAMPLES.items() for ex in exs]


@pytest.mark.parametrize(("label", "example"), EXAMPLES)
@pytest.mark.parametrize("prefix", ["", "input 3x3x3\nrelu; relu\n\n"])
def test_syntax_error_examples_get_their_label(label: str, example: str, prefix: str) -> None:
    # A mistake on line 3 must read the same as on line 1 (lark's match_examples
    # compares stack depths, which made every label unreachable after line 1).
    program, diags = parse(prefix + example)
    assert program is None
    message = diags[0].message
    if label == P._MISSING_VALUE:  # names the key: "missing value after 'F='"
        assert re.fullmatch(r"missing value after '\w+='", message), message
    else:
        assert message.startswith(label), message


def test_syntax_error_inside_nested_bodies_is_labelled() -> None:
    _, diags = parse("block A {\n  repeat 2 {\n    conv K=96 F=\n  }\n}\n")
    assert diags[0].message == "missing value after 'F='"
    assert (diags[0].span.line, diags[0].span.column) == (3, 17)  # type: ignore[union-attr]


# --- scaling ---------------------------------------------------------------------------------------
def _parse_time(lines: int, tries: int) -> float:
    text = "input 32x32x3\n" + "conv K=8 F=3 P=1 S=1 bias=false -> 32x32x8\nrelu\n" * (lines // 2)
    best = float("inf")
    for _ in range(tries):  # CPU time: other processes on a shared machine stretch wall time, not this
        t = time.process_time()
        program, diags = parse(text)
        best = min(best, time.process_time() - t)
        assert program is not None and not diags
    return best


def test_parse_time_is_linear() -> None:
    small, big = _parse_time(1_000, 5), _parse_time(10_000, 2)
    # 10x the lines: a linear parser takes ~10x; a quadratic one ~100x.
    assert big / small < 25, (small, big)


def test_opening_brace_may_sit_on_the_next_line() -> None:
    """An added form (docs/language.md): C-style braces."""
    import archc

    text = "input 8x8x3\nblock B(K)\n{\n  conv K=K F=3\n}\nl: repeat 2\n{\n  B K=4\n}\nresidual\n{ relu }\n"
    net = archc.loads(text, filename="braces.arch")
    assert [n.name for n in net.layers] == ["l.0.conv1", "l.1.conv1", "relu1", "residual1"]


def test_shapes_may_be_spaced_as_the_slides_print_them() -> None:
    import archc

    net = archc.loads("input 227 x 227 x 3\nconv K=96 F=11 x 11 S=4 -> 55 x 55 x 96\n")
    assert net.input_shape == (227, 227, 3) and net.output_shape == (55, 55, 96)


def test_comma_grouped_numbers_get_a_hint() -> None:
    import archc

    result = archc.compile_text("input 4\nfc 10\nexpect params = 1,930\n", "c.arch")
    assert result.network is None
    (err,) = result.errors
    assert err.span is not None and (err.span.line, err.span.column) == (3, 18)
    assert "'_', not ','" in err.message and err.hint == "write 1_930"


# --- lossless: what printing the file again needs (archc fmt prints from this tree) ----------------
def test_comments_are_kept_with_their_places() -> None:
    program = prog("# top\ninput 8x8x3  # the input\n\nrelu;relu # two\n")
    assert [(c.text, c.span.line, c.span.column) for c in program.comments] == [
        ("# top", 1, 1),
        ("# the input", 2, 14),
        ("# two", 4, 11),
    ]


def test_texts_are_kept_as_written() -> None:
    st = layer("conv K=((4)) F=3 x 3 S=-(1) P=(K+1)//2 -> 4_096")
    k, f, s, p = (kw.value for kw in st.keywords)
    assert isinstance(k, S.Number) and (k.value, k.parens) == (4, 2)
    assert isinstance(f, S.Dims) and f.text == "3 x 3"
    assert isinstance(s, S.Neg) and s.operand.parens == 1
    assert isinstance(p, S.BinOp) and p.left.parens == 1 and p.parens == 0
    assert st.arrow is not None and (st.arrow.text, st.arrow.dims) == ("4_096", (4096,))
    ex = one("expect conv1.params == 34.8K +- 1.0 %")
    assert isinstance(ex, S.Expect) and (ex.op, ex.written_op) == ("=", "==")
    assert (ex.tolerance_sign, ex.tolerance_text, ex.tolerance_is_percent) == ("+-", "1.0", True)
    (inp,) = stmts("input 227 x 227 x 3")
    assert isinstance(inp, S.InputDecl) and inp.shape.text == "227 x 227 x 3"


def places(braces: S.Braces) -> tuple[int, int, int, int]:
    return (braces.open.line, braces.open.column, braces.close.line, braces.close.column)


def test_braces_are_kept_with_their_places() -> None:
    text = "residual\n{ relu }  shortcut {\n  identity\n}\n"
    (res,) = stmts(text)
    assert isinstance(res, S.Residual)
    assert places(res.braces) == (2, 1, 2, 8)
    assert res.shortcut_keyword is not None and res.shortcut_keyword.line == 2
    assert res.shortcut_braces is not None and places(res.shortcut_braces) == (2, 20, 4, 1)
