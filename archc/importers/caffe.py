"""Caffe deploy `.prototxt` -> an `.arch` spec (the network; Caffe keeps weights in a `.caffemodel`).

    >>> from archc.importers.common import finish
    >>> text = '''name: "Tiny"
    ... input: "data"  input_dim: 1  input_dim: 3  input_dim: 32  input_dim: 32
    ... layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
    ...         convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
    ... layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
    ... layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
    ...         pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
    ... layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 10 } }'''
    >>> print(import_text(text, "tiny.prototxt").text, end="")
    network Tiny
    input 32x32x3
    conv1: conv K=8 F=3 P=1 -> 32x32x8
    relu1: relu
    pool1: maxpool F=3 S=2 ceil=true -> 16x16x8
    fc: fc 10 -> 10

What is read: the header's `input:` with `input_dim:` or `input_shape`, or an
`Input` layer; `layer` and the legacy `layers` (V1 type names such as
CONVOLUTION); the layers of the TEST phase (a deploy file's), and of them
Convolution, Deconvolution, Pooling, InnerProduct, ReLU, Sigmoid, TanH, LRN,
Dropout, Softmax, Concat, Eltwise, BatchNorm followed by Scale, Split and
Flatten. Anything else is an `ImportFailure` at the line that says it, and so
is a field caffe.proto does not give its message (`caffe_fields.py`). Every
field of those messages is honoured (`round_mode`, the include/exclude rules
as `caffe test` evaluates them) or refused where it changes the network
(`use_global_stats: false`, weights shared by `param` name, a layer's own
`phase: TRAIN`), or changes nothing at inference (`engine`, fillers, `transpose`).

The parameters counted are the ones Caffe learns: a BatchNorm layer's blobs
(running mean, variance and the moving-average factor) are statistics, as
PyTorch's buffers are, and its Scale layer's scale and shift are the `2C`
parameters of the `batchnorm` the pair becomes, so ResNet-50 imports with the
published 25,557,032.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path

from archc.diagnostics import shown
from archc.importers.blocks import recover_blocks
from archc.importers.caffe_fields import MESSAGES
from archc.importers.common import Imported, ImportFailure, quoted, spec_name
from archc.importers.prototxt import Field, Identifier, Message, Value, parse
from archc.importers.structure import Node, StructureError, nest, render
from archc.kinds.windows import window_out
from archc.limits import MAX_DIM

# V1 `layers { type: CONVOLUTION }` -> the V2 type names (caffe.proto's V1LayerParameter.LayerType)
V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DATA": "Data",
    "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}  # fmt: skip
SUPPORTED = (
    "Convolution", "Deconvolution", "Pooling", "InnerProduct", "ReLU", "Sigmoid", "TanH", "LRN", "Dropout",
    "Softmax", "Concat", "Eltwise", "BatchNorm", "Scale", "Split", "Flatten", "Input",
)  # fmt: skip
SHAPING = ("conv", "convtranspose", "maxpool", "avgpool", "globalavgpool", "fc", "flatten")
DATA_LAYERS = ("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "Python")
LOSS_LAYERS = ("SoftmaxWithLoss", "Accuracy", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss")
Shape = tuple[int, ...]  # without the batch: (C,), (C, L), (C, H, W), (C, D, H, W)


def import_prototxt(path: Path) -> Imported:
    """Import a Caffe deploy prototxt file (read as a regular file, UTF-8)."""
    from archc.files import NotASpecFile, read_regular

    try:
        data = read_regular(path)
    except FileNotFoundError:
        raise ImportFailure("no such file", shown(str(path))) from None
    except (NotASpecFile, OSError) as exc:
        raise ImportFailure(f"cannot read the model: {exc.strerror or exc}", shown(str(path))) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFailure(
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            shown(str(path)),
            "a .prototxt is Caffe's text format; a binary .caffemodel holds weights, not the network",
        ) from None
    return import_text(text, str(path))


def import_text(text: str, path: str = "<string>") -> Imported:
    """Import prototxt text; `path` names it in errors and in the spec's header comment."""
    return _Importer(path, text).run()


@dataclass
class _Layer:
    name: str  # as Caffe writes it
    label: str  # as the spec names it
    type: str
    msg: Message
    bottoms: list[Field]
    tops: list[Field]


class _Importer:
    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text
        self.nodes: list[Node] = []
        self.blobs: dict[str, int] = {}  # a blob's current value (an in-place layer makes a new one)
        self.shapes: dict[int, Shape] = {}
        self.writer: dict[int, Node] = {}  # the node that computes a value
        self.labels: set[str] = set()
        self.input: tuple[str, Shape, Field | Message] | None = None
        self.shared: dict[str, str] = {}  # a `param { name: }` -> the first layer that names it

    # --- errors --------------------------------------------------------------------------------
    def fail(self, where: Field | Message | None, message: str, hint: str | None = None) -> ImportFailure:
        if where is None:
            return ImportFailure(message, shown(self.path), hint)
        if isinstance(where, Field):
            column = where.value_column if not isinstance(where.value, Message) else where.column
            width = len(str(where.value)) + (2 if isinstance(where.value, str) and not isinstance(where.value, Identifier) else 0)
            if isinstance(where.value, Message):
                column, width = where.column, len(where.name)
            return ImportFailure.at(self.path, self.text, where.line, column, message, hint, width)
        return ImportFailure.at(self.path, self.text, where.line, where.column, message, hint)

    def at_layer(
        self, layer: _Layer, message: str, hint: str | None = None, key: str | None = None, where: Field | None = None
    ) -> ImportFailure:
        """An error about `layer`, at the field `where`, or its field `key` (a parameter), or else at its name."""
        if where is None and key is not None:
            where = _find(layer.msg, key)
        return self.fail(where or layer.msg.field("name") or layer.msg, f"{layer.type} layer {_q(layer.name)}: {message}", hint)

    # --- the network ---------------------------------------------------------------------------
    def run(self) -> Imported:
        net = parse(self.text, self.path)
        self.known_fields(net, "NetParameter")
        self.header(net)
        fields = [f for f in net.fields if f.name in ("layer", "layers")]
        for f in fields:
            assert isinstance(f.value, Message)
            layer = self.read_layer(f)
            if layer is not None:
                self.add(layer)
        if self.input is None:
            raise self.fail(
                None,
                "the network declares no input",
                "a deploy prototxt names it: `input: \"data\"` with four `input_dim:`, `input_shape { dim: ... }`,"
                " or an `Input` layer",
            )
        self.fuse_batchnorm()
        if not self.nodes:
            raise self.fail(None, "the network has no layers")
        try:
            statements = nest(self.nodes, 0)
        except StructureError as exc:
            origin = exc.node.origin if exc.node is not None else None
            raise (self.at_layer(origin, exc.message, exc.hint) if origin else self.fail(None, exc.message, exc.hint)) from None
        head = ""
        name = net.get("name")
        if isinstance(name, str) and name.strip():
            head += f"network {_name(name)}\n"
        head += f"input {_shape_text(self.input[1])}\n"
        names = {n.name: n.origin.name for n in self.nodes}
        blocks, statements = recover_blocks(statements, lambda label: _scoped(names.get(label, "")), self.labels)
        defined = "".join(f"\n{b}" for b in blocks) + ("\n" if blocks else "")
        return Imported(head + defined + render(statements), Path(self.path).name)

    def known_fields(self, msg: Message, kind: str) -> None:
        """Every field is one caffe.proto gives its message (Caffe refuses the file otherwise), in
        the messages archc reads; a misspelt `strid:` is not read as the default stride."""
        schema = MESSAGES[kind]
        for f in msg.fields:
            if f.name not in schema:
                near = difflib.get_close_matches(f.name, list(schema), n=1, cutoff=0.6)
                where = _MESSAGE_WORDS.get(kind, kind)
                raise ImportFailure.at(
                    self.path, self.text, f.line, f.column, f"{where} has no field {_q(f.name)}",
                    f"did you mean {_q(near[0])}?" if near else "BVLC Caffe's caffe.proto has no such field: Caffe refuses it, and a fork's field is not read",
                    len(f.name))
            inner = schema[f.name]
            if inner is not None and isinstance(f.value, Message):
                self.known_fields(f.value, inner)

    def header(self, net: Message) -> None:
        """`input: "data"` with `input_dim:` (N, C and up to three sizes) or `input_shape { dim: ... }`."""
        names = net.all("input")
        if not names:
            if net.all("input_dim") or net.all("input_shape"):
                raise self.fail((net.all("input_dim") and net.all("input_dim")[0]) or net.all("input_shape")[0],
                                "input dimensions without an `input:` naming the blob")
            return
        if len(names) > 1:
            raise self.fail(names[1], "a second input: archc's specs have one input")
        shapes = net.all("input_shape")
        if shapes:
            assert isinstance(shapes[0].value, Message)
            dims = [self.whole(f, 1) for f in shapes[0].value.all("dim")]
            where: Field = shapes[0]
        else:  # N, C, then up to three sizes, as `input_shape` (BVLC Caffe itself takes four per input)
            found = net.all("input_dim")
            if not 2 <= len(found) <= 5:
                raise self.fail(found[-1] if found else names[0],
                                f"the input has {len(found)} `input_dim:`; expected 2 to 5 (N, C, then up to three sizes)")
            dims = [self.whole(f, 1) for f in found]
            where = found[0]
        self.set_input(str(names[0].value), dims, where)

    def set_input(self, blob: str, dims: list[int], where: Field) -> None:
        if self.input is not None:
            raise self.fail(where, f"a second input ({_q(blob)}): archc's specs have one input")
        if not 2 <= len(dims) <= 5 or any(d < 1 for d in dims[1:]):
            raise self.fail(where, f"input shape {dims}: expected N, C and up to three positive sizes (N C H W)")
        shape = tuple(dims[1:])
        self.input = (blob, shape, where)
        self.blobs[blob] = 0
        self.shapes[0] = shape

    def read_layer(self, f: Field) -> _Layer | None:
        msg = f.value
        assert isinstance(msg, Message)
        type_field = msg.field("type")
        if type_field is None:
            raise self.fail(f, "a layer without a `type:`")
        if isinstance(type_field.value, Message):
            raise self.fail(type_field, "a layer's `type:` is a name, not a message")
        kind = str(type_field.value)
        if f.name == "layers":  # V1: an enum
            if kind not in V1_TYPES:
                raise self.fail(type_field, f"unknown V1 layer type {_q(kind)}", "V1 types are upper case: CONVOLUTION, POOLING, ...")
            kind = V1_TYPES[kind]
        if not _in_test_phase(msg):
            return None
        name_field = msg.field("name")
        name = str(name_field.value) if name_field is not None else f"{kind.lower()}{len(self.nodes) + 1}"
        layer = _Layer(name, "", kind, msg, msg.all("bottom"), msg.all("top"))
        if kind == "Input":
            shapes = msg.one("input_param").all("shape")
            if len(layer.tops) != 1 or len(shapes) != 1:
                raise self.at_layer(layer, "archc's specs have one input: give the Input layer one top and one shape")
            assert isinstance(shapes[0].value, Message)
            self.set_input(str(layer.tops[0].value), [self.whole(d, 1) for d in shapes[0].value.all("dim")], shapes[0])
            return None
        if kind in DATA_LAYERS:
            raise self.fail(type_field, f"a {kind} layer reads training data; the input's shape is not in the file",
                            "import the deploy prototxt (the one with `input:` or an Input layer)", )
        if kind in LOSS_LAYERS:
            raise self.fail(type_field, f"{kind} is a training layer",
                            "import the deploy prototxt, which ends in the network's output (Softmax)")
        if kind not in SUPPORTED:
            raise self.fail(type_field, f"unsupported layer type {_q(kind)} (layer {_q(name)})",
                            "archc imports " + ", ".join(t for t in SUPPORTED if t not in ("BatchNorm", "Scale", "Input"))
                            + " and BatchNorm+Scale pairs")
        self.runs_as_deployed(layer, f.name == "layers")
        layer.label = self.label(name)
        return layer

    def runs_as_deployed(self, layer: _Layer, v1: bool) -> None:
        """The fields of a layer that change what it computes beyond its parameters."""
        msg = layer.msg
        if v1 and msg.field("layer") is not None:  # V0: the whole layer nested in V1's `layer`
            raise self.fail(msg.field("layer"), "a V0 layer (inside `layers { layer { ... } }`)",
                            "upgrade the file with Caffe's tools/upgrade_net_proto_text first")
        phase = msg.field("phase")  # a layer's own phase: a Dropout drops, a BatchNorm uses its batch
        if phase is not None and str(phase.value) not in ("TEST", "1") and layer.type in ("Dropout", "BatchNorm"):
            raise self.at_layer(layer, f"`phase: {phase.value}`: the layer runs as in training",
                                "archc's spec is the network at inference; remove the layer's `phase`", where=phase)
        for spec in msg.all("param"):  # ParamSpec; V1 writes the names as `param: "w"`
            name = spec.value.field("name") if isinstance(spec.value, Message) else spec
            if name is None or isinstance(name.value, Message) or not str(name.value):
                continue
            owner = self.shared.setdefault(str(name.value), layer.name)
            if owner != layer.name:
                raise self.at_layer(layer, f"shares its weights with layer {_q(owner)} (`param` name {_q(str(name.value))})",
                                    "archc's layers each have weights of their own: a spec would count them twice",
                                    where=name)

    def label(self, name: str) -> str:
        base = _name(name)
        label, n = base, 2
        while label in self.labels:
            label, n = f"{base}_{n}", n + 1
        self.labels.add(label)
        return label

    # --- layers --------------------------------------------------------------------------------
    def add(self, layer: _Layer) -> None:
        inputs: list[int] = []
        for b in layer.bottoms:
            blob = str(b.value)
            if blob not in self.blobs:
                raise self.fail(b, f"no layer before {_q(layer.name)} writes the blob {_q(blob)}",
                                "every bottom must be the input or an earlier layer's top")
            inputs.append(self.blobs[blob])
        if not inputs:
            raise self.at_layer(layer, "the layer reads no blob (no `bottom:`)")
        if layer.type == "Split":  # copies of its bottom: the readers read the bottom itself
            for t in layer.tops:
                self.blobs[str(t.value)] = inputs[0]
            return
        if len(layer.tops) != 1:
            raise self.at_layer(layer, f"{len(layer.tops)} tops: archc imports layers with one output")
        shapes = [self.shapes[v] for v in inputs]
        text, shape, merge = getattr(self, f"layer_{layer.type.lower()}")(layer, shapes)
        if merge is None and len(inputs) > 1:
            raise self.at_layer(layer, f"{len(inputs)} bottoms: the layer takes one")
        # the shapes of the layers that make them are asserted, as a person writes a spec
        # (`conv1: conv ... -> 55x55x96`); activations and normalisations keep theirs
        arrow = _shape_text(shape) if merge is not None or text.split(" ")[0] in SHAPING else ""
        node = Node(layer.label, tuple(inputs), len(self.shapes), text, merge, layer, arrow, _shape_text(shape))
        self.shapes[node.output] = shape
        self.blobs[str(layer.tops[0].value)] = node.output
        self.writer[node.output] = node
        self.nodes.append(node)

    def fuse_batchnorm(self) -> None:
        """BatchNorm then Scale (bias_term: true) become one `batchnorm`, named after the BatchNorm."""
        readers: dict[int, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                readers.setdefault(v, []).append(n)
        dropped: set[int] = set()
        for node in self.nodes:
            layer = node.origin
            assert isinstance(layer, _Layer)
            if layer.type == "Scale":
                bn = self.writer.get(node.inputs[0])
                if bn is None or bn.origin.type != "BatchNorm" or id(bn) in dropped:
                    raise self.at_layer(layer, "a Scale layer that does not follow a BatchNorm",
                                        "archc reads Scale only as the scale and shift of the BatchNorm before it")
            elif layer.type == "BatchNorm":
                after = readers.get(node.output, [])
                if len(after) != 1 or after[0].origin.type != "Scale":
                    raise self.at_layer(layer, "a BatchNorm without a Scale after it",
                                        "archc's batchnorm learns a scale and a shift: Caffe writes them as the Scale layer"
                                        " that follows the BatchNorm")
                scale = after[0]
                if _flag(scale.origin.msg.one("scale_param"), "bias_term", False) is not True:
                    raise self.at_layer(scale.origin, "a Scale without a bias (`bias_term: true`) after a BatchNorm",
                                        "archc's batchnorm learns a scale and a shift", key="scale_param")
                node.output = scale.output
                self.writer[node.output] = node
                dropped.add(id(scale))
        self.nodes = [n for n in self.nodes if id(n) not in dropped]

    def layer_batchnorm(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("batch_norm_param")
        if _flag(p, "use_global_stats", True) is not True:  # TEST's default: the running statistics
            raise self.at_layer(layer, "`use_global_stats: false` normalises by each batch's statistics",
                                "archc's batchnorm uses its running statistics at inference, as Caffe does by"
                                " default in the TEST phase: remove the field", key="use_global_stats")
        eps = self.number(layer, p, "eps", 1e-5, 0)
        if eps == 0:
            raise self.fail(p.field("eps"), "`eps` must be more than 0")
        return "batchnorm" + ("" if eps == 1e-5 else f" eps={_num(eps)}"), ins[0], None

    def layer_scale(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("scale_param")
        if len(layer.bottoms) != 1 or self.number(layer, p, "axis", 1) != 1 or self.number(layer, p, "num_axes", 1) != 1:
            raise self.at_layer(layer, "archc reads Scale only as a per-channel scale after a BatchNorm", key="scale_param")
        return "", ins[0], None

    def layer_convolution(self, layer: _Layer, ins: list[Shape], transpose: bool = False) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("convolution_param")
        c, spatial = self.spatial(layer, ins[0])
        k = self.required(layer, p, "num_output")
        f = self.window(layer, p, "kernel_size", len(spatial), None)
        s = self.window(layer, p, "stride", len(spatial), 1)
        pad = self.window(layer, p, "pad", len(spatial), 0)
        d = self.window(layer, p, "dilation", len(spatial), 1)
        g = self.integer(p, "group", 1, low=1)
        if self.number(layer, p, "axis", 1) != 1:
            raise self.at_layer(layer, "only axis 1 (channels) is supported", key="axis")
        if c % g or k % g:
            raise self.at_layer(layer, f"group {g} does not divide the {c} input channels and the {k} outputs", key="group")
        if transpose:
            out = tuple((n - 1) * si - 2 * pi + di * (fi - 1) + 1 for n, fi, si, pi, di in zip(spatial, f, s, pad, d, strict=True))
        else:
            out = tuple((n + 2 * pi - di * (fi - 1) - 1) // si + 1 for n, fi, si, pi, di in zip(spatial, f, s, pad, d, strict=True))
        if min(out) < 1:
            raise self.at_layer(layer, f"the output would be empty ({_dims(spatial)} in, {_dims(out)} out)")
        text = f"{'convtranspose' if transpose else 'conv'} K={k} F={_dims(f)}"
        text += _key("S", s, 1) + _key("P", pad, 0) + _key("D", d, 1)
        text += f" G={g}" if g != 1 else ""
        text += " bias=false" if _flag(p, "bias_term", True) is False else ""
        return text, (k, *out), None

    def layer_deconvolution(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        return self.layer_convolution(layer, ins, transpose=True)

    def layer_pooling(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        """caffe/src/caffe/layers/pooling_layer.cpp: images only; the output rounded up (CEIL, the
        default) or down (`round_mode: FLOOR`); a padding less than the window."""
        p = layer.msg.one("pooling_param")
        c, spatial = self.spatial(layer, ins[0])
        if len(spatial) != 2:
            raise self.at_layer(layer, f"Caffe pools images (N, C, H, W), and its input is {_shape_text(ins[0])}",
                                "archc reads what Caffe runs: its Pooling layer refuses other shapes")
        method = str(p.get("pool", "MAX"))
        method = {"0": "MAX", "1": "AVE"}.get(method, method)
        if method not in ("MAX", "AVE"):
            raise self.at_layer(layer, f"{_q(method)} pooling is not supported (MAX and AVE are)", key="pool")
        kind = "maxpool" if method == "MAX" else "avgpool"
        mode = p.field("round_mode")
        rounding = {"0": "CEIL", "1": "FLOOR"}.get(str(mode.value), str(mode.value)) if mode is not None else "CEIL"
        if rounding not in ("CEIL", "FLOOR"):
            raise self.at_layer(layer, f"`round_mode` is CEIL or FLOOR, not {_q(rounding)}", where=mode)
        if _flag(p, "global_pooling", False):
            # Caffe refuses a window, and any padding or stride, beside global pooling
            for key in ("kernel_size", "kernel_h", "kernel_w"):
                if p.field(key) is not None:
                    raise self.at_layer(layer, f"`{key}` with `global_pooling`: the window is the whole image",
                                        "Caffe refuses it; leave the window out", where=p.field(key))
            for key, plain in (("pad", 0), ("pad_h", 0), ("pad_w", 0), ("stride", 1), ("stride_h", 1), ("stride_w", 1)):
                given = p.field(key)
                if given is not None and self.whole(given) != plain:
                    raise self.at_layer(layer, f"`{key}: {_num(self.whole(given))}` with `global_pooling`",
                                        f"Caffe takes global pooling only with `{key.split('_')[0]}: {plain}`",
                                        where=given)
            ones = (1,) * len(spatial)
            if method == "AVE":
                return "globalavgpool", (c, *ones), None
            return f"maxpool F={_dims(spatial)}", (c, *ones), None
        f = self.window(layer, p, "kernel_size", len(spatial), None)
        s = self.window(layer, p, "stride", len(spatial), 1)
        pad = self.window(layer, p, "pad", len(spatial), 0, paired=True)
        ceil = rounding == "CEIL"
        out = []
        for axis, (n, fi, si, pi) in enumerate(zip(spatial, f, s, pad, strict=True)):
            where = self.axis_field(p, "pad", axis)
            if pi >= fi:
                raise self.at_layer(layer, f"padding {pi} is not less than the window {fi}",
                                    "Caffe refuses it (pooling_layer.cpp: pad < kernel_size)", where=where)
            if 2 * pi > fi:
                raise self.at_layer(layer, f"padding {pi} is more than half the window {fi}",
                                    "archc, as PyTorch and ONNX runtimes, pads a pooling window by at most half of it:"
                                    f" P={fi // 2} here", where=where)
            caffe = _caffe_pool_out(n, fi, si, pi, ceil)
            if caffe < 1:
                raise self.at_layer(layer, f"the output would be empty ({_dims(spatial)} in)")
            if caffe != window_out(n, fi, si, pi, pi, 1, ceil):
                raise self.at_layer(
                    layer,
                    f"Caffe's last window here starts past the input ({n} in, F={fi} S={si} P={pi}: {caffe} out);"
                    " archc, as PyTorch, drops such a window",
                )
            out.append(caffe)
        # Caffe rounds the output size up unless told FLOOR; its stride defaults to 1, archc's to F
        text = f"{kind} F={_dims(f)}" + (f" S={_dims(s)}" if s != f else "") + _key("P", pad, 0)
        return text + (" ceil=true" if ceil else ""), (c, *out), None

    def axis_field(self, p: Message, key: str, axis: int) -> Field | None:
        """The field that sets `key` along an axis of an image: `pad_h` (axis 0), `pad_w` (1), else `pad`."""
        return p.field(f"{key}_{'hw'[axis]}") if axis < 2 and p.field(f"{key}_{'hw'[axis]}") else p.field(key)

    def layer_innerproduct(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("inner_product_param")
        n = self.required(layer, p, "num_output")
        if self.number(layer, p, "axis", 1) != 1:
            raise self.at_layer(layer, "only axis 1 is supported (the whole input, flattened)", key="axis")
        if len(ins[0]) == 2:
            raise self.at_layer(layer, "an InnerProduct on a 1-D signal (C x L) flattens it, archc's fc does not:"
                                " add a Flatten layer before it")
        return f"fc {n}" + (" bias=false" if _flag(p, "bias_term", True) is False else ""), (n,), None

    def layer_relu(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        slope = self.number(layer, layer.msg.one("relu_param"), "negative_slope", 0)
        return ("relu" if slope == 0 else f"leakyrelu slope={_num(slope)}"), ins[0], None

    def layer_sigmoid(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        return "sigmoid", ins[0], None

    def layer_tanh(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        return "tanh", ins[0], None

    def layer_lrn(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("lrn_param")
        if str(p.get("norm_region", "ACROSS_CHANNELS")) not in ("ACROSS_CHANNELS", "0"):
            raise self.at_layer(layer, "only ACROSS_CHANNELS normalisation is supported", key="norm_region")
        self.spatial(layer, ins[0])
        # Caffe's defaults differ from archc's (k=1, alpha=1): every value is written
        size = self.integer(p, "local_size", 5, low=1)
        if size % 2 == 0:
            raise self.at_layer(layer, f"`local_size: {size}` is even", "Caffe's LRN takes odd sizes only",
                                key="local_size")
        alpha, beta, k = (self.number(layer, p, key, d) for key, d in (("alpha", 1.0), ("beta", 0.75), ("k", 1.0)))
        return f"lrn size={_num(size)} alpha={_num(alpha)} beta={_num(beta)} k={_num(k)}", ins[0], None

    def layer_dropout(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("dropout_param")
        ratio = self.number(layer, p, "dropout_ratio", 0.5, 0, 1)
        if ratio == 1:  # Caffe refuses it too: nothing would pass
            raise self.fail(p.field("dropout_ratio"), "`dropout_ratio` must be below 1")
        return "dropout" + ("" if ratio == 0.5 else f" p={_num(ratio)}"), ins[0], None

    def layer_softmax(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        if self.number(layer, layer.msg.one("softmax_param"), "axis", 1) != 1:
            raise self.at_layer(layer, "only a softmax over the channels (axis 1) is supported", key="axis")
        return "softmax", ins[0], None

    def layer_flatten(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("flatten_param")
        if self.number(layer, p, "axis", 1) != 1 or self.number(layer, p, "end_axis", -1) != -1:
            raise self.at_layer(layer, "only a Flatten of everything but the batch is supported", key="flatten_param")
        return "flatten", (math.prod(ins[0]),), None

    def layer_concat(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("concat_param")
        if p.field("axis") is not None and p.field("concat_dim") is not None:
            raise self.at_layer(layer, "both `axis` and `concat_dim`", "Caffe refuses it: give `axis` alone",
                                where=p.field("concat_dim"))
        axis = self.number(layer, p, "axis", self.number(layer, p, "concat_dim", 1))
        if axis != 1:
            raise self.at_layer(layer, "only a concatenation of channels (axis 1) is supported", key="concat_param")
        rests = {s[1:] for s in ins}
        if len(rests) != 1:
            raise self.at_layer(layer, "its bottoms differ in size: " + ", ".join(_shape_text(s) for s in ins))
        return "", (sum(s[0] for s in ins), *ins[0][1:]), "concat"

    def layer_eltwise(self, layer: _Layer, ins: list[Shape]) -> tuple[str, Shape, str | None]:
        p = layer.msg.one("eltwise_param")
        op = str(p.get("operation", "SUM"))
        op = {"0": "PROD", "1": "SUM", "2": "MAX"}.get(op, op)
        if op not in ("SUM", "PROD"):
            raise self.at_layer(layer, f"Eltwise {_q(op)} is not supported (SUM and PROD are)", key="operation")
        coeffs = p.all("coeff")
        if coeffs and len(coeffs) != len(layer.bottoms):
            raise self.at_layer(layer, f"{len(coeffs)} `coeff` for {len(layer.bottoms)} bottoms",
                                "Caffe refuses it: one coefficient per bottom, or none", key="coeff")
        if any(self.as_number(c) != 1 for c in coeffs):
            raise self.at_layer(layer, "a weighted sum (coeff other than 1) is not supported", key="coeff")
        if len(set(ins)) != 1:
            raise self.at_layer(layer, "its bottoms differ in shape: " + ", ".join(_shape_text(s) for s in ins))
        return "", ins[0], "add" if op == "SUM" else "multiply"

    # --- values --------------------------------------------------------------------------------
    def spatial(self, layer: _Layer, shape: Shape) -> tuple[int, Shape]:
        if len(shape) < 2:
            raise self.at_layer(layer, f"the layer needs an image, but its input is a flat vector of {shape[0]}")
        return shape[0], shape[1:]

    def as_number(self, f: Field, low: float = -math.inf, high: float = math.inf) -> float:
        """A field's value as a finite number from `low` to `high`, or an error at the value."""
        v = f.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f, f"`{f.name}` must be a number, not {shown(str(v))}")
        if not math.isfinite(v):
            raise self.fail(f, f"`{f.name}` must be a finite number, not {v}")
        if not low <= v <= high:
            raise self.fail(f, f"`{f.name}` must be {_range(low, high)}, not {_num(v)}")
        return v

    def whole(self, f: Field, low: int = 0, high: int = MAX_DIM) -> int:
        """A whole number; a spec takes sizes up to 2^31-1 (caffe.proto's: uint32, and int64 in shapes)."""
        v = self.as_number(f, low, high)
        if v != int(v):
            raise self.fail(f, f"`{f.name}` must be a whole number, not {_num(v)}")
        return int(v)

    def number(
        self, layer: _Layer, p: Message, key: str, default: float, low: float = -math.inf, high: float = math.inf
    ) -> float:
        f = p.field(key)
        return default if f is None else self.as_number(f, low, high)

    def integer(self, p: Message, key: str, default: int, low: int = 0) -> int:
        f = p.field(key)
        return default if f is None else self.whole(f, low)

    def required(self, layer: _Layer, p: Message, key: str) -> int:
        f = p.field(key)
        if f is None:
            raise self.at_layer(layer, f"`{key}` is missing")
        return self.whole(f, 1)

    def window(
        self, layer: _Layer, p: Message, key: str, rank: int, default: int | None, paired: bool = False
    ) -> tuple[int, ...]:
        """`kernel_size: 3` (every dim), repeated (one per dim), or `kernel_h`/`kernel_w`."""
        stem = key.removesuffix("_size")
        h, w = p.field(f"{stem}_h"), p.field(f"{stem}_w")
        values = p.all(key)
        if h is not None or w is not None:
            # caffe's conv_layer: both for the kernel and the stride; a pad_h alone leaves pad_w 0
            # (pooling_layer, `paired`: pad_h and pad_w go together too)
            if ((key != "pad" or paired) and (h is None or w is None)) or values or rank != 2:
                raise self.fail(h or w, f"`{stem}_h` and `{stem}_w` go together, on images, without `{key}`")
            found: tuple[int, ...] = (self.whole(h) if h else 0, self.whole(w) if w else 0)
        elif not values:
            if default is None:
                raise self.at_layer(layer, f"`{key}` is missing")
            found = (default,) * rank
        elif len(values) == 1:
            found = (self.whole(values[0]),) * rank
        elif len(values) == rank:
            found = tuple(self.whole(v) for v in values)
        else:
            raise self.fail(values[0], f"{len(values)} values of `{key}` for {rank} spatial dimensions")
        low = 0 if key == "pad" else 1
        if min(found) < low:
            where = values[0] if values else h or w
            raise self.fail(where, f"`{key}` must be at least {low}")
        return found


# caffe.proto's messages as a message names them (the parameters go by their field names)
_MESSAGE_WORDS = {
    "NetParameter": "the network", "LayerParameter": "a layer", "V1LayerParameter": "a layer",
    "BlobShape": "a shape", "NetStateRule": "an include or exclude rule", "ParamSpec": "a `param`",
    "FillerParameter": "a filler",
}  # fmt: skip


def _in_test_phase(msg: Message) -> bool:
    """Whether Caffe runs the layer in a deploy net: caffe/src/caffe/net.cpp's FilterNet and
    StateMeetsRule for the state `caffe test` and pycaffe's `caffe.Net(file, caffe.TEST)` give
    (phase TEST, level 0, no stages; the file's own `state` is replaced). Without an `include`
    the layer is in unless an `exclude` rule is met; an `include` rule met puts it back in."""
    def met(rule: Value) -> bool:
        if not isinstance(rule, Message):
            return False
        phase = rule.get("phase")
        if phase is not None and str(phase) not in ("TEST", "1"):
            return False
        if _number_or(rule.get("min_level"), 0) > 0 or _number_or(rule.get("max_level"), 0) < 0:
            return False
        return not rule.all("stage")  # a stage the state lacks (it has none): not met; `not_stage`: met

    included = not msg.all("include")
    if any(met(f.value) for f in msg.all("exclude")):
        included = False
    if any(met(f.value) for f in msg.all("include")):
        included = True
    return included


def _number_or(value: Value | None, default: float) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _find(msg: Message, key: str) -> Field | None:
    """The field `key` in the message or one level down (a layer's `convolution_param { group: 2 }`)."""
    found = msg.field(key)
    if found is not None:
        return found
    for f in msg.fields:
        if isinstance(f.value, Message):
            inner = f.value.field(key)
            if inner is not None:
                return inner
    return None


def _flag(p: Message, key: str, default: bool) -> bool | None:
    v = p.get(key)
    if v is None:
        return default
    text = str(v).lower()
    return True if text in ("true", "1", "t") else False if text in ("false", "0", "f") else None


def _caffe_pool_out(n: int, f: int, s: int, p: int, ceil: bool = True) -> int:
    """caffe/src/caffe/layers/pooling_layer.cpp: round up (or down), then drop a window that starts in the padding."""
    out = (-(-(n + 2 * p - f) // s) if ceil else (n + 2 * p - f) // s) + 1
    if p and (out - 1) * s >= n + p:
        out -= 1
    return out


def _scoped(name: str) -> tuple[str, str] | None:
    """`inception_3a/1x1` -> (`inception_3a`, `1x1`): the zoo's `scope/layer` names."""
    scope, slash, rest = name.partition("/")
    return (scope, rest) if slash and scope and rest else None


def _name(name: str) -> str:
    """A Caffe name as a spec's name: `inception_3a/1x1` -> `inception_3a_1x1`, `5x5` -> `_5x5`, `network` -> `network_`."""
    return spec_name(name)


def _dims(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _key(key: str, values: tuple[int, ...], default: int) -> str:
    return "" if all(v == default for v in values) else f" {key}={_dims(values)}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _q(text: str) -> str:
    """A name from the file, quoted for a message: escaped when it holds a newline, ESC, ...; a long one cut."""
    return quoted(text)


def _range(low: float, high: float) -> str:
    if high == math.inf:
        return f"at least {_num(low)}"
    if low == -math.inf:
        return f"at most {_num(high)}"
    return f"from {_num(low)} to {_num(high)}"


def _shape_text(shape: Shape) -> str:
    """(C, H, W) -> `HxWxC`, as specs write shapes."""
    return "x".join(map(str, (*shape[1:], shape[0]))) if len(shape) > 1 else str(shape[0])
