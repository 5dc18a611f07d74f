"""ONNX initializer names: the weights' are the PyTorch state_dict keys, archc's own constants are
`/const/...`, which no key can be (README, `compile`)."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("numpy")
pytest.importorskip("onnx")

from conftest import ROOT
from test_onnx_gen import EVERY_KIND, EVERY_KIND_1D, EVERY_KIND_3D, SEQUENCE_SPECS

import archc
from archc.analysis.tensors import tensor_specs
from archc.backends.onnx.generate import build_model
from archc.backends.onnx.lowering import CONSTANT_PREFIX

UNEVEN = "input 13x13x2\nconv K=3 F=1\nadaptiveavgpool 6\nfc 2\n"  # 13 -> 6: averaging matrices


@pytest.mark.parametrize("text", [UNEVEN, EVERY_KIND, EVERY_KIND_1D, EVERY_KIND_3D, *SEQUENCE_SPECS])
def test_initializers_are_state_dict_keys_or_named_constants(text: str) -> None:
    net = archc.loads(text)
    names = [i.name for i in build_model(net.analysis, weights="zeros").graph.initializer]
    constants = [n for n in names if n.startswith(CONSTANT_PREFIX)]
    weights = [n for n in names if not n.startswith(CONSTANT_PREFIX)]
    assert weights == [s.name for s in tensor_specs(net.analysis)]
    assert all("/" not in n for n in weights)  # no key can look like a constant
    if text == UNEVEN:
        assert constants == ["/const/adaptiveavgpool1/cols", "/const/adaptiveavgpool1/rows"]
    if text == UNEVEN and importlib.util.find_spec("torch") is not None:
        assert set(weights) == set(net.to_torch().state_dict())


def test_the_readme_says_how_constants_are_named() -> None:
    """It said "initializer names equal the PyTorch state_dict keys", untrue of the constants."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "initializer names equal the PyTorch `state_dict` keys" not in readme
    assert "are named `/const/<layer>/<what>`, which no `state_dict` key can be" in readme
    assert CONSTANT_PREFIX == "/const/"
