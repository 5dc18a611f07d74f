"""The wheel ships the grammar inside the package, where the parser finds it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_wheel_ships_the_grammar(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here (needs hatchling from the registry): {build.stderr[-300:]}")
    (wheel,) = tmp_path.glob("archc-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = zf.read("archc/frontend/arch.lark").decode("utf-8")
        names = zf.namelist()
    assert shipped == (ROOT / "archc" / "frontend" / "arch.lark").read_text(encoding="utf-8")
    assert "archc/cli.py" in names and not any(n.startswith("tests/") for n in names)
