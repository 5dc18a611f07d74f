"""What the elaborator records of how the graph was written (`archc.ir.written`), for the back-ends."""

from __future__ import annotations

import archc
from archc.ir import ScopeKind
from archc.ir.written import Arith, BlockParam, Merge, Name
from archc.kinds import verify

SPEC = """\
input 8x8x4
block Down(K, S=1, E=K*2) {
  residual { c: conv K=E F=3 S=S P=1; relu } shortcut { conv K=E F=1 S=S }
}
block Mix(A) {
  concat { branch { conv K=A F=1 } branch { } }
}
stem: conv K=4 F=1
d: Down 4 S=2
tail: repeat 2 { Mix A=8 }
more: repeat 2 { conv K=8 F=1; relu }
"""


def test_scopes_record_their_block_arguments_and_body_as_steps() -> None:
    graph = archc.loads(SPEC).graph
    verify(graph)  # the new fields validate as pydantic models
    scopes = {s.path: s for s in graph.scopes}
    assert graph.steps == ("stem", "d", "tail", "more")
    assert graph.blocks["Down"].params == (
        BlockParam(name="K", default=None),
        BlockParam(name="S", default=1),
        BlockParam(name="E", default=Arith(op="*", left=Name(name="K"), right=2)),
    )
    d = scopes["d"]
    assert (d.kind, d.block, d.args) == (ScopeKind.CALL, "Down", {"K": 4, "S": 2, "E": 8})
    assert d.arg_exprs == {"K": 4, "S": 2}  # as written: the default E is the callee's
    assert d.steps == (Merge(node="residual1", branches=(("c", "relu1"), ("conv1",)), residual=True),)
    assert d.label is not None and d.label.column == 1
    # a repeat of one call: each copy is an instance of the block, with the call's arguments
    assert scopes["tail"].arg_exprs == {"count": 2} and scopes["tail"].steps == ()
    copy = scopes["tail.1"]
    assert (copy.kind, copy.block, copy.arg_exprs) == (ScopeKind.COPY, "Mix", {"A": 8})
    assert copy.steps == (Merge(node="concat1", branches=(("conv1",), ())),)
    # a repeat of anything else: the copies hold the body; the repeat, what it reads
    assert scopes["more.0"].block is None and scopes["more.0"].steps == ("conv1", "relu1")
    assert scopes["more"].reads == ()


def test_nodes_record_their_keys_as_written() -> None:
    graph = archc.loads(SPEC).graph
    conv = graph.node("d.c")
    assert conv.exprs == {"K": Name(name="E"), "F": 3, "S": Name(name="S"), "P": 1}
    assert conv.label is not None and graph.node("d.relu1").label is None
    assert graph.node("stem").exprs == {"K": 4, "F": 1}


def test_a_repeat_records_the_names_its_body_reads_in_order_of_first_use() -> None:
    text = "input 4x4x2\nblock B(N, K, M) { r: repeat N { conv K=K*M F=1; repeat N-1 { conv K=K F=1 } } }\nB 2 4 2\n"
    scopes = {s.path: s for s in archc.loads(text).graph.scopes}
    assert scopes["b1.r"].reads == ("K", "M", "N")
