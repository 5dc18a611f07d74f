"""Reading an untrusted `.onnx` file without holding its weights twice.

`onnx.load` parses the whole file into one protobuf message, and converting
its initializers to numpy copies them again: three times a 100 MB file at the
peak. Here the file is memory-mapped and its protobuf wire format walked just
far enough to find each large initializer's `raw_data`; the graph is parsed
from a copy without them (kilobytes), and each weight is a read-only numpy
view of the mapped file, read when the importer asks for it.

The graph alone then goes through the checks `archc run` makes on a model
(`archc.backends.onnx.runtime.validate_model`: the ONNX checker, strict shape
inference, declared sizes), and the weights' declared sizes through
`--max-size`. External data (`data_location: EXTERNAL`) is read from files
beside the model only: an absolute path, `..` or a link that leaves the
model's folder is refused.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import Message

from archc.backends.onnx.io import varint
from archc.diagnostics import ArchError, shown
from archc.limits import DEFAULT_MAX_SIZE, check_size

SMALL_TENSOR = 4096  # bytes: initializers this small stay in the graph (shapes, axes, scalars)
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 9, 13, 14


class OnnxImportError(ArchError):
    """The model cannot be imported (unreadable, invalid or not understood)."""


@dataclass
class Loaded:
    """A model's graph (its large initializers left out) and readers for those initializers."""

    model: onnx.ModelProto
    readers: dict[str, Callable[[], np.ndarray]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    keep: mmap.mmap | None = None  # the mapping the readers' views point into


def _varint(buf: mmap.mmap | bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or malformed varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: mmap.mmap | bytes, start: int, end: int) -> list[tuple[int, int, int, int, int]]:
    """The fields of one message in buf[start:end]: (number, wire type, field start, value start, end)."""
    out = []
    pos = start
    while pos < end:
        begin = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            value = begin
        elif wire == 1:
            value, pos = pos, pos + 8
        elif wire == 5:
            value, pos = pos, pos + 4
        elif wire == 2:
            length, value = _varint(buf, pos)
            pos = value + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("a field runs past the end of its message")
        out.append((number, wire, begin, value, pos))
    return out


def load(path: Path, max_size: int = DEFAULT_MAX_SIZE) -> Loaded:
    """The model at `path`, validated, its large weights mapped rather than read."""
    where = shown(str(path))
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
    except OSError as e:
        raise OnnxImportError(f"{where}: cannot read the model: {e.strerror or e}") from e
    if mapped is None:
        raise OnnxImportError(f"{where}: not an ONNX model (the file is empty)")
    try:
        loaded = _parse(mapped, path)
    except OnnxImportError:
        raise
    except Exception as e:
        raise OnnxImportError(f"{where}: not a readable ONNX model: {_first_line(e)}") from e
    declared = sum(math.prod(s) * 4 for s in loaded.shapes.values())
    check_size(f"{where}: the model's weights", declared, max_size)
    from archc.backends.onnx.runtime import RunError, validate_model

    try:
        validate_model(loaded.model, path, max_size)
    except RunError as e:
        raise OnnxImportError(str(e)) from e
    return loaded


def _parse(buf: mmap.mmap, path: Path) -> Loaded:
    top = _fields(buf, 0, len(buf))
    graphs = [f for f in top if f[0] == _MODEL_GRAPH and f[1] == 2]
    if len(graphs) != 1:
        raise ValueError("no graph" if not graphs else "several graphs")
    _, _, g_begin, g_start, g_end = graphs[0]
    kept_graph = bytearray()
    stripped: list[tuple[onnx.TensorProto, int, int]] = []  # the tensor without its data, where the data is
    for number, _wire, begin, value, end in _fields(buf, g_start, g_end):
        if number == _GRAPH_INITIALIZER:
            big = _strip(buf, value, end)
            if big is not None:
                stripped.append(big)
                continue
        kept_graph += buf[begin:end]
    model_bytes = bytearray()
    for _number, _wire, begin, _value, end in top:
        if begin == g_begin:
            model_bytes += varint(_MODEL_GRAPH << 3 | 2) + varint(len(kept_graph)) + kept_graph
        else:
            model_bytes += buf[begin:end]
    model = onnx.ModelProto.FromString(bytes(model_bytes))
    _require_text(model, path)
    loaded = Loaded(model, keep=buf)
    listed = {i.name for i in model.graph.input}
    for tensor, offset, length in stripped:
        _require_text(tensor, path)
        shape = tuple(int(d) for d in tensor.dims)
        if any(d < 0 for d in shape):
            raise OnnxImportError(f"{shown(str(path))}: initializer {shown(tensor.name)!r} has a negative dimension")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        if length != math.prod(shape) * dtype.itemsize:
            raise OnnxImportError(
                f"{shown(str(path))}: initializer {shown(tensor.name)!r} holds {length:,} bytes "
                f"for {list(shape)} of {dtype.name}"
            )
        if offset < 0:  # external data
            loaded.readers[tensor.name] = _external_reader(tensor, path, dtype, shape)
        else:
            loaded.readers[tensor.name] = _mapped_reader(buf, offset, dtype, shape)
        loaded.shapes[tensor.name] = shape
        if tensor.name not in listed:  # the graph names its weights as inputs with their types
            model.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, shape))
    return loaded


def _require_text(message: Message, path: Path) -> None:
    """Refuse a string field that is not UTF-8: protobuf hands such a field over as `bytes`
    (onnx's schema is proto2), which every name-handling step then trips on."""
    stack = [message]
    while stack:  # not recursive: subgraphs nest as deep as the file says
        msg = stack.pop()
        for fd, value in msg.ListFields():
            repeated = getattr(fd, "is_repeated", None)  # protobuf 7 dropped `label`
            if repeated is None:
                repeated = fd.label == fd.LABEL_REPEATED
            values = value if repeated else [value]
            if fd.type == fd.TYPE_MESSAGE:
                stack.extend(values)
            elif fd.type == fd.TYPE_STRING and any(isinstance(v, bytes) for v in values):
                raise OnnxImportError(
                    f"{shown(str(path))}: {msg.DESCRIPTOR.name}.{fd.name} is not UTF-8 text; "
                    "the file is damaged or not an ONNX model"
                )


def _strip(buf: mmap.mmap, start: int, end: int) -> tuple[onnx.TensorProto, int, int] | None:
    """A large initializer without its data, and where its data is; None to keep it whole."""
    fields = _fields(buf, start, end)
    raw = [f for f in fields if f[0] == _TENSOR_RAW_DATA]
    external = any(f[0] == _TENSOR_DATA_LOCATION for f in fields) and any(f[0] == _TENSOR_EXTERNAL_DATA for f in fields)
    if not external and (len(raw) != 1 or raw[0][4] - raw[0][3] <= SMALL_TENSOR):
        return None  # small, or held in typed fields (float_data): parsed with the graph
    head = b"".join(buf[b:e] for n, _w, b, _v, e in fields if n != _TENSOR_RAW_DATA)
    tensor = onnx.TensorProto.FromString(head)
    if external:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            return None
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        return tensor, -1, math.prod(tensor.dims) * dtype.itemsize
    return tensor, raw[0][3], raw[0][4] - raw[0][3]


def _mapped_reader(buf: mmap.mmap, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        return np.frombuffer(buf, dtype=dtype.newbyteorder("<"), count=math.prod(shape), offset=offset).reshape(shape)

    return read


def _external_reader(
    tensor: onnx.TensorProto, model_path: Path, dtype: np.dtype, shape: tuple[int, ...]
) -> Callable[[], np.ndarray]:
    info = {e.key: e.value for e in tensor.external_data}
    where = f"{shown(str(model_path))}: initializer {shown(tensor.name)!r}"
    location = info.get("location", "")
    folder = model_path.resolve().parent
    target = (folder / location).resolve()
    if not location or Path(location).is_absolute() or ".." in Path(location).parts or folder not in target.parents:
        raise OnnxImportError(f"{where}: external data {shown(location)!r} is not a file beside the model")
    try:
        offset, length = int(info.get("offset", "0")), int(info.get("length", "-1"))
    except ValueError as e:
        raise OnnxImportError(f"{where}: malformed external data offset or length") from e
    nbytes = math.prod(shape) * dtype.itemsize
    if length not in (-1, nbytes) or offset < 0:
        raise OnnxImportError(f"{where}: external data declares {length:,} bytes for {list(shape)} of {dtype.name}")
    if not target.is_file() or target.stat().st_size < offset + nbytes:
        raise OnnxImportError(f"{where}: external data file {shown(location)!r} is missing or too short")

    def read() -> np.ndarray:
        arr = np.fromfile(target, dtype=dtype.newbyteorder("<"), count=math.prod(shape), offset=offset)
        return arr.reshape(shape)

    return read


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return shown((lines[0] if lines else type(e).__name__)[:300])
