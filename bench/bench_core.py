"""Benchmarks of the compiler core (issue: the compiler core), side by side in one run.

    python bench/bench_core.py            # about a minute on 2 cores
    python bench/bench_core.py --quick    # fewer repetitions, no 100k spec

1. Start-up: whole-process wall time of `archc check specs/alexnet_lecture.arch`
   against `python -c "import lark, pydantic"` (target: at most 2x), and, for
   context, against what people do instead: import torch, build the AlexNet
   module and count its parameters.
2. `archc check` imports no torch, onnx, onnxruntime or numpy (-X importtime).
3. Scaling: parse + elaborate + analyse of generated 1k / 10k / 100k-layer
   specs, 1,000 nested block calls and 1,000 sequential block calls, each in a
   fresh process: time and peak memory (targets: 10k and the nested spec under
   1 s, 100k under 10 s, growth about linear).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SPEC = ROOT / "specs" / "alexnet_lecture.arch"

TORCH_ALEXNET = """
import torch
from torch import nn
m = nn.Sequential(
    nn.Conv2d(3, 96, 11, 4), nn.ReLU(), nn.MaxPool2d(3, 2),
    nn.Conv2d(96, 256, 5), nn.ReLU(), nn.MaxPool2d(3, 2),
    nn.Conv2d(256, 384, 3), nn.ReLU(), nn.Conv2d(384, 384, 3), nn.ReLU(),
    nn.Conv2d(384, 256, 3), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
    nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
assert sum(p.numel() for p in m.parameters()) == 28_823_912
"""

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
import gen_specs, archc
text = getattr(gen_specs, {fn!r})({n})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
result = archc.compile_text(text, "bench.arch")
dt = time.perf_counter() - t
assert result.network is not None, result.render()[:2000]
print(json.dumps({{"seconds": dt, "layers": len(result.network.graph.nodes),
                   "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "base_mb": base / 1024}}))
"""


# Measure as users run: with .pyc files. (This workplace sets PYTHONDONTWRITEBYTECODE,
# which makes every run recompile archc's own sources: about 20 ms more.)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(cmd: list[str], runs: int) -> float:
    """Median whole-process wall time of a command, in seconds."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def startup(runs: int) -> None:
    archc = str(Path(PY).parent / "archc")
    base_cmd = [PY, "-c", "import lark, pydantic"]
    check_cmd = [archc, "check", str(SPEC)]
    wall(check_cmd, 2)  # warm the lark grammar cache and the .pyc files
    # interleave the two so that machine noise hits both alike
    base, check = [], []
    for _ in range(runs):
        base.append(wall(base_cmd, 1))
        check.append(wall(check_cmd, 1))
    b, c = statistics.median(base), statistics.median(check)
    print(f"1. start-up (median of {runs}, whole process)")
    print(f"   python -c 'import lark, pydantic'        {b * 1000:7.1f} ms")
    print(f"   archc check specs/alexnet_lecture.arch   {c * 1000:7.1f} ms   ratio {c / b:.2f}x (target <= 2x)")
    try:
        t = wall([PY, "-c", TORCH_ALEXNET], max(3, runs // 4))
        print(f"   torch: import, build AlexNet, count     {t * 1000:7.1f} ms   archc is {t / c:.1f}x faster")
    except subprocess.CalledProcessError:
        print("   (torch not installed: no comparison)")


def imports() -> None:
    out = subprocess.run(
        [PY, "-X", "importtime", "-m", "archc", "check", str(SPEC)],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    heavy = sorted(
        {
            line.rsplit("|", 1)[-1].strip()
            for line in out.splitlines()
            if line.rsplit("|", 1)[-1].strip().split(".")[0] in ("torch", "onnx", "onnxruntime", "numpy")
        }
    )
    modules = len(out.splitlines())
    print(f"2. imports of `archc check`: {modules} modules; heavy ones: {heavy or 'none'}")


def scaling(quick: bool) -> None:
    cases = [("flat_spec", 1_000), ("flat_spec", 10_000)]
    if not quick:
        cases.append(("flat_spec", 100_000))
    cases += [("nested_calls_spec", 1_000), ("many_calls_spec", 1_000)]
    print("3. parse + elaborate + analyse, fresh process each")
    print(f"   {'spec':30} {'layers':>8} {'seconds':>8} {'us/layer':>9} {'peak MB':>8} {'+MB':>6}")
    for fn, n in cases:
        code = CHILD.format(bench=str(ROOT / "bench"), fn=fn, n=n)
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=tmp, check=True)
        r = json.loads(out.stdout)
        label = f"{fn}({n:,})"
        print(
            f"   {label:30} {r['layers']:8,} {r['seconds']:8.3f} {r['seconds'] / r['layers'] * 1e6:9.1f}"
            f" {r['peak_mb']:8.1f} {r['peak_mb'] - r['base_mb']:6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    startup(7 if args.quick else 21)
    imports()
    scaling(args.quick)


if __name__ == "__main__":
    main()
