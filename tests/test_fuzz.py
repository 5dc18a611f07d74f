"""Property tests: random valid stacks compile with consistent totals; garbage never crashes.

The shape oracle here is written from LANGUAGE.md's formula, independently of
`archc.kinds`, so a regression in either shows up as a disagreement.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.api import compile_text
from archc.diagnostics import render

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
