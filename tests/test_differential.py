"""Differential tests: onnxruntime on archc's ONNX graph vs the PyTorch module, spec by spec.

Same weights, same fresh random input at batch 3: outputs agree within 1e-4
relative to the output's scale, and the parameter counts of the IR, of
`sum(p.numel())` and of the ONNX initializers (less batchnorm buffers) agree.
The tensors PyTorch initialises to constants (batchnorm's scale, shift and
running statistics, layernorm's, layer scales) are drawn at random here, so
that no normalisation is the identity and no block is scaled to nothing.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
pytest.importorskip("archc.backends.torch.generate")

from conftest import compiled_specs  # noqa: E402
from test_onnx_gen import EVERY_KIND, EVERY_KIND_1D, EVERY_KIND_3D, SEQUENCE_SPECS  # noqa: E402

import archc  # noqa: E402
from archc.analysis.tensors import (  # noqa: E402
    Init,
    Role,
    tensor_specs,
    tied_keys,
)
from archc.backends.onnx.generate import build_model  # noqa: E402
from archc.backends.onnx.runtime import CHECK_TOLERANCE  # noqa: E402
from archc.backends.weights import make_weights  # noqa: E402
from archc.ir import INPUT, Layout  # noqa: E402

BATCH = 3


def _random_weights(net) -> dict:
    """PyTorch's init, with every constant-initialised tensor redrawn: running variances, scales and
    layer scales in [0.5, 1.5], running means and shifts around 0."""
    weights = make_weights(net.analysis, "random", seed=11)
    rng = np.random.default_rng(12)
    for spec in tensor_specs(net.analysis):
        if spec.init in (Init.ONES, Init.CONSTANT):
            weights[spec.name] = rng.uniform(0.5, 1.5, spec.shape).astype(np.float32)
        elif spec.init is Init.ZEROS:
            weights[spec.name] = rng.normal(0.0, 0.2, spec.shape).astype(np.float32)
    return weights


def _compare(net) -> None:
    weights = _random_weights(net)
    model = build_model(net.analysis, weights=weights)
    module = net.to_torch()
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    state.update({alias: state[owner] for alias, owner in tied_keys(net.analysis).items()})  # PyTorch lists both
    module.load_state_dict(state, strict=True)
    module.eval()

    buffers = sum(s.numel for s in tensor_specs(net.analysis) if s.role is Role.BUFFER)
    onnx_elements = sum(int(np.prod(t.dims)) for t in model.graph.initializer if not t.name.startswith("/"))
    assert net.params == sum(p.numel() for p in module.parameters()) == onnx_elements - buffers

    rng = np.random.default_rng(zlib.crc32(net.name.encode()))  # fresh per spec, reproducible
    dims = (BATCH, *net.analysis.physical(INPUT))
    if net.graph.input_shape.layout is Layout.TOKENS:  # random ids, below the smallest vocabulary
        vocabulary = min(n.attrs["V"] for n in net.graph.nodes if n.kind == "embedding")
        x = rng.integers(0, vocabulary, dims, dtype=np.int64)
    else:
        x = rng.standard_normal(dims, dtype=np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape == (BATCH, *net.analysis.physical(net.graph.output))
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error <= CHECK_TOLERANCE, f"{net.name}: max relative error {error:.2e}"


@pytest.mark.parametrize("spec", compiled_specs(), ids=lambda p: p.stem)
def test_onnxruntime_matches_pytorch(spec: Path) -> None:
    _compare(archc.load(spec))


@pytest.mark.parametrize("text", [EVERY_KIND, EVERY_KIND_1D, EVERY_KIND_3D], ids=["2d", "1d", "3d"])
def test_every_kind_matches_pytorch(text: str) -> None:
    _compare(archc.loads(text, filename="every.arch"))


@pytest.mark.parametrize("text", SEQUENCE_SPECS, ids=["language", "vision"])
def test_every_sequence_kind_matches_pytorch(text: str) -> None:
    _compare(archc.loads(text))


@pytest.mark.parametrize(
    "layer",
    [
        "avgpool F=3 S=2 P=1 ceil=true",  # the ceil window that PyTorch clips to the padded input
        "avgpool F=4 S=3 P=1 ceil=true",
        "maxpool F=3 S=2 P=1 ceil=true",
        "maxpool F=2 S=3 ceil=true",
        "conv K=6 F=3 S=2 P=same D=1",
        "conv K=6 F=2x3 S=2x1 P=1x0 D=2x1 G=3",
        "lrn size=3 alpha=0.1 beta=0.7 k=1.5",
        "lrn size=4 alpha=0.1 beta=0.7 k=1.5",  # even: written out, ONNX's LRN takes odd sizes only
        "lrn size=2",
        "adaptiveavgpool 5x2",
        "adaptiveavgpool 3",  # 10 -> 3: uneven, overlapping windows (MatMul lowering)
        "adaptiveavgpool 6x4",
        "adaptiveavgpool 7x10",  # rows uneven, columns unchanged
        "convtranspose K=4 F=3 S=2 P=1 O=1",
        "convtranspose K=6 F=2x4 S=3x2 P=0x1 O=2x1 D=1x2 G=3 bias=false",
        "upsample 3 mode=linear",
        "upsample 2x3",
        "crop 7x8",  # odd excess: the extra row and column are cut at the end
        "crop 6",
        "gelu approx=tanh",
        "hardswish",
        "hardsigmoid",
        "silu",
    ],
)
def test_window_edge_cases_match_pytorch(layer: str) -> None:
    _compare(archc.loads(f"input 10x10x3\n{layer}\n", filename="edge.arch"))


def test_positional_block_calls_match_pytorch() -> None:
    """The generated module passes positional block arguments on by name (`Fire(16, SQ=8, E=16)`)."""
    text = """
block Fire(SQ, E) {
  conv K=SQ F=1; relu
  concat {
    branch { conv K=E F=1; relu }
    branch { conv K=E F=3 P=1; relu }
  }
}
block Basic(K, S=1) {
  residual { conv K=K F=3 S=S P=1; relu } shortcut { conv K=K F=1 S=S }
}
input 16x16x3
fire1: Fire 8 16
fire2: Fire 8 E=32
b: Basic 32 2 -> 8x8x32
fc 10
"""
    _compare(archc.loads(text, filename="positional.arch"))


def _ceil_pool_layers(count: int, seed: int) -> list[tuple[str, str]]:
    """(input, layer) pairs: random ceil-mode pools at ranks 1 to 3, each window no larger than the input
    (PyTorch refuses larger ones), with the shapes archc accepts; about half drop a last window
    that would start in the padding, which is what they test."""
    rng = np.random.default_rng(seed)
    cases: list[tuple[str, str]] = [("3x3x2", "avgpool F=2 S=2 P=1 ceil=true")]  # the issue's
    while len(cases) < count:
        rank = int(rng.integers(1, 4))
        f = [int(rng.integers(1, 5)) for _ in range(rank)]
        n = [int(rng.integers(fi, 10)) for fi in f]
        s = [int(rng.integers(1, 5)) for _ in range(rank)]
        p = [int(rng.integers(0, fi // 2 + 1)) for fi in f]
        kind = ("avgpool", "maxpool")[int(rng.integers(2))]
        x = "x".join
        cases.append((f"{x(map(str, n))}x2", f"{kind} F={x(map(str, f))} S={x(map(str, s))} P={x(map(str, p))} ceil=true"))
    return cases


@pytest.mark.parametrize(("shape", "layer"), _ceil_pool_layers(60, seed=10))
def test_ceil_pools_are_valid_onnx_and_match_pytorch(shape: str, layer: str, capfd) -> None:
    """Where PyTorch drops a ceil-mode window that would start in the padding, ONNX's shape inference
    counted it: `check_model(full_check=True)` failed and onnxruntime warned "Error merging shape
    info". The lowering pads less (or zero-pads first), so shapes agree and values stay PyTorch's."""
    net = archc.loads(f"input {shape}\n{layer}\n", filename="ceil.arch")
    model = build_model(net.analysis, weights="zeros")
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    dims = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim[1:]]
    assert dims == list(net.analysis.physical(net.graph.output))
    options = ort.SessionOptions()
    options.log_severity_level = 1  # warnings and above: the shape-merge warning is one
    capfd.readouterr()
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(zlib.crc32(layer.encode())).standard_normal((2, *net.analysis.physical(INPUT)), dtype=np.float32)
    got = sess.run(None, {"input": x})[0]
    assert "merging shape info" not in capfd.readouterr().err
    with torch.no_grad():
        expected = net.to_torch().eval()(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, float(np.abs(expected).max()))
