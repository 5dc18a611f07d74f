"""`archc import` of ONNX models: PyTorch modules exported by both of torch's exporters, and
archc's own ONNX of the zoo's specs, imported, checked and compiled back.

Round trip: the imported spec, compiled to ONNX with the imported weights, gives
onnxruntime the outputs of the original model within 1e-4 relative error.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import archc  # noqa: E402
from archc.cli import main  # noqa: E402
from archc.importers.common import ImportFailure, finish  # noqa: E402
from archc.importers.onnx import import_onnx  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
HAS_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None


def _run(model: bytes | str, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def _round_trip(path: Path, input_shape: tuple[int, ...]) -> tuple[archc.Network, str]:
    """Import `path`, check the spec, compile it back with the imported weights and compare outputs."""
    imported = import_onnx(path)
    spec = finish(imported)
    net = archc.loads(spec, filename=f"{path.stem}.arch")
    assert imported.weights is not None
    back = net.to_onnx(weights=imported.weights).SerializeToString()
    x = np.random.default_rng(0).standard_normal((2, *input_shape), dtype=np.float32)
    assert _relative_error(_run(back, x), _run(str(path), x)) < 1e-4
    return net, spec


# --- PyTorch modules of our own, exported by torch.onnx.export ---------------------------------
torch = pytest.importorskip("torch")
nn = torch.nn


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, k, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(k)
        self.conv2 = nn.Conv2d(k, k, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(k)
        self.conv3 = nn.Conv2d(k, k * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(k * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != k * 4:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, k * 4, 1, stride, bias=False), nn.BatchNorm2d(k * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, c = [], 8
        for k, n, s in ((4, 3, 1), (8, 4, 2), (16, 2, 2)):
            blocks = [Bottleneck(c, k, s)] + [Bottleneck(k * 4, k) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c = k * 4
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _conv_bn(c: int, k: int, f: int = 1, s: int = 1, g: int = 1, act: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c, k, f, s, (f - 1) // 2, groups=g, bias=False), nn.BatchNorm2d(k)]
    return nn.Sequential(*layers, *([act()] if act else []))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, k: int, stride: int, t: int) -> None:
        super().__init__()
        self.use_res = stride == 1 and c == k
        h = c * t
        self.conv = nn.Sequential(_conv_bn(c, h), _conv_bn(h, h, 3, stride, h), nn.Conv2d(h, k, 1, bias=False), nn.BatchNorm2d(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Like(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 8, 3, 2)]
        c = 8
        for k, n, s in ((8, 2, 1), (12, 3, 2)):
            for i in range(n):
                layers.append(InvertedResidual(c, k, s if i == 0 else 1, 3))
                c = k
        layers.append(_conv_bn(c, 32))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class SqueezeExcitation(nn.Module):
    def __init__(self, c: int, sq: int, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, sq, 1), nn.Conv2d(sq, c, 1)
        self.activation, self.scale_activation = act(), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class SENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 16, 3, 2, act=nn.ReLU)
        self.se = SqueezeExcitation(16, 4)
        self.head = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.Hardswish(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.se(self.stem(x)))


class SELinear(nn.Module):  # squeeze-excitation of nn.Linear: y.view(b, c, 1, 1), x * y.expand_as(x)
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool = nn.Conv2d(3, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(16, 4, bias=False), nn.ReLU(), nn.Linear(4, 16, bias=False), nn.Sigmoid())
        self.head = nn.Linear(16 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        b, c, _, _ = x.size()
        y = self.fc(self.pool(x).view(b, c)).view(b, c, 1, 1)
        return self.head(torch.flatten(x * y.expand_as(x), 1))


class MBConv(nn.Module):
    def __init__(self, c: int, k: int, t: int, f: int, s: int) -> None:
        super().__init__()
        h = c * t
        self.use_res = s == 1 and c == k
        self.block = nn.Sequential(
            _conv_bn(c, h, act=nn.SiLU), _conv_bn(h, h, f, s, h, act=nn.SiLU),
            SqueezeExcitation(h, max(1, c // 4), nn.SiLU), _conv_bn(h, k, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res else self.block(x)


class EfficientNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 8, 3, 2, act=nn.SiLU),
            nn.Sequential(MBConv(8, 8, 1, 3, 1)),
            nn.Sequential(MBConv(8, 12, 4, 3, 2), MBConv(12, 12, 4, 3, 1)),
            nn.Sequential(MBConv(12, 16, 4, 5, 2), MBConv(16, 16, 4, 5, 1), MBConv(16, 16, 4, 5, 1)),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class DenseLayer(nn.Module):  # torchvision's _DenseLayer: batchnorm-relu-conv twice on the concatenation so far
    def __init__(self, c: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c, 2 * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(2 * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):  # torchvision's _DenseBlock: every layer reads all the features before it
    def __init__(self, n: int, c: int, growth: int) -> None:
        super().__init__()
        for i in range(n):
            self.add_module(f"denselayer{i + 1}", DenseLayer(c + i * growth, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.block1 = DenseBlock(3, 8, 4)
        self.pool = nn.AvgPool2d(2)
        self.block2 = DenseBlock(2, 20, 4)
        self.fc = nn.Linear(28, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.pool(self.block1(self.conv0(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class LayerNorm2d(nn.LayerNorm):  # torchvision's: LayerNorm over the channels, channels last
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        # contiguous: torch.export of a conv reading the permuted strides guards the batch to <= 2
        return x.permute(0, 3, 1, 2).contiguous()


class CNBlock(nn.Module):  # torchvision's CNBlock with its two Linears as 1x1 convs
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = LayerNorm2d(c, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Conv2d(c, 4 * c, 1), nn.GELU(), nn.Conv2d(4 * c, c, 1)
        self.layer_scale = nn.Parameter(torch.rand(c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer_scale * self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))


class ConvNeXtLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 4, 4), LayerNorm2d(8, eps=1e-6))
        self.stage = nn.Sequential(CNBlock(8), CNBlock(8))
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.stage(self.stem(x)), 1), 1))


class UNetLike(nn.Module):  # the paper's U-Net in small: valid convolutions, the skip cropped to fit
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.bottom = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU())
        self.up = nn.ConvTranspose2d(8, 4, 2, 2)
        self.dec = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)  # 20 -> 16
        up = self.up(self.bottom(self.pool(skip)))  # 16 -> 8 -> 6 -> 12
        return self.dec(torch.cat([skip[:, :, 2:14, 2:14], up], 1))


class UNetShapeCrop(UNetLike):  # the crop computed from the shapes: the TorchScript Slice's starts are Shape arithmetic
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        up = self.up(self.bottom(self.pool(skip)))
        d, h, w = (skip.shape[2] - up.shape[2]) // 2, up.shape[2], up.shape[3]
        return self.dec(torch.cat([skip[:, :, d : d + h, d : d + w], up], 1))


class SignalMixer(nn.Module):  # Conv1d, then per position Linear and LayerNorm (x.transpose(1, 2)), then Conv1d
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.act = nn.Conv1d(4, 8, 3, padding=1), nn.ReLU()
        self.fc, self.norm = nn.Linear(8, 6), nn.LayerNorm(6)
        self.conv2 = nn.Conv1d(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.fc(self.act(self.conv1(x)).transpose(1, 2)))
        return self.conv2(y.transpose(1, 2))


class Upsampling(nn.Module):  # nn.Upsample: Resize, nearest and bilinear
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.up1 = nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2)
        self.conv2, self.up2 = nn.Conv2d(4, 2, 1), nn.Upsample(scale_factor=(1, 3), mode="bilinear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up2(self.conv2(self.up1(self.conv1(x))))


MODULES = {
    "upsampling": (Upsampling, (3, 5, 6)),
    "signal_mixer": (SignalMixer, (4, 20)),
    "convnext_like": (ConvNeXtLike, (3, 16, 16)),
    "unet_like": (UNetLike, (1, 20, 20)),
    "unet_shape_crop": (UNetShapeCrop, (1, 20, 20)),
    "resnet_like": (ResNetLike, (3, 64, 64)),
    "mobilenet_v2_like": (MobileNetV2Like, (3, 32, 32)),
    "se_net": (SENet, (3, 16, 16)),
    "se_linear": (SELinear, (3, 8, 8)),
    "efficientnet_like": (EfficientNetLike, (3, 32, 32)),
    "densenet_like": (DenseNetLike, (3, 16, 16)),
}


def _randomised(cls: type[nn.Module]) -> nn.Module:
    """The module with random weights and batchnorm statistics (so folding them matters)."""
    torch.manual_seed(0)
    module = cls().eval()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return module


def _export(module: nn.Module, shape: tuple[int, ...], path: Path, exporter: str) -> None:
    x = torch.randn(1, *shape)
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=64)
        torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["input"], output_names=["output"],
                          dynamic_shapes={"x": {0: batch}}, verbose=False)
    else:
        torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


EXPORTERS = [
    "torchscript",
    pytest.param("dynamo", marks=pytest.mark.skipif(not HAS_ONNXSCRIPT, reason="the dynamo exporter needs onnxscript")),
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_pytorch_export_round_trip(name: str, exporter: str, tmp_path: Path) -> None:
    cls, shape = MODULES[name]
    module = _randomised(cls)
    path = tmp_path / f"{name}.onnx"
    _export(module, shape, path, exporter)
    net, _ = _round_trip(path, shape)
    # batchnorm folded into the convolutions (as both exporters may) leaves fewer parameters, never more
    assert net.params <= sum(p.numel() for p in module.parameters())


class LRNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm1, self.norm2 = nn.LocalResponseNorm(3, alpha=2e-4, k=1.0), nn.LocalResponseNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.norm1(self.conv(x)))


@pytest.mark.skipif(not HAS_ONNXSCRIPT, reason="the dynamo exporter needs onnxscript")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_local_response_norm_written_out_by_dynamo(tmp_path: Path) -> None:
    """nn.LocalResponseNorm as `dynamo=True` writes it (Mul(x, x), Unsqueeze, Pad, a 3-D AveragePool,
    Squeeze, alpha, k, beta, Div) is `lrn`, at odd and even sizes."""
    path = tmp_path / "lrn.onnx"
    _export(_randomised(LRNNet), (3, 7, 7), path, "dynamo")
    _, spec = _round_trip(path, (3, 7, 7))
    assert "norm1: lrn size=3 alpha=0.0002 k=1\n" in spec and "norm2: lrn size=4 k=1\n" in spec


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_resnet_like_is_blocks_and_stages(tmp_path: Path) -> None:
    """The hierarchy comes back: one Bottleneck block called in three stages, not 60 flat lines,
    and PyTorch's own names where archc can write them."""
    path = tmp_path / "resnet_like.onnx"
    _export(_randomised(ResNetLike), (3, 64, 64), path, "torchscript")
    imported = import_onnx(path)
    assert imported.weights is not None
    assert "layer1.rest.0.conv1.weight" in imported.weights and "conv1.weight" in imported.weights
    spec = finish(imported)
    # the stage, its first block and the other blocks; the one-conv shortcut is that conv, not a block
    assert len([ln for ln in spec.splitlines() if ln.startswith("block ")]) == 3
    assert "} shortcut { downsample: conv K=K*4 F=1 S=S }" in spec
    assert "relu: relu" not in spec and "\nrelu\n" in spec  # a name that only repeats the kind is left out
    assert spec.count("repeat") == 1
    calls = [ln.split()[:2] for ln in spec.splitlines() if ln.startswith("layer")]
    assert calls == [["layer1:", "Layer"], ["layer2:", "Layer"], ["layer3:", "Layer"]]
    # a stage counts all its blocks, as torchvision does: the first, then N-1 copies of the other
    assert "layer1: Layer K=4 N=3\n" in spec and "rest: repeat N-1 {" in spec
    # the two forms of the block are named by what sets them apart, not numbered
    assert "first: LayerBlockDownsample K=K S=S\n" in spec and "repeat N-1 { LayerBlock K=K }" in spec


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_imported_spec_reads_as_written(tmp_path: Path) -> None:
    """No `Sequential` index as a name (`_0`), no argument equal to its default (`S=1 P=0 G=1`),
    a padding of half the window as `P=F//2`, a module of one layer as that layer."""
    import re

    path = tmp_path / "mobilenet_v2_like.onnx"
    _export(_randomised(MobileNetV2Like), (3, 32, 32), path, "torchscript")
    spec = finish(import_onnx(path))
    assert not re.search(r"(^|\s)_\d+:", spec, re.M), spec
    assert "block ConvReLU6(K, F, S=1, G=1) {\n  conv: conv K=K F=F S=S P=F//2 G=G\n  relu6\n}" in spec
    assert "conv_relu6_1: ConvReLU6 K=8 F=3 S=2\n" in spec and "conv_relu6_2: ConvReLU6 K=32 F=1\n" in spec
    assert "classifier: fc 10\n" in spec


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_densenet_running_concat(tmp_path: Path) -> None:
    """Each dense layer reads every feature map before it: a concat of what came before and the layer."""
    path = tmp_path / "densenet_like.onnx"
    _export(_randomised(DenseNetLike), (3, 16, 16), path, "torchscript")
    _, spec = _round_trip(path, (3, 16, 16))
    assert spec.count("concat {") == 5 and spec.count("branch { identity }") == 5
    assert "branch { denselayer3: " in spec


# --- archc's own ONNX of the zoo's specs --------------------------------------------------------
ZOO = ["resnet18.arch", "resnet50.arch", "mobilenet_v2.arch", "efficientnet_b0.arch", "squeezenet1_1.arch", "lenet5.arch"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ZOO)
def test_spec_to_onnx_to_spec(spec: str, tmp_path: Path) -> None:
    """spec -> ONNX (archc's back-end) -> import -> spec: the same params, MACs and output shape."""
    original = archc.compile_file(SPECS / spec).network
    assert original is not None
    path = tmp_path / "model.onnx"
    model = original.to_onnx(path, weights="random")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    net, _ = _round_trip(path, tuple(dims))
    assert (net.params, net.macs, net.output_shape) == (original.params, original.macs, original.output_shape)


# small networks of every shape of the zoo, so that CI runs them whole: each has what its zoo spec
# has (blocks of residuals, tied weights, rotary grouped attention, layer norms over channels, layer
# scale, crops in nested concats, merges nested at one fork), and what the import must show of it
OWN = {
    "gpt_blocks": (
        """block Block(D, H) {
             residual { layernorm; attention H causal=true }
             residual { layernorm; fc D*4; gelu approx=tanh; fc D }
           }
           input 16 tokens
           wte: embedding V=50 D=32
           wpe: posembed T=16
           h: repeat 2 { Block D=32 H=4 }
           ln_f: layernorm
           lm_head: fc 50 bias=false tie=wte""",
        ["h: repeat 2 { HBlock }", "attention1: attention 4 causal=true", "lm_head: fc 50 bias=false tie=wte"],
    ),
    "vit_blocks": (
        """block Encoder(D, H, M) {
             residual { ln_1: layernorm eps=1e-6; self_attention: attention H }
             residual { ln_2: layernorm eps=1e-6; fc M; gelu; fc D }
           }
           input 32x32x3
           conv_proj: conv K=32 F=8 S=8
           tokens
           class_token: clstoken
           pos_embedding: posembed
           encoder: repeat 2 { Encoder D=32 H=4 M=64 }
           ln: layernorm eps=1e-6
           select 0
           head: fc 10""",
        ["encoder: repeat 2 {", "self_attention: attention 4", "class_token: clstoken"],
    ),
    "llama_blocks": (
        """block Decoder(D, H, F, KV) {
             residual { input_layernorm: rmsnorm eps=1e-5; self_attn: attention H kv=KV causal=true rope=true bias=false }
             residual { post_attention_layernorm: rmsnorm eps=1e-5; mlp: SwiGLU D=D F=F }
           }
           block SwiGLU(D, F) {
             multiply { branch { gate_proj: fc F bias=false; silu } branch { up_proj: fc F bias=false } }
             down_proj: fc D bias=false
           }
           input 16 tokens
           embed_tokens: embedding V=50 D=32
           layers: repeat 2 { Decoder D=32 H=4 F=64 KV=2 }
           norm: rmsnorm eps=1e-5
           lm_head: fc 50 bias=false""",
        ["layers: repeat 2 {", "attention 4 kv=2 causal=true rope=true bias=false", "multiply {"],
    ),
    "convnext_blocks": (
        """block CNBlock(C, P) {
             residual {
               dwconv: conv K=C F=7 P=3 G=C
               norm: layernorm eps=1e-6
               pwconv1: conv K=4*C F=1
               gelu
               pwconv2: conv K=C F=1
               layer_scale: layerscale init=1e-6
               droppath P
             }
           }
           input 16x16x3
           stem: conv K=8 F=4 S=4
           stem_norm: layernorm eps=1e-6
           stage1: repeat 2 { CNBlock C=8 P=0.1 }
           avgpool: globalavgpool
           norm: layernorm eps=1e-6
           fc: fc 10""",
        ["stem_norm: layernorm eps=1e-6", "stage1: repeat 2 {", "layer_scale: layerscale"],
    ),
    "unet_crops": (
        """block ConvReLU(K) { conv K=K F=3; relu; conv K=K F=3; relu }
           input 44x44x1
           enc1: ConvReLU K=4
           concat {
             branch { copy1: crop 8 }
             branch {
               pool1: maxpool F=2 S=2
               enc2: ConvReLU K=8
               concat {
                 branch { copy2: crop 8 }
                 branch { pool2: maxpool F=2 S=2; bottom: ConvReLU K=16; up2: convtranspose K=8 F=2 S=2 }
               }
               dec2: ConvReLU K=8
               up1: convtranspose K=4 F=2 S=2
             }
           }
           dec1: ConvReLU K=4
           out: conv K=2 F=1""",
        ["branch { copy1: crop 8 }", "branch { copy2: crop 8 }", "up1: convtranspose K=4 F=2 S=2"],
    ),
    "even_adaptive": (  # archc writes an even adaptive pooling as the avgpool it is: no `adaptiveavgpool1:` label
        """input 8x8x4
           adaptiveavgpool 4
           conv K=2 F=1
           hardswish""",
        ["\navgpool F=2\n"],
    ),
    "cnn_ops_2d": (  # lrn as ONNX's LRN (odd) and written out (even), upsample, uneven adaptive pooling
        """input 13x13x4
           conv K=6 F=3 P=1
           norm1: lrn size=3 k=1
           norm2: lrn size=4 alpha=2e-4 beta=0.5
           up: upsample 2
           up_linear: upsample 1x2 mode=linear
           act: hardswish
           pool: adaptiveavgpool 5x3
           fc 4""",
        ["norm1: lrn size=3 k=1\n", "norm2: lrn size=4 alpha=0.0002 beta=0.5\n", "up: upsample 2\n",
         "up_linear: upsample 1x2 mode=linear\n", "act: hardswish\n", "pool: adaptiveavgpool 5x3\n"],
    ),
    "cnn_ops_3d": (  # the written-out forms at other ranks: lrn of an even size, the averaging matrices
        """input 5x7x7x2
           conv K=4 F=3 P=1
           norm: lrn size=2
           up: upsample 1x2x2
           up_linear: upsample 2 mode=linear
           pool: adaptiveavgpool 3""",
        ["norm: lrn size=2\n", "up: upsample 1x2x2\n", "up_linear: upsample 2 mode=linear\n",
         "pool: adaptiveavgpool 3\n"],
    ),
    "cnn_ops_1d": (
        """input 20x3
           conv K=6 F=3
           norm: lrn size=3
           soft: softmax
           up: upsample 3 mode=linear
           pool: adaptiveavgpool 7""",
        ["norm: lrn size=3\nsoft: softmax\n", "up: upsample 3 mode=linear\n", "pool: adaptiveavgpool 7\n"],
    ),
    "sequence_layouts": (  # 1-D: archc's Transposes between channels-first and channels-last layers are no layers
        """input 20x4
           norm0: layernorm
           conv1: conv K=8 F=3 P=1
           fc1: fc 8
           bn: batchnorm
           pool: maxpool F=2
           residual { attention 2 }
           conv2: conv K=8 F=3 P=1
           pos: posembed
           relu
           fc2: fc 3""",
        ["input 20x4\nnorm0: layernorm\nconv1: conv K=8 F=3 P=1\nfc1: fc 8\nbn: batchnorm\n",
         "residual { attention1: attention 2 }\n", "pos: posembed\n"],
    ),
    "sequence_residual_out": (  # the network's output a residual of a per-position fc around a convolution
        """input 20x4
           conv K=8 F=1
           residual { layernorm; fc 8 }""",
        ["input 20x4\nconv1: conv K=8 F=1\nresidual {\n"],
    ),
    "nested_merges": (
        """input 8x8x4
           conv K=4 F=3 P=1
           residual {
             residual { residual { conv K=4 F=3 P=1; relu } conv K=4 F=3 P=1 }
             concat { branch { conv K=2 F=1 } branch { residual { conv K=4 F=1 } conv K=2 F=1 } }
           }
           add { branch { conv K=4 F=1 } branch { globalavgpool } }
           fc 10""",
        ["residual {\n  residual {\n    residual {\n", "add {\n  branch { conv7: conv K=4 F=1 }"],
    ),
    "stage_of_one": (
        """block Basic(K) { residual { conv K=K F=3 P=1; batchnorm; relu; conv K=K F=3 P=1 } relu }
           block Down(K) { residual { conv K=K F=3 S=2 P=1; relu } shortcut { conv K=K F=1 S=2 } relu }
           block Stage(K, N) {
             first: Down K=K
             rest: repeat N-1 { Basic K=K }
           }
           input 16x16x4
           layer1: Stage K=4 N=3
           layer2: Stage K=8 N=2
           globalavgpool
           fc 10""",
        ["layer1: Layer K=4 N=3\n", "layer2: Layer K=8 N=2\n", "rest: repeat N-1 {"],
    ),
    "vgg_stages": (
        """block ConvReLU(K) { conv K=K F=3 P=1; relu }
           block Stage(K, N) {
             convs: repeat N { ConvReLU K=K }
             pool: maxpool F=2 S=2
           }
           input 16x16x3
           stage1: Stage K=4 N=1
           stage2: Stage K=8 N=3
           globalavgpool
           fc 10""",
        ["stage1: Stage K=4 N=1\n", "stage2: Stage K=8 N=3\n", "convs: repeat N {"],
    ),
    "labels": (
        """input 8x8x4
           conv K=4 F=3 P=1
           relu
           a: add { branch { identity } branch { conv K=4 F=1 } branch { conv K=4 F=3 P=1 } }
           c: concat { branch { relu } branch { sigmoid } branch { maxpool F=3 S=1 P=1 } }
           residual { relu; add { branch { relu } branch { sigmoid } branch { tanh } } }
           globalavgpool
           fc 10""",
        ["a: add {\n  branch { identity }\n  branch { conv2: conv K=4 F=1 }\n  branch { conv3: ",
         "c: concat {\n  branch { relu }\n  branch { sigmoid }\n  branch { maxpool F=3 S=1 P=1 }\n}",
         "residual {\n  relu\n  add {\n    branch { relu }\n    branch { sigmoid }\n    branch { tanh }\n  }\n}\n"
         "globalavgpool\n"],
    ),
}


@pytest.mark.parametrize("which", sorted(OWN))
def test_own_onnx_round_trip(which: str, tmp_path: Path) -> None:
    """spec -> archc's ONNX -> import -> spec: the same totals and outputs, and the structure
    (blocks, repeats, merges) written as the spec had it. A transformer whose layer is a block
    imported as `h: H` twice (E111), and a residual whose body starts with one failed."""
    import re
    import textwrap

    text, shown = OWN[which]
    original = archc.loads(textwrap.dedent("           " + text) + "\n", filename=f"{which}.arch")
    path = tmp_path / f"{which}.onnx"
    model = original.to_onnx(path, weights="random")
    imported = import_onnx(path)
    spec = finish(imported)
    for piece in shown:
        assert piece in spec, spec
    # a paramless layer's name that archc generated (`relu1: relu`) is not written back
    paramless = "relu|sigmoid|tanh|gelu|softmax|maxpool|avgpool|globalavgpool|adaptiveavgpool|flatten|hardswish"
    assert not re.search(rf"\b({paramless})_?\d+: ", spec), spec  # of its kind or another's
    # a module of numbered children is a repeat, even of one copy: PyTorch's names stay
    assert imported.weights is not None
    if which == "stage_of_one":
        assert "layer2.rest.0.conv1.weight" in imported.weights, sorted(imported.weights)
    net = archc.loads(spec, filename="imported.arch")
    assert (net.params, net.macs, net.output_shape) == (original.params, original.macs, original.output_shape)
    assert imported.weights is not None
    back = net.to_onnx(weights=imported.weights).SerializeToString()
    kind = model.graph.input[0].type.tensor_type
    dims = [d.dim_value for d in kind.shape.dim[1:]]
    rng = np.random.default_rng(0)
    tokens = kind.elem_type == onnx.TensorProto.INT64
    x = rng.integers(0, 50, (2, *dims)) if tokens else rng.standard_normal((2, *dims), dtype=np.float32)
    assert _relative_error(_run(back, x), _run(str(path), x)) < 1e-4


def test_a_long_chain_imports(tmp_path: Path) -> None:
    """`repeat 400 { relu }` was refused as "nests too deeply" (a recursive, unmemoised walk along
    the chain: quadratic, and past Python's 1,000 frames); 2,000 layers now import."""
    original = archc.compile_text("input 8x8x3\nconv K=4 F=1\nrepeat 2000 { relu }\n", "chain.arch").network
    assert original is not None
    path = tmp_path / "chain.onnx"
    original.to_onnx(path, weights="random")
    spec = finish(import_onnx(path))
    net = archc.compile_text(spec, "imported.arch").network
    assert net is not None and (net.params, net.output_shape) == (original.params, original.output_shape)


# --- what cannot be imported is an error naming the node ----------------------------------------
def _refusal(graph: onnx.GraphProto, path: Path) -> str:
    """The message of importing the graph (opset 17), which must fail."""
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ImportFailure) as e:
        import_onnx(path)
    return str(e.value)


def test_an_off_centre_slice_is_an_error_not_a_crop(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    def ints(name: str, values: list[int]) -> onnx.TensorProto:
        return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="/act/Relu"),
         helper.make_node("Slice", ["r", "starts", "ends", "axes"], ["y"], name="/corner/Slice")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [ints("starts", [0, 0]), ints("ends", [4, 4]), ints("axes", [2, 3])],
    )
    text = _refusal(g, tmp_path / "corner.onnx")
    assert "'/corner/Slice' (Slice)" in text and "starting at [0, 0], not centred" in text


def test_a_file_named_by_a_keyword_names_the_network_apart(tmp_path: Path) -> None:
    """`residual.onnx` gave `network residual`, a spec that does not parse."""
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="/act/Relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    path = tmp_path / "residual.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert "network residual_\n" in finish(import_onnx(path))


def test_a_transpose_that_mixes_positions_and_channels_is_an_error(tmp_path: Path) -> None:
    """Conv1d -> transpose(1, 2) -> Conv1d convolves over the channels: not a layout change (only a
    Transpose between a channels-first and a channels-last layer is one), so an error at it."""
    from onnx import TensorProto, helper, numpy_helper

    w1, w2 = (numpy_helper.from_array(np.zeros(s, np.float32), n) for s, n in (((8, 4, 1), "c1.weight"), ((6, 20, 1), "c2.weight")))
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "c1.weight"], ["a"], name="/c1/Conv"),
         helper.make_node("Transpose", ["a"], ["t"], name="/Transpose", perm=[0, 2, 1]),
         helper.make_node("Conv", ["t", "c2.weight"], ["y"], name="/c2/Conv")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6, 8])],
        [w1, w2],
    )
    text = _refusal(g, tmp_path / "mix.onnx")
    assert "'/Transpose' (Transpose)" in text and "held channels first into one held channels last, but 'conv K=6" in text


def test_sequence_layouts_that_archc_cannot_keep_are_errors(tmp_path: Path) -> None:
    """An fc's [batch, L, C] read by a Conv1d as [batch, C, L] (no Transpose: it convolves over the
    positions) was imported as `fc; conv` and failed as an importer bug; a model taking [batch, L, C]
    and transposing it for a Conv1d cannot be a spec whose ONNX takes that tensor."""
    from onnx import TensorProto, helper, numpy_helper

    def save(name: str, nodes: list, x: list, y: list, inits: dict[str, tuple[int, ...]]) -> str:
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *x])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *y])],
                              [numpy_helper.from_array(np.ones(s, np.float32), n) for n, s in inits.items()])
        return _refusal(g, tmp_path / name)

    text = save("fc_conv.onnx", [helper.make_node("MatMul", ["x", "fc.weight_t"], ["h"], name="/fc/MatMul"),
                                 helper.make_node("Conv", ["h", "conv.weight"], ["y"], name="/conv/Conv")],
                [20, 4], [6, 8], {"fc.weight_t": (4, 8), "conv.weight": (6, 20, 1)})
    assert "'/conv/Conv' (Conv)" in text and "reads a sequence held channels last as channels first" in text
    text = save("input.onnx", [helper.make_node("Transpose", ["x"], ["t"], name="/Transpose", perm=[0, 2, 1]),
                               helper.make_node("Conv", ["t", "conv.weight"], ["y"], name="/conv/Conv")],
                [20, 4], [8, 20], {"conv.weight": (8, 4, 1)})
    assert "'/Transpose' (Transpose)" in text and "holds its input sequence channels last" in text


def test_unsupported_node_is_named(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="/act/Relu"), helper.make_node("Erf", ["r"], ["y"], name="/odd/Erf")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 4, 4])],
    )
    text = _refusal(g, tmp_path / "odd.onnx")
    assert "'/odd/Erf' (Erf)" in text and "[N, 3, 4, 4]" in text


def test_a_model_of_identities_is_an_identity(tmp_path: Path) -> None:
    """Identity and Dropout nodes are no layers; a model of nothing else passes its input on."""
    archc.loads("input 20x20x4\ndropout 0.1\n").to_onnx(tmp_path / "drop.onnx")
    spec = finish(import_onnx(tmp_path / "drop.onnx"))
    assert "\ninput 20x20x4\nidentity\n" in spec
    assert archc.loads(spec).output_shape == (20, 20, 4)


class CountedStack(nn.Module):  # torchvision's ViT names its layers encoder_layer_0, encoder_layer_1, ...
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.Sequential(OrderedDict(
            (f"unit_{i}", nn.Sequential(OrderedDict(conv=nn.Conv2d(8, 8, 3, padding=1), act=nn.ReLU()))) for i in range(3)))
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_counted_children_are_a_repeat(tmp_path: Path) -> None:
    path = tmp_path / "counted.onnx"
    _export(_randomised(CountedStack), (3, 8, 8), path, "torchscript")
    _, spec = _round_trip(path, (3, 8, 8))
    assert "layers: repeat 3 { " in spec and "unit_" not in spec


class LoopResidual(nn.Module):  # a ModuleList called in a loop, the sum in the parent's forward
    def __init__(self) -> None:
        super().__init__()
        self.l = nn.ModuleList([nn.Sequential(nn.Linear(16, 16), nn.ReLU()) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.l:
            x = m(x) + x
        return x


class LoopFunctional(nn.Module):  # the same with the activation a function of the parent
    def __init__(self) -> None:
        super().__init__()
        self.more = nn.ModuleList([nn.Linear(16, 16) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.more:
            x = torch.relu(m(x)) + x
        return x


class LoopDense(nn.Module):  # DenseNet written as a loop: each Sequential reads the concatenation so far
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.l = nn.ModuleList([nn.Sequential(nn.BatchNorm2d(8 + 4 * i), nn.ReLU(), nn.Conv2d(8 + 4 * i, 4, 3, padding=1))
                                for i in range(3)])
        self.fc = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.l:
            features.append(layer(torch.cat(features, 1)))
        return self.fc(torch.cat(features, 1).mean((2, 3)))


LOOPS = {
    "residual": (LoopResidual, (16,), ["l: repeat 3 {", "residual {\n    fc: fc 16\n    relu\n  }"]),
    "functional": (LoopFunctional, (16,), ["more: repeat 3 {", "residual {\n    fc: fc 16\n    relu\n  }"]),
    "dense": (LoopDense, (3, 8, 8), ["l: repeat 3 {", "concat {\n    branch { identity }"]),
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("which", sorted(LOOPS))
def test_a_module_list_called_in_a_loop_is_a_repeat(which: str, exporter: str, tmp_path: Path) -> None:
    """The sums are in the parent's forward, so each merge opened the list again: `l` three times,
    a spec that does not check (E111), or `more`, `more2`, `more3`. Each merge goes in the list's
    child that holds its layers, and the list is a repeat."""
    cls, shape, shown = LOOPS[which]
    path = tmp_path / f"{which}.onnx"
    _export(_randomised(cls), shape, path, exporter)
    _, spec = _round_trip(path, shape)
    for piece in shown:
        assert piece in spec, spec
    assert spec.count("repeat") == 1, spec


class CalledTwice(nn.Module):  # one module called at two places apart: its weights shared
    def __init__(self) -> None:
        super().__init__()
        self.f, self.g = nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.g(self.f(x) + x)
        return self.f(x) + x


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_a_module_called_twice_apart_is_written_once_per_call(exporter: str, tmp_path: Path) -> None:
    """`f` twice in one scope was E111 ("the importer has a bug"): each call is written, `f` and
    `f2`, the shared weights copied into both (a spec has no shared layers but `tie=`)."""
    path = tmp_path / "twice.onnx"
    _export(_randomised(CalledTwice), (8,), path, exporter)
    net, spec = _round_trip(path, (8,))
    assert "residual { f: " in spec and "residual { f2: " in spec, spec
    assert net.params == 3 * 72


def test_a_shape_read_inside_a_match_is_no_use(tmp_path: Path) -> None:
    """MatMul + Add is one fc even where a Shape reads the MatMul's output (the TorchScript exporter
    reads shapes so inside torchvision's attention): a Shape computes nothing to lose."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "fc.weight_t"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "fc.bias")]
    nodes = [
        helper.make_node("MatMul", ["x", "fc.weight_t"], ["m"], name="/fc/MatMul"),
        helper.make_node("Add", ["m", "fc.bias"], ["a"], name="/fc/Add"),
        helper.make_node("Shape", ["m"], ["s"], name="/Shape"),
        helper.make_node("Reshape", ["a", "s"], ["y"], name="/Reshape"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], inits)
    path = tmp_path / "fc.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    net, spec = _round_trip(path, (8,))
    assert "fc: fc 4" in spec and net.params == 36


def test_castlike_of_a_constant_is_a_constant(tmp_path: Path) -> None:
    """`dynamo=True, optimize=False` casts each constant like the input (CastLike): still a constant."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Constant", [], ["lo"], value_float=0.0),
        helper.make_node("Constant", [], ["hi"], value_float=6.0),
        helper.make_node("CastLike", ["lo", "x"], ["lo_c"]),
        helper.make_node("CastLike", ["hi", "x"], ["hi_c"]),
        helper.make_node("Clip", ["x", "lo_c", "hi_c"], ["y"], name="/act/Clip"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 4, 4])])
    path = tmp_path / "clip.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert import_onnx(path).text.strip().splitlines()[-1] == "act: relu6"


def test_asymmetric_padding_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((2, 3, 3, 3), np.float32), "conv.weight")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="/conv/Conv", pads=[0, 0, 1, 1], kernel_shape=[3, 3])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 7, 7])],
        [w],
    )
    path = tmp_path / "pad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ImportFailure, match="asymmetric padding"):
        import_onnx(path)


# --- hostile models (issue 12): each a located refusal, exit 1, never a traceback or a hang ------
def _hostile_models(tmp: Path) -> dict[str, str]:
    """{file name: a fragment of its message}; the files written under `tmp`."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    x = h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, ["a", "b", "c", "d"])

    def save(name: str, nodes: list, inputs: list | None = None, inits: tuple = (), outputs: list | None = None) -> None:
        g = h.make_graph(nodes, "g", inputs or [x], outputs or [y], list(inits))
        (tmp / name).write_bytes(h.make_model(g, opset_imports=[h.make_opsetid("", 20)]).SerializeToString())

    w = nh.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    save("name.onnx", [h.make_node("Relu", ["x"], ["y"], name="Relu_name")])
    data = (tmp / "name.onnx").read_bytes()
    (tmp / "name.onnx").write_bytes(data.replace(b"Relu_name", b"\xdaelu_name"))  # protobuf hands it over as bytes
    (tmp / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "garbage.onnx").write_bytes(bytes(range(256)) * 8)
    os.mkfifo(tmp / "fifo.onnx")
    (tmp / "loop1.onnx").symlink_to("loop2.onnx")
    (tmp / "loop2.onnx").symlink_to("loop1.onnx")
    save("conv_one_input.onnx", [h.make_node("Conv", ["x"], ["y"])])
    save("neg_dim.onnx", [h.make_node("Relu", ["x"], ["y"])], [h.make_tensor_value_info("x", T.FLOAT, [1, 3, -5, 8])])
    seq = h.make_tensor_sequence_value_info("y", T.FLOAT, None)
    save("sequence.onnx", [h.make_node("SequenceConstruct", ["x"], ["y"])], outputs=[seq])
    huge = T(name="w", data_type=T.FLOAT, dims=[1 << 20, 1 << 20, 3, 3])  # 36 TiB declared, no data
    save("huge.onnx", [h.make_node("Conv", ["x", "w"], ["y"])], inits=(huge,))
    for name, location in (("absolute.onnx", "/etc/passwd"), ("dotdot.onnx", "../../etc/passwd")):
        ext = T()
        ext.CopyFrom(w)
        ext.ClearField("raw_data")
        ext.data_location = T.EXTERNAL
        ext.external_data.add(key="location", value=location)
        save(name, [h.make_node("Conv", ["x", "w"], ["y"])], inits=(ext,))
    six = [h.make_tensor_value_info(v, T.FLOAT, [1, 2, 2, 2, 2, 2]) for v in "xy"]
    save("sixd.onnx", [h.make_node("Relu", ["x"], ["y"])], six[:1], outputs=six[1:])
    save("nonodes.onnx", [], outputs=[h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])])
    empty = [h.make_tensor_value_info(v, T.FLOAT, [1, 3, 0, 8]) for v in "xy"]
    save("zerodim.onnx", [h.make_node("Relu", ["x"], ["y"])], empty[:1], outputs=empty[1:])
    ids = [h.make_tensor_value_info(v, T.INT64, [1, 8]) for v in "xy"]
    save("intin.onnx", [h.make_node("Relu", ["x"], ["y"], name="act")], ids[:1], outputs=ids[1:])
    save("longname.onnx", [h.make_node("Erf", ["x"], ["y"], name="n" * 5_000_000)])  # 5 MB, quoted in the message
    return {
        "sixd.onnx": "the input 'x' (1x2x2x2x2x2) has 6 axes: a spec's input has 2 to 5 axes",
        "nonodes.onnx": "the graph has no nodes: its output 'x' is its input 'x'",
        "zerodim.onnx": "the input 'x' (1x3x0x8) has an empty axis",
        "intin.onnx": "node 'act' (Relu), inputs [[1, 8]] -> outputs [[1, 8]]: it reads the integer input 'x' (token ids)",
        "longname.onnx": "node 'nnnn" + "n" * 56 + "...nnnnnnnnnnnnnnnnnnnn' (5,000,000 characters) (Erf)",
        "name.onnx": "NodeProto.name is not UTF-8 text",
        "truncated.onnx": "not a readable ONNX model",
        "empty.onnx": "the file is empty",
        "garbage.onnx": "not a readable ONNX model",
        "fifo.onnx": "a named pipe (FIFO), not a regular file",
        "loop1.onnx": "a symbolic link loop",
        "conv_one_input.onnx": "input size 1 not in range",
        "neg_dim.onnx": "negative dimension (-5)",
        "sequence.onnx": "output 'y' is not a tensor",
        "huge.onnx": "more than --max-size 4.0 GiB",
        "absolute.onnx": "'/etc/passwd' is not a file beside the model",
        "dotdot.onnx": "'../../etc/passwd' is not a file beside the model",
    }


def test_hostile_models_are_refused_by_name(tmp_path: Path) -> None:
    import subprocess
    import sys

    expected = _hostile_models(tmp_path)
    for name, fragment in expected.items():
        # a child process: a FIFO blocked the read forever, a non-UTF-8 name was exit 3
        proc = subprocess.run(
            [sys.executable, "-m", "archc", "import", name, "-o", "out.arch"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
        )
        assert proc.returncode == 1 and fragment in proc.stderr, (name, proc.returncode, proc.stderr[:2000])
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, name
        assert "does not check" not in proc.stderr and len(proc.stderr) < 1000, name  # the model's fault, told briefly
    assert not (tmp_path / "out.arch").exists()
    # the message says to raise --max-size: import takes it (the model then fails the checker: no data)
    assert main(["import", str(tmp_path / "huge.onnx"), "-o", "-", "--max-size", "100T"]) == 1


class Accented(nn.Module):  # Python takes `self.café`; an archc name is ASCII
    def __init__(self) -> None:
        super().__init__()
        self.café = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.café(x)), 1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_module_attribute_beyond_ascii_is_made_a_spec_name(tmp_path: Path) -> None:
    path = tmp_path / "accented.onnx"
    _export(_randomised(Accented), (3, 8, 8), path, "torchscript")
    net, spec = _round_trip(path, (3, 8, 8))
    assert "caf_: conv K=4 F=3\n" in spec and net.params == 4 * 27 + 4 + 144 * 2 + 2
