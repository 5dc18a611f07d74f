"""`archc summary`: numbers never cut, shares, buffers, another input size, Markdown and CSV, derivations."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from conftest import GOLDEN, SPECS

import archc
from archc.cli import main
from archc.tools.text_table import column_widths

NUMBER = re.compile(r"\d[\d,]*\d|\d")


@pytest.fixture(autouse=True)
def _no_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> tuple[str, str]:
    capsys.readouterr()
    assert main(argv) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def _numbers(net: archc.Network) -> list[str]:
    """Every count and shape the table must show whole."""
    out = []
    for f in net.analysis.facts.values():
        out.append(f.output.text())
        out += [f"{n:,}" for n in (f.params, f.macs) if n]
    return out


@pytest.mark.parametrize("columns", [None, "100", "60"])
def test_no_number_is_cut(columns: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """GoogLeNet's table cut 51 cells ('112x112x…', '118,013,9…') at 120 columns, whatever COLUMNS said."""
    if columns is not None:
        monkeypatch.setenv("COLUMNS", columns)
    for stem in ("googlenet", "resnet101"):
        _cli(["summary", str(SPECS / f"{stem}.arch")], capsys)  # warm: the table below is --rf's
        out, _ = _cli(["summary", *(["--rf"] if stem == "resnet101" else []), str(SPECS / f"{stem}.arch")], capsys)
        assert "…" not in out, stem
        cells = {c.strip() for line in out.splitlines() for c in line.split("│")}
        missing = [n for n in _numbers(archc.load(SPECS / f"{stem}.arch")) if n not in cells]
        assert missing == [], (stem, missing[:5])
    table = [line for line in out.splitlines() if line.startswith(("│", "┃", "┏", "└"))]
    widths = {len(line) for line in table}
    if columns == "100":
        assert max(widths) <= 127  # with --rf, its three columns and the numbers need 127: wider, never cut
        googlenet, _ = _cli(["summary", str(SPECS / "googlenet.arch")], capsys)
        assert max(len(line) for line in googlenet.splitlines() if line.startswith("│")) <= 100
    if columns is None:
        assert max(widths) > 160  # resnet101 --rf: its full width off a terminal, not held to 120
        assert not any(line.startswith("│  ") and line.split("│")[1].strip() == "" for line in table)  # nothing wrapped


def test_column_widths_narrow_the_text_columns_only() -> None:
    natural = [40, 34, 10, 11, 8, 13, 6]
    widths = column_widths(natural, 100)
    assert widths[2:] == natural[2:] and sum(widths) + 3 * 7 + 1 <= 100
    assert column_widths(natural, 300) == natural and column_widths(natural, None) == natural
    assert column_widths(natural, 10)[:2] == [12, 12]  # never below the minimum: the table overflows instead


def test_shares_and_buffers(capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _cli(["summary", str(SPECS / "resnet18.arch")], capsys)
    assert "% params" in out and "% MACs" in out
    conv1 = next(line for line in out.splitlines() if "│ conv1 " in line)
    cells = [c.strip() for c in conv1.split("│")]
    assert cells[4:8] == ["9,408", "0.1%", "118,013,952", "6.5%"]  # of 11,689,512 params and 1,814,083,944 MACs
    fc = next(line for line in out.splitlines() if "│ fc " in line)
    assert "4.4%" in fc  # 513,000 of 11,689,512
    # torchvision's resnet18: 20 batchnorms over 4,800 channels, a running mean and variance each
    assert "Params:      11,689,512 (11.69M) = 11,683,712 weights + 5,800 biases, all trainable" in out
    assert "Buffers:     9,600 (9.6K): running_mean, running_var of 20 layers; state, not trained, not in Params" in out
    doc = json.loads(_cli(["summary", "--json", str(SPECS / "resnet18.arch")], capsys)[0])
    assert doc["buffers"] == 9_600 and doc["params"] == 11_689_512
    bn1 = next(layer for layer in doc["layers"] if layer["name"] == "bn1")
    assert bn1["buffers"] == 128 and bn1["params"] == 128
    assert next(b for b in doc["blocks"] if b["name"] == "layer1")["buffers"] == 4 * 2 * 64


def test_buffers_agree_with_torch() -> None:
    torch = pytest.importorskip("torch")
    from archc.backends.torch.generate import build_module
    from archc.tools.summary import summary_json

    net = archc.load(SPECS / "resnet18.arch")
    module = build_module(net.analysis)
    counted = sum(b.numel() for b in module.buffers() if b.dtype is not torch.int64)  # not num_batches_tracked
    assert counted == sum(layer["buffers"] for layer in summary_json(net)["layers"]) == 9_600


LENET = """\
network Small
input 32x32x3
conv1: conv K=8 F=3 -> 30x30x8
relu
maxpool F=2 -> 15x15x8
flatten
fc 10
expect params = 18_234
expect conv1.params = 224
"""


def test_another_input_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "small.arch"
    spec.write_text(LENET)
    out, err = _cli(["summary", "--input", "64x64x3", str(spec)], capsys)
    assert "Small  (input 64x64x3), the spec's own input is 32x32x3" in out
    assert "62x62x8" in out and "76,890" in out  # fc: 31*31*8*10 + 10
    # the size-dependent checks are reported where they are written, not enforced; conv1's params still hold
    assert "note: 3 of the spec's 4 checks (`->` and `expect`) were written for input 32x32x3" in err
    assert f"{spec}:3:24: conv1 outputs 62x62x8, but the spec says 30x30x8" in err
    assert f"{spec}:8:17: expect params = 18_234 failed: actual params 77,114" in err
    assert "conv1.params" not in err and "error" not in err
    doc = json.loads(_cli(["summary", "--json", "--input", "64x64x3", str(spec)], capsys)[0])
    assert doc["input"] == [64, 64, 3] and doc["written_input"] == [32, 32, 3]
    assert [c["holds"] for c in doc["checks"]] == [False, False, False, True]
    # the spec's own size: nothing to report
    out, err = _cli(["summary", "--input", "32x32x3", str(spec)], capsys)
    assert err == "" and "18,234" in out


def test_another_input_size_that_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "small.arch"
    spec.write_text(LENET)
    _, err = _cli(["summary", "--input", "2x2x3", str(spec)], capsys, code=1)
    assert "error[E2" in err and "does not hold together at input 2x2x3 (it was written for 32x32x3)" in err
    assert "Traceback" not in err
    for bad in ("64x64x3\nconv", "big", "0x4x3", "-3"):
        with pytest.raises(SystemExit) as info:
            main(["summary", "--input", bad, str(spec)])
        assert info.value.code == 2
    assert "not an input size" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("stem", "shape", "output"),
    [
        ("gpt2_small", "64 tokens", "64x50257"),
        ("m5", "8000x1", "10"),
        ("r3d_18", "8x112x112x3", "400"),
        ("resnet18", "128x128x3", "1000"),
    ],
)
def test_every_input_form(stem: str, shape: str, output: str, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _cli(["summary", "--input", shape, str(SPECS / f"{stem}.arch")], capsys)
    assert f"(input {shape})" in out and f"Output:      {output}" in out


def test_markdown_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str], golden) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "small.arch"
    spec.write_text(LENET.replace("conv1: conv", "conv1: conv").replace("flatten\n", "flatten\ndropout\n"))
    md, _ = _cli(["summary", "--format", "markdown", "--explain", str(SPECS / "squeezenet1_0.arch")], capsys)
    golden(GOLDEN / "summary_squeezenet1_0.md", md)
    assert "| Layer | Kind | Output | Params | % params | MACs | % MACs |" in md
    assert "| **fire2** | **Fire SQ=16 E=64** | **54x54x128** | **11,920** | **1.0%** |" in md
    text, _ = _cli(["summary", "--format", "csv", str(SPECS / "squeezenet1_0.arch")], capsys)
    golden(GOLDEN / "summary_squeezenet1_0.csv", text)
    records = list(csv.DictReader(io.StringIO(text)))
    conv1 = next(r for r in records if r["layer"] == "conv1")
    assert conv1["params"] == "14208" and conv1["row"] == "layer" and conv1["output"] == "109x109x96"
    top = [r for r in records if r["depth"] == "0"]
    assert sum(int(r["params"]) for r in top) == archc.load(SPECS / "squeezenet1_0.arch").params
    text, _ = _cli(["summary", "--format", "csv", "--explain", "--rf", str(spec)], capsys)
    header = next(csv.reader(io.StringIO(text)))
    assert header[-4:] == ["rf", "jump", "start", "explain"]


def test_explain_merges_and_pools(capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _cli(["summary", "--explain", str(SPECS / "googlenet.arch")], capsys)
    assert "    channels 64 + 128 + 32 + 32 = 256, every branch at 28x28: 28x28x256" in out
    assert "    the mean of 7x7 = 49 positions per channel: 1x1x1024" in out
    out, _ = _cli(["summary", "--explain", str(SPECS / "resnet18.arch")], capsys)
    assert "    body 56x56x64 + shortcut 56x56x64, element by element = 56x56x64" in out
    out, _ = _cli(["summary", "--explain", str(SPECS / "alexnet_torchvision.arch")], capsys)
    assert "    6/6: 6 windows of 1, stride 1" in out
    spec = "input 7x7x2\nadaptiveavgpool 3\nflatten\nfc 2\n"
    net = archc.loads(spec, "a.arch")
    from archc.tools.summary import explain_lines

    lines = explain_lines(net, "adaptiveavgpool1")
    # PyTorch's windows for 7 into 3: [0, 3), [2, 5), [4, 7): 3 wide each
    assert lines[0] == ("shape", "7 into 3: window i covers floor(i*7/3) to ceil((i+1)*7/3), 3 wide, overlapping")
    lines = explain_lines(archc.loads("input 5x5x2\nadaptiveavgpool 3\n", "b.arch"), "adaptiveavgpool1")
    # 5 into 3: [0, 2), [1, 4), [3, 5): 2, 3 and 2 wide
    assert lines[0] == ("shape", "5 into 3: window i covers floor(i*5/3) to ceil((i+1)*5/3), 2 to 3 wide, overlapping")


def test_explain_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(_cli(["summary", "--json", "--explain", str(SPECS / "alexnet_lecture.arch")], capsys)[0])
    conv1 = doc["layers"][0]
    assert conv1["explain"][0] == {"topic": "shape", "text": "(227 - 11 + 2*0)/4 + 1 = 55"}
    assert {line["topic"] for line in conv1["explain"]} == {"shape", "params", "macs"}
    plain = json.loads(_cli(["summary", "--json", str(SPECS / "alexnet_lecture.arch")], capsys)[0])
    assert "explain" not in plain["layers"][0]


def test_huge_counts_print_without_a_suffix_after_an_exponent() -> None:
    """Past 9,999T, `si` printed `4.254e+25T`: an exponent with a unit after it."""
    from archc.analysis import si

    assert (si(28_823_912), si(31.46e12), si(4.254e37)) == ("28.82M", "31.46T", "4.254e+37")
