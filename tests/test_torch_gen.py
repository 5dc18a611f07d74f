"""The PyTorch generator: every spec builds, and agrees with the IR and with hand-written torch."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from conftest import BASIC_BLOCK, GOLDEN, all_specs  # noqa: E402

import archc  # noqa: E402 - after the importorskip
from archc.analysis.tensors import tensor_specs, tied_keys  # noqa: E402
from archc.backends.torch.generate import HANDLERS, build_module, generate_source  # noqa: E402
from archc.frontend.elaborate import RESERVED_NAMES  # noqa: E402
from archc.ir import INPUT, Layout  # noqa: E402
from archc.kinds import KINDS  # noqa: E402


def _sd_shapes(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [
        (k, tuple(v.shape)) for k, v in module.state_dict().items() if not k.endswith(".num_batches_tracked")
    ]


def _check_against_ir(net: archc.Network, module: torch.nn.Module) -> None:
    assert sum(p.numel() for p in module.parameters()) == net.params
    specs = tensor_specs(net.analysis)
    tied = tied_keys(net.analysis)  # state_dict() lists a tied weight under both names; archc at its owner
    got = [(k, shape) for k, shape in _sd_shapes(module) if k not in tied]
    assert all(module.get_submodule(k.rsplit(".", 1)[0]).weight is module.get_parameter(tied[k]) for k in tied)
    assert dict(got) == {t.name: t.shape for t in specs} and len(got) == len(specs)
    # in forward order, except that a layer which is one parameter (layerscale: `self.ls = nn.Parameter`)
    # is registered by its module before the module's children, as torchvision's ConvNeXt registers layer_scale
    if not any(t.name == t.layer for t in specs):
        assert got == [(t.name, t.shape) for t in specs]


@pytest.mark.parametrize("path", all_specs(), ids=lambda p: p.stem)
def test_every_spec_builds_and_matches_the_ir(path: Path) -> None:
    net = archc.load(path)
    # shapes and counts only: the meta device allocates nothing, so VGG costs no time
    with torch.device("meta"):
        module = build_module(net.analysis)
        ids = net.graph.input_shape.layout is Layout.TOKENS
        y = module(torch.empty(2, *net.analysis.physical(INPUT), dtype=torch.long if ids else torch.float32))
    _check_against_ir(net, module)
    assert tuple(y.shape) == (2, *net.analysis.physical(net.graph.output))
    assert module.training  # like torchvision: a fresh module trains


@pytest.mark.parametrize("path", all_specs(), ids=lambda p: p.stem)
def test_generation_is_deterministic(path: Path) -> None:
    assert archc.load(path).torch_source() == archc.load(path).torch_source()


def test_alexnet_golden(golden) -> None:
    source = archc.load(Path(__file__).parent.parent / "specs" / "alexnet_lecture.arch").torch_source()
    golden(GOLDEN / "alexnet_lecture.py", source)


def test_gpt2_small_golden(golden) -> None:  # type: ignore[no-untyped-def]
    """GPT-2 small as PyTorch: the helper classes it uses (and no others), the tie as one line."""
    source = archc.load(Path(__file__).parent.parent / "specs" / "gpt2_small.arch").torch_source()
    golden(GOLDEN / "gpt2_small.py", source)
    assert "self.lm_head.weight = self.wte.weight" in source
    assert "class Attention(nn.Module)" in source and "class PositionalEmbedding(nn.Module)" in source
    assert "RotaryEmbedding" not in source and "kv_heads" not in source and "ClassToken" not in source
    assert re.findall(r"^(?:import|from) .*$", source, re.M) == ["import torch", "from torch import nn"]


def test_alexnet_reads_like_torchvision() -> None:
    source = archc.load(Path(__file__).parent.parent / "specs" / "alexnet_lecture.arch").torch_source()
    assert "self.conv1 = nn.Conv2d(3, 96, kernel_size=11, stride=4)\n" in source
    assert "self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2)\n" in source
    assert "self.fc1 = nn.Linear(256 * 2 * 2, 4096)\n" in source
    assert "x = torch.flatten(x, 1)\n" in source
    assert re.findall(r"^(?:import|from) .*$", source, re.M) == ["import torch", "from torch import nn"]


def test_every_kind_has_a_torch_handler() -> None:
    assert set(HANDLERS) == set(KINDS)


def test_reserved_names_cover_nn_module() -> None:
    """A layer may not be named like an nn.Module attribute: the module could not register it."""
    missing = {n for n in dir(torch.nn.Module()) if not n.startswith("__")} - RESERVED_NAMES
    assert not missing, f"add to elaborate.RESERVED_NAMES: {sorted(missing)}"


def test_a_layer_named_like_a_module_method_is_a_located_error_here_only() -> None:
    net = archc.loads("input 4x4x3\ncompile: conv K=2 F=1\n", filename="m.arch")  # valid: W002 only
    with pytest.raises(archc.SpecError) as info:
        net.torch_source()
    assert "m.arch:2:1: error[E113]: 'compile' cannot be an attribute of the generated PyTorch module" in str(info.value)


# --- a small network with every structure -----------------------------------------------------
MINI = """
network Mini
input 16x16x3

""" + BASIC_BLOCK + """
block Plain(K) {
  residual { conv K=K F=3 P=1; relu }
}

block Fire(SQ, E) {
  squeeze: conv K=SQ F=1; relu
  concat {
    branch { expand1: conv K=E F=1; relu }
    branch { expand3: conv K=E F=3 P=1; relu }
  }
}

block DW(C, K) {
  dw: conv K=C F=3 S=2 P=same G=C bias=false   # 8x8 -> 4x4: pads 0 before, 1 after
  batchnorm
  relu6
  pw: conv K=K F=1
}

stem: conv K=8 F=3 P=same              -> 16x16x8
layer1: repeat 2 { Basic K=8 }         -> 16x16x8
down: Basic K=16 S=2                   -> 8x8x16
fire: Fire SQ=4 E=8                    -> 8x8x16
dw: DW C=16 K=24                       -> 4x4x24
plain: Plain K=24
tail: repeat 2 { conv K=24 F=1; relu } -> 4x4x24
head: globalavgpool
fc: fc 10
"""
# counted by hand: stem 224, layer1 2*1264, down 3680, fire 404, dw 584, plain 5208, tail 1200, fc 250
MINI_PARAMS = 224 + 2 * 1264 + 3680 + 404 + 584 + 5208 + 1200 + 250


class _RefBasic(torch.nn.Module):
    def __init__(self, cin: int, k: int, s: int = 1) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, k, 3, s, 1, bias=False)
        self.batchnorm1 = nn.BatchNorm2d(k)
        self.conv2 = nn.Conv2d(k, k, 3, 1, 1, bias=False)
        self.batchnorm2 = nn.BatchNorm2d(k)
        self.conv3 = nn.Conv2d(cin, k, 1, s, bias=False)
        self.batchnorm3 = nn.BatchNorm2d(k)

    def forward(self, x):
        y = self.batchnorm2(self.conv2(F.relu(self.batchnorm1(self.conv1(x)))))
        return F.relu(y + self.batchnorm3(self.conv3(x)))


class _RefPlain(torch.nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(k, k, 3, 1, 1)

    def forward(self, x):
        return x + F.relu(self.conv1(x))


class _RefFire(torch.nn.Module):
    def __init__(self, cin: int, sq: int, e: int) -> None:
        super().__init__()
        self.squeeze = torch.nn.Conv2d(cin, sq, 1)
        self.expand1 = torch.nn.Conv2d(sq, e, 1)
        self.expand3 = torch.nn.Conv2d(sq, e, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1(x)), F.relu(self.expand3(x))], 1)


class _RefDW(torch.nn.Module):
    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.dw = torch.nn.Conv2d(c, c, 3, 2, groups=c, bias=False)
        self.batchnorm1 = torch.nn.BatchNorm2d(c)
        self.pw = torch.nn.Conv2d(c, k, 1)

    def forward(self, x):
        # TensorFlow's "same" at stride 2 on 8x8: one row and column of zeros after, none before
        x = self.dw(F.pad(x, (0, 1, 0, 1)))
        return self.pw(F.relu6(self.batchnorm1(x)))


class _RefTail(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(24, 24, 1)

    def forward(self, x):
        return F.relu(self.conv1(x))


class _RefMini(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(_RefBasic(8, 8), _RefBasic(8, 8))
        self.down = _RefBasic(8, 16, 2)
        self.fire = _RefFire(16, 4, 8)
        self.dw = _RefDW(16, 24)
        self.plain = _RefPlain(24)
        self.tail = nn.Sequential(_RefTail(), _RefTail())
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.tail(self.plain(self.dw(self.fire(self.down(self.layer1(self.stem(x)))))))
        return self.fc(x.mean((2, 3)))


def _randomise_batchnorm(module: torch.nn.Module) -> None:
    """Running statistics away from 0 and 1, so that eval-mode batchnorm is not the identity."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def test_mini_network_matches_the_ir() -> None:
    net = archc.loads(MINI)
    assert net.params == MINI_PARAMS
    module = build_module(net.analysis)
    _check_against_ir(net, module)
    assert tuple(module(torch.randn(2, 3, 16, 16)).shape) == (2, 10)


def test_mini_network_matches_hand_written_torch() -> None:
    torch.manual_seed(0)
    module = build_module(archc.loads(MINI).analysis)
    _randomise_batchnorm(module)
    reference = _RefMini()
    reference.load_state_dict(module.state_dict())  # strict: the very same keys and shapes
    module.eval()
    reference.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(x))


def test_mini_network_source_reads_like_the_spec() -> None:
    source = generate_source(archc.loads(MINI).analysis)
    assert "class Basic(nn.Module):" in source
    assert "def __init__(self, in_channels: int, K: int, S: int = 1) -> None:" in source
    assert "self.conv1 = nn.Conv2d(in_channels, K, kernel_size=3, stride=S, padding=1, bias=False)" in source
    assert "self.layer1 = nn.Sequential(Basic(8, K=8), Basic(8, K=8))" in source
    assert "self.tail = nn.Sequential(TailBody(24), TailBody(24))" in source
    assert "torch.cat([branch1, branch2], dim=1)" in source
    assert "nn.ZeroPad2d((0, 1, 0, 1))" in source
    assert 'self.stem = nn.Conv2d(3, 8, kernel_size=3, padding="same")' in source


# --- blocks whose instances differ ----------------------------------------------------------------
VARYING = """
input 12x12x4

block Down(K) {                       # the pads of P=same at stride 2 depend on the input size
  conv K=K F=3 S=2 P=same
  relu
}

block Stage(K, N) {                   # a repeat whose count differs between calls
  first: Down K=K
  rest: repeat N { conv K=K F=3 P=1; batchnorm }
}

block Head(N) {                       # used on a spatial and on a flat input
  batchnorm
  fc N
}

s1: Stage K=8 N=1                     -> 6x6x8
s2: Stage K=16 N=3                    -> 3x3x16
deep: repeat 3 { Down K=16 }          -> 1x1x16
pool: adaptiveavgpool 2
h1: Head N=12
h2: Head N=5
"""


def test_instances_that_differ_get_constructor_arguments() -> None:
    net = archc.loads(VARYING)
    source = generate_source(net.analysis)
    assert "for _ in range(N)" in source  # the count stays the spec's parameter
    assert "conv1_pad" in source  # 12 -> 6 pads (0, 1), 3 -> 2 pads (1, 1)
    assert "(nn.BatchNorm2d if batchnorm1_spatial else nn.BatchNorm1d)" in source
    module = build_module(net.analysis)
    _check_against_ir(net, module)
    assert tuple(module(torch.randn(2, 4, 12, 12)).shape) == (2, 5)


def test_same_padding_matches_tensorflow_at_every_size() -> None:
    """P=same at stride 2 gives ceil(n/2) at each copy, whatever the parity of n."""
    net = archc.loads("input 13x13x2\nr: repeat 3 { conv K=2 F=3 S=2 P=same bias=false }")
    module = build_module(net.analysis).eval()
    x = torch.randn(1, 2, 13, 13)
    y = x
    for k, n in enumerate((13, 7, 4)):
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
        y = F.conv2d(F.pad(y, (total // 2, total - total // 2) * 2), getattr(module.r, str(k)).conv1.weight, stride=2)
    with torch.no_grad():
        torch.testing.assert_close(module(x), y)
    assert tuple(y.shape[2:]) == (2, 2)


# --- every kind, against torch's functional form -----------------------------------------------
KIND_CASES = [
    ("relu", F.relu),
    ("relu6", F.relu6),
    ("sigmoid", torch.sigmoid),
    ("tanh", torch.tanh),
    ("gelu", F.gelu),
    ("softmax", lambda x: F.softmax(x, dim=1)),
    ("identity", lambda x: x),
    ("leakyrelu", lambda x: F.leaky_relu(x, 0.01)),
    ("leakyrelu slope=0.2", lambda x: F.leaky_relu(x, 0.2)),
    ("lrn", lambda x: F.local_response_norm(x, 5, 1e-4, 0.75, 2.0)),  # the spec's k is 2, torch's 1
    ("lrn size=3 alpha=0.001 beta=0.5 k=1", lambda x: F.local_response_norm(x, 3, 1e-3, 0.5, 1.0)),
    ("maxpool F=3 S=2 P=same", lambda x: F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)),
    ("maxpool F=2", lambda x: F.max_pool2d(x, 2)),
    ("avgpool F=3 S=2 ceil=true", lambda x: F.avg_pool2d(x, 3, 2, ceil_mode=True)),
    ("avgpool F=3 S=2 P=1", lambda x: F.avg_pool2d(x, 3, 2, 1)),  # padding counts as zeros
    ("avgpool F=2 S=2 P=same", lambda x: F.avg_pool2d(x, 2, 2)),
    ("globalavgpool", lambda x: x.mean((2, 3), keepdim=True)),
    ("adaptiveavgpool 3", lambda x: F.adaptive_avg_pool2d(x, 3)),
    ("flatten", lambda x: torch.flatten(x, 1)),
    ("dropout 0.3", lambda x: x),  # eval mode
]


@pytest.mark.parametrize(("line", "reference"), KIND_CASES, ids=[c[0] for c in KIND_CASES])
def test_stateless_kind_matches_torch(line: str, reference) -> None:
    net = archc.loads(f"input 8x8x6\nlayer: {line}")
    module = build_module(net.analysis).eval()
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        y = module(x)
    torch.testing.assert_close(y, reference(x))
    assert tuple(y.shape[1:]) == net.analysis.output_shape.nchw()


def test_flat_input_uses_batchnorm1d() -> None:
    net = archc.loads("input 10\nfc 6\nbatchnorm eps=0.001\nsoftmax")
    source = generate_source(net.analysis)
    assert "nn.BatchNorm1d(6, eps=0.001)" in source
    module = build_module(net.analysis)
    _check_against_ir(net, module)
    assert tuple(module(torch.randn(3, 10)).shape) == (3, 6)


# --- names --------------------------------------------------------------------------------------------
ODD = """
input 12x12x4

block class(in_channels, self, x, i, range, super, torch=2) {
  nn: conv K=in_channels*torch F=3 P=same
  x: batchnorm
  torch: relu
  self_: leakyrelu slope=0.2
  deep: repeat range { conv K=in_channels*torch F=1; relu }
}

block Flexible(N, D=N*2) {
  batchnorm
  fc D
}

self1: class in_channels=4 self=0 x=0 i=0 range=1 super=0
nn: class in_channels=8 self=1 x=1 i=1 range=2 super=1 torch=1
flex: Flexible N=5
"""


def test_odd_names_compile(tmp_path: Path) -> None:
    net = archc.loads(ODD, filename="3 odd-net.arch")
    source = generate_source(net.analysis)
    compile(source, "odd.py", "exec")
    assert "class class_(nn.Module):" in source
    assert "in_channels_: int" in source  # a parameter named in_channels does not shadow the input's
    assert "class Net_3_odd_net(nn.Module):" in source
    # the written file is standalone: import it like any module
    path = tmp_path / "odd_net.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("odd_net", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module = mod.Net_3_odd_net()
    _check_against_ir(net, module)
    assert tuple(module(torch.randn(2, 4, 12, 12)).shape) == (2, 10)


def test_build_module_is_the_generated_source() -> None:
    net = archc.loads(MINI)
    module = build_module(net.analysis)
    assert type(module).__name__ == "Mini"
    assert f"class {type(module.layer1[0]).__name__}(nn.Module):" in generate_source(net.analysis)


def test_same_padding_with_an_even_window_pads_at_the_end() -> None:
    """F=2 P=same at stride 1 pads one column after (as the IR and TensorFlow do), explicitly."""
    net = archc.loads("input 5x5x1\nc: conv K=1 F=2 P=same bias=false")
    source = generate_source(net.analysis)
    assert "nn.ZeroPad2d((0, 1, 0, 1))" in source and 'padding="same"' not in source
    module = build_module(net.analysis).eval()
    x = torch.randn(1, 1, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(module(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), module.c.weight))


@pytest.mark.parametrize(
    "text",
    [
        "input 4x4x2\nr: repeat 0 { conv K=2 F=1 }\nfc 3",
        "input 4x4x2\nblock B { conv K=5 F=1 }\nr: repeat 0 { B }\nfc 3",
        "input 4x4x2\nblock B(N) { r: repeat N { conv K=2 F=1; relu } }\nb1: B N=0\nb2: B N=2\nfc 3",
    ],
)
def test_empty_repeats(text: str) -> None:
    net = archc.loads(text)
    module = build_module(net.analysis)
    _check_against_ir(net, module)
    assert tuple(module(torch.randn(2, 2, 4, 4)).shape) == (2, 3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter: dynamo's needs onnxscript
def test_generated_modules_export_with_torch_onnx(tmp_path: Path) -> None:
    """Users export the generated module themselves: the v2 layers (channels moved around layernorm and
    fc per position, layer scales, crops, up-convolutions, SE) go through torch.onnx.export and agree."""
    ort = pytest.importorskip("onnxruntime")
    spec = (
        "input 12x12x4\nconv K=8 F=3 P=1\nlayernorm eps=1e-6\nls: layerscale init=0.5\n"
        "se: multiply { branch { identity } branch { globalavgpool; conv K=2 F=1; silu; conv K=8 F=1; hardsigmoid } }\n"
        "convtranspose K=4 F=2 S=2\nupsample 2 mode=linear\ncrop 45\ndroppath 0.1\nhardswish\nglobalavgpool\nflatten\n"
    )
    for text in (spec, "input 20x3\nconv K=4 F=3\nfc 6\nlayernorm\ngelu approx=tanh\nflatten\nfc 2\n"):
        net = archc.loads(text)
        module = net.to_torch().eval()
        x = torch.randn(2, *net.graph.input_shape.nchw())
        path = tmp_path / "exported.onnx"
        torch.onnx.export(
            module, (x,), str(path), dynamo=False, opset_version=20, input_names=["input"], output_names=["output"]
        )
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), module(x), rtol=1e-4, atol=1e-5)
