"""The sequence kinds against torch.nn, on random sizes: both back-ends, one reference.

Each case writes a one-layer (or few-layer) spec, builds archc's PyTorch module
and ONNX graph, loads the reference torch.nn module's weights into both, and
compares: parameter counts with `sum(p.numel())`, and outputs on random input
(onnxruntime and the generated module, each against the reference). The
references are torch's own modules (nn.LayerNorm, nn.RMSNorm,
nn.MultiheadAttention with and without a causal mask, nn.Embedding) or, where
torch has none (rotary positions, grouped-query heads), the formula written
out here.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import archc  # noqa: E402
from archc.analysis.tensors import tensor_specs, tied_keys  # noqa: E402
from archc.backends.onnx.generate import build_model  # noqa: E402

nn = torch.nn
EXAMPLES = settings(max_examples=12, deadline=None, derandomize=True)
TOLERANCE = 1e-4  # relative to the output's scale, as `archc run --check`


def _close(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, what
    error = np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12)
    assert error <= TOLERANCE, f"{what}: max relative error {error:.2e}"


def _both(spec: str, state: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """archc's PyTorch module and onnxruntime on archc's ONNX, both with `state`, on `x`."""
    net = archc.loads(spec)
    assert sorted(s.name for s in tensor_specs(net.analysis)) == sorted(k for k in state if k not in tied_keys(net.analysis))
    module = net.to_torch().eval()
    module.load_state_dict(state, strict=True)
    with torch.no_grad():
        ours = module(x).numpy()
    weights = {k: v.detach().numpy() for k, v in state.items() if k not in tied_keys(net.analysis)}
    session = ort.InferenceSession(build_model(net.analysis, weights=weights).SerializeToString(), providers=["CPUExecutionProvider"])
    return ours, session.run(None, {"input": x.numpy()})[0]


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """Every parameter drawn anew (so that no LayerNorm is the identity, no bias zero)."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-1, 1)
    return module.eval()


@EXAMPLES
@given(st.integers(1, 9), st.integers(1, 12), st.booleans())
def test_layernorm_on_a_sequence_is_nn_layernorm(length: int, c: int, bias: bool) -> None:
    ref = _randomised(nn.LayerNorm(c, eps=1e-5, bias=bias))
    spec = f"input {length}x{c}\nn: layernorm bias={str(bias).lower()}"
    assert archc.loads(spec).params == sum(p.numel() for p in ref.parameters())
    x = torch.randn(2, length, c)
    with torch.no_grad():
        expected = ref(x).numpy()
    ours, onnx_out = _both(spec, {f"n.{k}": v for k, v in ref.state_dict().items()}, x)
    _close(ours, expected, "torch")
    _close(onnx_out, expected, "onnxruntime")


@EXAMPLES
@given(st.integers(1, 9), st.integers(1, 12), st.sampled_from([1e-6, 1e-5, 0.1]), st.booleans())
def test_rmsnorm_is_nn_rmsnorm(length: int, c: int, eps: float, flat: bool) -> None:
    ref = _randomised(nn.RMSNorm(c, eps=eps))
    spec = f"input {c if flat else f'{length}x{c}'}\nn: rmsnorm eps={eps}"
    assert archc.loads(spec).params == sum(p.numel() for p in ref.parameters()) == c
    x = torch.randn(2, c) if flat else torch.randn(2, length, c)
    with torch.no_grad():
        expected = ref(x).numpy()
    ours, onnx_out = _both(spec, {f"n.{k}": v for k, v in ref.state_dict().items()}, x)
    _close(ours, expected, "torch")
    _close(onnx_out, expected, "onnxruntime")


@st.composite
def attention_cases(draw: st.DrawFn) -> tuple[int, int, int, bool, bool]:
    heads = draw(st.integers(1, 4))
    width = draw(st.integers(1, 5))
    return draw(st.integers(1, 9)), heads, heads * width, draw(st.booleans()), draw(st.booleans())


@EXAMPLES
@given(attention_cases())
def test_attention_is_nn_multiheadattention(case: tuple[int, int, int, bool, bool]) -> None:
    """q, k, v, o are MultiheadAttention's in_proj rows and out_proj; causal is its causal mask."""
    length, heads, c, causal, bias = case
    ref = _randomised(nn.MultiheadAttention(c, heads, bias=bias, batch_first=True))
    spec = f"input {length}x{c}\na: attention {heads} causal={str(causal).lower()} bias={str(bias).lower()}"
    net = archc.loads(spec)
    assert net.params == sum(p.numel() for p in ref.parameters())
    assert net.macs == length * 4 * c * c + 2 * length * length * c
    w = ref.in_proj_weight.detach()
    state = {"a.q.weight": w[:c], "a.k.weight": w[c : 2 * c], "a.v.weight": w[2 * c :], "a.o.weight": ref.out_proj.weight}
    if bias:
        b = ref.in_proj_bias.detach()
        state |= {"a.q.bias": b[:c], "a.k.bias": b[c : 2 * c], "a.v.bias": b[2 * c :], "a.o.bias": ref.out_proj.bias}
    x = torch.randn(3, length, c)
    mask = nn.Transformer.generate_square_subsequent_mask(length) if causal else None
    with torch.no_grad():
        expected = ref(x, x, x, attn_mask=mask, need_weights=False)[0].numpy()
    ours, onnx_out = _both(spec, {k: v.detach().clone() for k, v in state.items()}, x)
    _close(ours, expected, "torch")
    _close(onnx_out, expected, "onnxruntime")


def _reference_attention(
    x: torch.Tensor, state: dict[str, torch.Tensor], heads: int, kv: int, causal: bool, base: float | None
) -> torch.Tensor:
    """Grouped-query attention with optional rotary positions, written out from the formulas."""
    b, length, c = x.shape
    width = c // heads

    def proj(name: str, n: int) -> torch.Tensor:  # [b, n, L, width]
        return (x @ state[f"a.{name}.weight"].T).reshape(b, length, n, width).permute(0, 2, 1, 3)

    q, k, v = proj("q", heads), proj("k", kv), proj("v", kv)
    if base is not None:  # pairs (i, i + width/2) turned by p * base**(-2i/width)
        i = torch.arange(width // 2, dtype=torch.float64)
        angle = torch.arange(length, dtype=torch.float64)[:, None] * base ** (-2 * i / width)
        cos, sin = angle.cos().float(), angle.sin().float()

        def turn(t: torch.Tensor) -> torch.Tensor:
            a, b2 = t[..., : width // 2], t[..., width // 2 :]
            return torch.cat([a * cos - b2 * sin, b2 * cos + a * sin], dim=-1)

        q, k = turn(q), turn(k)
    group = heads // kv
    k = torch.stack([k[:, h // group] for h in range(heads)], dim=1)  # query head h reads kv head h // group
    v = torch.stack([v[:, h // group] for h in range(heads)], dim=1)
    scores = q @ k.transpose(-1, -2) / width**0.5
    if causal:
        scores = scores.masked_fill(torch.ones(length, length).triu(1).bool(), float("-inf"))
    y = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(b, length, c)
    return y @ state["a.o.weight"].T


@EXAMPLES
@given(
    st.integers(1, 9),
    st.sampled_from([(2, 1), (4, 2), (4, 1), (6, 3), (3, 3)]),
    st.integers(1, 3),
    st.booleans(),
    st.sampled_from([None, 10000.0, 50.0]),
)
def test_grouped_query_and_rotary_attention_match_their_formulas(
    length: int, heads_kv: tuple[int, int], half_width: int, causal: bool, base: float | None
) -> None:
    heads, kv = heads_kv
    c = heads * 2 * half_width
    e = c // heads * kv
    rope = "" if base is None else f" rope=true rope_base={base:g}"
    spec = f"input {length}x{c}\na: attention {heads} kv={kv} causal={str(causal).lower()}{rope} bias=false"
    net = archc.loads(spec)
    assert net.params == 2 * c * c + 2 * c * e  # LANGUAGE.md: weights 2*C*C + 2*C*E
    assert net.macs == length * (2 * c * c + 2 * c * e) + 2 * length * length * c
    g = torch.Generator().manual_seed(length * 100 + c)
    state = {f"a.{n}.weight": torch.randn(rows, c, generator=g) / c**0.5 for n, rows in zip("qkvo", (c, e, e, c), strict=True)}
    x = torch.randn(2, length, c, generator=g)
    expected = _reference_attention(x, state, heads, kv, causal, base).numpy()
    ours, onnx_out = _both(spec, state, x)
    _close(ours, expected, "torch")
    _close(onnx_out, expected, "onnxruntime")


@EXAMPLES
@given(st.integers(1, 30), st.integers(1, 8), st.integers(1, 10))
def test_embedding_is_nn_embedding(vocabulary: int, width: int, length: int) -> None:
    ref = nn.Embedding(vocabulary, width).eval()
    spec = f"input {length} tokens\nwte: embedding V={vocabulary} D={width}"
    net = archc.loads(spec)
    assert net.params == sum(p.numel() for p in ref.parameters()) and net.output_shape == (length, width)
    ids = torch.randint(0, vocabulary, (3, length))
    with torch.no_grad():
        expected = ref(ids).numpy()
    ours, onnx_out = _both(spec, {"wte.weight": ref.weight.detach()}, ids)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(onnx_out, expected)


@EXAMPLES
@given(st.integers(1, 20), st.integers(1, 8), st.integers(1, 10))
def test_a_tied_output_layer_is_the_embedding_transposed(vocabulary: int, width: int, length: int) -> None:
    """`fc V tie=wte`: logits = h @ wte.weight^T (+ its own bias); the weight counted once."""
    spec = f"input {length} tokens\nwte: embedding V={vocabulary} D={width}\nhead: fc {vocabulary} tie=wte"
    net = archc.loads(spec)
    assert net.params == vocabulary * width + vocabulary
    module = net.to_torch()
    assert module.head.weight is module.wte.weight  # one tensor, as PyTorch ties weights
    assert sum(p.numel() for p in module.parameters()) == net.params
    table, bias = torch.randn(vocabulary, width), torch.randn(vocabulary)
    ids = torch.randint(0, vocabulary, (2, length))
    expected = (table[ids] @ table.T + bias).numpy()
    ours, onnx_out = _both(spec, {"wte.weight": table, "head.weight": table, "head.bias": bias}, ids)
    _close(ours, expected, "torch")
    _close(onnx_out, expected, "onnxruntime")


@EXAMPLES
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5), st.integers(0, 4), st.integers(-3, 3))
def test_vit_reshapes_match_their_definitions(h: int, w: int, c: int, extra_rows: int, index: int) -> None:
    """tokens (row-major, as ViT's flatten(2).transpose(1, 2)), clstoken first, posembed's first
    L rows, select (negative from the end)."""
    length = h * w + 1
    index = max(-length, min(index, length - 1))
    spec = f"input {h}x{w}x{c}\ntokens\ncls: clstoken\npos: posembed T={length + extra_rows}\nselect {index}"
    net = archc.loads(spec)
    assert net.params == c + (length + extra_rows) * c
    cls, table = torch.randn(1, 1, c), torch.randn(length + extra_rows, c)
    x = torch.randn(2, c, h, w)
    seq = torch.cat([cls.expand(2, -1, -1), x.flatten(2).transpose(1, 2)], dim=1) + table[:length]
    expected = seq[:, index].numpy()
    ours, onnx_out = _both(spec, {"cls.weight": cls, "pos.weight": table}, x)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-6)
