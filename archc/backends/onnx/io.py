"""Writing ONNX models: streamed, atomic, with external data past a size threshold.

Serialising a whole model at once holds a second copy of every weight, and
protobuf refuses messages over 2 GiB. So the writer emits a model piece by
piece: the model and graph without their initializers, then each initializer
in turn. A protobuf message's fields may come in any order and a repeated
field may be split, so the concatenation parses as the same model.

Past `EXTERNAL_THRESHOLD` bytes of tensor data, tensors of at least
`SMALL_TENSOR` bytes go to a side file `<name>.data` beside the model (as
`onnx.save_model(save_as_external_data=True)` would do, but without mutating
the model in memory). Both files are written through `archc.files`, so a
failure leaves neither behind.

>>> import onnx, tempfile, pathlib
>>> g = onnx.helper.make_graph([], "empty", [], [])
>>> m = onnx.helper.make_model(g)
>>> p = pathlib.Path(tempfile.mkdtemp()) / "m.onnx"
>>> write_model_proto(m, p) == [p]
True
>>> onnx.load(str(p)) == m
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import onnx
from google.protobuf.message import Message

from archc.files import atomic_path, reserve

# Protobuf's hard limit is 2 GiB per message; stay clear of it, as onnx's own savers advise.
EXTERNAL_THRESHOLD = 1_800_000_000
SMALL_TENSOR = 1024  # smaller tensors stay inline even in an external-data model (onnx's default)
ALIGN = 4096  # external tensors start on a page boundary, so runtimes can mmap them

# Field numbers from onnx.proto3, read from the descriptors rather than hard-coded.
_GRAPH = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_INITIALIZER = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_RAW_DATA = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


@dataclass(frozen=True)
class Tensor:
    """An initializer to write: its header (no data) and a way to get its bytes, in order."""

    header: onnx.TensorProto  # name, dims, data_type; without raw_data
    nbytes: int
    data: Callable[[], Iterable[Any]]  # bytes-like chunks, nbytes in all, each written before the next is asked for


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field_number: int) -> bytes:
    return _varint(field_number << 3 | 2)  # wire type 2: length-delimited


def copy_except(msg: Message, skip: str) -> Any:
    """A copy of `msg` without field `skip` (and without copying that field's data)."""
    out = type(msg)()
    for field, value in msg.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(out, field.name).extend(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(out, field.name).CopyFrom(value)
        else:
            setattr(out, field.name, value)
    return out


def _raw_chunks(t: onnx.TensorProto) -> Callable[[], list[bytes]]:
    """`t`'s raw bytes as one chunk, read only when called."""
    return lambda: [t.raw_data]


def tensors_of(model: onnx.ModelProto) -> list[Tensor]:
    """The model's initializers as `Tensor`s, reading each one's bytes only when written."""
    out = []
    for t in model.graph.initializer:
        if t.HasField("raw_data"):
            header = copy_except(t, "raw_data")
            nbytes = math.prod(t.dims) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            out.append(Tensor(header, nbytes, _raw_chunks(t)))
        else:  # typed fields (float_data, ...): written whole, inline
            out.append(Tensor(t, 0, list))
    return out


def write_model_proto(model: onnx.ModelProto, path: Path, threshold: int = EXTERNAL_THRESHOLD) -> list[Path]:
    """Save `model` to `path` atomically; external data when its tensors exceed `threshold` bytes."""
    return write_streamed(copy_except(model, "graph"), copy_except(model.graph, "initializer"), tensors_of(model), path, threshold)


def write_streamed(
    model_rest: onnx.ModelProto,
    graph_rest: onnx.GraphProto,
    tensors: Sequence[Tensor],
    path: Path,
    threshold: int = EXTERNAL_THRESHOLD,
) -> list[Path]:
    """Write a model given as its parts: everything but the graph, the graph without
    initializers, and the initializers (produced one at a time, in order).

    Returns the files written: the model, then its external data if any.
    """
    path = Path(path)
    external = sum(t.nbytes for t in tensors) > threshold
    location = f"{path.name}.data"
    pieces: list[tuple[bytes, Tensor | None]] = []  # (serialised header, tensor whose data follows inline)
    offset = 0
    for t in tensors:
        if t.nbytes == 0:
            pieces.append((t.header.SerializeToString(), None))
        elif external and t.nbytes >= SMALL_TENSOR:
            offset = -(-offset // ALIGN) * ALIGN
            h = onnx.TensorProto()
            h.CopyFrom(t.header)
            h.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", location), ("offset", str(offset)), ("length", str(t.nbytes))):
                entry = h.external_data.add()
                entry.key, entry.value = k, v
            pieces.append((h.SerializeToString(), None))
            offset += t.nbytes
        else:
            pieces.append((t.header.SerializeToString(), t))
    sizes = [len(h) + (len(_key(_RAW_DATA)) + len(_varint(t.nbytes)) + t.nbytes if t else 0) for h, t in pieces]
    graph_bytes = graph_rest.SerializeToString()
    graph_len = len(graph_bytes) + sum(len(_key(_INITIALIZER)) + len(_varint(s)) + s for s in sizes)
    with ExitStack() as stack:
        # Entered first, renamed last: the model never points at a data file not yet in place.
        tmp_model = stack.enter_context(atomic_path(path))
        data_file: IO[bytes] | None = None
        if external:
            tmp_data = stack.enter_context(atomic_path(path.with_name(location)))
            data_file = stack.enter_context(tmp_data.open("wb"))
        if data_file is not None:
            reserve(data_file, offset)
        with tmp_model.open("wb") as f:
            head = model_rest.SerializeToString() + _key(_GRAPH) + _varint(graph_len)
            reserve(f, len(head) + graph_len)
            f.write(head + graph_bytes)
            for (header, inline), size, t in zip(pieces, sizes, tensors, strict=True):
                f.write(_key(_INITIALIZER) + _varint(size) + header)
                if t.nbytes == 0:
                    continue
                if inline is not None:
                    f.write(_key(_RAW_DATA) + _varint(t.nbytes))
                    _write_data(f, t)
                else:
                    assert data_file is not None
                    data_file.write(b"\0" * (-data_file.tell() % ALIGN))
                    _write_data(data_file, t)
    return [path, path.with_name(location)] if external else [path]


def _write_data(f: IO[bytes], t: Tensor) -> None:
    written = 0
    for chunk in t.data():
        view = memoryview(chunk).cast("B")
        f.write(view)
        written += view.nbytes
    if written != t.nbytes:  # the header already promised nbytes
        raise ValueError(f"tensor {t.header.name}: {written} bytes, expected {t.nbytes}")


def tensor_header(name: str, dims: Iterable[int], data_type: int = onnx.TensorProto.FLOAT) -> onnx.TensorProto:
    """A TensorProto with no data, to pair with bytes supplied at write time."""
    h = onnx.TensorProto()
    h.name = name
    h.dims.extend(dims)
    h.data_type = data_type
    return h
