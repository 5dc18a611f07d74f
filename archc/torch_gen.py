"""The PyTorch back-end: a spec becomes readable, standalone `nn.Module` source.

One class per block definition used, one per multi-statement repeat body, and
one for the network, named after the spec's hierarchy so that `state_dict()`
keys are the IR's dotted names (`layer1.0.conv1.weight`, as in
`archc.tensors.tensor_specs`). The file imports only torch.

>>> import archc
>>> net = archc.loads("network Tiny\\ninput 8x8x3\\nconv K=4 F=3\\nrelu\\nfc 10")
>>> print(generate_source(net).split("class Tiny")[1].split("def forward")[0].strip())
(nn.Module):
    \"\"\"Tiny: input [batch, 3, 8, 8] (8x8x3), output [batch, 10].\"\"\"
<BLANKLINE>
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, kernel_size=3)
        self.relu1 = nn.ReLU()
        self.fc1 = nn.Linear(4 * 6 * 6, 10)

How a block becomes a class: the generator walks the block's body once, with
every instance of the block in the IR alongside. Each constructor value is
written as the spec's expression in the block's parameters (`K * 4`) when
that expression gives the IR's value in every instance, as a literal when
all instances agree, and otherwise as an extra constructor argument that
each call site passes (e.g. the pads of a `P=same` conv with stride 2, which
depend on the input size). So the code is the spec's, and it is checked
against the IR value by value.
"""

from __future__ import annotations

import builtins
import keyword
import linecache
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc import pyexpr as E
from archc import syntax as S
from archc.api import Network
from archc.diagnostics import ArchError
from archc.elaborate import RESERVED_NAMES, _Builder, attach_shortcuts
from archc.ir import INPUT, Shape
from archc.registry import KINDS, coerce
from archc.torch_layers import HANDLERS, KEEP, Rendered, Step

if TYPE_CHECKING:
    import torch

__all__ = ["HANDLERS", "TorchGenError", "build_module", "generate_source"]

# names a generated identifier must not take: Python's, and the module's globals
_GLOBALS = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"torch", "nn", "self", "x", "i"}
_ASCII_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9_.\- ]+")
_DEEPEST = 10_000  # nesting levels, as the elaborator allows
_COMPRESS_AFTER = 4  # a repeat of more identical copies is written as a generator


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

    def walk(items: Sequence[Any]) -> None:
        for st in items:
            if isinstance(st, S.LayerStmt):
                for e in st.positional:
                    expr(e)
                for kw in st.keywords:
                    expr(kw.value)
            elif isinstance(st, S.Repeat):
                expr(st.times)
            for attr in ("body", "shortcut", "branches"):
                inner = getattr(st, attr, None)
                if isinstance(inner, tuple):
                    walk(inner)

    walk(stmts)
    return list(out)


def _wrap(line: str, width: int = 100) -> str:
    """Split a long `name = Call(a, b, ...)` one argument a line, as a formatter would."""
    open_at = line.find("(")
    if len(line) <= width or open_at < 0 or not line.endswith(")"):
        return line
    args, depth, start = [], 0, open_at + 1
    for k, ch in enumerate(line[open_at + 1 : -1], start=open_at + 1):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:  # the first parenthesis closes early: `(a if b else c)(x)`
                return line
        elif ch == "," and depth == 0:
            args.append(line[start:k].strip())
            start = k + 1
    args.append(line[start:-1].strip())
    return line[: open_at + 1] + "\n" + "".join(f"    {a},\n" for a in args if a) + ")"


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Repeat"


def _annotation(values: Sequence[Any]) -> str:
    def one(v: Any) -> str:
        if isinstance(v, tuple):
            return "tuple[int, ...]" if all(type(x) is int for x in v) else "tuple"
        return type(v).__name__ if isinstance(v, (bool, int, float, str)) else "object"

    return " | ".join(sorted({one(v) for v in values})) or "int"


class _Generator:
    """Walks the spec twice: once to find every instance of every class, once to write them."""

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
        self.classes: dict[Any, _Class] = {}
        self.order: list[_Class] = []
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
        while name in _GLOBALS or name in self.class_names:
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
                current = self.node_name(self.builder.name(scope, st.label, "concat", st.span))
        return current

    def enter_block(self, block: str, path: str, current: str) -> str:
        args = self.scopes[path].args
        self.instances[block].append(_Instance(path, args, current))
        self.inst_env[path] = args
        body = self.blocks[block].body
        self.collect(body, self.builder.enter(path, body), args, current)
        return self.scopes[path].output

    # --- pass 2: classes -----------------------------------------------------------------------
    def block_class(self, block: str) -> _Class:
        if block not in self.classes:
            bd = self.blocks[block]
            insts = self.instances[block]
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
            cls = _Class(self.class_name(block), params)
            self.classes[block] = cls
            doc = f"`block {block}({', '.join(p.name for p in bd.params)})` of the spec."
            _ClassWriter(self, cls, bd.body, insts, doc).write()
        return self.classes[block]

    def body_class(self, st: S.Repeat, outer: _ClassWriter, local: str) -> _Class:
        if id(st) not in self.classes:
            free = [r for r in _refs(st.body) if r in outer.names]
            params = [_Param(r, outer.names[r], None) for r in free]
            prefix = "" if outer.is_network else outer.cls.name
            cls = _Class(self.class_name(f"{prefix}{_camel(local)}Body"), params)
            self.classes[id(st)] = cls
            doc = f"One copy of the body of `{local}: repeat`."
            _ClassWriter(self, cls, st.body, self.instances[id(st)], doc).write()
        return self.classes[id(st)]

    def generate(self) -> tuple[str, str]:
        net = self.net
        top = self.builder.enter("", self.body)
        self.collect(self.body, top, {}, INPUT)
        self.builder = _Builder(self.blocks)  # fresh counters for pass 2
        cls = _Class(self.class_name(net.name), [])
        inp, out = net.graph.input_shape, self.analysis.output_shape
        doc = (
            f"{net.name}: input [batch, {', '.join(map(str, inp.nchw()))}] ({inp.text()}), "
            f"output [batch, {', '.join(map(str, out.nchw()))}]."
        )
        if not _ASCII_IDENT.fullmatch(net.name):
            doc = doc.replace(net.name, cls.name, 1)
        _ClassWriter(self, cls, self.body, [_Instance("", {}, INPUT)], doc, network=True).write()
        source = "\n\n".join([self.header(cls.name), *(c.source for c in self.order)])
        return source, cls.name

    def header(self, name: str) -> str:
        origin = Path(self.net.path).name
        where = f" from {origin}" if _SAFE_FILENAME.fullmatch(origin) and not origin.startswith("<") else ""
        return (
            f'"""{name}: generated by archc{where}.\n\n'
            "Standalone PyTorch: nn layers with PyTorch's default initialisation. Like\n"
            "torchvision models, a fresh module is in training mode; call .eval() before\n"
            'comparing outputs (dropout and batchnorm differ between the two modes).\n"""\n\n'
            "import torch\nfrom torch import nn\n"
        )


class _Ctx:
    """One layer statement across all instances of its class (see torch_layers.LayerCtx)."""

    def __init__(self, w: _ClassWriter, st: S.LayerStmt | None, kind: str, local: str, nodes: list[str]) -> None:
        self.w = w
        self.st = st
        self.kind = kind
        self.name = local
        facts = [w.gen.facts[n] for n in nodes]
        self.ins: Sequence[Shape] = [f.inputs[0] for f in facts] if kind not in ("add", "concat") else []
        self.attrs: Sequence[dict[str, Any]] = [w.gen.nodes[n].attrs for n in nodes] if st is not None else []
        self.operands: Sequence[str] = []
        self.channels: E.Sym | None = w.chan

    def written(self, key: str) -> S.Expr | None:
        assert self.st is not None
        kind = KINDS[self.kind]
        if kind.positional == key and self.st.positional:
            return self.st.positional[0]
        for kw in self.st.keywords:
            if kw.key == key:
                return kw.value
        return None

    def key(self, key: str) -> Rendered:
        spec = KINDS[self.kind].key(key)
        assert spec is not None
        expr = self.written(key)
        sym: E.Sym | None
        try:
            sym = E.Const(spec.default) if expr is None else E.from_syntax(expr, self.w.names)
        except E.NotSymbolic:
            sym = None
        values = [a[key] for a in self.attrs]
        return self.w.check(sym, values, f"{self.name}_{key}", lambda v: coerce(spec, v), compact=True)

    def in_channels(self) -> Rendered:
        return self.w.check(self.channels, [s.channels for s in self.ins], f"{self.name}_in_channels")

    def check(self, sym: E.Sym | None, values: Sequence[Any], hint: str) -> Rendered:
        return self.w.check(sym, values, hint, compact=True)

    def attr(self, hint: str) -> str:
        return self.w.fresh_attr(hint)


class _ClassWriter:
    """Writes one class: walks its body once, all instances in step."""

    def __init__(
        self,
        gen: _Generator,
        cls: _Class,
        body: Sequence[Any],
        insts: list[_Instance],
        doc: str,
        network: bool = False,
    ) -> None:
        self.gen, self.cls, self.body, self.insts, self.doc = gen, cls, body, insts, doc
        self.is_network = network
        self.names = {p.spec: p.py for p in cls.params}  # spec parameter -> Python name
        self.envs: list[dict[str, Any]] = []
        for inst in insts:
            env = {p.py: inst.env[p.spec] for p in cls.params}
            if not network:
                env["in_channels"] = gen.shape(inst.input).channels
            self.envs.append(env)
        for inst in insts:
            cls.values[inst.path] = {}
        self.cur = [inst.input for inst in insts]
        if network:
            self.chan: E.Sym | None = E.Const(gen.net.graph.input_shape.channels)
        else:
            self.chan = E.Var("in_channels")
        self.init: list[str] = []
        self.fwd: list[str] = []
        self.hoisted: list[tuple[str, str]] = []
        self.params_taken = set(_GLOBALS) | {"in_channels"} | {p.py for p in cls.params}
        self.attrs_taken = set().union(*(gen.children[i.path] for i in insts)) if insts else set()
        self.locals: dict[str, int] = {}

    # --- values -----------------------------------------------------------------------------
    def check(
        self, sym: E.Sym | None, values: Sequence[Any], hint: str, norm: Any = None, compact: bool = False
    ) -> Rendered:
        """The spec's expression if it gives `values` everywhere; else a literal; else an argument.

        `compact` writes an equal pair `(3, 3)` as `3`, for torch arguments that take either.
        """
        values = tuple(values)
        if sym is not None:
            try:
                got = [E.evaluate(sym, env) for env in self.envs]
                if norm is not None:
                    got = [norm(g) for g in got]
                if all(E.same(g, v) for g, v in zip(got, values, strict=True)):
                    return Rendered(E.render(sym), sym, values)
            except (E.NotSymbolic, ValueError):
                pass
        if all(E.same(v, values[0]) for v in values):
            try:
                return Rendered(E.literal(values[0], compact), E.Const(values[0]), values)
            except E.NotSymbolic as exc:
                raise TorchGenError(f"internal error: {hint}: {exc}") from exc
        name = self.hoist(hint, values)
        return Rendered(name, E.Var(name), values)

    def hoist(self, hint: str, values: Sequence[Any]) -> str:
        """A constructor argument for a value that differs between instances."""
        name = re.sub(r"[^A-Za-z0-9_]", "_", hint)
        while name in self.params_taken:
            name += "_"
        self.params_taken.add(name)
        self.hoisted.append((name, _annotation(values)))
        self.cls.hoisted.append(name)
        for inst, env, v in zip(self.insts, self.envs, values, strict=True):
            self.cls.values[inst.path][name] = v
            env[name] = v
        return name

    def fresh_attr(self, hint: str) -> str:
        name = hint
        while name in self.attrs_taken or name in self.gen.module_attrs:
            name += "_"
        self.attrs_taken.add(name)
        return name

    def local(self, prefix: str) -> str:
        n = self.locals.get(prefix, 0) + 1
        self.locals[prefix] = n
        return prefix if n == 1 and prefix != "branch" else f"{prefix}{n}"

    # --- statements ---------------------------------------------------------------------------
    def attribute(self, local: str) -> str:
        if not _ASCII_IDENT.fullmatch(local) or keyword.iskeyword(local) or local in self.gen.module_attrs:
            raise TorchGenError(
                f"'{local}' cannot be an attribute of a PyTorch module (nn.Module has one of that name); rename it"
            )
        return local

    def steps(self, steps: list[Step], src: str, dst: str) -> str:
        for step in steps:
            if step.attr is None:
                self.fwd.append(f"{dst} = {step.call.replace('{x}', src)}")
            else:
                self.init.append(f"self.{self.attribute(step.attr)} = {step.ctor}")
                self.fwd.append(f"{dst} = self.{step.attr}({src})")
            src = dst
        return src

    def seq(self, stmts: Sequence[Any], scope: Any, src: str, dst: str) -> str:
        for st in attach_shortcuts(stmts, []):
            if isinstance(st, S.LayerStmt) and st.kind in self.gen.blocks:
                src = self.call(st, scope, src, dst)
            elif isinstance(st, S.LayerStmt):
                src = self.layer(st, scope, src, dst)
            elif isinstance(st, S.Repeat):
                src = self.repeat(st, scope, src, dst)
            elif isinstance(st, S.Residual):
                src = self.residual(st, scope, src, dst)
            elif isinstance(st, S.Concat):
                src = self.concat(st, scope, src, dst)
        return src

    def nodes(self, local: str) -> list[str]:
        return [_full(i.path, local) for i in self.insts]

    def layer(self, st: S.LayerStmt, scope: Any, src: str, dst: str) -> str:
        local = self.gen.builder.name(scope, st.label, st.kind, st.span)
        nodes = self.nodes(local)
        emitted = HANDLERS[st.kind](_Ctx(self, st, st.kind, local, nodes))
        out = self.steps(emitted.steps, src, dst)
        self.cur = nodes
        if emitted.channels is not KEEP:
            self.chan = emitted.channels
        return out

    def residual(self, st: S.Residual, scope: Any, src: str, dst: str) -> str:
        start, chan = self.cur, self.chan
        keep = src
        if src == dst:
            keep = self.local("identity")
            self.fwd.append(f"{keep} = {src}")
        body = self.seq(st.body, scope, src, dst)
        body_chan = self.chan
        self.cur, self.chan = start, chan
        short = self.seq(st.shortcut, scope, keep, self.local("shortcut")) if st.shortcut else keep
        local = self.gen.builder.name(scope, st.label, "residual", st.span)
        ctx = _Ctx(self, None, "add", local, self.nodes(local))
        ctx.operands = [body, short]
        out = self.steps(HANDLERS["add"](ctx).steps, src, dst)
        self.cur = self.nodes(local)
        self.chan = body_chan if body_chan is not None else self.chan
        return out

    def concat(self, st: S.Concat, scope: Any, src: str, dst: str) -> str:
        start, chan = self.cur, self.chan
        outs, chans = [], []
        for br in st.branches:
            assert isinstance(br, S.Branch)  # the elaborator admits nothing else
            self.cur, self.chan = start, chan
            outs.append(self.seq(br.body, scope, src, self.local("branch")))
            chans.append(self.chan)
        local = self.gen.builder.name(scope, st.label, "concat", st.span)
        ctx = _Ctx(self, None, "concat", local, self.nodes(local))
        ctx.operands = outs
        out = self.steps(HANDLERS["concat"](ctx).steps, src, dst)
        self.cur = self.nodes(local)
        self.chan = None if any(c is None for c in chans) else E.add([c for c in chans if c is not None])
        return out

    # --- block calls and repeats --------------------------------------------------------------
    def call_args(
        self, cls: _Class, paths: list[str], inputs: list[str], call: S.LayerStmt | None
    ) -> list[tuple[str | None, E.Sym | None, list[Any]]]:
        """The constructor arguments of a callee: (keyword or None for in_channels, expression, values)."""
        gen = self.gen
        args: list[tuple[str | None, E.Sym | None, list[Any]]] = [
            (None, None, [gen.shape(i).channels for i in inputs])
        ]
        written = {kw.key: kw.value for kw in call.keywords} if call is not None else {}
        for p in cls.params:
            values = [gen.inst_env[path][p.spec] for path in paths]
            if call is None:  # a repeat body's class takes the free parameters of its body
                args.append((p.py, E.Var(self.names[p.spec]), values))
            elif p.spec in written:  # else the callee's default gives the value, as it did in the IR
                try:
                    sym: E.Sym | None = E.from_syntax(written[p.spec], self.names)
                except E.NotSymbolic:
                    sym = None
                args.append((p.py, sym, values))
        for h in cls.hoisted:
            args.append((h, None, [cls.values[path][h] for path in paths]))
        return args

    def construct(self, cls: _Class, args: list[tuple[str | None, E.Sym | None, list[Any]]], in_sym: E.Sym | None, hint: str) -> tuple[str, E.Sym | None]:
        """`Basic(64, K=64)`, and the callee's output channels in this class's names."""
        parts = []
        mapping: dict[str, E.Sym] = {}
        for kw, sym, values in args:
            r = self.check(in_sym if kw is None else sym, values, f"{hint}_{kw or 'in_channels'}")
            parts.append(r.text if kw is None else f"{kw}={r.text}")
            mapping[kw or "in_channels"] = r.sym
        return f"{cls.name}({', '.join(parts)})", self.out_channels(cls, mapping)

    @staticmethod
    def out_channels(cls: _Class, mapping: dict[str, E.Sym]) -> E.Sym | None:
        mapping = dict(mapping)
        for p in cls.params:
            if p.py not in mapping and p.default is not None:
                try:
                    mapping[p.py] = E.subst(p.default, mapping)
                except E.NotSymbolic:
                    pass
        if cls.out is None:
            return None
        try:
            return E.subst(cls.out, mapping)
        except E.NotSymbolic:
            return None

    def call(self, st: S.LayerStmt, scope: Any, src: str, dst: str) -> str:
        local = self.gen.builder.name(scope, st.label, st.kind.lower(), st.span)
        cls = self.gen.block_class(st.kind)
        paths = self.nodes(local)
        text, self.chan = self.construct(cls, self.call_args(cls, paths, self.cur, st), self.chan, local)
        out = self.steps([Step(local, text)], src, dst)
        self.cur = [self.gen.scopes[p].output for p in paths]
        return out

    def repeat(self, st: S.Repeat, scope: Any, src: str, dst: str) -> str:
        gen = self.gen
        local = gen.builder.name(scope, st.label, "repeat", st.span)
        paths = self.nodes(local)
        counts = [gen.scopes[p].args["count"] for p in paths]
        if not any(counts):  # no copies anywhere: no class to write (and no instance to write it from)
            return self.steps([Step(local, "nn.Sequential()")], src, dst)
        sole = _sole_call(st, gen.blocks)
        cls = gen.block_class(sole.kind) if sole is not None else gen.body_class(st, self, local)
        # copies[i][k]: (path, input node) of copy k in instance i
        copies: list[list[tuple[str, str]]] = []
        for p, n, cur in zip(paths, counts, self.cur, strict=True):
            row, inp = [], cur
            for k in range(n):
                row.append((f"{p}.{k}", inp))
                inp = gen.scopes[f"{p}.{k}"].output
            copies.append(row)
        symbolic = False
        if not self.is_network:  # keep `range(N - 1)` when the count is the block's parameter
            try:
                count_sym = E.from_syntax(st.times, self.names)
                symbolic = bool(E.variables(count_sym)) and all(
                    E.same(E.evaluate(count_sym, env), n) for env, n in zip(self.envs, counts, strict=True)
                )
            except E.NotSymbolic:
                symbolic = False
        if all(n == counts[0] for n in counts) and not symbolic:
            text = self.explicit_copies(cls, copies, counts[0], sole, local)
        else:
            text = self.copies_loop(st, cls, copies, counts, sole, local)
        out = self.steps([Step(local, text)], src, dst)
        self.cur = [gen.scopes[p].output for p in paths]
        return out

    def explicit_copies(self, cls: _Class, copies: list[list[tuple[str, str]]], n: int, sole: S.LayerStmt | None, local: str) -> str:
        items = []
        for k in range(n):
            paths = [row[k][0] for row in copies]
            inputs = [row[k][1] for row in copies]
            text, self.chan = self.construct(cls, self.call_args(cls, paths, inputs, sole), self.chan, f"{local}_{k}")
            items.append(text)
        if n > _COMPRESS_AFTER and all(t == items[1] for t in items[2:]):
            return f"nn.Sequential({items[0]}, *({items[1]} for _ in range({n - 1})))"
        return f"nn.Sequential({', '.join(items)})"

    def copies_loop(
        self,
        st: S.Repeat,
        cls: _Class,
        copies: list[list[tuple[str, str]]],
        counts: list[int],
        sole: S.LayerStmt | None,
        local: str,
    ) -> str:
        """`nn.Sequential(*[Basic(K, K=K) for i in range(N)])`: the count differs between instances."""
        try:
            count_sym: E.Sym | None = E.from_syntax(st.times, self.names)
        except E.NotSymbolic:
            count_sym = None
        count = self.check(count_sym, counts, f"{local}_count")
        # per_copy[i][k]: the call_args of copy k in instance i
        per_copy = [[self.call_args(cls, [path], [inp], sole) for path, inp in row] for row in copies]
        shape = next(row[0] for row in per_copy if row)  # some instance has a copy, or counts agree
        rendered: dict[str, tuple[str, E.Sym | None]] = {}
        for j, (kw, sym, _) in enumerate(shape):
            if kw is not None:
                values = [[args[j][2][0] for args in row] for row in per_copy]
                rendered[kw] = self.loop_arg(sym, sym, values, f"{local}_{kw}")
        mapping = {kw: used for kw, (_, used) in rendered.items() if used is not None}
        # copies after the first take the channels the previous copy gave
        marker = "in_channels_of_copy"
        rest = self.out_channels(cls, {**mapping, "in_channels": E.Var(marker)})
        if rest is not None and marker in E.variables(rest):
            rest = None
        values = [[args[0][2][0] for args in row] for row in per_copy]
        text, used = self.loop_arg(self.chan, rest, values, f"{local}_in_channels")
        parts = [text, *(f"{kw}={t}" for kw, (t, _) in rendered.items())]
        self.chan = rest if rest is not None else (used if used is not None and cls.out is None else None)
        if cls.out is None:
            self.chan = None
        var = "i" if any("i == 0" in p or "[i]" in p for p in parts) else "_"
        return f"nn.Sequential(*[{cls.name}({', '.join(parts)}) for {var} in range({count.text})])"

    def loop_arg(
        self, first: E.Sym | None, rest: E.Sym | None, values: list[list[Any]], hint: str
    ) -> tuple[str, E.Sym | None]:
        """One argument of copy `i`: one expression for all, `a if i == 0 else b`, or a tuple per copy."""

        def fits(sym: E.Sym | None, pick: Any) -> bool:
            if sym is None:
                return False
            try:
                return all(
                    E.same(E.evaluate(sym, env), v)
                    for env, row in zip(self.envs, values, strict=True)
                    for v in pick(row)
                )
            except E.NotSymbolic:
                return False

        flat = [v for row in values for v in row]
        if fits(first, lambda r: r):
            assert first is not None
            return E.render(first), first
        if all(E.same(v, flat[0]) for v in flat):
            return E.literal(flat[0], compact=False), E.Const(flat[0])
        if fits(first, lambda r: r[:1]) and fits(rest, lambda r: r[1:]):
            assert first is not None and rest is not None
            return f"({E.render(first)} if i == 0 else {E.render(rest)})", rest
        name = self.hoist(hint, [tuple(row) for row in values])
        return f"{name}[i]", None

    # --- assembly --------------------------------------------------------------------------------
    def write(self) -> None:
        scope = self.gen.builder.enter("", attach_shortcuts(self.body, []))
        out = self.seq(self.body, scope, "x", "x")
        self.cls.out = self.chan
        sig = ["self"]
        if not self.is_network:
            sig.append("in_channels: int")
        pre: list[str] = []
        for p in self.cls.params:
            ann = _annotation([env[p.py] for env in self.envs])
            if p.default is None:
                sig.append(f"{p.py}: {ann}")
            elif isinstance(p.default, E.Const):
                sig.append(f"{p.py}: {ann} = {E.render(p.default)}")
            else:  # a default computed from earlier parameters
                sig.append(f"{p.py}: {ann} | None = None")
                pre.append(f"if {p.py} is None:\n    {p.py} = {E.render(p.default)}")
        if self.hoisted:
            sig.append("*")
            sig += [f"{name}: {ann}" for name, ann in self.hoisted]
        lines = [f"class {self.cls.name}(nn.Module):", f'    """{self.doc}"""', ""]
        head = f"    def __init__({', '.join(sig)}) -> None:"
        if len(head) > 100:
            head = "    def __init__(\n" + "".join(f"        {s},\n" for s in sig) + "    ) -> None:"
        lines.append(head)
        for line in [*pre, "super().__init__()", *map(_wrap, self.init)]:
            lines.append("        " + line.replace("\n", "\n        "))
        lines += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
        lines += [f"        {line}" for line in [*self.fwd, f"return {out}"]]
        self.cls.source = "\n".join(lines) + "\n"
        self.gen.order.append(self.cls)


def generate_source(net: Network) -> str:
    """The network as standalone PyTorch source (deterministic: same spec, same text)."""
    return _generate(net)[0]


def _generate(net: Network) -> tuple[str, str]:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, _DEEPEST * 8))
    try:
        return _Generator(net).generate()
    finally:
        sys.setrecursionlimit(old)


def build_module(net: Network) -> torch.nn.Module:
    """A live module built by executing exactly the source `generate_source` writes.

    It is in training mode, as a fresh torchvision model is; call `.eval()`.
    """
    try:
        import torch  # noqa: F401 - fail here, clearly, when torch is missing
    except ImportError as exc:
        raise TorchGenError("building a PyTorch module needs torch: pip install 'archc[torch]'") from exc
    source, name = _generate(net)
    filename = f"<archc {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks show the code
    namespace: dict[str, Any] = {"__name__": f"archc_generated_{name}"}
    exec(compile(source, filename, "exec"), namespace)
    try:
        module: torch.nn.Module = namespace[name]()
    except Exception as exc:  # any torch failure becomes one error with context
        raise TorchGenError(f"PyTorch could not build {net.name}: {exc}") from exc
    return module
