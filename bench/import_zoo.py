"""Issue 13's acceptance for ONNX: published models exported by `torch.onnx.export`, imported back.

    python bench/import_zoo.py [--models resnet50,mobilenet_v2,...] [--exporters torchscript,dynamo]
                               [--keep DIR]

Not a test (CI has no torchvision and these models take minutes): run it by
hand in a scratch environment with torch, torchvision, transformers,
onnxscript and onnxruntime beside archc (`pip install -e .` with the `onnx`
extra; see bench/README.md). For each model and exporter:

1. the model is built with random weights (batchnorm statistics randomised
   too, so that folding them matters) and exported with a free batch
   (`dynamic_axes`, or `dynamic_shapes` for `dynamo=True`); the TorchScript
   exporter twice, as it folds batchnorm into the convolutions by default
   and keeps it with `training=TrainingMode.PRESERVE` (`torchscript-bn`); the
   dynamo exporter's optimiser folds it too (`dynamo-bn` exports with
   `optimize=False`, a graph archc does not import: see RESULTS.md);
2. `archc import model.onnx -o net.arch --weights net.safetensors` runs as
   its own process (which must not import torch);
3. `archc check` of the spec: its params against the model's own
   `sum(p.numel() for p in model.parameters())` (equal unless batchnorm was
   folded, which leaves fewer), its MACs against the published figure
   (torchvision's tables: GFLOPS there are multiply-accumulates, to 2 decimals);
4. `archc compile net.arch --weights net.safetensors -o back.onnx`, and
   onnxruntime's outputs of the export and of `back.onnx` on the same random
   input (batch 2), compared within 1e-4 relative error (of the largest output).

It prints one row per run and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PY = sys.executable

# published MACs (G, to the digits published) and the input each model is measured at
MODELS: dict[str, dict[str, Any]] = {
    "resnet50": {"macs": "4.09", "input": (3, 224, 224)},
    "mobilenet_v2": {"macs": "0.30", "input": (3, 224, 224)},
    "efficientnet_b0": {"macs": "0.39", "input": (3, 224, 224)},
    "vit_b_16": {"macs": "17.56", "input": (3, 224, 224)},
    "gpt2": {"macs": None, "input": (128,)},  # HF GPT-2 small, random init; no published MAC figure at T=128
}


def build(name: str) -> Any:
    import torch

    torch.manual_seed(0)
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        hf = GPT2LMHeadModel(GPT2Config()).eval()
        hf.config.use_cache = False
        with torch.no_grad():  # as trained: Hugging Face initialises biases to 0 and norms to 1, and the
            # dynamo exporter's optimiser drops a zero bias and shares equal tensors between layers
            for name, p in hf.named_parameters():
                p.normal_(1.0 if ".ln_" in name and name.endswith("weight") else 0.0, 0.02)

        class Logits(torch.nn.Module):  # the logits alone: one input, one output
            def __init__(self) -> None:
                super().__init__()
                self.model = hf

            def forward(self, ids: torch.Tensor) -> torch.Tensor:
                # an all-ones mask: without one, transformers looks for packed sequences with
                # torch.diff, which the TorchScript exporter cannot write
                mask = torch.ones_like(ids)
                return self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits

        return Logits().eval(), sum(p.numel() for p in hf.parameters())
    import torchvision

    model = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model, sum(p.numel() for p in model.parameters())


def export(model: Any, shape: tuple[int, ...], path: Path, exporter: str) -> None:
    import torch

    batch = 2 if exporter.startswith("dynamo") else 1  # torch.export specialises a dimension of 1
    if len(shape) == 1:
        x = torch.randint(0, 50257, (batch, *shape))
    else:
        x = torch.randn(batch, *shape)
    if exporter.startswith("dynamo"):
        dim = torch.export.Dim("batch", min=1, max=64)
        name = next(iter(inspect.signature(model.forward).parameters))
        # its optimiser folds batchnorm into the convolutions; optimize=False keeps it
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["output"],
                          dynamic_shapes={name: {0: dim}}, verbose=False, optimize=exporter != "dynamo-bn")
    else:
        training = torch.onnx.TrainingMode.PRESERVE if exporter == "torchscript-bn" else torch.onnx.TrainingMode.EVAL
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, training=training,
                          opset_version=17)


def gpt2_macs(length: int, channels: int = 768, layers: int = 12, vocab: int = 50257) -> int:
    """LANGUAGE.md's MACs of GPT-2 small at `length` tokens: per block the attention's four C x C
    projections and its 2*L*L*C scores and sums, the MLP's two C x 4C fcs; the tied head's L*C*V.
    Embeddings, norms and GELU count nothing."""
    attention = length * 4 * channels * channels + 2 * length * length * channels
    mlp = 2 * length * channels * 4 * channels
    return layers * (attention + mlp) + length * channels * vocab


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    s = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def one(name: str, exporter: str, tmp: Path) -> dict[str, Any]:
    import archc

    row: dict[str, Any] = {"model": name, "exporter": exporter}
    info = MODELS[name]
    model, torch_params = build(name)
    row["torch_params"] = torch_params
    onnx_path = tmp / f"{name}_{exporter}.onnx"
    t = time.perf_counter()
    export(model, info["input"], onnx_path, exporter)
    row["export_s"] = round(time.perf_counter() - t, 1)
    row["onnx_mb"] = round(onnx_path.stat().st_size / 1e6, 1)
    spec, weights = tmp / f"{name}_{exporter}.arch", tmp / f"{name}_{exporter}.safetensors"
    # the import as a user runs it; -X importtime would be slow, so a wrapper checks torch stays out
    probe = ("import sys, runpy; sys.argv = ['archc'] + sys.argv[1:]\n"
             "try:\n runpy.run_module('archc', run_name='__main__')\n"
             "finally:\n print('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr)")
    t = time.perf_counter()
    proc = subprocess.run([PY, "-c", probe, "import", str(onnx_path), "-o", str(spec), "--weights", str(weights)],
                          capture_output=True, text=True)
    row["import_s"] = round(time.perf_counter() - t, 2)
    row["import_torch_free"] = "NOTORCH" in proc.stderr
    if proc.returncode != 0:
        row["error"] = proc.stderr.replace("NOTORCH", "").strip()
        return row
    result = archc.compile_file(spec)
    net = result.network
    if net is None:
        row["error"] = "the imported spec does not check: " + "; ".join(str(d) for d in result.diagnostics)
        return row
    row["params"] = net.params
    row["params_equal"] = net.params == torch_params
    row["macs"] = net.macs
    if name == "gpt2":  # no published figure at T=128: the contract's formulas, written out here
        row["macs_contract"] = gpt2_macs(info["input"][0])
        row["macs_equal"] = net.macs == row["macs_contract"]
    if info["macs"] is not None:
        digits = len(info["macs"].split(".")[1])
        row["macs_published_g"] = info["macs"]
        row["macs_equal"] = f"{net.macs / 1e9:.{digits}f}" == info["macs"]
    row["spec_lines"] = len(spec.read_text().splitlines())
    row["blocks"] = sum(1 for ln in spec.read_text().splitlines() if ln.startswith("block "))
    back = tmp / f"{name}_{exporter}_back.onnx"
    proc = subprocess.run([PY, "-m", "archc", "compile", str(spec), "--weights", str(weights), "-o", str(back)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        row["error"] = "compile back: " + proc.stderr.strip()
        return row
    rng = np.random.default_rng(0)
    shape = (2, *info["input"])
    x = rng.integers(0, 50257, shape).astype(np.int64) if len(info["input"]) == 1 else rng.standard_normal(shape, dtype=np.float32)
    a, b = run_ort(onnx_path, x), run_ort(back, x)
    row["rel_err"] = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12))
    return row


def expected_params(row: dict[str, Any]) -> int | None:
    """The params the import must have exactly, or None where fewer are right (batchnorm folded)."""
    if row["model"] == "gpt2" or row["exporter"].endswith("-bn"):
        return row["torch_params"]
    return None


def ok(row: dict[str, Any]) -> bool:
    want = expected_params(row)
    params = row["params"] == want if want is not None else row["params"] <= row["torch_params"]
    return ("error" not in row and row["import_torch_free"] and row.get("macs_equal", True) is not False
            and params and row["rel_err"] < 1e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--exporters", default="torchscript,torchscript-bn,dynamo")
    parser.add_argument("--keep", help="a folder to keep the exports, specs and weights in")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="archc-import-zoo-"))
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for name in args.models.split(","):
            for exporter in args.exporters.split(","):
                try:
                    row = one(name, exporter, tmp)
                except Exception as e:  # noqa: BLE001 - an exporter failing on a model is a row, not the end
                    row = {"model": name, "exporter": exporter, "error": f"{type(e).__name__}: {e}"[:400]}
                row["ok"] = ok(row) if "error" not in row else False
                rows.append(row)
                print(json.dumps(row), flush=True)
                for f in tmp.glob(f"{name}_{exporter}*"):
                    if not args.keep:
                        f.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
