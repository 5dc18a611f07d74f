"""Normalisation kinds: batchnorm and lrn."""

from __future__ import annotations

from archc.ir import Physical
from archc.kinds.kind import (
    FLAT_OR_SPATIAL,
    SPATIAL,
    Applied,
    Counts,
    Family,
    Init,
    Key,
    KeyType,
    LayerKind,
    Line,
    Role,
    Tensor,
    Topic,
    Traits,
    same_shape,
)


def _bn_tensors(layer: Applied) -> tuple[Tensor, ...]:
    c = (layer.ins[0].channels,)
    return (
        Tensor("weight", c, Role.WEIGHT, Init.ONES),
        Tensor("bias", c, Role.BIAS, Init.ZEROS),
        Tensor("running_mean", c, Role.BUFFER, Init.ZEROS),
        Tensor("running_var", c, Role.BUFFER, Init.ONES),
    )


def _bn_explain(layer: Applied, counts: Counts) -> list[Line]:
    c = layer.ins[0].channels
    return [Line(Topic.PARAMS, f"{c} scales + {c} shifts (running mean and variance are buffers)")]


KINDS = (
    LayerKind(
        "batchnorm",
        "Batch normalisation (inference form): 2C parameters, running statistics are buffers.",
        same_shape,
        Traits(Family.NORM, FLAT_OR_SPATIAL, sequence=Physical.CHANNELS_FIRST),  # BatchNorm1d: batch x C x L
        example="batchnorm eps=1e-3",
        keys=(Key("eps", KeyType.POS_FLOAT, 1e-5, doc="added to the variance"),),
        tensors=_bn_tensors,
        explain=_bn_explain,
    ),
    LayerKind(
        "lrn",
        "Local response normalisation across channels (PyTorch/ONNX semantics: alpha/size).",
        same_shape,
        Traits(Family.NORM, SPATIAL),
        example="lrn size=3 alpha=1e-4 beta=0.75 k=2",
        keys=(
            Key("size", KeyType.POS_INT, 5, doc="channels in the window"),
            Key("alpha", KeyType.FLOAT, 1e-4),
            Key("beta", KeyType.FLOAT, 0.75),
            Key("k", KeyType.FLOAT, 2.0),
        ),
    ),
)
