"""`archc diff`: the lecture's AlexNet-vs-ZFNet comparison as a command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import GOLDEN, SPECS

import archc
from archc.cli import main
from archc.tools.diff import ADDED, CHANGED, REMOVED, SAME, diff, diff_json, plain_text

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
    assert set(doc) == {"a", "b", "identical", "layers", "blocks", "totals"}
    assert doc["a"]["network"] == "AlexNet" and doc["b"]["input"] == [227, 227, 3]
    assert doc["identical"] is False
    assert set(doc["totals"]) == {"params", "weights", "biases", "macs"}
    assert doc["totals"]["weights"] == {"a": 28_813_344, "b": 28_792_608, "diff": -20_736}
    conv1 = doc["layers"][0]
    assert set(conv1) == {
        "name", "names", "status", "kind", "changes", "output", "weights", "biases", "params", "macs", "depth",
    }  # fmt: skip
    assert conv1["names"] == {"a": "conv1", "b": "conv1"} and doc["blocks"] == []
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


def test_a_failed_expect_still_compares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A change that breaks an `expect` is what a reviewer diffs: the table is printed after
    the failure (exit 1). Any other error still stops the comparison."""
    a = _spec(tmp_path, "a.arch", "input 8x8x3\nconv K=4 F=3\nfc 10\nexpect params = 1_562\n")
    b = _spec(tmp_path, "b.arch", "input 8x8x3\nconv K=8 F=3\nfc 10\nexpect params = 1_562\n")
    assert main(["diff", str(a), str(b)]) == 1
    out, err = capsys.readouterr()
    assert "b.arch:4:17: error[E300]" in err and "a.arch" not in err
    assert "K 4 -> 8" in out and "1,562 -> 3,114 (+1,552)" in out
    assert main(["diff", str(a), str(a)]) == 0
    capsys.readouterr()
    broken = _spec(tmp_path, "c.arch", "input 8x8x3\nconv K=8 F=3 -> 7x7x8\nfc 10\nexpect params = 1_562\n")
    assert main(["diff", str(a), str(broken)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "error[E202]" in err


STAGES = """\
network Stages
input 32x32x3
block Basic(K) {
  residual {
    conv K=K F=3 P=1
    relu
    conv K=K F=3 P=1
  }
  relu
}
block Stage(K, N) {
  repeat N { Basic K=K }
}
conv K=16 F=3 P=1
relu
layer1: Stage K=16 N=3
conv K=32 F=3 S=2 P=1
relu
globalavgpool
flatten
fc 10
"""


def test_one_inserted_unnamed_conv_is_one_added_row(tmp_path: Path) -> None:
    """Generated names shift after an inserted layer (relu2 becomes relu3); the rows must not."""
    b_text = STAGES.replace("conv K=32 F=3 S=2 P=1\n", "conv K=32 F=3 S=2 P=1\nconv K=32 F=1\n")
    d = diff(archc.load(_spec(tmp_path, "a.arch", STAGES)), archc.load(_spec(tmp_path, "b.arch", b_text)))
    layers = [r for r in d.rows if not r.group]
    assert [(r.name, r.status) for r in layers if r.status != SAME] == [("conv3", ADDED)]
    assert len(layers) == len(d.a.graph.nodes) + 1
    relu = next(r for r in layers if r.names == ("relu2", "relu2"))  # the relu after the stride-2 conv
    assert relu.status == SAME
    moved = next(r for r in layers if r.kind == ("globalavgpool", "globalavgpool"))
    assert moved.names == ("globalavgpool1", "globalavgpool1") and moved.status == SAME
    assert plain_text(d).endswith("1 of 23 layers differ")


def test_an_inserted_layer_before_generated_names(tmp_path: Path) -> None:
    """An unnamed conv inserted first renames every later conv; each is still the same layer."""
    b_text = STAGES.replace("conv K=16 F=3 P=1\nrelu\nlayer1", "conv K=3 F=1\nconv K=16 F=3 P=1\nrelu\nlayer1")
    d = diff(archc.load(_spec(tmp_path, "a.arch", STAGES)), archc.load(_spec(tmp_path, "b.arch", b_text)))
    differ = [r for r in d.rows if r.status != SAME]
    assert [(r.name, r.status) for r in differ] == [("conv1", ADDED)]
    renamed = next(r for r in d.rows if r.names == ("conv1", "conv2"))
    assert renamed.status == SAME and "conv2 (A: conv1)" in plain_text(d)


def test_block_groups_with_subtotals_and_changed_arguments(tmp_path: Path, golden) -> None:  # type: ignore[no-untyped-def]
    b_text = STAGES.replace("N=3", "N=5")
    d = diff(archc.load(_spec(tmp_path, "a.arch", STAGES)), archc.load(_spec(tmp_path, "b.arch", b_text)))
    groups = {r.name: r for r in d.rows if r.group}
    stage = groups["layer1"]
    assert stage.status == CHANGED and stage.changes == [("N", "3", "5")]
    per_copy = 2 * (3 * 3 * 16 * 16 + 16)
    assert (stage.params.a, stage.params.b) == (3 * per_copy, 5 * per_copy)
    assert groups["layer1.repeat1"].changes == [("count", "3", "5")]
    assert groups["layer1.repeat1.0"].status == SAME and groups["layer1.repeat1.3"].status == ADDED
    assert [r.name for r in d.rows if r.status == ADDED and not r.group][:1] == ["layer1.repeat1.3.conv1"]
    text = plain_text(d).replace(str(tmp_path), "TMP")
    assert "N 3 -> 5" in text
    golden(GOLDEN / "diff_stages.txt", text)
    changed_only = plain_text(d, only_changed=True)
    assert "layer1.repeat1.0" not in changed_only and "layer1.repeat1.4" in changed_only
    doc = diff_json(d)
    block = next(b for b in doc["blocks"] if b["name"] == "layer1")
    assert block["changes"] == [{"key": "N", "a": "3", "b": "5"}] and block["params"]["diff"] == 2 * per_copy
    assert all(not layer["name"].startswith("layer1.repeat1.") or layer["depth"] == 3 for layer in doc["layers"])


def test_on_a_narrow_terminal_no_count_is_cut(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rich")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["diff", str(SPECS / "resnet50.arch"), str(SPECS / "resnet101.arch"), "--changed"]) == 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert "…" not in out
    assert "7,098,368 -> 26,090,496 (+18,992,128)" in out  # layer3's params, N 6 -> 23
