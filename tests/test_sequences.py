"""Sequence models through the front end and the tools: token inputs, ties, sequence orders, summary.

The numerical checks against torch.nn are in `test_sequence_torch.py`; the
located errors in `tests/errors/` (attention_*, tie_*, tokens_*, ...).
"""

from __future__ import annotations

import json

import pytest

import archc
from archc.analysis import orders
from archc.analysis.tensors import tensor_specs, tied_keys
from archc.cli import main
from archc.ir import INPUT, Layout, Physical
from archc.tools.summary import activation_bytes, kv_cache, summary_json

LAST, FIRST = Physical.CHANNELS_LAST, Physical.CHANNELS_FIRST

TINY_LM = """\
network TinyLM
input 32 tokens
wte: embedding V=64 D=16
block Block(H) {
  residual { rmsnorm; attention H kv=2 causal=true rope=true bias=false }
  residual { rmsnorm; fc 32 bias=false; gelu; fc 16 bias=false }
}
h: repeat 3 { Block H=4 }
norm: rmsnorm
lm_head: fc 64 bias=false tie=wte
"""


def test_a_token_input_is_ids_of_one_length() -> None:
    net = archc.loads(TINY_LM)
    assert net.graph.input_shape.layout is Layout.TOKENS and net.input_shape == (32,)
    assert net.graph.input_shape.text() == "32 tokens" and net.output_shape == (32, 64)


def test_a_tied_layer_owns_nothing_and_the_weight_is_counted_once() -> None:
    net = archc.loads(TINY_LM)
    head = net.analysis.facts["lm_head"]
    assert (head.weights, head.biases, head.macs) == (0, 0, 32 * 16 * 64)
    assert net.analysis.facts["wte"].weights == 64 * 16
    assert "lm_head.weight" not in {s.name for s in tensor_specs(net.analysis)}
    assert tied_keys(net.analysis) == {"lm_head.weight": "wte.weight"}
    body = 3 * (2 * 16 + 2 * 16 * 16 + 2 * 16 * 8 + 2 * 16 * 32)
    assert net.params == 64 * 16 + body + 16


def test_a_tie_resolves_through_enclosing_scopes_and_to_the_owner() -> None:
    net = archc.loads(
        "input 8 tokens\nwte: embedding V=10 D=4\n"
        "block Head { out: fc 10 bias=false tie=wte }\n"
        "first: fc 10 bias=false tie=wte\nblock Back { fc 4 }\nback: Back\nhead: Head\n"
    )
    # `tie` holds the owner's dotted name: the head in block Head reaches wte at the top
    assert net.graph.node("head.out").attrs["tie"] == "wte"
    chained = archc.loads("input 8 tokens\nwte: embedding V=10 D=4\na: fc 10 tie=wte\nfc 4\nb: fc 10 tie=a\n")
    assert chained.graph.node("b").attrs["tie"] == "wte"  # a tie to a tied fc shares the owner's weight
    module = chained.to_torch()
    assert module.b.weight is module.a.weight is module.wte.weight


def test_a_tie_may_name_a_layer_inside_an_earlier_scope() -> None:
    """Hugging Face's GPT2LMHeadModel: `lm_head` ties to `transformer.wte`, a sibling scope's layer."""
    net = archc.loads(
        "input 8 tokens\nblock M { wte: embedding V=10 D=4; ln_f: layernorm }\n"
        "block LM { transformer: M; lm_head: fc 10 bias=false tie=transformer.wte }\nmodel: LM\n"
    )
    assert net.graph.node("model.lm_head").attrs["tie"] == "model.transformer.wte"
    assert net.params == 10 * 4 + 2 * 4
    with pytest.raises(archc.SpecError, match=r"E122.*tie=transformer.wte: no layer"):
        archc.loads("input 8 tokens\nwte: embedding V=10 D=4\nfc 10 tie=transformer.wte\n")


def test_sequence_orders_follow_the_kinds() -> None:
    """batch x L x C around sequence layers, batch x C x L before a flatten (channels outermost);
    element-wise kinds keep what they get; the input is held as its first reader wants."""
    net = archc.loads("input 6x4\nrelu\nattention 2\nsoftmax\nflatten\nfc 3\n")
    a = net.analysis
    assert a.orders == {INPUT: LAST, "relu1": LAST, "attention1": LAST, "softmax1": LAST}
    flatten = net.graph.node("flatten1")
    assert a.reads(flatten) is FIRST and a.transposed(flatten) == (True,)
    assert a.physical("softmax1") == (6, 4) and a.physical(INPUT) == (6, 4)
    direct = archc.loads("input 6x4\nflatten\n")
    assert direct.analysis.orders[INPUT] is FIRST and direct.analysis.physical(INPUT) == (4, 6)
    assert orders.DEFAULT is LAST


def test_summary_reports_memory_in_a_dtype_and_the_kv_cache(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    net = archc.loads(TINY_LM)
    cache = kv_cache(net, "bfloat16")
    assert cache is not None and (cache.layers, cache.tokens, cache.width) == (3, 32, 8)
    assert cache.nbytes == 2 * 3 * 32 * 8 * 2
    assert kv_cache(archc.loads("input 8x4\nattention 2\n")) is None  # no causal attention: no cache
    assert activation_bytes(net, "float16") == 32 * 8 + net.analysis.totals.activations * 2  # ids are int64
    doc = summary_json(net, dtype="int8")
    assert (doc["dtype"], doc["param_bytes"]) == ("int8", net.params)
    assert doc["kv_cache"] == {"layers": 3, "tokens": 32, "bytes": 2 * 3 * 32 * 8}
    spec = tmp_path / "lm.arch"
    spec.write_text(TINY_LM, encoding="utf-8")
    assert main(["summary", str(spec), "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "(bfloat16)" in out and "KV cache:    0.00 MiB at 32 tokens, batch 1 (bfloat16): 2 x 3 layers x 32 tokens x 8 x 2 bytes" in out
    assert main(["summary", str(spec), "--json", "--dtype", "float16"]) == 0
    assert json.loads(capsys.readouterr().out)["kv_cache"]["bytes"] == 2 * 3 * 32 * 8 * 2


def test_explain_lines_derive_attention_and_tied_counts() -> None:
    from archc.kinds import KINDS

    net = archc.loads("input 197x768\na: attention 12\n")
    facts = net.analysis.facts["a"]
    lines = [line.text for line in KINDS["attention"].explain(facts.applied(net.graph.node("a").attrs), facts.counts)]
    assert lines[0] == "heads 12 x 64 = 768; q,k,v,o: 4 x (768*768) = 2,359,296 weights + 3,072 biases"
    assert lines[-1].endswith("2*197*197*768 = 59,610,624: 524,391,936 MACs")
    lm = archc.loads(TINY_LM)
    head = lm.analysis.facts["lm_head"]
    text = [line.text for line in KINDS["fc"].explain(head.applied(lm.graph.node("lm_head").attrs), head.counts)]
    assert "16*64 = 1,024 weights tied to wte (counted there) (no bias)" in text
