"""Normalisation kinds: batchnorm, layernorm, lrn, and layerscale (a learned per-channel scale)."""

from __future__ import annotations

from archc.ir import Layout, Physical, Shape
from archc.kinds.kind import (
    ANY_FEATURES,
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
    show_value,
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


def _ln_tensors(layer: Applied) -> tuple[Tensor, ...]:
    c = (layer.ins[0].channels,)
    weight = Tensor("weight", c, Role.WEIGHT, Init.ONES)
    return (weight, Tensor("bias", c, Role.BIAS, Init.ZEROS)) if layer.attrs["bias"] else (weight,)


def _ln_explain(layer: Applied, counts: Counts) -> list[Line]:
    shape = layer.ins[0]
    c = shape.channels
    where = "the features" if not shape.is_spatial else f"the {c} channels at each of {shape.numel // c:,} positions"
    shifts = f" + {c} shifts" if layer.attrs["bias"] else " (no bias)"
    return [Line(Topic.PARAMS, f"normalises over {where}: {c} scales{shifts}")]


def layerscale_shape(shape: Shape) -> tuple[int, ...]:
    """The PyTorch shape of a per-channel vector that broadcasts over generated code's tensor:
    [C, 1, 1] for a [batch, C, H, W] image (torchvision's ConvNeXt `layer_scale`), [C] when flat
    and on a sequence, which it reads held batch x L x C (as a transformer's layer scale)."""
    if shape.layout is Layout.SEQUENCE:
        return (shape.channels,)
    ones = len(shape.nchw()) - shape.layout.channel_axis()
    return (shape.channels, *(1,) * ones)


def _ls_tensors(layer: Applied) -> tuple[Tensor, ...]:
    init = float(layer.attrs["init"])
    return (Tensor("", layerscale_shape(layer.ins[0]), Role.WEIGHT, Init.CONSTANT, value=init),)


def _ls_explain(layer: Applied, counts: Counts) -> list[Line]:
    c = layer.ins[0].channels
    return [Line(Topic.PARAMS, f"{c} per-channel scales, each {show_value(layer.attrs['init'])} at first")]


KINDS = (
    LayerKind(
        "batchnorm",
        "Batch normalisation (inference form): 2C parameters, running statistics are buffers.",
        same_shape,
        Traits(Family.NORM, ANY_FEATURES, sequence=Physical.CHANNELS_FIRST),  # BatchNorm1d: batch x C x L
        example="batchnorm eps=1e-3",
        keys=(Key("eps", KeyType.POS_FLOAT, 1e-5, doc="the constant added to the variance"),),
        tensors=_bn_tensors,
        explain=_bn_explain,
    ),
    LayerKind(
        "layernorm",
        "Layer normalisation over the C channels at every position (any layout): C scales + C shifts.",
        same_shape,
        Traits(Family.NORM, ANY_FEATURES),
        example="layernorm eps=1e-6",
        keys=(
            Key("eps", KeyType.POS_FLOAT, 1e-5, doc="the constant added to the variance"),
            Key("bias", KeyType.BOOL, True, doc="whether to learn a shift per channel"),
        ),
        tensors=_ln_tensors,
        explain=_ln_explain,
    ),
    LayerKind(
        "layerscale",
        "Times a learned per-channel vector (initialised to init): C weights.",
        same_shape,
        Traits(Family.NORM, ANY_FEATURES, sequence=Physical.CHANNELS_LAST),
        example="layerscale init=0.1",
        keys=(Key("init", KeyType.FLOAT, 1e-6, doc="the initial value of every scale"),),
        tensors=_ls_tensors,
        explain=_ls_explain,
    ),
    LayerKind(
        "lrn",
        "Local response normalisation across channels (PyTorch/ONNX semantics: alpha/size).",
        same_shape,
        Traits(Family.NORM, SPATIAL, sequence=Physical.CHANNELS_FIRST),
        example="lrn size=3 alpha=1e-4 beta=0.75 k=2",
        keys=(
            Key("size", KeyType.POS_INT, 5, doc="the number of channels in the window"),
            Key("alpha", KeyType.FLOAT, 1e-4, doc="the scale of the window's mean square"),
            Key("beta", KeyType.FLOAT, 0.75, doc="the exponent of the divisor"),
            Key("k", KeyType.FLOAT, 2.0, doc="the constant added to the scaled mean square"),
        ),
    ),
)
