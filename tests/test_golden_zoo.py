"""Golden outputs of every stage for zoo specs with blocks, repeats, residuals and concats.

They pin what users see (PyTorch source, ONNX text, summary in every form,
receptive fields, DOT) so that refactors of the house keep it byte-identical:
regenerating one of these files is a change of behaviour and needs a reason.
"""

from __future__ import annotations

import pytest
from conftest import GOLDEN, SPECS, onnx_text

import archc
from archc.cli import main

ZOO = (
    "resnet18", "googlenet", "squeezenet1_0", "mobilenet_v2", "densenet121",
    # contract v2: SE merges and SiLU, layernorm and layer scales, a volume, a 1-D signal, crops and up-convolutions
    "efficientnet_b0", "convnext_tiny", "r3d_18", "m5", "unet",
)  # fmt: skip
CLI_VIEWS = {
    "summary.txt": ["summary"],
    "summary.json": ["summary", "--json"],
    "explain.txt": ["summary", "--explain"],
    "rf.txt": ["summary", "--rf"],
    "graph.dot": ["graph"],
}


@pytest.fixture(autouse=True)
def _full_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables as a file gets them: full width, whatever the terminal running the tests says."""
    monkeypatch.delenv("COLUMNS", raising=False)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("view", sorted(CLI_VIEWS))
@pytest.mark.parametrize("stem", ZOO)
def test_cli_views(stem: str, view: str, golden, capsys: pytest.CaptureFixture[str]) -> None:
    out = _cli([*CLI_VIEWS[view], str(SPECS / f"{stem}.arch")], capsys)
    golden(GOLDEN / "zoo" / f"{stem}.{view}", out.replace(str(SPECS), "specs"))


@pytest.mark.parametrize("stem", ZOO)
def test_torch_source(stem: str, golden) -> None:
    pytest.importorskip("torch")
    from archc.backends.torch.generate import generate_source

    net = archc.load(SPECS / f"{stem}.arch")
    golden(GOLDEN / "zoo" / f"{stem}.py", generate_source(net.analysis, net.path))


@pytest.mark.parametrize("stem", ZOO)
def test_onnx_text(stem: str, golden) -> None:
    pytest.importorskip("onnx")
    from archc.backends.onnx.generate import build_model

    model = build_model(archc.load(SPECS / f"{stem}.arch").analysis, weights="zeros")
    golden(GOLDEN / "zoo" / f"{stem}.onnx.txt", onnx_text(model))


def test_every_golden_is_used() -> None:
    expected = {f"{s}.{v}" for s in ZOO for v in (*CLI_VIEWS, "py", "onnx.txt")}
    assert {p.name for p in (GOLDEN / "zoo").iterdir()} == expected
