"""Expressions over block parameters -> values, and the error every elaboration step raises.

The elaborator (`archc.frontend.elaborate`) evaluates layer keys, block arguments and
defaults, and repeat counts here: integer arithmetic (`+ - * //`, unary `-`)
over numbers, shapes such as `3x3`, the words `true`, `false` and `same`, and
the words of keys that take one (`nearest`, `linear`, `none`, `tanh`).
"""

from __future__ import annotations

import math
from typing import Any

from archc.diagnostics import Diagnostic, did_you_mean, error
from archc.frontend import syntax as S
from archc.ir import Span
from archc.ir.written import Arith, Expr, Name, Negate, expr_text
from archc.kinds import CHOICE_WORDS
from archc.limits import MAX_NUMBER


class ElaborationError(Exception):
    """One elaboration error (or the several of one statement), carried as diagnostics.

    It lives here, in the module the elaborator's other modules build on, so
    that evaluating (here), naming (`archc.frontend.naming`) and building
    (`archc.frontend.elaborate`) raise one error, which the elaborator collects.
    """

    def __init__(self, diag: Diagnostic, *more: Diagnostic) -> None:
        super().__init__(diag.message)
        self.diag = diag
        self.diags = (diag, *more)  # a statement reports each of its independent errors


def fail(code: str, message: str, span: Span | None, hint: str | None = None) -> ElaborationError:
    return ElaborationError(error(code, message, span, hint))


# --- expressions -----------------------------------------------------------------------
LITERAL_WORDS: dict[str, Any] = {
    "true": True,
    "false": False,
    "True": True,
    "False": False,
    "same": "same",
    # the words of keys that take one (`mode=nearest`, `approx=tanh`): the key checks which it takes
    **{word: word for word in sorted(CHOICE_WORDS)},
}


def parameters_used(expr: S.Expr, env: dict[str, Any]) -> str | None:
    """`E=0.5`: the block parameters an expression read, for a hint on a bad value.

    >>> from archc.frontend.parser import parse
    >>> prog, _ = parse("conv K=E*4+SQ F=1")
    >>> parameters_used(prog.statements[0].keywords[0].value, {"E": 0.5, "SQ": 2, "X": 1})
    'E=0.5, SQ=2'
    """
    names: list[str] = []
    todo = [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, S.Ref) and e.name in env and e.name not in names:
            names.append(e.name)
        elif isinstance(e, S.BinOp):
            todo += [e.right, e.left]
        elif isinstance(e, S.Neg):
            todo.append(e.operand)
    return ", ".join(f"{n}={env[n]}" for n in sorted(names)) or None


def evaluate(expr: S.Expr, env: dict[str, Any]) -> Any:
    """Evaluate an expression over block parameters. Never `eval`.

    Iterative: `fc 1+1+...+1` of 100,000 terms is a chain as long as the line,
    not nesting, and must not exhaust the stack. Every value is bounded as a
    number written is (`archc.limits.MAX_NUMBER`, finite): `K*K*K*...` fails
    at the product that crosses 1e18 instead of building a million-digit int.

    >>> from archc.frontend.parser import parse
    >>> prog, _ = parse("fc (SQ+1)//2*4")
    >>> evaluate(prog.statements[0].positional[0], {"SQ": 16})
    32
    """
    todo: list[tuple[S.Expr, bool]] = [(expr, False)]
    values: list[Any] = []
    while todo:
        e, operands_done = todo.pop()
        if isinstance(e, S.BinOp):
            if not operands_done:
                todo += [(e, True), (e.right, False), (e.left, False)]  # the left operand first
                continue
            right = values.pop()
            left = values.pop()
            values.append(_binary(e, left, right))
        elif isinstance(e, S.Neg):
            if not operands_done:
                todo += [(e, True), (e.operand, False)]
                continue
            v = values.pop()
            _need_number(v, e.operand)
            values.append(-v)
        else:
            values.append(_leaf(e, env))
    return values[0]


def _leaf(expr: S.Expr, env: dict[str, Any]) -> Any:
    if isinstance(expr, S.Number):
        return expr.value
    if isinstance(expr, S.Dims):
        return expr.value
    assert isinstance(expr, S.Ref)
    if expr.name in env:
        return env[expr.name]
    if expr.name in LITERAL_WORDS:
        return LITERAL_WORDS[expr.name]
    raise undefined(expr, env)


def _binary(expr: S.BinOp, left: Any, right: Any) -> Any:
    _need_number(left, expr.left)
    _need_number(right, expr.right)
    if expr.op == "+":
        return _bounded(left + right, expr)
    if expr.op == "-":
        return _bounded(left - right, expr)
    if expr.op == "*":
        return _bounded(left * right, expr)
    if expr.op == "//":
        if not (isinstance(left, int) and isinstance(right, int)):
            raise fail("E120", "// takes integers", expr.span)
        if right == 0:
            raise fail("E120", "division by zero", expr.right.span)
        return left // right
    raise true_division(expr)


def true_division(expr: S.BinOp) -> ElaborationError:
    """E120 for `K/2`, with the expression as it would be written with `//`.

    The hint showed `K=(SQ+1)//2` whatever was written: `K=K/2` is to be `K=K//2`.
    """
    integer = Arith.model_construct(op="//", left=as_written(expr.left), right=as_written(expr.right))
    return fail("E120", "'/' is not integer division", expr.span, f"write // for integer division: {expr_text(integer)}")


def undefined(expr: S.Ref, env: dict[str, Any]) -> ElaborationError:
    """E110 for a name that is neither a parameter in scope nor a word."""
    # Suggest the words values may also be (`P=sme` -> 'same'), not only parameters.
    hint = did_you_mean(expr.name, [*env, "same", "true", "false", *sorted(CHOICE_WORDS)])
    where = f"parameters here: {', '.join(env)}" if env else "no block parameters are in scope here"
    where += "; values are numbers, shapes such as 3x3, true, false, same, or a key's word such as nearest"
    return fail("E110", f"undefined name '{expr.name}'", expr.span, hint or where)


def _bounded(value: int | float, expr: S.Expr) -> int | float:
    """A computed value within the bounds of a written one: finite, at most 1e18."""
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_NUMBER:
        raise fail(
            "E120",
            "this arithmetic goes past 1e18",
            expr.span,
            "values, written or computed, are at most 1e18 (sizes at most 2^31-1)",
        )
    return value


def _need_number(value: Any, expr: S.Expr) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail("E120", f"arithmetic needs numbers, not '{value}'", expr.span)


def as_written(expr: S.Expr) -> Expr:
    """The expression as the IR records it: what was written, without its spans.

    Iterative, as `evaluate` is: a chain of 100,000 terms must not exhaust the stack.

    >>> from archc.frontend.parser import parse
    >>> prog, _ = parse("conv K=E*4 F=3x3")
    >>> [as_written(kw.value) for kw in prog.statements[0].keywords]
    [Arith(op='*', left=Name(name='E'), right=4), (3, 3)]
    """
    todo: list[tuple[S.Expr, bool]] = [(expr, False)]
    values: list[Expr] = []
    while todo:
        e, operands_done = todo.pop()
        if isinstance(e, (S.Number, S.Dims)):
            values.append(e.value)
        elif isinstance(e, S.Ref):
            values.append(Name.model_construct(name=e.name))
        elif isinstance(e, S.Neg):
            if operands_done:
                values.append(Negate.model_construct(operand=values.pop()))
            else:
                todo += [(e, True), (e.operand, False)]
        elif operands_done:
            right = values.pop()
            values.append(Arith.model_construct(op=e.op, left=values.pop(), right=right))
        else:
            todo += [(e, True), (e.right, False), (e.left, False)]
    return values[0]


# --- a body checked without a call ---------------------------------------------------------
class Unknown:
    """The value of a block parameter when a block's body is checked without a call: what
    depends on it is not known, and not checked (`archc.frontend.elaborate.check_bodies`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()


def reads_parameter(expr: S.Expr, env: dict[str, Any]) -> bool:
    """Whether an expression reads a name of `env` (a parameter; a word is not one).

    >>> from archc.frontend.parser import parse
    >>> prog, _ = parse("conv K=E*4 F=3 P=same")
    >>> [reads_parameter(kw.value, {"E": UNKNOWN}) for kw in prog.statements[0].keywords]
    [True, False, False]
    """
    todo = [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, S.Ref) and e.name in env:
            return True
        if isinstance(e, S.BinOp):
            todo += [e.left, e.right]
        elif isinstance(e, S.Neg):
            todo.append(e.operand)
    return False


def check_unknown(expr: S.Expr, env: dict[str, Any]) -> None:
    """Raise what evaluating `expr` raises whatever values its parameters take: an undefined
    name (E110) or `/` (E120), in the order evaluation meets them (operands first, left first)."""
    todo: list[tuple[S.Expr, bool]] = [(expr, False)]
    while todo:
        e, operands_done = todo.pop()
        if isinstance(e, S.Ref):
            if e.name not in env and e.name not in LITERAL_WORDS:
                raise undefined(e, env)
        elif isinstance(e, S.Neg):
            todo.append((e.operand, False))
        elif isinstance(e, S.BinOp):
            if operands_done:
                if e.op == "/":
                    raise true_division(e)
            else:
                todo += [(e, True), (e.right, False), (e.left, False)]
