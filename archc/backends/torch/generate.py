"""The PyTorch back-end: a spec becomes readable, standalone `nn.Module` source.

One class per block definition used, one per multi-statement repeat body, and
one for the network, named after the spec's hierarchy so that `state_dict()`
keys are the IR's dotted names (`layer1.0.conv1.weight`, as in
`archc.analysis.tensors.tensor_specs`). The file imports only torch.

>>> import archc
>>> net = archc.loads("network Tiny\\ninput 8x8x3\\nconv K=4 F=3\\nrelu\\nfc 10")
>>> print(generate_source(net.analysis).split("class Tiny")[1].split("def forward")[0].strip())
(nn.Module):
    \"\"\"Tiny: input [batch, 3, 8, 8] (8x8x3), output [batch, 10].\"\"\"
<BLANKLINE>
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, kernel_size=3)
        self.relu1 = nn.ReLU()
        self.fc1 = nn.Linear(4 * 6 * 6, 10)

How a block becomes a class: the generator walks the block's body once, as
the elaborator recorded it (`archc.ir.Scope.steps`), with every instance of
the block in the IR alongside. Each constructor value is
written as the spec's expression in the block's parameters (`K * 4`) when
that expression gives the IR's value in every instance, as a literal when
all instances agree, and otherwise as an extra constructor argument that
each call site passes (e.g. the pads of a `P=same` conv with stride 2, which
depend on the input size). So the code is the spec's, and it is checked
against the IR value by value.

This module writes the classes and the file. Pass 1, which finds every
instance of every class and plans each class's name and parameters, is
`archc.backends.torch.plan`; block calls and repeats are written by `archc.backends.torch.calls`,
and each layer kind by its handler in `archc.backends.torch.layers`.

Names the spec may use but a module attribute cannot take (`forward`) are
E113 diagnostics, raised unrendered as a `TargetError` (`problems` lists
them); `archc.api.Network` renders them against the spec.
"""

from __future__ import annotations

import keyword
import linecache
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.analysis import Analysis
from archc.backends import TORCH_INSTALL
from archc.backends.torch import calls as torch_calls
from archc.backends.torch import pyexpr as E
from archc.backends.torch.helpers import Feature
from archc.backends.torch.helpers import source as helper_source
from archc.backends.torch.layers import HANDLERS, HELPERS, KEEP, Rendered, Step
from archc.backends.torch.plan import (
    ASCII_IDENT,
    GLOBALS,
    ClassParam,
    ClassPlan,
    Instance,
    Plan,
    TorchGenError,
    annotation,
    full_name,
)
from archc.diagnostics import Diagnostic, TargetError, error
from archc.frontend.naming import reserved_in_torch, torch_name_diagnostic
from archc.ir import INPUT, Node, Physical, ScopeKind, Shape, Span
from archc.ir import written as W
from archc.kinds import KINDS, Window, coerce, per_dimension
from archc.limits import MAX_DEPTH

if TYPE_CHECKING:
    import torch

__all__ = ["HANDLERS", "TorchGenError", "build_module", "generate_source", "problems"]

_SAFE_FILENAME = re.compile(r"[A-Za-z0-9_.\- ]+")
_DEEPEST = MAX_DEPTH  # nesting levels, as the parser and the elaborator allow


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


class _Generator(Plan):
    """Walks the IR twice: once to find every instance of every class (`Plan`), once to write them."""

    def __init__(self, analysis: Analysis, spec_path: str) -> None:
        super().__init__(analysis)
        self.spec_path = spec_path
        self.classes: dict[str, ClassPlan] = {}
        self.order: list[ClassPlan] = []
        self.helpers: set[str] = set()  # small module classes the layers need (HELPERS), written once

    # --- pass 2: classes -----------------------------------------------------------------------
    def block_class(self, block: str) -> ClassPlan:
        if block not in self.classes:
            params = self.blocks[block].params
            cls = self.block_plan(block)
            self.classes[block] = cls
            doc = f"`block {block}({', '.join(p.name for p in params)})` of the spec."
            insts = self.instances[block]
            ClassWriter(self, cls, block, self.scopes[insts[0].path].steps, insts, doc).write()
        return self.classes[block]

    def body_class(self, outer: ClassWriter, local: str, reads: Sequence[str]) -> ClassPlan:
        """The class of the copies of the repeat `local` in the class `outer` writes."""
        key = f"{outer.key}/{local}"
        if key not in self.classes:
            prefix = "" if outer.is_network else outer.cls.name
            cls = self.body_plan(reads, outer.names, prefix, local)
            self.classes[key] = cls
            doc = f"One copy of the body of `{local}: repeat`."
            insts = self.instances[key]
            ClassWriter(self, cls, key, self.scopes[insts[0].path].steps, insts, doc).write()
        return self.classes[key]

    def generate(self) -> tuple[str, str]:
        graph = self.graph
        self.collect(graph.steps, "", {}, INPUT, "")
        cls = ClassPlan(self.class_name(graph.network), [])
        inp = graph.input_shape
        physical_in = ", ".join(map(str, self.analysis.physical(INPUT)))
        physical_out = ", ".join(map(str, self.analysis.physical(graph.output)))
        ids = " token ids" if inp.layout.feature_axis is None else ""
        doc = f"{graph.network}: input [batch, {physical_in}]{ids} ({inp.text()}), output [batch, {physical_out}]."
        if not ASCII_IDENT.fullmatch(graph.network):
            doc = doc.replace(graph.network, cls.name, 1)
        ClassWriter(self, cls, "", graph.steps, [Instance("", {}, INPUT)], doc, network=True).write()
        helpers = [HELPERS[name] for name in sorted(self.helpers) if name in HELPERS]
        features = {Feature(name) for name in self.helpers if name not in HELPERS}
        if features:  # the sequence helpers, written with the features the spec uses
            helpers.append(helper_source(features))
        source = "\n\n".join([self.header(cls.name), *helpers, *(c.source for c in self.order)])
        return source, cls.name

    def ties(self) -> list[str]:
        """`self.lm_head.weight = self.wte.weight`: weight tying, written where both layers are seen."""
        lines = []
        for node in self.graph.nodes:
            owner = node.attrs.get("tie")
            if owner is not None:
                tied = f"self.{_attribute_path(node.name)}.weight = self.{_attribute_path(owner)}.weight"
                lines.append(f"{tied}  # tied: one tensor")
        return lines

    def header(self, name: str) -> str:
        origin = Path(self.spec_path).name
        where = f" from {origin}" if _SAFE_FILENAME.fullmatch(origin) and not origin.startswith("<") else ""
        return (
            f'"""{name}: generated by archc{where}.\n\n'
            "Standalone PyTorch: nn layers with PyTorch's default initialisation. Like\n"
            "torchvision models, a fresh module is in training mode; call .eval() before\n"
            'comparing outputs (dropout and batchnorm differ between the two modes).\n"""\n\n'
            "import torch\nfrom torch import nn\n"
        )


class _Ctx:
    """One layer across all instances of its class (see torch_layers.LayerCtx).

    `exprs` are the keys as the layer's statement wrote them (None for a merge).
    """

    def __init__(
        self, w: ClassWriter, exprs: Mapping[str, W.Expr] | None, kind: str, local: str, nodes: list[str]
    ) -> None:
        self.w = w
        self.exprs = exprs
        self.kind = kind
        self.name = local
        facts = [w.gen.facts[n] for n in nodes]
        self.ins: Sequence[Shape] = [f.inputs[0] for f in facts] if KINDS[kind].traits.merge is None else []
        self.branches: Sequence[Sequence[Shape]] = [f.inputs for f in facts]
        self.outs: Sequence[Shape] = [f.output for f in facts]
        self.windows: Sequence[Window | None] = [f.window for f in facts]
        self.attrs: Sequence[dict[str, Any]] = [w.gen.nodes[n].attrs for n in nodes] if exprs is not None else []
        self.operands: Sequence[str] = []
        self.channels: E.Sym | None = w.chan
        self.orders: Sequence[Physical] = [w.gen.analysis.reads(w.gen.nodes[n]) for n in nodes]

    def key(self, key: str) -> Rendered:
        spec = KINDS[self.kind].key(key)
        assert spec is not None and self.exprs is not None
        expr = self.exprs.get(key)
        sym: E.Sym | None
        try:
            sym = E.Const(spec.default) if expr is None else E.from_ir(expr, self.w.names)
        except E.NotSymbolic:
            sym = None
        # window keys compare per dim: `F=K` with K=3, and `F=3x3`, are both (3, 3) on an image
        rank = self.ins[0].layout.spatial_rank
        values = [per_dimension(spec, a[key], rank) for a in self.attrs]
        return self.w.check(
            sym, values, f"{self.name}_{key}", lambda v: per_dimension(spec, coerce(spec, v), rank), compact=True
        )

    def in_channels(self) -> Rendered:
        return self.w.check(self.channels, [s.channels for s in self.ins], f"{self.name}_in_channels")

    def check(self, sym: E.Sym | None, values: Sequence[Any], hint: str) -> Rendered:
        return self.w.check(sym, values, hint, compact=True)

    def attr(self, hint: str) -> str:
        return self.w.fresh_attr(hint)


class ClassWriter:
    """Writes one class: walks its body (the steps its instances share) once, all instances in step."""

    def __init__(
        self,
        gen: _Generator,
        cls: ClassPlan,
        key: str,
        body: Sequence[W.Step],
        insts: list[Instance],
        doc: str,
        network: bool = False,
    ) -> None:
        self.gen, self.cls, self.key, self.body, self.insts, self.doc = gen, cls, key, body, insts, doc
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
            self.chan: E.Sym | None = E.Const(gen.graph.input_shape.channels)
        else:
            self.chan = E.Var("in_channels")
        self.init: list[str] = []
        self.fwd: list[str] = []
        self.hoisted: list[tuple[str, str]] = []
        self.params_taken = set(GLOBALS) | {"in_channels"} | {p.py for p in cls.params}
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
        self.hoisted.append((name, annotation(values)))
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
        if not ASCII_IDENT.fullmatch(local) or keyword.iskeyword(local) or local in self.gen.module_attrs:
            raise TorchGenError(
                f"'{local}' cannot be an attribute of a PyTorch module (nn.Module has one of that name); rename it"
            )
        return local

    def steps(self, steps: list[Step], src: str, dst: str, helpers: tuple[str, ...] = ()) -> str:
        self.gen.helpers.update(helpers)
        for step in steps:
            if step.attr is None:
                self.fwd.append(f"{dst} = {step.call.replace('{x}', src)}")
            else:
                self.init.append(f"self.{self.attribute(step.attr)} = {step.ctor}")
                call = step.call or "{self}({x})"
                self.fwd.append(f"{dst} = {call.replace('{self}', f'self.{step.attr}').replace('{x}', src)}")
            src = dst
        return src

    def seq(self, steps: Sequence[W.Step], src: str, dst: str) -> str:
        for step in steps:
            if isinstance(step, W.Merge):
                src = self.residual(step, src, dst) if step.residual else self.merge(step, src, dst)
                continue
            scope = self.gen.child_scope(self.insts[0].path, step)
            if scope is None:
                src = self.layer(step, src, dst)
            elif scope.kind is ScopeKind.CALL:
                assert scope.block is not None
                src = torch_calls.call(self, step, scope.block, src, dst)
            else:
                src = torch_calls.repeat(self, step, src, dst)
        return src

    def nodes(self, local: str) -> list[str]:
        return [full_name(i.path, local) for i in self.insts]

    def transposed(self, nodes: list[str]) -> tuple[bool, ...]:
        """For each input of a layer: whether it is a sequence to transpose first (`archc.analysis.orders`)."""
        flags = {self.gen.analysis.transposed(self.gen.nodes[n]) for n in nodes}
        if len(flags) > 1:
            raise TorchGenError(
                f"{self.cls.name}: a sequence reaches '{nodes[0].rsplit('.', 1)[-1]}' held batch x C x L in one "
                "use of the class and batch x L x C in another; write the block twice"
            )
        return flags.pop()

    def layer(self, local: str, src: str, dst: str) -> str:
        nodes = self.nodes(local)
        node = self.gen.nodes[nodes[0]]
        emitted = HANDLERS[node.kind](_Ctx(self, node.exprs, node.kind, local, nodes))
        if any(self.transposed(nodes)):  # a sequence from a convolution to a sequence layer, or back
            emitted.steps.insert(0, Step(None, call="{x}.transpose(1, 2)"))
        out = self.steps(emitted.steps, src, dst, emitted.helpers)
        self.cur = nodes
        if emitted.channels is not KEEP:
            self.chan = emitted.channels
        return out

    def residual(self, merge: W.Merge, src: str, dst: str) -> str:
        start, chan = self.cur, self.chan
        keep = src
        if src == dst:
            keep = self.local("identity")
            self.fwd.append(f"{keep} = {src}")
        body = self.seq(merge.branches[0], src, dst)
        body_chan = self.chan
        self.cur, self.chan = start, chan
        short = keep
        if len(merge.branches) > 1:  # a written shortcut; else the identity
            short = self.seq(merge.branches[1], keep, self.local("shortcut"))
        ctx = _Ctx(self, None, "add", merge.node, self.nodes(merge.node))
        ctx.operands = _transposing([body, short], self.transposed(self.nodes(merge.node)))
        out = self.steps(HANDLERS["add"](ctx).steps, src, dst)
        self.cur = self.nodes(merge.node)
        self.chan = body_chan if body_chan is not None else self.chan
        return out

    def merge(self, merge: W.Merge, src: str, dst: str) -> str:
        """concat, add or multiply: each branch from the same input, then the merge of their outputs."""
        start, chan = self.cur, self.chan
        outs, chans = [], []
        for branch in merge.branches:
            self.cur, self.chan = start, chan
            outs.append(self.seq(branch, src, self.local("branch")))
            chans.append(self.chan)
        kind = self.gen.nodes[self.nodes(merge.node)[0]].kind
        ctx = _Ctx(self, None, kind, merge.node, self.nodes(merge.node))
        ctx.operands = _transposing(outs, self.transposed(self.nodes(merge.node)))
        out = self.steps(HANDLERS[kind](ctx).steps, src, dst)
        self.cur = self.nodes(merge.node)
        if kind == "concat":
            try:
                self.chan = None if any(c is None for c in chans) else E.add([c for c in chans if c is not None])
            except E.NotSymbolic:  # too long a sum to write: the channels are passed as numbers
                self.chan = None
        else:  # an elementwise merge keeps the channels every branch ends with
            self.chan = next((c for c in chans if c is not None), None)
        return out

    # --- assembly --------------------------------------------------------------------------------
    def write(self) -> None:
        out = self.seq(self.body, "x", "x")
        self.cls.out = self.chan
        sig = ["self"]
        if not self.is_network:
            sig.append("in_channels: int")
        pre: list[str] = []
        if _default_first(self.cls.params):
            # `block B(K=2, S)` is a valid spec but `def __init__(self, K=2, S)` is not
            # Python: keyword-only parameters may come in any order (calls pass them by name).
            sig.append("*")
        for p in self.cls.params:
            ann = annotation([env[p.py] for env in self.envs])
            if p.default is None:
                sig.append(f"{p.py}: {ann}")
            elif isinstance(p.default, E.Const):
                sig.append(f"{p.py}: {ann} = {E.render(p.default)}")
            else:  # a default computed from earlier parameters
                sig.append(f"{p.py}: {ann} | None = None")
                pre.append(f"if {p.py} is None:\n    {p.py} = {E.render(p.default)}")
        if self.hoisted and "*" not in sig:
            sig.append("*")
            sig += [f"{name}: {ann}" for name, ann in self.hoisted]
        lines = [f"class {self.cls.name}(nn.Module):", f'    """{self.doc}"""', ""]
        head = f"    def __init__({', '.join(sig)}) -> None:"
        if len(head) > 100:
            head = "    def __init__(\n" + "".join(f"        {s},\n" for s in sig) + "    ) -> None:"
        lines.append(head)
        ties = self.gen.ties() if self.is_network else []
        for line in [*pre, "super().__init__()", *map(_wrap, self.init), *ties]:
            lines.append("        " + line.replace("\n", "\n        "))
        lines += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
        lines += [f"        {line}" for line in [*self.fwd, f"return {out}"]]
        self.cls.source = "\n".join(lines) + "\n"
        self.gen.order.append(self.cls)


def _default_first(params: Sequence[ClassParam]) -> bool:
    """Whether a parameter with a default comes before one without."""
    seen_default = False
    for p in params:
        if p.default is not None:
            seen_default = True
        elif seen_default:
            return True
    return False


def _transposing(operands: list[str], flags: Sequence[bool]) -> list[str]:
    return [f"{op}.transpose(1, 2)" if flag else op for op, flag in zip(operands, flags, strict=True)]


def _attribute_path(name: str) -> str:
    """A dotted layer name as Python attribute access: `h.0.fc` -> `h[0].fc` (repeat copies are indexed)."""
    out = ""
    for part in name.split("."):
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out.lstrip(".")


def problems(analysis: Analysis) -> list[Diagnostic]:
    """Names the spec may use but a module attribute cannot take (`forward`, `class`): E113,
    once per written name, in source order."""
    written: dict[Span, tuple[str, str | None]] = {}
    for name, label in [
        *((n.name, n.label) for n in analysis.graph.nodes),
        *((s.path, s.label) for s in analysis.graph.scopes),
    ]:
        if label is not None:
            written.setdefault(label, (name.rpartition(".")[2], None))
    for scope in analysis.graph.scopes:  # a call named after its block: `__Inner` makes `__inner1`
        if scope.label is None and scope.kind is ScopeKind.CALL:
            written.setdefault(scope.span, (scope.path.rpartition(".")[2], scope.block))
    return [
        torch_name_diagnostic(local, span, error=True, block=block)
        for span, (local, block) in sorted(written.items())
        if reserved_in_torch(local)
    ]


def generate_source(analysis: Analysis, spec_path: str = "") -> str:
    """The network as standalone PyTorch source (deterministic: same spec, same text).

    `spec_path` is the spec's file, which the header names. Raises `TargetError`
    with `problems(analysis)` when there are any.
    """
    return _generate(analysis, spec_path)[0]


def _generate(analysis: Analysis, spec_path: str) -> tuple[str, str]:
    diags = problems(analysis)
    if diags:
        raise TargetError(diags)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, _DEEPEST * 50))  # a few dozen frames a level, at most
    try:
        return _Generator(analysis, spec_path).generate()
    finally:
        sys.setrecursionlimit(old)


def build_module(analysis: Analysis) -> torch.nn.Module:
    """A live module built by executing exactly the source `generate_source` writes.

    It is in training mode, as a fresh torchvision model is; call `.eval()`.
    """
    try:
        import torch  # noqa: F401 - fail here, clearly, when torch is missing
    except ImportError as exc:
        raise TorchGenError(f"building a PyTorch module needs torch: {TORCH_INSTALL}") from exc
    source, name = _generate(analysis, "")
    filename = f"<archc {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks show the code
    namespace: dict[str, Any] = {"__name__": f"archc_generated_{name}"}
    exec(compile(source, filename, "exec"), namespace)
    try:
        module: torch.nn.Module = namespace[name]()
    except Exception as exc:  # any torch failure becomes one error, located in the spec
        raise TargetError([_build_failure(analysis, filename, source, exc)]) from exc
    return module


_ASSIGNED = re.compile(r"\s*self\.(\w+)\s*=")


def _build_failure(analysis: Analysis, filename: str, source: str, exc: BaseException) -> Diagnostic:
    """E604 at the layer of the spec whose PyTorch module could not be built.

    The generated constructors being run when torch failed say which: the
    attribute each one was assigning (`self.layer1 = ...`, then `self.conv1 =
    ...` inside it) is the node's dotted path, up to the copies of a repeat.
    """
    import traceback

    lines = source.splitlines()
    attrs = [
        m.group(1)
        for frame, lineno in traceback.walk_tb(exc.__traceback__)
        if frame.f_code.co_filename == filename and 1 <= lineno <= len(lines)
        for m in [_ASSIGNED.match(lines[lineno - 1])]
        if m is not None
    ]
    node = _node_at(analysis, attrs)
    what = node.name if node is not None else analysis.graph.network
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return error(
        "E604",
        f"PyTorch could not build {what}: {first}",
        node.span if node is not None else analysis.graph.input_span,
        "the spec is valid; PyTorch refused this layer (too large for memory, or a value it does not take)",
    )


def _node_at(analysis: Analysis, attrs: list[str]) -> Node | None:
    """The first node whose dotted name holds `attrs` in order, ending with the last (repeat copies aside)."""
    if not attrs:
        return None
    for node in analysis.graph.nodes:
        parts = node.name.split(".")
        if parts[-1] != attrs[-1]:
            continue
        rest = iter(parts)
        if all(a in rest for a in attrs):
            return node
    return None
