"""The CUDA provider path, proven on a machine with a GPU (a script, not a test).

    python bench/gpu_check.py [--out DIR]

Asks onnxruntime which providers it has, then for the lecture's AlexNet,
torchvision's AlexNet and ResNet-50 (seeded random weights): latency,
throughput and GFLOP/s on CUDAExecutionProvider and, for comparison, on the
CPU, at batch 1 and 32; and the CUDA output against the PyTorch module at the
same weights (`archc run --check`'s relative error). Needs onnxruntime-gpu;
torch for the check. Figures go to stdout and, with --out, to gpu.json there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("alexnet_lecture", "alexnet_torchvision", "resnet50")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write gpu.json here")
    args = parser.parse_args()

    import onnxruntime as ort

    import archc
    from archc.backends.onnx.runtime import Prepared, RunError, benchmark

    try:
        gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        gpu = "no nvidia-smi here"
    facts: dict[str, object] = {
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "gpu": gpu,
        "runs": [],
    }
    print(json.dumps({k: v for k, v in facts.items() if k != "runs"}, indent=2), flush=True)
    runs: list[dict[str, object]] = []
    for stem in SPECS:
        net = archc.load(ROOT / "specs" / f"{stem}.arch")
        prepared = Prepared.from_analysis(net.analysis)
        for provider, batch, repeat in (("cuda", 1, 100), ("cuda", 32, 50), ("cpu", 1, 10), ("cpu", 32, 3)):
            try:
                r = benchmark(prepared, batch=batch, provider=provider, warmup=5 if provider == "cuda" else 1, repeat=repeat)
            except RunError as exc:
                print(f"{stem:20} {provider:4} batch {batch:3}: {exc}", flush=True)
                runs.append({"spec": stem, "provider": provider, "batch": batch, "error": str(exc)})
                continue
            row = {
                "spec": stem, "requested": provider, "provider": r.provider, "batch": batch,
                "p50_ms": round(r.latency_ms["p50"], 3), "p90_ms": round(r.latency_ms["p90"], 3),
                "images_per_s": round(r.throughput_ips, 1), "gflops": round(r.gflops or 0, 1), "note": r.note,
            }  # fmt: skip
            runs.append(row)
            print(
                f"{stem:20} {r.provider:26} batch {batch:3}  p50 {r.latency_ms['p50']:8.3f} ms  "
                f"{r.throughput_ips:10.1f} img/s  {r.gflops or 0:9.1f} GFLOP/s" + (f"  ({r.note})" if r.note else ""),
                flush=True,
            )
        try:
            r = benchmark(prepared, batch=3, provider="cuda", warmup=1, repeat=1, check=True)
            print(f"{stem:20} check on {r.provider} ({r.note}): max relative error vs PyTorch {r.max_rel_error:.2e}", flush=True)
            runs.append({"spec": stem, "check_provider": r.provider, "max_rel_error": r.max_rel_error})
        except (RunError, ImportError) as exc:
            print(f"{stem:20} check failed to run: {exc}", flush=True)
    facts["runs"] = runs
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps(facts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
