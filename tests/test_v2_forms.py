"""Contract v2's 1-D, 3-D and modern-block forms through every tool: check, summary (--json,
--explain, --rf), diff, fmt, graph, and `expect` on shapes of every layout.

The specs are written from LANGUAGE.md alone; the back-ends' agreement on them (onnxruntime vs
PyTorch) is tests/test_differential.py's, with EVERY_KIND_1D and EVERY_KIND_3D.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_onnx_gen import EVERY_KIND, EVERY_KIND_1D, EVERY_KIND_3D

import archc
from archc.api import compile_text
from archc.cli import main
from archc.tools.diff import diff
from archc.tools.fmt import format_text
from archc.tools.graph import to_dot

# LANGUAGE.md's v2 examples, verbatim, after an input they fit
SE_EXAMPLE = """\
input 14x14x64
multiply {                                   # elementwise product
  branch { identity }
  branch { globalavgpool; conv K=16 F=1; relu; conv K=64 F=1; sigmoid }
}
"""
ADD_EXAMPLE = "input 8x8x4\nadd { branch { conv K=4 F=1 } branch { identity } }        # elementwise sum\n"
SPECS = {"1d": EVERY_KIND_1D, "3d": EVERY_KIND_3D, "2d": EVERY_KIND, "se": SE_EXAMPLE, "add": ADD_EXAMPLE}


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_tool_reads_the_v2_forms(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / f"{name}.arch"
    spec.write_text(SPECS[name], encoding="utf-8")
    net = archc.load(spec)
    assert "ok " in _cli(["check", "--strict", str(spec)], capsys)
    table = _cli(["summary", str(spec)], capsys)
    assert f"Output:      {net.analysis.output_shape.text()}" in table
    doc = json.loads(_cli(["summary", "--json", "--rf", str(spec)], capsys))
    assert doc["params"] == net.params and doc["input"] == list(net.input_shape)
    rank = net.graph.input_shape.layout.spatial_rank
    for layer in doc["layers"]:
        assert len(layer["receptive_field"]["rf"]) == rank and len(layer["receptive_field"]["jump"]) == rank
    explained = _cli(["summary", "--explain", str(spec)], capsys)
    assert "Derivations" in explained
    assert _cli(["summary", "--rf", str(spec)], capsys)
    assert format_text(SPECS[name]) == format_text(format_text(SPECS[name]))  # fmt: idempotent, meaning kept
    assert diff(net, archc.load(spec)).identical
    dot = to_dot(net, fold=False)  # every layer its own box
    assert all(f'"{n.name}"' in dot for n in net.graph.nodes)
    assert _cli(["graph", "--all", str(spec)], capsys) == dot


def test_explain_lines_of_the_new_kinds() -> None:
    net = archc.loads("input 7x7x8\nup: convtranspose K=4 F=3 S=2 P=1 O=1\nupsample 2 mode=linear\ncrop 27x25\nls: layerscale\n")
    lines = {
        node.name: [
            line.text for line in archc.kinds.KINDS[node.kind].explain(net.analysis.facts[node.name].applied(node.attrs), net.analysis.facts[node.name].counts)
        ]
        for node in net.graph.nodes
    }
    assert lines["up"] == [
        "(7 - 1)*2 - 2*1 + (3-1) + 1 + 1 = 14",
        "(3*3*8)*4 = 288 weights + 4 biases",
        "7*7 inputs * (3*3*8)*4 = 14,112 MACs",
    ]
    assert lines["upsample1"][0] == "14*2 = 28, 14*2 = 28 (linear interpolation, corners not aligned)"
    assert lines["crop1"][0] == "centred: cuts H: 0 at the start, 1 at the end, W: 1 at the start, 2 at the end"
    assert lines["ls"] == ["4 per-channel scales, each 1e-06 at first"]


def test_receptive_fields_through_upsampling_shrink_the_jump() -> None:
    from archc.analysis.receptive import receptive_fields

    net = archc.loads("input 32x32x3\nconv K=4 F=3 S=2 P=1\nup: convtranspose K=4 F=2 S=2\nupsample 2\nconv K=4 F=3 P=1\n")
    rf = receptive_fields(net.analysis)
    assert rf["conv1"]["jump"] == [2, 2] and rf["up"]["jump"] == [1, 1] and rf["upsample1"]["jump"] == [0.5, 0.5]
    assert rf["up"]["rf"] == [4, 4]  # 3 + (2-1) steps of 2/2
    assert rf["conv2"]["rf"] == [5, 5]  # 4 + (3-1) steps of 0.5


def test_expect_reads_every_layout() -> None:
    text = (
        "input 100x8\nc: conv K=4 F=3 P=1 -> 100x4\nexpect c.output = 100x4\nexpect output = 100x4\n"
        "expect c.params = 100\n"
    )
    assert not compile_text(text, "t.arch").errors
    volume = "input 4x8x8x3\nc: conv K=2 F=3 P=1 -> 4x8x8x2\nexpect output = 4x8x8x2\n"
    assert not compile_text(volume, "t.arch").errors
    wrong = compile_text("input 4x8x8x3\nc: conv K=2 F=3 P=1 -> 8x8x2\n", "t.arch")
    (d,) = wrong.errors
    assert d.code == "E202" and d.message == "c outputs 4x8x8x2, but the spec says 8x8x2"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("input 100\nupsample 2\n", "upsample needs a spatial input (LxC, HxWxC or DxHxWxC), but its input is the flat vector 100"),
        ("input 100\nconvtranspose K=2 F=2\n", "convtranspose needs a spatial input"),
        ("input 10\ncrop 5\n", "crop needs a spatial input"),
    ],
)
def test_a_layer_given_a_layout_it_does_not_take_names_the_one_it_needs(text: str, words: str) -> None:
    (d,) = compile_text(text, "t.arch").errors
    assert d.code == "E200" and words in d.message and d.span is not None and d.span.line == 2
