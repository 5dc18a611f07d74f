"""Untrusted trees and outputs (issue 12): links, FIFOs, devices, hostile names, -o, temporaries.

Each test is a hostile input that broke archc before: a leak, a hang, a lost
file or an injected log line. Every one must end in a located message, fast.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from archc.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOOD = "input 8x8x3\nconv K=4 F=3\nfc 10\n"
SECRET = "AUTHORIZATION: basic c2VjcmV0\n"


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in ("GITHUB_ACTIONS", "FORCE_COLOR", "ARCHC_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in out + err
    return code, out, err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- item 1: links that leave the tree are refused by name, never quoted ------------------------------
@pytest.mark.parametrize("fmt", ["text", "json", "junit", "github"])
def test_a_link_out_of_the_tree_is_refused_and_never_quoted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    secret = write(tmp_path / "repo" / ".git" / "config", "[http]\n\textraheader = " + SECRET)
    outside = write(tmp_path / "elsewhere.txt", SECRET)
    specs = tmp_path / "repo" / "specs"
    write(specs / "ok.arch", GOOD)
    (specs / "model.arch").symlink_to(secret)
    (specs / "env.arch").symlink_to("/proc/self/environ")
    (specs / "out.arch").symlink_to(outside)
    code, out, err = run(capsys, "check", "--format", fmt, str(specs))
    assert code == 1
    assert "AUTHORIZATION" not in out + err and "extraheader" not in out + err and "PATH=" not in out + err
    assert (out + err).count("a symbolic link that leaves") == (3 if fmt in ("text", "github") else 6)  # + rendered
    if fmt == "json":
        assert json.loads(out)["invalid"] == 3
    # the same tree checked from its root: .git is inside it, but a hidden folder
    code, out, err = run(capsys, "check", str(tmp_path / "repo"))
    assert "AUTHORIZATION" not in out + err
    assert f"{specs / 'model.arch'}: error[E400]: a symbolic link into a hidden folder" in err


def test_links_inside_the_tree_are_followed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    real = write(tmp_path / "sub" / "real.arch", GOOD)
    (tmp_path / "link.arch").symlink_to(real)
    code, out, _ = run(capsys, "check", str(tmp_path))
    assert code == 0 and out.splitlines()[-1] == "1 spec checked: 1 valid, 0 invalid"  # one file, named twice


def test_dangling_links_and_loops_are_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Item 22: a dangling link was skipped silently, a loop was "no such file"."""
    write(tmp_path / "ok.arch", GOOD)
    (tmp_path / "gone.arch").symlink_to(tmp_path / "missing.arch")
    (tmp_path / "loop.arch").symlink_to(tmp_path / "loop.arch")
    code, out, err = run(capsys, "check", str(tmp_path))
    assert code == 1 and out.splitlines()[-1] == "3 specs checked: 1 valid, 2 invalid"
    assert f"{tmp_path / 'gone.arch'}: error[E400]: a symbolic link to a missing file" in err
    assert f"{tmp_path / 'loop.arch'}: error[E400]: a symbolic link loop" in err
    code, _, err = run(capsys, "check", str(tmp_path / "loop.arch"))
    assert code == 1 and "a symbolic link loop" in err and "no such file" not in err


def test_fmt_never_writes_outside_the_tree_and_keeps_the_mode(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outside = write(tmp_path / "outside.arch", "input 4\nfc   3\n")
    outside.chmod(0o600)
    inside = write(tmp_path / "specs" / "messy.arch", "input 4\nfc   3\n")
    inside.chmod(0o640)
    (tmp_path / "specs" / "link.arch").symlink_to(outside)
    code, _, err = run(capsys, "fmt", str(tmp_path / "specs"))
    assert code == 1 and "a symbolic link that leaves" in err
    assert outside.read_text() == "input 4\nfc   3\n" and stat.S_IMODE(outside.stat().st_mode) == 0o600
    assert inside.read_text() == "input 4\nfc 3\n"
    assert stat.S_IMODE(inside.stat().st_mode) == 0o640  # was reset to 0644


def test_compile_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    pytest.importorskip("archc.backends.torch.generate")
    out = tmp_path / "m.py"
    out.write_text("old")
    out.chmod(0o600)
    assert main(["compile", "specs/lenet5.arch", "-o", str(out)]) == 0
    assert out.read_text() != "old" and stat.S_IMODE(out.stat().st_mode) == 0o600


# --- item 15: a FIFO or a device never blocks ----------------------------------------------------
def test_a_fifo_or_a_device_as_a_spec_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.arch"
    os.mkfifo(fifo)
    (tmp_path / "zero.arch").symlink_to("/dev/zero")
    for argv in (
        ["check", str(fifo)],
        ["check", str(tmp_path)],
        ["fmt", str(fifo)],
        ["summary", str(fifo)],
        ["check", "/dev/zero"],
    ):
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "archc", *argv], capture_output=True, text=True, timeout=20, cwd=ROOT
        )
        assert time.monotonic() - start < 5, argv
        assert proc.returncode == 1, (argv, proc.stderr)
        assert "not a regular file" in proc.stderr, argv


def test_a_proc_file_is_not_a_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "/proc/self/environ")
    assert code == 1 and "a kernel file" in err and "PATH=" not in out + err


# --- item 2: names from the input cannot inject into any output ----------------------------------------
HOSTILE_NAME = "x\n::error file=forged.arch::pwned\x1b[2J%0A.arch"


def test_hostile_file_names_are_escaped_in_every_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write(tmp_path / HOSTILE_NAME, GOOD)
    write(tmp_path / "bad\x07.arch", "input 8x8x3\nconvv K=4\n")
    code, out, err = run(capsys, "check", "--format", "github", str(tmp_path))
    assert code == 1
    for line in (out + err).splitlines():  # only archc's own workflow commands start a line
        assert not line.startswith("::") or line.startswith(("::error file=", "::warning file="))
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert not any(line.startswith("::error file=forged.arch") for line in out.splitlines())
    code, out, err = run(capsys, "check", str(tmp_path))
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert repr(str(tmp_path / HOSTILE_NAME)) in out
    code, out, _ = run(capsys, "check", "--format", "junit", str(tmp_path))
    suite = ET.fromstring(out.split("\n", 1)[1])  # well-formed: raised before
    assert any("\\x1b" in (case.get("name") or "") for case in suite.iter("testcase"))
    code, out, _ = run(capsys, "check", "--format", "json", str(tmp_path))
    assert {f["path"] for f in json.loads(out)["files"]} == {str(tmp_path / HOSTILE_NAME), str(tmp_path / "bad\x07.arch")}


def test_a_file_name_that_is_not_utf8_is_no_crash(tmp_path: Path) -> None:
    name = os.fsencode(tmp_path) + b"/\xff\xfe.arch"
    with open(name, "w") as f:
        f.write(GOOD)
    for fmt in ("text", "github", "junit", "json"):
        proc = subprocess.run(
            [sys.executable, "-m", "archc", "check", "--format", fmt, str(tmp_path)],
            capture_output=True, timeout=30, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, (fmt, proc.stderr)
    out = subprocess.run(
        [sys.executable, "-m", "archc", "check", "--format", "junit", str(tmp_path)],
        capture_output=True, timeout=30, cwd=ROOT,
    ).stdout  # fmt: skip
    ET.fromstring(out.split(b"\n", 1)[1])


# --- item 5: -o is never one of the inputs --------------------------------------------------------
def test_check_output_inside_a_directory_argument_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = write(tmp_path / "specs" / "spec.arch", GOOD)
    (tmp_path / "specs" / "alias.arch").symlink_to(spec)
    for target in (spec, tmp_path / "specs" / "alias.arch"):
        code, _, err = run(capsys, "check", "--format", "json", "-o", str(target), str(tmp_path / "specs"))
        assert code == 1 and "it is the input" in err
        assert spec.read_text() == GOOD


def test_compile_refuses_a_hard_link_to_its_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path / "spec.arch", GOOD)
    os.link(spec, tmp_path / "same.py")
    code, _, err = run(capsys, "compile", str(spec), "-o", str(tmp_path / "same.py"))
    assert code == 1 and "it is the input" in err and spec.read_text() == GOOD


# --- item 8: a missing directory is an error, none is created -------------------------------------
@pytest.mark.parametrize("command", ["compile-py", "compile-onnx", "check", "graph"])
def test_a_missing_output_directory_is_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    out = tmp_path / "no" / "such" / "dir" / "out"
    argv = {
        "compile-py": ["compile", "specs/lenet5.arch", "-o", f"{out}.py"],
        "compile-onnx": ["compile", "specs/lenet5.arch", "-o", f"{out}.onnx"],
        "check": ["check", "--format", "json", "-o", f"{out}.json", "specs/lenet5.arch"],
        "graph": ["graph", "specs/lenet5.arch", "-o", f"{out}.dot"],
    }[command]
    if command.startswith("compile"):
        pytest.importorskip("onnx" if command.endswith("onnx") else "torch")
    code, _, err = run(capsys, *argv)
    assert code == 1 and "does not exist; archc creates none" in err
    assert list(tmp_path.iterdir()) == []


# --- item 6: SIGTERM and SIGKILL leave no temporary behind, for long ---------------------------------
SLOW_WRITE = """\
import sys, time
from pathlib import Path
from archc.files import atomic_path
def slow(tmp: Path) -> None:
    tmp.write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(30)
with atomic_path(Path(sys.argv[1])) as tmp:
    slow(tmp)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_killed_write_leaves_no_temporary(tmp_path: Path, sig: int) -> None:
    target = tmp_path / "vgg.onnx"
    target.write_bytes(b"previous")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
    assert len(list(tmp_path.iterdir())) == 2  # the target and its temporary
    proc.send_signal(sig)
    proc.wait(timeout=10)
    if sig == signal.SIGKILL:  # nothing can run on SIGKILL: the next write of the target cleans up
        assert len(list(tmp_path.iterdir())) == 2
        from archc.files import write_atomic

        write_atomic(target, b"next")
        assert [p.name for p in tmp_path.iterdir()] == ["vgg.onnx"] and target.read_bytes() == b"next"
    else:
        assert proc.returncode != 0
        assert [p.name for p in tmp_path.iterdir()] == ["vgg.onnx"] and target.read_bytes() == b"previous"


def test_a_temporary_in_use_is_not_removed(tmp_path: Path) -> None:
    """Two compiles of one target at once: the second must not delete the first one's temporary."""
    from archc.files import atomic_path, write_atomic

    target = tmp_path / "m.onnx"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"first")
        write_atomic(target, b"second")  # runs the stale-file sweep while `tmp` is being written
        assert tmp.exists()
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
