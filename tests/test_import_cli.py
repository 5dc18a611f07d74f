"""`archc import` on the command line: stdout, atomic writes, located errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc.cli import main

ROOT = Path(__file__).resolve().parent.parent
ALEXNET = ROOT / "tests" / "caffe" / "alexnet.prototxt"
UNSUPPORTED = 'name: "x"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\nlayer { name: "s" type: "Slice" bottom: "data" top: "s" }\n'


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHC_DEBUG", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in out + err
    return code, out, err


def test_import_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "import", str(ALEXNET), "-o", "-")
    assert code == 0 and err == ""
    assert out.startswith(f"# imported by archc {archc.__version__} from alexnet.prototxt\nnetwork AlexNet\n")
    assert out.endswith("expect params = 60_965_224\nexpect macs = 724_406_816\n")


def test_import_writes_a_spec_that_checks_and_formats_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "alexnet.arch"
    code, stdout, err = run(capsys, "import", str(ALEXNET), "-o", str(out))
    assert code == 0 and stdout == ""
    assert f"wrote {out}" in err
    assert run(capsys, "check", "--strict", str(out))[0] == 0
    assert run(capsys, "fmt", "--check", str(out))[0] == 0
    assert archc.load(out).params == 60_965_224
    assert [p.name for p in tmp_path.iterdir()] == ["alexnet.arch"]  # no temporary left


def test_a_failed_import_writes_nothing_and_keeps_the_old_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "slice.prototxt"
    model.write_text(UNSUPPORTED, encoding="utf-8")
    out = tmp_path / "net.arch"
    out.write_text("input 8\nfc 2\n", encoding="utf-8")
    code, stdout, err = run(capsys, "import", str(model), "-o", str(out))
    assert code == 1 and stdout == ""
    assert err.splitlines()[:3] == [
        f"{model}:4:25: error[E900]: unsupported layer type 'Slice' (layer 's')",
        '  4 | layer { name: "s" type: "Slice" bottom: "data" top: "s" }',
        "    |                         ^~~~~~~",
    ]
    assert out.read_text(encoding="utf-8") == "input 8\nfc 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.arch", "slice.prototxt"]
    code, stdout, _ = run(capsys, "import", str(model), "-o", "-")
    assert code == 1 and stdout == ""


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["missing.prototxt", "-o", "-"], "no such file"),
        ([str(ALEXNET), "-o", "OUT", "--weights", "w.safetensors"], "holds no weights"),
        ([str(ALEXNET), "-o", "no/such/dir/net.arch"], "does not exist"),
        (["model.caffemodel", "-o", "-"], "cannot tell the format"),
    ],
)
def test_usage_errors_exit_1_and_write_nothing(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [str(tmp_path / "net.arch") if a == "OUT" else a for a in argv]
    code, out, err = run(capsys, "import", *argv)
    assert code == 1 and out == "" and words in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["m.onnx", "-o", "x.onnx"], "-o x.onnx: the spec is written to a .arch file, or to stdout with '-o -'"),
        ([str(ALEXNET), "-o", "net.py"], "-o net.py: the spec is written to a .arch file"),
        ([str(ALEXNET), "-o", str(ALEXNET)], "the spec is written to a .arch file"),
        (["m.onnx", "-o", "same.safetensors", "--weights", "same.safetensors"], "-o same.safetensors: the spec"),
        (["m.onnx", "-o", "net.arch", "--weights", "net.pt"], "--weights net.pt: the weights are written to a .safetensors"),
    ],
)
def test_an_output_of_the_wrong_kind_is_a_usage_error(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "import", *argv)
    assert code == 2 and out == "" and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_spec_and_the_weights_in_one_file_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w.safetensors").symlink_to(tmp_path / "net.arch")  # not made yet: both name one place
    code, _, err = run(capsys, "import", "m.onnx", "-o", str(tmp_path / "net.arch"), "--weights", str(tmp_path / "w.safetensors"))
    assert code == 2 and "name one file: the spec and the weights need two" in err and "input" not in err


def test_an_output_that_is_the_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "net.prototxt"
    model.write_text(UNSUPPORTED, encoding="utf-8")
    (tmp_path / "net.arch").symlink_to(model)
    code, _, err = run(capsys, "import", str(model), "-o", str(tmp_path / "net.arch"))
    assert code == 1 and "it is the input" in err
    assert model.read_text(encoding="utf-8") == UNSUPPORTED


def test_dev_null_imports_and_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    if not Path(os.devnull).exists():
        pytest.skip("no null device")
    code, out, err = run(capsys, "import", str(ALEXNET), "-o", os.devnull)
    assert code == 0 and out == "" and "wrote" in err


def test_the_imported_spec_compiles_and_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    spec = tmp_path / "lenet.arch"
    assert run(capsys, "import", str(ROOT / "tests" / "caffe" / "lenet.prototxt"), "-o", str(spec))[0] == 0
    code, out, _ = run(capsys, "compile", str(spec), "-o", str(tmp_path / "lenet.onnx"))
    assert code == 0 and "431,080 params" in out
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "lenet.onnx"), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {session.get_inputs()[0].name: np.ones((2, 1, 28, 28), np.float32)})
    assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)  # ends in the softmax


def test_the_process_exits_1_with_a_located_error(tmp_path: Path) -> None:
    model = tmp_path / "slice.prototxt"
    model.write_text(UNSUPPORTED, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "ARCHC_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-m", "archc", "import", str(model), "-o", str(tmp_path / "x.arch")],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1 and "slice.prototxt:4:25: error[E900]" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x.arch").exists()
