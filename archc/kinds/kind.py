"""What every layer kind is made of: keys, rules, tensors, traits; and key values.

A `LayerKind` is data plus small functions. Its weights and biases are never
counted apart: they are the sizes of the tensors it declares (`tensors`), the
same list that names the PyTorch `state_dict` keys and the ONNX initializers.
Its `traits` are what the rest of the program asks of a kind instead of
testing its name: its window, whether it merges branches, the layouts it
accepts, its family (graph colours, docs).

Nothing here imports torch: `archc check` imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from archc.ir import Layout, Physical, Shape, written_spatial_ranks
from archc.limits import MAX_DIM

Attrs = dict[str, Any]


class KeyType(StrEnum):
    SIZES = "n or HxW (positive)"  # one size for every spatial dim, or one per dim (L, HxW, DxHxW)
    PAD = "n, HxW or same"
    OFFSETS = "n or HxW (non-negative)"  # as SIZES, zero allowed, no `same` (convtranspose's P and O)
    POS_INT = "positive integer"
    FLOAT = "number"
    POS_FLOAT = "positive number"
    PROB = "probability in [0, 1)"
    BOOL = "true or false"
    INT = "integer"  # may be negative: `select -1`
    NAME = "layer name"  # `tie=wte`: resolved by the elaborator to the layer's dotted name
    CHOICE = "one of its words"  # `mode=nearest`: the words are the key's `choices`


PER_DIMENSION = (KeyType.SIZES, KeyType.PAD, KeyType.OFFSETS)  # keys written `n` or one value per spatial dim
_WRITTEN_RANKS = written_spatial_ranks()  # how many values a per-dimension key may list
REQUIRED = object()


class Key(NamedTuple):
    name: str
    type: KeyType
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[str, ...] = ()  # the words a CHOICE key takes (`nearest`, `linear`)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def is_default(self, value: Any) -> bool:
        """Whether a value equals the default, `S=1x1` as `S=1` (written forms differ, sizes agree)."""
        return not self.required and same_value(value, self.default)


class ShapeError(Exception):
    """A layer cannot be applied to its input; `key` names the attribute to blame."""

    def __init__(self, message: str, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.hint = hint


class Counts(NamedTuple):
    weights: int = 0
    biases: int = 0
    macs: int = 0


class Window(NamedTuple):
    """The resolved geometry of a conv/pool window, one entry per spatial dim (H, W of an image).

    A transposed convolution's window is its forward convolution's, read backwards:
    `begin`/`end` are its P, and `output_padding` its O (empty for every other kind).
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    begin: tuple[int, ...]  # padding before each dim (top, left)
    end: tuple[int, ...]  # padding after each dim (bottom, right)
    ceil: bool
    out: tuple[int, ...]
    output_padding: tuple[int, ...] = ()

    @property
    def pads(self) -> tuple[int, ...]:
        """Every begin, then every end: ONNX's `pads` (top, left, bottom, right)."""
        return (*self.begin, *self.end)


class Applied(NamedTuple):
    """A layer applied to its inputs: what its tensors, MACs and explanation are computed from."""

    attrs: Attrs
    ins: Sequence[Shape]
    out: Shape
    window: Window | None  # resolved for conv/pool kinds (`Traits.window`), else None


class Role(StrEnum):
    WEIGHT = "weight"  # learnable, counted in weights
    BIAS = "bias"  # learnable, counted in biases
    BUFFER = "buffer"  # state, not a parameter (batchnorm running statistics)


class Init(StrEnum):
    """PyTorch's default initialisation for each tensor."""

    KAIMING_UNIFORM = "kaiming_uniform"  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)): kaiming_uniform_(a=sqrt(5))
    FAN_IN_UNIFORM = "fan_in_uniform"  # the same bound, for conv/fc biases
    ONES = "ones"
    ZEROS = "zeros"
    NORMAL = "normal"  # N(0, 1): nn.Embedding's table
    CONSTANT = "constant"  # every element `Tensor.value` (layerscale's init=1e-6)


class Tensor(NamedTuple):
    """A tensor a layer declares, named after it: `weight` becomes `conv1.weight`.

    An empty name is the layer itself: a layer that is one parameter (layerscale's
    `nn.Parameter`, as torchvision's ConvNeXt holds `layer_scale`) is keyed `name`.
    """

    name: str
    shape: tuple[int, ...]  # PyTorch's: conv weight [K, C/G, *F]
    role: Role
    init: Init
    fan_in: int = 0  # for the uniform inits' bound
    alias: str | None = None  # the full name of a tensor this one shares (weight tying): then it owns nothing
    value: float = 0.0  # every element, for Init.CONSTANT

    @property
    def owned(self) -> int:
        """The elements this tensor adds to the network (0 when it is another's)."""
        return 0 if self.alias is not None else math.prod(self.shape)


class Topic(StrEnum):
    """What a line of `archc summary --explain` derives."""

    SHAPE = "shape"
    PARAMS = "params"
    MACS = "macs"


class Line(NamedTuple):
    topic: Topic
    text: str


class WindowKind(StrEnum):
    NONE = "none"
    CONV = "conv"  # a convolution's window: F, S=1, P, D
    POOL = "pool"  # a pooling window: F, S=F, P at most F/2, ceil
    TRANSPOSED = "transposed"  # a transposed convolution's: F, S, P, O, D
    ADAPTIVE = "adaptive"  # windows fixed by the input and output sizes (adaptive pooling)


class Family(StrEnum):
    """A kind's family: the colour of its box in `archc graph`, its place in the docs."""

    CONV = "convolution"
    POOL = "pooling"
    DENSE = "fully connected"
    RESHAPE = "reshape"
    NORM = "normalisation"
    ELEMENTWISE = "element-wise"
    MERGE = "merge"
    EMBEDDING = "embedding"  # learned tables: token embeddings, positions, class token
    ATTENTION = "attention"


class Merge(NamedTuple):
    """How a kind that joins branches is shown."""

    symbol: str  # in diagrams: "+"
    noun: str  # in messages: "residual's sum"


# the layouts a window slides over: 1-D signals and sequences, images, volumes
SPATIAL = frozenset({Layout.SEQUENCE, Layout.IMAGE, Layout.VOLUME})
SEQUENCE = frozenset({Layout.SEQUENCE})
# every layout with a feature axis (not token ids): channels at every position, or flat features
ANY_FEATURES = frozenset({Layout.FLAT, *SPATIAL})


class Traits(NamedTuple):
    """What the rest of the program asks of a kind, instead of testing its name."""

    family: Family
    layouts: frozenset[Layout]  # the input layouts it accepts
    window: WindowKind = WindowKind.NONE
    merge: Merge | None = None  # joins the outputs of branches
    mixes_positions: bool = False  # each output sees every position of a spatial input (receptive fields)
    # How it wants a sequence (LxC) held in generated code: channels first (convolutions,
    # pooling: batch x C x L) or last (sequence layers: batch x L x C); None: either, it
    # keeps the order it is given (element-wise kinds, merges). See `archc.analysis.orders`.
    sequence: Physical | None = None


class KeyArg(NamedTuple):
    """A key an element-wise kind passes on to its PyTorch module and ONNX op."""

    key: str
    torch: str  # the module's keyword: `negative_slope`
    torch_default: Any = None  # left out when the value is this; None: always written
    onnx: str | None = None  # the op's attribute (`alpha`); None when the op has none


class Elementwise(NamedTuple):
    """An element-wise kind's lowering, as data: each back-end has one handler that reads it."""

    torch: str  # the nn module: "nn.ReLU"
    onnx: str | None  # the ONNX op; None: the identity at inference, no node (dropout)
    args: tuple[KeyArg, ...] = ()
    over_features: bool = False  # acts along the feature axis: PyTorch `dim=`, ONNX `axis=`
    onnx_constants: tuple[tuple[str, float], ...] = ()  # extra inputs, named `/const/<name>` (Clip's bounds)
    onnx_attrs: tuple[tuple[str, Any], ...] = ()  # fixed attributes (HardSigmoid's alpha=1/6, PyTorch's)
    onnx_gate: bool = False  # the op gates its input: x * op(x) (SiLU = x * Sigmoid(x))


CheckFn = Callable[[Attrs, Sequence[Shape]], None]
# one spatial axis of the receptive-field recurrence: (layer, axis, rf, jump, start) -> (rf, jump, start)
ReceptiveFn = Callable[["Applied", int, float, float, float], tuple[float, float, float]]
InferFn = Callable[[Attrs, Sequence[Shape], Window | None], Shape]
TensorsFn = Callable[[Applied], tuple[Tensor, ...]]
MacsFn = Callable[[Applied, int], int]  # (the layer, its weights) -> MACs
ExplainFn = Callable[[Applied, Counts], list[Line]]


def _no_check(attrs: Attrs, ins: Sequence[Shape]) -> None:
    return None


def _no_tensors(layer: Applied) -> tuple[Tensor, ...]:
    return ()


def _no_macs(layer: Applied, weights: int) -> int:
    return 0


def _no_explain(layer: Applied, counts: Counts) -> list[Line]:
    return []


def same_shape(attrs: Attrs, ins: Sequence[Shape], window: Window | None) -> Shape:
    """The shape rule of a layer that keeps its input's shape."""
    return ins[0]


class LayerKind(NamedTuple):
    name: str
    doc: str
    infer: InferFn  # the output shape; raises ShapeError
    traits: Traits
    example: str  # a layer line using it, valid after `input` of a layout it accepts
    keys: tuple[Key, ...] = ()
    positional: str | None = None  # which key a positional value fills
    check: CheckFn = _no_check  # what must hold before the window is resolved (conv's groups)
    tensors: TensorsFn = _no_tensors
    macs: MacsFn = _no_macs
    explain: ExplainFn = _no_explain  # the lecture's derivation of shape and counts
    elementwise: Elementwise | None = None
    user: bool = True  # False for graph-structure kinds (residual add, concat)
    arity: int = 1  # inputs; 0 means "one or more"
    receptive: ReceptiveFn | None = None  # how it moves receptive fields, when not by a conv/pool window

    def key(self, name: str) -> Key | None:
        for k in self.keys:
            if k.name == name:
                return k
        return None

    def counts(self, layer: Applied) -> Counts:
        """Weights and biases are the elements of the tensors it owns; MACs its rule's."""
        weights = biases = 0
        for t in self.tensors(layer):
            if t.role is Role.WEIGHT:
                weights += t.owned
            elif t.role is Role.BIAS:
                biases += t.owned
        return Counts(weights, biases, self.macs(layer, weights))


def per_position(layer: Applied, weights: int) -> int:
    """MACs of a layer that applies all its weights once per output position (conv, fc)."""
    return math.prod(layer.out.spatial) * weights


# --- key values ------------------------------------------------------------------------
def coerce(key: Key, value: Any) -> Any:
    """Check a key's value against its type, or raise ValueError with a sentence.

    Per-dimension keys keep what was written, `n` or one value per dim: how
    many dims there are is the input's to say (`per_dimension`).

    >>> coerce(Key("F", KeyType.SIZES), 3), coerce(Key("F", KeyType.SIZES), (3, 5))
    (3, (3, 5))
    >>> coerce(Key("P", KeyType.PAD), "same")
    'same'
    """
    t = key.type
    if t is KeyType.CHOICE:
        if isinstance(value, str) and value in key.choices:
            return value
        raise ValueError(f"{key.name} takes {_words(key.choices)}, not {_show(value)}")
    if t is KeyType.BOOL:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key.name} takes true or false, not {_show(value)}")
    if isinstance(value, bool):
        raise ValueError(f"{key.name} takes a {t}, not {_show(value)}")
    if t is KeyType.POS_INT:
        if isinstance(value, int) and 0 < value <= MAX_DIM:
            return value
        if isinstance(value, int) and value > MAX_DIM:
            raise ValueError(f"{key.name} must be at most 2^31-1 ({MAX_DIM:,}), not {value:,}")
        raise ValueError(f"{key.name} must be a positive integer, not {_show(value)}")
    if t is KeyType.INT:
        if isinstance(value, int):
            return value
        raise ValueError(f"{key.name} must be an integer, not {_show(value)}")
    if t is KeyType.NAME:
        if isinstance(value, str) and value:
            return value
        raise ValueError(f"{key.name} takes the name of a layer, not {_show(value)}")
    if t in PER_DIMENSION:
        if t is KeyType.PAD and value == "same":
            return "same"
        sizes = (value,) if isinstance(value, int) else value
        ok = isinstance(value, int) or (isinstance(value, tuple) and len(value) in _WRITTEN_RANKS)
        low = 1 if t is KeyType.SIZES else 0
        if ok and all(isinstance(v, int) and v >= low for v in sizes):
            if any(v > MAX_DIM for v in sizes):
                raise ValueError(f"{key.name} must be at most 2^31-1 ({MAX_DIM:,}), not {_show(value)}")
            return value
        what = {
            KeyType.PAD: "a non-negative integer, one per dimension (HxW, DxHxW) or same",
            KeyType.OFFSETS: "a non-negative integer, or one per dimension (HxW, DxHxW)",
        }.get(t, "a positive integer, or one per dimension (HxW, DxHxW)")
        raise ValueError(f"{key.name} must be {what}, not {_show(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        v = float(value)
        if t is KeyType.POS_FLOAT and v <= 0:
            raise ValueError(f"{key.name} must be positive, not {_show(value)}")
        if t is KeyType.PROB and not 0 <= v < 1:
            raise ValueError(f"{key.name} must be in [0, 1), not {_show(value)}")
        return v
    raise ValueError(f"{key.name} takes a {t}, not {_show(value)}")


def per_dimension(key: Key, value: Any, rank: int) -> Any:
    """A key's value for an input of `rank` spatial dims: `F=3` on an image is (3, 3).

    Values written per dim, `same` and None pass unchanged; so does every other key.

    >>> per_dimension(Key("F", KeyType.SIZES), 3, 2), per_dimension(Key("P", KeyType.PAD), "same", 2)
    ((3, 3), 'same')
    """
    if key.type in PER_DIMENSION and isinstance(value, int) and not isinstance(value, bool):
        return (value,) * rank
    return value


def per_dimension_attrs(kind: LayerKind, attrs: Attrs, rank: int) -> Attrs:
    """A layer's attributes for an input of `rank` spatial dims, per-dimension keys spelled out."""
    keys = {k.name: k for k in kind.keys}
    return {name: per_dimension(keys[name], v, rank) if name in keys else v for name, v in attrs.items()}


def same_value(a: Any, b: Any) -> bool:
    """Whether two values of a key are the same: `3` and `(3, 3)` are, for the same input."""
    return bool(_collapsed(a) == _collapsed(b))


def _collapsed(value: Any) -> Any:
    """One value for a tuple whose entries agree: (3, 3) -> 3."""
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return value[0]
    return value


def _words(words: Sequence[str]) -> str:
    """`nearest or linear`, `none, tanh or erf`."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def show_value(value: Any) -> str:
    """A key's value as the spec would write it (one number when every dim agrees).

    >>> show_value((3, 3)), show_value((3, 5)), show_value(1e-05), show_value(True)
    ('3', '3x5', '1e-05', 'true')
    """
    value = _collapsed(value)
    if isinstance(value, float):
        return f"{value:g}"
    return _show(value)
