"""Writing ONNX models: streamed, atomic, with external data past a size threshold.

Serialising a whole model at once holds a second copy of every weight, and
protobuf refuses messages over 2 GiB. So the writer emits a model piece by
piece: the model and graph without their initializers, then each initializer
in turn. A protobuf message's fields may come in any order and a repeated
field may be split, so the concatenation parses as the same model.

Past `EXTERNAL_THRESHOLD` bytes of tensor data, tensors of at least
`SMALL_TENSOR` bytes go to a side file `<name>.<content hash>.data` beside the
model (as `onnx.save_model(save_as_external_data=True)` would do, but without
mutating the model in memory, and never over the data an older model points
to). Both files are written through `archc.files`, so a failure leaves
neither behind.

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

import hashlib
import math
import mmap
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import onnx
from google.protobuf.message import Message

from archc.diagnostics import shown
from archc.files import (
    OutputError,
    atomic_path,
    destination,
    file_mode,
    is_device,
    remove_stale,
    reserve,
    temporary_beside,
)

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


def varint(n: int) -> bytes:
    """`n` as a protobuf base-128 varint (also what `archc import` writes back its trimmed model with)."""
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
    return varint(field_number << 3 | 2)  # wire type 2: length-delimited


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
    if sum(t.nbytes for t in tensors) <= threshold:
        with atomic_path(path) as tmp:
            _write_model(tmp, model_rest, graph_rest, tensors, None, {})
        return [path]
    return _write_external(model_rest, graph_rest, tensors, path)


def _write_external(
    model_rest: onnx.ModelProto, graph_rest: onnx.GraphProto, tensors: Sequence[Tensor], path: Path
) -> list[Path]:
    """A model and its external data, replaced as a pair.

    The data is written first and named after its content
    (`<model>.<sha256 prefix>.data`), so it never overwrites the data an
    existing model points to; the model is renamed into place last. A kill at
    any point leaves the old pair or the new one, never a mix; the data of the
    model replaced is removed after, and data left by a killed run on the next
    write. The data goes beside the real model file (not beside a link to it).
    """
    target = destination(path)
    if is_device(target):
        # `-o /dev/null`: nothing is ever created beside a device (its directory is /dev)
        if not os.path.exists(os.devnull) or not os.path.samefile(target, os.devnull):
            raise OutputError(
                f"cannot write {shown(str(path))}: a model over {EXTERNAL_THRESHOLD / 1e9:.1f} GB needs a regular "
                "file, with its external data beside it"
            )
        with open(os.devnull, "wb") as sink, atomic_path(target) as tmp_model:
            digest, inline = _write_data_file(sink, tensors)
            _write_model(tmp_model, model_rest, graph_rest, tensors, f"{target.name}.{digest}.data", inline)
        return [path]
    mode = file_mode(target)
    with temporary_beside(target) as tmp_data:
        with tmp_data.open("wb") as f:
            digest, inline = _write_data_file(f, tensors)
        location = f"{target.name}.{digest}.data"
        with atomic_path(target) as tmp_model:
            _write_model(tmp_model, model_rest, graph_rest, tensors, location, inline)
            os.chmod(tmp_data, mode)
            os.replace(tmp_data, target.with_name(location))  # a new name: the old model's data stays
        remove_stale_data(target)
    return [path, target.with_name(location)]


def _data_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(re.escape(f"{target.name}.") + r"[0-9a-f]{16}\.data")


def remove_stale_data(target: Path) -> None:
    """Remove the external-data files of `target` that its model no longer points to.

    A data file being written (by a concurrent compile of the same target) is
    locked and stays; so does one the model names (a substring search of the
    model file, read after the lock is taken).
    """

    def unreferenced(name: str) -> bool:
        try:
            with target.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return m.find(name.encode()) < 0
        except (OSError, ValueError):  # no model (or an empty one): keep everything
            return False

    remove_stale(target.parent, _data_pattern(target), unreferenced)


def _write_data_file(f: IO[bytes], tensors: Sequence[Tensor]) -> tuple[str, dict[int, bytes]]:
    """Write the external tensors, aligned; returns the data's digest and the small tensors' bytes,
    kept for the model (the tensors are produced once, in order)."""
    digest = hashlib.sha256()
    inline: dict[int, bytes] = {}
    offset = 0
    reserve(f, sum(-(-t.nbytes // ALIGN) * ALIGN for t in tensors if t.nbytes >= SMALL_TENSOR))
    for i, t in enumerate(tensors):
        if t.nbytes == 0:
            continue
        if t.nbytes < SMALL_TENSOR:
            inline[i] = b"".join(bytes(memoryview(c).cast("B")) for c in t.data())
            continue
        pad = b"\0" * (-offset % ALIGN)
        f.write(pad)
        digest.update(pad)
        offset += len(pad) + _write_data(f, t, digest)
    return digest.hexdigest()[:16], inline


def _write_model(
    tmp: Path,
    model_rest: onnx.ModelProto,
    graph_rest: onnx.GraphProto,
    tensors: Sequence[Tensor],
    location: str | None,
    inline: dict[int, bytes],
) -> None:
    """The model file; with a `location`, tensors of at least SMALL_TENSOR bytes point into it
    (already written) and the smaller ones come from `inline`."""
    pieces: list[tuple[bytes, bool]] = []  # (serialised header, whether its data follows inline)
    offset = 0
    for t in tensors:
        if t.nbytes == 0:
            pieces.append((t.header.SerializeToString(), False))
        elif location is not None and t.nbytes >= SMALL_TENSOR:
            offset = -(-offset // ALIGN) * ALIGN
            h = onnx.TensorProto()
            h.CopyFrom(t.header)
            h.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", location), ("offset", str(offset)), ("length", str(t.nbytes))):
                entry = h.external_data.add()
                entry.key, entry.value = k, v
            pieces.append((h.SerializeToString(), False))
            offset += t.nbytes
        else:
            pieces.append((t.header.SerializeToString(), True))
    sizes = [
        len(h) + (len(_key(_RAW_DATA)) + len(varint(t.nbytes)) + t.nbytes if follows else 0)
        for (h, follows), t in zip(pieces, tensors, strict=True)
    ]
    graph_bytes = graph_rest.SerializeToString()
    graph_len = len(graph_bytes) + sum(len(_key(_INITIALIZER)) + len(varint(s)) + s for s in sizes)
    with tmp.open("wb") as f:
        head = model_rest.SerializeToString() + _key(_GRAPH) + varint(graph_len)
        reserve(f, len(head) + graph_len)
        f.write(head + graph_bytes)
        for i, ((header, follows), size, t) in enumerate(zip(pieces, sizes, tensors, strict=True)):
            f.write(_key(_INITIALIZER) + varint(size) + header)
            if follows:
                f.write(_key(_RAW_DATA) + varint(t.nbytes))
                if i in inline:
                    f.write(inline[i])
                else:
                    _write_data(f, t)


def _write_data(f: IO[bytes], t: Tensor, digest: Any = None) -> int:
    """Write a tensor's bytes as they are produced (updating `digest`, a hashlib object, if given)."""
    written = 0
    for chunk in t.data():
        view = memoryview(chunk).cast("B")
        f.write(view)
        if digest is not None:
            digest.update(view)
        written += view.nbytes
    if written != t.nbytes:  # the header already promised nbytes
        raise ValueError(f"tensor {t.header.name}: {written} bytes, expected {t.nbytes}")
    return written


def tensor_header(name: str, dims: Iterable[int], data_type: int = onnx.TensorProto.FLOAT) -> onnx.TensorProto:
    """A TensorProto with no data, to pair with bytes supplied at write time."""
    h = onnx.TensorProto()
    h.name = name
    h.dims.extend(dims)
    h.data_type = data_type
    return h
