"""The model zoo: every spec in `specs/` checked against its published numbers.

Each row is (spec, published parameter count, published GFLOPS or None, source).
torchvision's model tables give `num_params` exactly and "GFLOPS" that are
multiply-accumulates of the conv and fc layers at batch 1, i.e. archc's `macs`.
Nothing here is computed by the test: the figures are the published ones and
archc must reproduce them from the specs alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import archc

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
    # torchvision's ViT GFLOPS count the patch projection, the attention projections, QK^T and
    # AV (2*L*L*C), the MLPs and the head: the contract's MACs
    "vit_b_16": (86_567_656, 17.56, "torchvision vit_b_16"),
    "vit_b_32": (88_224_232, 4.41, "torchvision vit_b_32"),
    "vit_l_16": (304_326_632, 61.55, "torchvision vit_l_16"),
}

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
}

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
    if stem != "alexnet_lecture":  # the lecture's own example predates the convention
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
    return getattr(torchvision.models, builder)(weights=None, **kwargs)


def _layer_state_shapes(net: archc.Network) -> list[tuple[int, ...]]:
    """The state_dict shapes a PyTorch model of `net` has, from archc's layers alone (NCHW)."""
    shapes: list[tuple[int, ...]] = []
    for layer in net.layers:
        a = layer.attrs
        if layer.kind == "conv":
            fh, fw = a["F"]
            shapes.append((a["K"], layer.weights // (a["K"] * fh * fw), fh, fw))
            shapes += [(a["K"],)] if a["bias"] else []
        elif layer.kind == "fc":
            shapes.append((a["N"], layer.weights // a["N"]))
            shapes += [(a["N"],)] if a["bias"] else []
        elif layer.kind == "batchnorm":  # weight, bias, running_mean, running_var, num_batches_tracked
            c = layer.output[-1]
            shapes += [(c,), (c,), (c,), (c,), ()]
    return shapes


@pytest.mark.parametrize("stem", sorted(TORCHVISION))
def test_layers_match_torchvision_state_dict(stem: str) -> None:
    """The spec's layers, in order, hold the tensors torchvision's model holds (needs no torch_gen)."""
    reference = _torchvision_model(stem)
    assert _layer_state_shapes(load(stem)) == [tuple(t.shape) for t in reference.state_dict().values()]


@pytest.mark.parametrize("stem", sorted(TORCHVISION))
def test_state_dict_shapes_match_torchvision(stem: str) -> None:
    reference = _torchvision_model(stem)
    ours = load(stem).to_torch()
    ref_shapes = [tuple(t.shape) for t in reference.state_dict().values()]
    our_shapes = [tuple(t.shape) for t in ours.state_dict().values()]
    assert our_shapes == ref_shapes
    ref_params = sum(p.numel() for p in reference.parameters())
    assert ref_params == ZOO[stem][0]  # the published figure is torchvision's own count
