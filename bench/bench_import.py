"""`archc import` of a 100 MB ONNX model (issue 13): whole-process time and peak memory.

    .venv/bin/python bench/bench_import.py [--spec specs/resnet50.arch] [--runs 5]

The model is ResNet-50 as archc's ONNX back-end writes it (102.5 MB, weights
inside the file, as `torch.onnx.export` writes a model under 2 GB), made in a
temporary folder. Each run is `python -m archc import model.onnx -o net.arch
--weights net.safetensors` in a fresh process: wall time, CPU time (user +
system, which another tenant's load on a shared machine does not add to) and
peak resident memory (the child's ru_maxrss), against the file's size.
Targets: under 2 s, and peak memory under 2x the file.

A baseline shows what a process costs before it reads the model: `python -c
"import onnx, numpy"` (the modules the importer needs).
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
PY = sys.executable
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "resnet50.arch"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archc-bench-import-") as tmp:
        model = Path(tmp) / "model.onnx"
        subprocess.run([PY, "-m", "archc", "compile", args.spec, "-o", str(model)], env=ENV, check=True,
                       stdout=subprocess.DEVNULL)
        size = model.stat().st_size
        cmd = [PY, "-m", "archc", "import", str(model), "-o", str(Path(tmp) / "net.arch"),
               "--weights", str(Path(tmp) / "net.safetensors")]
        baseline = [PY, "-c", "import onnx, numpy"]
        timed(cmd)  # untimed: .pyc files and the page cache
        runs, bases = [], []
        for _ in range(args.runs):
            runs.append(timed(cmd))
            bases.append(timed(baseline))
        print(f"model: {Path(args.spec).name} as ONNX, {size / 1e6:.1f} MB")
        for label, rows in (("archc import", runs), ("import onnx, numpy", bases)):
            wall = [r[0] for r in rows]
            cpu = [r[1] for r in rows]
            rss = max(r[2] for r in rows)
            print(f"{label:>20}: wall median {statistics.median(wall):.2f} s (best {min(wall):.2f}), "
                  f"CPU median {statistics.median(cpu):.2f} s, peak RSS {rss / 1e6:.0f} MB "
                  f"({rss / size:.2f}x the file)")


if __name__ == "__main__":
    main()
