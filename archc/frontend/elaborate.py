"""Syntax tree -> layer graph (`archc.ir.Graph`).

Resolves block calls (keyword arguments, defaults, integer arithmetic),
`repeat`, `residual`/`shortcut` and `concat`/`add`/`multiply` with their `branch`es into a DAG of built-in
layers with dotted hierarchical names, and resolves `expect` targets.

The naming rules (scopes, levels, generated names such as `conv1`) are stated
and applied in `archc.frontend.naming`; expressions are evaluated by `archc.frontend.evaluate`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from archc.diagnostics import Diagnostic, Names, Note, did_you_mean, did_you_mean_path, error, warning
from archc.frontend import naming
from archc.frontend import syntax as S
from archc.frontend.evaluate import UNKNOWN, as_written, check_unknown, fail, parameters_used, reads_parameter

# Re-exported: the tests import these from here.
from archc.frontend.evaluate import ElaborationError as ElaborationError
from archc.frontend.evaluate import evaluate as evaluate
from archc.frontend.naming import RESERVED_NAMES as RESERVED_NAMES
from archc.frontend.naming import ScopeState
from archc.ir import INPUT, Assertion, Graph, Layout, Node, Scope, ScopeKind, Shape, Span, written_layout
from archc.ir.layout import WRITTEN
from archc.ir.written import Block, BlockParam, Expr, Merge, Step, call_text
from archc.kinds import KINDS, USER_KINDS, Key, KeyType, coerce, show_value
from archc.limits import DEFAULT_MAX_LAYERS, MAX_DEPTH

QUANTITIES = ("params", "weights", "biases", "macs", "output")
TIE_OWNERS = ("embedding", "fc")  # the kinds whose weight `fc ... tie=NAME` may share
# What a statement that failed to elaborate outputs: never a node's name, so the nodes
# after it read an input nobody produces, and the analysis leaves them without facts.
FAILED = "?"


# --- statement helpers --------------------------------------------------------------------
def attach_shortcuts(stmts: Sequence[S.Stmt], diags: list[Diagnostic]) -> list[S.Stmt]:
    """Join a `shortcut {...}` written on its own line to the residual before it."""
    out: list[S.Stmt] = []
    for st in stmts:
        if isinstance(st, S.Shortcut):
            prev = out[-1] if out else None
            if isinstance(prev, S.Residual) and prev.shortcut is None and prev.arrow is None:
                out[-1] = prev._replace(shortcut=st.body, shortcut_keyword=st.span, shortcut_braces=st.braces)
            else:
                diags.append(
                    error(
                        "E130",
                        "'shortcut' must follow a residual { ... }",
                        st.span,
                        "write `residual { ... } shortcut { ... }`",
                    )
                )
            continue
        out.append(st)
    return out


def call_arguments(block: S.BlockDef, st: S.LayerStmt) -> dict[str, S.Expr]:
    """A block call's arguments by parameter name: `Fire SQ=16 E=64`, or (archc adds
    this, as layers take `fc 4096`) positionally in the parameters' order, `Fire 16 64`."""
    params = {p.name: p for p in block.params}
    if len(st.positional) > len(block.params):
        extra = st.positional[len(block.params)]
        names = ", ".join(params) or "none"
        raise fail(
            "E105",
            f"block {block.name} {takes_positional(len(st.positional), tuple(params))}",
            extra.span,
            f"parameters of {block.name}: {names}" if params else f"{block.name} has no parameters: write `{block.name}` alone",
        )
    given: dict[str, S.Expr] = {p.name: e for p, e in zip(block.params, st.positional, strict=False)}
    for kw in st.keywords:
        if kw.key not in params:
            hint = did_you_mean(kw.key, list(params)) or f"parameters of {block.name}: {', '.join(params) or 'none'}"
            raise fail("E106", f"block {block.name} has no parameter '{kw.key}'", kw.span, hint)
        if kw.key in given:
            raise fail("E102", f"{kw.key} is given twice", kw.span)
        given[kw.key] = kw.value
    return given


# What other frameworks and papers call a kind (lower-cased, without `_`): `deconv` is not a
# misspelling of `conv`, and `linear` is no spelling of anything here.
OTHER_NAMES = {
    "deconv": "convtranspose",
    "deconvolution": "convtranspose",
    "transposedconv": "convtranspose",
    "conv1d": "conv",
    "conv2d": "conv",
    "conv3d": "conv",
    "convolution": "conv",
    "convtranspose1d": "convtranspose",
    "convtranspose2d": "convtranspose",
    "convtranspose3d": "convtranspose",
    "linear": "fc",
    "dense": "fc",
    "fullyconnected": "fc",
    "maxpool1d": "maxpool",
    "maxpool2d": "maxpool",
    "maxpool3d": "maxpool",
    "maxpooling2d": "maxpool",
    "avgpool1d": "avgpool",
    "avgpool2d": "avgpool",
    "avgpool3d": "avgpool",
    "averagepooling2d": "avgpool",
    "adaptiveavgpool2d": "adaptiveavgpool",
    "globalaveragepooling2d": "globalavgpool",
    "globalavgpool2d": "globalavgpool",
    "batchnorm1d": "batchnorm",
    "batchnorm2d": "batchnorm",
    "batchnorm3d": "batchnorm",
    "batchnormalization": "batchnorm",
    "bn": "batchnorm",
    "localresponsenorm": "lrn",
    "upsampling2d": "upsample",
    "interpolate": "upsample",
    "swish": "silu",
    "embed": "embedding",
    "multiheadattention": "attention",
    "mha": "attention",
}


def other_name(kind: str) -> str | None:
    """The hint for a kind written by another framework's name.

    >>> other_name("deconv"), other_name("Conv2d"), other_name("cnov")
    ("did you mean 'convtranspose'? (archc's name for deconv)", "did you mean 'conv'? (archc's name for Conv2d)", None)
    """
    ours = OTHER_NAMES.get(kind.lower().replace("_", ""))
    return f"did you mean '{ours}'? (archc's name for {kind})" if ours is not None else None


def example_of(kind: str, key: str) -> str:
    """The key as the kind's example line writes it: `select -1` (not `select 4096`), `conv K=8`.

    >>> example_of("select", "index"), example_of("conv", "F"), example_of("fc", "N")
    ('select -1', 'conv F=3', 'fc 10')
    """
    spec = KINDS[kind]
    words = spec.example.split()
    if spec.positional == key and len(words) > 1 and "=" not in words[1]:
        return f"{kind} {words[1]}"
    written = next((w for w in words if w.startswith(f"{key}=")), f"{key}=3")
    return f"{kind} {written}"


def takes_positional(given: int, names: tuple[str, ...]) -> str:
    """The one wording of a layer or block call given more positional values than it takes.

    >>> takes_positional(1, ()), takes_positional(2, ("N",)), takes_positional(3, ("SQ", "E"))
    ('takes no positional value', 'takes one positional value (N), not 2', 'takes 2 positional values (SQ, E), not 3')
    """
    if not names:
        return "takes no positional value"
    count = "one positional value" if len(names) == 1 else f"{len(names)} positional values"
    return f"takes {count} ({', '.join(names)}), not {given}"


def names_read(stmts: Sequence[S.Stmt]) -> tuple[str, ...]:
    """Every name a body reads, in order of first use (the free parameters of a repeat's body).

    >>> from archc.frontend.parser import parse
    >>> prog, _ = parse("repeat N { conv K=K*E F=3; fc M }")
    >>> names_read(prog.statements[0].body)
    ('K', 'E', 'M')
    """
    out: dict[str, None] = {}
    for st in S.walk(stmts):
        exprs: Sequence[S.Expr] = ()
        if isinstance(st, S.LayerStmt):
            exprs = (*st.positional, *(kw.value for kw in st.keywords))
        elif isinstance(st, S.Repeat):
            exprs = (st.times,)
        todo = list(reversed(exprs))
        while todo:
            e = todo.pop()
            if isinstance(e, S.Ref):
                out.setdefault(e.name)
            elif isinstance(e, S.BinOp):
                todo += [e.right, e.left]
            elif isinstance(e, S.Neg):
                todo.append(e.operand)
    return tuple(out)


def local_name(name: str) -> str:
    """`layer1.0.conv1` -> `conv1`: a name within its scope."""
    return name.rpartition(".")[2]


def _what_key(key: Key) -> str:
    """What a key is, for a message: its doc (which reads after "S is"), or (a key documented
    by nobody) its type.

    `lrn alpha=x` said "alpha is the " when the doc was empty.

    >>> from archc.kinds import KeyType
    >>> _what_key(Key("alpha", KeyType.FLOAT, 1e-4)), _what_key(Key("S", KeyType.SIZES, 1, "the stride"))
    ('a number', 'the stride')
    """
    return key.doc or f"a {key.type}"


class _OverBudget(Exception):
    """E140 was reported: elaboration stops (every later statement would cross the limit too)."""


class _Builder:
    def __init__(
        self, blocks: dict[str, S.BlockDef], max_layers: int = DEFAULT_MAX_LAYERS, abstract: bool = False
    ) -> None:
        self.blocks = blocks
        self.max_layers = max_layers
        self.units = 0  # layers made, plus one per repeat copy or block instance that made none
        self.sizes: dict[tuple[int, tuple[tuple[str, Any], ...]], int] = {}  # `size` of a body in an env
        # Checking bodies without a call (`check_bodies`): parameters are UNKNOWN, what
        # depends on them goes unchecked, and a call is bound but not elaborated.
        self.abstract = abstract
        self.nodes: list[Node] = []
        self.scopes: list[Scope] = []
        self.arrows: list[tuple[str, S.ShapeLit]] = []
        self.diags: list[Diagnostic] = []
        self.torch_warned: set[Span] = set()
        self.names: set[str] = set()
        self.counted = self.errors = 0  # of `diags`, for `error_count`
        self.names_index: Names | None = None
        self.written: dict[int, frozenset[str]] = {}  # names written in a body (by its id), for `enter`
        self.by_name: dict[str, Node] = {}
        # What each statement wrote, converted once however many instances it has (keyed
        # by id: the syntax tree outlives elaboration, and its tuples compare by value).
        self.exprs_of: dict[int, dict[str, Expr]] = {}
        self.reads_of: dict[int, tuple[str, ...]] = {}
        self.holes = False  # an error node of the syntax tree was met: the graph lacks what it said
        # The block calls being elaborated, outermost first: an error in a body gets them
        # as notes (`in B K=-8, called at net.arch:12:1`), like rustc's macro backtraces.
        # (A frame is made a Note only when an error needs it: 20,000 calls build no text.)
        self.frames: list[tuple[str, S.LayerStmt, dict[str, Any]]] = []

    def value(self, expr: S.Expr, env: dict[str, Any]) -> Any:
        """`evaluate`, or when checking a body without a call and `expr` reads a parameter,
        UNKNOWN once what no value could mend (an undefined name, `/`) is checked."""
        if self.abstract and reads_parameter(expr, env):
            check_unknown(expr, env)
            return UNKNOWN
        return evaluate(expr, env)

    def report(self, exc: ElaborationError) -> None:
        """Keep an error's diagnostics, with the calls that led to it (innermost first)."""
        calls = tuple(
            Note(
                f"in {call_text(block, self.exprs_of[id(st)], args)}, called",
                st.label.span if st.label is not None else st.span,
            )
            for block, st, args in reversed(self.frames)
        )
        self.diags.extend(d._replace(notes=calls) if calls and not d.notes else d for d in exc.diags)

    # names: the rules are archc.frontend.naming's
    def enter(self, path: str, stmts: Sequence[S.Stmt]) -> ScopeState:
        # the names written in a body are the same in each of its copies: found once
        written = self.written.get(id(stmts))
        if written is None:
            written = self.written[id(stmts)] = naming.written_in(stmts)
        return naming.enter(path, stmts, written)

    def name(
        self, scope: ScopeState, label: S.Label | None, prefix: str, span: Span, block: str | None = None
    ) -> str:
        """Claim a name in `scope`; `block`: the block an unnamed call is named after."""
        name = naming.claim(scope, label, prefix, span)
        if label is not None and naming.reserved_in_torch(label.name) and label.span not in self.torch_warned:
            self.torch_warned.add(label.span)  # once per written name, not once per instance
            self.diags.append(naming.torch_name_diagnostic(label.name, label.span, error=False))
        local = name.rpartition(".")[2]
        if label is None and block is not None and naming.reserved_in_torch(local) and span not in self.torch_warned:
            self.torch_warned.add(span)  # `__Inner` called unnamed is `__inner1`: mangled in a class
            self.diags.append(naming.torch_name_diagnostic(local, span, error=False, block=block))
        return name

    def tied_owner(self, st: S.LayerStmt, key: str, expr: S.Expr, scope: ScopeState) -> str:
        """`tie=wte`: the dotted name of the embedding or fc whose weight is shared (LANGUAGE.md
        "Tying": written earlier, in the same scope or an enclosing one). A tie to a tied fc
        names the weight's owner."""
        if not isinstance(expr, S.Ref):
            raise fail("E122", f"{key} takes the name of an earlier layer", expr.span, f"e.g. {key}=wte")
        parts = scope.path.split(".") if scope.path else []
        for depth in range(len(parts), -1, -1):
            name = ".".join([*parts[:depth], expr.name])
            owner = self.by_name.get(name)
            if owner is None:
                continue
            if owner.kind not in TIE_OWNERS:
                article = "an" if owner.kind[0] in "aeiou" else "a"
                raise fail(
                    "E122",
                    f"{key}={expr.name} names {article} {owner.kind} layer; a tied {st.kind} shares the "
                    f"weight of an {' or '.join(TIE_OWNERS)}",
                    expr.span,
                )
            tied: str | None = owner.attrs.get("tie")
            return tied if tied is not None else name
        scopes = {".".join(parts[:d]) for d in range(len(parts) + 1)}
        owners = [
            name.rsplit(".", 1)[-1]
            for name, node in self.by_name.items()
            if node.kind in TIE_OWNERS and name.rpartition(".")[0] in scopes
        ]
        hint = did_you_mean(expr.name, owners) or (
            f"the {' and '.join(TIE_OWNERS)} layers before it here: {', '.join(owners)}"
            if owners
            else f"a tie names an {' or '.join(TIE_OWNERS)} written before it, in its scope or an enclosing one"
        )
        raise fail("E122", f"{key}={expr.name}: no layer of that name before this one", expr.span, hint)

    # the budget: what a repeat or a call would make is counted before any of it is made
    def size(self, stmts: Sequence[S.Stmt], env: dict[str, Any]) -> int:
        """The layers `stmts` make in `env` (a repeat copy or block instance that makes none counts as one).

        Counted without building anything, each body once per environment, so a
        spec that doubles its layers at each of 22 nested blocks is refused in
        milliseconds. A value that does not evaluate counts 0: elaboration
        reports it where it is.
        """
        key = (id(stmts), tuple(sorted(env.items())))
        found = self.sizes.get(key)
        if found is not None:
            return found
        total = 0
        for st in stmts:
            if isinstance(st, S.LayerStmt):
                if st.kind in self.blocks:
                    try:
                        args = self.bind(self.blocks[st.kind], st, env)
                    except ElaborationError:
                        continue
                    total += max(1, self.size(self.blocks[st.kind].body, args))
                else:
                    total += 1
            elif isinstance(st, S.Repeat):
                try:
                    count = evaluate(st.times, env)
                except ElaborationError:
                    continue
                if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                    total += count * max(1, self.size(st.body, env))
            elif isinstance(st, S.Residual):
                total += 1 + self.size(st.body, env) + self.size(st.shortcut or (), env)
            elif isinstance(st, (S.Concat, S.Branch, S.Shortcut)):
                total += 1 + self.size(st.branches if isinstance(st, S.Concat) else st.body, env)
        self.sizes[key] = total
        return total

    def reserve(self, units: int, span: Span, what: str) -> None:
        """Refuse, before making them, `units` more layers past `--max-layers` (E140, at the statement)."""
        if self.units + units > self.max_layers:
            self.over_budget(span, f"{what} would make {self.units + units:,} layers")

    def over_budget(self, span: Span, why: str) -> NoReturn:
        self.diags.append(
            error(
                "E140",
                f"the network has more than {self.max_layers:,} layers: {why}",
                span,
                "check the repeat counts; if the network really is this large, raise --max-layers",
            )
        )
        raise _OverBudget

    def emit(self, node: Node) -> str:
        if self.units >= self.max_layers:  # what `reserve` did not foresee still stops at the limit
            self.over_budget(node.span, f"{node.name} is layer {self.units + 1:,}")
        self.units += 1
        self.nodes.append(node)
        self.names.add(node.name)
        self.by_name[node.name] = node
        return node.name

    # statements
    def run(
        self,
        stmts: Sequence[S.Stmt],
        scope: ScopeState,
        env: dict[str, Any],
        current: str,
        steps: list[Step],
    ) -> str:
        """Elaborate a statement list from `current`, recording each step; return the node of its output.

        A statement that fails (or did not parse) outputs `FAILED`: what follows it
        is still elaborated, for its names and its errors, but reads no known input.
        """
        for st in attach_shortcuts(stmts, self.diags):
            if isinstance(st, S.ErrorStmt):
                self.holes = True
                current = FAILED
                continue
            try:
                current = self.statement(st, scope, env, current, steps)
            except ElaborationError as exc:
                self.report(exc)
                current = FAILED
        return current

    def statement(
        self,
        st: S.Stmt,
        scope: ScopeState,
        env: dict[str, Any],
        current: str,
        steps: list[Step],
    ) -> str:
        if isinstance(st, S.LayerStmt):
            if st.kind in self.blocks:
                out = self.call(st, scope, env, current, steps)
            else:
                out = self.layer(st, scope, env, current)
                steps.append(local_name(out))
            return out
        if isinstance(st, S.Repeat):
            return self.repeat(st, scope, env, current, steps)
        if isinstance(st, S.Residual):
            start = current
            body: list[Step] = []
            body_out = self.run(st.body, scope, env, start, body)
            branches = [body]
            short_out = start
            if st.shortcut:
                branches.append([])
                short_out = self.run(st.shortcut, scope, env, start, branches[1])
            name = self.name(scope, st.label, "residual", st.span)
            out = self.emit(
                Node.model_construct(
                    name=name,
                    kind="add",
                    attrs={},
                    inputs=(body_out, short_out),
                    span=st.span,
                    scope=scope.path,
                    key_spans={},
                    exprs={},
                    label=st.label.span if st.label is not None else None,
                )
            )
            steps.append(
                Merge.model_construct(node=local_name(out), branches=tuple(map(tuple, branches)), residual=True)
            )
            self._arrow(out, st.arrow)
            return out
        if isinstance(st, S.Concat):
            return self.concat(st, scope, env, current, steps)
        if isinstance(st, S.Branch):
            raise fail("E131", "'branch' belongs inside concat, add or multiply { ... }", st.span)
        if isinstance(st, S.BlockDef):
            raise fail("E132", "blocks are defined at the top level", st.span)
        if isinstance(st, (S.InputDecl, S.NetworkDecl)):
            what = "input" if isinstance(st, S.InputDecl) else "network"
            raise fail("E133", f"'{what}' belongs at the top level, not inside a body", st.span)
        if isinstance(st, S.Expect):
            raise fail(
                "E134",
                "'expect' belongs at the top level",
                st.span,
                "name the block call and expect on it there: expect layer1.params = ...",
            )
        raise fail("E199", f"unexpected statement {type(st).__name__}", None)  # pragma: no cover

    def known(self, scope_paths: set[str]) -> Names:
        """Every layer and scope name, indexed once for the "did you mean" of failing `expect`s."""
        if self.names_index is None:
            self.names_index = Names(self.names | scope_paths)
        return self.names_index

    def error_count(self) -> int:
        """Errors reported so far (warnings not counted), in time linear in the diagnostics."""
        while self.counted < len(self.diags):
            self.errors += self.diags[self.counted].is_error
            self.counted += 1
        return self.errors

    def _arrow(self, target: str, arrow: S.ShapeLit | None) -> None:
        if arrow is not None:
            self.arrows.append((target, arrow))

    def missing_colon(self, st: S.LayerStmt) -> Diagnostic | None:
        """`conv1 conv K=96`: a name without its colon reads as the kind `conv1` with the
        value `conv`; said as such, with the fix as a "did you mean" (the editor applies it)."""
        if st.label is not None or not st.positional or not isinstance(st.positional[0], S.Ref):
            return None
        word = st.positional[0]
        known = KINDS.get(word.name)
        if word.parens or not ((known is not None and known.user) or word.name in self.blocks):
            return None
        span = Span(st.span.line, st.span.column, word.span.end_line, word.span.end_column)
        return error(
            "E100",
            f"unknown layer kind '{st.kind}': a layer's name is followed by ':'",
            span,
            f"did you mean '{st.kind}: {word.name}'?",
        )

    def layer(self, st: S.LayerStmt, scope: ScopeState, env: dict[str, Any], current: str) -> str:
        # Claim a written name first: when this line has another error, a second
        # `name:` in the scope is still reported as a duplicate.
        written = self.name(scope, st.label, st.kind, st.span) if st.label is not None else None
        kind = KINDS.get(st.kind)
        if kind is None or not kind.user:
            missing_colon = self.missing_colon(st)
            if missing_colon is not None:
                raise ElaborationError(missing_colon)
            candidates = [*USER_KINDS, *self.blocks]
            hint = other_name(st.kind) or did_you_mean(st.kind, candidates) or (
                f"built-in kinds: {', '.join(USER_KINDS)}"
                + (f"; blocks: {', '.join(self.blocks)}" if self.blocks else "")
            )
            raise fail("E100", f"unknown layer kind '{st.kind}'", st.span, hint)
        attrs: dict[str, Any] = {}
        key_spans: dict[str, Span] = {}
        # Every independent error of the line: `conv k=96 f=11 s=4` has three.
        problems: list[Diagnostic] = []
        takes = (kind.positional,) if kind.positional is not None else ()
        if len(st.positional) > len(takes):
            keys = ", ".join(k.name for k in kind.keys)
            problems.append(
                error(
                    "E103",
                    f"{st.kind} {takes_positional(len(st.positional), takes)}",
                    st.positional[len(takes)].span,
                    f"keys of {st.kind}: {keys}" if keys else f"{st.kind} takes no keys either: write `{st.kind}` alone",
                )
            )
        if st.positional and kind.positional is not None:
            key_spans[kind.positional] = st.positional[0].span
            attrs[kind.positional] = (st.positional[0], st.positional[0].span)
        for kw in st.keywords:
            key = kind.key(kw.key)
            if key is None:
                names = [k.name for k in kind.keys]
                hint = did_you_mean(kw.key, names) or (
                    f"keys of {st.kind}: {', '.join(names)}" if names else f"{st.kind} takes no keys"
                )
                problems.append(error("E101", f"unknown key '{kw.key}' for {st.kind}", kw.span, hint))
            elif kw.key in attrs:
                problems.append(error("E102", f"{kw.key} is given twice", kw.span))
            else:
                key_spans[kw.key] = kw.span
                attrs[kw.key] = (kw.value, kw.value.span)
        # A required key missing beside a refused one is most likely that one misspelled.
        refused = bool(problems)
        values: dict[str, Any] = {}
        for key in kind.keys:
            if key.name not in attrs:
                if key.required and not refused:
                    problems.append(
                        error(
                            "E104",
                            f"{st.kind} needs {key.name}, {_what_key(key)}",  # "conv needs K, the number of filters (output channels)"
                            st.span,
                            f"e.g. {example_of(st.kind, key.name)}",
                        )
                    )
                values[key.name] = key.default
                continue
            expr, span = attrs[key.name]
            try:
                if key.type is KeyType.NAME:
                    # a tie names a layer of the caller's scope too: checked at each call
                    values[key.name] = None if self.abstract else self.tied_owner(st, key.name, expr, scope)
                elif key.type is KeyType.CHOICE and isinstance(expr, S.Ref) and expr.name not in env:
                    values[key.name] = coerce(key, expr.name)  # `mode=cubic`: say which words it takes
                else:
                    value = self.value(expr, env)
                    values[key.name] = value if value is UNKNOWN else coerce(key, value)
            except ElaborationError as exc:  # an undefined name, a bad tie
                problems.extend(exc.diags)
            except ValueError as exc:
                used = parameters_used(expr, env)
                # a key's doc reads after "K is": "the stride", "whether to learn a bias per output"
                hint = f"computed with {used} from the block call" if used else f"{key.name} is {_what_key(key)}"
                if not used and not key.required and key.default is not None:  # None: the doc says what it means
                    hint += f" (default {key.name}={show_value(key.default)})"
                problems.append(error("E103", str(exc), span, hint))
        if problems:
            raise ElaborationError(*problems)
        name = written or self.name(scope, st.label, st.kind, st.span)
        exprs = self.exprs_of.get(id(st))
        if exprs is None:
            exprs = self.exprs_of[id(st)] = {key: as_written(expr) for key, (expr, _) in attrs.items()}
        out = self.emit(
            Node.model_construct(
                name=name,
                kind=st.kind,
                attrs=values,
                inputs=(current,),
                span=st.span,
                scope=scope.path,
                key_spans=key_spans,
                exprs=exprs,
                label=st.label.span if st.label is not None else None,
            )
        )
        self._arrow(out, st.arrow)
        return out

    def bind(self, block: S.BlockDef, st: S.LayerStmt, env: dict[str, Any]) -> dict[str, Any]:
        """Evaluate a call's arguments against the block's parameters."""
        written = call_arguments(block, st)
        if id(st) not in self.exprs_of:
            self.exprs_of[id(st)] = {name: as_written(value) for name, value in written.items()}
        given = {name: self.value(value, env) for name, value in written.items()}
        args: dict[str, Any] = {}
        for p in block.params:
            if p.name in given:
                args[p.name] = given[p.name]
            elif p.default is not None:
                args[p.name] = self.value(p.default, args)
            else:
                raise fail(
                    "E107",
                    f"block {block.name} needs {p.name}",
                    st.span,
                    f"e.g. {block.name} {p.name}=...",
                )
        return args

    def call(
        self,
        st: S.LayerStmt,
        scope: ScopeState,
        env: dict[str, Any],
        current: str,
        steps: list[Step],
        inline_into: ScopeState | None = None,
    ) -> str:
        """A block call: its body elaborated in a scope of its own, or (a repeat's sole
        statement) into the copy `inline_into`, whose steps are then `steps`."""
        block = self.blocks[st.kind]
        args = self.bind(block, st, env)
        if self.abstract:  # the call's arguments are checked; its block's body is checked once, apart
            self.name(scope, st.label, block.name.lower(), st.span)
            return FAILED
        if inline_into is not None:
            inner = inline_into
            body = steps
        else:
            self.reserve(max(1, self.size(block.body, args)), st.span, f"this call of {block.name}")
            path = self.name(scope, st.label, block.name.lower(), st.span, block.name)
            inner = self.enter(path, block.body)
            steps.append(local_name(path))
            body = []
        first = len(self.nodes)
        units = self.units
        self.frames.append((block.name, st, args))
        try:
            out = self.run(block.body, inner, args, current, body)
        finally:
            self.frames.pop()
        if inline_into is None and self.units == units:
            self.units += 1  # an instance without layers costs its scope
        if inline_into is None:
            self.scopes.append(
                Scope.model_construct(
                    path=inner.path,
                    kind=ScopeKind.CALL,
                    block=block.name,
                    args=args,
                    nodes=tuple(n.name for n in self.nodes[first:]),
                    output=out,
                    span=st.span if st.label is None else st.label.span,
                    label=st.label.span if st.label is not None else None,
                    arg_exprs=self.exprs_of[id(st)],
                    steps=tuple(body),
                    reads=(),
                )
            )
        # Inlined into a repeat copy (`repeat 2 { Basic K=64 -> 8x8x64 }`) the copy is
        # the instance, so the arrow checks the copy's output; it used to be dropped.
        self._arrow(inner.path, st.arrow)
        return out

    def repeat(
        self,
        st: S.Repeat,
        scope: ScopeState,
        env: dict[str, Any],
        current: str,
        steps: list[Step],
    ) -> str:
        count = self.value(st.times, env)
        if count is not UNKNOWN and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise fail("E108", f"repeat count must be a whole number >= 0, not {count}", st.times.span)
        if self.abstract:
            count = 1  # its copies are alike: the body once, even of `repeat 0`
        path = self.name(scope, st.label, "repeat", st.span)
        steps.append(local_name(path))
        if id(st) not in self.exprs_of:
            self.exprs_of[id(st)] = {"count": as_written(st.times)}
            self.reads_of[id(st)] = names_read(st.body)
        first = len(self.nodes)
        body = attach_shortcuts(st.body, [])
        if not self.abstract:  # checking a body makes one copy of each repeat, whatever its count
            self.reserve(count * max(1, self.size(body, env)), st.span, f"{count:,} copies of this repeat")
        sole_call = (
            len(body) == 1
            and isinstance(body[0], S.LayerStmt)
            and body[0].label is None
            and body[0].kind in self.blocks
        )
        for i in range(count):
            copy_path = f"{path}.{i}"
            copy = self.enter(copy_path, body if not sole_call else self.blocks[body[0].kind].body)  # type: ignore[union-attr]
            copy_first = len(self.nodes)
            units = self.units
            block_name = None
            args: dict[str, Any] = {}
            # Only errors end the copies: a warning (W002 for a layer named `forward`)
            # once truncated the repeat to one copy, and the network to a third of its params.
            errors_before = self.error_count()
            arg_exprs: dict[str, Expr] = {}
            copy_steps: list[Step] = []
            if sole_call:
                call = body[0]
                assert isinstance(call, S.LayerStmt)
                try:
                    block_name = call.kind
                    args = self.bind(self.blocks[call.kind], call, env)
                    arg_exprs = self.exprs_of[id(call)]
                    current = self.call(call, scope, env, current, copy_steps, inline_into=copy)
                except ElaborationError as exc:
                    self.report(exc)
                    current = FAILED
            else:
                current = self.run(st.body, copy, env, current, copy_steps)
            if self.error_count() > errors_before:
                # Every later copy would report the same errors again.
                return current
            if self.units == units:
                self.units += 1  # a copy without layers costs its scope
            self.scopes.append(
                Scope.model_construct(
                    path=copy_path,
                    kind=ScopeKind.COPY,
                    block=block_name,
                    args=args,
                    nodes=tuple(n.name for n in self.nodes[copy_first:]),
                    output=current,
                    span=st.span,
                    label=None,
                    arg_exprs=arg_exprs,
                    steps=tuple(copy_steps),
                    reads=(),
                )
            )
        self.scopes.append(
            Scope.model_construct(
                path=path,
                kind=ScopeKind.REPEAT,
                block=None,
                args={"count": count},
                nodes=tuple(n.name for n in self.nodes[first:]),
                output=current,
                span=st.span,
                label=st.label.span if st.label is not None else None,
                arg_exprs=self.exprs_of[id(st)],
                steps=(),
                reads=self.reads_of[id(st)],
            )
        )
        self._arrow(path, st.arrow)
        return current

    def concat(
        self,
        st: S.Concat,
        scope: ScopeState,
        env: dict[str, Any],
        current: str,
        steps: list[Step],
    ) -> str:
        outs: list[str] = []
        branches: list[tuple[Step, ...]] = []
        for item in st.branches:
            if not isinstance(item, S.Branch):
                span = getattr(item, "span", st.span)
                raise fail(
                    "E131",
                    f"{st.op} {{ ... }} holds only branch {{ ... }} bodies",
                    span,
                    f"wrap the layers: {st.op} {{ branch {{ conv K=64 F=1 }} branch {{ ... }} }}",
                )
            branch: list[Step] = []
            outs.append(self.run(item.body, scope, env, current, branch))
            branches.append(tuple(branch))
        if not outs:
            raise fail("E131", f"{st.op} needs at least one branch", st.span)
        name = self.name(scope, st.label, st.op, st.span)
        out = self.emit(
            Node.model_construct(
                name=name,
                kind=st.op,
                # a written `add` broadcasts per-channel branches; a residual's sum (also `add`) does not
                attrs={"broadcast": True} if st.op == "add" else {},
                inputs=tuple(outs),
                span=st.span,
                scope=scope.path,
                key_spans={},
                exprs={},
                label=st.label.span if st.label is not None else None,
            )
        )
        steps.append(Merge.model_construct(node=local_name(out), branches=tuple(branches), residual=False))
        self._arrow(out, st.arrow)
        return out


def _block_cycles(blocks: dict[str, S.BlockDef]) -> list[Diagnostic]:
    """A block that calls itself, directly or through others, is an error.

    One depth-first search over the call graph (linear in its size: a chain
    of 20,000 nested blocks must not take quadratic time); a call to a block
    still on the search path closes a cycle, reported at that call. Since
    calls name blocks statically, elaboration cannot recurse once this passes.
    """

    callees = {
        name: [st for st in S.walk(block.body) if isinstance(st, S.LayerStmt) and st.kind in blocks]
        for name, block in blocks.items()
    }
    diags: list[Diagnostic] = []
    on_path: dict[str, int] = {}  # block -> its index in `path`
    done: set[str] = set()
    for root in blocks:
        if root in done:
            continue
        path = [root]
        on_path[root] = 0
        todo = [iter(callees[root])]
        while todo:
            call = next(todo[-1], None)
            if call is None:
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                todo.pop()
            elif call.kind in on_path:
                chain = " -> ".join((*path[on_path[call.kind] :], call.kind))
                diags.append(
                    error(
                        "E112",
                        f"block {call.kind} calls itself ({chain})",
                        call.span,
                        "a block cannot contain itself; to stack copies, use `repeat N { ... }` at the call site",
                    )
                )
            elif call.kind not in done:
                on_path[call.kind] = len(path)
                path.append(call.kind)
                todo.append(iter(callees[call.kind]))
    return diags


def _too_deep(blocks: dict[str, S.BlockDef], body: Sequence[S.Stmt]) -> Diagnostic | None:
    """E142 at the first top-level statement whose bodies and block calls nest past MAX_DEPTH.

    The parser bounds the braces written inside each other; a chain of blocks
    that call each other nests as deeply without a brace in sight (20,000
    blocks, each calling the next). Each block's depth is found once, in an
    iterative walk of the call graph (which has no cycles here).
    """
    calls = {name: {st.kind for st in S.walk(b.body) if isinstance(st, S.LayerStmt) and st.kind in blocks} for name, b in blocks.items()}
    depth: dict[str, int] = {}
    for root in blocks:
        todo = [(root, iter(calls[root]))]
        while todo:
            name, callees = todo[-1]
            callee = next(callees, None)
            if callee is None:
                depth[name] = _nesting(blocks[name].body, blocks, depth)
                todo.pop()
            elif callee not in depth:
                todo.append((callee, iter(calls[callee])))
    for st in body:
        levels = _nesting((st,), blocks, depth)
        if levels > MAX_DEPTH:
            return error(
                "E142",
                f"nested too deeply: blocks, repeats and bodies inside each other reach {levels:,} levels "
                f"here, more than {MAX_DEPTH}",
                st.span,
                f"a spec nests at most {MAX_DEPTH} levels; a longer sequence is written `repeat N {{ ... }}`",
            )
    return None


def _nesting(stmts: Sequence[S.Stmt], blocks: dict[str, S.BlockDef], depth: dict[str, int]) -> int:
    """How deep `stmts` nest: a body is a level, a block call one plus its block's depth."""
    deepest = 0
    for st in stmts:
        if isinstance(st, S.LayerStmt) and st.kind in blocks:
            deepest = max(deepest, 1 + depth.get(st.kind, 0))
        elif isinstance(st, (S.Repeat, S.Concat, S.Branch, S.Shortcut, S.Residual, S.BlockDef)):
            inner = st.branches if isinstance(st, S.Concat) else st.body
            levels = _nesting(inner, blocks, depth)
            if isinstance(st, S.Residual) and st.shortcut:
                levels = max(levels, _nesting(st.shortcut, blocks, depth))
            deepest = max(deepest, 1 + levels)
    return deepest


def check_bodies(blocks: dict[str, S.BlockDef]) -> list[Diagnostic]:
    """Every block's body checked once without a call, for what does not depend on its
    arguments: kinds, keys and literal values, names (undefined parameters, duplicate
    labels), `/`, the calls it makes (their parameters) and its defaults.

    Its parameters are UNKNOWN: a value computed from them is checked at each call
    (`B K=-8`), with the call's notes. Calls in a body are bound, not entered, so each
    body is walked once: linear in the spec, however deeply blocks call each other.
    """
    checker = _Builder(blocks, abstract=True)
    for name, block in blocks.items():
        env: dict[str, Any] = {}
        for p in block.params:
            if p.default is not None:
                try:
                    check_unknown(p.default, env)  # over the parameters before it
                except ElaborationError as exc:
                    checker.diags.extend(exc.diags)
            env[p.name] = UNKNOWN
        checker.run(block.body, checker.enter(name, block.body), env, INPUT, [])
    return list(dict.fromkeys(checker.diags))


def unused_blocks(blocks: dict[str, S.BlockDef], body: Sequence[S.Stmt]) -> list[Diagnostic]:
    """W003 for each block the network never instantiates: not called, or called only from such blocks."""

    def called(stmts: Sequence[S.Stmt]) -> list[str]:
        out = []
        for st in S.walk(stmts):
            if isinstance(st, S.LayerStmt):
                # `b1 Basic K=64`, its colon missing (E100), calls Basic as far as this warning goes
                word = st.positional[0] if st.positional and st.label is None else None
                kind = word.name if isinstance(word, S.Ref) and st.kind not in blocks else st.kind
                if kind in blocks:
                    out.append(kind)
        return out

    calls = {name: called(block.body) for name, block in blocks.items()}
    used: set[str] = set()
    todo = called(body)
    while todo:
        name = todo.pop()
        if name not in used:
            used.add(name)
            todo += calls[name]
    out = []
    for name, block in blocks.items():
        if name in used:
            continue
        callers = sorted(caller for caller, callees in calls.items() if name in callees and caller != name)
        message = (
            f"block {name} is only called from blocks that are never called ({', '.join(callers)})"
            if callers
            else f"block {name} is never called"
        )
        hint = "its body is checked only for what does not depend on its arguments; call it, or remove it"
        out.append(warning("W003", message, block.span, hint))
    return out


def merge_calls(diags: Sequence[Diagnostic]) -> list[Diagnostic]:
    """A block called many times reports an error in its body once, not once per call:
    with the first call's notes, and a note of how many other calls met it.

    An error that differs between calls (`B K=-8`, `B K=8-8`) is one per call, each
    with its own notes.
    """
    first: dict[Diagnostic, Diagnostic] = {}
    others: dict[Diagnostic, dict[tuple[Note, ...], None]] = {}
    for d in diags:
        key = d._replace(notes=())
        if key not in first:
            first[key] = d
        elif d.notes != first[key].notes:
            others.setdefault(key, {})[d.notes] = None
    out = []
    for key, d in first.items():
        more = list(others.get(key, ()))
        if more:
            n = len(more)
            # the outermost call of the next one: a line of the top level, where the calls differ
            site = more[0][-1].span if more[0] else None
            d = d._replace(notes=(*d.notes, Note(f"the same in {n} more call{'s' if n != 1 else ''}, the first", site)))
        out.append(d)
    return out


def _resolve_expect(
    st: S.Expect, builder: _Builder, scope_paths: set[str]
) -> Assertion:
    if st.quantity not in QUANTITIES:
        hint = did_you_mean(st.quantity, QUANTITIES) or f"quantities: {', '.join(QUANTITIES)}"
        raise fail("E150", f"unknown quantity '{st.quantity}'", st.span, hint)
    target = ".".join(st.path)
    if target and target not in builder.names and target not in scope_paths:
        hint = did_you_mean_path(target, builder.known(scope_paths)) or "expect names a layer, a block call or a repeat (copy)"
        raise fail("E151", f"no layer or block instance named '{target}'", st.span, hint)
    expected: float | tuple[int, ...]
    if st.quantity == "output":
        if st.op != "=":
            raise fail("E152", "an output shape can only be compared with =", st.span)
        if st.tolerance is not None:
            raise fail("E152", "an output shape takes no tolerance", st.value_span)
        if isinstance(st.value, S.Dims):
            expected = st.value.value
        elif isinstance(st.value.value, int):
            expected = (st.value.value,)
        else:
            raise fail("E152", f"'{st.value.text}' is not a shape", st.value_span, "e.g. 55x55x96 or 4096")
        text = "x".join(str(d) for d in expected)
    else:
        if isinstance(st.value, S.Dims):
            raise fail(
                "E152",
                f"{st.quantity} is a number, not a shape",
                st.value_span,
                "e.g. expect params = 28_823_912",
            )
        if st.tolerance is not None and st.op != "=":
            raise fail("E152", "a tolerance goes with =, not with a budget", st.value_span)
        expected = st.value.value
        text = st.value.text
    return Assertion.model_construct(
        target=target,
        quantity=st.quantity,
        op=st.op,
        expected=expected,
        text=text,
        tolerance=st.tolerance,
        tolerance_is_percent=st.tolerance_is_percent,
        span=st.span,
        value_span=st.value_span,
    )


def elaborate(
    program: S.Program, default_name: str, max_layers: int = DEFAULT_MAX_LAYERS
) -> tuple[Graph | None, list[Diagnostic]]:
    """Elaborate a syntax tree into a graph, and return every error found.

    After errors (or in a tree with error nodes) the graph holds the nodes that
    could be built and is marked incomplete (`Graph.complete`); it is None only
    when the spec gives no usable input, from which every shape would start.
    `max_layers` (`--max-layers`): E140 at the statement that would make more.
    """
    diags: list[Diagnostic] = []
    blocks: dict[str, S.BlockDef] = {}
    network = default_name
    network_seen: S.NetworkDecl | None = None
    input_decl: S.InputDecl | None = None
    body: list[S.Stmt] = []
    expects: list[S.Expect] = []

    for st in program.statements:
        if isinstance(st, S.BlockDef):
            if st.name in blocks:
                diags.append(
                    error("E111", f"block {st.name} is defined twice (first on line {blocks[st.name].span.line})", st.span)
                )
            elif st.name in KINDS:
                diags.append(
                    error("E114", f"block name '{st.name}' is a built-in layer kind", st.span, "choose another name")
                )
            else:
                seen_params: set[str] = set()
                for p in st.params:
                    if p.name in seen_params:
                        diags.append(error("E111", f"parameter {p.name} is listed twice", p.span))
                    seen_params.add(p.name)
                blocks[st.name] = st
        elif isinstance(st, S.NetworkDecl):
            if network_seen is not None:
                diags.append(error("E115", "'network' is given twice", st.span))
            network_seen = st
            network = st.name
        elif isinstance(st, S.InputDecl):
            if input_decl is not None:
                diags.append(error("E116", "'input' is given twice", st.span, "a network has one input"))
                continue
            if body:
                first = body[0]
                diags.append(
                    error(
                        "E117",
                        "'input' must come before the first layer",
                        st.span,
                        f"move it above line {first.span.line}",
                    )
                )
            input_decl = st
        elif isinstance(st, S.Expect):
            expects.append(st)
        else:
            body.append(st)

    input_shape: Shape | None = None
    if input_decl is None:
        first_span = getattr(body[0], "span", None) if body else None
        diags.append(
            error(
                "E118",
                "the spec has no input",
                first_span or Span(line=1, column=1, end_line=1, end_column=2),
                "begin with `input 227x227x3` (HxWxC) or `input 4096` (a flat vector)",
            )
        )
    else:
        dims = input_decl.shape.dims
        tokens = input_decl.unit is not None  # the parser admits only `tokens` there
        layout = Layout.TOKENS if tokens and len(dims) == 1 else None if tokens else written_layout(dims)
        if layout is None or any(d <= 0 for d in dims):
            written = sorted({lay.value for lay in WRITTEN.values()}, key=len)
            forms = f"{', '.join(written[:-1])} or {written[-1]}"
            if tokens:
                message = f"token ids take one positive length, `input T tokens`, not {shape_text(dims)} tokens"
            else:
                message = f"input must be {forms} (or `T tokens`) with positive sizes, not {shape_text(dims)}"
            diags.append(
                error(
                    "E119",
                    message,
                    input_decl.shape.span,
                    "e.g. input 1024 tokens"
                    if tokens
                    else "e.g. input 227x227x3 (an image), input 16000x1 (a signal), input 16x112x112x3 (a clip)",
                )
            )
        else:
            input_shape = Shape.of(layout, dims)

    diags.extend(_block_cycles(blocks))
    # Each body once, without a call: what no argument could mend is reported there, once,
    # and of a block never called too (W003); its calls report what their arguments make.
    checked = check_bodies(blocks)
    diags.extend(checked)
    diags.extend(unused_blocks(blocks, body))
    builder = _Builder(blocks, max_layers)
    top = builder.enter("", body)
    output = INPUT
    steps: list[Step] = []
    if not any(d.code == "E112" for d in diags):
        too_deep = _too_deep(blocks, body)
        if too_deep is not None:
            diags.append(too_deep)
        else:
            # Nesting is at most MAX_DEPTH levels, a few frames each: room enough.
            old_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(old_limit, MAX_DEPTH * 20 + 500))
            try:
                output = builder.run(body, top, {}, INPUT, steps)
            except _OverBudget:
                pass  # E140 is in builder.diags
            finally:
                sys.setrecursionlimit(old_limit)
    found = set(checked)
    diags.extend(d for d in merge_calls(builder.diags) if d._replace(notes=()) not in found)

    # Whether the nodes are all there: an `expect` that names nothing leaves them whole,
    # and the other assertions are still checked.
    complete = not builder.holes and not any(d.is_error for d in diags)
    scope_paths = {s.path for s in builder.scopes}
    assertions: list[Assertion] = []
    for target, shape in builder.arrows:
        assertions.append(
            Assertion.model_construct(
                target=target,
                quantity="output",
                op="=",
                expected=shape.dims,
                text=shape_text(shape.dims),
                tolerance=None,
                tolerance_is_percent=False,
                span=shape.span,
                value_span=shape.span,
            )
        )
    for ex in expects:
        try:
            assertions.append(_resolve_expect(ex, builder, scope_paths))
        except ElaborationError as exc:
            diags.append(exc.diag)

    if not builder.nodes and input_decl is not None and not any(d.is_error for d in diags):
        diags.append(
            error("E141", "the network has no layers", input_decl.span, "add layers after the input, e.g. fc 10")
        )
    if input_shape is None or input_decl is None:
        return None, diags
    graph = Graph.model_construct(
        network=network,
        input_shape=input_shape,
        input_span=input_decl.shape.span,
        nodes=tuple(builder.nodes),
        scopes=tuple(builder.scopes),
        assertions=tuple(assertions),
        output=output,
        blocks={name: _block(block) for name, block in blocks.items()},
        steps=tuple(steps),
        complete=complete,
    )
    return graph, diags


def _block(block: S.BlockDef) -> Block:
    params = tuple(
        BlockParam.model_construct(name=p.name, default=None if p.default is None else as_written(p.default))
        for p in block.params
    )
    return Block.model_construct(name=block.name, params=params)


def shape_text(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims)
