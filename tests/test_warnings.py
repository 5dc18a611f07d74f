"""W001 as contract v2 states it (LANGUAGE.md "Warnings"), and the two ways to silence it.

A conv or pool whose windows cover the input without gaps but stop short of
its end, leaving lines of the input itself unread, warns; every side affected
is named and the hint's padding is one the layer takes. Only padding unread,
or a window smaller than its stride, is no warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import archc  # noqa: E402
from archc.api import compile_text  # noqa: E402
from archc.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def warnings(text: str) -> list[archc.Diagnostic]:
    r = compile_text(text, "w.arch")
    assert not r.errors, r.render()
    return [d for d in r.warnings if d.code == "W001"]


def test_alexnet_at_224_names_both_sides() -> None:
    (w,) = warnings("input 224x224x3\nconv1: conv K=96 F=11 S=4\n")
    assert w.message == (
        "conv1: (224 - 11 + 2*0)/4 = 53.25 is not a whole number along H and W; "
        "the last row and the last column of the input are never read"
    )
    assert w.hint == "an input of 223x223 or 227x227 divides evenly"  # 2P is even: no padding fixes an odd 213


def test_uneven_on_both_sides_of_a_non_square_input_names_both() -> None:
    (w,) = warnings("input 224x226x3\nconv1: conv K=96 F=11 S=4\n")
    assert w.message == (
        "conv1: (224 - 11 + 2*0)/4 = 53.25 along H and (226 - 11 + 2*0)/4 = 53.75 along W are not whole "
        "numbers; the last row and the last 3 columns of the input are never read"
    )
    assert w.hint == "an input of 223x223 or 227x227 divides evenly"


def test_one_side_of_a_non_square_input() -> None:
    (w,) = warnings("input 227x226x3\nconv1: conv K=96 F=11 S=4\n")
    assert "along W; the last 3 columns of the input are never read" in w.message
    assert w.hint == "an input width of 223 or 227 divides evenly"


@pytest.mark.parametrize(
    "line",
    [
        "conv K=8 F=3 S=2 P=1",  # ResNet's stride-2 3x3: only a row of padding goes unread
        "conv K=8 F=7 S=2 P=3",  # ResNet's stem at 224 (here 56)
        "maxpool F=3 S=2 P=1",  # ResNet's max pool
        "conv K=8 F=1 S=2",  # a 1x1 stride-2 projection skips rows everywhere by design
        "conv K=8 F=2 S=3",  # any window smaller than its stride
        "maxpool F=3 S=2 ceil=true",  # the partial window is used
        "conv K=8 F=3 S=2 P=same",  # padded to fit by construction
        "conv K=8 F=3 S=1",
    ],
)
def test_no_warning(line: str) -> None:
    assert warnings(f"input 56x56x4\n{line}\n") == []


def test_the_suggested_padding_is_valid_for_that_layer() -> None:
    """maxpool F=1x4 on width 122 was told P=1, which is more than half of F_h=1: now P=0x1."""
    (w,) = warnings("input 5x122x2\nmaxpool F=1x4\n")
    assert "along W; the last 2 columns of the input are never read" in w.message
    assert w.hint == "an input width of 120 or 124 or padding P=0x1 divides evenly"
    assert warnings("input 5x122x2\nmaxpool F=1x4 P=0x1\n") == []


def test_padding_is_suggested_where_one_exists() -> None:
    (w,) = warnings("input 20x20x2\nconv K=2 F=4 S=4 P=1\n")  # (20 + 2 - 4)/4 = 4.5: 2 lines, 1 of them input
    assert "the last row and the last column of the input are never read" in w.message
    assert w.hint == "an input of 18x18 or 22x22 or padding P=0 divides evenly"


def test_volumes_and_signals_name_frames_and_positions() -> None:
    (w,) = warnings("input 9x8x8x3\nconv K=4 F=2 S=2\n")
    assert "along D; the last frame of the input is never read" in w.message
    (w,) = warnings("input 101x1\nmaxpool F=4\n")
    assert w.message == "maxpool1: (101 - 4 + 2*0)/4 = 24.25 is not a whole number along L; the last position of the input is never read"


def test_transposed_windows_never_warn() -> None:
    assert warnings("input 7x7x4\nconvtranspose K=4 F=3 S=2\n") == []


def _unread_at_end(n: int, f: int, s: int, p: int, d: int) -> bool:
    """By brute force: do the windows (with P on each side) leave the input's last line unread?"""
    span = d * (f - 1) + 1
    out = (n + 2 * p - span) // s + 1
    last_read = (out - 1) * s - p + span - 1
    return last_read < n - 1


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3), st.booleans())
def test_warns_exactly_when_input_goes_unread_and_the_hint_fixes_it(
    n: int, f: int, s: int, p: int, d: int, pool: bool
) -> None:
    if pool:
        d, p = 1, min(p, f // 2)
    layer = f"maxpool F={f} S={s} P={p}" if pool else f"conv K=2 F={f} S={s} P={p} D={d}"
    r = compile_text(f"input {n}x2\n{layer}\n", "w.arch")
    if r.errors:
        return  # the window does not fit
    found = [w for w in r.warnings if w.code == "W001"]
    expected = d * (f - 1) + 1 >= s and _unread_at_end(n, f, s, p, d)
    assert bool(found) == expected, (layer, n)
    if found:
        assert found[0].hint is not None
        if "padding P=" in found[0].hint:
            fixed = found[0].hint.split("padding P=")[1].split()[0]
            again = compile_text(f"input {n}x2\n{layer.replace(f'P={p}', f'P={fixed}')}\n", "w.arch")
            assert not again.errors and not again.warnings, again.render()
        low = int(found[0].hint.split(" of ")[1].split("x")[0].split()[0])
        if low >= d * (f - 1) + 1 - 2 * p and low > 0:
            assert not compile_text(f"input {low}x2\n{layer}\n", "w.arch").warnings


# --- silencing --------------------------------------------------------------------------------
def test_a_comment_silences_its_own_line_only() -> None:
    text = (
        "input 224x224x3\n"
        "conv1: conv K=96 F=11 S=4  # the published crop; archc: ignore[W001]\n"
        "pool1: maxpool F=2\n"
        "conv K=8 F=2 S=2  # archc: ignore[W002]\n"
    )
    found = warnings(text)
    assert [w.message.split(":")[0] for w in found] == ["conv2"]  # pool1 divides 54 evenly; W002 is not W001


def test_a_comment_in_a_block_silences_every_instance() -> None:
    text = "block B { conv K=4 F=2 S=2  # archc: ignore[W001]\n}\ninput 9x9x3\nB\nB\n"
    assert warnings(text) == []
    assert len(warnings(text.replace("  # archc: ignore[W001]", ""))) == 1  # one diagnostic per line


def test_check_ignore_for_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "w.arch"
    spec.write_text("input 224x224x3\nconv K=96 F=11 S=4\n", encoding="utf-8")
    assert main(["check", "--strict", str(spec)]) == 1
    capsys.readouterr()
    assert main(["check", "--strict", "--ignore", "W001", str(spec)]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and out.splitlines()[-1] == "1 spec checked: 1 valid, 0 invalid"
    with pytest.raises(SystemExit):
        main(["check", "--ignore", "W999", str(spec)])
    assert "W999 is not a warning code (warnings: W001, W002, W003)" in capsys.readouterr().err


def test_the_zoo_passes_strict() -> None:
    """`archc check --strict specs/` exits 0: the published crops carry their comment."""
    assert main(["check", "--strict", str(ROOT / "specs")]) == 0
    commented = sorted(p.stem for p in (ROOT / "specs").glob("*.arch") if "ignore[W001]" in p.read_text("utf-8"))
    assert {"squeezenet1_0", "squeezenet1_1", "zfnet_lecture"} <= set(commented)
