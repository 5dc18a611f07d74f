"""`archc check` stays light: it never imports torch, onnx, onnxruntime or numpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "onnx", "onnxruntime", "numpy")


def imported_modules(*argv: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "archc", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # lines look like: "import time:       123 |        456 |   package.module"
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "archc.cli" in names  # the parse works: the list is not empty by accident
    return names


def test_check_imports_no_heavy_modules() -> None:
    names = imported_modules("check", "specs/alexnet_lecture.arch")
    heavy = sorted(n for n in names if n.split(".")[0] in HEAVY)
    assert heavy == []
    # the language server's extra stays out of `check` too
    assert not any(n.split(".")[0] in ("pygls", "lsprotocol") or n.startswith("archc.lsp") for n in names)
    assert "archc.frontend.parser" in names and "lark" in names


def test_summary_imports_no_heavy_modules() -> None:
    names = imported_modules("summary", "specs/alexnet_lecture.arch")
    assert sorted(n for n in names if n.split(".")[0] in HEAVY) == []


def test_import_of_a_prototxt_imports_no_heavy_modules() -> None:
    """A Caffe prototxt is text: importing one needs archc alone (no torch, onnx or numpy)."""
    names = imported_modules("import", "tests/caffe/alexnet.prototxt", "-o", "-")
    assert sorted(n for n in names if n.split(".")[0] in (*HEAVY, "safetensors")) == []
    assert "archc.importers.prototxt" in names  # the import ran
