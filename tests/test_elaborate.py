"""Elaboration: names, hierarchy, blocks, repeats, graph edges, and the errors of each."""

from __future__ import annotations

import pytest
from conftest import BASIC_BLOCK

import archc
from archc.api import compile_text
from archc.kinds import verify


def net(text: str) -> archc.Network:
    r = compile_text(text, "t.arch")
    assert not r.errors, r.render()
    assert r.network is not None
    verify(r.network.graph)  # the IR the front end built passes full validation
    return r.network


def names(text: str) -> list[str]:
    return [n.name for n in net(text).graph.nodes]


def edges(text: str) -> dict[str, tuple[str, ...]]:
    return {n.name: n.inputs for n in net(text).graph.nodes}


def errors(text: str) -> list[tuple[str, int, int, str, str | None]]:
    """(code, line, column, message, hint) of each error."""
    r = compile_text(text, "t.arch")
    out = []
    for d in r.errors:
        assert d.span is not None
        out.append((d.code, d.span.line, d.span.column, d.message, d.hint))
    assert out, "expected errors"
    return out


def codes(text: str) -> list[str]:
    return [e[0] for e in errors(text)]


# --- naming -----------------------------------------------------------------------------------
def test_generated_names_count_by_kind() -> None:
    assert names("input 8x8x3\nconv K=4 F=1\nrelu\nconv K=4 F=1\nrelu\nfc 10") == [
        "conv1",
        "relu1",
        "conv2",
        "relu2",
        "fc1",
    ]


def test_generated_names_skip_written_names_in_the_scope() -> None:
    # conv2 is written *after* the first unnamed conv: the generator still skips it
    assert names("input 8x8x3\nconv K=4 F=1\nconv2: conv K=4 F=1\nconv K=4 F=1\nconv1x: relu") == [
        "conv1",
        "conv2",
        "conv3",
        "conv1x",
    ]
    assert names("input 8x8x3\nconv K=4 F=1\nconv1: conv K=4 F=1") == ["conv2", "conv1"]


def test_written_names_in_residual_and_concat_bodies_share_the_scope() -> None:
    got = names("input 8x8x3\nrelu\nresidual { relu1: relu }\nconcat { branch { relu2: relu } branch { relu } }")
    assert got == ["relu3", "relu1", "residual1", "relu2", "relu4", "concat1"]


def test_a_name_may_equal_a_kind() -> None:
    assert names("input 8x8x3\nfc: fc 1000\nrelu: relu") == ["fc", "relu"]


def test_network_name_defaults_to_file_stem() -> None:
    r = compile_text("input 4\nfc 2", "specs/my-net.arch")
    assert r.network is not None and r.network.name == "my_net"
    assert net("network Foo\ninput 4\nfc 2").name == "Foo"


BASIC = "\n" + BASIC_BLOCK


def test_dotted_hierarchy_of_named_repeats_and_calls() -> None:
    n = net("input 8x8x64\n" + BASIC + "layer1: repeat 2 { Basic K=64 }\nlayer2: Basic K=128 S=2")
    got = [x.name for x in n.graph.nodes]
    assert got[:8] == [
        "layer1.0.conv1",
        "layer1.0.batchnorm1",
        "layer1.0.relu1",
        "layer1.0.conv2",
        "layer1.0.batchnorm2",
        "layer1.0.conv3",
        "layer1.0.batchnorm3",
        "layer1.0.residual1",
    ]
    assert "layer1.1.conv1" in got and "layer2.conv3" in got and got[-1] == "layer2.relu2"
    scopes = {s.path: s.kind for s in n.graph.scopes}
    assert scopes == {
        "layer1.0": "copy",
        "layer1.1": "copy",
        "layer1": "repeat",
        "layer2": "call",
    }


def test_unnamed_block_call_is_a_level_named_by_the_block() -> None:
    got = names("input 8x8x3\nblock Stem { conv K=4 F=1; relu }\nStem\nStem\nstem1x: relu")
    assert got == ["stem1.conv1", "stem1.relu1", "stem2.conv1", "stem2.relu1", "stem1x"]


def test_unnamed_call_skips_a_written_name() -> None:
    got = names("input 8x8x3\nblock Stem { relu }\nStem\nstem1: relu")
    assert got == ["stem2.relu1", "stem1"]


def test_repeat_of_a_lone_unnamed_call_makes_the_copy_the_instance() -> None:
    got = names("input 8x8x3\nblock B { relu }\nl: repeat 2 { B }")
    assert got == ["l.0.relu1", "l.1.relu1"]
    # a named call inside the repeat is its own level
    got = names("input 8x8x3\nblock B { relu }\nl: repeat 2 { b: B }")
    assert got == ["l.0.b.relu1", "l.1.b.relu1"]
    # several statements: the call is a level under the copy
    got = names("input 8x8x3\nblock B { relu }\nl: repeat 1 { relu; B }")
    assert got == ["l.0.relu1", "l.0.b1.relu1"]


def test_unnamed_repeat_is_named_repeat_n() -> None:
    assert names("input 8x8x3\nrepeat 2 { relu }\nrelu") == ["repeat1.0.relu1", "repeat1.1.relu1", "relu1"]


def test_repeat_zero_copies() -> None:
    n = net("input 8x8x3\nr: repeat 0 { conv K=4 F=1 }\nrelu")
    assert [x.name for x in n.graph.nodes] == ["relu1"]
    assert n.graph.node("relu1").inputs == ("input",)
    assert n.output_shape == (8, 8, 3)


def test_repeat_count_from_a_parameter_expression() -> None:
    got = names("input 8x8x3\nblock B(N, M=1) { r: repeat N*2 - M { relu } }\nb: B N=2")
    assert got == ["b.r.0.relu1", "b.r.1.relu1", "b.r.2.relu1"]


def test_block_defined_after_use() -> None:
    assert names("input 8x8x3\nb: Late K=4\nblock Late(K) { conv K=K F=1 }") == ["b.conv1"]


def test_defaults_and_keyword_arguments() -> None:
    text = "input 8x8x3\nblock B(K, S=1, E=K*2) { conv K=E F=1 S=S }\n"
    n = net(text + "a: B K=4\nb: B K=4 S=2 E=5")
    layers = {layer.name: layer for layer in n.layers}  # window keys per spatial dim, as the layer uses them
    a, b = layers["a.conv1"], layers["b.conv1"]
    assert (a.attrs["K"], a.attrs["S"]) == (8, (1, 1))
    assert (b.attrs["K"], b.attrs["S"]) == (5, (2, 2))
    scope = {s.path: s for s in n.graph.scopes}
    assert scope["a"].args == {"K": 4, "S": 1, "E": 8} and scope["a"].block == "B"


def test_nested_blocks_and_integer_arithmetic() -> None:
    text = """input 8x8x16
block Inner(K) { conv K=(K+1)//2 F=1 }
block Outer(K) { i: Inner K=K*3; Inner K=K }
o: Outer K=5
"""
    n = net(text)
    assert [x.name for x in n.graph.nodes] == ["o.i.conv1", "o.inner1.conv1"]
    assert n.graph.node("o.i.conv1").attrs["K"] == 8
    assert n.graph.node("o.inner1.conv1").attrs["K"] == 3


def test_each_repeat_copy_has_its_own_parameters() -> None:
    n = net("input 8x8x3\nr: repeat 2 { conv K=4 F=1 }")
    assert n.graph.node("r.0.conv1").attrs == n.graph.node("r.1.conv1").attrs
    assert n.layers[0].params == 3 * 4 + 4 and n.layers[1].params == 4 * 4 + 4


# --- graph edges ----------------------------------------------------------------------------------
def test_residual_edges() -> None:
    e = edges("input 8x8x4\nrelu\nresidual { conv K=4 F=1; relu }\nrelu")
    assert e == {
        "relu1": ("input",),
        "conv1": ("relu1",),
        "relu2": ("conv1",),
        "residual1": ("relu2", "relu1"),  # body, then the identity shortcut
        "relu3": ("residual1",),
    }


def test_residual_with_shortcut_edges() -> None:
    e = edges("input 8x8x4\nr: residual { conv K=8 F=1 } shortcut { sc: conv K=8 F=1 }")
    assert e == {"conv1": ("input",), "sc": ("input",), "r": ("conv1", "sc")}


def test_shortcut_on_the_next_line_joins_the_residual() -> None:
    e = edges("input 8x8x4\nresidual { conv K=8 F=1 }\nshortcut { conv K=8 F=1 }")
    assert e["residual1"] == ("conv1", "conv2")


def test_concat_edges_and_channels() -> None:
    n = net("input 8x8x4\nc: concat { branch { conv K=3 F=1 } branch { relu } branch { conv K=5 F=3 P=1 } }")
    assert n.graph.node("c").inputs == ("conv1", "relu1", "conv2")
    assert n.graph.node("conv2").inputs == ("input",)
    assert n.output_shape == (8, 8, 12)


def test_expect_may_name_a_block_instance_a_repeat_and_a_copy() -> None:
    ok = compile_text(
        "input 8x8x3\nblock B { conv K=4 F=1 }\nl: repeat 2 { B }\n"
        "expect l.params = 36\nexpect l.0.params = 16\nexpect l.1.conv1.params = 20\n"
        "expect l.output = 8x8x4\nexpect l.0.conv1.output = 8x8x4\n",
        "t.arch",
    )
    assert not ok.errors, ok.render()


def test_arrow_on_a_call_inside_a_repeat_is_checked() -> None:
    # it used to be dropped when the call is the whole repeat body
    text = "input 8x8x3\nblock B { conv K=4 F=1 }\nl: repeat 2 { B -> 8x8x5 }"
    got = errors(text)
    assert [(c, line, col) for c, line, col, _, _ in got] == [("E202", 3, 20), ("E202", 3, 20)]
    assert "l.0 outputs 8x8x4, but the spec says 8x8x5" in got[0][3]


# --- errors ---------------------------------------------------------------------------------------
def test_direct_recursion() -> None:
    ((code, line, col, msg, _),) = errors("input 8x8x3\nblock A { relu; A }\nA")
    assert (code, line, col) == ("E112", 2, 17)
    assert msg == "block A calls itself (A -> A)"


def test_indirect_recursion() -> None:
    got = errors("input 8x8x3\nblock A { B }\nblock B { relu; C }\nblock C { A }\nA")
    assert [c for c, *_ in got] == ["E112"]
    assert got[0][3] == "block A calls itself (A -> B -> C -> A)"


def test_recursion_is_found_in_an_unused_block() -> None:
    assert codes("input 8x8x3\nblock A { residual { A } }\nrelu") == ["E112"]


def test_undefined_parameter() -> None:
    ((code, line, col, msg, hint),) = errors("input 8x8x3\nblock B(K) { conv K=Kk F=1 }\nB K=3")
    assert (code, line, col, msg, hint) == ("E110", 2, 21, "undefined name 'Kk'", "did you mean 'K'?")


def test_undefined_name_at_top_level() -> None:
    ((code, *_, hint),) = errors("input 8x8x3\nconv K=X F=1")
    assert code == "E110" and hint is not None and "no block parameters" in hint


def test_undefined_word_suggests_same() -> None:
    ((code, *_, hint),) = errors("input 8x8x3\nconv K=4 F=3 P=sme")
    assert (code, hint) == ("E110", "did you mean 'same'?")


def test_duplicate_names() -> None:
    ((code, line, _, msg, _),) = errors("input 8x8x3\nc: relu\nc: relu")
    assert (code, line, msg) == ("E111", 3, "duplicate name 'c' (first used on line 2)")


def test_same_name_in_different_scopes_is_fine() -> None:
    got = names("input 8x8x3\nblock B { c: relu }\nc: B\nd: B")
    assert got == ["c.c", "d.c"]


def test_duplicate_block_and_parameter() -> None:
    assert codes("input 8x8x3\nblock A(K, K) { relu }\nblock A { relu }\nrelu") == ["E111", "E111"]


def test_unknown_kind_did_you_mean() -> None:
    ((code, *_, msg, hint),) = errors("input 8x8x3\nmaxpol F=2")
    assert (code, msg, hint) == ("E100", "unknown layer kind 'maxpol'", "did you mean 'maxpool'?")


def test_unknown_kind_suggests_blocks_too() -> None:
    ((code, *_, hint),) = errors("input 8x8x3\nblock Fire { relu }\nfire")
    assert (code, hint) == ("E100", "did you mean 'Fire'?")


def test_unknown_key_did_you_mean() -> None:
    ((code, *_, msg, hint),) = errors("input 8x8x3\nconv K=4 F=3 G=1 Pad=1")
    assert (code, msg) == ("E101", "unknown key 'Pad' for conv")
    assert hint == "did you mean 'P'?" or (hint is not None and "keys of conv" in hint)


def test_unknown_block_parameter() -> None:
    ((code, *_, msg, hint),) = errors("input 8x8x3\nblock B(K) { relu }\nB KK=3")
    assert (code, msg, hint) == ("E106", "block B has no parameter 'KK'", "did you mean 'K'?")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("conv K=3 F=1 K=4", "E102"),
        ("fc 10 20", "E103"),
        ("relu 3", "E103"),
        ("conv K=0 F=1", "E103"),
        ("conv K=3 F=0", "E103"),
        ("conv K=3 F=1 P=-1", "E103"),
        ("conv K=3 F=1 S=0x1", "E103"),
        ("conv K=2.5 F=1", "E103"),
        ("conv K=3 F=1 bias=3", "E103"),
        ("dropout 1.5", "E103"),
        ("batchnorm eps=0", "E103"),
        ("conv F=1", "E104"),
        ("fc", "E104"),
        ("repeat -1 { relu }", "E108"),
        ("repeat 2.5 { relu }", "E108"),
        ("conv K=3 F=1 S=4/2", "E120"),
        ("repeat 2//0 { relu }", "E120"),
        ("conv K=true+1 F=1", "E120"),
        ("shortcut { relu }", "E130"),
        ("branch { relu }", "E131"),
        ("concat { relu }", "E131"),
        ("concat { }", "E131"),
        ("repeat 1 { block Z { relu } }", "E132"),
        ("repeat 1 { input 3x3x3 }", "E133"),
        ("repeat 1 { expect params = 3 }", "E134"),
        ("expect paramz = 3", "E150"),
        ("expect nope.params = 3", "E151"),
        ("expect output < 3", "E152"),
        ("expect params = 3x3", "E152"),
    ],
)
def test_error_codes(text: str, code: str) -> None:
    assert codes(f"input 8x8x3\nrelu\n{text}\n") == [code]


@pytest.mark.parametrize("name", ["forward", "class", "eval", "__x"])
def test_names_pytorch_cannot_take_are_valid_with_a_warning(name: str) -> None:
    """The language allows them (and ONNX takes them); only PyTorch source cannot: W002, once per label."""
    result = compile_text(f"block B {{ {name}: relu }}\ninput 8x8x3\nB\nB\n{name}: relu\n", "n.arch")
    assert result.network is not None and not result.errors
    assert [d.code for d in result.warnings] == ["W002", "W002"]


def test_block_call_errors() -> None:
    text = "input 8x8x3\nblock A(K) { relu }\nA\nA 3 4\nA 3 K=3\n"
    assert codes(text) == ["E107", "E105", "E102"]


def test_block_arguments_may_be_positional() -> None:
    """`Fire 16 64` binds in the parameters' order, as `Fire SQ=16 E=64` does; keywords may follow."""
    blocks = "block F(SQ, E=SQ*4) { conv K=SQ F=1\nconv K=E F=1 }\ninput 8x8x3\n"
    by_keyword = archc.loads(blocks + "a: F SQ=2 E=5\nb: F SQ=3\n")
    by_position = archc.loads(blocks + "a: F 2 5\nb: F 3\n")
    mixed = archc.loads(blocks + "a: F 2 E=5\nb: F 3\n")
    expected = [(layer.name, layer.output, layer.params) for layer in by_keyword.layers]
    assert [(layer.name, layer.output, layer.params) for layer in by_position.layers] == expected
    assert [(layer.name, layer.output, layer.params) for layer in mixed.layers] == expected


def test_block_named_like_a_kind() -> None:
    assert codes("input 8x8x3\nblock conv { relu }\nrelu") == ["E114"]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("network A\nnetwork B\ninput 3\nfc 2", "E115"),
        ("input 3\ninput 3\nfc 2", "E116"),
        ("fc 2\ninput 3", "E117"),
        ("fc 2", "E118"),
        ("input 3x3x3x3x3\nrelu", "E119"),
        ("input 0x3x3\nrelu", "E119"),
        ("input 3x3x3", "E141"),
    ],
)
def test_top_level_errors(text: str, code: str) -> None:
    assert codes(text) == [code]


def test_huge_repeat_stops_at_the_layer_limit() -> None:
    # a billion copies must fail at the limit, once, before making any
    r = compile_text("input 8x8x3\nrepeat 1_000_000_000 { relu }\n", "t.arch", max_layers=50)
    (d,) = r.errors
    assert (d.code, d.span.line, d.span.column) == ("E140", 2, 1)  # type: ignore[union-attr]
    assert d.message == "the network has more than 50 layers: 1,000,000,000 copies of this repeat would make 1,000,000,000 layers"


def test_errors_in_every_copy_are_reported_once() -> None:
    assert codes("input 8x8x3\nrepeat 100 { conv K=3 F=1 foo=2 }\n") == ["E101"]


def test_independent_errors_are_all_reported() -> None:
    text = "input 8x8x3\nmaxpol F=2\nconv K=3 F=1 bad=1\nc: relu\nc: relu\nexpect paramz = 3\n"
    assert codes(text) == ["E100", "E101", "E111", "E150"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("upsample 2 mode=cubic", "mode takes nearest or linear, not cubic"),
        ("gelu approx=erf", "approx takes none or tanh, not erf"),
        ("upsample 2 mode=3", "mode takes nearest or linear, not 3"),
        ("conv K=nearest F=3", "K must be a positive integer, not nearest"),
        ("convtranspose K=4 F=3 O=-1", "O must be a non-negative integer"),
    ],
)
def test_key_words_and_offsets_are_checked(line: str, message: str) -> None:
    (err,) = errors(f"input 8x8x3\n{line}\n")
    assert err[0] == "E103" and message in err[3] and err[1] == 2


def test_a_key_word_may_come_from_a_block_parameter() -> None:
    r = compile_text("block Up(M) { upsample 2 mode=M }\ninput 4x4x2\nUp linear\nUp M=nearest -> 16x16x2\n", "t.arch")
    assert not r.errors, r.render()
    assert [n.attrs["mode"] for n in r.network.graph.nodes] == ["linear", "nearest"]  # type: ignore[union-attr]
