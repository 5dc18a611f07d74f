"""Weights for a network: PyTorch's default initialisation, zeros, or loaded and validated.

Every tensor comes from `archc.analysis.tensors.tensor_specs`, so the keys here are the
PyTorch state_dict keys and the ONNX initializer names.

>>> import archc
>>> net = archc.loads("input 8x8x3\\nconv1: conv K=4 F=3\\nfc 2")
>>> w = make_weights(net.analysis, "random", seed=0)
>>> sorted(w), w["conv1.weight"].shape, w["conv1.weight"].dtype.name
(['conv1.bias', 'conv1.weight', 'fc1.bias', 'fc1.weight'], (4, 3, 3, 3), 'float32')
>>> bool(abs(w["conv1.weight"]).max() <= 1 / 27 ** 0.5)
True

numpy is imported here at module level: commands import this module inside
`run()` only, so `archc check` never pays for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from archc.analysis import Analysis
from archc.analysis.tensors import IGNORED_KEYS_SUFFIXES, Init, TensorSpec, tensor_specs, tied_keys
from archc.backends import TORCH_INSTALL
from archc.diagnostics import ArchError, shown

GENERATED = ("random", "zeros")
MAX_LISTED = 10  # per category in a mismatch message, then "... and N more"


class WeightsError(ArchError):
    """Weights could not be read, or do not fit the network."""


def make_weights(analysis: Analysis, weights: Any = "random", seed: int = 0) -> dict[str, np.ndarray]:
    """Every tensor of the analysed network as a float32 array, keyed by state_dict key.

    `weights` is "random" (PyTorch's default init, from numpy's Generator
    seeded with `seed`), "zeros", a mapping of arrays or torch tensors (a
    state_dict), or a path to a `.pt`/`.pth` or `.safetensors` file.
    """
    return {spec.name: arr for spec, arr in iter_weights(analysis, weights, seed)}


def varied(analysis: Analysis, arrays: Mapping[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """`arrays` with every tensor PyTorch starts at a constant drawn at random instead.

    Freshly initialised, a batchnorm is nearly the identity (running mean 0,
    variance 1, scale 1, shift 0), and so are layernorm, rmsnorm and a layer
    scale of 1e-6 (nearly zero): a back-end that dropped one, or swapped mean
    and variance, would still match. `run --check` compares with these redrawn:
    scales and variances in [0.5, 1.5], shifts and means from N(0, 0.2^2).

    >>> import archc
    >>> net = archc.loads("input 4x4x2\\nbatchnorm")
    >>> w = varied(net.analysis, make_weights(net.analysis, "random"))
    >>> bool((w["batchnorm1.running_var"] != 1).all() and (w["batchnorm1.running_mean"] != 0).all())
    True
    """
    rng = np.random.default_rng([seed, 1])  # its own stream: the random weights stay PyTorch's
    out = dict(arrays)
    for spec in tensor_specs(analysis):
        if spec.init in (Init.ONES, Init.CONSTANT):
            out[spec.name] = rng.uniform(0.5, 1.5, spec.shape).astype(np.float32)
        elif spec.init is Init.ZEROS:
            out[spec.name] = rng.normal(0.0, 0.2, spec.shape).astype(np.float32)
    return out


def iter_weights(
    analysis: Analysis, weights: Any = "random", seed: int = 0
) -> Iterator[tuple[TensorSpec, np.ndarray]]:
    """`make_weights` one tensor at a time, in `tensor_specs` order.

    Generated weights are made lazily, so a writer that streams them to disk
    holds only one tensor at a time. Loaded weights are validated in full
    before the first one is yielded.
    """
    specs = tensor_specs(analysis)
    if isinstance(weights, str) and weights in GENERATED:
        yield from _generate(specs, weights, seed)
        return
    if isinstance(weights, (str, Path)):
        weights = load_file(Path(weights), specs)
    if not isinstance(weights, Mapping):
        raise WeightsError(
            f"weights must be 'random', 'zeros', a state_dict or a file path, not {type(weights).__name__}"
        )
    arrays = validate(analysis, specs, weights)
    for spec in specs:
        yield spec, arrays[spec.name]


def _generate(specs: list[TensorSpec], how: str, seed: int) -> Iterator[tuple[TensorSpec, np.ndarray]]:
    for spec, chunks in generate_chunks(specs, how, seed, chunk=None):
        (arr,) = chunks
        yield spec, arr.reshape(spec.shape)


CHUNK = 1 << 20  # elements per chunk when streaming (4 MB)


def generate_chunks(
    specs: list[TensorSpec], how: str, seed: int, chunk: int | None = CHUNK
) -> Iterator[tuple[TensorSpec, Iterator[np.ndarray]]]:
    """Generated weights as flat float32 chunks, each tensor's chunks consumed before the next.

    The values are the same whatever the chunk size: numpy's Generator draws
    one stream, and a chunked draw continues it exactly. With a chunk size, one
    buffer is reused (so each chunk is valid only until the next is drawn):
    writing VGG-16 then needs 4 MB of weights in memory, not 553 MB.
    """
    rng = np.random.default_rng(seed)
    buf = np.empty(chunk or 0, np.float32)

    def chunks(spec: TensorSpec) -> Iterator[np.ndarray]:
        n = spec.numel
        step = chunk or n
        for start in range(0, n, step) if n else [0]:
            out = buf[: min(step, n - start)] if chunk else np.empty(n, np.float32)
            if how == "zeros" or spec.init is Init.ZEROS:
                out.fill(0)
            elif spec.init is Init.ONES:
                out.fill(1)
            elif spec.init is Init.NORMAL:  # N(0, 1), drawn in float32: nn.Embedding's table
                rng.standard_normal(out=out, dtype=np.float32)
            elif spec.init is Init.CONSTANT:
                out.fill(spec.value)
            else:  # U(-b, b), drawn in float32 and scaled in place: PyTorch's default init
                rng.random(out=out, dtype=np.float32)
                out *= np.float32(2 * spec.bound)
                out -= np.float32(spec.bound)
            yield out

    for spec in specs:
        yield spec, chunks(spec)


# One rule for every source (a .pt, a .safetensors, a state_dict in memory): a weight is
# a dense floating-point tensor of the spec's shape whose values are finite in float32.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# A weight file may hold at most this many bytes per float32 byte the spec needs (float64
# files are twice the size), plus SLACK_BYTES of bookkeeping (num_batches_tracked, pickle).
FILE_FACTOR = 2
SLACK_BYTES = 1 << 20
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit
_SAFETENSORS_DTYPES = {
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
    "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64",
    "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
}  # fmt: skip
_ITEMSIZE = {"bool": 1, "int8": 1, "uint8": 1, "float16": 2, "bfloat16": 2, "int16": 2, "uint16": 2}


def _itemsize(dtype: str) -> int:
    return _ITEMSIZE.get(dtype) or int(dtype[-2:]) // 8


def _key(name: object) -> str:
    """A key as a message shows it: escaped (it comes from the file) and at most 100 characters."""
    text = str(name)
    return shown(text[:100] + "..." if len(text) > 100 else text)


class Stored:
    """A tensor a weight file declares, not yet read: its dtype and shape can be checked first."""

    def __init__(self, dtype: str, shape: tuple[int, ...], read: Callable[[], np.ndarray]) -> None:
        self.dtype, self.shape, self.read = dtype, shape, read


def file_budget(specs: list[TensorSpec]) -> int:
    """The most bytes of tensors a weight file for these specs may declare."""
    return FILE_FACTOR * 4 * sum(s.numel for s in specs) + SLACK_BYTES


def load_file(path: Path, specs: list[TensorSpec] | None = None) -> Mapping[str, Any]:
    """Read a state_dict from `.pt`/`.pth` (torch) or `.safetensors`.

    Keys, shapes and declared sizes are checked before any tensor is read: a
    file may declare at most `file_budget(specs)` bytes (a 1 MB zip of zeros
    that inflates to 1.4 GB is refused from its directory, never inflated).
    """
    from archc.files import why_not_a_spec

    problem = why_not_a_spec(path)
    if problem == "no such file or directory" or (problem is None and path.is_dir()):
        raise WeightsError(f"{shown(str(path))}: no such weights file")
    if problem is not None:
        raise WeightsError(f"{shown(str(path))}: {problem}")
    budget = file_budget(specs) if specs is not None else None
    suffix = path.suffix.lower()
    try:
        if suffix in (".pt", ".pth"):
            return _load_torch(path, budget)
        if suffix == ".safetensors":
            return _load_safetensors(path, budget)
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"{shown(str(path))}: cannot read weights: {e}") from e
    raise WeightsError(
        f"{shown(str(path))}: unknown weights format {shown(suffix) or '(no suffix)'}; use .pt, .pth or .safetensors"
    )


def _over_budget(path: Path, declared: int, budget: int | None) -> None:
    if budget is not None and declared > budget:
        raise WeightsError(
            f"{shown(str(path))}: declares {declared:,} bytes of tensors, more than the network's weights "
            f"can use ({budget:,} bytes at most); refused before reading it"
        )


def _load_safetensors(path: Path, budget: int | None) -> dict[str, Stored]:
    """The tensors of a .safetensors file, from its header alone; each one is read when asked for.

    The format: an 8-byte little-endian header length, a JSON header
    `{name: {"dtype", "shape", "data_offsets": [begin, end]}}`, then the data.
    """
    import json

    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsError(f"{shown(str(path))}: cannot read weights: too short for a safetensors header")
        n = int.from_bytes(head, "little")
        if n > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise WeightsError(f"{shown(str(path))}: cannot read weights: a header of {n:,} bytes in a {size:,}-byte file")
        header = json.loads(f.read(n))
    if not isinstance(header, dict):
        raise WeightsError(f"{shown(str(path))}: cannot read weights: the header is not a JSON object")
    base, end_of_file = 8 + n, size - 8 - n
    tensors: dict[str, Stored] = {}
    declared = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES.get(entry["dtype"], str(entry["dtype"]))
            shape = tuple(entry["shape"])
            begin, end = entry["data_offsets"]
            ok = all(type(d) is int and d >= 0 for d in (*shape, begin, end)) and begin <= end <= end_of_file
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise WeightsError(f"{shown(str(path))}: cannot read weights: the header entry of {_key(name)} is malformed")
        declared += end - begin
        _over_budget(path, declared, budget)
        if dtype in FLOAT_DTYPES and end - begin != math.prod(shape) * _itemsize(dtype):
            raise WeightsError(
                f"{shown(str(path))}: cannot read weights: {_key(name)} declares {end - begin:,} bytes "
                f"for {_dims(shape)} of {dtype}"
            )
        tensors[name] = Stored(dtype, shape, _reader(path, base + begin, dtype, shape))
    return tensors


def _reader(path: Path, offset: int, dtype: str, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        count = math.prod(shape)
        if dtype == "bfloat16":  # numpy has no bfloat16: its bits are float32's upper half
            raw = np.fromfile(path, dtype="<u2", count=count, offset=offset)
            return (raw.astype("<u4") << 16).view("<f4").reshape(shape)
        return np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=offset).reshape(shape)

    return read


def _load_torch(path: Path, budget: int | None) -> Mapping[str, Any]:
    try:
        import torch
    except ImportError as e:
        raise WeightsError(f"{path}: reading .pt/.pth weights needs PyTorch: {TORCH_INSTALL}") from e
    mmap = _check_torch_archive(path, budget)
    # weights_only: never unpickle arbitrary objects from a file we were handed.
    # mmap: tensors stay in the file until converted, one at a time.
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        raise WeightsError(
            f"{shown(str(path))}: not a readable state_dict ({_cause(e)}); archc loads tensors only, never "
            "pickled objects: save `model.state_dict()` with torch.save, or use .safetensors"
        ) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # a training checkpoint that wraps the state_dict
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state_dict (a mapping of tensors), found {type(obj).__name__}")
    return obj


def _check_torch_archive(path: Path, budget: int | None) -> bool:
    """Check a .pt file's declared sizes before torch reads it; True when it can be memory-mapped.

    torch.save writes a zip of uncompressed records. A compressed record is
    refused outright (torch.save never writes one, and a small one can inflate
    to gigabytes); the declared sizes of the others must fit the budget. An
    old-style (non-zip) file holds its tensors as they are: its size is their size.
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        _over_budget(path, path.stat().st_size, budget)
        return False
    with zipfile.ZipFile(path) as archive:
        records = archive.infolist()
    packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise WeightsError(
            f"{shown(str(path))}: not a readable state_dict: {_key(packed[0])} is compressed, "
            "which torch.save never does; refused before inflating it"
        )
    _over_budget(path, sum(r.file_size for r in records), budget)
    return True


def _cause(e: Exception) -> str:
    """torch's reason for refusing a file, without its advice to pass weights_only=False
    (which would run the file's code: never here)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    reasons = [p for p in paragraphs if "weights_only" not in p and not p.startswith("Check the documentation")]
    cause = (reasons or [type(e).__name__])[0].splitlines()[0]
    return shown(cause[:200])


def _declared(value: Any) -> tuple[str, tuple[int, ...], Any] | str:
    """A weight's dtype, shape and value (an array, a torch tensor or `Stored`), read from its
    header only; or why it is no weight (a sparse or meta tensor, not a tensor at all)."""
    if isinstance(value, Stored):
        return value.dtype, value.shape, value
    if hasattr(value, "detach") and hasattr(value, "layout"):  # a torch tensor; torch is loaded already
        if str(value.layout) != "torch.strided":
            return f"a {str(value.layout).removeprefix('torch.')} tensor; save dense tensors"
        if value.device.type == "meta":
            return "a meta tensor, which holds no values"
        return str(value.dtype).removeprefix("torch."), tuple(value.shape), value
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return f"not a floating-point tensor ({type(value).__name__})"
    return arr.dtype.name, arr.shape, arr


def _read(value: Any) -> np.ndarray:
    """A declared weight's values, in its own dtype (bfloat16 as float32)."""
    if isinstance(value, Stored):
        return value.read()
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        value = (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()
    return np.asarray(value)


def _checked(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray | str:
    """One weight as a C-contiguous float32 array of `shape`, or why not (naming the key).

    Dtype and shape are checked before a value is read, so a file cannot make
    archc read more than the spec's own tensors.
    """
    key = _key(name)
    declared = _declared(value)
    if isinstance(declared, str):
        return f"{key} is {declared}"
    dtype, got, value = declared
    if dtype not in FLOAT_DTYPES:
        return f"{key} is not a floating-point tensor ({dtype})"
    if got != shape:
        return f"{key} is {_dims(got)}, expected {_dims(shape)}"
    source = _read(value)
    with np.errstate(over="ignore", invalid="ignore"):
        arr = np.require(source.astype(np.float32, copy=False), requirements="C")
    if not np.isfinite(arr).all():
        if np.isfinite(source).all():
            return f"{key} holds values beyond float32's range (up to {float(np.abs(source).max()):.3g})"
        return f"{key} holds NaN or infinity"
    return arr


def validate(analysis: Analysis, specs: list[TensorSpec], given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The given tensors as float32 arrays, or one `WeightsError` listing every mismatch."""
    by_name = {s.name: s for s in specs}
    # A tied weight is in a PyTorch state_dict under both names: the owner's is the one kept.
    tied = tied_keys(analysis)
    keys = [str(k) for k in given if not str(k).endswith(IGNORED_KEYS_SUFFIXES) and str(k) not in tied]
    missing = [s for s in specs if s.name not in given]
    unexpected = sorted(_key(k) for k in keys if k not in by_name)
    wrong: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    for name in keys:
        spec = by_name.get(name)
        if spec is None:
            continue
        checked = _checked(name, given[name], spec.shape)
        if isinstance(checked, str):
            wrong.append(checked)
        else:
            arrays[name] = checked
    if missing or unexpected or wrong:
        parts = [f"the weights do not fit {analysis.graph.network} ({len(specs)} tensors expected):"]
        parts += _listing("missing", [f"{s.name} {_dims(s.shape)}" for s in missing])
        parts += _listing("unexpected", unexpected)
        parts += _listing("mis-shaped", wrong)
        prefix = _common_prefix(unexpected)
        if prefix and len(missing) == len(unexpected) and all(k[len(prefix) :] in by_name for k in unexpected):
            parts.append(f"  hint: every key starts with '{prefix}' (a wrapped model's state_dict); strip it")
        raise WeightsError("\n".join(parts))
    return arrays


def _common_prefix(keys: list[str]) -> str:
    """`module.` when every key has it (nn.DataParallel, torch.compile's `_orig_mod.`), else ''."""
    firsts = {k.split(".", 1)[0] for k in keys if "." in k}
    if len(firsts) == 1 and all("." in k for k in keys):
        return f"{firsts.pop()}."
    return ''


def _listing(label: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = [f"    {item}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"    ... and {len(items) - MAX_LISTED} more")
    return [f"  {label} ({len(items)}):", *shown]


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
