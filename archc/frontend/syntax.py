"""The syntax tree of a `.arch` file, as the parser's Transformer builds it.

Every node carries the `Span` of the text it came from. The tree is what the
user wrote, nothing resolved yet: block calls, repeats and expressions are
elaborated into the layer graph by `archc.frontend.elaborate`.

It is lossless enough to print the file again (`archc fmt` prints from it):
numbers, shapes, comparisons and tolerances keep their text as written,
expressions the parentheses written around them, bodies the places of their
braces, and the `Program` every comment with its place. A text with syntax
errors still has a tree: each statement that failed to parse is an
`ErrorStmt` where it stood.

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
# Every expression counts the pairs of parentheses written around it: `((K))` is Ref K
# with parens=2. Its span leaves them out (so carets stay where they always were).
class Number(NamedTuple):
    """An integer or float literal; `text` keeps what was written (for `expect` rounding)."""

    value: int | float
    text: str
    span: Span
    parens: int = 0


class Dims(NamedTuple):
    """`HxW` or `HxWxC`, written as one token; `text` as written (`3 x 3`, `3×3`)."""

    value: tuple[int, ...]
    text: str
    span: Span
    parens: int = 0


class Ref(NamedTuple):
    """A bare name: a block parameter, or a word such as `same`, `true`, `false`."""

    name: str
    span: Span
    parens: int = 0


class BinOp(NamedTuple):
    op: str  # one of + - * // /
    left: Expr
    right: Expr
    span: Span
    parens: int = 0


class Neg(NamedTuple):
    operand: Expr
    span: Span  # the operand's: the `-` is not in it
    parens: int = 0


Expr = Number | Dims | Ref | BinOp | Neg


# --- statements ----------------------------------------------------------------
class Label(NamedTuple):
    name: str
    span: Span


class ShapeLit(NamedTuple):
    """The shape after `->` or `input`: `55x55x96` or `4096`; `text` as written."""

    dims: tuple[int, ...]
    text: str
    span: Span


class Braces(NamedTuple):
    """Where a body's `{` and `}` stand."""

    open: Span
    close: Span


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
    unit: Label | None = None  # the word after the size: `tokens` in `input 1024 tokens`


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
    braces: Braces


class Repeat(NamedTuple):
    label: Label | None
    times: Expr
    body: tuple[Stmt, ...]
    arrow: ShapeLit | None
    span: Span
    braces: Braces


class Residual(NamedTuple):
    label: Label | None
    body: tuple[Stmt, ...]
    shortcut: tuple[Stmt, ...] | None
    arrow: ShapeLit | None
    span: Span
    braces: Braces
    shortcut_keyword: Span | None  # with the shortcut: where `shortcut` and its braces stand
    shortcut_braces: Braces | None


class Shortcut(NamedTuple):
    """`shortcut {...}` written on its own line; attached to the residual before it."""

    body: tuple[Stmt, ...]
    span: Span
    braces: Braces


class Concat(NamedTuple):
    """A merge of branches: `concat { branch {...} ... }`, or (contract v2) `add` or `multiply`."""

    label: Label | None
    branches: tuple[Stmt, ...]
    arrow: ShapeLit | None
    span: Span
    braces: Braces
    op: str = "concat"  # the keyword: concat, add or multiply (the kind of the node it makes)


class Branch(NamedTuple):
    body: tuple[Stmt, ...]
    span: Span
    braces: Braces


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
    written_op: str  # as written: `==` is op `=`
    tolerance_sign: str | None  # as written: `±`, `+-` or `+/-`
    tolerance_text: str | None  # the number as written


class ErrorStmt(NamedTuple):
    """A statement that failed to parse (the parser reported why), or, when recovery gave
    up, everything from there to the end of the file. Only in the tree of a text with
    syntax errors; `span` covers its code, comments left out."""

    span: Span


Stmt = (
    NetworkDecl
    | InputDecl
    | LayerStmt
    | BlockDef
    | Repeat
    | Residual
    | Shortcut
    | Concat
    | Branch
    | Expect
    | ErrorStmt
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


class Comment(NamedTuple):
    """`# ...` to the end of its line, as written (with the carriage return of a CRLF line)."""

    text: str
    span: Span


class Program(NamedTuple):
    statements: tuple[Stmt, ...]
    comments: tuple[Comment, ...] = ()  # in source order
