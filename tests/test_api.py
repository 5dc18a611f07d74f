"""The Python API: archc.load / archc.loads / compile_text, Network, SpecError."""

from __future__ import annotations

from pathlib import Path

import pytest

import archc
from archc.diagnostics import ArchError

ROOT = Path(__file__).resolve().parent.parent
ALEXNET = ROOT / "specs" / "alexnet_lecture.arch"


def test_load_alexnet() -> None:
    net = archc.load(ALEXNET)
    assert isinstance(net, archc.Network)
    assert net.name == "AlexNet"
    assert (net.params, net.weights, net.biases, net.macs) == (28_823_912, 28_813_344, 10_568, 614_310_432)
    assert net.input_shape == (227, 227, 3)
    assert net.output_shape == (1000,)
    assert net.warnings == ()
    assert "28,823,912 params" in repr(net)


def test_load_accepts_str_paths() -> None:
    assert archc.load(str(ALEXNET)).params == 28_823_912


def test_layers() -> None:
    net = archc.load(ALEXNET)
    layers = net.layers
    assert all(isinstance(layer, archc.Layer) for layer in layers)
    assert [layer.name for layer in layers][:3] == ["conv1", "relu1", "pool1"]
    conv1 = layers[0]
    assert (conv1.kind, conv1.output, conv1.weights, conv1.biases, conv1.params) == (
        "conv",
        (55, 55, 96),
        34_848,
        96,
        34_944,
    )
    assert conv1.macs == 105_415_200
    assert conv1.attrs["K"] == 96 and conv1.attrs["F"] == (11, 11) and conv1.attrs["S"] == (4, 4)
    assert layers[-1].output == (1000,)


def test_loads_names_the_network_after_the_filename() -> None:
    net = archc.loads("input 28x28x1\nfc 10", filename="mnist-mlp.arch")
    assert (net.name, net.params, net.output_shape, net.input_shape) == ("mnist_mlp", 7850, (10,), (28, 28, 1))
    assert archc.loads("input 4\nfc 2").name == "network"


def test_loads_keeps_warnings() -> None:
    net = archc.loads("input 9x9x3\nconv K=4 F=2 S=2\n", filename="w.arch")
    (w,) = net.warnings
    assert w.code == "W001"


def test_spec_error_carries_diagnostics_and_rendered_text() -> None:
    with pytest.raises(archc.SpecError) as info:
        archc.loads("input 8x8x3\nconvv K=4 F=3\nc: relu\nc: relu\n", filename="bad.arch")
    exc = info.value
    assert isinstance(exc, ArchError)
    assert [d.code for d in exc.diagnostics] == ["E100", "E111"]
    assert all(isinstance(d, archc.Diagnostic) for d in exc.diagnostics)
    assert exc.rendered == str(exc)
    assert exc.rendered.startswith("bad.arch:2:1: error[E100]: unknown layer kind 'convv'")
    assert "  2 | convv K=4 F=3\n    | ^~~~~" in exc.rendered


def test_load_missing_file_raises_spec_error(tmp_path: Path) -> None:
    with pytest.raises(archc.SpecError) as info:
        archc.load(tmp_path / "nope.arch")
    assert info.value.diagnostics[0].code == "E400"


def test_syntax_error_raises_spec_error() -> None:
    with pytest.raises(archc.SpecError) as info:
        archc.loads("input 8x8x3\nconv K=4 F=\n")
    assert info.value.diagnostics[0].code == "E001"


def test_compile_text_never_raises() -> None:
    r = archc.compile_text("input 8x8x3\nconv K=4 F=9\n", "t.arch")
    assert r.network is None
    assert [d.code for d in r.errors] == ["E200"] and r.warnings == ()
    r = archc.compile_text("input 8x8x3\nrelu\n", "t.arch")
    assert r.network is not None and r.errors == ()


def test_failed_expect_is_an_error() -> None:
    with pytest.raises(archc.SpecError) as info:
        archc.loads("input 10\nfc 10\nexpect params = 100\n")
    (d,) = info.value.diagnostics
    assert d.code == "E300" and "actual params 110" in d.message
