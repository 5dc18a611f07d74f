"""The model zoo: every spec in `specs/` checked against its published numbers.

Each row is (spec, published parameter count, published GFLOPS or None, source).
torchvision's model tables give `num_params` exactly and "GFLOPS" that are
multiply-accumulates of the conv and fc layers at batch 1, i.e. archc's `macs`;
where the table rounds to two decimals, the weights' metadata (`_ops`) gives
three, and the row uses those. Nothing here is computed by archc: the figures
are the published ones, and for the two papers that publish none (the U-Net,
M5) the counts are worked out below from the papers' own layer tables and
figures, independently of archc.
"""

from __future__ import annotations

import re
from itertools import dropwhile
from pathlib import Path

import pytest

import archc
from archc.analysis.tensors import tensor_specs

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# spec stem: (params, GFLOPS as MACs or None, where the figures come from)
ZOO: dict[str, tuple[int, float | None, str]] = {
    "lenet5": (61_706, None, "LeCun et al. 1998, as usually implemented"),
    "alexnet_lecture": (28_823_912, None, "lecture slides (exact count of what they draw)"),
    "zfnet_lecture": (28_803_176, None, "lecture AlexNet less the slides' 20,736"),
    "alexnet_paper": (62_378_344, None, "Krizhevsky 2012, one tower"),
    "alexnet_caffe": (60_965_224, None, "Caffe bvlc_alexnet"),
    "zfnet_paper": (62_357_608, None, "Zeiler & Fergus 2013, counted from figure 3"),
    "alexnet_torchvision": (61_100_840, 0.714, "torchvision alexnet"),
    "vgg11": (132_863_336, 7.609, "torchvision vgg11"),
    "vgg11_bn": (132_868_840, 7.609, "torchvision vgg11_bn"),
    "vgg16": (138_357_544, 15.47, "torchvision vgg16"),
    "vgg16_bn": (138_365_992, 15.47, "torchvision vgg16_bn"),
    "vgg19": (143_667_240, 19.632, "torchvision vgg19"),
    "vgg19_bn": (143_678_248, 19.632, "torchvision vgg19_bn"),
    "resnet18": (11_689_512, 1.814, "torchvision resnet18"),
    "resnet34": (21_797_672, 3.664, "torchvision resnet34"),
    "resnet50": (25_557_032, 4.089, "torchvision resnet50"),
    "resnet101": (44_549_160, 7.801, "torchvision resnet101"),
    "googlenet": (6_624_904, 1.498, "torchvision googlenet, no aux heads"),
    "squeezenet1_0": (1_248_424, 0.819, "torchvision squeezenet1_0"),
    "squeezenet1_1": (1_235_496, 0.349, "torchvision squeezenet1_1"),
    "mobilenet_v2": (3_504_872, 0.301, "torchvision mobilenet_v2"),
    "densenet121": (7_978_856, 2.834, "torchvision densenet121"),
    # contract v2: torchvision's tables print 0.39, 0.22, 0.06, 4.46 and 40.70; its metadata the digits below
    "efficientnet_b0": (5_288_548, 0.386, "torchvision efficientnet_b0"),
    "mobilenet_v3_large": (5_483_032, 0.217, "torchvision mobilenet_v3_large"),
    "mobilenet_v3_small": (2_542_856, 0.057, "torchvision mobilenet_v3_small"),
    "convnext_tiny": (28_589_128, 4.456, "torchvision convnext_tiny"),
    "r3d_18": (33_371_472, 40.697, "torchvision video r3d_18, 16x112x112"),
    # torchvision's ViT GFLOPS count the patch projection, the attention projections, QK^T and
    # AV (2*L*L*C), the MLPs and the head: the contract's MACs
    "vit_b_16": (86_567_656, 17.56, "torchvision vit_b_16"),
    "vit_b_32": (88_224_232, 4.41, "torchvision vit_b_32"),
    "vit_l_16": (304_326_632, 61.55, "torchvision vit_l_16"),
    # language models: the parameter counts Hugging Face's models report (num_parameters(), tied
    # weights once); no MAC count is published for them in the contract's sense
    "gpt2_small": (124_439_808, None, "Hugging Face gpt2 (output tied to wte)"),
    "gpt2_medium": (354_823_168, None, "Hugging Face gpt2-medium (output tied to wte)"),
    "llama2_7b": (6_738_415_616, None, "Hugging Face meta-llama/Llama-2-7b-hf"),
    "tinyllama_1_1b": (1_100_048_384, None, "Hugging Face TinyLlama/TinyLlama-1.1B"),
    "llama3_8b": (8_030_261_248, None, "Hugging Face meta-llama/Meta-Llama-3-8B"),
}


# --- the U-Net (Ronneberger et al. 2015, figure 1) and M5 (Dai et al. 2017, table 1), by hand ---------
# (in channels, out channels, window, output side) of every conv of figure 1; the up-convolutions are
# 2x2 stride 2 and multiply their whole window at every *input* position.
UNET_CONVS = [
    (1, 64, 3, 570), (64, 64, 3, 568), (64, 128, 3, 282), (128, 128, 3, 280), (128, 256, 3, 138),
    (256, 256, 3, 136), (256, 512, 3, 66), (512, 512, 3, 64), (512, 1024, 3, 30), (1024, 1024, 3, 28),
    (1024, 512, 3, 54), (512, 512, 3, 52), (512, 256, 3, 102), (256, 256, 3, 100), (256, 128, 3, 198),
    (128, 128, 3, 196), (128, 64, 3, 390), (64, 64, 3, 388), (64, 2, 1, 388),
]  # fmt: skip
UNET_UPCONVS = [(1024, 512, 28), (512, 256, 52), (256, 128, 100), (128, 64, 196)]  # (in, out, input side)
UNET_PARAMS = sum(f * f * c * k + k for c, k, f, _ in UNET_CONVS) + sum(4 * c * k + k for c, k, _ in UNET_UPCONVS)
UNET_MACS = sum(n * n * k * f * f * c for c, k, f, n in UNET_CONVS) + sum(n * n * 4 * c * k for c, k, n in UNET_UPCONVS)
# figure 1's sizes along the U, the contracting path then the expanding one
UNET_SHAPES = {
    "enc1": (568, 568, 64), "pool1": (284, 284, 64), "enc2": (280, 280, 128), "pool2": (140, 140, 128),
    "enc3": (136, 136, 256), "pool3": (68, 68, 256), "enc4": (64, 64, 512), "pool4": (32, 32, 512),
    "bottom": (28, 28, 1024), "up4": (56, 56, 512), "copy4": (56, 56, 512), "level4": (56, 56, 1024),
    "dec4": (52, 52, 512), "up3": (104, 104, 256), "copy3": (104, 104, 256), "dec3": (100, 100, 256),
    "up2": (200, 200, 128), "copy2": (200, 200, 128), "dec2": (196, 196, 128), "up1": (392, 392, 64),
    "copy1": (392, 392, 64), "level1": (392, 392, 128), "dec1": (388, 388, 64), "out": (388, 388, 2),
}  # fmt: skip
# M5: convs [80/4, 128], [3, 128], [3, 256], [3, 512] (with biases), each with batchnorm; a 512 -> 10 fc.
# Positions after each conv: 8000, 2000, 500, 125 (table 1).
M5_CONVS = [(1, 128, 80, 8000), (128, 128, 3, 2000), (128, 256, 3, 500), (256, 512, 3, 125)]
M5_PARAMS = sum(f * c * k + k + 2 * k for c, k, f, _ in M5_CONVS) + 512 * 10 + 10
M5_MACS = sum(n * k * f * c for c, k, f, n in M5_CONVS) + 512 * 10
ZOO["unet"] = (UNET_PARAMS, UNET_MACS / 1e9, "Ronneberger et al. 2015, figure 1, counted by hand")
ZOO["m5"] = (M5_PARAMS, M5_MACS / 1e9, "Dai et al. 2017, table 1 (0.5M as printed), counted by hand")

# torchvision builder and keyword arguments for the specs that mirror one
TORCHVISION: dict[str, tuple[str, dict[str, object]]] = {
    "alexnet_torchvision": ("alexnet", {}),
    "vgg11": ("vgg11", {}),
    "vgg11_bn": ("vgg11_bn", {}),
    "vgg16": ("vgg16", {}),
    "vgg16_bn": ("vgg16_bn", {}),
    "vgg19": ("vgg19", {}),
    "vgg19_bn": ("vgg19_bn", {}),
    "resnet18": ("resnet18", {}),
    "resnet34": ("resnet34", {}),
    "resnet50": ("resnet50", {}),
    "resnet101": ("resnet101", {}),
    "googlenet": ("googlenet", {"aux_logits": False, "init_weights": False}),
    "squeezenet1_0": ("squeezenet1_0", {}),
    "squeezenet1_1": ("squeezenet1_1", {}),
    "mobilenet_v2": ("mobilenet_v2", {}),
    "densenet121": ("densenet121", {}),
    "efficientnet_b0": ("efficientnet_b0", {}),
    "mobilenet_v3_large": ("mobilenet_v3_large", {}),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}),
    "convnext_tiny": ("convnext_tiny", {}),
    "r3d_18": ("video.r3d_18", {}),
}
# torchvision writes ConvNeXt's pointwise layers as nn.Linear ([4C, C]) where the spec has 1x1 convs
# ([4C, C, 1, 1]), and registers each block's layer_scale before the block: compare those as multisets
# of shapes with trailing 1s dropped.
REORDERED = {"convnext_tiny"}

_cache: dict[str, archc.Network] = {}


def load(stem: str) -> archc.Network:
    if stem not in _cache:
        _cache[stem] = archc.load(SPECS / f"{stem}.arch")
    return _cache[stem]


@pytest.mark.parametrize("stem", sorted(ZOO))
def test_spec_checks_clean(stem: str) -> None:
    result = archc.compile_file(SPECS / f"{stem}.arch")
    assert not result.errors, result.render()
    # the only warnings the zoo allows are uneven window divisions (W001)
    assert {d.code for d in result.warnings} <= {"W001"}, result.render()


@pytest.mark.parametrize("stem", sorted(ZOO))
def test_params_exact(stem: str) -> None:
    params, _, source = ZOO[stem]
    assert load(stem).params == params, f"{stem}: archc {load(stem).params:,} vs {source} {params:,}"


@pytest.mark.parametrize("stem", sorted(s for s, (_, g, _) in ZOO.items() if g is not None))
def test_macs_within_one_percent(stem: str) -> None:
    _, gflops, source = ZOO[stem]
    assert gflops is not None
    macs = load(stem).macs
    assert abs(macs - gflops * 1e9) <= 0.01 * gflops * 1e9, f"{stem}: archc {macs:,} MACs vs {source} {gflops} G"


@pytest.mark.parametrize("stem", sorted(ZOO))
def test_spec_states_source_and_published_figures(stem: str) -> None:
    """The zoo convention: a source comment on top, exact params, macs within 1%, the output."""
    text = (SPECS / f"{stem}.arch").read_text(encoding="utf-8")
    assert text.startswith("#"), f"{stem}.arch must open with a comment naming its source"
    assert re.search(r"^expect params = [\d_]+\s*(#.*)?$", text, re.M), "exact `expect params`"
    # the lecture's own example predates the convention; language models have no published MACs
    if stem != "alexnet_lecture" and ZOO[stem][1] is not None:
        assert re.search(r"^expect macs = [\d.]+[KMG]? (±|\+-) 1%", text, re.M), "`expect macs = ... ± 1%`"
    assert re.search(r"^expect output = \d+", text, re.M)
    assert "->" in text, "shape assertions at key points"


def test_every_spec_is_in_the_zoo() -> None:
    assert {p.stem for p in SPECS.glob("*.arch")} >= set(ZOO)


def test_lecture_zfnet_differs_from_alexnet_only_in_conv1() -> None:
    """The slide: layer 1 F = 11 -> 7 saves ((11^2 - 7^2) x 3) x 96 = 20,736 weights, nothing else."""
    alex = {layer.name: layer for layer in load("alexnet_lecture").layers}
    zf = {layer.name: layer for layer in load("zfnet_lecture").layers}
    assert alex.keys() == zf.keys()
    diffs = {name: alex[name].weights - zf[name].weights for name in alex if alex[name].weights != zf[name].weights}
    assert diffs == {"conv1": ((11**2 - 7**2) * 3) * 96}
    assert diffs["conv1"] == 20_736
    assert all(alex[name].biases == zf[name].biases for name in alex)
    assert load("alexnet_lecture").params - load("zfnet_lecture").params == 20_736


def test_caffe_groups_halve_conv2_conv4_conv5() -> None:
    """The paper's two-GPU split is G=2: exactly the one-tower count less half of three convs."""
    paper = {layer.name: layer for layer in load("alexnet_paper").layers}
    caffe = {layer.name: layer for layer in load("alexnet_caffe").layers}
    halved = {name for name in caffe if name in paper and caffe[name].weights != paper[name].weights}
    assert halved == {"conv2", "conv4", "conv5"}
    assert all(2 * caffe[n].weights == paper[n].weights for n in halved)


def _torchvision_model(stem: str):
    torchvision = pytest.importorskip("torchvision")
    builder, kwargs = TORCHVISION[stem]
    models = torchvision.models
    *package, name = builder.split(".")
    for part in package:  # video.r3d_18
        models = getattr(models, part)
    return getattr(models, name)(weights=None, **kwargs)


def _layer_state_shapes(net: archc.Network) -> list[tuple[int, ...]]:
    """The state_dict shapes a PyTorch model of `net` has, from archc's tensor declarations alone (NCHW)."""
    shapes: list[tuple[int, ...]] = []
    for spec in tensor_specs(net.analysis):
        shapes.append(spec.shape)
        if spec.name.endswith(".running_var"):
            shapes.append(())  # PyTorch's batchnorm also counts its batches
    return shapes


def _comparable(stem: str, shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    if stem not in REORDERED:
        return shapes
    trimmed = [tuple(reversed(tuple(dropwhile(lambda d: d == 1, reversed(s))))) if s else s for s in shapes]
    return sorted(trimmed)


@pytest.mark.parametrize("stem", sorted(TORCHVISION))
def test_layers_match_torchvision_state_dict(stem: str) -> None:
    """The spec's layers, in order, hold the tensors torchvision's model holds (needs no torch_gen)."""
    reference = _torchvision_model(stem)
    ref_shapes = [tuple(t.shape) for t in reference.state_dict().values()]
    assert _comparable(stem, _layer_state_shapes(load(stem))) == _comparable(stem, ref_shapes)


@pytest.mark.parametrize("stem", sorted(TORCHVISION))
def test_state_dict_shapes_match_torchvision(stem: str) -> None:
    reference = _torchvision_model(stem)
    ours = load(stem).to_torch()
    ref_shapes = [tuple(t.shape) for t in reference.state_dict().values()]
    our_shapes = [tuple(t.shape) for t in ours.state_dict().values()]
    assert _comparable(stem, our_shapes) == _comparable(stem, ref_shapes)
    ref_params = sum(p.numel() for p in reference.parameters())
    assert ref_params == ZOO[stem][0]  # the published figure is torchvision's own count


def test_unet_reproduces_every_shape_of_figure_1() -> None:
    """572x572x1 in, 388x388x2 out; every stage of the U as the paper's figure 1 prints it."""
    net = load("unet")
    assert net.input_shape == (572, 572, 1) and net.output_shape == (388, 388, 2)
    shapes = {layer.name: layer.output for layer in net.layers}
    for scope in net.graph.scopes:
        shapes[scope.path] = net.analysis.shape_of(scope.output).dims
    assert {name: shapes[name] for name in UNET_SHAPES} == UNET_SHAPES
    crops = {layer.name: layer for layer in net.layers if layer.kind == "crop"}
    assert sorted(crops) == ["copy1", "copy2", "copy3", "copy4"]  # copy and crop, one per level
    assert sum(layer.kind == "convtranspose" for layer in net.layers) == 4  # the up-convolutions


def test_m5_is_a_1d_network_of_table_1() -> None:
    net = load("m5")
    assert net.input_shape == (32000, 1) and net.output_shape == (10,)
    sizes = [layer.output for layer in net.layers if layer.kind in ("conv", "maxpool")]
    assert sizes == [(8000, 128), (2000, 128), (2000, 128), (500, 128), (500, 256), (125, 256), (125, 512), (31, 512)]
    assert M5_PARAMS // 10_000 == 55  # table 1 prints 0.5M: 0.55M, truncated


@pytest.mark.parametrize("stem", sorted(TORCHVISION))
def test_outputs_match_torchvision_with_its_weights(stem: str) -> None:
    """torchvision's tensors, loaded in order into the generated module, give torchvision's outputs
    (eval mode; batchnorm statistics and layer scales drawn at random so none is the identity)."""
    torch = pytest.importorskip("torch")
    reference = _torchvision_model(stem).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
            if isinstance(getattr(module, "layer_scale", None), torch.nn.Parameter):
                module.layer_scale.uniform_(0.5, 1.5)
    net = load(stem)
    ours = net.to_torch().eval()
    target = ours.state_dict()
    # the generated module registers its tensors in torchvision's order (a layer_scale before its block too)
    assert len(target) == len(reference.state_dict())
    ours.load_state_dict(
        {k: v.reshape(target[k].shape) for k, v in zip(target, reference.state_dict().values(), strict=True)}
    )
    x = torch.randn(1, *net.graph.input_shape.nchw())
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-4
