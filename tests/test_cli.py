"""The `archc` command: check and summary, exit codes, output formats. Never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from archc.api import compile_file
from archc.cli import main

ROOT = Path(__file__).resolve().parent.parent
ALEXNET = "specs/alexnet_lecture.arch"
ERRORS = "tests/errors"


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("ARCHC_DEBUG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `archc argv` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: usage errors and --help
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "internal error" not in out + err
    return code, out, err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "input 8x8x3\nconv K=4 F=3\nfc 10\n"
BAD = "input 8x8x3\nconvv K=4 F=3\n"
WARN = "input 9x9x3\nconv K=4 F=2 S=2\n"  # (9 - 2)/2 is not whole: W001


# --- check: exit codes and the count line ----------------------------------------------------
def test_check_valid_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", ALEXNET)
    assert code == 0
    assert re.search(r"^ok +specs/alexnet_lecture\.arch +AlexNet +28,823,912 params", out, re.M)
    assert out.splitlines()[-1] == "1 spec checked: 1 valid, 0 invalid"
    assert err == ""


def test_check_invalid_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.arch", BAD)
    code, out, err = run(capsys, "check", str(bad))
    assert code == 1
    assert f"{bad}:2:1: error[E100]: unknown layer kind 'convv'" in err
    assert "^~~~~" in err
    assert out.splitlines()[-1] == "1 spec checked: 0 valid, 1 invalid"


def test_check_failed_expect_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", f"{ERRORS}/expect_failed.arch")
    assert code == 1 and "error[E300]" in err


def test_check_directories_recursively(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write(tmp_path / "a.arch", GOOD)
    write(tmp_path / "deep" / "er" / "b.arch", GOOD)
    write(tmp_path / "deep" / "c.arch", BAD)
    write(tmp_path / "deep" / "notes.txt", BAD)  # not a spec
    code, out, _ = run(capsys, "check", str(tmp_path))
    assert code == 1
    assert out.splitlines()[-1] == "3 specs checked: 2 valid, 1 invalid"
    assert str(tmp_path / "deep" / "er" / "b.arch") in out


def test_check_skips_hidden_folders_and_follows_linked_specs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A project's .venv and .git hold no specs of its own; a linked spec is a spec."""
    write(tmp_path / "a.arch", GOOD)
    write(tmp_path / ".venv" / "lib" / "x.arch", BAD)
    real = write(tmp_path / "elsewhere" / "real.txt", GOOD)
    (tmp_path / "linked.arch").symlink_to(real)
    code, out, _ = run(capsys, "check", str(tmp_path))
    assert code == 0 and out.splitlines()[-1] == "2 specs checked: 2 valid, 0 invalid"


def test_check_output_file_is_for_json_and_junit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", "-o", str(tmp_path / "r.txt"), "specs/lenet5.arch")
    assert code == 2 and "-o writes the json and junit reports" in err
    assert not (tmp_path / "r.txt").exists()


def test_check_names_each_file_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = write(tmp_path / "a.arch", GOOD)
    code, out, _ = run(capsys, "check", str(tmp_path), str(a), str(a))
    assert code == 0 and out.splitlines()[-1] == "1 spec checked: 1 valid, 0 invalid"


def test_check_several_files_all_valid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a, b = write(tmp_path / "a.arch", GOOD), write(tmp_path / "b.arch", GOOD)
    code, out, _ = run(capsys, "check", str(a), str(b))
    assert code == 0 and out.splitlines()[-1] == "2 specs checked: 2 valid, 0 invalid"


def test_strict_fails_on_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path / "w.arch", WARN)
    code, out, err = run(capsys, "check", str(spec))
    assert code == 0 and "warning[W001]" in err
    assert out.splitlines()[-1] == "1 spec checked: 1 valid, 0 invalid, 1 warning"
    code, out, err = run(capsys, "check", "--strict", str(spec))
    assert code == 1 and "warning[W001]" in err
    assert out.splitlines()[-1] == "1 spec checked: 0 valid, 1 invalid, 1 warning (--strict: warnings fail)"


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "no/such/file.arch")
    assert code == 1
    assert "no/such/file.arch: error[E400]: no such file or directory" in err
    assert out.splitlines()[-1] == "1 spec checked: 0 valid, 1 invalid"


def test_directory_without_specs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """No spec found is a usage error (exit 2), not "1 spec checked: 1 invalid"."""
    code, out, err = run(capsys, "check", str(tmp_path))
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == f"archc check: error: no spec found: no .arch files in {tmp_path}"


def test_an_empty_directory_beside_specs_is_a_warning_not_a_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "check", str(tmp_path), ALEXNET)
    assert code == 0 and out.splitlines()[-1] == "1 spec checked: 1 valid, 0 invalid"
    assert err == f"archc: warning: no .arch files in {tmp_path}\n"


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_check_dash_reads_standard_input(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, (ROOT / ALEXNET).read_bytes())
    code, out, err = run(capsys, "check", "-")
    assert code == 0 and err == ""
    assert out.splitlines() == ["ok    <stdin>  AlexNet  28,823,912 params  614.3M MACs", "1 spec checked: 1 valid, 0 invalid"]


def test_check_dash_names_stdin_in_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, b"\xef\xbb\xbfinput 8x8x3\r\nconv K=4 F=9\r\n")  # a BOM and CRLF, as an editor may send
    code, out, err = run(capsys, "check", "-", "-")  # named twice, read once
    assert code == 1 and out == "1 spec checked: 0 valid, 1 invalid\n"
    assert err == (
        "<stdin>:2:10: error[E200]: conv1: conv output would be 0x0: the 9x9 window does not fit the 8x8 input with padding 0x0\n"
        "  2 | conv K=4 F=9\n"
        "    |          ^\n"
        "  hint: use a smaller F, more padding P, or a larger input\n"
    )


def test_check_dash_from_a_pipe(tmp_path: Path) -> None:
    """Through a real pipe, as `cat spec.arch | archc check -` runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "archc", "check", "-", "--format", "json"],
        input=b"input 4\nfc 3\n",
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["files"][0]["path"] == "<stdin>" and report["files"][0]["params"] == 15


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["check"],
        ["bogus-command"],
        ["check", "--format", "xml", ALEXNET],
        ["summary"],
        ["summary", ALEXNET, "--no-such-flag"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "usage:" in err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("archc ")
    code, out, _ = run(capsys, "check", "--help")
    assert code == 0 and "--strict" in out


# --- check: formats ---------------------------------------------------------------------------
def test_format_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.arch", BAD)
    code, out, _ = run(capsys, "check", "--format", "json", ALEXNET, str(bad))
    assert code == 1
    doc = json.loads(out)
    assert (doc["checked"], doc["valid"], doc["invalid"]) == (2, 1, 1)
    good, wrong = doc["files"]
    assert good["valid"] and good["params"] == 28_823_912 and good["network"] == "AlexNet"
    assert not wrong["valid"]
    (d,) = wrong["diagnostics"]
    assert (d["code"], d["line"], d["column"], d["severity"]) == ("E100", 2, 1, "error")
    assert wrong["rendered"][0].startswith(f"{bad}:2:1: error[E100]")


def test_format_github(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.arch", BAD)
    warn = write(tmp_path / "warn.arch", WARN)
    code, out, _ = run(capsys, "check", "--format", "github", str(bad), str(warn))
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1
    assert errors[0].startswith(f"::error file={bad},line=2,col=1,")
    assert "unknown layer kind 'convv'" in errors[0]
    assert "\n" not in errors[0] and "%0A" in errors[0]  # the hint, escaped onto one line
    assert any(line.startswith(f"::warning file={warn},line=2,col=1,") for line in out.splitlines())
    assert out.splitlines()[-1] == "2 specs checked: 1 valid, 1 invalid, 1 warning"


def test_github_is_the_default_under_github_actions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = write(tmp_path / "bad.arch", BAD)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, _ = run(capsys, "check", str(bad))
    assert code == 1 and out.startswith(f"::error file={bad},line=2,col=1,")
    code, out, _ = run(capsys, "check", "--format", "text", str(bad))
    assert "::error" not in out


def test_format_junit(capsys: pytest.CaptureFixture[str]) -> None:
    failing = f"{ERRORS}/expect_failed.arch"
    code, out, _ = run(capsys, "check", "--format", "junit", ALEXNET, failing)
    assert code == 1
    suite = ET.fromstring(out.split("\n", 1)[1])  # after the XML declaration
    cases = suite.findall("testcase")
    assertions = {spec: len(compile_file(spec).assertions) for spec in (ALEXNET, failing)}
    assert assertions[ALEXNET] == 11 + 15  # 11 arrows and 15 expects
    assert len(cases) == 2 + sum(assertions.values()) == int(suite.get("tests", "0"))
    by_spec = [c for c in cases if c.get("classname") == "archc.check"]
    assert [c.get("name") for c in by_spec] == [ALEXNET, failing]
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == 6 == int(suite.get("failures", "0"))  # the six failing lines
    assert all(f.get("name", "").startswith(failing) for f in failures)
    assert {f.find("failure").get("type") for f in failures} == {"E300"}  # type: ignore[union-attr]  # expect output too


def test_format_junit_spec_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.arch", BAD)
    _, out, _ = run(capsys, "check", "--format", "junit", str(bad))
    suite = ET.fromstring(out.split("\n", 1)[1])
    (case,) = suite.findall("testcase")
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "E100"
    assert "^~~~~" in (failure.text or "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "model.py"], "run takes a .arch spec or an .onnx model; model.py is neither (generated PyTorch"),
        (["run", "notes.txt"], "run takes a .arch spec or an .onnx model; notes.txt is neither\n"),
        (["run", ALEXNET, "--batch", "0"], "argument --batch: expected 1 or more, not 0"),
        (["run", ALEXNET, "--repeat", "0"], "argument --repeat: expected 1 or more, not 0"),
        (["run", ALEXNET, "--warmup", "-1"], "argument --warmup: expected 0 or more, not -1"),
        (["run", ALEXNET, "--timeout", "0"], "argument --timeout: expected more than 0 seconds, not 0"),
        (["compile", ALEXNET, "-o", "x.txt"], "cannot tell the target from 'x.txt': name it .py or .onnx"),
    ],
)
def test_run_and_compile_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """Issue 10, item 8: `run model.py` parsed Python as a spec (~60 syntax errors); `--batch 0` and
    `-o x.txt` exited 1. A usage error exits 2 with argparse's usage line, before anything is read."""
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.startswith("usage: archc ")
    assert message in err and "syntax" not in err


def test_unused_block_warning_can_be_ignored(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """W003 (issue 10, item 5): a block never called warns, fails --strict, and --ignore W003 drops it."""
    spec = write(tmp_path / "unused.arch", "input 8x8x3\nblock U(K) { conv K=K F=3 }\nrelu\n")
    code, _, err = run(capsys, "check", "--strict", str(spec))
    assert code == 1 and "warning[W003]: block U is never called" in err
    code, _, err = run(capsys, "check", "--strict", "--ignore", "W003", str(spec))
    assert code == 0 and err == ""


def test_call_site_notes_in_every_format(capsys: pytest.CaptureFixture[str]) -> None:
    """An error in a block's body carries its calls, innermost first, in each format (issue 10, item 4)."""
    spec = f"{ERRORS}/block_call_sites.arch"
    inner, outer = f"in B K=K (K=-2), called at {spec}:8:3", f"in C K=-2, called at {spec}:12:1"
    _, out, _ = run(capsys, "check", "--format", "json", spec)
    (nested,) = [d for d in json.loads(out)["files"][0]["diagnostics"] if "not -2" in d["message"]]
    assert [(n["message"], n["line"], n["column"]) for n in nested["notes"]] == [(inner, 8, 3), (outer, 12, 1)]
    _, out, _ = run(capsys, "check", "--format", "github", spec)
    (line,) = [line for line in out.splitlines() if "not -2" in line]
    assert f"%0Anote: {inner}%0Anote: {outer}%0A%0Ahint: " in line
    _, out, _ = run(capsys, "check", "--format", "junit", spec)
    failure = ET.fromstring(out.split("\n", 1)[1]).find("testcase/failure")
    assert failure is not None and f"  note: {inner}\n  note: {outer}\n" in (failure.text or "")
    _, _, err = run(capsys, "check", spec)
    assert f"  note: {inner}\n  note: {outer}\n" in err


@pytest.mark.parametrize("fmt", ["json", "junit"])
def test_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str) -> None:
    report = tmp_path / "out" / f"report.{fmt}"
    report.parent.mkdir()  # archc creates no directory for -o (issue 12, item 8)
    code, out, _ = run(capsys, "check", "--format", fmt, "-o", str(report), ALEXNET)
    assert code == 0 and out == ""
    text = report.read_text(encoding="utf-8")
    if fmt == "json":
        assert json.loads(text)["valid"] == 1
    else:
        assert ET.fromstring(text.split("\n", 1)[1]).get("failures") == "0"


# --- summary ----------------------------------------------------------------------------------
def test_summary_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", ALEXNET)
    assert code == 0
    sizes = ["55x55x96", "27x27x96", "23x23x256", "11x11x256", "9x9x384", "7x7x384", "5x5x256", "2x2x256"]
    positions = [out.index(s) for s in sizes]
    assert positions == sorted(positions)
    assert "28,823,912" in out
    assert "28,813,344 weights + 10,568 biases" in out
    assert re.search(r"conv1 .* 34,944 .* 105,415,200", out)


def test_summary_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", "--explain", ALEXNET)
    assert code == 0
    assert "(227 - 11 + 2*0)/4 + 1 = 55" in out
    assert "(11*11*3)*96 = 34,848 weights + 96 biases" in out
    assert "(5 - 3 + 2*0)/2 + 1 = 2" in out


def test_summary_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", "--json", ALEXNET)
    assert code == 0
    doc = json.loads(out)
    assert {"network", "input", "output", "params", "weights", "biases", "macs", "layers"} <= set(doc)
    assert (doc["network"], doc["input"], doc["output"]) == ("AlexNet", [227, 227, 3], [1000])
    assert (doc["params"], doc["weights"], doc["biases"]) == (28_823_912, 28_813_344, 10_568)
    assert doc["macs"] == sum(layer["macs"] for layer in doc["layers"])
    for layer in doc["layers"]:
        assert {"name", "kind", "output", "params", "weights", "biases", "macs"} <= set(layer)
        assert layer["params"] == layer["weights"] + layer["biases"]
    conv1 = doc["layers"][0]
    assert (conv1["name"], conv1["kind"], conv1["output"], conv1["params"]) == ("conv1", "conv", [55, 55, 96], 34_944)
    assert doc["layers"][-1]["output"] == [1000]


def test_summary_receptive_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", "--json", "--rf", ALEXNET)
    assert code == 0
    layers = {layer["name"]: layer for layer in json.loads(out)["layers"]}
    rf = layers["conv1"]["receptive_field"]
    assert (rf["rf"], rf["jump"]) == ([11, 11], [4, 4])
    pool1 = layers["pool1"]["receptive_field"]
    assert (pool1["rf"], pool1["jump"]) == ([19, 19], [8, 8])  # 11 + (3-1)*4
    code, out, _ = run(capsys, "summary", "--rf", ALEXNET)
    assert code == 0 and re.search(r"conv1 .* 11x11 .* 4x4", out)


def test_summary_of_blocks_shows_groups(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(
        tmp_path / "b.arch",
        "input 8x8x4\nblock B(K) { conv K=K F=1; relu }\nl: repeat 2 { B K=4 }\nfc 10\n",
    )
    code, out, _ = run(capsys, "summary", str(spec))
    assert code == 0
    assert re.search(r"l .*repeat x2 .* 40 ", out)
    assert "l.0.conv1" in out and "l.1.relu1" in out


def test_summary_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "summary", "no/such.arch")
    assert code == 1 and "no/such.arch: error[E400]: no such file" in err and out == ""
    code, out, err = run(capsys, "summary", str(tmp_path))
    assert code == 1 and "error[E400]: is a directory" in err
    bad = write(tmp_path / "bad.arch", BAD)
    code, out, err = run(capsys, "summary", str(bad))
    assert code == 1 and f"{bad}:2:1: error[E100]" in err and out == ""


# --- as a real process ------------------------------------------------------------------------
def test_python_dash_m_archc(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.arch", BAD)
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "FORCE_COLOR")}
    proc = subprocess.run(
        [sys.executable, "-m", "archc", "check", ALEXNET, str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "2 specs checked: 1 valid, 1 invalid"
    assert f"{bad}:2:1: error[E100]" in proc.stderr
    assert "\x1b[" not in proc.stderr  # not a terminal: no colour


def test_explain_writes_the_dilated_window_as_it_computes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path / "d.arch", "input 33x33x3\nconv K=4 F=3 D=2\n")
    code, out, _ = run(capsys, "summary", "--explain", str(spec))
    assert code == 0 and "(33 - (2*(3-1)+1) + 2*0)/1 + 1 = 29" in out  # 33 - 5 + 0 = 28; 28/1 + 1 = 29


def test_receptive_field_through_adaptive_pooling_and_fc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path / "rf.arch", "input 32x32x3\nconv K=4 F=11 S=4 P=5\nadaptiveavgpool 4\nfc 10\n")
    code, out, _ = run(capsys, "summary", "--rf", "--json", str(spec))
    assert code == 0
    layers = {layer["name"]: layer["receptive_field"] for layer in json.loads(out)["layers"]}
    assert layers["conv1"] == {"rf": [11, 11], "jump": [4, 4], "start": [0.5, 0.5]}
    # 8 -> 4: bins of 2 at stride 2, in conv1's jumps of 4
    assert layers["adaptiveavgpool1"] == {"rf": [15, 15], "jump": [8, 8], "start": [2.5, 2.5]}
    assert layers["fc1"]["rf"] == [32, 32]  # the whole input


def test_receptive_field_stops_at_a_window_over_tokens(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # found by the fuzzer (issue 12): a 1-D window over an image's tokens indexed the image's second axis
    spec = write(tmp_path / "rf.arch", "input 8x8x4\nconv K=4 F=3 P=1\ntokens\nconv K=4 F=3\nadaptiveavgpool 1\n")
    code, out, _ = run(capsys, "summary", "--rf", "--json", str(spec))
    assert code == 0
    layers = {layer["name"]: layer.get("receptive_field") for layer in json.loads(out)["layers"]}
    assert layers["conv1"] == {"rf": [3, 3], "jump": [1, 1], "start": [0.5, 0.5]}
    assert layers["tokens1"]["rf"] == [3, 3]  # each token is one position of conv1's map
    assert layers["conv2"] is None and layers["adaptiveavgpool1"] is None


def test_receptive_field_of_a_flat_network_is_none(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path / "flat.arch", "input 64\nfc 10\n")
    code, out, err = run(capsys, "summary", "--rf", str(spec))
    assert code == 0 and "RF" not in out and "input is flat" in err


def test_summary_json_of_an_invalid_spec_is_still_one_object(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path / "bad.arch", BAD)
    code, out, err = run(capsys, "summary", "--json", str(spec))
    data = json.loads(out)
    assert code == 1 and data["valid"] is False and "bad.arch:2:1" in err
    assert [(d["code"], d["line"], d["column"]) for d in data["diagnostics"]] == [("E100", 2, 1)]
