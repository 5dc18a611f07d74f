"""Blocks recovered from a model's scoped names: `inception_3a/1x1` ... as `inception_3a: Inception ...`.

Caffe has no modules, but its model zoo names layers `scope/layer`: every layer
of GoogLeNet's first Inception module is `inception_3a/...`, of SqueezeNet's
Fire modules `fire2/...`. Consecutive top-level statements whose layers all
share one scope become that scope's statements; scopes whose statements are
the same but for the integers of their keys (`K=64` here, `K=128` there) are
calls of one block, each integer that differs between calls a parameter (`K`,
`K1`, `K2`, ...; two that are equal in every call are one parameter), every
other one written in the block. A scope used once stays as it was: a block is
written only where it is repeated. Inside a block the layers keep their
names less the scope (`inception_3a/1x1` -> `inception_3a._1x1`), and the
call asserts the scope's output shape.

>>> from archc.importers.structure import Layer, render
>>> body = [Layer("f1_sq", "conv K=16 F=1"), Layer("f1_r", "relu", shape="8x8x16"),
...         Layer("f2_sq", "conv K=32 F=1"), Layer("f2_r", "relu", shape="8x8x32")]
>>> scopes = {"f1_sq": ("fire1", "sq"), "f1_r": ("fire1", "r"), "f2_sq": ("fire2", "sq"), "f2_r": ("fire2", "r")}
>>> blocks, body = recover_blocks(body, scopes.get, set())
>>> print("".join(blocks) + render(body), end="")
block Fire(K) {
  sq: conv K=K F=1
  r: relu
}
fire1: Fire K=16 -> 8x8x16
fire2: Fire K=32 -> 8x8x32
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from archc.importers.common import spec_name
from archc.importers.structure import Call, Layer, Merge, Residual, Statement, render

# an integer a block may take as a parameter: a key's value (`K=64`), or fc's width
_SLOT = re.compile(r"(?<![\w.])([A-Z])=(\d+)(?![\dx.])|(?<=\bfc )(\d+)(?![\dx.])")


@dataclass
class _Scope:
    name: str  # the scope as the model writes it (`inception_3a`)
    original: list[Statement]  # the statements as they were
    arrow: str  # the scope's output shape, for its call
    skeleton: str = ""  # the statements' text with every slot as {}
    values: tuple[int, ...] = ()
    keys: tuple[str, ...] = ()


def recover_blocks(
    statements: list[Statement], scope_of: Callable[[str], tuple[str, str] | None], taken: set[str]
) -> tuple[list[str], list[Statement]]:
    """Block definitions, and the top-level statements with the repeated scopes as their calls.

    `scope_of(label)`: a layer's scope and its name in there (`("inception_3a", "_1x1")`),
    or None for a layer outside any. `taken`: names the top level already uses.
    """
    runs = _runs(statements, scope_of)
    scopes = [r for r in runs if isinstance(r, _Scope)]
    by_skeleton: dict[str, list[_Scope]] = {}
    for scope in scopes:
        by_skeleton.setdefault(scope.skeleton, []).append(scope)
    blocks: list[str] = []
    calls: dict[int, Call] = {}
    used = set(taken)
    for skeleton, group in by_skeleton.items():
        if len(group) < 2:
            continue
        name = _block_name(group[0].name, used)
        params, args = _parameters(group)
        text = skeleton.format(*params)
        blocks.append(f"block {name}({', '.join(dict.fromkeys(p for p in params if not p.isdigit()))}) {{\n{_indent(text)}}}\n")
        for scope, arguments in zip(group, args, strict=True):
            label = _fresh(scope.name, used)
            calls[id(scope)] = Call(label, name, arguments, scope.arrow)
    out: list[Statement] = []
    for run in runs:
        if isinstance(run, _Scope):
            out.extend([calls[id(run)]] if id(run) in calls else run.original)
        else:
            out.append(run)
    return blocks, out


def _runs(statements: list[Statement], scope_of: Callable[[str], tuple[str, str] | None]) -> list[Statement | _Scope]:
    """The statements, with each maximal run of one scope's statements gathered."""
    out: list[Statement | _Scope] = []
    i = 0
    while i < len(statements):
        scope = _scope(statements[i], scope_of)
        j = i + 1
        while scope is not None and j < len(statements) and _scope(statements[j], scope_of) == scope:
            j += 1
        run = statements[i:j]
        inner = [_renamed(st, scope_of) for st in run]
        names = [n for n in _labels(inner)]
        if scope is None or len(names) < 2 or len(set(names)) < len(names):
            out.extend(run)  # no scope, one layer alone, or names that would collide in it
        else:
            found = _Scope(scope, run, run[-1].shape)
            text = render(inner)
            slots = list(_SLOT.finditer(text))
            found.values = tuple(int(m.group(2) or m.group(3)) for m in slots)
            found.keys = tuple(m.group(1) or "N" for m in slots)
            found.skeleton = _skeleton(text, slots)
            out.append(found)
        i = j
    return out


def _skeleton(text: str, slots: list[re.Match[str]]) -> str:
    parts, last = [], 0
    for m in slots:
        start, end = (m.start(2), m.end(2)) if m.group(2) else (m.start(3), m.end(3))
        parts.append(text[last:start].replace("{", "{{").replace("}", "}}") + "{}")
        last = end
    parts.append(text[last:].replace("{", "{{").replace("}", "}}"))
    return "".join(parts)


def _parameters(group: list[_Scope]) -> tuple[list[str], list[list[tuple[str, int]]]]:
    """Each slot's text in the block (a parameter, or the value all calls share), and each call's arguments."""
    columns = list(zip(*(s.values for s in group), strict=True))
    keys = group[0].keys
    varying: dict[tuple[int, ...], int] = {}  # a column of values -> the first slot that has it
    for i, column in enumerate(columns):
        if len(set(column)) > 1:
            varying.setdefault(column, i)
    per_key: dict[str, list[int]] = {}
    for first in varying.values():
        per_key.setdefault(keys[first], []).append(first)
    names: dict[int, str] = {}
    for key, firsts in per_key.items():
        for n, first in enumerate(firsts, start=1):
            names[first] = key if len(firsts) == 1 else f"{key}{n}"
    params = [names[varying[c]] if c in varying else str(c[0]) for c in columns]
    order = sorted(varying.values())
    args = [[(names[i], columns[i][k]) for i in order] for k in range(len(group))]
    return params, args


def _scope(st: Statement, scope_of: Callable[[str], tuple[str, str] | None]) -> str | None:
    scopes = {found[0] if found else None for found in (scope_of(label) for label in _labels([st]))}
    return scopes.pop() if len(scopes) == 1 else None


def _labels(statements: list[Statement]) -> Iterator[str]:
    for st in statements:
        if st.name:
            yield st.name
        if isinstance(st, Merge):
            for branch in st.branches:
                yield from _labels(branch)
        elif isinstance(st, Residual):
            yield from _labels(st.body)
            yield from _labels(st.shortcut)


def _renamed(st: Statement, scope_of: Callable[[str], tuple[str, str] | None]) -> Statement:
    """The statement with its names inside the scope, and no shapes (they differ between calls)."""
    found = scope_of(st.name) if st.name else None
    name = spec_name(found[1]) if found else st.name
    if isinstance(st, Layer):
        return Layer(name, st.text)
    if isinstance(st, Merge):
        return Merge(st.kind, name, [[_renamed(s, scope_of) for s in b] for b in st.branches])
    if isinstance(st, Residual):
        return Residual(name, [_renamed(s, scope_of) for s in st.body], [_renamed(s, scope_of) for s in st.shortcut])
    return replace(st, name=name, arrow="")


def _block_name(scope: str, used: set[str]) -> str:
    """`inception_3a` -> `Inception`, `fire2` -> `Fire`: the scope less its number, capitalised."""
    base = re.sub(r"[_-]?\d+[a-z]?\d*$", "", scope)
    base = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", base) if part)
    if not base or not base[0].isalpha():
        base = "Block"
    return _fresh(base, used)


def _fresh(name: str, used: set[str]) -> str:
    name = spec_name(name)
    found, n = name, 2
    while found in used:
        found, n = f"{name}_{n}", n + 1
    used.add(found)
    return found


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" if line else "\n" for line in text.splitlines())
