"""Untrusted weight files (issue 12, items 4, 19, 22): checked from their headers, one rule for all formats.

A weight file is refused before it is read when its declared sizes exceed what
the spec can use; every refusal names the key; no format converts silently.
"""

from __future__ import annotations

import json
import resource
import struct
import zipfile
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

import archc  # noqa: E402
from archc.backends.weights import WeightsError, make_weights  # noqa: E402

SPEC = "input 4\nfc1: fc 3\n"  # fc1.weight [3, 4], fc1.bias [3]


@pytest.fixture(scope="module")
def net() -> archc.Network:
    return archc.loads(SPEC)


def safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]], header_extra: dict | None = None) -> Path:
    """A .safetensors file written by hand, so that it can lie."""
    header: dict = dict(header_extra or {})
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def f32(values: list[float]) -> bytes:
    return np.asarray(values, "<f4").tobytes()


def good(path: Path, **override: tuple[str, list[int], bytes]) -> Path:
    tensors = {"fc1.weight": ("F32", [3, 4], f32([0.5] * 12)), "fc1.bias": ("F32", [3], f32([1, 2, 3]))}
    tensors.update(override)
    return safetensors(path, tensors)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- item 4: declared sizes are checked before anything is read -----------------------------------
def test_a_safetensors_header_declaring_gigabytes_is_refused_unread(net, tmp_path: Path) -> None:
    path = tmp_path / "bomb.safetensors"
    header = {"fc1.weight": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40_000_000_000]}}
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)
    with pytest.raises(WeightsError, match="malformed"):  # the data is not there
        make_weights(net.analysis, path)
    # declared and present, but far more than 3x4 + 3 floats: refused by its declared size
    big = safetensors(tmp_path / "big.safetensors", {"extra": ("F32", [1 << 19], bytes(1 << 21))})
    with pytest.raises(WeightsError, match="declares 2,097,152 bytes of tensors, more than"):
        make_weights(net.analysis, big)


def test_a_zip_bomb_pt_is_refused_before_inflating(net, tmp_path: Path) -> None:
    """1.4 MB on disk that inflated to 1.4 GB (here 1 MB that inflates to 1 GB)."""
    pytest.importorskip("torch")
    import torch

    real = tmp_path / "real.pt"
    torch.save({"fc1.weight": torch.zeros(3, 4), "fc1.bias": torch.zeros(3)}, real)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data/0"):  # the weight's storage: a gigabyte of zeros, deflated
                with dst.open(zipfile.ZipInfo(info.filename), "w", force_zip64=True) as f:
                    for _ in range(1024):
                        f.write(bytes(1 << 20))
            else:
                dst.writestr(info, data)
    before = peak_mb()
    with pytest.raises(WeightsError, match="refused before"):
        make_weights(net.analysis, bomb)
    assert peak_mb() - before < 200


def test_a_pt_storing_more_than_the_spec_needs_is_refused(net, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"fc1.weight": torch.zeros(3, 4), "fc1.bias": torch.zeros(3), "junk": torch.zeros(1 << 19)}, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="more than the network's weights can use"):
        make_weights(net.analysis, tmp_path / "w.pt")


# --- item 19: one rule for every format, each refusal naming the key --------------------------------
def test_float64_beyond_float32_is_refused_not_inf(net, tmp_path: Path) -> None:
    path = good(tmp_path / "w.safetensors", **{"fc1.bias": ("F64", [3], np.asarray([1e300, 0, 0], "<f8").tobytes())})
    with pytest.raises(WeightsError, match=r"fc1\.bias holds values beyond float32's range \(up to 1e\+300\)"):
        make_weights(net.analysis, path)
    given = dict(make_weights(net.analysis), **{"fc1.bias": np.array([1e300, 0, 0])})
    with pytest.raises(WeightsError, match=r"fc1\.bias holds values beyond float32's range"):
        make_weights(net.analysis, given)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_weights_are_refused(net, tmp_path: Path, bad: float) -> None:
    path = good(tmp_path / "w.safetensors", **{"fc1.weight": ("F32", [3, 4], f32([0.0] * 11 + [bad]))})
    with pytest.raises(WeightsError, match=r"fc1\.weight holds NaN or infinity"):
        make_weights(net.analysis, path)


def test_bfloat16_and_float16_safetensors_are_read(net, tmp_path: Path) -> None:
    bf16 = (np.asarray([0.5] * 12, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
    path = good(tmp_path / "w.safetensors", **{
        "fc1.weight": ("BF16", [3, 4], bf16), "fc1.bias": ("F16", [3], np.asarray([1, 2, 3], "<f2").tobytes()),
    })  # fmt: skip
    w = make_weights(net.analysis, path)
    assert w["fc1.weight"].dtype == np.float32 and (w["fc1.weight"] == 0.5).all()
    assert w["fc1.bias"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "dict"])
def test_integer_tensors_are_refused_in_every_format(net, tmp_path: Path, fmt: str) -> None:
    ints = np.arange(3, dtype=np.int64)
    if fmt == "safetensors":
        source = good(tmp_path / "w.safetensors", **{"fc1.bias": ("I64", [3], ints.tobytes())})
    elif fmt == "pt":
        torch = pytest.importorskip("torch")
        source = tmp_path / "w.pt"
        torch.save({"fc1.weight": torch.zeros(3, 4), "fc1.bias": torch.from_numpy(ints)}, source)
    else:
        source = {"fc1.weight": np.zeros((3, 4), np.float32), "fc1.bias": ints}
    with pytest.raises(WeightsError, match=r"fc1\.bias is not a floating-point tensor \(int64\)"):
        make_weights(net.analysis, source)


def test_a_zero_d_tensor_is_not_shape_1() -> None:
    net = archc.loads("input 1\nfc1: fc 1\n")  # fc1.weight [1, 1], fc1.bias [1]
    with pytest.raises(WeightsError, match=r"fc1\.bias is \[\], expected \[1\]"):
        make_weights(net.analysis, {"fc1.weight": np.zeros((1, 1), np.float32), "fc1.bias": np.float32(3)})


@pytest.mark.parametrize("kind", ["sparse", "meta"])
def test_sparse_and_meta_tensors_are_refused_by_key(net, tmp_path: Path, kind: str) -> None:
    torch = pytest.importorskip("torch")
    weight = torch.zeros(3, 4).to_sparse() if kind == "sparse" else torch.zeros(3, 4, device="meta")
    torch.save({"fc1.weight": weight, "fc1.bias": torch.zeros(3)}, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match=rf"fc1\.weight is a {kind}"):
        make_weights(net.analysis, tmp_path / "w.pt")


def test_hostile_keys_are_escaped(net) -> None:
    given = dict(make_weights(net.analysis), **{"\x1b[2Jevil\nkey": np.zeros(1, np.float32)})
    with pytest.raises(WeightsError) as info:
        make_weights(net.analysis, given)
    assert "\x1b" not in str(info.value) and "'\\x1b[2Jevil\\nkey'" in str(info.value)


# --- item 22: torch's advice to load with weights_only=False never reaches the user ------------------
def test_a_pickled_object_is_refused_without_torchs_advice(net, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import os

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.getcwd, ())

    torch.save({"fc1.weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError) as info:
        make_weights(net.analysis, tmp_path / "evil.pt")
    text = str(info.value)
    assert "weights_only" not in text and "Re-running" not in text
    assert "unsupported GLOBAL" in text and "never pickled objects" in text


def test_a_fifo_as_weights_never_blocks(net, tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match="not a regular file"):
        make_weights(net.analysis, tmp_path / "w.safetensors")
