"""The shape of the house: imports flow along the pipeline, never in a circle.

Front end -> IR -> kinds -> analysis -> back-ends and tools -> api -> importers -> commands.
Every import counts, also one inside a function (a lazy import hides a cycle
from the interpreter, not from the reader). An import under `if TYPE_CHECKING:`
counts for the direction of the pipeline but closes no cycle: it names a type
and runs nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "archc"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_only(tree: ast.Module) -> set[int]:
    """Lines of the imports under `if TYPE_CHECKING:`."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.stmt)}
    return lines


def _imports(name: str, runtime: bool = False) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every archc import in a module
    (with `runtime`, leaving out those under `if TYPE_CHECKING:`)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_only(tree) if runtime else set()
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("archc")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("archc"):
                continue
            names = [a.name for a in node.names]
            # `from archc.frontend import syntax` imports the module archc.frontend.syntax
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            if submodules:
                found += [(m, [], node.lineno) for m in submodules]
            others = [n for n in names if f"{base}.{n}" not in MODULES]
            if others:
                found.append((base, others, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _, _ in _imports(m, runtime=True):
            if target in MODULES and target != m:
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


# (importer prefix, imported prefix): an edge that must not exist
FORBIDDEN = [
    ("archc.frontend", "archc.backends"),
    ("archc.frontend", "archc.tools"),
    ("archc.frontend", "archc.analysis"),
    ("archc.frontend", "archc.api"),
    ("archc.ir", "archc.frontend"),
    ("archc.ir", "archc.kinds"),
    ("archc.ir", "archc.analysis"),
    ("archc.ir", "archc.backends"),
    ("archc.ir", "archc.tools"),
    ("archc.ir", "archc.api"),
    ("archc.kinds", "archc.analysis"),
    ("archc.kinds", "archc.backends"),
    ("archc.kinds", "archc.tools"),
    ("archc.kinds", "archc.api"),
    ("archc.analysis", "archc.backends"),
    ("archc.analysis", "archc.tools"),
    ("archc.analysis", "archc.api"),
    ("archc.backends", "archc.api"),
    ("archc.backends", "archc.tools"),
    ("archc.backends", "archc.commands"),
    ("archc.tools", "archc.commands"),
    ("archc.importers", "archc.commands"),
] + [(below, "archc.importers") for below in (
    "archc.frontend", "archc.ir", "archc.kinds", "archc.analysis", "archc.backends", "archc.tools", "archc.api",
)]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN, ids=lambda x: x)
def test_imports_follow_the_pipeline(importer: str, imported: str) -> None:
    bad = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {target}"
        for m in MODULES
        if _under(m, importer)
        for target, _, line in _imports(m)
        if _under(target, imported)
    ]
    assert bad == []


def test_no_private_name_imported_across_modules() -> None:
    bad = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {n} from {target}"
        for m in MODULES
        for target, names, line in _imports(m)
        for n in names
        if n.startswith("_") and not n.startswith("__") and target != m
    ]
    assert bad == []
