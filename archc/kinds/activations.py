"""Element-wise kinds, as a table: each row is a kind and its lowering to PyTorch and ONNX; and droppath.

A row needs no code: the shape is kept, nothing is learned, and each back-end
has one handler that reads the row (`Elementwise`): the `nn` module and the
keys it takes, the ONNX op and its attributes.
"""

from __future__ import annotations

from archc.kinds.kind import (
    ANY_FEATURES,
    Elementwise,
    Family,
    Key,
    KeyArg,
    KeyType,
    LayerKind,
    Traits,
    same_shape,
)

_TRAITS = Traits(Family.ELEMENTWISE, ANY_FEATURES)

# name, doc, lowering, keys, positional key, example
_ROWS: tuple[tuple[str, str, Elementwise, tuple[Key, ...], str | None, str], ...] = (
    (
        "dropout",
        "Dropout with probability p; the identity at inference.",
        Elementwise("nn.Dropout", None, args=(KeyArg("p", "p"),)),
        (Key("p", KeyType.PROB, 0.5, doc="the drop probability"),),
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
        "x * Phi(x): exact (erf) form, or its tanh approximation with approx=tanh",
        # ONNX's approximate="none" is the erf form, nn.GELU()'s default; both name the other "tanh"
        Elementwise(
            "nn.GELU",
            "Gelu",
            args=(KeyArg("approx", "approximate", "none", "approximate"),),
        ),
        (Key("approx", KeyType.CHOICE, "none", doc="the approximation: none (erf) or tanh", choices=("none", "tanh")),),
        None,
        "gelu approx=tanh",
    ),
    (
        "silu",
        "x * sigmoid(x) (swish)",
        # ONNX's Swish came in opset 24; x * Sigmoid(x) runs at every opset archc writes
        Elementwise("nn.SiLU", "Sigmoid", onnx_gate=True),
        (),
        None,
        "silu",
    ),
    (
        "hardswish",
        "x * relu6(x + 3) / 6",
        # x * HardSigmoid(x) with PyTorch's slope: ONNX's HardSwish needs opset 14, this runs at 13
        Elementwise("nn.Hardswish", "HardSigmoid", onnx_attrs=(("alpha", 1 / 6), ("beta", 0.5)), onnx_gate=True),
        (),
        None,
        "hardswish",
    ),
    (
        "hardsigmoid",
        "relu6(x + 3) / 6 (PyTorch's slope 1/6; ONNX's HardSigmoid defaults to 0.2)",
        Elementwise("nn.Hardsigmoid", "HardSigmoid", onnx_attrs=(("alpha", 1 / 6), ("beta", 0.5))),
        (),
        None,
        "hardsigmoid",
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
        (Key("slope", KeyType.FLOAT, 0.01, doc="the slope for negative inputs"),),
        None,
        "leakyrelu slope=0.2",
    ),
)

KINDS = (
    *(
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
    ),
    # Not a row: PyTorch has no module for it (the generated file brings a small DropPath class).
    LayerKind(
        "droppath",
        "Stochastic depth with probability p: drops whole samples in training; the identity at inference.",
        same_shape,
        _TRAITS,
        example="droppath 0.2",
        keys=(Key("p", KeyType.PROB, 0.1, doc="the drop probability"),),
        positional="p",
    ),
)
