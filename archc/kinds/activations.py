"""Element-wise kinds, as a table: each row is a kind and its lowering to PyTorch and ONNX.

A row needs no code: the shape is kept, nothing is learned, and each back-end
has one handler that reads the row (`Elementwise`): the `nn` module and the
keys it takes, the ONNX op and its attributes.
"""

from __future__ import annotations

from archc.kinds.kind import (
    FLAT_OR_SPATIAL,
    Elementwise,
    Family,
    Key,
    KeyArg,
    KeyType,
    LayerKind,
    Traits,
    same_shape,
)

_TRAITS = Traits(Family.ELEMENTWISE, FLAT_OR_SPATIAL)

# name, doc, lowering, keys, positional key, example
_ROWS: tuple[tuple[str, str, Elementwise, tuple[Key, ...], str | None, str], ...] = (
    (
        "dropout",
        "Dropout with probability p; the identity at inference.",
        Elementwise("nn.Dropout", None, args=(KeyArg("p", "p"),)),
        (Key("p", KeyType.PROB, 0.5, doc="drop probability"),),
        "p",
        "dropout 0.3",
    ),
    ("relu", "max(x, 0)", Elementwise("nn.ReLU", "Relu"), (), None, "relu"),
    (
        "relu6",
        "min(max(x, 0), 6)",
        Elementwise("nn.ReLU6", "Clip", onnx_constants=(("zero", 0.0), ("six", 6.0))),
        (),
        None,
        "relu6",
    ),
    ("sigmoid", "1 / (1 + exp(-x))", Elementwise("nn.Sigmoid", "Sigmoid"), (), None, "sigmoid"),
    ("tanh", "tanh(x)", Elementwise("nn.Tanh", "Tanh"), (), None, "tanh"),
    (
        "gelu",
        "x * Phi(x) (exact, erf form)",
        # ONNX's default approximate="none" is the erf form, as nn.GELU()'s
        Elementwise("nn.GELU", "Gelu"),
        (),
        None,
        "gelu",
    ),
    (
        "softmax",
        "softmax over the channels (the features, when flat)",
        Elementwise("nn.Softmax", "Softmax", over_features=True),
        (),
        None,
        "softmax",
    ),
    ("identity", "y = x", Elementwise("nn.Identity", "Identity"), (), None, "identity"),
    (
        "leakyrelu",
        "max(x, 0) + slope * min(x, 0)",
        Elementwise("nn.LeakyReLU", "LeakyRelu", args=(KeyArg("slope", "negative_slope", 0.01, "alpha"),)),
        (Key("slope", KeyType.FLOAT, 0.01, doc="negative slope"),),
        None,
        "leakyrelu slope=0.2",
    ),
)

KINDS = tuple(
    LayerKind(
        name,
        doc,
        same_shape,
        _TRAITS,
        example=example,
        keys=keys,
        positional=positional,
        elementwise=lowering,
    )
    for name, doc, lowering, keys, positional, example in _ROWS
)
