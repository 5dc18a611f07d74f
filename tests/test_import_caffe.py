"""`archc import` of Caffe prototxts: each layer type, the model zoo's networks, and the errors.

The zoo's totals are checked twice: the parameters against the published
counts, and the parameters and MACs against a count made here, independently
of archc, from the prototxt itself (a small reader of the text format and
Caffe's own shape rules, ceil-rounded pooling included).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from caffe_zoo import GENERATED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc.importers.caffe import import_text
from archc.importers.common import ImportFailure, finish

HERE = Path(__file__).resolve().parent / "caffe"


def imported(text: str, name: str = "net.prototxt") -> str:
    return finish(import_text(text, name))


def body(spec: str, arrows: bool = False) -> list[str]:
    """The spec's statements: no header comment, no expects, no blank lines (and no `-> shape`)."""
    lines = [ln for ln in spec.splitlines() if ln and not ln.startswith(("#", "expect"))]
    return lines if arrows else [re.sub(r"\s*-> [0-9x]+", "", ln) for ln in lines]


# --- an independent count: a reader of the text format and Caffe's shape rules ------------------
Msg = dict[str, list[object]]
_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}:<>\[\],;]|[^\s{}:<>\[\],;#]+')


def read(text: str) -> Msg:
    tokens = [t for t in _TOKEN.findall(text) if t.strip() and not t.startswith("#")]
    pos = 0

    def message(end: str | None) -> Msg:
        nonlocal pos
        out: Msg = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            if tokens[pos] in "{<":
                close = "}" if tokens[pos] == "{" else ">"
                pos += 1
                value: object = message(close)
                pos += 1
            else:
                value = tokens[pos].strip("\"'")
                pos += 1
            out.setdefault(key, []).append(value)
        return out

    return message(None)


def _get(msg: Msg, key: str, default: object = None) -> object:
    return msg.get(key, [default])[-1]


def _sub(msg: Msg, key: str) -> Msg:
    value = _get(msg, key, {})
    assert isinstance(value, dict)
    return value


def count(text: str) -> tuple[int, int]:
    """(params, MACs) of a deploy prototxt, by Caffe's rules: what each layer learns, and the
    multiply-accumulates of convolutions and inner products at batch 1."""
    net = read(text)
    shapes: dict[str, tuple[int, ...]] = {}
    if "input" in net:
        dims = [int(d) for d in net["input_dim"]] if "input_dim" in net else [int(d) for d in _sub(net, "input_shape")["dim"]]
        shapes[str(net["input"][0])] = tuple(dims[1:])
    params = macs = 0
    for layer in net.get("layer", []) + net.get("layers", []):
        assert isinstance(layer, dict)
        kind = str(_get(layer, "type"))
        bottoms = [shapes[str(b)] for b in layer.get("bottom", [])]
        top = str(_get(layer, "top"))
        if kind == "Input":
            shapes[top] = tuple(int(d) for d in _sub(_sub(layer, "input_param"), "shape")["dim"][1:])
        elif kind in ("Convolution", "CONVOLUTION"):
            p = _sub(layer, "convolution_param")
            c, h, w = bottoms[0]
            k, f, s = int(_get(p, "num_output")), int(_get(p, "kernel_size")), int(_get(p, "stride", 1))
            pad, g = int(_get(p, "pad", 0)), int(_get(p, "group", 1))
            oh, ow = (h + 2 * pad - f) // s + 1, (w + 2 * pad - f) // s + 1
            weights = k * (c // g) * f * f
            params += weights + (k if _get(p, "bias_term", "true") == "true" else 0)
            macs += weights * oh * ow
            shapes[top] = (k, oh, ow)
        elif kind in ("Pooling", "POOLING"):
            p = _sub(layer, "pooling_param")
            c, h, w = bottoms[0]
            if _get(p, "global_pooling") == "true":
                shapes[top] = (c, 1, 1)
                continue
            f, s, pad = int(_get(p, "kernel_size")), int(_get(p, "stride", 1)), int(_get(p, "pad", 0))
            out = [math.ceil((n + 2 * pad - f) / s) + 1 for n in (h, w)]
            out = [o - 1 if pad and (o - 1) * s >= n + pad else o for o, n in zip(out, (h, w), strict=True)]
            shapes[top] = (c, *out)
        elif kind in ("InnerProduct", "INNER_PRODUCT"):
            n = int(_get(_sub(layer, "inner_product_param"), "num_output"))
            inputs = math.prod(bottoms[0])
            params += inputs * n + n
            macs += inputs * n
            shapes[top] = (n,)
        elif kind == "Concat":
            shapes[top] = (sum(b[0] for b in bottoms), *bottoms[0][1:])
        elif kind == "Scale":  # after a BatchNorm: the learned scale and shift
            params += 2 * bottoms[0][0]
            shapes[top] = bottoms[0]
        else:  # ReLU, LRN, Dropout, Softmax, BatchNorm (statistics only), Eltwise
            shapes[top] = bottoms[0]
    return params, macs


# --- the model zoo ----------------------------------------------------------------------------
def _file(name: str) -> Callable[[], str]:
    return lambda: (HERE / f"{name}.prototxt").read_text(encoding="utf-8")


ZOO: dict[str, tuple[Callable[[], str], int]] = {
    # BVLC AlexNet and CaffeNet: the same layers in another order (pool before norm)
    "alexnet": (_file("alexnet"), 60_965_224),
    "caffenet": (_file("caffenet"), 60_965_224),
    "lenet": (_file("lenet"), 431_080),
    "googlenet": (GENERATED["googlenet"], 6_998_552),
    "squeezenet_v1.0": (GENERATED["squeezenet_v1.0"], 1_248_424),
    "squeezenet_v1.1": (GENERATED["squeezenet_v1.1"], 1_235_496),
    "vgg16": (GENERATED["vgg16"], 138_357_544),
    # MSRA's ResNets: torchvision's 25,557,032 / 44,549,160 / 60,192,808 and conv1's 64 biases
    # (conv1 is the one convolution of the Caffe models with a bias)
    "resnet50": (GENERATED["resnet50"], 25_557_032 + 64),
    "resnet101": (GENERATED["resnet101"], 44_549_160 + 64),
    "resnet152": (GENERATED["resnet152"], 60_192_808 + 64),
}


@pytest.mark.parametrize("name", ZOO)
def test_the_zoo_imports_with_the_published_parameters_and_the_prototxts_macs(name: str) -> None:
    make, published = ZOO[name]
    text = make()
    spec = imported(text, f"{name}.prototxt")
    net = archc.loads(spec)
    params, macs = count(text)
    assert params == published  # the independent count agrees with the published figure
    assert (net.params, net.macs) == (params, macs)
    assert f"expect params = {published:_}" in spec and f"expect macs = {macs:_}" in spec
    assert not net.warnings


def test_published_macs_of_the_papers() -> None:
    """The MACs the papers give, in their rounding: ResNet 3.8/7.6/11.3 GFLOPs (multiply-adds)."""
    for name, figure in (("resnet50", 3.8e9), ("resnet101", 7.6e9), ("resnet152", 11.3e9)):
        assert round(archc.loads(imported(ZOO[name][0]())).macs / 1e8) * 1e8 == pytest.approx(figure, abs=1e8)
    assert archc.loads(imported(ZOO["alexnet"][0]())).macs == 724_406_816  # 0.72 GMACs, Caffe's with groups


def test_the_shapes_of_the_layers_that_make_them_are_asserted() -> None:
    lines = body(imported(_file("alexnet")()), arrows=True)
    assert lines[2:6] == [
        "conv1: conv K=96 F=11 S=4        -> 55x55x96",
        "relu1: relu",
        "norm1: lrn size=5 alpha=0.0001 beta=0.75 k=1",
        "pool1: maxpool F=3 S=2 ceil=true -> 27x27x96",
    ]
    assert "fc6: fc 4096                     -> 4096" in lines
    squeezenet = body(imported(GENERATED["squeezenet_v1.0"]()), arrows=True)
    assert "fire2: Fire K1=16 K2=64          -> 55x55x128" in squeezenet  # a call asserts its scope's shape
    resnet = body(imported(GENERATED["resnet50"]()), arrows=True)
    assert "} -> 56x56x256" in resnet  # res2a's sum


def test_googlenet_becomes_one_inception_block_of_four_branches_called_nine_times() -> None:
    spec = imported(GENERATED["googlenet"]())
    lines = body(spec)
    assert lines[2] == "block Inception(K1, K2, K3, K4, K5, K6) {" and spec.count("block ") == 1
    start = lines.index("  output: concat {")
    convs = [ln.split(":")[0].strip() for ln in lines[start : start + 22] if ": conv " in ln]
    # the branches in the order of the Concat's bottoms: the order of the channels
    assert convs == ["_1x1", "_3x3_reduce", "_3x3", "_5x5_reduce", "_5x5", "pool_proj"]
    assert "inception_3a: Inception K1=64 K2=96 K3=128 K4=16 K5=32 K6=32" in lines
    assert sum(ln.startswith("inception_") for ln in lines) == 9
    net = archc.loads(spec)
    out = {layer.name: layer.output for layer in net.layers}
    assert out["inception_3a.pool"] == (28, 28, 192) and out["inception_5b.pool_proj"] == (7, 7, 128)
    # a scope used once stays flat, its layers named as Caffe names them
    assert "conv1_7x7_s2: conv K=64 F=7 S=2 P=3" in lines and "pool5_drop_7x7_s1: dropout p=0.4" in lines


def test_squeezenet_becomes_a_fire_block_whose_expands_share_a_parameter() -> None:
    lines = body(imported(GENERATED["squeezenet_v1.1"]()))
    assert lines[2] == "block Fire(K1, K2) {"
    assert "      expand1x1: conv K=K2 F=1" in lines and "      expand3x3: conv K=K2 F=3 P=1" in lines
    assert [ln for ln in lines if ": Fire " in ln][:2] == ["fire2: Fire K1=16 K2=64", "fire3: Fire K1=16 K2=64"]


def test_resnet_blocks_become_residuals_with_projection_shortcuts_where_the_prototxt_has_them() -> None:
    spec = imported(GENERATED["resnet50"]())
    assert spec.count("residual {") == 16 and spec.count("} shortcut {") == 4
    net = archc.loads(spec)
    out = {layer.name: layer.output for layer in net.layers}
    assert out["pool1"] == (56, 56, 64)  # Caffe rounds up: 112 -> 56 with F=3 S=2 and no padding
    assert out["bn2a_branch1"] == (56, 56, 256) and out["res5c_branch2c"] == (7, 7, 2048)


def test_merges_nested_at_one_fork_are_written_innermost_first() -> None:
    """A residual whose body is a product of two branches of the same value, and a product of a
    three-way sum with the value: two merges at one fork, refused before ("the branches that start
    at 'b', 'c', 'e2'", the merge itself listed as a branch) though the ONNX import reads them."""
    product = HEADER + (
        'layer { name: "a" type: "ReLU" bottom: "data" top: "a" }'
        ' layer { name: "b" type: "Sigmoid" bottom: "a" top: "b" }'
        ' layer { name: "c" type: "TanH" bottom: "a" top: "c" }'
        ' layer { name: "e1" type: "Eltwise" bottom: "b" bottom: "c" top: "e1" eltwise_param { operation: PROD } }'
        ' layer { name: "e2" type: "Eltwise" bottom: "e1" bottom: "a" top: "e2" }'
        ' layer { name: "f" type: "Convolution" bottom: "e2" top: "f" convolution_param { num_output: 4 kernel_size: 1 } }'
    )
    assert body(imported(product))[2:] == [
        "a: relu", "e2: residual {", "  e1: multiply {", "    branch { b: sigmoid }", "    branch { c: tanh }", "  }", "}",
        "f: conv K=4 F=1",
    ]
    fc = 'layer {{ name: "{0}" type: "InnerProduct" bottom: "a" top: "{0}" inner_product_param {{ num_output: 8 }} }}'
    sums = HEADER + (
        'layer { name: "a" type: "Flatten" bottom: "data" top: "a" }'
        + "".join(fc.format(n) for n in ("f2", "f3", "f4"))
        + ' layer { name: "s" type: "Eltwise" bottom: "f2" bottom: "f3" bottom: "f4" top: "s" }'
        ' layer { name: "f5" type: "InnerProduct" bottom: "a" top: "f5" inner_product_param { num_output: 8 } }'
        ' layer { name: "m" type: "Eltwise" bottom: "s" bottom: "f5" top: "m" eltwise_param { operation: PROD } }'
    )
    spec = imported(sums)
    assert body(spec)[3:] == [
        "m: multiply {", "  branch {", "    s: add {", "      branch { f2: fc 8 }", "      branch { f3: fc 8 }",
        "      branch { f4: fc 8 }", "    }", "  }", "  branch { f5: fc 8 }", "}",
    ], spec
    assert archc.loads(spec).params == 4 * (2048 * 8 + 8)
    # a merge that reads a value from before the fork is still an error, located at it
    crossed = HEADER + (
        'layer { name: "a" type: "ReLU" bottom: "data" top: "a" }'
        ' layer { name: "b" type: "Sigmoid" bottom: "a" top: "b" }'
        ' layer { name: "c" type: "TanH" bottom: "a" top: "c" }'
        ' layer { name: "e1" type: "Eltwise" bottom: "b" bottom: "c" bottom: "data" top: "e1" }'
    )
    err = failure(crossed)
    assert "'e1' joins values from different forks" in err.message and err.location == "net.prototxt:7:183", str(err)


# --- one fixture per layer type ---------------------------------------------------------------
HEADER = 'name: "T"\ninput: "data"\ninput_dim: 1\ninput_dim: 8\ninput_dim: 16\ninput_dim: 16\n'


def one(layer: str, bottom: str = "data") -> list[str]:
    """The statements a network of one layer (reading `data`, 16x16x8) imports to."""
    return body(imported(HEADER + layer.replace("BOTTOM", bottom)))[2:]


LAYERS = {
    "conv": (
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c"'
        " convolution_param { num_output: 4 kernel_h: 3 kernel_w: 1 pad_h: 1 stride: 2 group: 2 bias_term: false } }",
        ["c: conv K=4 F=3x1 S=2 P=1x0 G=2 bias=false"],
    ),
    "conv_repeated": (
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c"'
        " convolution_param { num_output: 4 kernel_size: 3 kernel_size: 5 dilation: 2 pad: [2, 4] } }",
        ["c: conv K=4 F=3x5 P=2x4 D=2"],
    ),
    "deconv": (
        'layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"'
        " convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 } }",
        ["up: convtranspose K=4 F=4 S=2 P=1"],
    ),
    "maxpool": (
        'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }',
        ["p: maxpool F=3 S=2 ceil=true"],
    ),
    "avepool_default_stride": (
        'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE kernel_size: 3 pad: 1 } }',
        ["p: avgpool F=3 S=1 P=1 ceil=true"],
    ),
    "global_ave": (
        'layer { name: "g" type: "Pooling" bottom: "data" top: "g" pooling_param { pool: AVE global_pooling: true } }',
        ["g: globalavgpool"],
    ),
    "global_max": (
        'layer { name: "g" type: "Pooling" bottom: "data" top: "g" pooling_param { global_pooling: true } }',
        ["g: maxpool F=16"],
    ),
    "innerproduct": (
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 5 bias_term: false } }',
        ["fc: fc 5 bias=false"],
    ),
    "relu": ('layer { name: "r" type: "ReLU" bottom: "data" top: "data" }', ["r: relu"]),
    "leaky": (
        'layer { name: "r" type: "ReLU" bottom: "data" top: "data" relu_param { negative_slope: 0.1 } }',
        ["r: leakyrelu slope=0.1"],
    ),
    "sigmoid_tanh": (
        'layer { name: "s" type: "Sigmoid" bottom: "data" top: "s" } layer { name: "t" type: "TanH" bottom: "s" top: "t" }',
        ["s: sigmoid", "t: tanh"],
    ),
    "lrn": (
        'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 3 alpha: 5e-05 } }',
        ["n: lrn size=3 alpha=5e-05 beta=0.75 k=1"],  # Caffe's defaults, written: archc's k is 2
    ),
    "dropout": (
        'layer { name: "d" type: "Dropout" bottom: "data" top: "data" dropout_param { dropout_ratio: 0.3 } }',
        ["d: dropout p=0.3"],
    ),
    "softmax_flatten": (
        'layer { name: "f" type: "Flatten" bottom: "data" top: "f" } layer { name: "s" type: "Softmax" bottom: "f" top: "s" }',
        ["f: flatten", "s: softmax"],
    ),
    "batchnorm_scale": (
        'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param { eps: 0.001 } }'
        ' layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }',
        ["bn: batchnorm eps=0.001"],
    ),
    "split_concat": (
        'layer { name: "sp" type: "Split" bottom: "data" top: "a" top: "b" }'
        ' layer { name: "ca" type: "Convolution" bottom: "a" top: "ca" convolution_param { num_output: 2 kernel_size: 1 } }'
        ' layer { name: "cat" type: "Concat" bottom: "b" bottom: "ca" top: "cat" }',
        ["cat: concat {", "branch { identity }", "branch { ca: conv K=2 F=1 }", "}"],
    ),
    "eltwise_residual_identity": (
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 8 kernel_size: 1 } }'
        ' layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "c" top: "sum" }',
        ["sum: residual { c: conv K=8 F=1 }"],
    ),
    "eltwise_prod_three": (
        'layer { name: "a" type: "ReLU" bottom: "data" top: "a" }'
        ' layer { name: "b" type: "Sigmoid" bottom: "data" top: "b" }'
        ' layer { name: "m" type: "Eltwise" bottom: "a" bottom: "data" bottom: "b" top: "m" eltwise_param { operation: PROD } }',
        ["m: multiply {", "branch { a: relu }", "branch { identity }", "branch { b: sigmoid }", "}"],
    ),
    "eltwise_sum_three": (
        'layer { name: "a" type: "ReLU" bottom: "data" top: "a" }'
        ' layer { name: "b" type: "Sigmoid" bottom: "data" top: "b" }'
        ' layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" bottom: "data" top: "m" eltwise_param { coeff: 1 coeff: 1 coeff: 1 } }',
        ["m: add {", "branch { a: relu }", "branch { b: sigmoid }", "branch { identity }", "}"],
    ),
}


@pytest.mark.parametrize("name", LAYERS)
def test_each_layer_type(name: str) -> None:
    layer, expected = LAYERS[name]
    assert [ln.strip() for ln in one(layer)] == expected


def test_pooling_rounds_up_as_caffe_does() -> None:
    # 16 -> ceil((16 - 3) / 2) + 1 = 8 (floor: 7)
    spec = imported(HEADER + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 3 stride: 2 } }')
    assert archc.loads(spec).output_shape == (8, 8, 8)


def test_the_header_forms_and_the_input_layer_give_the_same_input() -> None:
    layer = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }'
    forms = [
        'input: "data"\ninput_dim: 2\ninput_dim: 3\ninput_dim: 24\ninput_dim: 32\n',
        'input: "data"\ninput_shape { dim: 2 dim: 3 dim: 24 dim: 32 }\n',
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 24 dim: 32 } } }\n',
    ]
    for form in forms:
        assert body(imported(form + layer))[0] == "input 24x32x3"
    for dims, shape in (([1, 100], "100"), ([1, 4, 9], "9x4"), ([1, 3, 24, 32], "24x32x3"), ([1, 2, 5, 6, 7], "5x6x7x2")):
        # input_dim, as input_shape, takes N, C and up to three sizes
        for form in ("".join(f"input_dim: {d}\n" for d in dims), f"input_shape {{ {' '.join(f'dim: {d}' for d in dims)} }}\n"):
            assert body(imported('input: "data"\n' + form + layer))[0] == f"input {shape}"
    for dims in ([1], [1, 2, 3, 4, 5, 6]):
        with pytest.raises(ImportFailure, match=f"the input has {len(dims)} `input_dim:`; expected 2 to 5"):
            import_text('input: "data"\n' + "".join(f"input_dim: {d}\n" for d in dims) + layer)
    assert body(imported('name: "network"\ninput: "data"\ninput_dim: 1\ninput_dim: 8\n' + layer))[:2] == ["network network_", "input 8"]
    flat = 'input: "data"\ninput_shape { dim: 1 dim: 100 }\nlayer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 3 } }'
    assert body(imported(flat))[:2] == ["input 100", "fc: fc 3"]


def test_layers_of_the_train_phase_are_left_out() -> None:
    text = HEADER + (
        'layer { name: "d" type: "Dropout" bottom: "data" top: "data" include { phase: TRAIN } }'
        ' layer { name: "r" type: "ReLU" bottom: "data" top: "data" include { phase: TEST } }'
        ' layer { name: "s" type: "Sigmoid" bottom: "data" top: "data" exclude { phase: TEST } }'
    )
    assert body(imported(text))[2:] == ["r: relu"]


def test_names_become_spec_names() -> None:
    text = HEADER + (
        'layer { name: "conv1/7x7_s2" type: "ReLU" bottom: "data" top: "data" }'
        ' layer { name: "3x3" type: "ReLU" bottom: "data" top: "data" }'
        ' layer { name: "concat" type: "ReLU" bottom: "data" top: "data" }'
        ' layer { name: "conv1.7x7.s2" type: "ReLU" bottom: "data" top: "data" }'
    )
    assert [ln.split(":")[0] for ln in body(imported(text))[2:]] == ["conv1_7x7_s2", "_3x3", "concat_", "conv1_7x7_s2_2"]


def test_an_in_place_chain_reads_the_latest_value_of_a_blob() -> None:
    # `data` is rewritten in place; the fork after it reads the rewritten value
    text = HEADER + (
        'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }'
        ' layer { name: "a" type: "Sigmoid" bottom: "data" top: "a" }'
        ' layer { name: "b" type: "TanH" bottom: "data" top: "b" }'
        ' layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }'
    )
    assert [ln.strip() for ln in body(imported(text))[2:]] == [
        "r: relu", "cat: concat {", "branch { a: sigmoid }", "branch { b: tanh }", "}",
    ]  # fmt: skip


# --- errors -----------------------------------------------------------------------------------
def failure(text: str) -> ImportFailure:
    with pytest.raises(ImportFailure) as err:
        import_text(text, "net.prototxt")
    return err.value


def test_an_unsupported_layer_type_is_located_and_named() -> None:
    text = HEADER + 'layer {\n  name: "rs"\n  type: "Reshape"\n  bottom: "data"\n  top: "rs"\n}\n'
    lines = str(failure(text)).splitlines()
    assert lines[0] == "net.prototxt:9:9: error[E900]: unsupported layer type 'Reshape' (layer 'rs')"
    assert lines[1:3] == ['  9 |   type: "Reshape"', "    |         ^~~~~~~~~"]
    assert "Convolution" in lines[3]
    v1 = failure(HEADER + 'layers { name: "x" type: SLICE bottom: "data" top: "x" }')
    assert v1.location == "net.prototxt:7:26" and "'Slice'" in v1.message


@pytest.mark.parametrize(
    ("text", "location", "words"),
    [
        (HEADER + "layer { name: 'c' type: 'Convolution' ", "net.prototxt:7:39", "ends inside"),
        (HEADER + "layer { name: 'c' } }", "net.prototxt:7:21", "unexpected '}'"),
        (HEADER + "layer { name: 'c' type: 'ReLU' bottom: 'nope' top: 'c' }", "net.prototxt:7:40", "'nope'"),
        (HEADER + 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" }', "net.prototxt:7:15", "without a Scale"),
        (HEADER + 'layer { name: "sc" type: "Scale" bottom: "data" top: "data" }', "net.prototxt:7:15", "does not follow a BatchNorm"),
        (
            HEADER + 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" }'
            ' layer { name: "sc" type: "Scale" bottom: "data" top: "data" }',
            "net.prototxt:7:81",
            "bias_term",
        ),
        ('name: "x"\nlayer { name: "d" type: "Data" top: "data" top: "label" }', "net.prototxt:2:25", "training data"),
        (HEADER + 'layer { name: "l" type: "SoftmaxWithLoss" bottom: "data" top: "l" }', "net.prototxt:7:25", "training layer"),
        (HEADER + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { kernel_size: 3 } }', "net.prototxt:7:15", "num_output"),
        (
            HEADER + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 3 kernel_size: 3 group: 2 } }',
            "net.prototxt:7:119",
            "group 2",
        ),
        (HEADER + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 } }', "net.prototxt:7:81", "STOCHASTIC"),
        (HEADER + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 40 } }', "net.prototxt:7:15", "empty"),
        (
            HEADER + 'layer { name: "a" type: "ReLU" bottom: "data" top: "a" } layer { name: "m" type: "Eltwise" bottom: "a" bottom: "data" top: "m" eltwise_param { operation: MAX } }',
            "net.prototxt:7:155",
            "MAX",
        ),
        (
            HEADER + 'layer { name: "a" type: "ReLU" bottom: "data" top: "a" } layer { name: "b" type: "ReLU" bottom: "data" top: "b" }',
            "net.prototxt:7:15",
            "one merge",
        ),
        ('name: "x"\n', "net.prototxt", "no input"),
        ('name: "x"\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }', "net.prototxt:2:40", "'data'"),
        (HEADER + 'input: "b"\ninput_dim: 1', "net.prototxt:7:8", "second input"),
        ("name: 'x' \x01", "net.prototxt:1:11", "unexpected character"),
        (HEADER + 'layer { name: "f" type: "InnerProduct" bottom: "data" top: "f" inner_product_param { num_output: inf } }', "net.prototxt:7:98", "finite"),
        (HEADER + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 2147483648 } }', "net.prototxt:7:110", "2147483647, not 2147483648"),
        (HEADER + 'layer { name: "d" type: "Dropout" bottom: "data" top: "data" dropout_param { dropout_ratio: 1 } }', "net.prototxt:7:93", "below 1"),
        (HEADER + 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 2.5 } }', "net.prototxt:7:79", "whole number"),
    ],
)
def test_errors_say_where(text: str, location: str, words: str) -> None:
    err = failure(text)
    assert err.location == location and words in err.message, str(err)


@pytest.mark.parametrize(
    ("text", "location", "words", "hint"),
    [
        # Caffe refuses a field its message lacks: a misspelt stride is not read as the default
        (HEADER + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 3 strid: 2 } }',
         "net.prototxt:7:112", "convolution_param has no field 'strid'", "did you mean 'stride'?"),
        (HEADER + 'layer { name: "r" type: "ReLU" botom: "data" top: "r" }', "net.prototxt:7:32", "a layer has no field 'botom'", "'bottom'"),
        ('name: "x"\ninputs: "data"\n', "net.prototxt:2:1", "the network has no field 'inputs'", "'input'"),
        (HEADER + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: MAX kernel_size: 2 ceil_mode: false } }',
         "net.prototxt:7:100", "pooling_param has no field 'ceil_mode'", "a fork's field is not read"),
        (HEADER + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" include { phse: TEST } }', "net.prototxt:7:66",
         "an include or exclude rule has no field 'phse'", "'phase'"),
    ],
)
def test_a_field_caffe_proto_lacks_is_an_error(text: str, location: str, words: str, hint: str) -> None:
    err = failure(text)
    assert err.location == location and words in err.message and hint in str(err.hint), str(err)


@pytest.mark.parametrize("char", ["a", "\\t"], ids=["plain", "escapes"])
def test_a_megabyte_name_is_read_in_little_memory_and_quoted_cut(char: str) -> None:
    """A hostile name: the string's regex kept ~300 bytes of backtracking state per character
    (650 MB for a 2 MB name), and the message quoted it whole."""
    import tracemalloc

    from archc.importers import prototxt

    prototxt.parse("")  # the parser is built once, outside the measure
    text = HEADER + 'layer { name: "' + char * 500_000 + '" type: "Bogus" bottom: "data" top: "x" }\n'
    tracemalloc.start()
    try:
        err = failure(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"{peak >> 20} MB"
    length = len(char.encode().decode("unicode_escape")) * 500_000
    shown = ("a" * 60, "a" * 20) if char == "a" else ("\\t" * 30, "\\t" * 10)  # as many escapes as fit
    assert f"(layer '{shown[0]}...{shown[1]}' ({length:,} characters))" in err.message, err.message
    assert len(str(err)) < 1000


# --- every field of the messages archc reads is honoured or refused (caffe_fields.py) -----------
def _pool(params: str, header: str = HEADER) -> str:
    return header + f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param {{ {params} }} }}'


@pytest.mark.parametrize(
    ("params", "line", "size"),
    [
        ("kernel_size: 2 stride: 2", "p: maxpool F=2 ceil=true", 4),  # Caffe's default: CEIL
        ("kernel_size: 2 stride: 2 round_mode: CEIL", "p: maxpool F=2 ceil=true", 4),
        ("kernel_size: 2 stride: 2 round_mode: FLOOR", "p: maxpool F=2", 3),
        ("kernel_size: 2 stride: 2 round_mode: 1", "p: maxpool F=2", 3),  # the enum's number
        ("pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR", "p: avgpool F=3 S=2 P=1", 4),
        ("pool: AVE kernel_size: 3 stride: 2 pad: 1", "p: avgpool F=3 S=2 P=1 ceil=true", 4),
        ("kernel_size: 3 stride: 3", "p: maxpool F=3 ceil=true", 3),
        ("kernel_size: 3 stride: 3 round_mode: FLOOR", "p: maxpool F=3", 2),
    ],
)
def test_pooling_rounds_as_its_round_mode_says(params: str, line: str, size: int) -> None:
    header = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 7 dim: 7 }\n'
    spec = imported(_pool(params, header))
    assert body(spec)[1] == line
    assert archc.loads(spec).output_shape == (size, size, 3) and count(_pool(params, header)) == (0, 0)
    assert _caffe_sizes(_pool(params, header)) == (3, size, size)  # the independent reader's Caffe rules


def _caffe_sizes(text: str) -> tuple[int, ...]:
    """pooling_layer.cpp's output size, written out again: CEIL or FLOOR, then the padding rule."""
    p = _sub(read(text)["layer"][0], "pooling_param")  # type: ignore[arg-type]
    f, s, pad = int(_get(p, "kernel_size")), int(_get(p, "stride", 1)), int(_get(p, "pad", 0))
    rounding = math.floor if str(_get(p, "round_mode", "CEIL")) in ("FLOOR", "1") else math.ceil
    out = rounding((7 + 2 * pad - f) / s) + 1
    return (3, *([out - 1 if pad and (out - 1) * s >= 7 + pad else out] * 2))


@pytest.mark.parametrize(
    ("text", "token", "words"),
    [
        (_pool("kernel_size: 2 stride: 2 round_mode: DOWN"), "DOWN", "`round_mode` is CEIL or FLOOR, not 'DOWN'"),
        (_pool("kernel_size: 2 pad: 2"), "2 }", "Pooling layer 'p': padding 2 is not less than the window 2"),
        (_pool("kernel_size: 3 pad_h: 2 pad_w: 1"), "2 pad_w", "padding 2 is more than half the window 3"),
        (_pool("kernel_size: 3 pad_h: 1"), "1 }", "`pad_h` and `pad_w` go together"),
        (_pool("global_pooling: true kernel_size: 3"), "3 }", "`kernel_size` with `global_pooling`"),
        (_pool("global_pooling: true stride: 2"), "2 }", "`stride: 2` with `global_pooling`"),
        (_pool("kernel_size: 2", 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 9 }\n'), '"p" type', "Caffe pools images"),
        (HEADER + 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "b" batch_norm_param { use_global_stats: false } }'
         ' layer { name: "s" type: "Scale" bottom: "b" top: "s" scale_param { bias_term: true } }',
         "false", "`use_global_stats: false` normalises by each batch's statistics"),
        (HEADER + 'layer { name: "d" type: "Dropout" bottom: "data" top: "d" phase: TRAIN }', "TRAIN", "the layer runs as in training"),
        (HEADER + 'layer { name: "a" type: "Convolution" bottom: "data" top: "a" param { name: "w" }'
         ' convolution_param { num_output: 8 kernel_size: 1 } }'
         ' layer { name: "b" type: "Convolution" bottom: "a" top: "b" param { name: "w" }'
         ' convolution_param { num_output: 8 kernel_size: 1 } }',
         '"w"', "shares its weights with layer 'a'"),
        (HEADER + 'layers { layer { name: "c" type: "conv" } bottom: "data" top: "c" type: RELU }', "layer {", "a V0 layer"),
        (HEADER + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }'
         ' layer { name: "c" type: "Concat" bottom: "data" bottom: "r" top: "c" concat_param { axis: 1 concat_dim: 1 } }',
         "1 } }", "both `axis` and `concat_dim`"),
        (HEADER + 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 4 } }', "4", "`local_size: 4` is even"),
        (HEADER + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }'
         ' layer { name: "e" type: "Eltwise" bottom: "data" bottom: "r" top: "e" eltwise_param { coeff: 1 } }',
         "1 } }", "1 `coeff` for 2 bottoms"),
    ],
)
def test_a_field_that_changes_the_network_is_honoured_or_refused_where_it_is(text: str, token: str, words: str) -> None:
    err = failure(text)
    at = text.rindex(token)
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    assert err.location == f"net.prototxt:{line}:{column}" and words in err.message, (str(err), line, column)


def test_layers_are_chosen_by_the_rules_caffe_test_runs_with() -> None:
    """net.cpp's StateMeetsRule for phase TEST, level 0 and no stages (`caffe test`, `caffe.Net(f, caffe.TEST)`)."""
    def kept(*rules: str) -> bool:
        layer = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" ' + " ".join(rules) + " }"
        return len(body(imported(HEADER + 'layer { name: "t" type: "TanH" bottom: "data" top: "data" }' + layer))) == 4

    assert kept() and kept("include { phase: TEST }") and not kept("include { phase: TRAIN }")
    assert not kept('include { stage: "deploy" }') and kept('exclude { stage: "deploy" }')
    assert not kept("include { min_level: 1 }") and kept("include { max_level: 0 }") and not kept("include { max_level: -1 }")
    assert not kept('exclude { not_stage: "train" }') and kept('include { not_stage: "train" }')
    # an include rule met puts back what an exclude rule left out
    assert kept("exclude { phase: TEST } include { phase: TEST }")


def test_fields_of_training_and_of_the_weights_layout_change_nothing() -> None:
    """`transpose` (how the .caffemodel stores fc weights), fillers, learning rates, engines."""
    plain = HEADER + 'layer { name: "f" type: "InnerProduct" bottom: "data" top: "f" inner_product_param { num_output: 5 } }'
    extras = plain.replace("num_output: 5", 'num_output: 5 transpose: true weight_filler { type: "xavier" }')
    extras = extras.replace('top: "f"', 'top: "f" param { lr_mult: 1 decay_mult: 0 } param { lr_mult: 2 } propagate_down: true')
    assert body(imported(extras)) == body(imported(plain))


def test_a_binary_file_is_no_prototxt(tmp_path: Path) -> None:
    from archc.importers.caffe import import_prototxt

    model = tmp_path / "weights.prototxt"
    model.write_bytes(b"\x0a\x07AlexNet\xff\xfe")
    with pytest.raises(ImportFailure, match="not UTF-8"):
        import_prototxt(model)


def test_the_zoo_table_in_the_docs_is_what_the_imports_give() -> None:
    table = (Path(__file__).resolve().parent.parent / "docs" / "import.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| [^|]*?(AlexNet|CaffeNet|LeNet|GoogLeNet|SqueezeNet 1\.[01]|VGG-16|ResNet-\d+)[^|]* \| ([\d,]+ \| [\d,]+) \|$", table, re.M))
    keys = {
        "AlexNet": "alexnet", "CaffeNet": "caffenet", "LeNet": "lenet", "GoogLeNet": "googlenet",
        "SqueezeNet 1.0": "squeezenet_v1.0", "SqueezeNet 1.1": "squeezenet_v1.1", "VGG-16": "vgg16",
        "ResNet-50": "resnet50", "ResNet-101": "resnet101", "ResNet-152": "resnet152",
    }  # fmt: skip
    assert sorted(rows) == sorted(keys)
    for title, key in keys.items():
        net = archc.loads(imported(ZOO[key][0]()))
        assert rows[title] == f"{net.params:,} | {net.macs:,}", title


# --- garbage never crashes ------------------------------------------------------------------
FIELDS = re.compile(r"\b(stride|pad|kernel_size|num_output|group|local_size|dropout_ratio|negative_slope|dim|eps|alpha|bottom|top): ([^\s}]+)")
VALUES = ["0", "-1", "1e30", "nan", "inf", "2", "7", "1000000000", "0.5", "MAX", "true", '"x"', "1.5", '"data"', '"pool1"']
INSERTS = [
    'bottom: "data"', 'top: "data"', 'type: "Split"', 'type: "Concat"', 'type: "Eltwise"', "global_pooling: true",
    "operation: MAX", "include { phase: TRAIN }", "kernel_h: 2 kernel_w: 3", "pad_w: 1", "axis: 2", 'type: "Scale"',
    'type: "BatchNorm"', 'type: "Input"', 'name: "concat"', "{", "}", ":", '"', "\x00", "round_mode: FLOOR",
    "use_global_stats: false", 'param { name: "w" }', "phase: TRAIN", 'include { stage: "deploy" }', "pad_h: 1",
]  # fmt: skip


def _mutations() -> st.SearchStrategy[str]:
    """The zoo's prototxts with values replaced and fields inserted: mostly still parseable."""
    bases = [GENERATED["squeezenet_v1.1"](), (HERE / "lenet.prototxt").read_text(encoding="utf-8")]

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        text = draw(st.sampled_from(bases))
        for _ in range(draw(st.integers(1, 3))):
            if draw(st.booleans()):
                m = draw(st.sampled_from(list(FIELDS.finditer(text))))
                text = text[: m.start(2)] + draw(st.sampled_from(VALUES)) + text[m.end(2) :]
            else:
                at = draw(st.sampled_from([m.end() for m in re.finditer(r"\{\n", text)]))
                text = text[:at] + draw(st.sampled_from(INSERTS)) + "\n" + text[at:]
        return text

    return mutate()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_mutations(), st.text(max_size=200)))
def test_any_text_imports_or_fails_with_a_located_error(text: str) -> None:
    try:
        spec = imported(text)
    except ImportFailure as exc:
        assert exc.location and str(exc)
    else:
        assert archc.loads(spec).params >= 0


def test_names_from_the_file_reach_the_terminal_escaped() -> None:
    err = failure(HEADER + 'layer { name: "a\\033[2J" type: "Nope\\nerror: forged" bottom: "data" top: "x" }')
    assert "\x1b" not in str(err) and "\nerror: forged" not in str(err)
    assert "'Nope\\nerror: forged'" in err.message and "'a\\x1b[2J'" in err.message


def test_scopes_become_blocks_only_where_their_names_stay_apart() -> None:
    def scope(s: str, bottom: str, k: int, relu: str) -> str:
        return (
            f'layer {{ name: "{s}/a-b" type: "Convolution" bottom: "{bottom}" top: "{s}" convolution_param {{ num_output: {k} kernel_size: 1 }} }}'
            f' layer {{ name: "{s}/{relu}" type: "ReLU" bottom: "{s}" top: "{s}" }}'
        )

    def spec(relu: str) -> list[str]:
        return body(imported(HEADER + scope("s1", "data", 8, relu) + scope("s2", "s1", 4, relu)), arrows=True)[2:]

    # `a-b` and `a_b` would both be `a_b` inside the block: the scopes stay flat, their names kept apart
    assert spec("a_b") == ["s1_a_b: conv K=8 F=1 -> 16x16x8", "s1_a_b_2: relu", "s2_a_b: conv K=4 F=1 -> 16x16x4", "s2_a_b_2: relu"]
    assert spec("relu") == [
        "block S(K) {", "  a_b: conv K=K F=1", "  relu: relu", "}",
        "s1: S K=8 -> 16x16x8",  # the call asserts the scope's output, though its last layer is a relu
        "s2: S K=4 -> 16x16x4",
    ]  # fmt: skip


def test_messages_nested_past_the_limit_are_one_located_error() -> None:
    """150 nested `layer {` crashed the import with exit 3 (RecursionError in a repr); now E900 at the brace."""
    text = 'name: "x"\n' + "layer { " * 150 + "}" * 150 + "\n"
    with pytest.raises(ImportFailure) as info:
        import_text(text, "deep.prototxt")
    assert "nest more than 100 deep" in str(info.value) and "deep.prototxt:2:" in str(info.value)
