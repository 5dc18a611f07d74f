"""Untrusted specs (issue 12, the front end): the hostile corpus, and the rules that hold it.

`tests/hostile/NAME.arch` (and the large cases `LARGE` generates) each broke
archc before: a crash (exit 3), a hang, gigabytes, a wrong count or a wrong
line under a message. Each now ends in its located message (the golden
`NAME.expected`, regenerated with `pytest --overwrite`), and
`test_hostile_case_stays_within_its_resources` runs every stage on it in a
child process: CPU time per stage under `MAX_CPU_S`, the child's peak RSS
(`VmHWM`, which starts afresh at exec; `ru_maxrss` where there is no /proc) under `MAX_RSS_MB`, no exit 3, no traceback.
CPU time, not wall time: a shared CI machine must not make a test flaky.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from archc.api import CompileResult, compile_file, compile_text
from archc.cli import main
from archc.diagnostics import MAX_SHOWN, Names, did_you_mean_path
from archc.frontend.parser import parse, parse_number
from archc.limits import DEFAULT_MAX_LAYERS, MAX_DEPTH

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile"
MAX_CPU_S = 5.0
MAX_RSS_MB = 500


# --- the corpus ------------------------------------------------------------------------------------
def _chain(n: int) -> str:
    return "".join(f"block C{i} {{ C{i + 1} }}\n" for i in range(n)) + f"block C{n} {{ relu }}\ninput 8x8x3\nC0\n"


LARGE: dict[str, Callable[[], str]] = {
    # a flat chain is not nesting: E142 fired for it
    "flat_sum_100000": lambda: "input 10\nfc " + "+".join(["1"] * 100_000) + "\n",
    # the same in a block, short enough for every stage (fmt parses it four times)
    "flat_sum_3000_block": lambda: "block B(K) {\n  fc K" + "+1" * 3000 + "\n}\ninput 10\nB K=1\n",
    "repeat_3000": lambda: "input 8x8x3\n" + "repeat 1 { " * 3000 + "relu" + " }" * 3000 + "\n",
    "concat_3000": lambda: "input 8x8x3\n" + "concat { branch { " * 3000 + "relu" + " } }" * 3000 + "\n",
    "block_chain_20000": lambda: _chain(20_000),
    # 50 MB of errors from a 1 MB line: each quoted the whole line
    "one_line_1mb": lambda: "input 8x8x3\n" + "relu; foo bar ->; " * 60_000 + "\n",
    "garbage_line_1mb": lambda: "input 8x8x3\n" + "@" * 1_000_000 + "\nrelu ->\n",
    # 27 syntax errors in 81,000 lines: parsed again after each (22 s)
    "syntax_errors_81000_lines": lambda: "input 8x8x3\n" + "".join("relu ->\n" if i % 3000 == 0 else "relu\n" for i in range(81_000)),
}
# the cases valid enough for every stage (summary, fmt, graph, diff, PyTorch source) to run on
VALID = {"depth_100_valid", "w001_padding_scan", "warning_in_repeat", "torch_default_first", "torch_dunder_names",
         "torch_unnamed_dunder_call", "arrow_in_nested_repeat", "arrow_on_call_20000", "flat_sum_3000_block",
         "flat_sum_100000"}
CHECK_ONLY = {"flat_sum_100000"}  # valid, but only `check` is the case (fmt would parse 400,000 tokens 4 times)
SMALL = sorted(p.stem for p in HOSTILE.glob("*.arch"))
CASES = SMALL + sorted(LARGE)


def case_text(name: str) -> str:
    if name in LARGE:
        return LARGE[name]()
    return (HOSTILE / f"{name}.arch").read_bytes().decode("utf-8")


def case_result(name: str) -> CompileResult:
    shown = f"tests/hostile/{name}.arch"
    if name in LARGE:
        return compile_text(LARGE[name](), shown)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        return compile_file(shown)


def test_the_corpus_is_whole() -> None:
    assert {p.stem for p in HOSTILE.glob("*.expected")} == set(CASES)
    assert VALID <= set(CASES) and not set(SMALL) & set(LARGE)


@pytest.mark.parametrize("name", CASES)
def test_hostile_case_message(name: str, golden) -> None:  # type: ignore[no-untyped-def]
    r = case_result(name)
    rendered = r.render()
    assert "Traceback" not in rendered
    for d in r.diagnostics:
        assert d.span is not None, d  # located
    verdict = f"valid: {r.network.params:,} params" if r.network is not None else "invalid"
    assert (r.network is not None) == (name in VALID), rendered
    golden(HOSTILE / f"{name}.expected", (rendered + "\n" if rendered else "") + f"-- {verdict}\n")


_DRIVER = r"""
import contextlib, io, json, os, sys, time
from archc.cli import main
spec, out, stages = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
argvs = {
    "check": ["check", spec],
    "summary": ["summary", "--rf", "--explain", spec],
    "summary_json": ["summary", "--json", "--rf", spec],
    "fmt": ["fmt", "--check", spec],
    "graph": ["graph", spec],
    "diff": ["diff", spec, spec],
    "torch": ["compile", spec, "-o", os.path.join(out, "m.py")],
}
report = {}
for stage in stages:
    err = io.StringIO()
    start = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argvs[stage])
    if stage == "torch" and code == 0:  # the source must compile as Python (running it needs torch)
        with open(os.path.join(out, "m.py"), encoding="utf-8") as f:
            compile(f.read(), "m.py", "exec")
    text = err.getvalue()
    report[stage] = [code, time.process_time() - start, "Traceback" in text or "internal error" in text]
# the peak of this program's own memory: VmHWM starts afresh at exec, where ru_maxrss keeps the
# forked image of the test process (gigabytes late in a full run)
peak_kb = None
with contextlib.suppress(OSError):
    with open("/proc/self/status", encoding="ascii") as f:
        peak_kb = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), None)
print(json.dumps({"stages": report, "peak_kb": peak_kb}))
"""


@pytest.mark.parametrize("name", CASES)
def test_hostile_case_stays_within_its_resources(name: str, tmp_path: Path) -> None:
    spec = tmp_path / f"{name}.arch"
    spec.write_bytes(case_text(name).encode("utf-8"))
    stages = ["check"]
    if name in VALID and name not in CHECK_ONLY:
        stages += ["summary", "summary_json", "fmt", "graph", "diff", "torch"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(spec), str(tmp_path), ",".join(stages)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    deadline = time.monotonic() + 300  # a hang fails here, not in CI's global timeout
    while (done := os.wait4(proc.pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{name}: still running after 300 s")
        time.sleep(0.05)
    _, status, usage = done
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out.decode().splitlines()[-1])
    for stage, (code, cpu, traceback) in report["stages"].items():
        assert code in (0, 1) and not traceback, (stage, code)
        assert cpu < MAX_CPU_S, f"{name}: {stage} took {cpu:.1f} s of CPU"
    peak_mb = (report["peak_kb"] or usage.ru_maxrss) / 1024  # ru_maxrss where there is no /proc
    assert peak_mb < MAX_RSS_MB, f"{name}: {peak_mb:.0f} MB"


# --- item 9: numbers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("0.0", 0.0), ("0e999999999999", 0.0), ("1e18", 1e18), ("1000000000000000000", 10**18),
     ("1e-300", 1e-300), ("34.8K", 34_800), ("1.23456K", 1234.56), ("2E3", 2000.0)],
)
def test_numbers_at_the_bounds(text: str, value: float) -> None:
    got = parse_number(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    "text", ["1e400K", "1e999999999K", "1e999990K", "1e4300K", "9" * 5000, "1000000000000000001", "1e-999", "1e-301", "0.9e-300"]
)
def test_numbers_past_the_bounds_are_refused_in_microseconds(text: str) -> None:
    start = time.perf_counter()
    prog, diags = parse(f"input 10\nfc {text}\n")
    assert time.perf_counter() - start < 0.5
    assert prog is None and [(d.code, d.span.line, d.span.column) for d in diags] == [("E121", 2, 4)]  # type: ignore[union-attr]


def test_arithmetic_is_bounded_like_a_written_number() -> None:
    r = compile_text("block B(K) { fc K*K*K*K*K }\ninput 8\nB K=100000\n", "t.arch")
    assert [(d.code, d.message) for d in r.errors] == [("E120", "this arithmetic goes past 1e18")]
    r = compile_text("input 8\nfc 3000000000\n", "t.arch")
    assert [d.code for d in r.errors] == ["E103"] and "at most 2^31-1" in r.errors[0].message


def test_a_flat_chain_of_100000_terms_is_not_nesting() -> None:
    r = compile_text("input 10\nfc " + "+".join(["1"] * 100_000) + "\n", "t.arch")
    assert r.network is not None and r.network.output_shape == (100_000,), r.render()


def test_a_shape_written_as_a_float_says_so() -> None:
    (d,) = compile_text("input 10\nrelu -> 1e3\n", "t.arch").errors
    assert d.code == "E121" and "-1" not in d.message and d.hint is not None and "write 1000" in d.hint


# --- item 20: assertions that always or never hold ---------------------------------------------------
@pytest.mark.parametrize("line", ["expect params = 1e-999", "expect params = 1e999 ± 1e999", "expect params = 0 ± 1e400K"])
def test_assertions_beyond_the_bounds_are_refused(line: str) -> None:
    r = compile_text(f"input 10\nfc 2\n{line}\n", "t.arch")
    assert r.errors and {d.code for d in r.errors} == {"E121"}


# --- item 10: the elaboration budget ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("input 10\nrepeat 1000000000 { }\n", 2),
        ("input 10\nrepeat 1999999 { relu }\n", 2),
        ("block B0 { relu }\n" + "".join(f"block B{i} {{ B{i-1}; B{i-1} }}\n" for i in range(1, 23)) + "input 8\nB22\n", 25),
        ("block B { repeat 1000000 { relu } }\ninput 8\nrelu\nB\n", 4),  # the call is one layer too many
    ],
)
def test_the_statement_that_crosses_max_layers_is_refused_before_anything_is_made(text: str, line: int) -> None:
    start = time.perf_counter()
    r = compile_text(text, "t.arch")
    assert time.perf_counter() - start < 1.0  # milliseconds, plus what the statements before it made
    (d,) = r.errors
    assert (d.code, d.span.line) == ("E140", line)  # type: ignore[union-attr]
    assert f"more than {DEFAULT_MAX_LAYERS:,} layers" in d.message and "--max-layers" in (d.hint or "")


def test_max_layers_is_exact_and_can_be_raised(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = "input 8\nrepeat 10 { relu }\nrepeat 5 { }\n"  # 10 layers and 5 empty copies: 15
    assert compile_text(text, "t.arch", max_layers=15).network is not None
    assert [d.code for d in compile_text(text, "t.arch", max_layers=14).errors] == ["E140"]
    spec = tmp_path / "s.arch"
    spec.write_text(text)
    assert main(["check", str(spec), "--max-layers", "14"]) == 1
    assert main(["check", str(spec), "--max-layers", "15"]) == 0
    for command in (["summary"], ["graph"], ["compile", "-o", str(tmp_path / "m.py")]):
        assert main([*command, str(spec), "--max-layers", "14"]) == 1
    capsys.readouterr()


# --- item 11: depth -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("opener", "closer"), [("(", ")"), ("residual { ", " }"), ("repeat 1 { ", " }"), ("concat { branch { ", " } }")])
def test_nesting_past_the_limit_is_one_located_error(opener: str, closer: str) -> None:
    over = MAX_DEPTH + 1 if opener == "(" else (MAX_DEPTH + 2) // opener.count("{")
    inner = "1" if opener == "(" else "relu"
    text = f"input 8x8x3\n{'fc ' if opener == '(' else ''}{opener * over}{inner}{closer * over}\n"
    prog, diags = parse(text)
    assert prog is None and [d.code for d in diags] == ["E142"]
    ok = MAX_DEPTH if opener == "(" else MAX_DEPTH // opener.count("{")
    prog, diags = parse(f"input 8x8x3\n{'fc ' if opener == '(' else ''}{opener * ok}{inner}{closer * ok}\n")
    assert prog is not None, diags


def test_a_chain_of_block_calls_counts_as_nesting() -> None:
    r = compile_text(_chain(20_000), "t.arch")
    (d,) = r.errors
    assert (d.code, d.span.line) == ("E142", 20_003)  # type: ignore[union-attr]  # the call at the top
    assert compile_text(_chain(MAX_DEPTH - 1), "t.arch").network is not None


# --- item 12: costs that grew faster than the input -----------------------------------------------------
def test_syntax_errors_are_recovered_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import archc.frontend.parser as P

    starts = []
    real = P._Recovery.__init__

    def counting(self: P._Recovery, text: str) -> None:
        starts.append(text)
        real(self, text)

    monkeypatch.setattr(P._Recovery, "__init__", counting)
    text = "input 8x8x3\n" + "".join("relu ->\n" if i % 10 == 0 else "relu\n" for i in range(270))
    prog, diags = parse(text)
    assert prog is None and len(diags) == 27 and len(starts) == 1
    assert [d.span.line for d in diags] == [2 + 10 * i for i in range(27)]  # type: ignore[union-attr]


def test_a_file_of_garbage_stops_at_the_cap_with_a_note() -> None:
    prog, diags = parse("input 3\n" + "@; " * 10_000)
    assert prog is None and len(diags) == MAX_SHOWN
    assert diags[-1].notes and "stops reading" in diags[-1].notes[0].message


def test_diagnostics_are_capped_per_file_in_every_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "s.arch"
    spec.write_text("input 3\n" + "bogus\n" * 120)
    assert main(["check", str(spec), "--format", "json"]) == 1
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    assert len(entry["diagnostics"]) == len(entry["rendered"]) == MAX_SHOWN and entry["omitted"] == 70
    assert main(["check", str(spec), "--format", "github"]) == 1
    out = capsys.readouterr().out
    assert out.count("::error ") == MAX_SHOWN and "::notice file=" in out and "... and 70 more" in out


def test_a_long_line_is_quoted_around_the_caret() -> None:
    text = "input 8x8x3\n" + "relu; " * 50_000 + "foo ->\n"
    out = compile_text(text, "t.arch").render()
    assert len(out) < 2_000 and "..." in out
    head, src, caret = out.splitlines()[:3]
    assert head.startswith("t.arch:2:300007: error[E001]") and src.endswith("foo ->")
    assert caret.index("^") == len(src)  # still where the shape is missing, past the `->`


def test_did_you_mean_over_many_names_is_bounded() -> None:
    names = Names(f"l{i}.{j}.relu1" for i in range(300) for j in range(1000))  # indexed once per spec
    start = time.perf_counter()
    hints = [did_you_mean_path(f"l1.{k}.relu2", names) for k in range(50)]
    assert time.perf_counter() - start < 5  # 50 failing expects: were minutes each
    assert hints[5] == "did you mean 'l1.5.relu1'?"


def test_the_w001_padding_hint_is_closed_form() -> None:
    from archc.kinds.windows import nearest_padding

    for n in range(1, 24):
        for eff in range(1, 10):
            for s in range(1, 8):
                for begin in range(6):
                    for most in range(10):
                        valid = [p for p in range(most + 1) if (n + 2 * p - eff) % s == 0]
                        want = min(valid, key=lambda p: (abs(p - begin), p)) if valid else None
                        assert nearest_padding(n, eff, s, begin, most) == want
    start = time.perf_counter()  # the hint scanned every padding up to the input size
    r = compile_text("input 2147483000x1x1\nconv K=1 F=3x1 S=3x1\n", "t.arch")
    assert time.perf_counter() - start < 1 and [d.code for d in r.warnings] == ["W001"]


def test_diff_of_long_repetitive_specs_is_linear() -> None:
    """difflib's LCS visits every pair of equal layers: 20,000 flat `relu`s against the same with
    one changed took minutes of CPU; the head, the tail and a budget keep it linear."""
    from archc.tools.diff import CHANGED, SAME, diff

    n = 20_000
    a = compile_text("input 8x8x3\n" + "relu\n" * n, "a.arch").network
    b = compile_text("input 8x8x3\n" + "relu\n" * (n // 2) + "tanh\n" + "relu\n" * (n // 2), "b.arch").network
    c = compile_text("input 8x8x3\n" + "tanh\nrelu\n" * (n // 2), "c.arch").network
    assert a is not None and b is not None and c is not None
    start = time.process_time()
    d = diff(a, b)
    assert [r.status for r in d.rows].count(SAME) == n and [r.kind for r in d.rows if r.status != SAME] == [
        (None, "tanh")
    ]
    d = diff(a, c)  # no common head, 10,000 x 20,000 equal pairs: paired position by position
    assert len(d.rows) == n and [r.status for r in d.rows].count(CHANGED) == n // 2
    assert time.process_time() - start < MAX_CPU_S


# --- item 16: a warning inside a repeat ------------------------------------------------------------
def test_a_warning_inside_a_repeat_keeps_every_copy() -> None:
    r = compile_text("input 8x8x3\nlayer: repeat 3 { forward: conv K=3 F=3 P=1 }\nexpect layer.2.forward.params = 84\n", "t.arch")
    assert r.network is not None, r.render()
    assert r.network.params == 252 and [d.code for d in r.warnings] == ["W002"]
    r = compile_text("block __B { relu }\ninput 8x8x3\nrepeat 3 { __B }\nrepeat 2 { b: __B }\n", "t.arch")
    assert r.network is not None and len(r.network.layers) == 5


# --- item 21: one definition of a line ------------------------------------------------------------------
@pytest.mark.parametrize("sep", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"])
def test_the_line_under_a_message_is_the_lexers(sep: str) -> None:
    r = compile_text(f"input 8x8x3 # a{sep}b\nrelu\nmaxpol F=2\n", "t.arch")
    (d,) = r.errors
    assert d.span is not None and d.span.line == 3
    assert "  3 | maxpol F=2" in r.render()


# --- item 1: links named on the command line ----------------------------------------------------------
def test_a_link_named_on_the_command_line_stays_in_the_working_tree(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config").write_text("AUTHORIZATION: basic c2VjcmV0\n")
    (repo / "specs").mkdir()
    (repo / "specs" / "model.arch").symlink_to("../.git/config")
    (tmp_path / "outside.arch").write_text("SECRET outside\n")
    (repo / "specs" / "out.arch").symlink_to(tmp_path / "outside.arch")
    (repo / "specs" / "ok.arch").symlink_to("../real.arch")
    (repo / "real.arch").write_text("input 8\nfc 2\n")
    monkeypatch.chdir(repo)
    for command in (["check"], ["summary"], ["fmt", "--check"]):
        for link in ("specs/model.arch", "specs/out.arch"):
            assert main([*command, link]) == 1
            out, err = capsys.readouterr()
            assert "c2VjcmV0" not in out + err and "SECRET" not in out + err and "not followed" in out + err
    assert main(["check", "specs/ok.arch"]) == 0
    capsys.readouterr()


# --- item 22: messages ------------------------------------------------------------------------------
def test_a_key_without_a_doc_says_its_type() -> None:
    (d,) = compile_text("input 8x8x3\nlrn alpha=true\n", "t.arch").errors
    assert d.hint == "alpha is the scale of the window's mean square (default alpha=0.0001)"  # issue 10: every key has a doc
