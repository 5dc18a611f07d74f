"""Property tests: random valid stacks compile with consistent totals; garbage never crashes;
and the fuzzer of issue 12: specs from the grammar and mutated zoo specs through every stage.

The shape oracle here is written from LANGUAGE.md's formula, independently of
`archc.kinds`, so a regression in either shows up as a disagreement.

The fuzzer (`test_grammar_specs_through_every_stage`, `test_mutated_zoo_specs_through_every_stage`)
draws specs from the grammar, with every layer kind and key of the registry
(so a new kind is fuzzed the day it lands), blocks with defaults in any
order and hostile names, bodies, merges, `expect`s, extreme numbers and
odd line breaks; and mutates the specs of `specs/`. Each goes through
check (text and JSON), summary (--rf --explain as a table, markdown or
CSV; --json), fmt (round trip and idempotence), graph (every --rankdir), diff
(with itself and both ways with another network), PyTorch source (compiled; built and run
when the network is small) and ONNX lowering (checked by onnx's checker,
when small). An exception that is not archc's own (`ArchError`), an exit
code 3, a traceback or a stage over `STAGE_S` seconds fails. CI runs
`FUZZ_EXAMPLES` grammar specs and 2/5 as many mutated ones (2,100 specs,
about four minutes on 2 cores, the same specs each run); the long profile,
which explores new specs each run, is
`ARCHC_FUZZ_EXAMPLES=25000 pytest tests/test_fuzz.py -k every_stage`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.api import Network, compile_text
from archc.cli import main
from archc.diagnostics import ArchError, render
from archc.ir import INPUT, Layout
from archc.kinds import KINDS, USER_KINDS, KeyType

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAD = re.compile(r"^t\.arch:\d+:\d+: (error|warning)\[[EW]\d{3}\]: ", re.M)


def out_side(n: int, f: int, s: int, p: int, d: int, ceil: bool) -> int:
    """floor((n+2p-d(f-1)-1)/s)+1, or PyTorch's ceil mode (the last window starts inside)."""
    span = n + 2 * p - d * (f - 1) - 1
    if not ceil:
        return 0 if span < 0 else span // s + 1
    # ceil mode: a window hanging past the input still counts when it starts
    # inside it (torch: MaxPool2d(4, 2, 1, ceil_mode=True) on 1x1 gives 1x1)
    out = -(-span // s) + 1
    if (out - 1) * s >= n + p:
        out -= 1
    return max(out, 0)


@st.composite
def stacks(draw: st.DrawFn) -> tuple[str, list[tuple[int, int, int] | None], int, int]:
    """A spec of convs and pools; the expected shape after each layer (None once too small)."""
    h, w, c = draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(1, 8))
    lines = [f"input {h}x{w}x{c}"]
    shapes: list[tuple[int, int, int] | None] = []
    weights = macs = 0
    alive = True
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "maxpool", "avgpool", "relu", "batchnorm"]))
        if kind == "conv":
            g = draw(st.sampled_from([g for g in (1, 2, 4) if c % g == 0]))
            k = g * draw(st.integers(1, 4))
            f, s, p, d = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(0, 2)), draw(st.integers(1, 2))
            bias = draw(st.booleans())
            lines.append(f"conv K={k} F={f} S={s} P={p} D={d} G={g}" + ("" if bias else " bias=false"))
            oh, ow = out_side(h, f, s, p, d, False), out_side(w, f, s, p, d, False)
            if alive and oh >= 1 and ow >= 1:
                weights += f * f * (c // g) * k + (k if bias else 0)
                macs += oh * ow * k * f * f * (c // g)
            h, w, c = oh, ow, k
        elif kind in ("maxpool", "avgpool"):
            f = draw(st.integers(1, 4))
            s, p, ceil = draw(st.integers(1, 3)), draw(st.integers(0, f // 2)), draw(st.booleans())
            lines.append(f"{kind} F={f} S={s} P={p}" + (" ceil=true" if ceil else ""))
            h, w = out_side(h, f, s, p, 1, ceil), out_side(w, f, s, p, 1, ceil)
        elif kind == "batchnorm":
            lines.append("batchnorm")
            if alive:
                weights += 2 * c
        else:
            lines.append(kind)
        alive = alive and h >= 1 and w >= 1
        shapes.append((h, w, c) if alive else None)
    return "\n".join(lines) + "\n", shapes, weights, macs


@SETTINGS
@given(stacks())
def test_random_stacks(case: tuple[str, list[tuple[int, int, int] | None], int, int]) -> None:
    text, shapes, params, macs = case
    r = compile_text(text, "t.arch")
    if shapes[-1] is None:  # some layer's output is smaller than 1: exactly one error, located
        assert r.network is None
        assert [d.code for d in r.errors] == ["E200"], r.render()
        first_bad = shapes.index(None)
        assert r.errors[0].span is not None and r.errors[0].span.line == first_bad + 2
        return
    assert r.network is not None, r.render()
    net = r.network
    assert [layer.output for layer in net.layers] == shapes
    assert net.params == params == sum(layer.params for layer in net.layers)
    assert net.macs == macs == sum(layer.macs for layer in net.layers)
    assert net.weights + net.biases == net.params
    for warning in r.warnings:
        assert warning.code == "W001"


# --- garbage -------------------------------------------------------------------------------------
WORDS = [
    "input", "network", "conv", "maxpool", "avgpool", "fc", "relu", "block", "B", "repeat", "residual",
    "shortcut", "concat", "branch", "expect", "params", "output", "conv1.params", "layer1.0.conv1",
    "K", "F", "S", "P", "G", "D", "same", "true", "false", "=", "==", "<", ">=", "->", "±", "+-", "%",
    "+", "-", "*", "//", "/", "(", ")", ",", ":", ";", "{", "}", "\n", "\n", "\n", " ",
    "0", "1", "3", "96", "4_096", "0.5", "1e-4", "34.8K", "27.55M", "3x3", "227x227x3", "55x55x96",
    "x", "#", "@", "é", "\t", "\r\n",
]


def check_no_crash(text: str) -> None:
    r = compile_text(text, "t.arch")  # must not raise
    rendered = r.render()
    assert "Traceback" not in rendered
    if r.network is None:
        assert r.errors
    n_lines = max(1, len(text.splitlines()))
    for d in r.diagnostics:
        assert d.span is not None, d
        assert 1 <= d.span.line <= n_lines + 1 and d.span.column >= 1, (d, text)
    assert len(HEAD.findall(rendered)) == min(len(r.diagnostics), 50)


@SETTINGS
@given(st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join))
def test_token_soup_never_crashes(text: str) -> None:
    check_no_crash(text)


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_never_crashes(text: str) -> None:
    check_no_crash(text)


@SETTINGS
@given(
    st.lists(
        st.sampled_from(
            [
                "input 16x16x3", "input 10", "conv K=4 F=3", "conv K=4 F=3 P=same S=2", "maxpool F=2",
                "relu", "fc 10", "flatten", "globalavgpool", "batchnorm", "residual { relu }",
                "residual { conv K=4 F=1 }", "concat { branch { relu } branch { conv K=2 F=1 } }",
                "repeat 2 { relu }", "b: B K=2", "B K=3", "block B(K) { conv K=K F=1 }", "expect params < 1M",
                "expect output = 10", "expect conv1.params = 112", "c: relu", "c: relu", "}", "{",
            ]
        ),
        max_size=12,
    ).map("\n".join)
)
def test_statement_soup_never_crashes(text: str) -> None:
    check_no_crash(text)


def test_render_is_total() -> None:
    # spans past the text (an empty file, a span on a missing line) still render
    r = compile_text("", "t.arch")
    assert HEAD.search(render(r.diagnostics, "t.arch", ""))


# --- the fuzzer: every stage, on specs from the grammar and mutated zoo specs ------------------------
FUZZ_EXAMPLES = int(os.environ.get("ARCHC_FUZZ_EXAMPLES", "1500"))  # grammar specs; mutated: 2/5 as many
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("ARCHC_FUZZ_EXAMPLES") is None,  # CI: the same specs each run; long runs explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
STAGE_S = 10.0  # wall seconds any one stage may take on a fuzzed spec
SMALL_PARAMS, SMALL_MACS = 2_000_000, 20_000_000  # built and run in PyTorch and ONNX below these
SMALL_ACTIVATIONS = 5_000_000  # output elements of every layer, at batch 1
SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.arch"))

NAMES = ["a", "b", "conv1", "x", "K", "forward", "__k", "__class__", "self", "in_channels", "torch", "nn", "int",
         "super", "B", "output", "input1", "_", "A_b", "Ab_", "layer", "r", "R", "class_", "relu1"]
EXTREME = ["0", "1", "2", "3", "-1", "0.5", "1e3", "1e-4", "2147483647", "2147483648", "1e18", "1e19", "1e400K",
           "1e-999", "1e999999999K", "9" * 30, "34.8K", "4_096", "1.5", "3x3", "2x1", "same", "true", "false"]
BREAKS = ["\n", "\n", "\n", "\r\n", ";", "\n\n", "  # c\n", " # \f\u2028\x85\r\n"]


_LAYOUTS = {1: "N", 2: "LxC", 3: "HxWxC", 4: "DxHxWxC"}
INPUTS = ["8x8x4", "8x8x4", "6x6x3", "7x5x2", "16", "10", "1x1x1", "12x4", "2x4x4x3"]  # LxC, DxHxWxC: when v2 inputs land


@st.composite
def values(draw: st.DrawFn, kind: str, key: str | None, params: list[str]) -> str:
    """A value for a key of `kind`: mostly of the key's type and small; sometimes a parameter,
    arithmetic on one, or an extreme number."""
    spec = KINDS.get(kind)
    found = spec.key(key) if spec is not None and key is not None else None
    key_type = found.type if found is not None else KeyType.POS_INT
    pick = draw(st.integers(0, 29))
    if pick == 0:
        return draw(st.sampled_from(EXTREME))
    if pick <= 3 and params:
        p = draw(st.sampled_from(params))
        return draw(st.sampled_from([p, f"{p}*2", f"({p}+1)//2", f"{p}+1", f"-{p}", f"{p}*{p}*{p}"]))
    if key_type is KeyType.BOOL:
        return draw(st.sampled_from(["true", "false"]))
    if key_type in (KeyType.FLOAT, KeyType.POS_FLOAT):
        return draw(st.sampled_from(["1e-5", "0.5", "2", "1e-3"]))
    if key_type is KeyType.PROB:
        return draw(st.sampled_from(["0", "0.1", "0.5"]))
    if key_type is KeyType.PAD:
        return draw(st.sampled_from(["0", "1", "same", "1x0"]))
    if key_type is KeyType.SIZES:
        return draw(st.sampled_from(["1", "1", "2", "3", "2x1", "1x3"]))
    return str(draw(st.integers(1, 8)))


class _Names:
    """Labels: mostly fresh (`n1`, `n2`...), sometimes from the hostile list (duplicates, `forward`, `__k`)."""

    def __init__(self) -> None:
        self.n = 0

    def label(self, draw: st.DrawFn) -> str:
        pick = draw(st.integers(0, 11))
        if pick == 0:
            return f"{draw(st.sampled_from(NAMES))}: "
        if pick <= 2:
            self.n += 1
            return f"n{self.n}: "
        return ""


@st.composite
def layer_line(draw: st.DrawFn, layout: str, params: list[str], blocks: list[tuple[str, list[str]]], names: _Names) -> str:
    label = names.label(draw)
    if blocks and draw(st.integers(0, 3)) == 0:  # a block call, by keyword (or by position)
        name, bparams = draw(st.sampled_from(blocks))
        if draw(st.integers(0, 5)) == 0:
            return f"{label}{name} {' '.join(draw(values('conv', 'K', params)) for _ in bparams)}".rstrip()
        given = [f"{p}={draw(values('conv', 'K', params))}" for p in bparams if draw(st.integers(0, 5)) > 0]
        return f"{label}{name} {' '.join(given)}".rstrip()
    # mostly a kind the input's layout takes, so that most specs get to the back-ends
    fitting = [k for k in USER_KINDS if any(str(lay) == layout for lay in KINDS[k].traits.layouts)] or list(USER_KINDS)
    kind = draw(st.sampled_from(fitting if draw(st.integers(0, 7)) else list(USER_KINDS)))
    spec = KINDS[kind]
    parts = [kind]
    if spec.positional is not None and draw(st.booleans()):
        parts.append(draw(values(kind, spec.positional, params)))
    for key in spec.keys:
        if key.name == spec.positional and len(parts) > 1:
            continue
        if key.required or draw(st.integers(0, 3)) == 0:
            parts.append(f"{key.name}={draw(values(kind, key.name, params))}")
    if draw(st.integers(0, 19)) == 0:
        parts.append(f"-> {draw(st.sampled_from(['8x8x4', '10', '1e3', '2x2x2x2']))}")
    return label + " ".join(parts)


@st.composite
def body(
    draw: st.DrawFn, depth: int, layout: str, params: list[str], blocks: list[tuple[str, list[str]]], names: _Names
) -> list[str]:
    lines: list[str] = []
    for _ in range(draw(st.integers(1 if depth == 0 else 0, 5 if depth == 0 else 3))):
        choice = draw(st.integers(0, 11)) if depth < 3 else 0
        if choice <= 7:
            lines.append(draw(layer_line(layout, params, blocks, names)))
            continue

        def inner() -> str:
            return " ; ".join(draw(body(depth + 1, layout, params, blocks, names)))

        label = names.label(draw)
        if choice == 8:
            count = draw(st.sampled_from(["0", "1", "2", "3", *(params[:1] or ["2"])]))
            lines.append(f"{label}repeat {count} {{ {inner()} }}")
        elif choice == 9:
            short = f" shortcut {{ {inner()} }}" if draw(st.booleans()) else ""
            lines.append(f"{label}residual {{ {inner()} }}{short}")
        else:
            merge = draw(st.sampled_from(["concat", "add", "multiply"]))
            branches = " ".join(f"branch {{ {inner()} }}" for _ in range(draw(st.integers(1, 3))))
            lines.append(f"{label}{merge} {{ {branches} }}")
    return lines


@st.composite
def grammar_specs(draw: st.DrawFn) -> str:
    """A spec of the v2 grammar: blocks (defaults in any order, hostile names), an input of any layout,
    layers of every kind, bodies, merges, `expect`s and odd line breaks."""
    names = _Names()
    shape = draw(st.sampled_from(INPUTS if draw(st.integers(0, 9)) == 0 else INPUTS[:7]))
    layout = _LAYOUTS[shape.count("x") + 1]
    out: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    between = [0]  # where a top-level statement may go: between block definitions
    for b in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["B", "Basic", "__Inner", "Fire", "K", "Net", "x"])) + str(b)
        bparams = draw(st.lists(st.sampled_from(["K", "S", "E", "__k", "__class__", "self", "in_channels", "x", "N"]), max_size=3, unique=True))
        sig = []
        for i, p in enumerate(bparams):
            default = draw(st.sampled_from(["", "", "=1", "=2", "=3", f"={bparams[0]}+1" if i else "=2"]))
            sig.append(p + default)
        out.append(f"block {name}({', '.join(sig)}) {{")
        out += [f"  {line}" for line in draw(body(1, layout, bparams, blocks, names))] or ["  relu"]
        out.append("}")
        blocks.append((name, bparams))
        between.append(len(out))
    out.insert(draw(st.sampled_from(between)), f"input {shape}")
    out += draw(body(0, layout, [], blocks, names))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        target = draw(st.sampled_from(["", "", "", "", "n1.", "n2.0.", "conv1."]))
        qty = draw(st.sampled_from(["params", "weights", "biases", "macs", "output", "params", "flops"][: 7 if draw(st.integers(0, 9)) == 0 else 6]))
        op = draw(st.sampled_from(["=", "<", "<=", ">", ">=", "=="]))
        value = draw(st.sampled_from(["0", "100", "1.5K", "8x8x4", "10", "28.82M", "1e9", "1e-999", "1e400K"][: 9 if draw(st.integers(0, 9)) == 0 else 7]))
        tol = draw(st.sampled_from(["", "", " ± 5%", " +- 10", " ± 1e999"][: 5 if draw(st.integers(0, 9)) == 0 else 4]))
        out.append(f"expect {target}{qty} {op} {value}{tol}")
    text = ""
    for line in out:
        text += line + draw(st.sampled_from(BREAKS))
    return text


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    """A spec of `specs/` with one to three mutations: extreme numbers, lines deleted, doubled or
    swapped, a smaller input, another kind, a line wrapped in a body, words inserted, a cut."""
    lines = draw(st.sampled_from(SPECS)).read_text(encoding="utf-8").split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.integers(0, 8))
        if op == 0:
            numbers = list(re.finditer(r"\b\d[\d_.]*[KMG]?\b", lines[i]))
            if numbers:
                m = draw(st.sampled_from(numbers))
                lines[i] = lines[i][: m.start()] + draw(st.sampled_from(EXTREME)) + lines[i][m.end() :]
        elif op == 1:
            del lines[i]
        elif op == 2:
            lines.insert(i, lines[i])
        elif op == 3:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 4:
            lines = [re.sub(r"^input \S+", f"input {draw(st.sampled_from(['32x32x3', '16x16x1', '64x64x3', '8']))}", ln) for ln in lines]
        elif op == 5:
            kinds = [k for k in USER_KINDS if re.search(rf"\b{k}\b", lines[i])]
            if kinds:
                lines[i] = re.sub(rf"\b{draw(st.sampled_from(kinds))}\b", draw(st.sampled_from(USER_KINDS)), lines[i], count=1)
        elif op == 6:
            lines[i] = f"{draw(st.sampled_from(['repeat 2', 'residual', 'r: repeat 1']))} {{ {lines[i].split('#')[0]} }}"
        elif op == 7:
            col = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:col] + draw(st.sampled_from(WORDS)) + lines[i][col:]
        if not lines:
            break
    text = "\n".join(lines)
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


@contextlib.contextmanager
def _stage(name: str) -> Iterator[None]:
    """One stage: archc's own errors are answers; any other exception, or more than STAGE_S, fails."""
    start = time.perf_counter()
    try:
        yield
    except ArchError:
        pass
    took = time.perf_counter() - start
    assert took < STAGE_S, f"{name} took {took:.1f} s"


def _cli(name: str, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with _stage(name), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    text = out.getvalue() + err.getvalue()
    assert code in (0, 1) and "Traceback" not in text and "internal error" not in text, (name, code, text[-2000:])
    return out.getvalue()


@functools.cache
def _other() -> Network:
    net = compile_text("input 8x8x3\nconv K=4 F=3\nrelu\nrepeat 2 { conv K=4 F=1 }\nfc 10\n", "other.arch").network
    assert net is not None
    return net


def _small(net: Network) -> bool:
    """Small enough to build and run here: `adaptiveavgpool 34.8K` has no params and no MACs,
    but its output alone is 38 GB."""
    return (
        net.params <= SMALL_PARAMS
        and net.macs <= SMALL_MACS
        and net.analysis.totals.activations <= SMALL_ACTIVATIONS
        and all(d <= 64 for d in net.input_shape)
    )


def exercise(text: str) -> None:
    """Every stage of archc on one spec (see the module's docstring).

    The CLI runs `check` and `summary` (files, argument parsing, the table);
    the other stages call the API on the same network, so a spec is
    compiled once per stage that needs the command line, not once per stage.
    """
    import json

    from archc.analysis.receptive import receptive_fields
    from archc.commands.check import as_json
    from archc.tools.diff import diff, diff_json
    from archc.tools.fmt import FormatError, format_text
    from archc.tools.graph import to_dot
    from archc.tools.summary import rows, summary_json

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp, "f.arch")
        spec.write_bytes(text.encode("utf-8"))
        json.loads(_cli("check --format json", "check", "--format", "json", str(spec)))
        table = ("table", "markdown", "csv")[len(text) % 3]  # each format, on a third of the specs
        _cli("summary", "summary", "--rf", "--explain", "--format", table, str(spec))
    with _stage("check"):
        r = compile_text(text, "f.arch")
        r.render()
        json.dumps(as_json([r], strict=True))
    with _stage("fmt"):
        try:
            once = format_text(text)
        except FormatError:
            once = None
        if once is not None:  # the round trip keeps the meaning (fmt checks it) and is a fixed point
            assert format_text(once) == once
    net = r.network
    if net is None:
        return
    with _stage("summary --json"):
        rf = receptive_fields(net.analysis)
        rows(net, explain=True)
        json.dumps(summary_json(net, rf))
    with _stage("graph"):
        to_dot(net)
        to_dot(net, collapse=True, rankdir=("LR", "BT", "RL")[len(text) % 3])
    with _stage("diff"):
        d = diff(net, net)
        json.dumps(diff_json(d))
        other = _other()  # the alignment of two different networks, both ways
        json.dumps(diff_json(diff(net, other)))
        json.dumps(diff_json(diff(other, net)))
    with _stage("PyTorch source"):
        source = net.torch_source()
        compile(source, "f.py", "exec")  # it always compiles as Python
    if not _small(net):
        return
    with _stage("PyTorch run"):
        _run_torch(net)
    with _stage("ONNX lowering"):
        import onnx

        onnx.checker.check_model(net.to_onnx(weights="zeros"))


def _run_torch(net: Network) -> None:
    import torch

    module = net.to_torch().eval()
    assert sum(p.numel() for p in module.parameters()) == net.params
    # as generated code holds them: a sequence may be held channels last, token ids are integers
    ids = net.graph.input_shape.layout is Layout.TOKENS
    x = torch.zeros(2, *net.analysis.physical(INPUT), dtype=torch.long if ids else torch.float32)
    with torch.no_grad():
        y = module(x)
    assert tuple(y.shape[1:]) == net.analysis.physical(net.graph.output)


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage() -> Iterator[None]:
    """The fuzzer leaves a heap of cycles (generated modules and classes, analyses frozen into
    the oldest generation): collected here, not inside the next module's timed tests."""
    yield
    import gc

    gc.collect()


@pytest.mark.slow
@FUZZ
@given(grammar_specs())
def test_grammar_specs_through_every_stage(text: str) -> None:
    exercise(text)


@pytest.mark.slow
@settings(FUZZ, max_examples=max(1, FUZZ_EXAMPLES * 2 // 5))  # each a zoo spec: larger, slower
@given(mutated_specs())
def test_mutated_zoo_specs_through_every_stage(text: str) -> None:
    exercise(text)
