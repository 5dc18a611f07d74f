"""Small symbolic expressions for the code generators: spec arithmetic as Python.

A block's `K=E*4` becomes the Python text `E * 4` in the generated class. The
generator builds these expressions (from the spec's own, as the IR records
them, and by substituting a call's arguments into a callee's), evaluates
them against every concrete instance to check them, and renders them.
Nothing here is ever `eval`ed; the only names are Python identifiers the
generator chose, and the only constants are ints, floats, bools, `"same"`
and tuples of those.

>>> e = Bin("//", Bin("+", Var("SQ"), Const(1)), Const(2))
>>> render(e), evaluate(e, {"SQ": 15})
('(SQ + 1) // 2', 8)
>>> render(subst(Bin("*", Var("K"), Const(4)), {"K": Const(64)}))
'256'
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archc.ir.written import Expr, Name, Negate
from archc.kinds import CHOICE_WORDS

_SAFE_STRING = re.compile(r"[A-Za-z_]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Bin:
    op: str  # + - * //
    left: Sym
    right: Sym


@dataclass(frozen=True)
class Neg:
    operand: Sym


Sym = Const | Var | Bin | Neg

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "//": lambda a, b: a // b,
}
_PREC = {"+": 1, "-": 1, "*": 2, "//": 2}
LITERAL_WORDS = {"true": True, "false": False, "True": True, "False": False, "same": "same"}
LITERAL_WORDS.update({word: word for word in CHOICE_WORDS})  # `mode=nearest`: the elaborator's words too


class NotSymbolic(Exception):
    """The expression cannot be written (or evaluated) as a Python expression here."""


MAX_DEPTH = 100  # operators inside each other in a written expression (CPython compiles some thousands)


def from_ir(expr: Expr, names: Mapping[str, str]) -> Sym:
    """An expression as the spec wrote it, in Python names (`names`: spec parameter -> Python name).

    Iterative; NotSymbolic past `MAX_DEPTH` nested operators: `fc 1+1+...` of
    100,000 terms is a valid spec, but as Python source it would not compile
    ("maximum recursion depth exceeded during compilation"), so the generator
    writes its value instead.

    >>> from archc.ir.written import Arith, Name
    >>> render(from_ir(Arith(op="//", left=Arith(op="+", left=Name(name="SQ"), right=1), right=2), {"SQ": "sq"}))
    '(sq + 1) // 2'
    """
    todo: list[tuple[Expr, int, bool]] = [(expr, 0, False)]
    done: list[Sym] = []
    while todo:
        e, depth, operands_done = todo.pop()
        if depth > MAX_DEPTH:
            raise NotSymbolic(f"more than {MAX_DEPTH} operators inside each other")
        if isinstance(e, tuple):
            done.append(Const(tuple(e)))
        elif isinstance(e, (int, float)):
            done.append(Const(e))
        elif isinstance(e, Name):
            if e.name in names:  # a parameter shadows the literal words, as in elaboration
                done.append(Var(names[e.name]))
            elif e.name in LITERAL_WORDS:
                done.append(Const(LITERAL_WORDS[e.name]))
            else:
                raise NotSymbolic(f"undefined name {e.name!r}")
        elif isinstance(e, Negate):
            if operands_done:
                done.append(Neg(done.pop()))
            else:
                todo += [(e, depth, True), (e.operand, depth + 1, False)]
        elif e.op not in _OPS:  # '/' is rejected by elaboration; never emit it
            raise NotSymbolic(f"operator {e.op!r}")
        elif operands_done:
            right = done.pop()
            done.append(Bin(e.op, done.pop(), right))
        else:
            todo += [(e, depth, True), (e.right, depth + 1, False), (e.left, depth + 1, False)]
    return done[0]


def depth(sym: Sym) -> int:
    """How many operators `sym` nests (iteratively)."""
    deepest = 0
    todo: list[tuple[Sym, int]] = [(sym, 0)]
    while todo:
        s, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(s, Neg):
            todo.append((s.operand, d + 1))
        elif isinstance(s, Bin):
            todo += [(s.left, d + 1), (s.right, d + 1)]
    return deepest


def _bounded(sym: Sym) -> Sym:
    if depth(sym) > MAX_DEPTH:
        raise NotSymbolic(f"more than {MAX_DEPTH} operators inside each other")
    return sym


def evaluate(sym: Sym, env: Mapping[str, Any]) -> Any:
    """The value of `sym` with Python's semantics; NotSymbolic when it has none."""
    if isinstance(sym, Const):
        return sym.value
    if isinstance(sym, Var):
        if sym.name not in env:
            raise NotSymbolic(f"unbound {sym.name}")
        return env[sym.name]
    try:
        if isinstance(sym, Neg):
            return -evaluate(sym.operand, env)
        return _OPS[sym.op](evaluate(sym.left, env), evaluate(sym.right, env))
    except (TypeError, ZeroDivisionError) as exc:
        raise NotSymbolic(str(exc)) from exc


def subst(sym: Sym, mapping: Mapping[str, Sym]) -> Sym:
    """Replace variables, folding the parts that become constant (`64 * 4` -> `256`).

    An unmapped variable raises NotSymbolic: the result must be in the caller's names.
    """
    if isinstance(sym, Const):
        return sym
    if isinstance(sym, Var):
        if sym.name not in mapping:
            raise NotSymbolic(f"unbound {sym.name}")
        return mapping[sym.name]
    out: Sym
    if isinstance(sym, Neg):
        out = Neg(subst(sym.operand, mapping))
    else:
        out = Bin(sym.op, subst(sym.left, mapping), subst(sym.right, mapping))
    return _bounded(_fold(out))


def _fold(sym: Sym) -> Sym:
    if isinstance(sym, Neg) and isinstance(sym.operand, Const):
        return Const(evaluate(sym, {}))
    if isinstance(sym, Bin) and isinstance(sym.left, Const) and isinstance(sym.right, Const):
        try:
            return Const(evaluate(sym, {}))
        except NotSymbolic:
            return sym
    return sym


def add(terms: list[Sym]) -> Sym:
    """The sum of channel counts, folded where constant (a concat's channels); NotSymbolic past MAX_DEPTH."""
    total = terms[0]
    for t in terms[1:]:
        total = _fold(Bin("+", total, t))
    return _bounded(total)


def render(sym: Sym) -> str:
    """Python source for `sym`, with PEP 8 spacing and only the parentheses it needs."""
    if isinstance(sym, Const):
        return literal(sym.value)
    if isinstance(sym, Var):
        return identifier(sym.name)
    if isinstance(sym, Neg):
        inner = render(sym.operand)
        return f"-{inner}" if isinstance(sym.operand, (Const, Var)) else f"-({inner})"
    prec = _PREC[sym.op]
    left = render(sym.left)
    right = render(sym.right)
    if isinstance(sym.left, Bin) and _PREC[sym.left.op] < prec:
        left = f"({left})"
    if isinstance(sym.right, Bin):
        rprec = _PREC[sym.right.op]
        # a - (b + c), a // (b * c): an equal precedence on the right needs them too,
        # except for the associative a + (b + c) and a * (b * c)
        if rprec < prec or (rprec == prec and not (sym.op == sym.right.op and sym.op in "+*")):
            right = f"({right})"
    return f"{left} {sym.op} {right}"


def literal(value: Any, compact: bool = True) -> str:
    """A constant as Python source: ints and floats via repr, a pair `(3, 3)` as `3`
    (unless not `compact`: a tuple someone indexes stays a tuple).

    >>> literal((3, 3)), literal((3, 5)), literal(1e-05), literal(True), literal("same")
    ('3', '(3, 5)', '1e-05', 'True', '"same"')
    """
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f'float("{value}")'
        return repr(value)
    if isinstance(value, str) and _SAFE_STRING.fullmatch(value):
        return f'"{value}"'
    if isinstance(value, tuple):
        if compact and value and all(same(v, value[0]) for v in value):
            return literal(value[0])  # torch takes one int for every side
        if len(value) == 1:
            return f"({literal(value[0], compact)},)"
        return "(" + ", ".join(literal(v, compact) for v in value) + ")"
    raise NotSymbolic(f"no Python literal for {value!r}")


def identifier(name: str) -> str:
    """`name`, checked to be a plain ASCII Python identifier (never spec text to inject)."""
    if not _IDENT.fullmatch(name) or keyword.iskeyword(name):
        raise NotSymbolic(f"{name!r} is not a Python identifier")
    return name


def same(a: Any, b: Any) -> bool:
    """Equal with equal types (`True` is not `1`, `3` is not `3.0`), elementwise for tuples."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def variables(sym: Sym) -> set[str]:
    if isinstance(sym, Var):
        return {sym.name}
    if isinstance(sym, Neg):
        return variables(sym.operand)
    if isinstance(sym, Bin):
        return variables(sym.left) | variables(sym.right)
    return set()
