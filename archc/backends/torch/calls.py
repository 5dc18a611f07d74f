"""Block calls and repeats in the PyTorch back-end: one generated class constructing another.

`ClassWriter` (`archc.backends.torch.generate`) hands each block call and repeat of the
class it writes to `call` or `repeat` here. A call becomes one attribute,
`self.layer1 = Basic(64, K=64)`, each argument written by the writer's rule
(the spec's expression where it gives the IR's value in every instance, else
a literal, else an argument of the calling class). A repeat becomes an
`nn.Sequential` of its copies: listed one by one, as a generator when many
copies after the first are alike, or as a list comprehension over
`range(count)` when the count differs between instances or is a parameter of
the block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from archc.backends.torch import pyexpr as E
from archc.backends.torch.layers import Step
from archc.backends.torch.plan import ClassPlan
from archc.ir.written import Expr

if TYPE_CHECKING:
    from archc.backends.torch.generate import ClassWriter

_COMPRESS_AFTER = 4  # a repeat of more identical copies is written as a generator


def _call_args(
    w: ClassWriter, cls: ClassPlan, paths: list[str], inputs: list[str], written: Mapping[str, Expr] | None
) -> list[tuple[str | None, E.Sym | None, list[Any]]]:
    """The constructor arguments of a callee: (keyword or None for in_channels, expression, values).

    `written` are the block call's arguments as written; None for a repeat body's class.
    """
    gen = w.gen
    args: list[tuple[str | None, E.Sym | None, list[Any]]] = [
        (None, None, [gen.shape(i).channels for i in inputs])
    ]
    for p in cls.params:
        values = [gen.inst_env[path][p.spec] for path in paths]
        if written is None:  # a repeat body's class takes the free parameters of its body
            args.append((p.py, E.Var(w.names[p.spec]), values))
        elif p.spec in written:  # else the callee's default gives the value, as it did in the IR
            try:
                sym: E.Sym | None = E.from_ir(written[p.spec], w.names)
            except E.NotSymbolic:
                sym = None
            args.append((p.py, sym, values))
        elif p.passed:  # a default the callee cannot write: its values, as numbers
            args.append((p.py, None, values))
    for h in cls.hoisted:
        args.append((h, None, [cls.values[path][h] for path in paths]))
    return args


def _construct(w: ClassWriter, cls: ClassPlan, args: list[tuple[str | None, E.Sym | None, list[Any]]], in_sym: E.Sym | None, hint: str) -> tuple[str, E.Sym | None]:
    """`Basic(64, K=64)`, and the callee's output channels in this class's names."""
    parts = []
    mapping: dict[str, E.Sym] = {}
    for kw, sym, values in args:
        r = w.check(in_sym if kw is None else sym, values, f"{hint}_{kw or 'in_channels'}")
        parts.append(r.text if kw is None else f"{kw}={r.text}")
        mapping[kw or "in_channels"] = r.sym
    return f"{cls.name}({', '.join(parts)})", _out_channels(cls, mapping)


def _out_channels(cls: ClassPlan, mapping: dict[str, E.Sym]) -> E.Sym | None:
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


def call(w: ClassWriter, local: str, block: str, src: str, dst: str) -> str:
    """A block call: one attribute, an instance of the block's class."""
    cls = w.gen.block_class(block)
    paths = w.nodes(local)
    written = w.gen.scopes[paths[0]].arg_exprs
    text, w.chan = _construct(w, cls, _call_args(w, cls, paths, w.cur, written), w.chan, local)
    out = w.steps([Step(local, text)], src, dst)
    w.cur = [w.gen.scopes[p].output for p in paths]
    return out


def repeat(w: ClassWriter, local: str, src: str, dst: str) -> str:
    """A repeat: one attribute, an `nn.Sequential` of its copies."""
    gen = w.gen
    paths = w.nodes(local)
    repeats = [gen.scopes[p] for p in paths]
    counts = [r.args["count"] for r in repeats]
    if not any(counts):  # no copies anywhere: no class to write (and no instance to write it from)
        return w.steps([Step(local, "nn.Sequential()")], src, dst)
    # A copy is an instance of a block when the repeat's body is one call of it
    # (its arguments as written are then the copy's), else of the body's own class.
    first = next(gen.scopes[f"{r.path}.0"] for r in repeats if r.args["count"])
    written: Mapping[str, Expr] | None = first.arg_exprs if first.block is not None else None
    if first.block is not None:
        cls = gen.block_class(first.block)
    else:
        cls = gen.body_class(w, local, repeats[0].reads)
    # copies[i][k]: (path, input node) of copy k in instance i
    copies: list[list[tuple[str, str]]] = []
    for p, n, cur in zip(paths, counts, w.cur, strict=True):
        row, inp = [], cur
        for k in range(n):
            row.append((f"{p}.{k}", inp))
            inp = gen.scopes[f"{p}.{k}"].output
        copies.append(row)
    symbolic = False
    if not w.is_network:  # keep `range(N - 1)` when the count is the block's parameter
        try:
            count_sym = E.from_ir(repeats[0].arg_exprs["count"], w.names)
            symbolic = bool(E.variables(count_sym)) and all(
                E.same(E.evaluate(count_sym, env), n) for env, n in zip(w.envs, counts, strict=True)
            )
        except E.NotSymbolic:
            symbolic = False
    if all(n == counts[0] for n in counts) and not symbolic:
        text = _explicit_copies(w, cls, copies, counts[0], written, local)
    else:
        text = _copies_loop(w, repeats[0].arg_exprs["count"], cls, copies, counts, written, local)
    out = w.steps([Step(local, text)], src, dst)
    w.cur = [gen.scopes[p].output for p in paths]
    return out


def _explicit_copies(
    w: ClassWriter, cls: ClassPlan, copies: list[list[tuple[str, str]]], n: int, written: Mapping[str, Expr] | None, local: str
) -> str:
    items = []
    for k in range(n):
        paths = [row[k][0] for row in copies]
        inputs = [row[k][1] for row in copies]
        text, w.chan = _construct(w, cls, _call_args(w, cls, paths, inputs, written), w.chan, f"{local}_{k}")
        items.append(text)
    if n > _COMPRESS_AFTER and all(t == items[1] for t in items[2:]):
        return f"nn.Sequential({items[0]}, *({items[1]} for _ in range({n - 1})))"
    return f"nn.Sequential({', '.join(items)})"


def _copies_loop(
    w: ClassWriter,
    times: Expr,
    cls: ClassPlan,
    copies: list[list[tuple[str, str]]],
    counts: list[int],
    written: Mapping[str, Expr] | None,
    local: str,
) -> str:
    """`nn.Sequential(*[Basic(K, K=K) for i in range(N)])`: the count differs between instances."""
    try:
        count_sym: E.Sym | None = E.from_ir(times, w.names)
    except E.NotSymbolic:
        count_sym = None
    count = w.check(count_sym, counts, f"{local}_count")
    # per_copy[i][k]: the call_args of copy k in instance i
    per_copy = [[_call_args(w, cls, [path], [inp], written) for path, inp in row] for row in copies]
    shape = next(row[0] for row in per_copy if row)  # some instance has a copy, or counts agree
    rendered: dict[str, tuple[str, E.Sym | None]] = {}
    for j, (kw, sym, _) in enumerate(shape):
        if kw is not None:
            values = [[args[j][2][0] for args in row] for row in per_copy]
            rendered[kw] = _loop_arg(w, sym, sym, values, f"{local}_{kw}")
    mapping = {kw: used for kw, (_, used) in rendered.items() if used is not None}
    # copies after the first take the channels the previous copy gave
    marker = "in_channels_of_copy"
    rest = _out_channels(cls, {**mapping, "in_channels": E.Var(marker)})
    if rest is not None and marker in E.variables(rest):
        rest = None
    values = [[args[0][2][0] for args in row] for row in per_copy]
    text, used = _loop_arg(w, w.chan, rest, values, f"{local}_in_channels")
    parts = [text, *(f"{kw}={t}" for kw, (t, _) in rendered.items())]
    w.chan = rest if rest is not None else (used if used is not None and cls.out is None else None)
    if cls.out is None:
        w.chan = None
    var = "i" if any("i == 0" in p or "[i]" in p for p in parts) else "_"
    return f"nn.Sequential(*[{cls.name}({', '.join(parts)}) for {var} in range({count.text})])"


def _loop_arg(
    w: ClassWriter, first: E.Sym | None, rest: E.Sym | None, values: list[list[Any]], hint: str
) -> tuple[str, E.Sym | None]:
    """One argument of copy `i`: one expression for all, `a if i == 0 else b`, or a tuple per copy."""

    def fits(sym: E.Sym | None, pick: Any) -> bool:
        if sym is None:
            return False
        try:
            return all(
                E.same(E.evaluate(sym, env), v)
                for env, row in zip(w.envs, values, strict=True)
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
    name = w.hoist(hint, [tuple(row) for row in values])
    return f"{name}[i]", None

