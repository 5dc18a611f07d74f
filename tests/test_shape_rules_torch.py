"""The registry's shape and parameter rules, cross-checked against real torch.nn layers.

Each case writes a one-layer spec, compiles it with archc, and applies the
torch layer the rule claims to describe to a tensor of the input's size:
the output shapes (archc's HxWxC against torch's CxHxW) and the parameter
counts must agree, and where torch refuses the input, archc must refuse the
spec. About a hundred random examples in all.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import archc  # noqa: E402

nn = torch.nn
EXAMPLES = settings(max_examples=20, deadline=None, derandomize=True)


def _torch_out(layer: torch.nn.Module, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The per-sample output shape, in archc's order (HxWxC or N); None when torch refuses."""
    try:
        with torch.no_grad():
            y = layer(torch.zeros(1, *shape))
    except RuntimeError:
        return None
    dims = tuple(y.shape[1:])
    return (dims[1], dims[2], dims[0]) if len(dims) == 3 else dims


def _archc(spec: str) -> archc.Network | None:
    try:
        return archc.loads(spec)
    except archc.SpecError:
        return None


def _agree(spec: str, layer: torch.nn.Module, chw: tuple[int, ...]) -> None:
    net = _archc(spec)
    expected = _torch_out(layer, chw)
    if expected is None:
        assert net is None, f"torch refuses {spec!r}, archc gives {net and net.output_shape}"
        return
    assert net is not None, f"archc refuses {spec!r}, torch gives {expected}"
    assert net.output_shape == expected, spec
    assert net.params == sum(p.numel() for p in layer.parameters()), spec


def _pair(draw: st.DrawFn, low: int, high: int) -> tuple[int, int]:
    a = draw(st.integers(low, high))
    return (a, a) if draw(st.booleans()) else (a, draw(st.integers(low, high)))


def _text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


@st.composite
def conv_cases(draw: st.DrawFn) -> tuple[str, torch.nn.Module, tuple[int, ...]]:
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    g = draw(st.sampled_from([1, 1, 2, 3]))
    c, k = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    f, s, d = _pair(draw, 1, 5), _pair(draw, 1, 3), _pair(draw, 1, 3)
    p = _pair(draw, 0, 3)
    bias = draw(st.booleans())
    spec = (
        f"input {h}x{w}x{c}\nconv K={k} F={_text(f)} S={_text(s)} P={_text(p)} D={_text(d)} G={g} "
        f"bias={str(bias).lower()}"
    )
    return spec, nn.Conv2d(c, k, f, s, p, d, g, bias), (c, h, w)


@EXAMPLES
@given(conv_cases())
def test_conv_shape_and_params(case: tuple[str, torch.nn.Module, tuple[int, ...]]) -> None:
    _agree(*case)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@EXAMPLES
@given(st.integers(1, 20), st.integers(1, 20), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3))
def test_conv_same_padding(h: int, w: int, f: int, s: int, d: int) -> None:
    """P=same: torch's padding="same" at stride 1; TensorFlow's ceil(n/S) at any stride."""
    net = archc.loads(f"input {h}x{w}x2\nconv K=3 F={f} S={s} D={d} P=same")
    assert net.output_shape == (math.ceil(h / s), math.ceil(w / s), 3)
    if s == 1:
        assert _torch_out(nn.Conv2d(2, 3, f, 1, "same", d), (2, h, w)) == net.output_shape


@st.composite
def pool_cases(draw: st.DrawFn) -> tuple[str, torch.nn.Module, tuple[int, ...]]:
    h, w, c = draw(st.integers(1, 20)), draw(st.integers(1, 20)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["maxpool", "avgpool"]))
    f = _pair(draw, 1, 5)
    s = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    p = (draw(st.integers(0, f[0])), draw(st.integers(0, f[1])))  # more than F/2 is an error in both
    ceil = draw(st.booleans())
    stride = f"S={_text(s)} " if s is not None else ""
    spec = f"input {h}x{w}x{c}\n{kind} F={_text(f)} {stride}P={_text(p)} ceil={str(ceil).lower()}"
    cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
    return spec, cls(f, s, p, ceil_mode=ceil), (c, h, w)


@EXAMPLES
@given(pool_cases())
def test_pool_shape_floor_and_ceil(case: tuple[str, torch.nn.Module, tuple[int, ...]]) -> None:
    spec, layer, chw = case
    try:
        _torch_out(layer, chw)
    except ValueError:  # torch checks "pad should be at most half of kernel size" eagerly
        assert _archc(spec) is None
        return
    _agree(spec, layer, chw)


@EXAMPLES
@given(st.integers(1, 16), st.integers(1, 16), st.integers(1, 4), st.integers(1, 8), st.integers(1, 8), st.booleans())
def test_adaptive_and_global_pool(h: int, w: int, c: int, oh: int, ow: int, square: bool) -> None:
    size = (oh, oh) if square else (oh, ow)
    _agree(f"input {h}x{w}x{c}\nadaptiveavgpool {_text(size)}", nn.AdaptiveAvgPool2d(size), (c, h, w))
    _agree(f"input {h}x{w}x{c}\nglobalavgpool", nn.AdaptiveAvgPool2d(1), (c, h, w))


@EXAMPLES
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 4), st.integers(1, 20), st.booleans())
def test_fc_flattens_a_spatial_input(h: int, w: int, c: int, n: int, bias: bool) -> None:
    layer = nn.Sequential(nn.Flatten(), nn.Linear(h * w * c, n, bias=bias))
    _agree(f"input {h}x{w}x{c}\nfc {n} bias={str(bias).lower()}", layer, (c, h, w))
    _agree(f"input {h}x{w}x{c}\nflatten", nn.Flatten(), (c, h, w))


@EXAMPLES
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 6), st.booleans(), st.booleans())
def test_layernorm_over_the_channels(h: int, w: int, c: int, bias: bool, flat: bool) -> None:
    """nn.LayerNorm(C) over the channels at every position: archc's params, and its generated module's values."""
    spec = f"input {c if flat else f'{h}x{w}x{c}'}\nlayernorm eps=1e-3 bias={str(bias).lower()}"
    net = archc.loads(spec)
    ref = nn.LayerNorm(c, eps=1e-3, bias=bias)
    assert net.params == sum(p.numel() for p in ref.parameters())
    x = torch.randn(2, c) if flat else torch.randn(2, c, h, w)
    module = net.to_torch()
    with torch.no_grad():
        for p in ref.parameters():
            p.uniform_(-1, 1)
        module.load_state_dict({f"layernorm1.{k}": v for k, v in ref.state_dict().items()})
        expected = ref(x) if flat else ref(x.movedim(1, -1)).movedim(-1, 1)
        torch.testing.assert_close(module(x), expected)
