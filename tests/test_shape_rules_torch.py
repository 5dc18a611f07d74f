"""The registry's shape and parameter rules, cross-checked against real torch.nn layers.

Each case writes a one-layer spec, compiles it with archc, and applies the
torch layer the rule claims to describe to a tensor of the input's size:
the output shapes (archc's HxWxC against torch's CxHxW, at every rank: 1-D
signals, images, volumes) and the parameter counts must agree, and where
torch refuses the input, archc must refuse the spec. A few hundred random
examples in all.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import archc  # noqa: E402
from archc.ir import INPUT  # noqa: E402

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
    return (*dims[1:], dims[0]) if len(dims) >= 2 else dims  # channels first -> archc's channels last


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


# --- contract v2: 1-D and 3-D ------------------------------------------------------------------
def _sizes(draw: st.DrawFn, rank: int, low: int, high: int) -> tuple[int, ...]:
    a = draw(st.integers(low, high))
    if draw(st.booleans()):
        return (a,) * rank
    return tuple(draw(st.integers(low, high)) for _ in range(rank))


def _dims_text(sizes: tuple[int, ...]) -> str:
    return str(sizes[0]) if len(set(sizes)) == 1 else "x".join(map(str, sizes))


def _input_text(spatial: tuple[int, ...], c: int) -> str:
    return "x".join(map(str, (*spatial, c)))


@st.composite
def nd_conv_cases(draw: st.DrawFn) -> tuple[str, torch.nn.Module, tuple[int, ...]]:
    rank = draw(st.sampled_from([1, 3]))
    spatial = tuple(draw(st.integers(1, 12 if rank == 1 else 7)) for _ in range(rank))
    g = draw(st.sampled_from([1, 1, 2]))
    c, k = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    f, s_, d = _sizes(draw, rank, 1, 4), _sizes(draw, rank, 1, 3), _sizes(draw, rank, 1, 2)
    p = _sizes(draw, rank, 0, 2)
    bias = draw(st.booleans())
    spec = (
        f"input {_input_text(spatial, c)}\nconv K={k} F={_dims_text(f)} S={_dims_text(s_)} P={_dims_text(p)} "
        f"D={_dims_text(d)} G={g} bias={str(bias).lower()}"
    )
    cls = nn.Conv1d if rank == 1 else nn.Conv3d
    return spec, cls(c, k, f, s_, p, d, g, bias), (c, *spatial)


@EXAMPLES
@given(nd_conv_cases())
def test_conv_1d_and_3d(case: tuple[str, torch.nn.Module, tuple[int, ...]]) -> None:
    _agree(*case)


@st.composite
def nd_pool_cases(draw: st.DrawFn) -> tuple[str, torch.nn.Module, tuple[int, ...]]:
    rank = draw(st.sampled_from([1, 3]))
    spatial = tuple(draw(st.integers(1, 12 if rank == 1 else 7)) for _ in range(rank))
    c = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["maxpool", "avgpool"]))
    f = _sizes(draw, rank, 1, 4)
    s_ = draw(st.one_of(st.none(), st.just(_sizes(draw, rank, 1, 3))))
    p = tuple(draw(st.integers(0, fi // 2)) for fi in f)
    ceil = draw(st.booleans())
    stride = f"S={_dims_text(s_)} " if s_ is not None else ""
    spec = f"input {_input_text(spatial, c)}\n{kind} F={_dims_text(f)} {stride}P={_dims_text(p)} ceil={str(ceil).lower()}"
    cls = {("maxpool", 1): nn.MaxPool1d, ("maxpool", 3): nn.MaxPool3d, ("avgpool", 1): nn.AvgPool1d, ("avgpool", 3): nn.AvgPool3d}
    return spec, cls[kind, rank](f, s_, p, ceil_mode=ceil), (c, *spatial)


@EXAMPLES
@given(nd_pool_cases())
def test_pools_1d_and_3d(case: tuple[str, torch.nn.Module, tuple[int, ...]]) -> None:
    _agree(*case)


@EXAMPLES
@given(st.sampled_from([1, 3]), st.data())
def test_adaptive_global_batchnorm_flatten_1d_and_3d(rank: int, data: st.DataObject) -> None:
    spatial = tuple(data.draw(st.integers(1, 9)) for _ in range(rank))
    c = data.draw(st.integers(1, 4))
    out = tuple(data.draw(st.integers(1, 5)) for _ in range(rank))
    inp = _input_text(spatial, c)
    adaptive, bn = (nn.AdaptiveAvgPool1d, nn.BatchNorm1d) if rank == 1 else (nn.AdaptiveAvgPool3d, nn.BatchNorm3d)
    _agree(f"input {inp}\nadaptiveavgpool {'x'.join(map(str, out))}", adaptive(out), (c, *spatial))
    _agree(f"input {inp}\nglobalavgpool", adaptive(1), (c, *spatial))
    _agree(f"input {inp}\nbatchnorm", bn(c).eval(), (c, *spatial))
    _agree(f"input {inp}\nflatten", nn.Flatten(), (c, *spatial))


class _PerPosition(nn.Module):
    """nn.Linear on every position of a [batch, C, L] sequence."""

    def __init__(self, linear: torch.nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


@EXAMPLES
@given(st.integers(1, 20), st.integers(1, 6), st.integers(1, 9), st.booleans())
def test_fc_acts_on_every_position_of_a_sequence(length: int, c: int, n: int, bias: bool) -> None:
    linear = nn.Linear(c, n, bias=bias)
    spec = f"input {length}x{c}\nfc {n} bias={str(bias).lower()}"
    _agree(spec, _PerPosition(linear), (c, length))
    net = archc.loads(spec)
    assert net.macs == length * c * n
    module = net.to_torch().eval()
    module.load_state_dict({f"fc1.{k}": v for k, v in linear.state_dict().items()})
    # a sequence read by fc alone is held [batch, L, C] (archc.analysis.orders): nn.Linear on it as it is
    assert net.analysis.physical(INPUT) == (length, c)
    x = torch.randn(2, length, c)
    with torch.no_grad():
        torch.testing.assert_close(module(x), linear(x))


@st.composite
def convtranspose_cases(draw: st.DrawFn) -> tuple[str, torch.nn.Module, tuple[int, ...]]:
    rank = draw(st.sampled_from([1, 2, 3]))
    spatial = tuple(draw(st.integers(1, 9 if rank < 3 else 5)) for _ in range(rank))
    g = draw(st.sampled_from([1, 1, 2, 3]))
    c, k = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    f, s_, d = _sizes(draw, rank, 1, 4), _sizes(draw, rank, 1, 3), _sizes(draw, rank, 1, 2)
    p = _sizes(draw, rank, 0, 2)
    o = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s_, d, strict=True))  # O < S or O < D
    bias = draw(st.booleans())
    spec = (
        f"input {_input_text(spatial, c)}\nconvtranspose K={k} F={_dims_text(f)} S={_dims_text(s_)} "
        f"P={_dims_text(p)} O={_dims_text(o)} D={_dims_text(d)} G={g} bias={str(bias).lower()}"
    )
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[rank]
    return spec, cls(c, k, f, s_, p, o, g, bias, d), (c, *spatial)


@EXAMPLES
@given(convtranspose_cases())
def test_convtranspose_shape_params_macs_and_values(case: tuple[str, torch.nn.Module, tuple[int, ...]]) -> None:
    """Output padding, dilation and groups at every rank; MACs = input positions * F*C*(K/G)."""
    spec, layer, chw = case
    _agree(spec, layer, chw)
    net = _archc(spec)
    if net is None:
        return
    assert net.macs == math.prod(chw[1:]) * layer.weight.numel()
    module = net.to_torch().eval()
    module.load_state_dict({f"convtranspose1.{k}": v for k, v in layer.state_dict().items()})
    x = torch.randn(2, *chw)
    with torch.no_grad():
        torch.testing.assert_close(module(x), layer(x))


@EXAMPLES
@given(st.sampled_from([1, 2, 3]), st.sampled_from(["nearest", "linear"]), st.data())
def test_upsample_both_modes_against_nn_upsample(rank: int, mode: str, data: st.DataObject) -> None:
    spatial = tuple(data.draw(st.integers(1, 7)) for _ in range(rank))
    factor = _sizes(data.draw, rank, 1, 3)
    c = data.draw(st.integers(1, 3))
    torch_mode = mode if mode == "nearest" else {1: "linear", 2: "bilinear", 3: "trilinear"}[rank]
    corners = None if mode == "nearest" else False
    layer = nn.Upsample(scale_factor=tuple(float(f) for f in factor), mode=torch_mode, align_corners=corners)
    spec = f"input {_input_text(spatial, c)}\nupsample {_dims_text(factor)} mode={mode}"
    _agree(spec, layer, (c, *spatial))
    x = torch.randn(2, c, *spatial)
    with torch.no_grad():
        torch.testing.assert_close(archc.loads(spec).to_torch()(x), layer(x))


@EXAMPLES
@given(st.sampled_from([1, 2, 3]), st.data())
def test_crop_centred_with_the_odd_row_cut_at_the_end(rank: int, data: st.DataObject) -> None:
    """An even excess cuts half at each end; an odd one cuts the extra row (column, frame) at the end."""
    spatial = tuple(data.draw(st.integers(1, 9)) for _ in range(rank))
    keep = tuple(data.draw(st.integers(1, n)) for n in spatial)
    c = data.draw(st.integers(1, 3))
    net = archc.loads(f"input {_input_text(spatial, c)}\ncrop {_dims_text(keep)}")
    assert net.output_shape == (*keep, c) and net.params == 0
    x = torch.randn(2, c, *spatial)
    index = (slice(None), slice(None), *(slice((n - k) // 2, (n - k) // 2 + k) for n, k in zip(spatial, keep, strict=True)))
    with torch.no_grad():
        torch.testing.assert_close(net.to_torch()(x), x[index])
    too_big = tuple(n + 1 for n in spatial)
    assert _archc(f"input {_input_text(spatial, c)}\ncrop {_dims_text(too_big)}") is None


@pytest.mark.parametrize(
    ("spec", "module"),
    [
        ("silu", nn.SiLU()),
        ("hardswish", nn.Hardswish()),
        ("hardsigmoid", nn.Hardsigmoid()),
        ("gelu approx=tanh", nn.GELU(approximate="tanh")),
        ("gelu", nn.GELU()),
        ("droppath 0.3", nn.Identity()),  # the identity in eval mode
    ],
)
def test_new_activations_are_pytorchs(spec: str, module: torch.nn.Module) -> None:
    net = archc.loads(f"input 5x6x3\n{spec}")
    x = torch.linspace(-6, 6, 2 * 3 * 5 * 6).reshape(2, 3, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(net.to_torch().eval()(x), module(x))


def test_droppath_drops_whole_samples_in_training() -> None:
    torch.manual_seed(0)
    module = archc.loads("input 4x4x2\ndroppath 0.5").to_torch().train()
    y = module(torch.ones(64, 2, 4, 4))
    per_sample = {float(v) for v in y.reshape(64, -1).unique(dim=0).flatten()}
    assert per_sample <= {0.0, 2.0} and per_sample == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1-p)


def test_layerscale_is_a_parameter_shaped_to_broadcast() -> None:
    net = archc.loads("input 3x4x4x8\nls: layerscale init=0.25\nglobalavgpool\nflatten\nls2: layerscale")
    module = net.to_torch()
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert shapes == {"ls": (8, 1, 1, 1), "ls2": (8,)} and net.params == 16
    assert torch.all(module.ls == 0.25) and torch.all(module.ls2 == 1e-6)
    x = torch.randn(2, 8, 3, 4, 4)
    torch.testing.assert_close(module(x), x.mean(dim=(2, 3, 4)) * 0.25 * 1e-6)
