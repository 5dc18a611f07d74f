"""Weights for a network: PyTorch's default initialisation, zeros, or loaded and validated.

Every tensor comes from `archc.kinds.tensors.tensor_specs`, so the keys here are the
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

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from archc.analysis import Analysis
from archc.diagnostics import ArchError
from archc.kinds.tensors import IGNORED_KEYS_SUFFIXES, Init, TensorSpec, tensor_specs

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
        weights = load_file(Path(weights))
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
            else:  # U(-b, b), drawn in float32 and scaled in place: PyTorch's default init
                rng.random(out=out, dtype=np.float32)
                out *= np.float32(2 * spec.bound)
                out -= np.float32(spec.bound)
            yield out

    for spec in specs:
        yield spec, chunks(spec)


def load_file(path: Path) -> Mapping[str, Any]:
    """Read a state_dict from `.pt`/`.pth` (torch) or `.safetensors`."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".pt", ".pth"):
            return _load_torch(path)
        if suffix == ".safetensors":
            try:
                from safetensors.numpy import load_file as load_safetensors
            except ImportError as e:
                raise WeightsError(
                    f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)"
                ) from e
            return load_safetensors(str(path))
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"{path}: cannot read weights: {e}") from e
    raise WeightsError(f"{path}: unknown weights format {suffix or '(no suffix)'}; use .pt, .pth or .safetensors")


def _load_torch(path: Path) -> Mapping[str, Any]:
    try:
        import torch
    except ImportError as e:
        raise WeightsError(f"{path}: reading .pt/.pth weights needs PyTorch (pip install torch)") from e
    # weights_only: never unpickle arbitrary objects from a file we were handed.
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's own text suggests weights_only=False, i.e. running the file's code: not here.
        text = str(e)
        if "WeightsUnpickler error:" in text:  # the cause, without the advice around it
            text = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0]
        cause = (text.strip().splitlines() or [type(e).__name__])[0][:200]
        raise WeightsError(
            f"{path}: not a readable state_dict ({cause}); archc loads tensors only, never pickled "
            "objects: save `model.state_dict()` with torch.save, or use .safetensors"
        ) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # a training checkpoint that wraps the state_dict
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state_dict (a mapping of tensors), found {type(obj).__name__}")
    return obj


def _as_array(value: Any) -> np.ndarray | None:
    if hasattr(value, "detach"):  # a torch tensor; torch is loaded already if we have one
        value = value.detach().cpu()
        if not value.is_floating_point():
            return None
        value = value.float().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind not in "fiu":
        return None
    return np.ascontiguousarray(arr, dtype=np.float32)


def validate(analysis: Analysis, specs: list[TensorSpec], given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The given tensors as float32 arrays, or one `WeightsError` listing every mismatch."""
    by_name = {s.name: s for s in specs}
    keys = [str(k) for k in given if not str(k).endswith(IGNORED_KEYS_SUFFIXES)]
    missing = [s for s in specs if s.name not in given]
    unexpected = sorted(k for k in keys if k not in by_name)
    wrong: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    for name in keys:
        spec = by_name.get(name)
        if spec is None:
            continue
        arr = _as_array(given[name])
        if arr is None:
            wrong.append(f"{name} is not a floating-point tensor")
        elif tuple(arr.shape) != spec.shape:
            wrong.append(f"{name} is {_dims(arr.shape)}, expected {_dims(spec.shape)}")
        else:
            arrays[name] = arr
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
