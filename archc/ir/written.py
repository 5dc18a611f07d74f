"""How the graph was written: expressions, block definitions and the shape of each body.

The elaborator records these beside the graph so that a back-end can write
code in the spec's own terms -- a class per block with the block's
parameters, `nn.Conv2d(in_channels, K * 4, ...)`, a residual's forward with
its shortcut -- without reading the syntax tree or naming anything again.

Plain immutable data, no syntax-tree objects: an expression is a number, a
shape (`3x3` as a tuple) or a `Name`/`Arith`/`Negate` model; a body is a
tuple of `Step`s, each the local name of a layer or of a child scope (a block
instance, a repeat) in its scope, or a `Merge` with the steps of its branches.

>>> Arith(op="*", left=Name(name="K"), right=4).left.name
'K'
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Written(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Name(Written):
    """A bare name as written: a parameter of the enclosing block, or a word (`same`, `true`).

    Which one it is depends on the names in scope where it is read, as in
    evaluation: a parameter shadows a word.
    """

    name: str


class Arith(Written):
    op: str  # + - * // /
    left: Expr
    right: Expr


class Negate(Written):
    operand: Expr


# A number stands for itself and `3x3` is a tuple: most keys are literals, and
# a model per literal would cost every layer of a 100,000-layer spec.
Expr = int | float | tuple[int, ...] | Name | Arith | Negate


class BlockParam(Written):
    name: str
    default: Expr | None  # over the parameters before it; None when the caller must give it


class Block(Written):
    """A block definition as its instances' class needs it: name and parameters."""

    name: str
    params: tuple[BlockParam, ...]


class Merge(Written):
    """A residual's sum or a concat/add/multiply: the merge node and the steps of each branch.

    A residual has its body as the first branch and, when written, its
    shortcut as the second (without one, the shortcut is the identity); a
    concat, add or multiply has one branch per `branch { ... }`. A branch may
    be empty.
    """

    node: str  # its local name
    branches: tuple[tuple[Step, ...], ...]
    residual: bool = False  # `residual { } [shortcut { }]`, not `add { branch ... }`


Step = str | Merge  # a layer or a child scope by its local name, or a merge


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "/": 2}


def expr_text(expr: Expr) -> str:
    """An expression as the language writes it, with the parentheses it needs.

    >>> expr_text(Arith(op="*", left=Arith(op="+", left=Name(name="SQ"), right=1), right=2))
    '(SQ+1)*2'
    >>> expr_text(Negate(operand=8)), expr_text((3, 3)), expr_text(Arith(op="-", left=8, right=8))
    ('-8', '3x3', '8-8')
    """
    if isinstance(expr, Name):
        return expr.name
    if isinstance(expr, Negate):
        inner = expr_text(expr.operand)
        return f"-({inner})" if isinstance(expr.operand, Arith) else f"-{inner}"
    if isinstance(expr, Arith):
        mine = _PRECEDENCE[expr.op]
        left = expr_text(expr.left)
        right = expr_text(expr.right)
        if isinstance(expr.left, Arith) and _PRECEDENCE[expr.left.op] < mine:
            left = f"({left})"
        if isinstance(expr.right, Arith) and _PRECEDENCE[expr.right.op] <= mine:
            right = f"({right})"  # a - (b - c), a * (b * c): as written, the grouping kept
        return f"{left}{expr.op}{right}"
    return value_text(expr)


def value_text(value: object) -> str:
    """A value as the language writes it: `3x3`, `true`, `0.5`, `same`.

    >>> [value_text(v) for v in ((3, 3), True, 0.5, 64, "same")]
    ['3x3', 'true', '0.5', '64', 'same']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def call_text(block: str, arg_exprs: dict[str, Expr], args: dict[str, object]) -> str:
    """A block call as written, with the values of arguments computed from the caller's
    parameters: `B K=K*2 (K*2=-8)`. The label is left out; the call's place says which.

    >>> call_text("B", {"K": Negate(operand=8)}, {"K": -8})
    'B K=-8'
    >>> call_text("Fire", {"SQ": Name(name="S"), "E": 64}, {"SQ": 16, "E": 64})
    'Fire SQ=S E=64 (SQ=16)'
    """
    written = " ".join(f"{name}={expr_text(e)}" for name, e in arg_exprs.items())
    computed = [
        f"{name}={value_text(args[name])}"
        for name, e in arg_exprs.items()
        if name in args and expr_text(e) != value_text(args[name]) and not _is_literal(e)
    ]
    text = f"{block} {written}" if written else block
    return f"{text} ({', '.join(computed)})" if computed else text


def _is_literal(expr: Expr) -> bool:
    """A number, a shape, or the negation of a number: its value is what was written."""
    while isinstance(expr, Negate):
        expr = expr.operand
    return not isinstance(expr, (Name, Arith))
