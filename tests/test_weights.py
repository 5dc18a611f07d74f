"""Weights: PyTorch's default init, zeros, files, and one clear error for a mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

import archc  # noqa: E402
from archc.analysis.tensors import tensor_specs  # noqa: E402
from archc.backends.weights import WeightsError, make_weights  # noqa: E402

SPEC = "input 16x16x3\nconv1: conv K=64 F=5\nbn: batchnorm\nfc1: fc 300\nfc2: fc 10 bias=false\n"
TINY = "input 4x4x2\nconv K=3 F=3\nbatchnorm\nfc 5\n"  # 131 numbers: chunks of one stay quick


@pytest.fixture(scope="module")
def net():
    return archc.loads(SPEC)


def test_keys_shapes_and_dtype_follow_tensor_specs(net) -> None:
    w = make_weights(net.analysis)
    assert [(k, v.shape) for k, v in w.items()] == [(s.name, s.shape) for s in tensor_specs(net.analysis)]
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in w.values())


def test_random_matches_pytorch_default_distributions(net) -> None:
    w = make_weights(net.analysis, "random", seed=0)
    for name, fan_in in (("conv1", 3 * 5 * 5), ("fc1", 12 * 12 * 64)):
        bound = 1 / np.sqrt(fan_in)
        for t in (w[f"{name}.weight"], w[f"{name}.bias"]):
            assert np.abs(t).max() <= bound
        big = w[f"{name}.weight"]  # U(-b, b): mean 0, std b/sqrt(3), the whole range used
        assert abs(big.mean()) < 0.02 * bound
        assert big.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)
        assert big.max() > 0.99 * bound and big.min() < -0.99 * bound
    np.testing.assert_array_equal(w["bn.weight"], 1)
    np.testing.assert_array_equal(w["bn.bias"], 0)
    np.testing.assert_array_equal(w["bn.running_mean"], 0)
    np.testing.assert_array_equal(w["bn.running_var"], 1)
    assert "fc2.bias" not in w


def test_new_kinds_initialise_as_pytorchs_modules() -> None:
    """ConvTranspose reads fan_in from its weight's dim 1 ((K/G)*F); layerscale starts at init; layernorm at 1, 0."""
    torch = pytest.importorskip("torch")
    net = archc.loads("input 8x8x6\nup: convtranspose K=64 F=3 S=2 G=2\nls: layerscale init=0.5\nln: layernorm\n")
    w = make_weights(net.analysis, seed=0)
    reference = torch.nn.ConvTranspose2d(6, 64, 3, 2, groups=2)
    bound = 1 / np.sqrt(32 * 9)  # what PyTorch's kaiming_uniform_(a=sqrt(5)) gives this weight
    assert float(reference.weight.detach().abs().max()) <= bound < 1 / np.sqrt(6 * 9)
    for t in (w["up.weight"], w["up.bias"]):
        assert np.abs(t).max() <= bound
    assert w["up.weight"].max() > 0.99 * bound and w["up.weight"].shape == tuple(reference.weight.shape)
    np.testing.assert_array_equal(w["ls"], np.full((64, 1, 1), 0.5, np.float32))
    np.testing.assert_array_equal(w["ln.weight"], 1)
    np.testing.assert_array_equal(w["ln.bias"], 0)


def test_random_is_reproducible_by_seed(net) -> None:
    a, b, c = make_weights(net.analysis, seed=7), make_weights(net.analysis, seed=7), make_weights(net.analysis, seed=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["fc1.weight"], c["fc1.weight"])


def test_zeros(net) -> None:
    assert all(not v.any() for v in make_weights(net.analysis, "zeros").values())


def test_a_state_dict_passes_through_as_float32(net) -> None:
    given = {k: v.astype(np.float64) for k, v in make_weights(net.analysis, seed=1).items()}
    given["bn.num_batches_tracked"] = np.array(5)  # PyTorch bookkeeping: ignored
    out = make_weights(net.analysis, given)
    assert list(out) == [s.name for s in tensor_specs(net.analysis)]
    assert all(v.dtype == np.float32 and np.allclose(v, given[k]) for k, v in out.items())


def test_pt_round_trip(net, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    w = make_weights(net.analysis, seed=2)
    state = {k: torch.from_numpy(v.copy()) for k, v in w.items()}
    state["bn.num_batches_tracked"] = torch.tensor(3)
    torch.save(state, tmp_path / "w.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ckpt.pth")
    for f in ("w.pt", "ckpt.pth"):
        back = make_weights(net.analysis, tmp_path / f)
        assert all(np.array_equal(back[k], w[k]) for k in w)


def test_safetensors_round_trip(net, tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    w = make_weights(net.analysis, seed=3)
    st.save_file(w, str(tmp_path / "w.safetensors"))
    back = make_weights(net.analysis, str(tmp_path / "w.safetensors"))
    assert all(np.array_equal(back[k], w[k]) for k in w)


def test_one_error_lists_missing_unexpected_and_misshaped(net) -> None:
    w = make_weights(net.analysis)
    del w["conv1.bias"], w["bn.running_var"]
    w["fc3.weight"] = np.zeros((2, 2), np.float32)
    w["fc1.weight"] = np.zeros((300, 10), np.float32)
    w["fc2.weight"] = np.array(["a"])
    with pytest.raises(WeightsError) as info:
        make_weights(net.analysis, w)
    text = str(info.value)
    assert "missing (2):\n    conv1.bias [64]\n    bn.running_var [64]" in text
    assert "unexpected (1):\n    fc3.weight" in text
    assert "mis-shaped (2):" in text
    assert "fc1.weight is [300, 10], expected [300, 9216]" in text
    assert "fc2.weight is not a floating-point tensor" in text


def test_long_lists_are_capped() -> None:
    net = archc.loads("input 4\n" + "".join(f"f{i}: fc 4\n" for i in range(12)))
    with pytest.raises(WeightsError, match=r"missing \(24\):(\n    .*){10}\n    \.\.\. and 14 more"):
        make_weights(net.analysis, {})


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("w.npz", b"x", "unknown weights format .npz"),
        ("w.safetensors", b"not safetensors", "cannot read weights"),
        ("w.pt", b"not a pickle", "not a readable state_dict"),
    ],
)
def test_bad_files(net, tmp_path: Path, name: str, content: bytes, message: str) -> None:
    if name.endswith(".pt"):
        pytest.importorskip("torch")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        make_weights(net.analysis, tmp_path / name)


def test_missing_file_and_bad_type(net, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such weights file"):
        make_weights(net.analysis, tmp_path / "nope.pt")
    with pytest.raises(WeightsError, match="not int"):
        make_weights(net.analysis, 3)


def test_a_wrapped_state_dict_gets_a_hint_to_strip_its_prefix(net) -> None:
    from archc.analysis.tensors import tensor_specs
    from archc.backends.weights import validate

    given = {f"module.{k}": v for k, v in make_weights(net.analysis).items()}
    with pytest.raises(WeightsError, match=r"every key starts with 'module\.'"):
        validate(net.analysis, tensor_specs(net.analysis), given)


def test_an_unreadable_checkpoint_never_advises_running_its_code(net, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "w.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError) as info:
        make_weights(net.analysis, tmp_path / "w.pt")
    assert "weights_only` set to `False" not in str(info.value)


@pytest.mark.parametrize(("spec_text", "chunk"), [(TINY, 1), (TINY, 7), (SPEC, 10_000), (SPEC, 1 << 20)])
def test_streamed_chunks_equal_one_draw(spec_text: str, chunk: int) -> None:
    """The streaming path (a reused buffer) gives exactly the in-memory values, whatever the chunk."""
    from archc.backends.weights import generate_chunks

    specs = tensor_specs(archc.loads(spec_text).analysis)
    whole = {s.name: next(c).copy() for s, c in generate_chunks(specs, "random", 3, chunk=None)}
    for spec, chunks in generate_chunks(specs, "random", 3, chunk=chunk):
        streamed = np.concatenate([c.copy() for c in chunks])  # each chunk is valid until the next
        np.testing.assert_array_equal(streamed, whole[spec.name])
