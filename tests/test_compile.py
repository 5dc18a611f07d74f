"""`archc compile`: targets, weights, atomic output, nothing written on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")

from conftest import SPECS  # noqa: E402

import archc  # noqa: E402
from archc.backends.weights import make_weights  # noqa: E402
from archc.cli import main  # noqa: E402

LENET = str(SPECS / "lenet5.arch")


def test_compile_onnx_from_the_suffix(tmp_path: Path, capsys) -> None:
    out = tmp_path / "lenet.onnx"
    assert main(["compile", LENET, "-o", str(out), "--seed", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    net = archc.load(LENET)
    got = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert all(np.array_equal(got[k], v) for k, v in make_weights(net.analysis, seed=4).items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.onnx"]  # no temporary left


def test_compile_zeros_and_opset(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    assert main(["compile", LENET, "-o", str(out), "--weights", "zeros", "--opset", "17"]) == 0
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 17
    assert not any(onnx.numpy_helper.to_array(t).any() for t in model.graph.initializer)


def test_compile_with_a_weights_file(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    net = archc.load(LENET)
    w = make_weights(net.analysis, seed=9)
    st.save_file(w, str(tmp_path / "w.safetensors"))
    out = tmp_path / "m.onnx"
    assert main(["compile", LENET, "-o", str(out), "--weights", str(tmp_path / "w.safetensors")]) == 0
    got = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    assert all(np.array_equal(got[k], v) for k, v in w.items())


def test_bad_weights_write_nothing(tmp_path: Path, capsys) -> None:
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"conv1.weight": np.zeros((1, 1), np.float32)}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "out" / "m.onnx"
    assert main(["compile", LENET, "-o", str(out), "--weights", str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_an_existing_file_survives_a_failed_compile(tmp_path: Path, monkeypatch) -> None:
    from archc.backends.onnx.opsets import DECOMPOSITIONS

    monkeypatch.delitem(DECOMPOSITIONS, "Gelu")  # an op opset 13 lacks, with no way to write it out
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    bad = tmp_path / "bad.arch"
    bad.write_text("input 13x13x2\nconv K=2 F=1\ngelu\n")  # valid, but ONNX has Gelu from opset 20 on
    assert main(["compile", str(bad), "-o", str(out), "--opset", "13"]) == 1
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.arch", "m.onnx"]


def test_invalid_spec_prints_diagnostics_and_writes_nothing(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.arch"
    bad.write_text("input 8x8x3\nconv K=4 F=30\n")
    for name in ("m.onnx", "m.py"):
        assert main(["compile", str(bad), "-o", str(tmp_path / name)]) == 1
        assert "bad.arch:2:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.arch"]


def test_unknown_suffix_needs_to(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:  # a usage error, exit 2, as the README says (issue 10, item 8)
        main(["compile", LENET, "-o", str(tmp_path / "m.bin")])
    assert exc.value.code == 2 and "--to torch|onnx" in capsys.readouterr().err
    assert main(["compile", LENET, "-o", str(tmp_path / "m.bin"), "--to", "onnx"]) == 0
    onnx.checker.check_model(str(tmp_path / "m.bin"))


def test_weights_with_torch_target_is_an_error(tmp_path: Path, capsys) -> None:
    assert main(["compile", LENET, "-o", str(tmp_path / "m.py"), "--weights", "zeros"]) == 1
    assert "apply to --to onnx" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_compile_torch_source(tmp_path: Path) -> None:
    pytest.importorskip("archc.backends.torch.generate")
    out = tmp_path / "lenet.py"
    assert main(["compile", LENET, "-o", str(out)]) == 0
    from archc.backends.torch.generate import generate_source

    net = archc.load(LENET)
    assert out.read_text() == generate_source(net.analysis, net.path)
    compile(out.read_text(), str(out), "exec")


def test_an_op_the_opset_lacks_is_a_located_error(tmp_path: Path, capsys, monkeypatch) -> None:
    from archc.backends.onnx.opsets import DECOMPOSITIONS

    monkeypatch.delitem(DECOMPOSITIONS, "Gelu")  # an op opset 18 lacks, with no way to write it out
    spec = tmp_path / "g.arch"
    spec.write_text("input 4\nfc 4\ngelu\n")
    assert main(["compile", str(spec), "-o", str(tmp_path / "g.onnx"), "--opset", "18"]) == 1
    err = capsys.readouterr().err
    assert "g.arch:3:1" in err and "opset 20" in err and "Traceback" not in err
    assert not (tmp_path / "g.onnx").exists()


def test_gelu_at_an_old_opset_is_written_with_erf(tmp_path: Path) -> None:
    spec = tmp_path / "g.arch"
    spec.write_text("input 4\nfc 4\ngelu\n")
    assert main(["compile", str(spec), "-o", str(tmp_path / "g.onnx"), "--opset", "18"]) == 0
    ops = [n.op_type for n in onnx.load(str(tmp_path / "g.onnx")).graph.node]
    assert "Erf" in ops and "Gelu" not in ops


# --- where output goes: every failure is a one-line error (exit 1), never a traceback ---------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "out", "it is a directory"),
        (lambda d: d / "spec.arch" / "m.onnx", "is a file, not a directory"),
        (lambda d: d / "spec.arch", "it is the input"),
    ],
    ids=["directory", "parent-is-a-file", "the-spec-itself"],
)
def test_unwritable_outputs_are_clear_errors(tmp_path: Path, capsys, make, message: str) -> None:
    spec = tmp_path / "spec.arch"
    spec.write_text("input 4x4x3\nconv K=2 F=1\n")
    (tmp_path / "out").mkdir()
    out = make(tmp_path)
    assert main(["compile", str(spec), "-o", str(out), "--to", "onnx"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "internal error" not in err
    assert spec.read_text() == "input 4x4x3\nconv K=2 F=1\n"


def test_a_symlink_is_followed_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.onnx"
    target.write_bytes(b"old")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    assert main(["compile", LENET, "-o", str(link)]) == 0
    assert link.is_symlink() and onnx.load(str(link)).graph.node
    assert target.read_bytes() != b"old"


def test_a_device_is_written_in_place(tmp_path: Path) -> None:
    """`-o /dev/null` compiles and throws the result away; the device stays a device."""
    assert main(["compile", LENET, "-o", "/dev/null", "--to", "onnx"]) == 0
    assert Path("/dev/null").is_char_device()


def test_dev_null_just_compiles_every_target(capsys) -> None:
    """README: "`-o /dev/null` just compiles". Without --to it failed: "cannot tell the target from 'null'"."""
    assert main(["compile", LENET, "-o", "/dev/null"]) == 0
    out = capsys.readouterr().out
    assert out == "compiled " + LENET + " (LeNet5, 61,706 params) to PyTorch source and ONNX opset 20, wrote nothing\n"
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("input 8x8x3\nforward: conv K=4 F=3\n", "E113"),  # PyTorch source cannot take the name
        ("input 4096x4096x1\nadaptiveavgpool 4095\n", "E603"),  # ONNX's averaging matrices would be too big
    ],
)
def test_dev_null_fails_where_either_target_would(tmp_path: Path, capsys, text: str, code: str) -> None:
    spec = tmp_path / "s.arch"
    spec.write_text(text)
    assert main(["compile", str(spec), "-o", "/dev/null"]) == 1
    assert f"error[{code}]" in capsys.readouterr().err


def test_negative_seed_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compile", LENET, "-o", "x.onnx", "--seed", "-5"])
    assert info.value.code == 2 and "--seed" in capsys.readouterr().err
