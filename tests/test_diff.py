"""`archc diff`: the lecture's AlexNet-vs-ZFNet comparison as a command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SPECS

import archc
from archc.cli import main
from archc.tools.diff import ADDED, CHANGED, REMOVED, SAME, diff, plain_text

ALEXNET = SPECS / "alexnet_lecture.arch"
ZFNET = SPECS / "zfnet_lecture.arch"  # the lecture AlexNet with conv1 F=7


@pytest.fixture(scope="module")
def lecture() -> object:
    return diff(archc.load(ALEXNET), archc.load(ZFNET))


def test_conv1_is_the_only_weight_difference(lecture) -> None:  # type: ignore[no-untyped-def]
    rows = {r.name: r for r in lecture.rows}
    conv1 = rows["conv1"]
    assert conv1.status == CHANGED
    assert conv1.changes == [("F", "11", "7")]
    assert (conv1.weights.a, conv1.weights.b, conv1.weights.diff) == (34_848, 14_112, -20_736)
    assert conv1.params.diff == -20_736  # the biases did not change
    assert conv1.output == ("55x55x96", "56x56x96")
    assert [r.name for r in lecture.rows if r.weights.diff] == ["conv1"]
    assert lecture.totals["weights"].diff == -20_736
    assert lecture.totals["params"].diff == -20_736
    assert lecture.totals["biases"].diff == 0
    # "Layer2: No difference": from pool1 on, every layer is the same
    assert all(r.status == SAME for r in lecture.rows[2:])
    assert not lecture.identical


def test_plain_table(lecture) -> None:  # type: ignore[no-untyped-def]
    text = plain_text(lecture)
    conv1 = next(line for line in text.splitlines() if " conv1 " in line)
    for cell in ("F 11 -> 7", "55x55x96 -> 56x56x96", "34,848 -> 14,112 (-20,736)", "34,944 -> 14,208 (-20,736)"):
        assert cell in conv1
    assert "weights  28,813,344 -> 28,792,608 (-20,736)" in text
    assert "2 of 18 layers differ" in text  # conv1, and relu1 whose shape follows it
    assert "\x1b[" not in text


def _spec(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


A = "input 8x8x3\nc1: conv K=4 F=3\nrelu\ngone: fc 7\nfc 10\n"
B = "input 8x8x3\nc1: conv K=4 F=3\nrelu\nextra: dropout\nnew: fc 7\nfc 10\n"


def test_added_and_removed(tmp_path: Path) -> None:
    d = diff(archc.load(_spec(tmp_path, "a.arch", A)), archc.load(_spec(tmp_path, "b.arch", B)))
    status = {r.name: r.status for r in d.rows}
    assert status == {"c1": SAME, "relu1": SAME, "gone": REMOVED, "extra": ADDED, "new": ADDED, "fc1": SAME}
    names = [r.name for r in d.rows]
    assert names.index("gone") < names.index("fc1") and names.index("new") < names.index("fc1")
    gone = next(r for r in d.rows if r.name == "gone")
    assert gone.params.a == 6 * 6 * 4 * 7 + 7  # 6x6x4 inputs and gone.params.b is None
    text = plain_text(d)
    assert any(line.startswith("-  gone") for line in text.splitlines())
    assert any(line.startswith("+  new") for line in text.splitlines())


def test_json_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(ALEXNET), str(ZFNET), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"a", "b", "identical", "layers", "totals"}
    assert doc["a"]["network"] == "AlexNet" and doc["b"]["input"] == [227, 227, 3]
    assert doc["identical"] is False
    assert set(doc["totals"]) == {"params", "weights", "biases", "macs"}
    assert doc["totals"]["weights"] == {"a": 28_813_344, "b": 28_792_608, "diff": -20_736}
    conv1 = doc["layers"][0]
    assert set(conv1) == {"name", "status", "kind", "changes", "output", "weights", "biases", "params", "macs"}
    assert conv1["changes"] == [{"key": "F", "a": "11", "b": "7"}]
    assert conv1["output"] == {"a": [55, 55, 96], "b": [56, 56, 96]}
    assert conv1["weights"]["diff"] == -20_736


def test_identical_specs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(ALEXNET), str(ALEXNET)]) == 0
    assert "no layer differs" in capsys.readouterr().out
    assert main(["diff", str(ALEXNET), str(ALEXNET), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["identical"] is True


def test_changed_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(ALEXNET), str(ZFNET), "--changed"]) == 0
    out = capsys.readouterr().out
    assert " conv1 " in out and " conv2 " not in out


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _spec(tmp_path, "bad.arch", "input 8x8x3\nconv K=4 F=3 -> 7x7x4\n")
    assert main(["diff", str(ALEXNET), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "error[E202]" in err and "Traceback" not in err
    assert main(["diff", str(bad), str(tmp_path / "missing.arch")]) == 1
    err = capsys.readouterr().err
    assert "bad.arch" in err and "missing.arch" in err  # both specs are reported
    with pytest.raises(SystemExit) as info:
        main(["diff", str(ALEXNET)])
    assert info.value.code == 2
