"""Untrusted models (issue 12, items 3, 7, 13, 14, 18, 22): bounded compiles, paired external data,
`archc run` on hostile ONNX files. Every case ends in under 5 s with a message naming the file."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import tomllib
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

import archc  # noqa: E402
from archc.backends.onnx.generate import build_model, write_model  # noqa: E402
from archc.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = "input 4\nfc1: fc 3\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    start = time.monotonic()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: usage errors
        code = int(exc.code or 0)
    assert time.monotonic() - start < 5, argv
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in out + err
    return code, out, err


def spec(tmp_path: Path, text: str, name: str = "s.arch") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- item 3: dependency floors at releases that load untrusted files safely ---------------------------
def test_dependency_floors_admit_no_known_load_vulnerability() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    floors = {}
    for requirement in [r for deps in extras.values() for r in deps]:
        name, _, version = requirement.partition(">=")
        floors[name] = tuple(int(p) for p in version.split(",")[0].split("."))  # `>=2,<3`: the floor
    assert floors["torch"] >= (2, 10)
    assert floors["onnx"] >= (1, 21)
    assert floors["onnxruntime"] >= (1, 24, 3) and floors["onnxruntime-gpu"] >= (1, 24, 3)
    assert "Untrusted input" in (ROOT / "README.md").read_text()


# --- item 13: compile refuses what would fill the disk, before writing ------------------------------
def test_a_trillion_parameters_is_refused_before_writing(capsys, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    # (`fc 1000000000000` is no longer a size at all: sizes are at most 2^31-1, E103)
    code, _, err = run(capsys, "compile", spec(tmp_path, "input 2000000\nfc 1000000\n"), "-o", str(out))
    assert code == 1 and "would take 7.3 TiB, more than --max-size 4.0 GiB" in err
    code, _, err = run(capsys, "compile", spec(tmp_path, "input 100000000x100000000x1\nfc 10\n"), "-o", str(out))
    assert code == 1 and "--max-size" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.arch"]


def test_max_size_is_a_documented_limit_that_can_be_raised(capsys, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    code, _, err = run(capsys, "compile", "specs/lenet5.arch", "-o", str(out), "--max-size", "100K")
    assert code == 1 and "more than --max-size 100.0 KiB" in err and not out.exists()
    code, _, _ = run(capsys, "compile", "specs/lenet5.arch", "-o", str(out), "--max-size", "1M")
    assert code == 0 and out.exists()


def test_free_disk_space_is_checked_first(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))  # type: ignore[attr-defined]
    code, _, err = run(capsys, "compile", "specs/lenet5.arch", "-o", str(tmp_path / "m.onnx"))
    assert code == 1 and "only 1000 bytes are free there" in err
    assert list(tmp_path.iterdir()) == []


def test_uneven_adaptive_pooling_with_huge_constants_is_a_located_error(capsys, tmp_path: Path) -> None:
    for text in ("input 10000x10000x1\nadaptiveavgpool 9999\n", "input 8x8x1\nadaptiveavgpool 1G\n"):
        path = spec(tmp_path, text)
        code, _, err = run(capsys, "compile", path, "-o", str(tmp_path / "m.onnx"))
        assert code == 1 and f"{path}:2:1: error[E603]: adaptiveavgpool1: adaptiveavgpool from" in err
        assert not (tmp_path / "m.onnx").exists()
    # the uneven windows of the zoo still lower to two small MatMuls
    assert build_model(archc.loads("input 13x13x2\nadaptiveavgpool 6\n").analysis, weights="zeros").graph.node[0].op_type == "MatMul"


# --- item 7: a model and its external data are replaced as a pair ------------------------------------------
def _data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".data"))


def test_recompiling_replaces_the_pair_and_removes_the_old_data(tmp_path: Path) -> None:
    net = archc.loads("input 64\nfc1: fc 64\n")
    path = tmp_path / "m.onnx"
    _, first = write_model(net.analysis, path, seed=1, threshold=0)
    _, second = write_model(net.analysis, path, seed=2, threshold=0)
    assert first != second and _data_files(tmp_path) == [second.name]
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": np.ones((1, 64), np.float32)})
    expected = ort.InferenceSession(build_model(net.analysis, seed=2).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(y[0], expected.run(None, {"input": np.ones((1, 64), np.float32)})[0])


def test_a_failure_after_the_data_keeps_the_old_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import archc.backends.onnx.io as io

    net = archc.loads("input 64\nfc1: fc 64\n")
    path = tmp_path / "m.onnx"
    write_model(net.analysis, path, seed=1, threshold=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def killed(*args: object) -> None:  # the process dies between the data and the model
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "_write_model", killed)
    with pytest.raises(KeyboardInterrupt):
        write_model(net.analysis, path, seed=2, threshold=0)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # old model, old data, no temporary
    onnx.checker.check_model(str(path), full_check=True)


def test_orphan_data_of_a_killed_run_is_removed_next_time(tmp_path: Path) -> None:
    net = archc.loads("input 64\nfc1: fc 64\n")
    path = tmp_path / "m.onnx"
    (tmp_path / "m.onnx.0123456789abcdef.data").write_bytes(b"left by SIGKILL")
    (tmp_path / "m.onnx.data").write_bytes(b"not ours to remove")
    _, data = write_model(net.analysis, path, seed=1, threshold=0)
    assert _data_files(tmp_path) == sorted([data.name, "m.onnx.data"])


def test_a_data_file_being_written_is_not_removed(tmp_path: Path) -> None:
    """A concurrent compile of the same target holds its data locked until its model is in place."""
    import fcntl

    net = archc.loads("input 64\nfc1: fc 64\n")
    busy = tmp_path / "m.onnx.fedcba9876543210.data"
    busy.write_bytes(b"being written")
    with busy.open("rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        write_model(net.analysis, tmp_path / "m.onnx", seed=1, threshold=0)
    assert busy.exists()


def test_output_through_a_link_keeps_model_and_data_together(tmp_path: Path) -> None:
    real = tmp_path / "models" / "m.onnx"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "link.onnx"
    link.symlink_to(real)
    _, data = write_model(archc.loads("input 64\nfc1: fc 64\n").analysis, link, threshold=0)
    assert data.parent == real.parent and link.is_symlink()
    assert _data_files(tmp_path) == [] and _data_files(real.parent) == [data.name]
    onnx.checker.check_model(str(real), full_check=True)


def test_dev_null_never_gets_a_data_file() -> None:
    before = set(os.listdir("/dev"))
    assert write_model(archc.loads("input 64\nfc1: fc 64\n").analysis, Path("/dev/null"), threshold=0) == [Path("/dev/null")]
    assert set(os.listdir("/dev")) == before and Path("/dev/null").is_char_device()


# --- item 14: `archc run` on a hostile model: validated, isolated, bounded ---------------------------------
def _model(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(tmp_path: Path, model: onnx.ModelProto, name: str = "m.onnx") -> str:
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return str(path)


def _x(shape: list) -> onnx.ValueInfoProto:  # type: ignore[type-arg]
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)


def _y(shape: list | None = None) -> onnx.ValueInfoProto:  # type: ignore[type-arg]
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)


HOSTILE = {
    "input-without-shape": (
        lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [_y([4])]),
        "has no tensor shape",
    ),
    "conv-with-one-input": (
        lambda: _model([helper.make_node("Conv", ["x"], ["y"])], [_x(["batch", 1, 4, 4])], [_y(["batch", 1, 4, 4])]),
        "has input size 1 not in range [min=2, max=3]",
    ),
    "gemm-with-a-1d-weight": (
        lambda: _model(
            [helper.make_node("Gemm", ["x", "w"], ["y"])], [_x(["batch", 4])], [_y(["batch", 4])],
            [helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0] * 4)],
        ),
        "not a valid ONNX model: [ShapeInferenceError]",
    ),
    "sequence-output": (
        lambda: _model(
            [helper.make_node("SequenceConstruct", ["x"], ["y"])], [_x(["batch", 4])],
            [helper.make_tensor_sequence_value_info("y", TensorProto.FLOAT, None)],
        ),
        "is not a tensor",
    ),
    "huge-declared-input": (
        lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [_x(["batch", 100000, 100000, 100])], [_y(["batch", 100000, 100000, 100])]),
        "more than --max-size",
    ),
    "negative-dimension": (
        lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [_x(["batch", -5])], [_y(["batch", 5])]),
        "input 'x' has a negative dimension (-5)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_models_are_refused_before_a_session(capsys, tmp_path: Path, case: str) -> None:
    make, message = HOSTILE[case]
    path = _save(tmp_path, make())
    code, _, err = run(capsys, "run", path, "--repeat", "1", "--warmup", "0")
    assert code == 1 and err.startswith(f"archc: error: {path}: ") and message in err, err


def test_a_huge_batch_is_refused_before_allocating(capsys, tmp_path: Path) -> None:
    path = _save(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], [_x(["batch", 3, 224, 224])], [_y(["batch", 3, 224, 224])]))
    code, _, err = run(capsys, "run", path, "--batch", "100000000", "--repeat", "1")
    assert code == 1 and "at batch 100000000" in err and "more than --max-size" in err
    code, _, err = run(capsys, "run", spec(tmp_path, "input 2000000\nfc 1000000\n"), "--repeat", "1")
    assert code == 1 and "more than --max-size" in err


def test_an_endless_loop_is_stopped_by_the_timeout(capsys, tmp_path: Path) -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
    )  # fmt: skip
    trips = helper.make_tensor("trips", TensorProto.INT64, [], [2**62])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    model = _model(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)], [_x(["batch", 4])], [_y(["batch", 4])],
        [trips, cond],
    )  # fmt: skip
    path = _save(tmp_path, model)
    code, _, err = run(capsys, "run", path, "--repeat", "1", "--warmup", "0", "--timeout", "1.5")
    assert code == 1 and f"{path}: the model did not finish within 1.5 s (--timeout); stopped it" in err


def test_an_onnxruntime_crash_is_a_located_error(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGFPE inside onnxruntime (a squeezenet whose input height was edited to 5) killed archc."""
    import archc.backends.onnx.runtime as runtime

    monkeypatch.setattr(runtime, "measure", lambda *a, **k: os.kill(os.getpid(), signal.SIGFPE))
    path = tmp_path / "m.onnx"
    archc.loads(TINY).to_onnx(path)
    code, _, err = run(capsys, "run", str(path), "--repeat", "1")
    assert code == 1 and f"{path}: onnxruntime crashed (signal SIGFPE) while running the model" in err


# --- items 18 and 22: --check and JSON ---------------------------------------------------------------------
def test_check_fails_on_nan_and_json_stays_json(capsys, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("archc.backends.torch.generate")
    weights = tmp_path / "w.pt"
    torch.save({"fc1.weight": torch.full((3, 4), 3e38), "fc1.bias": torch.zeros(3)}, weights)  # sums overflow
    path = spec(tmp_path, TINY)
    code, out, _ = run(capsys, "run", path, "--check", "--json", "--repeat", "1", "--weights", str(weights))
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert code == 1 and data["check_passed"] is False and data["max_rel_error"] is None
    code, out, _ = run(capsys, "run", path, "--check", "--repeat", "1", "--weights", str(weights))
    assert code == 1 and "FAILED: NaN or infinity" in out


def test_check_on_an_onnx_file_is_refused_before_running(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import archc.backends.onnx.runtime as runtime

    monkeypatch.setattr(runtime, "measure", lambda *a, **k: pytest.fail("benchmarked before refusing"))
    path = tmp_path / "m.onnx"
    archc.loads(TINY).to_onnx(path)
    code, _, err = run(capsys, "run", str(path), "--check")
    assert code == 2 and "--check needs a .arch spec" in err  # a usage error


def test_model_names_are_escaped_in_the_report(capsys, tmp_path: Path) -> None:
    model = build_model(archc.loads(TINY).analysis)
    model.graph.name = "evil\x1b[2J\nname"
    path = _save(tmp_path, model)
    code, out, err = run(capsys, "run", path, "--repeat", "1", "--warmup", "0")
    assert code == 0 and "\x1b" not in out + err and re.search(r"'evil\\x1b\[2J\\nname'", out)
