"""Deploy prototxts of the Caffe model zoo's long, repetitive networks, written by this script.

In the format and with the layer names of the published files (BVLC GoogLeNet,
DeepScale's SqueezeNet 1.0 and 1.1, the VGG team's VGG-16 in the legacy V1
format, MSRA's ResNet-50/101/152), built from the papers' tables; AlexNet,
CaffeNet and LeNet are written out by hand in tests/caffe/. Nothing here is
copied from those files: the layer lists come from the papers, the layout
from the format. `python tests/caffe_zoo.py DIR` writes them all to DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path


class Enum(str):
    """An unquoted value: `pool: MAX`, `type: CONVOLUTION`."""


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def _message(fields: dict[str, object], indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    for key, v in fields.items():
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, dict):
                out += [f"{pad}{key} {{", *_message(item, indent + 1), f"{pad}}}"]
            else:
                out.append(f"{pad}{key}: {_value(item)}")
    return out


class Net:
    """A prototxt being written: `layer { ... }` (or V1 `layers { ... }`) blocks in order."""

    def __init__(self, name: str, header: str, v1: bool = False) -> None:
        self.lines = [f'name: "{name}"', *header.strip().splitlines()]
        self.v1 = v1

    def layer(self, name: str, type_: str, bottom: str | list[str], top: str, **params: object) -> str:
        fields: dict[str, object] = {"name": name, "type": Enum(type_) if self.v1 else type_}
        fields["bottom"] = bottom
        fields["top"] = top
        fields.update(params)
        self.lines += ["layers {" if self.v1 else "layer {", *_message(fields, 1), "}"]
        return top

    def conv(self, name: str, bottom: str, k: int, f: int, s: int = 1, p: int = 0, **extra: object) -> str:
        conv: dict[str, object] = {"num_output": k}
        if p:
            conv["pad"] = p
        conv["kernel_size"] = f
        if s != 1:
            conv["stride"] = s
        conv.update(extra)
        params: dict[str, object] = {}
        if not self.v1 and extra.get("bias_term") is not False:
            params["param"] = [{"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0}]
        return self.layer(name, "CONVOLUTION" if self.v1 else "Convolution", bottom, name, **params, convolution_param=conv)

    def relu(self, name: str, blob: str) -> str:
        return self.layer(name, "RELU" if self.v1 else "ReLU", blob, blob)

    def pool(self, name: str, bottom: str, method: str, f: int, s: int, p: int = 0) -> str:
        pooling: dict[str, object] = {"pool": Enum(method), "kernel_size": f, "stride": s}
        if p:
            pooling["pad"] = p
        return self.layer(name, "POOLING" if self.v1 else "Pooling", bottom, name, pooling_param=pooling)

    def fc(self, name: str, bottom: str, n: int) -> str:
        return self.layer(
            name, "INNER_PRODUCT" if self.v1 else "InnerProduct", bottom, name, inner_product_param={"num_output": n}
        )

    def dropout(self, name: str, blob: str, ratio: float) -> str:
        return self.layer(name, "DROPOUT" if self.v1 else "Dropout", blob, blob, dropout_param={"dropout_ratio": ratio})

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _input_layer(n: int, c: int, h: int, w: int) -> str:
    return (
        'layer {\n  name: "data"\n  type: "Input"\n  top: "data"\n'
        f"  input_param {{ shape: {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }}\n}}"
    )


def googlenet() -> str:
    """BVLC GoogLeNet (Szegedy et al. 2015, table 1), without the auxiliary classifiers of training."""
    net = Net("GoogleNet", _input_layer(10, 3, 224, 224))
    filler = {"weight_filler": {"type": "xavier", "std": 0.03}, "bias_filler": {"type": "constant", "value": 0.2}}
    x = net.conv("conv1/7x7_s2", "data", 64, 7, 2, 3, **filler)
    net.relu("conv1/relu_7x7", x)
    x = net.pool("pool1/3x3_s2", x, "MAX", 3, 2)
    lrn = {"local_size": 5, "alpha": 0.0001, "beta": 0.75}
    x = net.layer("pool1/norm1", "LRN", x, "pool1/norm1", lrn_param=lrn)
    x = net.conv("conv2/3x3_reduce", x, 64, 1, **filler)
    net.relu("conv2/relu_3x3_reduce", x)
    x = net.conv("conv2/3x3", x, 192, 3, 1, 1, **filler)
    net.relu("conv2/relu_3x3", x)
    x = net.layer("conv2/norm2", "LRN", x, "conv2/norm2", lrn_param=lrn)
    x = net.pool("pool2/3x3_s2", x, "MAX", 3, 2)
    table = {
        "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
        "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
        "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
        "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
    }  # fmt: skip
    for key, (c1, r3, c3, r5, c5, pp) in table.items():
        m = f"inception_{key}"
        a = net.conv(f"{m}/1x1", x, c1, 1, **filler)
        net.relu(f"{m}/relu_1x1", a)
        b = net.conv(f"{m}/3x3_reduce", x, r3, 1, **filler)
        net.relu(f"{m}/relu_3x3_reduce", b)
        b = net.conv(f"{m}/3x3", b, c3, 3, 1, 1, **filler)
        net.relu(f"{m}/relu_3x3", b)
        c = net.conv(f"{m}/5x5_reduce", x, r5, 1, **filler)
        net.relu(f"{m}/relu_5x5_reduce", c)
        c = net.conv(f"{m}/5x5", c, c5, 5, 1, 2, **filler)
        net.relu(f"{m}/relu_5x5", c)
        d = net.pool(f"{m}/pool", x, "MAX", 3, 1, 1)
        d = net.conv(f"{m}/pool_proj", d, pp, 1, **filler)
        net.relu(f"{m}/relu_pool_proj", d)
        x = net.layer(f"{m}/output", "Concat", [a, b, c, d], f"{m}/output")
        if key in ("3b", "4e"):
            x = net.pool(f"pool{key[0]}/3x3_s2", x, "MAX", 3, 2)
    x = net.pool("pool5/7x7_s1", x, "AVE", 7, 1)
    net.dropout("pool5/drop_7x7_s1", x, 0.4)
    x = net.fc("loss3/classifier", x, 1000)
    net.layer("prob", "Softmax", x, "prob")
    return net.text()


def squeezenet(version: str) -> str:
    """SqueezeNet 1.0 (Iandola et al. 2016, table 1) or 1.1 (DeepScale's 2.4x cheaper revision)."""
    net = Net(f"SqueezeNet_v{version}", 'input: "data"\ninput_shape {\n  dim: 10\n  dim: 3\n  dim: 227\n  dim: 227\n}')
    if version == "1.0":
        x = net.conv("conv1", "data", 96, 7, 2)
        pools_after = {"conv1": "pool1", "fire4": "pool4", "fire8": "pool8"}
        fires = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192), 7: (48, 192), 8: (64, 256), 9: (64, 256)}
    else:
        x = net.conv("conv1", "data", 64, 3, 2)
        pools_after = {"conv1": "pool1", "fire3": "pool3", "fire5": "pool5"}
        fires = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192), 7: (48, 192), 8: (64, 256), 9: (64, 256)}
    net.relu("relu_conv1", x)
    x = net.pool("pool1", x, "MAX", 3, 2)
    for i, (sq, ex) in fires.items():
        f = f"fire{i}"
        s = net.conv(f"{f}/squeeze1x1", x, sq, 1)
        net.relu(f"{f}/relu_squeeze1x1", s)
        a = net.conv(f"{f}/expand1x1", s, ex, 1)
        net.relu(f"{f}/relu_expand1x1", a)
        b = net.conv(f"{f}/expand3x3", s, ex, 3, 1, 1)
        net.relu(f"{f}/relu_expand3x3", b)
        x = net.layer(f"{f}/concat", "Concat", [a, b], f"{f}/concat")
        if f in pools_after:
            x = net.pool(pools_after[f], x, "MAX", 3, 2)
    net.dropout("drop9", x, 0.5)
    x = net.conv("conv10", x, 1000, 1)
    net.relu("relu_conv10", x)
    x = net.layer("pool10", "Pooling", x, "pool10", pooling_param={"pool": Enum("AVE"), "global_pooling": True})
    net.layer("prob", "Softmax", x, "prob")
    return net.text()


def vgg16() -> str:
    """VGG-16 (Simonyan & Zisserman 2015, configuration D), in the legacy V1 format the VGG team published."""
    net = Net("VGG_ILSVRC_16_layers", 'input: "data"\ninput_dim: 10\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224', v1=True)
    x = "data"
    for stage, (k, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for i in range(1, n + 1):
            x = net.conv(f"conv{stage}_{i}", x, k, 3, 1, 1)
            net.relu(f"relu{stage}_{i}", x)
        x = net.pool(f"pool{stage}", x, "MAX", 2, 2)
    for i, n in ((6, 4096), (7, 4096)):
        x = net.fc(f"fc{i}", x, n)
        net.relu(f"relu{i}", x)
        net.dropout(f"drop{i}", x, 0.5)
    x = net.fc("fc8", x, 1000)
    net.layer("prob", "SOFTMAX", x, "prob")
    return net.text()


def resnet(depth: int) -> str:
    """MSRA's ResNet-50/101/152 (He et al. 2016): bottlenecks with the stride in the first 1x1 conv,
    convolutions without bias but conv1, every BatchNorm followed by its Scale."""
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    net = Net(f"ResNet-{depth}", 'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224')

    def conv_bn(name: str, suffix: str, bottom: str, k: int, f: int, s: int, p: int, relu: bool) -> str:
        x = net.layer(
            name, "Convolution", bottom, name,
            convolution_param={"num_output": k, "kernel_size": f, "pad": p, "stride": s, "bias_term": False},
        )  # fmt: skip
        net.layer(f"bn{suffix}", "BatchNorm", x, x, batch_norm_param={"use_global_stats": True})
        net.layer(f"scale{suffix}", "Scale", x, x, scale_param={"bias_term": True})
        if relu:
            net.relu(f"{name}_relu", x)
        return x

    x = net.layer("conv1", "Convolution", "data", "conv1", convolution_param={"num_output": 64, "kernel_size": 7, "pad": 3, "stride": 2})
    net.layer("bn_conv1", "BatchNorm", x, x, batch_norm_param={"use_global_stats": True})
    net.layer("scale_conv1", "Scale", x, x, scale_param={"bias_term": True})
    net.relu("conv1_relu", x)
    x = net.pool("pool1", x, "MAX", 3, 2)
    for stage, (n, k) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True), start=2):
        for i in range(n):
            # ResNet-50 names blocks a, b, c, ...; the deeper ones a, b1, b2, ... where a stage has many
            letter = "a" if i == 0 else (chr(ord("a") + i) if depth == 50 or n <= 3 else f"b{i}")
            b = f"{stage}{letter}"
            s = 2 if i == 0 and stage > 2 else 1
            shortcut = conv_bn(f"res{b}_branch1", f"{b}_branch1", x, 4 * k, 1, s, 0, relu=False) if i == 0 else x
            y = conv_bn(f"res{b}_branch2a", f"{b}_branch2a", x, k, 1, s, 0, relu=True)
            y = conv_bn(f"res{b}_branch2b", f"{b}_branch2b", y, k, 3, 1, 1, relu=True)
            y = conv_bn(f"res{b}_branch2c", f"{b}_branch2c", y, 4 * k, 1, 1, 0, relu=False)
            x = net.layer(f"res{b}", "Eltwise", [shortcut, y], f"res{b}")
            net.relu(f"res{b}_relu", x)
    x = net.pool("pool5", x, "AVE", 7, 1)
    x = net.fc("fc1000", x, 1000)
    net.layer("prob", "Softmax", x, "prob")
    return net.text()


GENERATED = {
    "googlenet": googlenet,
    "squeezenet_v1.0": lambda: squeezenet("1.0"),
    "squeezenet_v1.1": lambda: squeezenet("1.1"),
    "vgg16": vgg16,
    "resnet50": lambda: resnet(50),
    "resnet101": lambda: resnet(101),
    "resnet152": lambda: resnet(152),
}

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for name, make in GENERATED.items():
        (out / f"{name}.prototxt").write_text(make(), encoding="utf-8")
