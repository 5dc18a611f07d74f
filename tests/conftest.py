"""Shared fixtures. Golden files are regenerated with `pytest --overwrite`."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = Path(__file__).resolve().parent / "golden"


# LANGUAGE.md's ResNet block, verbatim: several test modules build on it.
BASIC_BLOCK = """\
block Basic(K, S=1) {
  residual {
    conv K=K F=3 S=S P=1 bias=false
    batchnorm
    relu
    conv K=K F=3 P=1 bias=false
    batchnorm
  } shortcut {
    conv K=K F=1 S=S bias=false
    batchnorm
  }
  relu
}
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--overwrite", action="store_true", help="rewrite golden files from current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """`golden(path, text)`: compare text with a golden file (or rewrite it with --overwrite)."""
    overwrite = request.config.getoption("--overwrite")

    def check(path: Path, text: str) -> None:
        if overwrite or not path.exists():
            if not overwrite and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                pytest.fail(f"golden file {path} did not exist; written now, check it and rerun")
            path.write_text(text, encoding="utf-8")
            return
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"output differs from {path} (rerun with --overwrite if intended)"

    return check


def all_specs() -> list[Path]:
    return sorted(SPECS.rglob("*.arch"))


# Specs the tests check (params, shapes, PyTorch source on the meta device) but never
# compile with weights: theirs run to gigabytes (Llama 3 8B: 32 GB in float32) or repeat a
# compiled spec's layers at a larger size. GPT-2 small and ViT-B/16 stand for them.
CHECK_ONLY = frozenset({"gpt2_medium", "vit_b_32", "vit_l_16", "llama2_7b", "tinyllama_1_1b", "llama3_8b"})


def compiled_specs() -> list[Path]:
    """The specs whose weights the tests make: ONNX files, onnxruntime against PyTorch."""
    return [p for p in all_specs() if p.stem not in CHECK_ONLY]


def onnx_text(model) -> str:  # type: ignore[no-untyped-def]
    """onnx.printer text without the weight values (28M numbers), then each initializer's type."""
    import onnx
    import onnx.numpy_helper

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.initializer[:]
    lines = [onnx.printer.to_text(bare), "", "initializers:"]
    for t in model.graph.initializer:
        values = onnx.numpy_helper.to_array(t)
        data = f" = {values.tolist()}" if values.size <= 4 else ""
        lines.append(f"  float[{','.join(map(str, t.dims))}] {t.name}{data}")
    return "\n".join(lines) + "\n"
