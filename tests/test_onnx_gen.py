"""The ONNX back-end: validity, shapes against the IR, initializers, lowering rules, files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")

from conftest import GOLDEN, SPECS, all_specs, compiled_specs, onnx_text  # noqa: E402

import archc  # noqa: E402 - after the importorskips, so a missing onnx skips instead of failing
from archc.analysis.tensors import Role, tensor_specs  # noqa: E402
from archc.backends.onnx.generate import (  # noqa: E402
    HANDLERS,
    OnnxError,
    build_model,
    lower,
    save_model,
    write_model,
)
from archc.backends.onnx.lowering import Lowering, Value, onnx_order  # noqa: E402
from archc.backends.onnx.opsets import DECOMPOSITIONS, DEFAULT_OPSET, NEWER_OPS  # noqa: E402
from archc.backends.weights import make_weights  # noqa: E402
from archc.diagnostics import SpecError  # noqa: E402
from archc.ir import INPUT  # noqa: E402
from archc.kinds import KINDS, sequence  # noqa: E402

# Every kind, every merge, P=same, ceil, groups, dilation, no-bias, a vanishing dropout.
EVERY_KIND = """\
network Every
input 20x20x4
conv1: conv K=8 F=3 P=same D=2
batchnorm
layernorm eps=1e-6
lrn size=3
relu6
maxpool F=3 S=2 ceil=true
avgpool F=3 S=1 P=1
conv K=8 F=3 P=1 G=4 bias=false
leakyrelu slope=0.2
gelu
silu
hardswish
hardsigmoid
sigmoid
tanh
identity
ls: layerscale init=0.5
droppath 0.2
up: convtranspose K=8 F=3 S=2 P=1 O=1 G=2
upsample 2 mode=linear
upsample 1x2
crop 17x34 -> 17x34x8
maxpool F=1x2
res: residual { conv K=8 F=3 P=1 bias=false; batchnorm }
relu
se: multiply { branch { identity } branch { globalavgpool; conv K=2 F=1; relu; conv K=8 F=1; sigmoid } }
shift: add { branch { relu } branch { globalavgpool; flatten } branch { conv K=8 F=1 } }
cat: concat { branch { conv K=4 F=1 } branch { conv K=4 F=3 P=1; dropout 0.3 } }
adaptiveavgpool 5
globalavgpool
flatten
fc 10 bias=false
layernorm bias=false
softmax
"""

# The same at the other ranks: a 1-D signal (LxC) and a volume (DxHxWxC).
EVERY_KIND_1D = """\
network Every1d
input 64x3
conv K=8 F=7 S=2 P=same bias=false
batchnorm
relu
maxpool F=3 S=2 P=1
lrn size=3
lrn size=2
avgpool F=3 S=1 P=1 ceil=true
conv K=8 F=3 P=2 D=2 G=2
gelu approx=tanh
silu
hardswish
hardsigmoid
convtranspose K=6 F=4 S=3 P=1 O=2 bias=false
upsample 2 mode=linear
upsample 3
crop 201
layerscale
droppath
conv K=8 F=7 S=8
se: multiply { branch { identity } branch { globalavgpool; conv K=2 F=1; relu; conv K=8 F=1; sigmoid } }
cat: concat { branch { conv K=4 F=1 } branch { maxpool F=3 S=1 P=1 } }
adaptiveavgpool 5
fc 6
layernorm
softmax
flatten
fc 3
"""

EVERY_KIND_3D = """\
network Every3d
input 6x12x12x3
conv K=8 F=3x5x5 S=1x2x2 P=1x2x2 bias=false
batchnorm
relu
maxpool F=3 S=2 P=same
lrn size=3
lrn size=4
avgpool F=1x3x3 S=1 P=0x1x1
se: multiply { branch { identity } branch { globalavgpool; flatten; fc 2; relu; fc 8; sigmoid } }
convtranspose K=8 F=2x3x3 S=2 P=0x1x1 O=0x1x1 G=4 D=1x2x1
upsample 1x2x2 mode=linear
upsample 2x1x1
crop 11x15x10
layerscale init=0.1
droppath 0.3
gelu approx=tanh
hardswish
res: residual { conv K=8 F=3 P=1 } shortcut { identity }
layernorm eps=1e-6
adaptiveavgpool 2x2x3
globalavgpool
fc 4
"""

# Every sequence kind: a small language model (token ids, tied output) and a small ViT.
EVERY_SEQUENCE_KIND = """\
network EverySequence
input 12 tokens
wte: embedding V=50 D=16
posembed T=20
residual { rmsnorm; attention 4 kv=2 causal=true rope=true bias=false }
residual { rmsnorm eps=1e-5; fc 32; gelu; fc 16 }
residual { attention 2 }
softmax
head: fc 50 tie=wte
"""
EVERY_VISION_KIND = """\
network EveryVision
input 8x8x3
conv K=16 F=2 S=2
tokens
clstoken
posembed
residual { attention 4 causal=true }
attention 2 kv=1 rope=true rope_base=500
select -1
fc 10
"""
SEQUENCE_SPECS = (EVERY_SEQUENCE_KIND, EVERY_VISION_KIND)


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _dims(value_info) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_every_registry_kind_has_a_handler() -> None:
    assert set(HANDLERS) == set(KINDS)


def test_every_kind_example_covers_every_kind() -> None:
    covered = {n.kind for text in (EVERY_KIND, *SEQUENCE_SPECS) for n in archc.loads(text).graph.nodes}
    assert covered == set(KINDS)


def _check_against_ir(net, model, inferred=None) -> None:
    """Checker, shape inference vs the IR for every layer, initializers vs tensor_specs."""
    if inferred is None:
        onnx.checker.check_model(model, full_check=True)
        # data_prop: the class token's Expand takes the batch from Shape(x), as exporters write it
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    shapes = {v.name: _dims(v) for v in [*inferred.graph.value_info, *inferred.graph.output]}
    shapes[INPUT] = _dims(inferred.graph.input[0])
    lowered = lower(net.analysis)
    for node in net.graph.nodes:
        out = net.analysis.facts[node.name].output
        # the IR's shape, in the axis order the value is held in (channels last after a layernorm)
        by_axis = dict(zip(onnx_order(out), ["batch", *out.nchw()], strict=True))
        expected = [by_axis[axis] for axis in lowered.orders[node.name]]
        assert shapes[lowered.values[node.name]] == expected, node.name
    specs = tensor_specs(net.analysis)
    weights = [t for t in model.graph.initializer if not t.name.startswith("/")]
    assert [t.name for t in weights] == [s.name for s in specs]
    assert [tuple(t.dims) for t in weights] == [s.shape for s in specs]
    bn_buffers = sum(2 * net.analysis.facts[n.name].output.channels for n in net.graph.nodes if n.kind == "batchnorm")
    assert sum(int(np.prod(t.dims)) for t in weights) == net.params + bn_buffers
    assert sum(s.numel for s in specs if s.role is Role.BUFFER) == bn_buffers
    layer_names = {n.name for n in net.graph.nodes}
    assert {n.name for n in model.graph.node} <= layer_names | {n.name for n in model.graph.node if "/" in n.name}
    assert _dims(model.graph.input[0])[0] == "batch" and _dims(model.graph.output[0])[0] == "batch"
    assert [o.name for o in model.graph.output] == ["output"]


@pytest.mark.parametrize("spec", compiled_specs(), ids=lambda p: p.stem)
def test_spec_is_valid_onnx_with_the_irs_shapes(spec: Path, tmp_path: Path) -> None:
    # Written with every tensor in external data (threshold 0), the checker and
    # shape inference read a small file: VGG's 550 MB of weights are checked for
    # size and place, not parsed and copied three times.
    net = archc.load(spec)
    path, data = write_model(net.analysis, tmp_path / "m.onnx", weights="zeros", threshold=0)
    try:
        onnx.checker.check_model(str(path), full_check=True)
        onnx.shape_inference.infer_shapes_path(
            str(path), str(tmp_path / "inferred.onnx"), strict_mode=True, data_prop=True
        )
        model = onnx.load(str(path), load_external_data=False)
        inferred = onnx.load(str(tmp_path / "inferred.onnx"), load_external_data=False)
        _check_against_ir(net, model, inferred)
        assert data.stat().st_size >= 4 * (net.params - 4096)  # every weight is there (bar alignment)
    finally:
        for f in tmp_path.iterdir():
            f.unlink()


def test_every_kind_runs_on_onnxruntime_at_the_default_opset() -> None:
    net = archc.loads(EVERY_KIND)
    model = build_model(net.analysis, seed=1)
    assert model.opset_import[0].version == DEFAULT_OPSET
    _check_against_ir(net, model)
    y = _run(model, np.random.default_rng(0).standard_normal((2, 4, 20, 20), dtype=np.float32))
    assert y.shape == (2, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)  # softmax rows


@pytest.mark.parametrize("text", [EVERY_KIND_1D, EVERY_KIND_3D], ids=["1d", "3d"])
@pytest.mark.parametrize("opset", [13, DEFAULT_OPSET])
def test_1d_and_3d_networks_are_valid_with_the_irs_shapes(text: str, opset: int) -> None:
    net = archc.loads(text)
    model = build_model(net.analysis, seed=1, opset=opset)
    _check_against_ir(net, model)
    x = np.random.default_rng(0).standard_normal((2, *net.graph.input_shape.nchw()), dtype=np.float32)
    assert _run(model, x).shape == (2, *net.analysis.output_shape.nchw())


def test_flat_input_and_every_layer_vanishing() -> None:
    net = archc.loads("input 6\ndropout\n")
    model = build_model(net.analysis)
    onnx.checker.check_model(model, full_check=True)
    assert _dims(model.graph.input[0]) == ["batch", 6]
    assert [n.op_type for n in model.graph.node] == ["Identity"]
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(_run(model, x), x)


def test_dropout_at_the_end_renames_the_previous_value_output() -> None:
    model = build_model(archc.loads("input 4\nfc1: fc 3\ndropout").analysis)
    assert [(n.name, list(n.output)) for n in model.graph.node] == [("fc1", ["output"])]


def test_an_op_newer_than_the_opset_without_a_decomposition_is_a_located_error(monkeypatch) -> None:
    monkeypatch.delitem(DECOMPOSITIONS, "Gelu")  # as an op with no decomposition would be
    net = archc.loads("input 4x4x2\nconv K=2 F=1\ng: gelu\n", filename="g.arch")
    with pytest.raises(SpecError) as info:
        net.to_onnx(opset=19)
    text = str(info.value)
    assert "g.arch:3:4: error[E602]" in text and "opset 20" in text and "--opset 20" in text
    assert NEWER_OPS["Gelu"][0] == 20
    build_model(net.analysis, opset=20)  # and 20 is enough


@pytest.mark.parametrize("opset", [13, 19, 20])
def test_gelu_at_each_side_of_its_opset_matches_pytorch(opset: int) -> None:
    """Gelu came in opset 20; before it, the same function is written with Erf."""
    torch = pytest.importorskip("torch")
    from archc.backends.torch.generate import build_module

    net = archc.loads("input 5x5x3\nconv K=4 F=3\ng: gelu\nfc 3\n")
    weights = make_weights(net.analysis, seed=7)
    model = build_model(net.analysis, weights=weights, opset=opset)
    _check_against_ir(net, model)
    ops = {n.op_type for n in model.graph.node}
    assert ("Gelu" in ops, "Erf" in ops) == ((True, False) if opset >= 20 else (False, True))
    module = build_module(net.analysis).eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    x = np.random.default_rng(opset).standard_normal((2, 3, 5, 5), dtype=np.float32) * 3
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-5)


# Every constant that several layers share, as an int64 (clstoken's Expand size, posembed's
# Slice, ReduceMean's axes at 18+) and a float (Gelu's Erf form below 20, relu6's Clip bounds):
# a ViT below opset 20 once held `/const/one` as both, which no runtime loads. And two
# attentions of one width at two lengths: their heads' shape was one constant, the first's.
SHARED_CONSTANTS = """\
input 4x4x3
conv K=8 F=2 S=2
tokens
attention 2
clstoken
posembed T=9
attention 2
residual { layernorm; fc 16; gelu; fc 8 }
relu6
rmsnorm
select 0
fc 3
"""


@pytest.mark.parametrize("opset", [17, 18, 19, 20])
def test_constants_shared_by_layers_keep_one_type_per_name_at_every_opset(opset: int) -> None:
    torch = pytest.importorskip("torch")
    from archc.backends.torch.generate import build_module

    net = archc.loads(SHARED_CONSTANTS)
    weights = make_weights(net.analysis, seed=3)
    model = build_model(net.analysis, weights=weights, opset=opset)
    _check_against_ir(net, model)
    types: dict[str, set[int]] = {}
    for t in model.graph.initializer:
        types.setdefault(t.name, set()).add(t.data_type)
    assert all(len(found) == 1 for found in types.values()), types
    module = build_module(net.analysis).eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    x = np.random.default_rng(opset).standard_normal((2, 3, 4, 4), dtype=np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-5)


def test_a_constant_name_made_with_two_values_is_a_backend_bug() -> None:
    ctx = Lowering(archc.loads("input 4\nfc 2").analysis, 20, {})
    ctx.constant("/const/one", 1.0)
    ctx.constant("/const/one", 1.0)  # the same value again: one initializer
    with pytest.raises(AssertionError, match="/const/one"):
        ctx.ints("one", [1])


@pytest.mark.parametrize("opset", [12, 10_000])
def test_opset_out_of_range(opset: int) -> None:
    with pytest.raises(OnnxError, match="out of range"):
        build_model(archc.loads("input 4\nfc 2").analysis, opset=opset)


@pytest.mark.parametrize("opset", [13, 17, 20, 21])
def test_older_opsets_run(opset: int) -> None:
    net = archc.loads(EVERY_KIND)  # gelu too: below opset 20 it is written with Erf
    model = build_model(net.analysis, opset=opset)
    assert model.opset_import[0].version == opset
    assert model.ir_version == onnx.helper.find_min_ir_version_for(list(model.opset_import))
    assert _run(model, np.ones((1, 4, 20, 20), np.float32)).shape == (1, 10)


# --- sequences -----------------------------------------------------------------------
def _input_for(net, model, batch: int = 2):
    rng = np.random.default_rng(0)
    dims = [batch, *_dims(model.graph.input[0])[1:]]
    if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64:
        vocabulary = min(n.attrs["V"] for n in net.graph.nodes if n.kind == "embedding")
        return rng.integers(0, vocabulary, dims, dtype=np.int64)
    return rng.standard_normal(dims, dtype=np.float32)


@pytest.mark.parametrize("opset", [13, 17, 18, 19, 20])
@pytest.mark.parametrize("text", SEQUENCE_SPECS, ids=["language", "vision"])
def test_sequence_kinds_are_valid_onnx_at_every_opset(text: str, opset: int) -> None:
    net = archc.loads(text)  # gelu too: below opset 20 it is written with Erf
    model = build_model(net.analysis, opset=opset)
    _check_against_ir(net, model)  # the full checker, strict shape inference == the IR
    y = _run(model, _input_for(net, model))
    assert y.shape == (2, *net.analysis.physical(net.graph.output)) and np.isfinite(y).all()


def test_token_ids_are_int64_and_a_tied_weight_is_stored_once() -> None:
    net = archc.loads(EVERY_SEQUENCE_KIND)
    model = build_model(net.analysis, weights="zeros")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert _dims(model.graph.input[0]) == ["batch", 12]
    names = [t.name for t in model.graph.initializer]
    assert "wte.weight" in names and "head.weight" not in names
    readers = [n.op_type for n in model.graph.node if "wte.weight" in n.input]
    assert sorted(readers) == ["Gather", "Transpose"]  # the embedding, and the tied fc's [D, V] view


def test_attention_is_standard_operators_with_a_constant_causal_mask() -> None:
    net = archc.loads("input 5x8\na: attention 2 causal=true\n")
    model = build_model(net.analysis, weights="zeros")
    ops = {n.op_type for n in model.graph.node}
    assert {"MatMul", "Softmax", "Reshape", "Transpose"} <= ops and all(n.domain == "" for n in model.graph.node)
    mask = next(t for t in model.graph.initializer if t.name.startswith("/const/causal"))
    m = onnx.numpy_helper.to_array(mask)
    assert m.shape == (5, 5) and (m[np.tril_indices(5)] == 0).all() and np.isneginf(m[np.triu_indices(5, 1)]).all()


def test_the_causal_mask_and_rotary_tables_are_made_once_for_every_layer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every layer reads one mask and one pair of tables, computed once (GPT-2's 12 layers at
    T=1024 would otherwise build twelve 4 MB masks for the one kept)."""
    import archc.backends.onnx.generate as generate

    made = {"triu": 0, "rope": 0}
    triu, rope = np.triu, generate._rotary_tables

    def counted_triu(*a, **k):  # type: ignore[no-untyped-def]
        made["triu"] += 1
        return triu(*a, **k)

    def counted_rope(*a, **k):  # type: ignore[no-untyped-def]
        made["rope"] += 1
        return rope(*a, **k)

    monkeypatch.setattr(generate.np, "triu", counted_triu)
    monkeypatch.setattr(generate, "_rotary_tables", counted_rope)
    net = archc.loads("input 6x8\nrepeat 3 { attention 2 causal=true rope=true }\n")
    model = build_model(net.analysis, weights="zeros")
    constants = [t.name for t in model.graph.initializer if t.name.startswith(("/const/causal", "/const/rope"))]
    assert sorted(constants) == ["/const/causal6", "/const/rope6x4b10000/cos", "/const/rope6x4b10000/sin"]
    assert made == {"triu": 1, "rope": 1}


def test_rmsnorm_is_written_out_and_matches_its_formula() -> None:
    net = archc.loads("input 3x6\nn: rmsnorm eps=1e-3\n")
    weights = {"n.weight": np.linspace(0.5, 2, 6, dtype=np.float32)}
    model = build_model(net.analysis, weights=weights)
    assert [n.op_type for n in model.graph.node] == ["Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul"]
    x = np.random.default_rng(3).standard_normal((2, 3, 6), dtype=np.float32)
    expected = x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + 1e-3) * weights["n.weight"]
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-6)


# --- adaptiveavgpool ----------------------------------------------------------------
def test_adaptive_equal_size_emits_nothing() -> None:
    model = build_model(archc.loads("input 6x6x2\nconv1: conv K=2 F=1\nadaptiveavgpool 6\nflatten").analysis)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Flatten"]


def test_adaptive_divisible_is_one_average_pool() -> None:
    net = archc.loads("input 12x8x2\nadaptiveavgpool 3x2")
    (node,) = build_model(net.analysis).graph.node
    attrs = {a.name: list(a.ints) for a in node.attribute}
    assert node.op_type == "AveragePool" and attrs["kernel_shape"] == [4, 4] and attrs["strides"] == [4, 4]
    x = np.random.default_rng(0).standard_normal((1, 2, 12, 8), dtype=np.float32)
    expected = x.reshape(1, 2, 3, 4, 2, 4).mean(axis=(3, 5))
    np.testing.assert_allclose(_run(build_model(net.analysis), x), expected, rtol=1e-5, atol=1e-6)


def test_adaptive_uneven_is_two_matmuls_with_pytorch_windows() -> None:
    """13 -> 6, torchvision AlexNet's case off 224: windows [0,3) [2,5) [4,7) [6,9) [8,11) [10,13)."""
    net = archc.loads("input 13x13x2\npool: adaptiveavgpool 6\n")
    model = build_model(net.analysis)
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul"]
    assert not [t for t in model.graph.initializer if not t.name.startswith("/")]  # no weights added
    x = np.random.default_rng(0).standard_normal((2, 2, 13, 13), dtype=np.float32)
    bounds = [(i * 13 // 6, -(-(i + 1) * 13 // 6)) for i in range(6)]
    expected = np.array(
        [[[[x[b, c, r0:r1, c0:c1].mean() for c0, c1 in bounds] for r0, r1 in bounds] for c in range(2)] for b in range(2)]
    )
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-6)


def test_even_lrn_is_written_out() -> None:
    """ONNX's LRN takes odd sizes; an even one is PyTorch's formula in plain ops."""
    net = archc.loads("input 3x3x5\nlrn size=2 alpha=1 beta=1 k=1\n")
    model = build_model(net.analysis)
    assert "LRN" not in {n.op_type for n in model.graph.node}
    x = np.random.default_rng(0).standard_normal((1, 5, 3, 3), dtype=np.float32)
    padded = np.concatenate([np.zeros_like(x[:, :1]), x], axis=1) ** 2  # size//2 = 1 channel before
    mean = (padded[:, :-1] + padded[:, 1:]) / 2
    np.testing.assert_allclose(_run(model, x), x / (1 + mean), rtol=1e-5, atol=1e-6)


def test_a_layer_named_output_keeps_the_graph_output_unique() -> None:
    net = archc.loads("input 4x4x2\noutput: conv K=2 F=1\nrelu\nfc 3\n")
    model = build_model(net.analysis)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.node[0].name == "output"
    assert _run(model, np.ones((1, 2, 4, 4), np.float32)).shape == (1, 3)


# --- layouts: a Transpose only where two axis orders meet ----------------------------------
def _relu_channels_last(ctx: Lowering, node, facts) -> Value:
    """A handler that makes its value channels last, as a layout-changing kind would."""
    (x,) = ctx.inputs(node)
    nhwc = ctx.emit("Transpose", [x], f"{node.name}/nhwc", perm=[0, 2, 3, 1])
    return Value(ctx.emit("Relu", [nhwc], node.name), "NHWC")


def test_no_transpose_where_every_value_is_in_onnx_order() -> None:
    for spec in all_specs():
        net = archc.load(spec)
        if any(KINDS[n.kind] in sequence.KINDS for n in net.graph.nodes):
            continue  # a sequence model: attention's heads and nn.Linear's weights are transposed by design
        ops = [n.op_type for n in lower(net.analysis).model.graph.node]
        # layernorm reads an image's channels last: a Transpose to it, and one back for the next reader
        channels_last = sum(n.kind == "layernorm" and net.analysis.facts[n.name].inputs[0].is_spatial for n in net.graph.nodes)
        assert ops.count("Transpose") == 2 * channels_last, spec.stem


def test_a_transpose_where_orders_meet_made_once_for_every_reader(monkeypatch) -> None:
    text = "input 6x6x2\nconv K=3 F=1\nr: relu\nconcat { branch { conv K=2 F=1 } branch { conv K=4 F=1 } }\nrelu\n"
    net = archc.loads(text)
    weights = make_weights(net.analysis, seed=3)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6), dtype=np.float32)
    expected = _run(build_model(net.analysis, weights=weights), x)
    monkeypatch.setitem(HANDLERS, "relu", _relu_channels_last)
    model = build_model(net.analysis, weights=weights)
    onnx.checker.check_model(model, full_check=True)
    ops = [(n.name, n.op_type) for n in model.graph.node]
    # r is made NHWC; both branches read it NCHW through one Transpose; the last relu's
    # NHWC value meets the graph's NCHW output, so one more Transpose ends the graph
    assert [name for name, op in ops if op == "Transpose" and "/to_" in name] == ["r/to_NCHW", "relu1/to_NCHW"]
    assert model.graph.node[-1].output[0] == "output"
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-6)


# --- golden, determinism, files -----------------------------------------------------
SMALL_TRANSFORMER = """\
network SmallTransformer
input 8 tokens
wte: embedding V=32 D=16
wpe: posembed
block Block(D, H) {
  residual { ln_1: layernorm; attn: attention H causal=true }
  residual { ln_2: layernorm; fc D*2; gelu; fc D }
}
h: repeat 2 { Block D=16 H=2 }
ln_f: layernorm
head: fc 32 bias=false tie=wte
"""


def test_golden_small_transformer(golden) -> None:  # type: ignore[no-untyped-def]
    """A GPT-style decoder as ONNX text: int64 ids, Gather, LayerNormalization, the attention's
    MatMuls and constant causal mask, and the tied head reading wte.weight (stored once)."""
    model = build_model(archc.loads(SMALL_TRANSFORMER).analysis, weights="zeros")
    golden(GOLDEN / "small_transformer.onnx.txt", onnx_text(model))


def test_golden_alexnet_lecture(golden) -> None:
    model = build_model(archc.load(SPECS / "alexnet_lecture.arch").analysis, weights="zeros")
    golden(GOLDEN / "alexnet_lecture.onnx.txt", onnx_text(model))


def test_output_is_deterministic(tmp_path: Path) -> None:
    net = archc.loads(EVERY_KIND)
    a, b = build_model(net.analysis, seed=3), build_model(net.analysis, seed=3)
    assert a.SerializeToString() == b.SerializeToString()
    assert build_model(net.analysis, seed=4).SerializeToString() != a.SerializeToString()
    write_model(net.analysis, tmp_path / "1.onnx", seed=3)
    write_model(net.analysis, tmp_path / "2.onnx", seed=3)
    assert (tmp_path / "1.onnx").read_bytes() == (tmp_path / "2.onnx").read_bytes()


def test_streamed_write_equals_saving_the_built_model(tmp_path: Path) -> None:
    net = archc.loads(EVERY_KIND)
    model = build_model(net.analysis, seed=5)
    assert save_model(model, tmp_path / "saved.onnx") == [tmp_path / "saved.onnx"]
    write_model(net.analysis, tmp_path / "streamed.onnx", seed=5)
    assert (tmp_path / "saved.onnx").read_bytes() == (tmp_path / "streamed.onnx").read_bytes()
    assert onnx.load(str(tmp_path / "saved.onnx")) == model


def test_external_data_past_the_threshold(tmp_path: Path) -> None:
    net = archc.loads(EVERY_KIND)
    model = build_model(net.analysis, seed=2)
    before = model.SerializeToString()
    path = tmp_path / "big.onnx"
    written = save_model(model, path, threshold=1000)
    # issue 12, item 7: the data is named after its content, so model and data are replaced as a pair
    assert written[0] == path and written[1].parent == tmp_path
    assert re.fullmatch(r"big\.onnx\.[0-9a-f]{16}\.data", written[1].name)
    assert model.SerializeToString() == before  # the model in memory is untouched
    # every tensor past 1000 bytes lives in the data file, the others in the model
    bare = onnx.load(str(path), load_external_data=False)
    for t in bare.graph.initializer:
        external = t.data_location == onnx.TensorProto.EXTERNAL
        assert external == (4 * int(np.prod(t.dims)) > 1000), t.name
    assert written[1].stat().st_size >= sum(4 * int(np.prod(t.dims)) for t in bare.graph.initializer if t.data_location)
    onnx.checker.check_model(str(path), full_check=True)
    loaded = onnx.load(str(path))  # reads the external data back
    for a, b in zip(loaded.graph.initializer, model.graph.initializer, strict=True):
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))
    x = np.random.default_rng(1).standard_normal((2, 4, 20, 20), dtype=np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"input": x})[0], _run(model, x))
    # streamed from the weights, the same two files
    write_model(net.analysis, tmp_path / "s" / "big.onnx", seed=2, threshold=1000)
    for f in written:
        assert (tmp_path / "s" / f.name).read_bytes() == f.read_bytes()


def test_below_the_threshold_no_data_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    assert save_model(build_model(archc.loads(EVERY_KIND).analysis), path) == [path]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    net = archc.loads("input 4\nfc1: fc 3")
    with pytest.raises(Exception, match="do not fit"):
        write_model(net.analysis, tmp_path / "m.onnx", weights={"fc1.weight": np.zeros((3, 4), np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_network_to_onnx_facade(tmp_path: Path) -> None:
    net = archc.loads("input 4\nfc1: fc 3")
    model = net.to_onnx(tmp_path / "m.onnx", weights="zeros")
    assert onnx.load(str(tmp_path / "m.onnx")) == model


# --- layernorm ----------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_over_channels_first_and_written_out_below_opset_17(bias: bool) -> None:
    """LayerNormalization on the last axis (transposed there from axis 1), and the same in plain ops at 13-16."""
    net = archc.loads(f"input 3x5x4\nln: layernorm eps=1e-3 bias={str(bias).lower()}\n")
    rng = np.random.default_rng(0)
    weights = {"ln.weight": rng.standard_normal(4, dtype=np.float32)}
    if bias:
        weights["ln.bias"] = rng.standard_normal(4, dtype=np.float32)
    x = rng.standard_normal((2, 4, 3, 5), dtype=np.float32)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * weights["ln.weight"][:, None, None]
    if bias:
        expected += weights["ln.bias"][:, None, None]
    new, old = build_model(net.analysis, weights=weights), build_model(net.analysis, weights=weights, opset=16)
    assert [n.op_type for n in new.graph.node] == ["Transpose", "LayerNormalization", "Transpose"]
    assert "LayerNormalization" not in {n.op_type for n in old.graph.node}
    for model in (new, old):
        _check_against_ir(net, model)
        np.testing.assert_allclose(_run(model, x), expected, rtol=1e-4, atol=1e-5)
