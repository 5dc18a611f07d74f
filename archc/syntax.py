"""The syntax tree of a `.arch` file, as the parser's Transformer builds it.

Every node carries the `Span` of the text it came from. The tree is what the
user wrote, nothing resolved yet: block calls, repeats and expressions are
elaborated into the layer graph by `archc.elaborate`.

These are plain frozen dataclasses rather than pydantic models: a 100,000-line
spec makes millions of them, and they never cross a trust boundary (the
elaborated IR in `archc.ir` is the validated, pydantic part).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from archc.ir import Span


# --- expressions ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Number:
    """An integer or float literal; `text` keeps what was written (for `expect` rounding)."""

    value: int | float
    text: str
    span: Span


@dataclass(frozen=True, slots=True)
class Dims:
    """`HxW` or `HxWxC`, written as one token."""

    value: tuple[int, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Ref:
    """A bare name: a block parameter, or a word such as `same`, `true`, `false`."""

    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # one of + - * // /
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    span: Span


Expr = Union[Number, Dims, Ref, BinOp, Neg]


# --- statements ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Label:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class ShapeLit:
    """The shape after `->` or `input`: `55x55x96` or `4096`."""

    dims: tuple[int, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class KeyArg:
    key: str
    value: Expr
    span: Span  # the key


@dataclass(frozen=True, slots=True)
class NetworkDecl:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class InputDecl:
    shape: ShapeLit
    span: Span


@dataclass(frozen=True, slots=True)
class LayerStmt:
    """A built-in layer or a block call: `[name:] kind [positional] [k=v ...] [-> shape]`."""

    label: Label | None
    kind: str
    positional: tuple[Expr, ...]
    keywords: tuple[KeyArg, ...]
    arrow: ShapeLit | None
    span: Span  # the kind


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span  # the block's name


@dataclass(frozen=True, slots=True)
class Repeat:
    label: Label | None
    count: Expr
    body: tuple[Stmt, ...]
    arrow: ShapeLit | None
    span: Span


@dataclass(frozen=True, slots=True)
class Residual:
    label: Label | None
    body: tuple[Stmt, ...]
    shortcut: tuple[Stmt, ...] | None
    arrow: ShapeLit | None
    span: Span


@dataclass(frozen=True, slots=True)
class Shortcut:
    """`shortcut {...}` written on its own line; attached to the residual before it."""

    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Concat:
    label: Label | None
    branches: tuple[Stmt, ...]
    arrow: ShapeLit | None
    span: Span


@dataclass(frozen=True, slots=True)
class Branch:
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Expect:
    """`expect [path.]quantity <op> value [± tol[%]]`."""

    path: tuple[str, ...]  # empty for the whole network
    quantity: str
    op: str  # = < <= > >=
    value: Number | Dims
    tolerance: float | None
    tolerance_is_percent: bool
    span: Span  # the target
    value_span: Span


Stmt = Union[
    NetworkDecl, InputDecl, LayerStmt, BlockDef, Repeat, Residual, Shortcut, Concat, Branch, Expect
]


@dataclass(frozen=True, slots=True)
class Program:
    statements: tuple[Stmt, ...]
