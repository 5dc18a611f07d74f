"""Contract v2 benchmarks (issue 8), side by side in one run (a script, not a test).

    .venv/bin/python bench/bench_v2.py [--quick]

1. `archc check` of every zoo spec in one process: specs per second (the
   specs parsed, elaborated and analysed from their files, after one untimed
   pass), and the whole-process `archc check specs/` wall time. Start-up:
   `archc check specs/m5.arch` (a v2 spec) against `python -c "import lark,
   pydantic"`, interleaved (target: at most 2x).
2. onnxruntime throughput on archc's ONNX of efficientnet_b0, convnext_tiny
   and r3d_18 against `torch.onnx.export` of the module archc generates for
   the same spec, at the same weights, batch 1 and 8, on sessions made once
   and run in alternating rounds (target: archc / torch at least 1.0x each).
   This machine is shared: wall times vary by 10-50% with other tenants'
   load, so the median and the best run are given, and the CPU time
   onnxruntime's threads spent (process time, which another tenant's load
   does not add to; idle threads do not spin). The script also says whether
   onnxruntime's optimised graphs of the two have the same ops.
   Both graphs are written at archc's default opset (20); the exporter is
   torch's TorchScript one (`dynamo=False`: the dynamo exporter needs
   onnxscript, which this environment lacks).
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
PY = sys.executable
# As users run it, with .pyc files (this workplace sets PYTHONDONTWRITEBYTECODE; bench_core.py does the same).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
THROUGHPUT = ("efficientnet_b0", "convnext_tiny", "r3d_18")


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=ROOT)
    return time.perf_counter() - t


def bench_check(runs: int) -> None:
    import archc

    specs = sorted(SPECS.glob("*.arch"))
    for spec in specs:  # untimed: the grammar's tables and every module loaded
        archc.compile_file(spec)
    t = time.perf_counter()
    passes = 3
    for _ in range(passes):
        results = [archc.compile_file(spec) for spec in specs]
    dt = (time.perf_counter() - t) / passes
    layers = sum(len(r.network.graph.nodes) for r in results if r.network is not None)
    assert all(r.network is not None for r in results)
    print(f"1. archc check of the zoo in one process ({len(specs)} specs, {layers:,} layers), mean of {passes} passes")
    print(f"   {len(specs) / dt:8.1f} specs/s   ({dt * 1000:.0f} ms a pass, {dt / layers * 1e6:.0f} us/layer)")
    archc_cli = str(Path(PY).parent / "archc")
    whole = statistics.median(_wall([archc_cli, "check", "--strict", "specs"]) for _ in range(3))
    print(f"   `archc check --strict specs/`, whole process: {whole * 1000:.0f} ms (median of 3)")
    base_cmd, check_cmd = [PY, "-c", "import lark, pydantic"], [archc_cli, "check", str(SPECS / "m5.arch")]
    _wall(check_cmd)
    base, check = [], []
    for _ in range(runs):  # interleaved, so that machine noise hits both alike
        base.append(_wall(base_cmd))
        check.append(_wall(check_cmd))
    b, c = statistics.median(base), statistics.median(check)
    print(f"   start-up, median of {runs}: python -c 'import lark, pydantic' {b * 1000:.1f} ms,")
    print(f"   archc check specs/m5.arch {c * 1000:.1f} ms: ratio {c / b:.2f}x (target <= 2x)")


def _export(module, shape: tuple[int, ...], path: Path) -> None:
    import torch

    torch.onnx.export(
        module,
        (torch.randn(1, *shape),),
        str(path),
        dynamo=False,
        opset_version=20,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
    )


def _timed(fn: Any) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process's threads: onnxruntime's pool) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _ops_after_optimisation(model: bytes | str, tmp: Path, label: str) -> dict[str, int]:
    """The op counts of a graph as onnxruntime runs it (after its graph optimisations)."""
    import collections

    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp / f"{label}.optimised.onnx")
    ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(opts.optimized_model_filepath, load_external_data=False).graph
    return dict(collections.Counter(n.op_type for n in graph.node))


def _session(model: bytes | str) -> Any:
    """A session as `archc run` makes one (all graph optimisations), whose idle threads do not spin:
    two sessions alternate here, and one's spinning pool would slow the other's runs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def bench_throughput(tmp: Path, budget: float) -> None:
    import numpy as np
    import torch

    import archc
    from archc.backends.onnx.runtime import Prepared
    from archc.backends.weights import make_weights

    print(f"2. onnxruntime on CPU ({os.cpu_count()} cores): archc's graph vs torch.onnx.export of the generated")
    print("   module, same weights. The two run in alternating rounds (which goes first alternates too),")
    print(f"   about {budget:.0f} s of runs per row. Per run: wall time (median and best) and the CPU time")
    print("   onnxruntime's threads spent (median; other tenants' load does not count in it).")
    print("   ratio = torch's time / archc's: above 1.0, archc's graph is the faster")
    print(
        f"   {'spec':16} {'batch':>5} {'runs':>4} {'archc wall ms':>15} {'torch wall ms':>15} {'CPU ms':>15}"
        f" {'img/s':>6} {'ratio wall':>11} {'CPU':>5}"
    )
    print(f"   {'':27} {'median':>7} {'best':>7} {'median':>7} {'best':>7} {'archc':>7} {'torch':>7} {'':6} {'med':>5} {'best':>5}")
    ratios: list[tuple[float, float, float]] = []
    for stem in THROUGHPUT:
        net = archc.load(SPECS / f"{stem}.arch")
        shape = net.graph.input_shape.nchw()
        weights = make_weights(net.analysis, seed=0)
        ours = Prepared.from_analysis(net.analysis, weights=weights)
        module = net.to_torch()
        module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        module.eval()
        path = tmp / f"{stem}.onnx"
        _export(module, shape, path)
        models = {"archc": ours.model, "torch": str(path)}
        sessions = {label: _session(m) for label, m in models.items()}
        x = np.random.default_rng(0).standard_normal((2, *shape), dtype=np.float32)
        outs = [s.run(None, {"input": x})[0] for s in sessions.values()]
        err = float(np.abs(outs[0] - outs[1]).max() / np.abs(outs[1]).max())
        assert err < 1e-4, f"{stem}: the two graphs disagree ({err:.1e})"
        same = _ops_after_optimisation(models["archc"], tmp, "a") == _ops_after_optimisation(models["torch"], tmp, "t")
        for batch in (1, 8):
            x = np.random.default_rng(1).standard_normal((batch, *shape), dtype=np.float32)
            single = min(_timed(lambda s=s, x=x: s.run(None, {"input": x}))[0] for s in sessions.values())  # warm-up
            rounds = max(3, min(40, int(budget / (2 * single))))
            wall: dict[str, list[float]] = {label: [] for label in sessions}
            cpu: dict[str, list[float]] = {label: [] for label in sessions}
            order = list(sessions)
            for _ in range(rounds):
                for label in order:
                    w, c = _timed(lambda sess=sessions[label], x=x: sess.run(None, {"input": x}))
                    wall[label].append(w)
                    cpu[label].append(c)
                order.reverse()
            med = {label: statistics.median(ts) for label, ts in wall.items()}
            best = {label: min(ts) for label, ts in wall.items()}
            cpu_med = {label: statistics.median(ts) for label, ts in cpu.items()}
            ratio = (med["torch"] / med["archc"], best["torch"] / best["archc"], cpu_med["torch"] / cpu_med["archc"])
            ratios.append(ratio)
            print(
                f"   {stem:16} {batch:5} {rounds:4} {med['archc'] * 1e3:7.1f} {best['archc'] * 1e3:7.1f}"
                f" {med['torch'] * 1e3:7.1f} {best['torch'] * 1e3:7.1f} {cpu_med['archc'] * 1e3:7.1f}"
                f" {cpu_med['torch'] * 1e3:7.1f} {batch / best['archc']:6.1f} {ratio[0]:4.2f}x {ratio[1]:4.2f}x {ratio[2]:4.2f}x"
            )
        print(f"   {'':16} outputs agree to {err:.1e}; after onnxruntime's optimisations the two graphs have "
              f"{'the same' if same else 'different'} ops")
    for i, what in enumerate(("median wall", "best wall", "median CPU")):
        print(f"   lowest ratio, {what}: {min(r[i] for r in ratios):.2f}x (target >= 1.0x each)")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    bench_check(7 if args.quick else 21)
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as d:
        bench_throughput(Path(d), 10 if args.quick else 40)


if __name__ == "__main__":
    main()
