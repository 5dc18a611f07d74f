"""Benchmarks of the compiler core (issue: the compiler core), side by side in one run.

    python bench/bench_core.py                   # about 4 minutes on 2 cores
    python bench/bench_core.py --quick           # fewer repetitions, no 100k specs
    python bench/bench_core.py --only-commands   # part 4 alone

1. Start-up: whole-process wall time of `archc check specs/alexnet_lecture.arch`
   against `python -c "import lark, pydantic"` (target: at most 2x), and, for
   context, against what people do instead: import torch, build the AlexNet
   module and count its parameters.
2. `archc check` imports no torch, onnx, onnxruntime or numpy (-X importtime).
3. Scaling: parse + elaborate + analyse of generated 1k / 10k / 100k-layer
   specs, 1,000 nested block calls and 1,000 sequential block calls, each in a
   fresh process: time and peak memory (targets: 10k and the nested spec under
   1 s, 100k under 10 s, growth about linear).
4. The commands as users run them: whole-process wall time of `archc check`,
   `archc summary` and `archc summary --json` on 1k / 10k / 100k-layer specs,
   flat and block-heavy (`gen_specs.flat_spec`, `gen_specs.blocks_spec`), in
   the same run as the start-up floor `python -c "import lark, pydantic"`.
   us/layer is the time above that floor per layer: flat across sizes when the
   command is linear. Targets: 100k-layer `check` and `summary --json` under
   10 s each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def floor(runs: int) -> float:
    """The start-up floor: median whole-process time of `python -c "import lark, pydantic"`."""
    return wall([PY, "-c", "import lark, pydantic"], runs)


def timed(cmd: list[str], limit: float) -> tuple[float, float] | str:
    """Whole-process wall time and CPU time (user + system) of one run, or why there are none.

    The CPU time is what the process itself used: on a shared machine it varies far
    less than the wall time, which waits while other tenants run.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, timeout=limit)
    except subprocess.TimeoutExpired:
        return f"> {limit:.0f}"
    except subprocess.CalledProcessError as exc:
        return f"exit {exc.returncode}"
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


COMMANDS = (("check", ["check"]), ("summary", ["summary"]), ("summary --json", ["summary", "--json"]))


def commands(quick: bool, limit: float) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import gen_specs

    archc = str(Path(PY).parent / "archc")
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    base = floor(9)
    print(f"4. whole process, one run each (limit {limit:.0f} s); start-up floor (import lark, pydantic) {base:.3f} s")
    print("   wall s, CPU s (user + system), and us/layer: wall time above the floor per layer")
    head = "".join(f" {name:>26}" for name, _ in COMMANDS)
    units = "".join(f" {'wall s':>8} {'CPU s':>7} {'us/layer':>9}" for _ in COMMANDS)
    print(f"   {'':22} {'':>8}{head}")
    print(f"   {'spec':22} {'layers':>8}{units}")
    for fn in ("flat_spec", "blocks_spec"):
        for n in sizes:
            text = getattr(gen_specs, fn)(n)
            layers = _layers(text)
            cells = []
            with tempfile.TemporaryDirectory() as tmp:
                spec = Path(tmp, "bench.arch")
                spec.write_text(text, encoding="utf-8")
                for _, args in COMMANDS:
                    t = timed([archc, *args, str(spec)], limit)
                    if isinstance(t, str):
                        cells.append(f" {t:>8} {'':>7} {'':>9}")
                    else:
                        wall, cpu = t
                        cells.append(f" {wall:8.2f} {cpu:7.2f} {(wall - base) / layers * 1e6:9.1f}")
            label = f"{fn}({n:,})"
            print(f"   {label:22} {layers:8,}{''.join(cells)}")


def _layers(text: str) -> int:
    import archc

    result = archc.compile_text(text, "bench.arch")
    assert result.network is not None, result.render()[:2000]
    return len(result.network.graph.nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only-commands", action="store_true", help="run part 4 alone")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds before a command run is cut off")
    args = parser.parse_args()
    if not args.only_commands:
        startup(7 if args.quick else 21)
        imports()
        scaling(args.quick)
    commands(args.quick, args.limit)


if __name__ == "__main__":
    main()
