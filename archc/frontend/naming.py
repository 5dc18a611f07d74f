"""Layer and scope names: the naming rules of the elaborator (`archc.frontend.elaborate`).

Naming (LANGUAGE.md "A network", "Blocks"):
- a scope is the top level, a block instance, or one copy of a repeat;
- unnamed layers are named by kind in order within their scope (`conv1`,
  `relu1`, ...), skipping names written anywhere in that scope;
- named calls and repeats form levels: `layer1.0.conv1`. An unnamed block call
  is a level too, named by its block in lower case (`basic1`), except when it
  is the whole body of a repeat: then the copy is the instance (`layer1.0`);
- residual, shortcut, concat/add/multiply and branch bodies do not add a level; a
  residual's sum and a merge are graph nodes named `residual1` / `concat1` / `add1` /
  `multiply1` (or their label).

A scope's names are given out here (`enter`, then `claim` for each name); the
elaborator (`_Builder.enter` / `_Builder.name`) decides where levels begin,
and records each scope's body in these names (`archc.ir.Scope.steps`), so
that back-ends never name anything again.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterator, Sequence

from archc.diagnostics import Diagnostic
from archc.diagnostics import error as make_error
from archc.diagnostics import warning as make_warning
from archc.frontend import syntax as S
from archc.frontend.evaluate import fail
from archc.ir import Span

# nn.Module attributes a layer name must not shadow in generated PyTorch code
RESERVED_NAMES = frozenset(
    """forward training eval train to cuda cpu parameters modules children state_dict
    load_state_dict register_buffer register_parameter add_module apply zero_grad half float
    double type named_parameters named_modules named_children named_buffers buffers
    extra_repr get_submodule get_parameter get_buffer requires_grad_ share_memory bfloat16
    register_module""".split()
) | frozenset(
    # The rest of dir(nn.Module()) (torch 2.x): a layer named `compile` or `_modules`
    # passed `check` but could not be registered by the generated module.
    # tests/test_torch_gen.py checks this list against the installed torch.
    """T_destination call_super_init compile dump_patches get_extra_state ipu mtia
    register_backward_hook register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_state_dict_post_hook register_state_dict_pre_hook
    set_extra_state set_submodule to_empty xpu _apply _backward_hooks _backward_pre_hooks _buffers
    _call_impl _compiled_call_impl _forward_hooks _forward_hooks_always_called
    _forward_hooks_with_kwargs _forward_pre_hooks _forward_pre_hooks_with_kwargs
    _get_backward_hooks _get_backward_pre_hooks _get_name _is_full_backward_hook
    _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
    _maybe_warn_non_full_backward_hook _modules _named_members _non_persistent_buffers_set
    _parameters _register_load_state_dict_pre_hook _register_state_dict_hook
    _replicate_for_data_parallel _save_to_state_dict _slow_forward _state_dict_hooks
    _state_dict_pre_hooks _version _wrapped_call_impl""".split()
)


def _written_names(stmts: Sequence[S.Stmt]) -> Iterator[tuple[str, Span]]:
    """Names written in one scope: residual/concat/branch bodies share it, calls don't."""
    for st in stmts:
        label = getattr(st, "label", None)
        if label is not None:
            yield label.name, label.span
        if isinstance(st, S.Residual):
            yield from _written_names(st.body)
            if st.shortcut:
                yield from _written_names(st.shortcut)
        elif isinstance(st, S.Concat):
            yield from _written_names(st.branches)
        elif isinstance(st, (S.Branch, S.Shortcut)):
            yield from _written_names(st.body)


class ScopeState:
    """Names of one scope: written ones (known up front), used ones, per-kind counters."""

    def __init__(self, path: str, written: frozenset[str]) -> None:
        self.path = path
        self.written = written
        self.used: dict[str, Span] = {}
        self.counters: dict[str, int] = {}

    def qualify(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name


def reserved_in_torch(name: str) -> bool:
    """A name the language allows but a PyTorch module attribute cannot take (`forward`, `class`)."""
    return keyword.iskeyword(name) or name in RESERVED_NAMES or name.startswith("__")


def torch_name_diagnostic(name: str, span: Span, error: bool, block: str | None = None) -> Diagnostic:
    """W002 at check (the spec is valid; ONNX takes it), E113 from the PyTorch back-end.

    `block`: the name was not written but generated for an unnamed call of this block.
    """
    why = "a Python keyword" if keyword.iskeyword(name) else "an attribute nn.Module has already"
    if name.startswith("__"):
        why = "a name Python mangles inside a class"
    fix = f"rename the layer, e.g. '{name}_'"
    what = f"'{name}'"
    if block is not None:
        what = f"'{name}' (the name given to this call of block {block})"
        fix = f"name the call, e.g. `{name.strip('_') or 'b'}: {block}`, or rename the block"
    if error:
        return make_error(
            "E113",
            f"{what} cannot be an attribute of the generated PyTorch module: it is {why}",
            span,
            f"{fix} (ONNX output takes the name as it is)",
        )
    return make_warning(
        "W002",
        f"{what} is {why}: the spec is valid and compiles to ONNX, but not to PyTorch source",
        span,
        f"{fix}, to compile it with --to torch",
    )


def written_in(stmts: Sequence[S.Stmt]) -> frozenset[str]:
    """The names written in a scope whose body is `stmts`."""
    return frozenset(n for n, _ in _written_names(stmts))


def enter(path: str, stmts: Sequence[S.Stmt], written: frozenset[str] | None = None) -> ScopeState:
    """A new scope at `path` whose body is `stmts` (its written names are known up front: `written`
    when the caller has them already, as for each copy of a repeat)."""
    return ScopeState(path, written_in(stmts) if written is None else written)


def claim(scope: ScopeState, label: S.Label | None, prefix: str, span: Span) -> str:
    """The full name of a layer, call or repeat in `scope`: its label, else `<prefix><n>`."""
    if label is not None:
        name = label.name
        if name in scope.used:
            first = scope.used[name]
            raise fail(
                "E111",
                f"duplicate name '{name}' (first used on line {first.line})",
                label.span,
                "names must be unique within their scope",
            )
        scope.used[name] = label.span
        return scope.qualify(name)
    n = scope.counters.get(prefix, 0)
    while True:
        n += 1
        candidate = f"{prefix}{n}"
        if candidate not in scope.written and candidate not in scope.used:
            break
    scope.counters[prefix] = n
    scope.used[candidate] = span
    return scope.qualify(candidate)
