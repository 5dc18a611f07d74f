"""Sequence-model benchmarks, side by side in one run (a script, not a test).

    .venv/bin/python bench/bench_sequence.py [--quick]

(a) onnxruntime throughput on archc's ONNX against `torch.onnx.export` of the same
    generated PyTorch module at the same weights: GPT-2 small at T=128 (the zoo
    spec with `input 128 tokens`; its 1024-row position table kept) and ViT-B/16,
    batch 1 and 8, both sessions with onnxruntime's default optimisations
    (ORT_ENABLE_ALL), timed in alternating blocks. Target: at least 1.0x. Then
    which fused operators onnxruntime made of each graph (from a profiled run):
    whether it fused the attention (com.microsoft Attention, MultiHeadAttention,
    GroupQueryAttention), the layer norms, the GELUs, the scaled MatMuls.
(b) ONNX compile of GPT-2 small (T=1024, 124,439,808 params, 498 MB of float32
    weights), whole processes: `archc compile` against a process that imports
    torch, builds archc's generated module and runs `torch.onnx.export` on it.
    Target: archc at least 5x faster; its peak RSS (VmHWM) at most 2x the
    weights' bytes. The files are written to a temporary directory and deleted.
(c) `archc check specs/llama3_8b.arch` (8,030,261,248 params), whole process:
    target under 0.5 s; its peak RSS next to a check of a 2-layer spec (memory
    does not grow with the parameter count: no weight is allocated).

The exporter is torch's TorchScript one (`dynamo=False`): the dynamo exporter
needs onnxscript, which this environment lacks. Figures: RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_onnx import PEAK, _timed, run_child

ROOT = Path(__file__).resolve().parent.parent
GPT2 = ROOT / "specs" / "gpt2_small.arch"
VIT = ROOT / "specs" / "vit_b_16.arch"
LLAMA3 = ROOT / "specs" / "llama3_8b.arch"
FUSED_ATTENTION = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"}

# The torch side of (b): import torch, build archc's generated module, export it.
TORCH_EXPORT = """
import sys, torch
namespace = {}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), namespace)
model = namespace[sys.argv[2]]().eval()
ids = torch.zeros(1, int(sys.argv[4]), dtype=torch.long)
torch.onnx.export(model, (ids,), sys.argv[3], dynamo=False, opset_version=20,
                  input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}})
"""


def gpt2_at(tokens: int) -> str:
    """The zoo's GPT-2 small spec read at another context length (the position table stays 1024 rows)."""
    text = GPT2.read_text(encoding="utf-8")
    text = text.replace("input 1024 tokens", f"input {tokens} tokens")
    return re.sub(r"(->|output =) 1024x", rf"\1 {tokens}x", text)


# --- (a) throughput -----------------------------------------------------------------------
def _exported(net, weights, path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from archc.analysis.tensors import tied_keys
    from archc.ir import INPUT

    module = net.to_torch()
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    state.update({alias: state[owner] for alias, owner in tied_keys(net.analysis).items()})
    module.load_state_dict(state, strict=True)
    module.eval()
    dims = (1, *net.analysis.physical(INPUT))
    example = torch.zeros(dims, dtype=torch.long) if _ids(net) else torch.randn(dims)
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=20,
                          input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}})


def _ids(net) -> bool:  # type: ignore[no-untyped-def]
    from archc.ir import Layout

    return bool(net.graph.input_shape.layout is Layout.TOKENS)


def _input(net, batch: int):  # type: ignore[no-untyped-def]
    import numpy as np

    from archc.ir import INPUT

    rng = np.random.default_rng(0)
    dims = (batch, *net.analysis.physical(INPUT))
    if _ids(net):
        vocabulary = min(n.attrs["V"] for n in net.graph.nodes if n.kind == "embedding")
        return rng.integers(0, vocabulary, dims, dtype=np.int64)
    return rng.standard_normal(dims, dtype=np.float32)


def fused_ops(model: str | bytes, tmp: Path, x) -> collections.Counter[str]:  # type: ignore[no-untyped-def]
    """The operators onnxruntime ran (after its optimisations), from one profiled run."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp / "profile")
    opts.log_severity_level = 3
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    session.run(None, {"input": x})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    ops: collections.Counter[str] = collections.Counter()
    seen = set()
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and "op_name" in args and e["name"].endswith("_kernel_time") and e["name"] not in seen:
            seen.add(e["name"])
            ops[args["op_name"]] += 1
    return ops


def bench_throughput(tmp: Path, repeat: int) -> None:
    import numpy as np

    import archc
    from archc.backends.onnx.generate import build_model
    from archc.backends.onnx.runtime import make_session
    from archc.backends.weights import make_weights

    print(f"(a) onnxruntime, CPU ({os.cpu_count()} cores), archc's ONNX vs torch.onnx.export of the same module")
    print("    graph                batch   runs   p50 ms   samples/s")
    for label, net in (
        ("GPT-2 small, T=128", archc.loads(gpt2_at(128), "gpt2_small_128.arch")),
        ("ViT-B/16", archc.load(VIT)),
    ):
        weights = make_weights(net.analysis, seed=0)
        ours = build_model(net.analysis, weights=weights).SerializeToString()
        path = tmp / "exported.onnx"
        _exported(net, weights, path)
        x = _input(net, 1)
        sessions = {"archc": make_session(ours, ["CPUExecutionProvider"]), "torch.onnx.export": make_session(str(path), ["CPUExecutionProvider"])}
        outs = [s.run(None, {"input": x})[0] for s in sessions.values()]
        err = float(np.abs(outs[0] - outs[1]).max() / np.abs(outs[1]).max())
        print(f"    {label} ({net.params:,} params; the two graphs agree to {err:.1e})")
        for batch in (1, 8):
            xb = _input(net, batch)
            block = 3 if batch == 1 else 1
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(repeat):
                for name, sess in sessions.items():
                    sess.run(None, {"input": xb})  # untimed: back in cache after the other graph's block
                    for _ in range(block):
                        times[name].append(_timed(lambda sess=sess, xb=xb: sess.run(None, {"input": xb})))
            for name, ts in times.items():
                p50 = statistics.median(ts)
                print(f"    {name:20} {batch:5}  {len(ts):5}  {p50 * 1e3:7.1f}  {batch / p50:9.2f}")
            ratio = statistics.median(times["torch.onnx.export"]) / statistics.median(times["archc"])
            print(f"    throughput archc / torch.onnx.export at batch {batch}: {ratio:.2f}x (target >= 1.0x)")
        for name, model in (("archc", ours), ("torch.onnx.export", str(path))):
            ops = fused_ops(model, tmp, x)
            attention = sorted(op for op in ops if op in FUSED_ATTENTION)
            fused = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()) if op not in _PLAIN)
            print(f"    {name:20} attention fused: {'yes (' + ', '.join(attention) + ')' if attention else 'no'};"
                  f" {sum(ops.values())} kernels; fused or contrib ops: {fused or 'none'}")
        path.unlink()


_PLAIN = {  # standard ONNX ops, to pick out what onnxruntime fused
    "Add", "MatMul", "Reshape", "Transpose", "Split", "Softmax", "Gather", "Concat", "Shape", "Slice",
    "Expand", "Unsqueeze", "Mul", "Div", "Sqrt", "Cast", "Equal", "Where", "Trilu", "Gemm", "Conv", "Pow",
    "ReduceMean", "Sub", "Neg", "Constant", "ConstantOfShape", "Range", "ReorderOutput", "ReorderInput",
    "Identity", "Squeeze",
}


# --- (b) compile ----------------------------------------------------------------------------
def peak_run(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and the process's own peak RSS (VmHWM) of one `archc` run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: archc {' '.join(argv)}\n{proc.stderr}")
    return wall, int(proc.stderr.strip().splitlines()[-1])


def bench_compile(tmp: Path, runs: int) -> None:
    import archc

    net = archc.load(GPT2)
    weight_bytes = 4 * net.params
    source = tmp / "gpt2.py"
    archc_onnx, torch_onnx = tmp / "archc.onnx", tmp / "torch.onnx"
    subprocess.run([sys.executable, "-m", "archc", "compile", str(GPT2), "-o", str(source)], cwd=ROOT, check=True)
    ours = [sys.executable, "-m", "archc", "compile", str(GPT2), "-o", str(archc_onnx)]
    theirs = [sys.executable, "-c", TORCH_EXPORT, str(source), "GPT2_Small", str(torch_onnx), "1024"]
    run_child(ours), run_child(theirs)  # untimed: .pyc files written, page cache warm for both
    a_times, t_times = [], []
    for _ in range(runs):
        a_times.append(run_child(ours)[0])
        archc_onnx.unlink()
        t_times.append(run_child(theirs)[0])
        torch_onnx.unlink()
    _, rss = peak_run(["compile", str(GPT2), "-o", str(archc_onnx)])
    size = archc_onnx.stat().st_size
    archc_onnx.unlink()
    a, t = statistics.median(a_times), statistics.median(t_times)
    print(f"(b) GPT-2 small ({net.params:,} params, {weight_bytes / 1e6:.0f} MB of float32 weights) -> ONNX, whole process, median of {runs}")
    print(f"    archc compile        {a:7.2f} s   ({', '.join(f'{x:.2f}' for x in a_times)})")
    print(f"    torch.onnx.export    {t:7.2f} s   ({', '.join(f'{x:.2f}' for x in t_times)})  (import torch, build, export)")
    print(f"    speed-up             {t / a:7.1f}x  (target >= 5x)")
    print(f"    archc compile peak RSS {rss / 1e6:5.0f} MB = {rss / weight_bytes:.2f}x the weights (target <= 2x); file {size / 1e6:.0f} MB (the tied weight once)")


# --- (c) check ------------------------------------------------------------------------------
def bench_check(tmp: Path, runs: int) -> None:
    tiny = tmp / "tiny.arch"
    tiny.write_text("input 16 tokens\nembedding V=100 D=8\nrepeat 2 { attention 2 causal=true }\n", encoding="utf-8")
    argv = [sys.executable, "-m", "archc", "check", str(LLAMA3)]
    run_child(argv)
    times = [run_child(argv)[0] for _ in range(runs)]
    floor = [run_child([sys.executable, "-c", "import lark, pydantic"])[0] for _ in range(runs)]
    _, rss = peak_run(["check", str(LLAMA3)])
    _, tiny_rss = peak_run(["check", str(tiny)])
    print(f"(c) archc check specs/llama3_8b.arch (8,030,261,248 params), whole process, median of {runs}")
    print(f"    archc check          {statistics.median(times):7.3f} s  (min {min(times):.3f}; target < 0.5 s)")
    print(f"    import lark, pydantic {statistics.median(floor):6.3f} s  (the start-up floor)")
    print(f"    peak RSS             {rss / 1e6:7.1f} MB  (a 2-layer spec: {tiny_rss / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as d:
        tmp = Path(d)
        bench_check(tmp, 5 if args.quick else 15)
        bench_compile(tmp, 1 if args.quick else 3)
        bench_throughput(tmp, 3 if args.quick else 8)


if __name__ == "__main__":
    main()
