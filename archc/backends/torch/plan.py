"""Pass 1 of the PyTorch back-end (`archc.backends.torch.generate`): which classes to write, and for what.

The generator first walks the spec as the elaborator did, naming through the
elaborator's own rules so that every name is the IR's, and records every
instance of every class it will write: one per call of a block (one per copy
when the call is a repeat's whole body), and one per copy of a repeat whose
body is anything else. A class's plan is its Python name and its constructor
parameters; pass 2 (`_ClassWriter` in `archc.backends.torch.generate`) then writes each
class once, with all of its instances alongside.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archc.api import Network
from archc.backends.torch import pyexpr as E
from archc.backends.torch.helpers import NAMES as HELPER_NAMES
from archc.diagnostics import ArchError
from archc.frontend import syntax as S
from archc.frontend.elaborate import _Builder, attach_shortcuts
from archc.frontend.naming import RESERVED_NAMES
from archc.ir import Shape

# names a generated identifier must not take: Python's, and the module's globals
_GLOBALS = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"torch", "nn", "self", "x", "i"}
_ASCII_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TorchGenError(ArchError):
    """The network cannot be written as a PyTorch module."""


@dataclass(frozen=True)
class _Instance:
    """One use of a generated class: its scope path, argument values, and input node."""

    path: str
    env: dict[str, Any]  # spec parameter name -> value
    input: str


@dataclass(frozen=True)
class _Param:
    spec: str
    py: str
    default: E.Sym | None  # in the class's Python names; None when required


@dataclass
class _Class:
    """A generated class, as its callers need it."""

    name: str
    params: list[_Param]
    hoisted: list[str] = field(default_factory=list)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> hoisted -> value
    out: E.Sym | None = None  # output channels, in the class's names
    source: str = ""


def _full(path: str, local: str) -> str:
    return f"{path}.{local}" if path else local


def _sole_call(st: S.Repeat, blocks: dict[str, S.BlockDef]) -> S.LayerStmt | None:
    """The block call that is a repeat's whole body (the copy is then the instance)."""
    body = attach_shortcuts(st.body, [])
    if len(body) == 1 and isinstance(body[0], S.LayerStmt) and body[0].label is None and body[0].kind in blocks:
        return body[0]
    return None


def _refs(stmts: Sequence[Any]) -> list[str]:
    """Every name a body reads, in order of first use (a repeat body's free parameters)."""
    out: dict[str, None] = {}

    def expr(e: S.Expr) -> None:
        if isinstance(e, S.Ref):
            out.setdefault(e.name)
        elif isinstance(e, S.BinOp):
            expr(e.left)
            expr(e.right)
        elif isinstance(e, S.Neg):
            expr(e.operand)

    for st in S.walk(stmts):
        if isinstance(st, S.LayerStmt):
            for e in st.positional:
                expr(e)
            for kw in st.keywords:
                expr(kw.value)
        elif isinstance(st, S.Repeat):
            expr(st.times)
    return list(out)


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Repeat"


def _annotation(values: Sequence[Any]) -> str:
    def one(v: Any) -> str:
        if isinstance(v, tuple):
            return "tuple[int, ...]" if all(type(x) is int for x in v) else "tuple"
        return type(v).__name__ if isinstance(v, (bool, int, float, str)) else "object"

    return " | ".join(sorted({one(v) for v in values})) or "int"


class _Plan:
    """Pass 1: every instance of every class, and each class's Python name and parameters."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.analysis = net.analysis
        self.facts = net.analysis.facts
        self.nodes = {n.name: n for n in net.graph.nodes}
        self.inst_env: dict[str, dict[str, Any]] = {}  # instance path -> spec parameter values
        self.scopes = {s.path: s for s in net.graph.scopes}
        self.blocks = net.blocks
        self.builder = _Builder(self.blocks)  # the elaborator's own naming, so names match the IR
        self.instances: dict[Any, list[_Instance]] = defaultdict(list)
        self.class_names: set[str] = set()
        self.module_attrs = RESERVED_NAMES  # nn.Module's own attributes (and the elaborator's list)
        self.children: dict[str, set[str]] = defaultdict(set)
        for name in [*self.facts, *self.scopes]:
            parts = name.split(".")
            for k in range(len(parts)):
                self.children[".".join(parts[:k])].add(parts[k])
        self.body = [
            st
            for st in net.program.statements
            if not isinstance(st, (S.BlockDef, S.NetworkDecl, S.InputDecl, S.Expect))
        ]

    # --- names ------------------------------------------------------------------------------
    def class_name(self, wanted: str) -> str:
        name = re.sub(r"[^A-Za-z0-9_]", "_", wanted) or "Network"
        if name[0].isdigit():
            name = f"Net_{name}"
        while name in _GLOBALS or name in self.class_names or name in HELPER_NAMES:
            name += "_"
        self.class_names.add(name)
        return name

    def shape(self, name: str) -> Shape:
        return self.analysis.shape_of(name)

    def node_name(self, name: str) -> str:
        if name not in self.facts:
            raise TorchGenError(f"internal error: the generator's name {name!r} is not in the IR")
        return name

    # --- pass 1: instances ----------------------------------------------------------------------
    def collect(self, stmts: Sequence[Any], scope: Any, env: dict[str, Any], current: str) -> str:
        for st in attach_shortcuts(stmts, []):
            if isinstance(st, S.LayerStmt):
                if st.kind in self.blocks:
                    path = self.builder.name(scope, st.label, st.kind.lower(), st.span)
                    current = self.enter_block(st.kind, path, current)
                else:
                    current = self.node_name(self.builder.name(scope, st.label, st.kind, st.span))
            elif isinstance(st, S.Repeat):
                path = self.builder.name(scope, st.label, "repeat", st.span)
                sole = _sole_call(st, self.blocks)
                for k in range(self.scopes[path].args["count"]):
                    copy = f"{path}.{k}"
                    if sole is not None:
                        current = self.enter_block(sole.kind, copy, current)
                    else:
                        self.instances[id(st)].append(_Instance(copy, env, current))
                        self.inst_env[copy] = env
                        inner = self.builder.enter(copy, attach_shortcuts(st.body, []))
                        current = self.collect(st.body, inner, env, current)
            elif isinstance(st, S.Residual):
                self.collect(st.body, scope, env, current)
                if st.shortcut:
                    self.collect(st.shortcut, scope, env, current)
                current = self.node_name(self.builder.name(scope, st.label, "residual", st.span))
            elif isinstance(st, S.Concat):
                for br in st.branches:
                    assert isinstance(br, S.Branch)  # the elaborator admits nothing else
                    self.collect(br.body, scope, env, current)
                current = self.node_name(self.builder.name(scope, st.label, st.op, st.span))
        return current

    def enter_block(self, block: str, path: str, current: str) -> str:
        args = self.scopes[path].args
        self.instances[block].append(_Instance(path, args, current))
        self.inst_env[path] = args
        body = self.blocks[block].body
        self.collect(body, self.builder.enter(path, body), args, current)
        return self.scopes[path].output

    # --- class plans ---------------------------------------------------------------------------
    def block_plan(self, block: str) -> _Class:
        """A block's class: its parameters, defaults written in the earlier parameters' names."""
        bd = self.blocks[block]
        names: dict[str, str] = {}
        params: list[_Param] = []
        taken = set(_GLOBALS) | {"in_channels"}
        for p in bd.params:
            py = p.name if _ASCII_IDENT.fullmatch(p.name) else "param"
            while py in taken:
                py += "_"
            taken.add(py)
            default = None
            if p.default is not None:
                try:
                    default = E.from_syntax(p.default, names)
                except E.NotSymbolic as exc:
                    raise TorchGenError(f"block {block}: the default of {p.name} is not an expression: {exc}") from exc
            names[p.name] = py
            params.append(_Param(p.name, py, default))
        return _Class(self.class_name(block), params)

    def body_plan(self, st: S.Repeat, names: dict[str, str], prefix: str, local: str) -> _Class:
        """A repeat body's class: it takes the body's free parameters, as its caller (`names`) names them."""
        free = [r for r in _refs(st.body) if r in names]
        params = [_Param(r, names[r], None) for r in free]
        return _Class(self.class_name(f"{prefix}{_camel(local)}Body"), params)
