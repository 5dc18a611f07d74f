"""A model's graph of layers -> the nested statements of a spec (its merges as `concat`, `residual`, `add`).

A spec is a sequence: each statement reads the output of the one before it,
and a merge forks the current value into branches and joins them again. So a
graph is written by walking it from the input: a value read by one layer goes
on in sequence; a value read by several layers starts a merge, whose branches
are walked in turn until they all reach the same multi-input node, which must
read exactly the values where the branches end. A merge of two values by a
sum is written `residual { longer branch } shortcut { shorter }` (no shortcut
when one branch is the value itself), as a person writes ResNet; three or
more, `add`. A graph that is not nested this way (a branch that leaves its
merge, a second output) is a `StructureError` at the node where it shows.

>>> nodes = [Node("a", (0,), 1, "conv K=4 F=1"), Node("b", (0,), 2, "conv K=4 F=3 P=1"),
...          Node("cat", (1, 2), 3, merge="concat"), Node("r", (3,), 4, "relu")]
>>> print(render(nest(nodes, 0)), end="")
cat: concat {
  branch {
    a: conv K=4 F=1
  }
  branch {
    b: conv K=4 F=3 P=1
  }
}
r: relu
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MERGES = ("concat", "add", "multiply")


@dataclass
class Node:
    """One layer of the model: the values it reads and the one it writes (values are ids)."""

    name: str  # its label in the spec
    inputs: tuple[int, ...]
    output: int
    text: str = ""  # the statement after `name:`, e.g. "conv K=96 F=11 S=4"; empty for a merge
    merge: str | None = None  # "concat", "add" or "multiply": a node joining its inputs
    origin: Any = None  # where the importer found it, for errors
    arrow: str = ""  # the output shape to assert (`55x55x96`), or nothing
    shape: str = ""  # the output shape, asserted or not


@dataclass
class Layer:
    name: str
    text: str
    arrow: str = ""
    shape: str = ""


@dataclass
class Merge:
    kind: str  # concat, add, multiply
    name: str
    branches: list[list[Statement]]
    arrow: str = ""
    shape: str = ""


@dataclass
class Residual:
    name: str
    body: list[Statement]
    shortcut: list[Statement] = field(default_factory=list)
    arrow: str = ""
    shape: str = ""


@dataclass
class Call:
    """A block call (`inception_3a: Inception K1=64 ...`), made by `archc.importers.blocks`."""

    name: str
    block: str
    args: list[tuple[str, int]]
    arrow: str = ""
    shape: str = ""


Statement = Layer | Merge | Residual | Call


class StructureError(Exception):
    """The graph cannot be written as nested merges; `node` is where that shows."""

    def __init__(self, message: str, node: Node | None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.node, self.hint = message, node, hint


def nest(nodes: Sequence[Node], source: int) -> list[Statement]:
    """The statements that compute the graph from the value `source`, to its one output."""
    readers: dict[int, list[Node]] = defaultdict(list)
    for node in nodes:
        for value in dict.fromkeys(node.inputs):
            readers[value].append(node)
    walker = _Walker(readers)
    statements, _, merge = walker.chain(source)
    if merge is not None:
        raise StructureError(
            f"'{merge.name}' joins a value computed before the first fork of the network with others",
            merge,
        )
    written = walker.visited
    missed = [n for n in nodes if id(n) not in written]
    if missed:
        raise StructureError(
            f"'{missed[0].name}' does not read the network's input or anything computed from it", missed[0]
        )
    return statements


class _Walker:
    def __init__(self, readers: dict[int, list[Node]]) -> None:
        self.readers = readers
        self.visited: set[int] = set()

    def chain(self, value: int) -> tuple[list[Statement], int, Node | None]:
        """Statements from `value` on, until the network's end or a node that joins several values.

        Returns them, the last value they compute, and that joining node (None at the end).
        """
        out: list[Statement] = []
        while True:
            readers = self.readers.get(value, [])
            if not readers:
                return out, value, None
            if len(readers) == 1:
                node = readers[0]
                if len(node.inputs) > 1:
                    return out, value, node
                out.append(self.layer(node))
                value = node.output
                continue
            merged, value, joined = self.fork(value, readers)
            out += merged
            if joined is not None:  # the fork's last merge is itself a branch of an outer one
                return out, value, joined
            # else the merges joined every branch: go on from the last one's value, here, so that
            # a network of many residuals in sequence does not recurse once per residual

    def layer(self, node: Node) -> Statement:
        if node.merge is not None:  # a merge of a single value: nothing to join
            raise StructureError(f"'{node.name}' joins a single value", node)
        self.visited.add(id(node))
        return Layer(node.name, node.text, node.arrow, node.shape)

    def fork(self, value: int, readers: list[Node]) -> tuple[list[Statement], int, Node | None]:
        """The merges that join the branches starting at `value`, innermost first (a residual
        whose body starts with a product of two of its branches forks twice at one value), and
        what follows them up to the last: the statements, the value they compute, and, where
        the branches end in a node that also reads values from outside this fork, that node
        (None where the last merge joined them all: the caller goes on from its value)."""
        # a head: a branch's statements so far, the value it ends at, and the node it waits at
        heads: list[tuple[list[Statement], int, Node | None]] = []
        for reader in readers:
            if len(reader.inputs) > 1:  # the value itself is a branch (an identity shortcut)
                heads.append(([], value, reader))
                continue
            first = self.layer(reader)
            rest, end, joined = self.chain(reader.output)
            heads.append(([first, *rest], end, joined))
        while len(heads) > 1:
            node = next((j for j in self._joins(heads) if self._complete(j, heads)), None)
            if node is None:
                raise self._open(readers, heads)
            mine = [h for h in heads if h[2] is node]
            # the branches in the order the merge reads them (concat: the order of the channels)
            order = {v: i for i, v in enumerate(node.inputs)}
            branches = [b for b, _, _ in sorted(mine, key=lambda h: order[h[1]])]
            self.visited.add(id(node))
            heads = [h for h in heads if h[2] is not node]
            if not heads:
                return [_merged(node, branches)], node.output, None
            rest, end, joined = self.chain(node.output)
            heads.append(([_merged(node, branches), *rest], end, joined))
        return heads[0]

    @staticmethod
    def _joins(heads: list[tuple[list[Statement], int, Node | None]]) -> list[Node]:
        return list({id(j): j for _, _, j in heads if j is not None}.values())

    @staticmethod
    def _complete(node: Node, heads: list[tuple[list[Statement], int, Node | None]]) -> bool:
        """Whether the branches waiting at `node` are all it reads (its inputs all from this fork)."""
        return sorted(node.inputs) == sorted(end for _, end, j in heads if j is node)

    @staticmethod
    def _open(readers: list[Node], heads: list[tuple[list[Statement], int, Node | None]]) -> StructureError:
        joins = _Walker._joins(heads)
        if len(joins) == 1 and all(j is not None for _, _, j in heads):
            return StructureError(
                f"'{joins[0].name}' joins values from different forks of the network",
                joins[0],
                "archc writes merges whose branches all start from the same value",
            )
        # the branches by their first layers; a merge reading the value itself is not one of them
        names = ", ".join(f"'{r.name}'" for r in readers if len(r.inputs) == 1)
        if any(len(r.inputs) > 1 for r in readers):
            names = f"{names} and the value itself" if names else "the value itself"
        where = readers[0] if any(j is None for _, _, j in heads) else joins[-1]
        return StructureError(
            f"the branches that start at {names} do not all end in one merge",
            where,
            "archc writes a fork as concat/residual/add whose branches meet again in one layer;"
            " a second output of the network cannot be written",
        )


def _merged(node: Node, branches: list[list[Statement]]) -> Statement:
    if node.merge == "add" and len(branches) == 2:
        body, shortcut = sorted(branches, key=_size, reverse=True)  # stable: ties keep the merge's order
        if body:
            return Residual(node.name, body, shortcut, node.arrow, node.shape)
    if node.merge not in MERGES:
        raise StructureError(f"'{node.name}' reads {len(node.inputs)} values but is no merge", node)
    return Merge(node.merge, node.name, [b or [Layer("", "identity")] for b in branches], node.arrow, node.shape)


def _size(statements: Iterable[Statement]) -> int:
    total = 0
    for st in statements:
        if isinstance(st, Layer | Call):
            total += 1
        elif isinstance(st, Merge):
            total += 1 + sum(_size(b) for b in st.branches)
        else:
            total += 1 + _size(st.body) + _size(st.shortcut)
    return total


def render(statements: Sequence[Statement], indent: int = 0) -> str:
    """Spec text for the statements (two spaces per level; `archc fmt` aligns the rest)."""
    pad = "  " * indent
    out: list[str] = []
    for st in statements:
        label = f"{st.name}: " if st.name else ""
        arrow = f" -> {st.arrow}" if st.arrow else ""
        if isinstance(st, Layer):
            out.append(f"{pad}{label}{st.text}{arrow}\n")
        elif isinstance(st, Call):
            args = "".join(f" {k}={v}" for k, v in st.args)
            out.append(f"{pad}{label}{st.block}{args}{arrow}\n")
        elif isinstance(st, Merge):
            out.append(f"{pad}{label}{st.kind} {{\n")
            for branch in st.branches:
                out.append(f"{pad}  branch {{\n{render(branch, indent + 2)}{pad}  }}\n")
            out.append(f"{pad}}}{arrow}\n")
        else:
            out.append(f"{pad}{label}residual {{\n{render(st.body, indent + 1)}{pad}}}")
            out.append(f" shortcut {{\n{render(st.shortcut, indent + 1)}{pad}}}" if st.shortcut else "")
            out.append(f"{arrow}\n")
    return "".join(out)
