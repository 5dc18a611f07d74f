"""`archc lsp` without its optional extra says what to install, instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BLOCKED = """
import sys
sys.modules["pygls"] = None  # as if the lsp extra were not installed
from archc.cli import main
sys.exit(main(["lsp"]))
"""


def test_lsp_without_the_extra_names_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "pip install 'archc[lsp]'" in proc.stderr and "Traceback" not in proc.stderr


def test_lsp_is_listed_in_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "archc", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "lsp" in proc.stdout
