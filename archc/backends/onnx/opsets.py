"""Which ONNX opsets archc writes, and how each writes the ops it lacks.

Handlers always emit the op they mean (`Gelu`). An op newer than the opset
asked for is written out in older ops by its decomposition, chosen per opset
from `NEWER_OPS` and `DECOMPOSITIONS` (as sqlglot's per-dialect transforms
and tinygrad's per-renderer op tables do): supporting an older opset, or a
new op, is a table row and a rewrite, not a patch in the handlers. An op the
opset lacks that has no decomposition is an error (E602) at its layer.

>>> sorted(rewrites(16)), sorted(rewrites(19)), sorted(rewrites(20))
(['Gelu', 'LayerNormalization'], ['Gelu'], [])
"""

from __future__ import annotations

import math
from typing import Any

import onnx

from archc.backends.onnx.lowering import Lowering, OnnxError, Rewrite
from archc.diagnostics import error

# The newest opset that every onnxruntime the extras allow (>= 1.24.3) runs, and
# the one that brings Gelu. A newer default would shut out runtimes still in
# use: on an H200, onnxruntime-gpu 1.31.1 (the newest GPU wheel) refused
# opset 28's IR version 14 ("max supported IR version: 13"). Opset 20 needs IR
# 9. `--opset` picks another, up to the newest the installed onnx knows;
# tests/test_onnx_gen.py runs a model with every kind at each opset from 13.
DEFAULT_OPSET = 20
# Softmax over axis 1 alone needs 13 (before it, Softmax flattened everything from
# the axis on); Clip's min/max as inputs needs 11.
MIN_OPSET = 13
# Ops the handlers emit that are newer than MIN_OPSET: (the opset that brought it, why).
NEWER_OPS: dict[str, tuple[int, str]] = {
    "Gelu": (20, "ONNX added Gelu in opset 20"),
    "LayerNormalization": (17, "ONNX added LayerNormalization in opset 17"),
}


def _gelu_with_erf(ctx: Lowering, inputs: list[str], name: str, output: str | None, **attrs: Any) -> str:
    """Gelu(x) = x/2 * (1 + erf(x / sqrt(2))): the exact form, as nn.GELU() computes it (Erf: opset 9)."""
    (x,) = inputs
    scaled = ctx.emit("Mul", [x, ctx.constant("/const/rsqrt2", 1 / math.sqrt(2))], f"{name}/scale")
    erf = ctx.emit("Erf", [scaled], f"{name}/erf")
    one_plus = ctx.emit("Add", [erf, ctx.constant("/const/one", 1.0)], f"{name}/one_plus")
    half = ctx.emit("Mul", [x, ctx.constant("/const/half", 0.5)], f"{name}/half")
    return ctx.emit("Mul", [half, one_plus], name, output)


def _layernorm_written_out(
    ctx: Lowering, inputs: list[str], name: str, output: str | None, axis: int, epsilon: float
) -> str:
    """LayerNormalization over the last axis: (x - mean) / sqrt(var + eps) * scale (+ bias), as nn.LayerNorm."""
    assert axis == -1  # archc normalises the channels, read last
    x, scale, *bias = inputs
    mean = ctx.emit("ReduceMean", [x], f"{name}/mean", axes=[-1], keepdims=1)
    centred = ctx.emit("Sub", [x, mean], f"{name}/centred")
    square = ctx.emit("Mul", [centred, centred], f"{name}/square")
    var = ctx.emit("ReduceMean", [square], f"{name}/var", axes=[-1], keepdims=1)
    var_eps = ctx.emit("Add", [var, ctx.constant(f"/const/{name}/eps", epsilon)], f"{name}/var_eps")
    normed = ctx.emit("Div", [centred, ctx.emit("Sqrt", [var_eps], f"{name}/std")], f"{name}/normed")
    if not bias:
        return ctx.emit("Mul", [normed, scale], name, output)
    return ctx.emit("Add", [ctx.emit("Mul", [normed, scale], f"{name}/scaled"), bias[0]], name, output)


# How to write each newer op in ops every opset from MIN_OPSET has (ReduceMean's axes attribute: to 17).
DECOMPOSITIONS: dict[str, Rewrite] = {"Gelu": _gelu_with_erf, "LayerNormalization": _layernorm_written_out}


def _refused(op: str, since: int, why: str) -> Rewrite:
    """An op the opset lacks with no decomposition: E602 at the layer (the node is still added)."""

    def rewrite(ctx: Lowering, inputs: list[str], name: str, output: str | None, **attrs: Any) -> str:
        assert ctx.node is not None
        node = ctx.node
        ctx.diagnostics.append(
            error(
                "E602",
                f"{node.name}: {node.kind} needs ONNX opset {since} or newer ({why}), "
                f"but opset {ctx.opset} was asked for",
                node.span,
                f"use --opset {since} or newer (the default is {DEFAULT_OPSET})",
            )
        )
        return ctx.add(op, inputs, name, output, **attrs)

    return rewrite


def rewrites(opset: int) -> dict[str, Rewrite]:
    """The ops lowering at `opset` writes otherwise: each op newer than it, as its decomposition."""
    return {
        op: DECOMPOSITIONS.get(op) or _refused(op, since, why)
        for op, (since, why) in NEWER_OPS.items()
        if opset < since
    }


def default_opset() -> int:
    """DEFAULT_OPSET, or the newest the installed onnx knows when that is older."""
    return min(DEFAULT_OPSET, onnx.defs.onnx_opset_version())


def checked_opset(opset: int | None) -> int:
    """The opset to write (`default_opset()` for None); OnnxError when archc cannot write it."""
    newest = onnx.defs.onnx_opset_version()
    opset = default_opset() if opset is None else opset
    if not MIN_OPSET <= opset <= newest:
        raise OnnxError(
            f"opset {opset} is out of range: archc writes opsets {MIN_OPSET} to {newest} "
            f"(the newest the installed onnx {onnx.__version__} knows); the default is {DEFAULT_OPSET}"
        )
    return opset
