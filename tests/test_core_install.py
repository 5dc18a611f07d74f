"""The core install (lark + pydantic only): summary and diff work without rich."""

from __future__ import annotations

import sys

import pytest
from conftest import SPECS

from archc.cli import main


@pytest.fixture
def no_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)  # `import rich` now raises ImportError


def test_summary_without_rich_prints_a_plain_table(no_rich: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(SPECS / "alexnet_lecture.arch"), "--explain"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split() == ["Layer", "Kind", "Output", "Params", "%", "params", "MACs", "%", "MACs"]
    assert any(ln.split()[:1] == ["conv1"] and "55x55x96" in ln and "34,944" in ln for ln in lines)
    assert any(ln.startswith("pool3") and "2x2x256" in ln for ln in lines)
    assert "28,823,912" in out and "(227 - 11 + 2*0)/4 + 1 = 55" in out


def test_diff_on_a_terminal_without_rich(
    no_rich: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    a, b = SPECS / "alexnet_lecture.arch", SPECS / "zfnet_lecture.arch"
    assert main(["diff", str(a), str(b), "--changed"]) == 0
    out = capsys.readouterr().out
    assert "34,848 -> 14,112 (-20,736)" in out
