"""`archc run` and the runtime: providers, report keys, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import SPECS  # noqa: E402

import archc  # noqa: E402
from archc.backends.onnx.generate import build_model  # noqa: E402
from archc.backends.onnx.runtime import CPU, CUDA, Prepared, RunError, benchmark, onnx_macs  # noqa: E402
from archc.cli import main  # noqa: E402

ALEXNET = str(SPECS / "alexnet_lecture.arch")
HAS_CUDA = CUDA in ort.get_available_providers()
KEYS = {
    "network", "source", "requested_provider", "provider", "providers", "note", "batch", "output_shape",
    "warmup", "repeat", "latency_ms", "throughput_ips", "macs_per_image", "gflops", "opset",
    "max_rel_error", "compared", "check_passed",
}  # fmt: skip


def _json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["run", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def test_run_alexnet_batch_2_json(capsys) -> None:
    code, r = _json(capsys, ALEXNET, "--batch", "2", "--warmup", "1", "--repeat", "3", "--provider", "cpu")
    assert code == 0
    assert set(r) == KEYS
    net = archc.load(ALEXNET)
    assert r["provider"] == CPU and r["providers"] == [CPU] and r["note"] is None
    assert r["output_shape"] == [2, 1000] and r["batch"] == 2 and r["repeat"] == 3
    assert 0 < r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["p90"]
    assert r["throughput_ips"] == pytest.approx(2 / (r["latency_ms"]["p50"] / 1e3))
    assert r["macs_per_image"] == net.macs
    assert r["gflops"] == pytest.approx(2 * net.macs * 2 / (r["latency_ms"]["p50"] / 1e3) / 1e9)
    assert r["max_rel_error"] is None and r["check_passed"] is None


def test_run_text_report(capsys) -> None:
    assert main(["run", ALEXNET, "--repeat", "2", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "provider    CPUExecutionProvider" in out
    assert "output      1x1000" in out
    assert "p50" in out and "p90" in out and "images/s" in out and "GFLOP/s" in out
    if not HAS_CUDA:  # auto says that it fell back
        assert "fell back to CPU" in out


def test_auto_prefers_cuda_only_when_available(capsys) -> None:
    code, r = _json(capsys, ALEXNET, "--repeat", "1", "--warmup", "0")
    assert code == 0 and r["requested_provider"] == "auto"
    if HAS_CUDA:
        assert r["provider"] in (CUDA, CPU)
    else:
        assert r["provider"] == CPU and "fell back to CPU" in r["note"]


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available here")
def test_provider_cuda_without_cuda_is_a_clear_error(capsys) -> None:
    assert main(["run", ALEXNET, "--provider", "cuda", "--repeat", "1"]) == 1
    err = capsys.readouterr().err
    assert "no CUDA provider" in err and "onnxruntime-gpu" in err and "Traceback" not in err


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime's CUDAExecutionProvider")
def test_provider_cuda_runs_on_the_gpu(capsys) -> None:
    code, r = _json(capsys, ALEXNET, "--provider", "cuda", "--batch", "8", "--repeat", "5")
    assert code == 0 and r["provider"] == CUDA and r["output_shape"] == [8, 1000]


def test_run_an_onnx_file_computes_macs_from_the_graph(tmp_path: Path, capsys) -> None:
    net = archc.load(SPECS / "resnet18.arch")
    path = tmp_path / "r.onnx"
    net.to_onnx(path, weights="zeros")
    code, r = _json(capsys, str(path), "--repeat", "1", "--warmup", "0", "--provider", "cpu")
    assert code == 0 and r["macs_per_image"] == net.macs and r["network"] == net.name
    assert r["output_shape"] == [1, 1000] and r["opset"] is not None


def test_onnx_macs_unknown_without_shapes() -> None:
    model = build_model(archc.loads("input 8x8x3\nconv K=2 F=3\nglobalavgpool\nfc 3").analysis)
    assert onnx_macs(model) == 6 * 6 * 2 * 27 + 2 * 3
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"  # the conv's output size unknown
    assert onnx_macs(model) is None


def test_check_compares_with_pytorch(capsys) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("archc.backends.torch.generate")
    code, r = _json(capsys, str(SPECS / "lenet5.arch"), "--check", "--repeat", "1", "--batch", "3")
    assert code == 0 and r["check_passed"] is True and r["max_rel_error"] < 1e-5


# A small classifier with a batchnorm and a final softmax: what `--check` must see through.
CLASSIFIER = "input 8x8x3\nconv K=4 F=3\nbatchnorm\nrelu\nfc 10\nsoftmax\n"


def _check_run(tmp_path: Path, capsys) -> tuple[int, str]:
    pytest.importorskip("torch")
    pytest.importorskip("archc.backends.torch.generate")
    spec = tmp_path / "classifier.arch"
    spec.write_text(CLASSIFIER)
    code = main(["run", str(spec), "--check", "--repeat", "1", "--warmup", "0", "--batch", "4"])
    return code, capsys.readouterr().out


def test_check_passes_and_names_what_it_compared(tmp_path: Path, capsys) -> None:
    code, out = _check_run(tmp_path, capsys)
    assert code == 0, out
    assert "(ok, tolerance 0.0001, output and fc1 before the final softmax)" in out


def test_check_fails_when_batchnorm_is_lowered_as_the_identity(tmp_path: Path, capsys, monkeypatch) -> None:
    """A back-end that dropped batchnorm passed `--check`: fresh running statistics (mean 0, variance 1,
    scale 1, shift 0) make batchnorm the identity. The check draws them at random now."""
    from archc.backends.onnx import generate

    monkeypatch.setitem(generate.HANDLERS, "batchnorm", generate._identity)
    code, out = _check_run(tmp_path, capsys)
    assert code == 1 and "FAILED" in out, out


def test_check_fails_on_wrong_logits_under_a_final_softmax(tmp_path: Path, capsys, monkeypatch) -> None:
    """softmax(z + 5) = softmax(z): a back-end that shifts the logits gives the right probabilities,
    and only comparing the softmax's input shows it."""
    from archc.backends.onnx import generate

    def shifted_fc(ctx, node, facts):  # the fc, then + 5 on every logit
        y = generate._fc(ctx, node, facts)
        return ctx.emit("Add", [y, ctx.constant("/const/five", 5.0)], f"{node.name}/shifted")

    monkeypatch.setitem(generate.HANDLERS, "fc", shifted_fc)
    code, out = _check_run(tmp_path, capsys)
    assert code == 1 and "FAILED" in out, out


def test_check_needs_a_spec(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.onnx"
    archc.loads("input 4\nfc 3").to_onnx(path)
    with pytest.raises(SystemExit) as exit_:  # a usage error, as argparse exits
        main(["run", str(path), "--check", "--repeat", "1"])
    assert exit_.value.code == 2
    assert "--check needs a .arch spec" in capsys.readouterr().err


def test_spec_options_on_a_model_are_errors(tmp_path: Path, capsys) -> None:
    """--weights and --opset would be silently ignored for an .onnx file: say so instead."""
    path = tmp_path / "m.onnx"
    archc.loads("input 4\nfc 3").to_onnx(path)
    with pytest.raises(SystemExit) as exit_:  # a usage error, as argparse exits
        main(["run", str(path), "--weights", "zeros", "--opset", "17", "--repeat", "1"])
    assert exit_.value.code == 2
    assert "--weights and --opset apply to a .arch spec" in capsys.readouterr().err


def test_a_model_of_two_inputs_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3]) for n in ("a", "b", "y")]
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two", io[:2], io[2:])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert main(["run", str(path), "--repeat", "1"]) == 1
    assert "takes 2 inputs ('a', 'b')" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope.onnx"], "no such file"),
    ],
)
def test_run_errors_exit_1_without_traceback(argv: list[str], message: str, capsys) -> None:
    assert main(["run", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_run_a_broken_onnx_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    assert main(["run", str(tmp_path / "bad.onnx")]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_run_an_invalid_spec_prints_diagnostics(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.arch").write_text("input 8x8x3\nconv K=4 F=30\n")
    assert main(["run", str(tmp_path / "bad.arch")]) == 1
    assert "bad.arch:2:" in capsys.readouterr().err


def test_fixed_batch_model(tmp_path: Path) -> None:
    model = build_model(archc.loads("input 4\nfc 3").analysis)
    for v in (model.graph.input[0], model.graph.output[0]):
        v.type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    assert benchmark(Prepared.from_file(path), batch=1, provider="cpu", warmup=0, repeat=1).output_shape == [1, 3]
    with pytest.raises(RunError, match="fixed at 1; use --batch 1"):
        benchmark(Prepared.from_file(path), batch=2, provider="cpu")
