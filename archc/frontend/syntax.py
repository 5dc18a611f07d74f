"""The syntax tree of a `.arch` file, as the parser's Transformer builds it.

Every node carries the `Span` of the text it came from. The tree is what the
user wrote, nothing resolved yet: block calls, repeats and expressions are
elaborated into the layer graph by `archc.frontend.elaborate`.

These are typed NamedTuples rather than pydantic models or dataclasses: a
100,000-line spec makes millions of them, `archc check` must start fast (a
NamedTuple class is created about six times faster than a dataclass), and
they never cross a trust boundary (the elaborated IR in `archc.ir` is the
pydantic part). Being tuples, nodes of different types with equal fields
compare equal: compare types too where it matters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

from archc.ir import Span


# --- expressions ---------------------------------------------------------------
class Number(NamedTuple):
    """An integer or float literal; `text` keeps what was written (for `expect` rounding)."""

    value: int | float
    text: str
    span: Span


class Dims(NamedTuple):
    """`HxW` or `HxWxC`, written as one token."""

    value: tuple[int, ...]
    span: Span


class Ref(NamedTuple):
    """A bare name: a block parameter, or a word such as `same`, `true`, `false`."""

    name: str
    span: Span


class BinOp(NamedTuple):
    op: str  # one of + - * // /
    left: Expr
    right: Expr
    span: Span


class Neg(NamedTuple):
    operand: Expr
    span: Span


Expr = Number | Dims | Ref | BinOp | Neg


# --- statements ----------------------------------------------------------------
class Label(NamedTuple):
    name: str
    span: Span


class ShapeLit(NamedTuple):
    """The shape after `->` or `input`: `55x55x96` or `4096`."""

    dims: tuple[int, ...]
    span: Span


class KeyArg(NamedTuple):
    key: str
    value: Expr
    span: Span  # the key


class NetworkDecl(NamedTuple):
    name: str
    span: Span


class InputDecl(NamedTuple):
    shape: ShapeLit
    span: Span


class LayerStmt(NamedTuple):
    """A built-in layer or a block call: `[name:] kind [positional] [k=v ...] [-> shape]`."""

    label: Label | None
    kind: str
    positional: tuple[Expr, ...]
    keywords: tuple[KeyArg, ...]
    arrow: ShapeLit | None
    span: Span  # the kind


class Param(NamedTuple):
    name: str
    default: Expr | None
    span: Span


class BlockDef(NamedTuple):
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span  # the block's name


class Repeat(NamedTuple):
    label: Label | None
    times: Expr
    body: tuple[Stmt, ...]
    arrow: ShapeLit | None
    span: Span


class Residual(NamedTuple):
    label: Label | None
    body: tuple[Stmt, ...]
    shortcut: tuple[Stmt, ...] | None
    arrow: ShapeLit | None
    span: Span


class Shortcut(NamedTuple):
    """`shortcut {...}` written on its own line; attached to the residual before it."""

    body: tuple[Stmt, ...]
    span: Span


class Concat(NamedTuple):
    """A merge of branches: `concat { branch {...} ... }`, or (contract v2) `add` or `multiply`."""

    label: Label | None
    branches: tuple[Stmt, ...]
    arrow: ShapeLit | None
    span: Span
    op: str = "concat"  # the keyword: concat, add or multiply (the kind of the node it makes)


class Branch(NamedTuple):
    body: tuple[Stmt, ...]
    span: Span


class Expect(NamedTuple):
    """`expect [path.]quantity <op> value [± tol[%]]`."""

    path: tuple[str, ...]  # empty for the whole network
    quantity: str
    op: str  # = < <= > >=
    value: Number | Dims
    tolerance: float | None
    tolerance_is_percent: bool
    span: Span  # the target
    value_span: Span


Stmt = (
    NetworkDecl | InputDecl | LayerStmt | BlockDef | Repeat | Residual | Shortcut | Concat | Branch | Expect
)


def walk(stmts: Sequence[Stmt]) -> Iterator[Stmt]:
    """Every statement of `stmts` and of the bodies written inside them, in source order.

    A residual's body comes before its shortcut. Called blocks are not entered
    (a call is one statement); a block definition's body is. Iterative, so
    deeply nested bodies cannot exhaust the stack.
    """
    stack: list[Iterator[Stmt]] = [iter(stmts)]
    while stack:
        st = next(stack[-1], None)
        if st is None:
            stack.pop()
            continue
        yield st
        if isinstance(st, Residual) and st.shortcut:
            stack.append(iter(st.shortcut))
        inner = st.branches if isinstance(st, Concat) else getattr(st, "body", None)
        if inner:
            stack.append(iter(inner))


class Program(NamedTuple):
    statements: tuple[Stmt, ...]
