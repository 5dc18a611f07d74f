"""`archc fmt`: the canonical layout, idempotent, comment-keeping and meaning-preserving."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import GOLDEN, ROOT, SPECS, all_specs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.api import compile_text
from archc.cli import main
from archc.tools.fmt import FormatError, format_text

ERROR_SPECS = sorted((ROOT / "tests" / "errors").glob("*.arch"))


def comments(text: str) -> list[str]:
    """Every comment, in order (`#` always starts one: the language has no strings)."""
    return [m.group(0).rstrip() for m in re.finditer(r"#[^\n]*", text)]


def meaning(text: str) -> object:
    """What the compiler makes of a spec: layers, scopes, totals and diagnostic codes."""
    result = compile_text(text, "spec.arch")
    codes = sorted(d.code for d in result.diagnostics)
    net = result.network
    if net is None:
        return ("invalid", codes)
    layers = [(lay.name, lay.kind, lay.output, lay.weights, lay.biases, lay.macs) for lay in net.layers]
    scopes = [(s.path, s.kind, s.block, s.args) for s in net.graph.scopes]
    return (net.name, net.input_shape, layers, scopes, net.params, net.macs, len(result.assertions), codes)


# --- every spec in the repository -------------------------------------------------------------
@pytest.mark.parametrize("path", all_specs() + ERROR_SPECS, ids=lambda p: p.name)
def test_idempotent_and_meaning_preserved(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        once = format_text(text)
    except FormatError:
        assert compile_text(text).network is None  # only syntax errors refuse to format
        return
    assert format_text(once) == once
    assert meaning(once) == meaning(text)
    assert comments(once) == comments(text)


def test_specs_exist() -> None:
    assert len(all_specs()) >= 1


def test_golden(golden) -> None:  # type: ignore[no-untyped-def]
    src = GOLDEN / "fmt_messy.arch"
    out = format_text(src.read_text(encoding="utf-8"))
    golden(GOLDEN / "fmt_messy.formatted.arch", out)
    assert meaning(out) == meaning(src.read_text(encoding="utf-8"))


# --- the rules, one at a time ------------------------------------------------------------------
def test_one_statement_per_line_and_indentation() -> None:
    src = "input 8x8x3\nrepeat 2 { conv K=3 F=1; relu }\nconcat { branch { relu } branch { identity } }\n"
    assert format_text(src) == (
        "input 8x8x3\n"
        "repeat 2 {\n  conv K=3 F=1\n  relu\n}\n"
        "concat {\n  branch { relu }\n  branch { identity }\n}\n"  # one plain layer stays inline
    )


def test_keys_in_registry_order_and_block_parameter_order() -> None:
    src = "block B(A, Z=1) { fc A+Z }\ninput 4\nb: B Z=2 A=3\nconv bias=false G=1 D=1 P=1 S=2 F=3 K=8\n"
    out = format_text(src)
    assert "b: B A=3 Z=2\n" in out
    assert "conv K=8 F=3 S=2 P=1 D=1 G=1 bias=false\n" in out


def test_positional_first_and_values_as_written() -> None:
    out = format_text("input 4_096\nfc  bias=false   4_096\ndropout 5e-1\nfc 34.8K\n")
    assert out == "input 4_096\nfc 4_096 bias=false\ndropout 5e-1\nfc 34.8K\n"


def test_expressions_keep_parentheses_and_lose_spaces() -> None:
    out = format_text("block F(SQ) { conv K = ( SQ + 1 ) // 2 * 4   F=1 }\ninput 8x8x3\nF SQ=3\n")
    assert "{ conv K=(SQ+1)//2*4 F=1 }\n" in out


def test_arrows_aligned_within_a_run_only() -> None:
    src = (
        "input 227x227x3\n"
        "conv1: conv K=96 F=11 S=4 -> 55x55x96\n"
        "relu\n"
        "pool1: maxpool F=3 S=2 -> 27x27x96\n"
        "\n"
        "fc 10 -> 10\n"
    )
    lines = format_text(src).splitlines()
    assert lines[1] == "conv1: conv K=96 F=11 S=4 -> 55x55x96"
    assert lines[2] == "relu"
    assert lines[3] == "pool1: maxpool F=3 S=2    -> 27x27x96"
    assert lines[5] == "fc 10 -> 10"  # a blank line starts a new run


def test_comments_kept_and_trailing_ones_aligned() -> None:
    src = (
        "# head\n"
        "input 8x8x3 # the input\n"
        "conv K=4 F=3   # a conv\n"
        "repeat 2 {   # twice\n"
        "  # inside\n"
        "  relu\n"
        "  # last inside\n"
        "}\n"
        "# tail\n"
    )
    assert format_text(src) == (
        "# head\n"
        "input 8x8x3   # the input\n"
        "conv K=4 F=3  # a conv\n"
        "repeat 2 {    # twice\n"
        "  # inside\n"
        "  relu\n"
        "  # last inside\n"
        "}\n"
        "# tail\n"
    )


def test_blank_lines_collapsed_and_trimmed() -> None:
    src = "\n\n\ninput 4\n\n\n\nfc 3\nrepeat 1 {\n\n  relu\n\n\n  relu\n\n}\n\n\n"
    assert format_text(src) == "input 4\n\nfc 3\nrepeat 1 {\n  relu\n\n  relu\n}\n"


def test_expect_spacing_normalised() -> None:
    out = format_text("input 4\nfc 3\nexpect   params=15\nexpect fc1.weights  ==  12   +-   5 %\n")
    assert out.endswith("expect params = 15\nexpect fc1.weights == 12 +- 5%\n")


def test_residual_shortcut_and_arrows_on_closing_lines() -> None:
    src = "input 8x8x4\nr: residual { conv K=4 F=1 } shortcut { identity } -> 8x8x4\nblock E {}\n"
    assert format_text(src) == (
        "input 8x8x4\n"
        "r: residual { conv K=4 F=1 } shortcut { identity } -> 8x8x4\n"
        "block E {}\n"
    )


def test_bodies_of_one_plain_layer_stay_inline_and_their_arrows_align() -> None:
    src = "input 8x8x4\nconv K=4 F=1 -> 8x8x4\nl: repeat 2 {\n relu\n} -> 8x8x4\nrepeat 1 { relu  # why\n}\n"
    assert format_text(src) == (
        "input 8x8x4\n"
        "conv K=4 F=1         -> 8x8x4\n"
        "l: repeat 2 { relu } -> 8x8x4\n"
        "repeat 1 { relu }  # why\n"
    )


def test_add_and_multiply_bodies() -> None:
    src = "input 4x4x8\nse:multiply{branch{identity}\nbranch{globalavgpool;sigmoid}}->4x4x8\nadd { branch { relu } }\n"
    assert format_text(src) == (
        "input 4x4x8\nse: multiply {\n  branch { identity }\n  branch {\n    globalavgpool\n    sigmoid\n  }\n"
        "} -> 4x4x8\nadd {\n  branch { relu }\n}\n"
    )


def test_crlf_and_semicolons() -> None:
    assert format_text("input 4\r\nfc 3;;relu\r\n") == "input 4\nfc 3\nrelu\n"


def test_syntax_error_raises_with_diagnostics() -> None:
    with pytest.raises(FormatError) as info:
        format_text("input 4\nfc 3 )\n")
    assert info.value.diagnostics[0].code == "E001"


# --- comments around braces (regressions) -----------------------------------------------------
def assert_stable(src: str) -> str:
    """Format `src`; check idempotence, meaning, every comment kept in order, one per line."""
    once = format_text(src)
    assert format_text(once) == once
    assert meaning(once) == meaning(src)
    assert comments(once) == comments(src.replace("\r", ""))
    assert all(len(comments(line)) <= 1 for line in once.splitlines())  # no comments glued together
    return once


@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("input 8x8x3\nrepeat 2\n{ # x\nrelu }\n", "input 8x8x3\nrepeat 2 { relu }  # x\n"),
        (
            "block B(K)\n{ # c\n  conv K=K F=1\n  relu\n}\ninput 8x8x3\nB K=2\n",
            "block B(K) {  # c\n  conv K=K F=1\n  relu\n}\ninput 8x8x3\nB K=2\n",
        ),
        (
            "input 8x8x3\nresidual\n{ # r\n  relu\n  relu\n} shortcut\n{ # s\n  identity\n}\n",
            "input 8x8x3\nresidual {  # r\n  relu\n  relu\n} shortcut { identity }  # s\n",
        ),
        (
            "input 8x8x3\nconcat\n{ # c\n  branch\n  { # b\n    relu\n  }\n  branch { identity }\n}\n",
            "input 8x8x3\nconcat {           # c\n  branch { relu }  # b\n  branch { identity }\n}\n",
        ),
        # the comments of the lines the brace leaves go above the statement, in order
        (
            "input 4\nrepeat 2 # a\n# between\n{ # b\n  relu\n}\n",
            "input 4\n# a\n# between\nrepeat 2 { relu }  # b\n",
        ),
    ],
    ids=["repeat", "block", "residual", "concat", "comments-above"],
)
def test_brace_on_the_next_line_with_a_comment(src: str, want: str) -> None:
    assert assert_stable(src) == want


@pytest.mark.parametrize(
    ("src", "want"),
    [
        # a body is not folded onto its head's line when that would join two lines' comments
        (
            "block B(K) { # header comment\nconv K=K F=1 # in block\n}\ninput 8x8x3\nB K=2\n",
            "block B(K) {    # header comment\n  conv K=K F=1  # in block\n}\ninput 8x8x3\nB K=2\n",
        ),
        (
            "input 8x8x3\nconcat {\nbranch { # open b\n} # close b2\nbranch { relu }\n}\n",
            "input 8x8x3\nconcat {\n  branch {  # open b\n  }         # close b2\n  branch { relu }\n}\n",
        ),
        (
            "input 8x8x3\nresidual { relu # r\n} shortcut { identity # s\n} # end\n",
            "input 8x8x3\nresidual {\n  relu  # r\n} shortcut {\n  identity  # s\n}           # end\n",
        ),
        (
            "input 4\nrepeat 2 {\nrelu # r\n} -> 4 # after close\n",
            "input 4\nrepeat 2 {\n  relu  # r\n} -> 4  # after close\n",
        ),
        # ... but one comment does not stop it
        ("input 4\nrepeat 2 { # twice\nrelu\n}\n", "input 4\nrepeat 2 { relu }  # twice\n"),
        # a comment after `shortcut`, its brace below: above `} shortcut {`, still in the body
        (
            "input 8x8x3\nresidual {\n  relu\n  relu\n} shortcut # kw\n{ # open\n  identity\n}\n",
            "input 8x8x3\nresidual {\n  relu\n  relu\n  # kw\n} shortcut { identity }  # open\n",
        ),
    ],
    ids=["block", "empty-branch", "residual-shortcut", "arrow", "one-comment", "shortcut-keyword"],
)
def test_comments_of_folded_bodies_are_not_glued(src: str, want: str) -> None:
    assert assert_stable(src) == want


PLACEMENTS = [
    "input 4\nrepeat 2 { # a\nrelu\nrelu\n}\n",  # after `{`
    "input 4\nrepeat 2 {\nrelu\n# before close\n}\n",  # before `}`
    "input 4\nrepeat 2 { relu } # after\nfc 3\n",  # after `}`
    "input 4\nrepeat 2 { # a\nrelu } ; fc 3 # c\n",  # after `}` and another statement
    "input 8x8x3\nresidual { relu } shortcut # kw\n{ # open\nidentity\nrelu\n} # end\n",
    "input 8x8x3\nresidual { relu # r\n} shortcut\n# m2\n{ identity # s\n# m3\n} # end\n",
    "input 4\nresidual {\nrelu\nrelu\n} shortcut { # a\n} # b\n",
    "input 4\nresidual { relu }\nshortcut # a\n{ # b\nidentity }\n",
    "input 8x8x3\nconcat {\nbranch { relu }\n# between\nbranch { identity } # t\n# last\n}\n",
    "input 8x8x3\nconcat { # c\n branch { relu } branch { identity } # x\n}\n",
    "input 8x8x3\nconcat { branch { relu } branch { identity } } # t\n",
    "input 4\nfc 3 # end",  # end of file, no newline
    "input 4\nfc 3\n# end",
    "input 4\r\nrepeat 2\r\n{ # x\r\nrelu # y\r\n} # z\r\n# tail\r\n",  # CRLF
    "input 4\nrepeat 2 # a\n{ # b\nrelu\nrelu\n}\n",
    "input 4\nrepeat 2\n\n# between\n\n{ relu }\n",
    "input 4\nl: repeat 2 # a\n\n{ relu } # b\n",
    "block E { # a\n} # b\ninput 4\n",
    "block E\n{ # a\n} # b\ninput 4\n",
    "input 4\nrepeat 2 { # a\nrepeat 3 { relu } -> 4 # b\n}\n",
    "input 4\nrepeat 2 { repeat 3 { # a\nrelu } -> 4 # b\n}\n",
    "input 4\nrepeat 2 {\nrepeat 3 # a\n{ relu } -> 4\n}\n",
    "input 4\nrepeat 2 # m3\n# m1\n{ # m2\nrepeat 3 { # a\nrelu } -> 4 # b\n} # m4\n",
    "input 4\nrepeat 2 { # a\n# b\n}\n",
]


@pytest.mark.parametrize("src", PLACEMENTS)
def test_comment_placements(src: str) -> None:
    assert_stable(src)


@st.composite
def commented_specs(draw: st.DrawFn) -> str:
    """A spec of the repository with comments added, braces moved down and lines joined."""
    text = draw(st.sampled_from([*all_specs(), GOLDEN / "fmt_messy.arch"])).read_text(encoding="utf-8")
    count = iter(range(1, 1 << 20))
    pieces = re.split(r"(?<=\S)( \{|\n)", text)
    out = []
    for piece in pieces:
        if piece == " {" and draw(st.booleans()):
            piece = "\n" + draw(st.sampled_from(["", f"# b{next(count)}\n"])) + "{"
        elif piece == "\n":
            current = "".join(out).rsplit("\n", 1)[-1]
            choice = draw(st.sampled_from(["\n", "\n", "trail", "full", "join"]))
            if choice == "trail" and "#" not in current:
                piece = f" # t{next(count)}\n"
            elif choice == "full":
                piece = f"\n# f{next(count)}\n"
            elif choice == "join" and "#" not in current:
                piece = ";"
        out.append(piece)
    return "".join(out).replace("\n", draw(st.sampled_from(["\n", "\r\n"])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commented_specs())
def test_comments_anywhere_in_the_shipped_specs(src: str) -> None:
    try:
        format_text(src)
    except FormatError:
        return  # a `;` before `shortcut` or `->`: a syntax error, not for the formatter
    assert_stable(src)


# --- random specs ------------------------------------------------------------------------------
_LAYERS = [
    "conv K={k} F={f} P={p}",
    "conv P={p} F={f} K={k} bias=false",
    "maxpool F=1",
    "batchnorm",
    "relu",
    "dropout 0.5",
    "residual {{ conv K={c} F=1 ; relu }}",
    "concat {{ branch {{ conv K={k} F=1 }} branch {{ relu }} }}",
    "repeat {n} {{ conv F=1 K={c} }}",
]
_SPACES = st.sampled_from([" ", "  ", "\t", " \t "])


@st.composite
def specs(draw: st.DrawFn) -> str:
    """A spec of random layers written with random spacing, separators, blank lines and comments."""
    lines = ["input 16x16x4"]
    channels = 4
    for i in range(draw(st.integers(1, 8))):
        template = draw(st.sampled_from(_LAYERS))
        k, f = draw(st.integers(1, 8)), draw(st.sampled_from([1, 3]))
        layer = template.format(k=k, f=f, p=(f - 1) // 2, c=channels, n=draw(st.integers(0, 2)))
        if layer.startswith("conv"):
            channels = k
        elif layer.startswith("concat"):
            channels += k
        if draw(st.booleans()):
            layer = f"l{i}:{draw(_SPACES)}{layer}"
        layer = layer.replace(" ", draw(_SPACES))
        if draw(st.booleans()):
            layer += f"{draw(_SPACES)}# c{i}"
        lines.append(layer)
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "", "# note", "  ;"])))
    sep = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    return sep.join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_random_specs(src: str) -> None:
    once = format_text(src)
    assert format_text(once) == once
    assert meaning(once) == meaning(src)
    assert comments(once) == comments(src.replace("\r", ""))
    assert "\n\n\n" not in once and not once.startswith("\n")


# --- the command -------------------------------------------------------------------------------
MESSY = "input 4\nfc   3 # c\n"
TIDY = "input 4\nfc 3  # c\n"


def test_check_reports_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messy, tidy = tmp_path / "messy.arch", tmp_path / "tidy.arch"
    messy.write_text(MESSY)
    tidy.write_text(TIDY)
    assert main(["fmt", "--check", str(tidy)]) == 0
    assert main(["fmt", "--check", str(messy), str(tidy)]) == 1
    out = capsys.readouterr().out
    assert f"would reformat {messy}" in out and str(tidy) not in out
    assert messy.read_text() == MESSY


def test_rewrites_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messy = tmp_path / "sub" / "messy.arch"
    messy.parent.mkdir()
    messy.write_text(MESSY)
    assert main(["fmt", str(tmp_path)]) == 0  # directories are searched
    assert messy.read_text() == TIDY
    assert f"reformatted {messy}" in capsys.readouterr().out
    assert main(["fmt", "--check", str(messy)]) == 0
    assert [p.name for p in messy.parent.iterdir()] == ["messy.arch"]  # no temporary left over


def test_syntax_error_leaves_file_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad, messy = tmp_path / "bad.arch", tmp_path / "messy.arch"
    bad.write_text("input 4\nfc   3 )\n")
    messy.write_text(MESSY)
    assert main(["fmt", str(bad), str(messy)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:8: error[E001]" in err and "Traceback" not in err
    assert bad.read_text() == "input 4\nfc   3 )\n"
    assert messy.read_text() == TIDY  # the other files are still formatted


def test_a_failure_on_one_file_is_reported_and_the_others_still_formatted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import archc.tools.fmt

    braced, broken, messy = tmp_path / "a.arch", tmp_path / "b.arch", tmp_path / "c.arch"
    braced.write_text("input 8x8x3\nrepeat 2\n{ # x\nrelu }\n")  # crashed fmt once (KeyError)
    broken.write_text("input 4\nfc 5 # boom\n")
    messy.write_text(MESSY)
    real = archc.tools.fmt.format_text

    def format_text(text: str) -> str:  # a formatter bug that shows on one file only
        if "boom" in text:
            raise KeyError(4)
        return real(text)

    monkeypatch.setattr(archc.tools.fmt, "format_text", format_text)
    monkeypatch.delenv("ARCHC_DEBUG", raising=False)
    assert main(["fmt", str(braced), str(broken), str(messy)]) == 1
    err = capsys.readouterr().err
    assert f"{broken}: internal error in archc fmt: KeyError: 4" in err and "Traceback" not in err
    assert "2 files reformatted, 0 unchanged, 1 failed" in err
    assert braced.read_text() == "input 8x8x3\nrepeat 2 { relu }  # x\n"
    assert broken.read_text() == "input 4\nfc 5 # boom\n"  # left alone
    assert messy.read_text() == TIDY  # the file after the failure is still formatted


def test_crlf_stays_crlf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fmt rewrote CRLF files to LF silently, and `--check` failed every canonical CRLF file."""
    tidy, messy = tmp_path / "tidy.arch", tmp_path / "messy.arch"
    tidy.write_bytes(TIDY.replace("\n", "\r\n").encode())
    messy.write_bytes(MESSY.replace("\n", "\r\n").encode())
    assert main(["fmt", "--check", str(tidy)]) == 0
    assert main(["fmt", str(tidy), str(messy)]) == 0
    assert tidy.read_bytes() == messy.read_bytes() == TIDY.replace("\n", "\r\n").encode()
    assert "1 file reformatted, 1 unchanged" in capsys.readouterr().err


def test_a_byte_order_mark_is_accepted_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tidy, messy = tmp_path / "tidy.arch", tmp_path / "messy.arch"
    tidy.write_bytes(b"\xef\xbb\xbf" + TIDY.encode())
    messy.write_bytes(b"\xef\xbb\xbf" + MESSY.encode())
    assert main(["fmt", "--check", str(tidy)]) == 0
    assert main(["fmt", str(messy)]) == 0
    assert messy.read_bytes() == b"\xef\xbb\xbf" + TIDY.encode()


def test_check_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messy, mixed = tmp_path / "messy.arch", tmp_path / "mixed.arch"
    messy.write_text("input 4\nrelu\nfc   3\n")
    mixed.write_bytes(b"input 4\r\nrelu\r\nfc 3\n")
    assert main(["fmt", "--check", str(messy), str(mixed)]) == 1
    assert capsys.readouterr().out == (
        f"would reformat {messy}: line 3 changes (1 line in all)\n"
        f"would reformat {mixed}: mixed line endings (2 CRLF, 1 LF): every line would end in CRLF\n"
    )
    assert mixed.read_bytes() == b"input 4\r\nrelu\r\nfc 3\n"


def test_diff_shows_the_change_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messy, tidy = tmp_path / "messy.arch", tmp_path / "tidy.arch"
    messy.write_text(MESSY)
    tidy.write_text(TIDY)
    assert main(["fmt", "--diff", str(messy), str(tidy)]) == 1
    out, err = capsys.readouterr()
    assert out == (
        f"--- {messy}\n+++ {messy} (formatted)\n@@ -1,2 +1,2 @@\n input 4\n-fc   3 # c\n+fc 3  # c\n"
    )
    assert "1 file would be reformatted, 1 unchanged" in err
    assert messy.read_text() == MESSY
    assert main(["fmt", "--diff", str(tidy)]) == 0 and capsys.readouterr().out == ""


def test_no_spec_found_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fmt", str(tmp_path)])
    assert info.value.code == 2
    assert f"no spec found: no .arch files in {tmp_path}" in capsys.readouterr().err


def test_missing_file_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", str(tmp_path / "nope.arch")]) == 1
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["fmt"])
    assert info.value.code == 2


def test_the_shipped_specs_are_in_canonical_form() -> None:
    """Acceptance: `archc fmt --check specs/` exits 0."""
    from archc.cli import main

    assert main(["fmt", "--check", str(SPECS)]) == 0


def test_a_token_input_keeps_its_word() -> None:
    assert format_text("input   1024   tokens # ids\nembedding V=5 D=4\n") == "input 1024 tokens  # ids\nembedding V=5 D=4\n"
