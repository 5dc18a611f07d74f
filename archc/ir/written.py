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
