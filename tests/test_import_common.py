"""What every importer shares: `finish` (header, totals, format, check) and `archc import`'s dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest

import archc
from archc.cli import main
from archc.importers.common import Imported, ImporterBug, ImportFailure, finish


def test_finish_adds_the_header_and_the_totals_and_formats() -> None:
    spec = finish(Imported("input 8x8x3\nc1:conv  K=4 F=3\nrelu;fc 10\n", "tiny.prototxt"))
    lines = spec.splitlines()
    assert lines[0] == f"# imported by archc {archc.__version__} from tiny.prototxt"
    assert "c1: conv K=4 F=3" in lines and "fc 10" in lines  # formatted as `archc fmt` writes it
    net = archc.loads(spec)
    assert f"expect params = {net.params:_}" in lines and f"expect macs = {net.macs:_}" in lines
    assert net.params == 4 * 27 + 4 + 6 * 6 * 4 * 10 + 10


def test_a_model_beyond_the_limits_of_a_spec_is_refused_not_reported_as_a_bug() -> None:
    # 4e18 parameters: more than `expect` takes (1e18)
    with pytest.raises(ImportFailure, match=r"4,000,000,002,000,000,000 parameters, more than a spec can assert"):
        finish(Imported("input 2000000000\nfc 2000000000\n", "huge.prototxt"))
    deep = "input 8\n" + "add { branch {\n" * 120 + "relu\n" + "} }\n" * 120
    with pytest.raises(ImportFailure, match="E142"):
        finish(Imported(deep, "deep.prototxt"))


def test_finish_reports_a_spec_that_does_not_check_as_a_bug_with_its_diagnostics() -> None:
    with pytest.raises(ImporterBug) as err:
        finish(Imported("input 8x8x3\nconv K=4 F=9\n", "bad.prototxt"))
    text = str(err.value)
    assert "importer has a bug" in text and "bad.prototxt" in text and "E2" in text


def test_finish_checks_the_weights_against_the_spec() -> None:
    np = pytest.importorskip("numpy")
    good = {"c.weight": np.zeros((4, 3, 3, 3), np.float32), "c.bias": np.zeros(4, np.float32)}
    finish(Imported("input 8x8x3\nc: conv K=4 F=3\n", "w.onnx", good))
    with pytest.raises(ImporterBug, match="do not fit"):
        finish(Imported("input 8x8x3\nc: conv K=4 F=3\n", "w.onnx", {"c.weight": good["c.weight"]}))


def test_import_failure_at_a_line_shows_it_with_a_caret() -> None:
    exc = ImportFailure.at("net.prototxt", "name: 'x'\nlayer { type: 'Foo' }\n", 2, 15, "unsupported layer type 'Foo'", "use X", 5)
    assert str(exc).splitlines() == [
        "net.prototxt:2:15: error[E900]: unsupported layer type 'Foo'",
        "  2 | layer { type: 'Foo' }",
        "    |               ^~~~~",
        "  hint: use X",
    ]
    node = ImportFailure("cannot import node '/conv/Conv' (Conv)", "model.onnx: node '/conv/Conv'")
    assert str(node) == "model.onnx: node '/conv/Conv': error[E900]: cannot import node '/conv/Conv' (Conv)"


def test_import_needs_a_known_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "net.caffemodel"
    model.write_bytes(b"\x00")
    assert main(["import", str(model), "-o", "-"]) == 1
    assert "cannot tell the format" in capsys.readouterr().err


@pytest.mark.parametrize(("stem", "name"), [("network", "network_"), ("café", "caf_"), ("3net", "_3net"), ("a-b", "a_b")])
def test_the_network_is_named_after_the_file_in_a_name_a_spec_takes(
    stem: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    model = tmp_path / f"{stem}.onnx"
    archc.loads("input 4\nfc 2\n").to_onnx(model)
    assert main(["import", str(model), "-o", "-"]) == 0
    assert f"\nnetwork {name}\n" in capsys.readouterr().out
