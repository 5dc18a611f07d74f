"""ONNX back-end benchmarks, side by side in one run (a script, not a test).

    .venv/bin/python bench/bench_onnx.py [--quick]

(a) whole-process compile of torchvision's AlexNet (61,100,840 params) to ONNX:
    `archc compile` vs `torch.onnx.export` of the same network, each in a fresh
    process, torch's time including importing torch and building the module.
    Target: archc at least 5x faster.
(b) onnxruntime throughput on archc's graph vs torch.onnx.export's graph at the
    same weights, batch 1 and 32, and achieved GFLOP/s at batch 32 next to a
    measured float32 matmul peak (torch.mm).
(c) peak memory (VmHWM: the compiling process's own peak RSS) of `archc
    compile` of VGG-16 with random weights, against the weights' bytes.
    Target: at most 2x.

The exporter is torch's TorchScript one (`dynamo=False`): the dynamo exporter
needs onnxscript, which this environment lacks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALEXNET = ROOT / "specs" / "alexnet_torchvision.arch"
VGG16 = ROOT / "specs" / "vgg16.arch"

# torchvision.models.alexnet(), written out: torchvision is not a dependency.
TORCH_EXPORT = """
import sys, torch
from torch import nn
features = nn.Sequential(
    nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
    nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
    nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
classifier = nn.Sequential(
    nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
    nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1000))
model = nn.Sequential(features, nn.AdaptiveAvgPool2d(6), nn.Flatten(), classifier).eval()
assert sum(p.numel() for p in model.parameters()) == 61_100_840
torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), sys.argv[1], dynamo=False,
                  input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}})
"""


def run_child(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    # As users run it, with .pyc files (this workplace sets PYTHONDONTWRITEBYTECODE; bench_core.py does the same).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{err}")
    return wall, usage.ru_maxrss * 1024  # Linux reports KiB


def bench_compile(tmp: Path, runs: int) -> None:
    archc = [sys.executable, "-m", "archc", "compile", str(ALEXNET), "-o", str(tmp / "a.onnx")]
    torch = [sys.executable, "-c", TORCH_EXPORT, str(tmp / "t.onnx")]
    run_child(archc), run_child(torch)  # untimed: .pyc files written, page cache warm for both
    ours = [run_child(archc)[0] for _ in range(runs)]
    theirs = [run_child(torch)[0] for _ in range(runs)]
    a, t = statistics.median(ours), statistics.median(theirs)
    print("(a) AlexNet (torchvision, 61,100,840 params) -> ONNX, whole process, median of", runs)
    print(f"    archc compile        {a:7.2f} s   ({', '.join(f'{x:.2f}' for x in ours)})")
    print(f"    torch.onnx.export    {t:7.2f} s   ({', '.join(f'{x:.2f}' for x in theirs)})")
    print(f"    speed-up             {t / a:7.1f}x  (target >= 5x)")


def matmul_peak() -> float:
    import torch

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(10))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_throughput(tmp: Path, repeat: int) -> None:
    import numpy as np
    import torch

    import archc
    from archc.backends.onnx.runtime import Prepared, make_session
    from archc.backends.weights import make_weights

    net = archc.load(ALEXNET)
    weights = make_weights(net.analysis, seed=0)
    ours = Prepared.from_analysis(net.analysis, weights=weights)
    module = net.to_torch()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    module.eval()
    path = tmp / "exported.onnx"
    torch.onnx.export(module, (torch.randn(1, 3, 224, 224),), str(path), dynamo=False,
                      input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}})
    theirs = Prepared(str(path), "torch.onnx.export", net.macs)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    import onnxruntime as ort

    outs = [ort.InferenceSession(m.model, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
            for m in (ours, theirs)]
    err = np.abs(outs[0] - outs[1]).max() / np.abs(outs[1]).max()
    print(f"(b) onnxruntime, CPU ({os.cpu_count()} cores), AlexNet, same weights (outputs agree to {err:.1e})")
    print("    the two graphs run in alternating blocks (8 runs, or 2 at batch 32), so drifts of a")
    print("    shared machine hit both alike while each block keeps its own weights in cache")
    print("    graph                batch   runs   p50 ms    images/s   GFLOP/s")
    sessions = {label: make_session(m.model, ["CPUExecutionProvider"]) for label, m in (("archc", ours), ("torch.onnx.export", theirs))}
    for batch in (1, 32):
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        block = 8 if batch == 1 else 2
        runs = repeat * block
        times: dict[str, list[float]] = {label: [] for label in sessions}
        for _ in range(repeat):
            for label, sess in sessions.items():
                sess.run(None, {"input": x})  # untimed: back in cache after the other graph's block
                for _ in range(block):
                    times[label].append(_timed(lambda sess=sess, x=x: sess.run(None, {"input": x})))
        for label, ts in times.items():
            p50 = statistics.median(ts)
            print(f"    {label:20} {batch:5}  {runs:5}  {p50 * 1e3:8.2f}  {batch / p50:10.1f}  {2 * net.macs * batch / p50 / 1e9:8.1f}")
        ratio = statistics.median(times["torch.onnx.export"]) / statistics.median(times["archc"])
        print(f"    throughput archc / torch.onnx.export at batch {batch}: {ratio:.2f}x (target >= 1.0x)")
    print(f"    float32 matmul peak (torch.mm 2048^2): {matmul_peak():.1f} GFLOP/s")


# Runs the CLI and reports the process's own peak RSS (VmHWM): ru_maxrss of a
# child also counts what it inherited at fork from this (by then large) process.
PEAK = """
import sys
from archc.cli import main
code = main(sys.argv[1:])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(peak.split()[1]) * 1024, file=sys.stderr)
sys.exit(code)
"""


def peak_rss(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: archc {' '.join(argv)}\n{proc.stderr}")
    return time.perf_counter() - t0, int(proc.stderr.strip().splitlines()[-1])


def bench_memory(tmp: Path) -> None:
    import archc

    net = archc.load(VGG16)
    weight_bytes = 4 * net.params
    out = tmp / "vgg16.onnx"
    wall, rss = peak_rss(["compile", str(VGG16), "-o", str(out), "--weights", "random"])
    _, idle = peak_rss(["check", str(VGG16)])
    print(f"(c) VGG-16 ({net.params:,} params, {weight_bytes / 1e6:.0f} MB of float32 weights) -> ONNX")
    print(f"    archc compile peak RSS {rss / 1e6:7.0f} MB = {rss / weight_bytes:.2f}x the weights (target <= 2x), {wall:.1f} s")
    print(f"    (archc check of the same spec peaks at {idle / 1e6:.0f} MB)")
    print(f"    file size              {out.stat().st_size / 1e6:7.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as d:
        tmp = Path(d)
        bench_memory(tmp)
        bench_compile(tmp, 2 if args.quick else 5)
        bench_throughput(tmp, 5 if args.quick else 12)


if __name__ == "__main__":
    main()
