"""Shape rules, parameter and MAC counts of every built-in kind (LANGUAGE.md "Built-in layers").

Each row: input, one layer, the output (HxWxC or N), params and MACs, worked by
hand from the formulas in LANGUAGE.md. `test_shape_rules_torch.py` checks the
same rules against torch.nn; this file checks them against the contract.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASIC_BLOCK, SPECS, all_specs

import archc
from archc.api import compile_text

Row = tuple[str, str, str, int, int]  # input, layer, output, params, macs
TABLES = ("embedding", "posembed", "clstoken")  # learned tables: parameters, no MACs

ROWS: list[Row] = [
    # conv: floor((H+2P-D(F-1)-1)/S)+1; F_h*F_w*(C/G)*K weights + K biases; MACs = out * F_h*F_w*C/G
    ("227x227x3", "conv K=96 F=11 S=4", "55x55x96", 11 * 11 * 3 * 96 + 96, 55 * 55 * 96 * 363),
    ("227x227x3", "conv K=96 F=11 S=4 P=0", "55x55x96", 34_944, 105_415_200),
    ("32x32x3", "conv K=16 F=3 P=1", "32x32x16", 448, 32 * 32 * 16 * 27),
    ("32x32x3", "conv K=16 F=3", "30x30x16", 448, 30 * 30 * 16 * 27),
    ("32x32x3", "conv K=16 F=3 P=same", "32x32x16", 448, 32 * 32 * 16 * 27),
    ("32x32x3", "conv K=16 F=3 S=2 P=same", "16x16x16", 448, 16 * 16 * 16 * 27),
    ("31x31x3", "conv K=16 F=4 S=2 P=same", "16x16x16", 4 * 4 * 3 * 16 + 16, 16 * 16 * 16 * 48),
    ("10x10x4", "conv K=8 F=3x5 P=1x2", "10x10x8", 3 * 5 * 4 * 8 + 8, 10 * 10 * 8 * 60),
    ("5x5x1", "conv K=2 F=1 S=2x1", "3x5x2", 4, 15 * 2),
    ("16x16x2", "conv K=4 F=3 D=2", "12x12x4", 76, 12 * 12 * 4 * 18),
    ("16x16x2", "conv K=4 F=3 D=2x1", "12x14x4", 76, 12 * 14 * 4 * 18),
    ("16x16x2", "conv K=4 F=3 D=2 P=same", "16x16x4", 76, 16 * 16 * 4 * 18),
    ("8x8x8", "conv K=8 F=3 P=1 G=4", "8x8x8", 3 * 3 * 2 * 8 + 8, 64 * 8 * 18),
    ("8x8x16", "conv K=16 F=3 P=1 G=16", "8x8x16", 9 * 16 + 16, 64 * 16 * 9),
    ("8x8x4", "conv K=8 F=1 G=2", "8x8x8", 2 * 8 + 8, 64 * 8 * 2),
    ("4x4x3", "conv K=8 F=1 bias=false", "4x4x8", 24, 16 * 8 * 3),
    ("7x7x3", "conv K=2 F=7", "1x1x2", 7 * 7 * 3 * 2 + 2, 2 * 147),
    # pooling: as conv with D=1, K=C, S=F by default; ceil rounds up, but the last
    # window must start inside the input or its left padding (PyTorch)
    ("55x55x96", "maxpool F=3 S=2", "27x27x96", 0, 0),
    ("7x7x1", "maxpool F=2", "3x3x1", 0, 0),
    ("7x7x1", "maxpool F=2 ceil=true", "4x4x1", 0, 0),
    ("56x56x64", "maxpool F=3 S=2 ceil=true", "28x28x64", 0, 0),
    ("112x112x64", "maxpool F=3 S=2 P=1", "56x56x64", 0, 0),
    ("5x5x1", "maxpool F=2 S=2 P=1 ceil=true", "3x3x1", 0, 0),  # 4th window would start in padding
    ("6x6x1", "avgpool F=3 S=2 P=1 ceil=true", "4x4x1", 0, 0),
    ("6x6x1", "avgpool F=3 S=2 P=1", "3x3x1", 0, 0),
    ("8x8x5", "avgpool F=2", "4x4x5", 0, 0),
    ("8x8x5", "avgpool F=3 S=1 P=1", "8x8x5", 0, 0),
    ("9x8x5", "maxpool F=3x2", "3x4x5", 0, 0),
    ("13x13x1", "maxpool F=3 S=2 P=same", "7x7x1", 0, 0),
    # adaptive and global pooling
    ("13x13x256", "adaptiveavgpool 6", "6x6x256", 0, 0),
    ("13x13x256", "adaptiveavgpool 2x3", "2x3x256", 0, 0),
    ("13x13x256", "adaptiveavgpool size=1", "1x1x256", 0, 0),
    ("7x7x512", "globalavgpool", "1x1x512", 0, 0),
    # fc: flattens a spatial input; in*N weights + N biases; MACs in*N
    ("2x2x256", "fc 10", "10", 1024 * 10 + 10, 1024 * 10),
    ("9216", "fc 4096", "4096", 9216 * 4096 + 4096, 9216 * 4096),
    ("100", "fc N=10", "10", 1010, 1000),
    ("100", "fc 10 bias=false", "10", 1000, 1000),
    ("1x1x512", "fc 1000", "1000", 513_000, 512_000),
    # reshapes, normalisation, activations: no MACs
    ("2x3x4", "flatten", "24", 0, 0),
    ("24", "flatten", "24", 0, 0),
    ("8x8x16", "batchnorm", "8x8x16", 32, 0),
    ("8x8x16", "batchnorm eps=1e-3", "8x8x16", 32, 0),
    ("64", "batchnorm", "64", 128, 0),
    # layernorm: C scales + C shifts over the channels at every position
    ("8x8x16", "layernorm", "8x8x16", 32, 0),
    ("8x8x16", "layernorm eps=1e-6 bias=false", "8x8x16", 16, 0),
    ("64", "layernorm", "64", 128, 0),
    ("8x8x16", "lrn size=5 alpha=1e-4 beta=0.75 k=2", "8x8x16", 0, 0),
    ("8x8x16", "dropout", "8x8x16", 0, 0),
    ("10", "dropout 0.3", "10", 0, 0),
    ("10", "dropout p=0.3", "10", 0, 0),
    *[("8x8x16", k, "8x8x16", 0, 0) for k in ("relu", "relu6", "sigmoid", "tanh", "gelu", "identity")],
    ("10", "softmax", "10", 0, 0),
    ("8x8x16", "leakyrelu slope=0.2", "8x8x16", 0, 0),
    # sequences (contract v2): embedding V*D; posembed T*C; clstoken C; rmsnorm C; attention
    # 2*C*C + 2*C*E weights (E = C*kv/heads) + 2*C + 2*E biases, L*(2*C*C + 2*C*E) + 2*L*L*C MACs
    ("16 tokens", "embedding V=100 D=8", "16x8", 800, 0),
    ("16x32", "posembed", "16x32", 16 * 32, 0),
    ("16x32", "posembed T=20", "16x32", 20 * 32, 0),
    ("16x32", "clstoken", "17x32", 32, 0),
    ("16x32", "rmsnorm", "16x32", 32, 0),
    ("64", "rmsnorm eps=1e-5", "64", 64, 0),
    ("16x32", "attention 4", "16x32", 4 * 32 * 32 + 4 * 32, 16 * 4 * 32 * 32 + 2 * 16 * 16 * 32),
    ("16x32", "attention heads=4 causal=true", "16x32", 4 * 32 * 32 + 4 * 32, 16 * 4 * 32 * 32 + 2 * 16 * 16 * 32),
    ("16x32", "attention 4 kv=2 bias=false", "16x32", 2 * 32 * 32 + 2 * 32 * 16, 16 * 3072 + 2 * 16 * 16 * 32),
    ("16x32", "attention 8 kv=1 rope=true", "16x32", 2304 + 2 * 32 + 2 * 4, 16 * 2304 + 2 * 16 * 16 * 32),
    ("4x5x8", "tokens", "20x8", 0, 0),
    ("20x8", "select 0", "8", 0, 0),
    ("20x8", "select -20", "8", 0, 0),
    ("16x32", "fc 64", "16x64", 32 * 64 + 64, 16 * 32 * 64),  # on every position
    ("16x32", "flatten", "512", 0, 0),
    ("16x32", "gelu", "16x32", 0, 0),
    ("16x32", "softmax", "16x32", 0, 0),
]


# contract v2: the same rules on 1-D signals and sequences (LxC) and on volumes (DxHxWxC)
ROWS += [
    ("16000x1", "conv K=8 F=80 S=4", "3981x8", 80 * 8 + 8, 3981 * 8 * 80),
    ("32000x1", "conv K=128 F=80 S=4 P=same", "8000x128", 80 * 128 + 128, 8000 * 128 * 80),
    ("100x6", "conv K=4 F=3 P=1 D=2 G=2 bias=false", "98x4", 3 * 3 * 4, 98 * 4 * 9),
    ("100x4", "maxpool F=4", "25x4", 0, 0),
    ("101x4", "avgpool F=3 S=2 P=1 ceil=true", "51x4", 0, 0),
    ("100x4", "adaptiveavgpool 7", "7x4", 0, 0),
    ("31x512", "globalavgpool", "1x512", 0, 0),
    ("100x8", "batchnorm", "100x8", 16, 0),
    ("100x8", "fc 3", "100x3", 8 * 3 + 3, 100 * 8 * 3),  # per position: LxC -> LxN
    ("100x8", "fc 3 bias=false", "100x3", 24, 2400),
    ("100x8", "flatten", "800", 0, 0),
    ("16x112x112x3", "conv K=64 F=3x7x7 S=1x2x2 P=1x3x3 bias=false", "16x56x56x64", 3 * 7 * 7 * 3 * 64, 16 * 56 * 56 * 64 * 441),
    ("8x28x28x64", "conv K=128 F=3 S=2 P=1", "4x14x14x128", 27 * 64 * 128 + 128, 4 * 14 * 14 * 128 * 27 * 64),
    ("8x28x28x64", "conv K=128 F=1 S=2 G=4", "4x14x14x128", 16 * 128 + 128, 4 * 14 * 14 * 128 * 16),
    ("5x9x9x2", "maxpool F=3 S=2 P=1", "3x5x5x2", 0, 0),
    ("5x9x9x2", "avgpool F=1x3x3 S=1x2x2", "5x4x4x2", 0, 0),
    ("5x9x9x2", "adaptiveavgpool 2x3x3", "2x3x3x2", 0, 0),
    ("2x7x7x512", "globalavgpool", "1x1x1x512", 0, 0),
    ("2x7x7x512", "batchnorm", "2x7x7x512", 1024, 0),
    ("2x3x4x5", "fc 10", "10", 120 * 10 + 10, 1200),  # a volume flattens first
    ("2x3x4x5", "flatten", "120", 0, 0),
    ("2x3x4x5", "layernorm", "2x3x4x5", 10, 0),
    ("7x5", "layernorm", "7x5", 10, 0),
    *[(inp, k, inp, 0, 0) for inp in ("10x3", "2x3x3x3") for k in ("relu", "sigmoid", "dropout", "softmax", "lrn")],
]


# contract v2's new kinds: (n-1)*S - 2P + D(F-1) + O + 1; F*C*(K/G) weights; MACs = input positions * weights
ROWS += [
    ("28x28x1024", "convtranspose K=512 F=2 S=2", "56x56x512", 4 * 1024 * 512 + 512, 28 * 28 * 4 * 1024 * 512),
    ("7x7x8", "convtranspose K=4 F=3 S=2 P=1 O=1", "14x14x4", 9 * 8 * 4 + 4, 49 * 9 * 8 * 4),
    ("7x7x8", "convtranspose K=4 F=3 S=2 P=1", "13x13x4", 9 * 8 * 4 + 4, 49 * 9 * 8 * 4),
    ("5x5x6", "convtranspose K=4 F=3 D=2 G=2 bias=false", "9x9x4", 9 * 6 * 2, 25 * 9 * 6 * 2),
    ("5x6x4", "convtranspose K=2 F=2x3 S=1x2 P=0x1", "6x11x2", 6 * 4 * 2 + 2, 30 * 6 * 4 * 2),
    ("10x3", "convtranspose K=3 F=4 S=3 O=2", "33x3", 4 * 3 * 3 + 3, 10 * 36),
    ("2x7x7x4", "convtranspose K=4 F=3 S=2 P=1 O=1", "4x14x14x4", 27 * 16 + 4, 98 * 27 * 16),
    ("7x7x8", "upsample 2", "14x14x8", 0, 0),
    ("7x7x8", "upsample 2 mode=linear", "14x14x8", 0, 0),
    ("7x7x8", "upsample 3x1", "21x7x8", 0, 0),
    ("100x2", "upsample 4 mode=linear", "400x2", 0, 0),
    ("2x7x7x8", "upsample 1x2x2", "2x14x14x8", 0, 0),
    ("64x64x512", "crop 56", "56x56x512", 0, 0),
    ("9x8x2", "crop 4x5", "4x5x2", 0, 0),
    ("100x2", "crop 99", "99x2", 0, 0),
    ("4x9x9x2", "crop 2x5x5", "2x5x5x2", 0, 0),
    ("8x8x16", "layerscale", "8x8x16", 16, 0),
    ("8x8x16", "layerscale init=0.1", "8x8x16", 16, 0),
    ("16", "layerscale", "16", 16, 0),
    *[("8x8x16", k, "8x8x16", 0, 0) for k in ("droppath", "droppath 0.2", "silu", "hardswish", "hardsigmoid", "gelu approx=tanh", "gelu approx=none")],
]


def single(inp: str, layer: str) -> archc.Layer:
    n = archc.loads(f"input {inp}\n{layer}\n", "t.arch")
    (only,) = n.layers
    return only


@pytest.mark.parametrize(("inp", "layer", "out", "params", "macs"), ROWS)
def test_shape_params_macs(inp: str, layer: str, out: str, params: int, macs: int) -> None:
    got = single(inp, layer)
    assert "x".join(map(str, got.output)) == out
    assert (got.params, got.macs) == (params, macs)
    assert got.params == got.weights + got.biases


@pytest.mark.parametrize(("inp", "layer", "out", "params", "macs"), ROWS)
def test_arrow_and_expect_agree_with_the_table(inp: str, layer: str, out: str, params: int, macs: int) -> None:
    # the same facts, asserted in the language itself
    text = f"input {inp}\nl: {layer} -> {out}\nexpect l.params = {params}\nexpect macs = {macs}\nexpect l.output = {out}\n"
    r = compile_text(text, "t.arch")
    assert not r.errors, r.render()


def test_bias_false_counts_no_biases() -> None:
    a, b = single("8x8x3", "conv K=4 F=3"), single("8x8x3", "conv K=4 F=3 bias=false")
    assert (a.weights, a.biases) == (108, 4)
    assert (b.weights, b.biases) == (108, 0)
    assert a.macs == b.macs  # biases are never counted as MACs


# --- merges ------------------------------------------------------------------------------------
def test_concat_adds_channels() -> None:
    n = archc.loads(
        "input 8x8x4\nconcat {\n branch { conv K=3 F=1 }\n branch { conv K=5 F=3 P=1 }\n branch { maxpool F=3 S=1 P=1 }\n}",
        "t.arch",
    )
    assert n.output_shape == (8, 8, 3 + 5 + 4)
    assert n.layers[-1].kind == "concat" and n.layers[-1].params == 0


def test_concat_of_flat_vectors() -> None:
    n = archc.loads("input 10\nconcat { branch { fc 3 } branch { fc 4 } }", "t.arch")
    assert n.output_shape == (7,)


def test_add_and_multiply_broadcast_per_channel_branches() -> None:
    """Equal shapes, or a branch at 1x1xC or flat C scaling every position (squeeze-and-excitation)."""
    n = archc.loads(
        "input 8x8x16\nse: multiply {\n branch { identity }\n"
        " branch { globalavgpool; conv K=4 F=1; relu; conv K=16 F=1; sigmoid }\n} -> 8x8x16\n"
        "s: add { branch { relu } branch { globalavgpool; flatten } } -> 8x8x16\n"
        "one: add { branch { globalavgpool } branch { globalavgpool; flatten } } -> 1x1x16\n"
        "flat: multiply { branch { flatten } branch { flatten } }\n",
        "t.arch",
    )
    kinds = {layer.name: (layer.kind, layer.output, layer.params, layer.macs) for layer in n.layers}
    assert kinds["se"] == ("multiply", (8, 8, 16), 0, 0) and kinds["s"] == ("add", (8, 8, 16), 0, 0)
    assert kinds["one"][1] == (1, 1, 16) and kinds["flat"][1] == (16,)
    assert n.params == (16 * 4 + 4) + (4 * 16 + 16)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("branch { conv K=8 F=1 } branch { identity }", "branch 1 ends at 8x8x8 but branch 2 at 8x8x4"),
        ("branch { identity } branch { globalavgpool; conv K=8 F=1 }", "branch 1 ends at 8x8x4 but branch 2 at 1x1x8"),
        ("branch { identity } branch { maxpool F=2 }", "branch 1 ends at 8x8x4 but branch 2 at 4x4x4"),
        ("branch { identity } branch { fc 5 }", "branch 1 ends at 8x8x4 but branch 2 at 5"),
    ],
)
def test_elementwise_merge_shape_errors(body: str, words: str) -> None:
    for op in ("add", "multiply"):
        r = compile_text(f"input 8x8x4\nm: {op} {{ {body} }}\n", "t.arch")
        (d,) = r.errors
        assert d.code == "E200" and words in d.message and d.span is not None and d.span.line == 2, r.render()
        assert d.hint is not None and "1x1x" in d.hint


def test_residual_keeps_the_shape() -> None:
    n = archc.loads("input 8x8x4\nresidual { conv K=4 F=3 P=1; relu }", "t.arch")
    assert n.output_shape == (8, 8, 4) and n.layers[-1].kind == "add" and n.layers[-1].macs == 0


def test_residual_with_projection() -> None:
    n = archc.loads("input 8x8x4\nresidual { conv K=8 F=3 S=2 P=1 } shortcut { conv K=8 F=1 S=2 }", "t.arch")
    assert n.output_shape == (4, 4, 8)
    assert n.params == (3 * 3 * 4 * 8 + 8) + (4 * 8 + 8)


# --- shape errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("inp", "layer", "words"),
    [
        ("8x8x3", "conv K=8 F=9", "output would be 0x0"),
        ("8x8x3", "conv K=8 F=5 D=2", "output would be 0x0"),
        ("2x2x3", "maxpool F=3", "output would be 0x0"),
        ("8x8x6", "conv K=8 F=3 G=4", "must divide both the input channels (6) and K (8)"),
        ("8x8x8", "conv K=6 F=3 G=4", "must divide both"),
        ("8x8x3", "maxpool F=3 P=2", "more than half the window"),
        ("100", "conv K=3 F=3", "needs a spatial input"),
        ("100", "maxpool F=2", "needs a spatial input"),
        ("100", "globalavgpool", "needs a spatial input (LxC, HxWxC or DxHxWxC), but its input is the flat vector 100"),
        ("100x4", "conv K=3 F=3x3", "conv F=3x3 gives 2 sizes, but the sequence 100x4 has 1 spatial dimension (L)"),
        ("4x8x8x3", "maxpool F=2x2", "maxpool F=2x2 gives 2 sizes, but the volume 4x8x8x3 has 3 spatial dimensions"),
        ("8x8x3", "adaptiveavgpool 2x2x2", "adaptiveavgpool size=2x2x2 gives 3 sizes, but the image 8x8x3"),
        ("2x8x8x3", "conv K=8 F=3", "output would be 0x6x6"),
        ("7x7x8", "convtranspose K=4 F=3 S=2 O=2", "output padding O=2 must be smaller than the stride S=2 or the dilation D=1"),
        ("2x2x8", "convtranspose K=4 F=1 P=1", "convtranspose output would be 0x0"),
        ("8x8x6", "convtranspose K=4 F=3 G=4", "must divide both"),
        ("8x8x3", "crop 9x8", "crop to 9x8 needs an input at least that large, but it is 8x8x3"),
        ("8x8x3", "upsample 2x2x2", "upsample factor=2x2x2 gives 3 sizes"),
        ("100", "upsample 2", "upsample needs a spatial input"),
        ("100", "crop 2", "crop needs a spatial input"),
    ],
)
def test_shape_errors(inp: str, layer: str, words: str) -> None:
    r = compile_text(f"input {inp}\n{layer}\n", "t.arch")
    (d,) = r.errors
    assert d.code == "E200" and words in d.message
    assert d.span is not None and d.span.line == 2


def test_residual_mismatch() -> None:
    r = compile_text("input 8x8x3\nresidual { conv K=8 F=3 S=2 P=1 }\n", "t.arch")
    (d,) = r.errors
    assert d.message == "residual1: residual body outputs 4x4x8 but the shortcut gives 8x8x3"
    assert d.hint is not None and "shortcut { conv K=8 F=1 S=2 }" in d.hint


def test_concat_hw_mismatch() -> None:
    r = compile_text("input 8x8x3\nconcat { branch { conv K=4 F=1 } branch { conv K=4 F=3 } }\n", "t.arch")
    (d,) = r.errors
    assert "branch 1 ends at 8x8x4, branch 2 at 6x6x4" in d.message


# --- the lecture's AlexNet ---------------------------------------------------------------------
ALEXNET = SPECS / "alexnet_lecture.arch"


def test_alexnet_lecture_table() -> None:
    n = archc.load(ALEXNET)
    sides = [layer.output[0] for layer in n.layers if layer.kind in ("conv", "maxpool")]
    assert sides == [55, 27, 23, 11, 9, 7, 5, 2]
    weights = {layer.name: layer.weights for layer in n.layers if layer.weights}
    assert weights == {
        "conv1": 34_848,
        "conv2": 614_400,
        "conv3": 884_736,
        "conv4": 1_327_104,
        "conv5": 884_736,
        "fc1": 4_194_304,
        "fc2": 16_777_216,
        "fc3": 4_096_000,
    }
    assert (n.weights, n.biases, n.params) == (28_813_344, 10_568, 28_823_912)
    assert n.input_shape == (227, 227, 3) and n.output_shape == (1000,)
    assert n.macs == sum(layer.macs for layer in n.layers) == 614_310_432


# --- totals are the sums of the rows (torchinfo's fixture check) ----------------------------------
SPEC_IDS = [str(p.relative_to(SPECS)) for p in all_specs()]


@pytest.mark.parametrize("spec", all_specs(), ids=SPEC_IDS)
def test_totals_equal_the_sum_of_layers(spec: Path) -> None:
    r = archc.compile_file(spec)
    if r.network is None:
        pytest.fail(r.render())
    n = r.network
    layers = n.layers
    assert n.params == sum(x.params for x in layers)
    assert n.weights == sum(x.weights for x in layers)
    assert n.biases == sum(x.biases for x in layers)
    assert n.macs == sum(x.macs for x in layers)
    assert n.output_shape == layers[-1].output or n.graph.output != layers[-1].name
    for x in layers:
        if x.kind not in ("conv", "convtranspose", "fc", "attention"):
            assert x.macs == 0, x
        if x.kind not in ("conv", "convtranspose", "fc", "batchnorm", "layernorm", "layerscale", "rmsnorm", "attention", *TABLES):
            assert x.params == 0, x


BLOCKS = "input 16x16x8\n" + BASIC_BLOCK + """layer1: repeat 2 { Basic K=8 }
layer2: Basic K=16 S=2
fc 10
"""


def test_block_instance_totals() -> None:
    n = archc.loads(BLOCKS, "t.arch")
    a = n.analysis
    for scope in n.graph.scopes:
        under = [x for x in n.layers if x.name.startswith(scope.path + ".")]
        t = a.totals_under(scope.path)
        assert (t.params, t.weights, t.biases, t.macs) == (
            sum(x.params for x in under),
            sum(x.weights for x in under),
            sum(x.biases for x in under),
            sum(x.macs for x in under),
        ), scope.path
    # by hand: a Basic block on 8 channels without projection-worthy shape changes
    conv = 3 * 3 * 8 * 8
    per_copy = 2 * conv + 8 * 8 + 3 * (2 * 8)  # two 3x3, the 1x1 shortcut, three batchnorms
    assert a.totals_under("layer1.0").params == per_copy
    assert a.totals_under("layer1").params == 2 * per_copy
    layer2 = (3 * 3 * 8 * 16) + (3 * 3 * 16 * 16) + (8 * 16) + 3 * (2 * 16)
    assert a.totals_under("layer2").params == layer2
    assert n.params == 2 * per_copy + layer2 + (8 * 8 * 16 * 10 + 10)
    assert n.output_shape == (10,)
    r = compile_text(
        BLOCKS + f"expect layer1.params = {2 * per_copy}\nexpect layer2.params = {layer2}\n"
        "expect layer2.output = 8x8x16\nexpect layer1.1.output = 16x16x8\n",
        "t.arch",
    )
    assert not r.errors, r.render()


# --- expect: exact, rounded to the digits written, tolerance, budgets -----------------------------
# one fc layer with 28,823,911 weights and 1 bias: params = 28,823,912 (AlexNet's total)
PARAMS_28M = "input 28_823_911\nfc 1\n"


@pytest.mark.parametrize(
    ("expect", "holds"),
    [
        ("params = 28_823_912", True),
        ("params = 28_823_913", False),
        ("params = 28.82M", True),  # 28.823912M rounds to 28.82M
        ("params = 28.8M", True),
        ("params = 29M", True),
        ("params = 28.824M", True),
        ("params = 28.823M", False),
        ("params = 28.83M", False),
        ("params = 0.03G", True),
        ("params = 28823.912K", True),
        ("params = 28_823.91K", True),
        ("params = 27.55M ± 5%", True),
        ("params = 27.55M +- 4%", False),
        ("params = 28.8M ± 30_000", True),
        ("params = 28.8M ± 20_000", False),
        ("params <= 30M", True),
        ("params <= 28_823_912", True),
        ("params < 28_823_912", False),
        ("params > 28_823_911", True),
        ("params >= 28_823_913", False),
        ("weights = 28_823_911", True),
        ("biases = 1", True),
        ("macs = 28_823_911", True),
        ("macs < 1G", True),
        ("fc1.params = 28.82M", True),
        ("output = 1", True),
        ("fc1.output = 2", False),
    ],
)
def test_expect_semantics(expect: str, holds: bool) -> None:
    r = compile_text(f"{PARAMS_28M}expect {expect}\n", "t.arch")
    assert (not r.errors) == holds, r.render()
    if not holds:
        (d,) = r.errors
        assert d.code == "E300" and d.span is not None and d.span.line == 3
        assert "failed" in d.message


def test_failed_expect_names_expected_and_actual() -> None:
    r = compile_text(f"{PARAMS_28M}expect params = 28.83M\n", "t.arch")
    (d,) = r.errors
    assert d.message == (
        "expect params = 28.83M failed: actual params 28,823,912 (28.82M); "
        "rounded to the digits written, 28,823,912 is 28.82M"
    )
