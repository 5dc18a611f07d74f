"""Pass 1 of the PyTorch back-end (`archc.backends.torch.generate`): which classes to write, and for what.

The elaborator records every scope's body as steps in local names
(`archc.ir.Scope.steps`), with the block and arguments each instance came
from. This pass walks those steps once and records every instance of every
class the generator will write: one per block instance (a call, or a copy of
a repeat whose whole body is one call), and one per copy of a repeat whose
body is anything else. A class's plan is its Python name and its constructor
parameters; pass 2 (`ClassWriter` in `archc.backends.torch.generate`) then
writes each class once, with all of its instances alongside.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archc.analysis import Analysis
from archc.backends.torch import pyexpr as E
from archc.backends.torch.helpers import NAMES as HELPER_NAMES
from archc.diagnostics import ArchError
from archc.frontend.naming import RESERVED_NAMES
from archc.ir import Scope, ScopeKind, Shape
from archc.ir.written import Merge, Step

# names a generated identifier must not take: Python's, and the module's globals
GLOBALS = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"torch", "nn", "self", "x", "i"}
ASCII_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TorchGenError(ArchError):
    """The network cannot be written as a PyTorch module."""


@dataclass(frozen=True)
class Instance:
    """One use of a generated class: its scope path, argument values, and input node."""

    path: str
    env: dict[str, Any]  # spec parameter name -> value
    input: str


@dataclass(frozen=True)
class ClassParam:
    spec: str
    py: str
    default: E.Sym | None  # in the class's Python names; None when required
    passed: bool = False  # the spec's default cannot be written: each call passes the value


@dataclass
class ClassPlan:
    """A generated class, as its callers need it."""

    name: str
    params: list[ClassParam]
    hoisted: list[str] = field(default_factory=list)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> hoisted -> value
    out: E.Sym | None = None  # output channels, in the class's names
    source: str = ""


def full_name(path: str, local: str) -> str:
    return f"{path}.{local}" if path else local


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Repeat"


def annotation(values: Sequence[Any]) -> str:
    def one(v: Any) -> str:
        if isinstance(v, tuple):
            return "tuple[int, ...]" if all(type(x) is int for x in v) else "tuple"
        return type(v).__name__ if isinstance(v, (bool, int, float, str)) else "object"

    return " | ".join(sorted({one(v) for v in values})) or "int"


class Plan:
    """Pass 1: every instance of every class, and each class's Python name and parameters.

    Classes are keyed by what they are instances of: a block by its name, a
    repeat's body by the key of the class it is written in, a slash and the
    repeat's local name (the network's own key is "").
    """

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self.graph = analysis.graph
        self.facts = analysis.facts
        self.nodes = {n.name: n for n in self.graph.nodes}
        self.inst_env: dict[str, dict[str, Any]] = {}  # instance path -> spec parameter values
        self.scopes = {s.path: s for s in self.graph.scopes}
        self.blocks = self.graph.blocks
        self.instances: dict[str, list[Instance]] = defaultdict(list)
        self.class_names: set[str] = set()
        self.module_attrs = RESERVED_NAMES  # nn.Module's own attributes (and the elaborator's list)
        self.children: dict[str, set[str]] = defaultdict(set)
        for name in [*self.facts, *self.scopes]:
            parts = name.split(".")
            for k in range(len(parts)):
                self.children[".".join(parts[:k])].add(parts[k])

    # --- names ------------------------------------------------------------------------------
    def class_name(self, wanted: str) -> str:
        name = re.sub(r"[^A-Za-z0-9_]", "_", wanted) or "Network"
        if name[0].isdigit():
            name = f"Net_{name}"
        if name.startswith("__"):  # `__Inner` called inside `class Outer` would be `_Outer__Inner`
            name = f"Block{name}"
        while name in GLOBALS or name in self.class_names or name in HELPER_NAMES:
            name += "_"
        self.class_names.add(name)
        return name

    def shape(self, name: str) -> Shape:
        return self.analysis.shape_of(name)

    def node_name(self, name: str) -> str:
        if name not in self.facts:
            raise TorchGenError(f"internal error: the generator's name {name!r} is not in the IR")
        return name

    def child_scope(self, path: str, step: str) -> Scope | None:
        """The block instance or repeat a step names, or None for a layer."""
        return self.scopes.get(full_name(path, step))

    # --- pass 1: instances ----------------------------------------------------------------------
    def collect(self, steps: Sequence[Step], path: str, env: dict[str, Any], current: str, key: str) -> str:
        """Record the instances in `steps` of the scope `path`, whose class is `key`; return its output."""
        for step in steps:
            if isinstance(step, Merge):
                for branch in step.branches:
                    self.collect(branch, path, env, current, key)
                current = self.node_name(full_name(path, step.node))
                continue
            scope = self.child_scope(path, step)
            if scope is None:
                current = self.node_name(full_name(path, step))
            elif scope.kind is ScopeKind.CALL:
                assert scope.block is not None
                current = self.enter_block(scope.block, scope.path, current)
            else:
                body = f"{key}/{step}"
                for k in range(scope.args["count"]):
                    copy = self.scopes[f"{scope.path}.{k}"]
                    if copy.block is not None:
                        current = self.enter_block(copy.block, copy.path, current)
                    else:
                        self.instances[body].append(Instance(copy.path, env, current))
                        self.inst_env[copy.path] = env
                        current = self.collect(copy.steps, copy.path, env, current, body)
        return current

    def enter_block(self, block: str, path: str, current: str) -> str:
        scope = self.scopes[path]
        self.instances[block].append(Instance(path, scope.args, current))
        self.inst_env[path] = scope.args
        self.collect(scope.steps, path, scope.args, current, block)
        return scope.output

    # --- class plans ---------------------------------------------------------------------------
    def block_plan(self, block: str) -> ClassPlan:
        """A block's class: its parameters, defaults written in the earlier parameters' names."""
        names: dict[str, str] = {}
        params: list[ClassParam] = []
        # a parameter named like a class would hide it from the constructor that calls it
        taken = set(GLOBALS) | {"in_channels"} | set(self.blocks) | self.class_names
        for p in self.blocks[block].params:
            py = p.name if ASCII_IDENT.fullmatch(p.name) else "param"
            if py.startswith("__"):
                # Python mangles `__k` inside a class (a caller's `B(__k=3)` is then a TypeError),
                # and a local `__class__` breaks `super()`.
                py = f"p{py}"
            while py in taken:
                py += "_"
            taken.add(py)
            default = None
            passed = False
            if p.default is not None:
                try:
                    default = E.from_ir(p.default, names)
                except E.NotSymbolic:
                    passed = True  # a default too long to write in Python: every call passes the value
            names[p.name] = py
            params.append(ClassParam(p.name, py, default, passed))
        return ClassPlan(self.class_name(block), params)

    def body_plan(self, reads: Sequence[str], names: dict[str, str], prefix: str, local: str) -> ClassPlan:
        """A repeat body's class: it takes the names its body reads that are its caller's
        parameters (`names`), as its caller names them."""
        params = [ClassParam(r, names[r], None) for r in reads if r in names]
        return ClassPlan(self.class_name(f"{prefix}{_camel(local)}Body"), params)
