"""`archc run SPEC|MODEL.onnx`: run a network on onnxruntime and report its speed.

A `.arch` spec is compiled in memory (seeded random weights by default); an
`.onnx` file runs as it is. Prints the provider that actually ran, the output
shape, latency p50/p90, throughput and achieved GFLOP/s (2 x MACs x batch /
p50 latency). `--check` also runs the PyTorch module at the same weights and
fails when the max relative error exceeds 1e-4, or either output holds NaN or
infinity; it draws the tensors PyTorch starts at a constant (batchnorm's running
statistics, norm scales and shifts) at random, so that no layer is the identity,
and compares a final softmax's input as well as the output. The model runs in a child process, stopped after `--timeout`
seconds; an `.onnx` file is validated (ONNX checker, shape inference,
declared sizes against `--max-size`) before onnxruntime sees it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from pathlib import Path
from typing import Any

from archc.commands.common import (
    add_max_layers,
    load_or_report,
    non_negative_int,
    positive_int,
    positive_seconds,
)
from archc.diagnostics import shown
from archc.files import why_not_a_spec
from archc.limits import DEFAULT_MAX_SIZE, DEFAULT_TIMEOUT, parse_size, size_text

PROVIDERS = ("auto", "cuda", "cpu")  # archc.backends.onnx.runtime.PROVIDERS, without importing onnxruntime here


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a spec or .onnx model on onnxruntime and time it", description=__doc__)
    p.add_argument("source", metavar="SPEC|MODEL.onnx", help="a .arch spec or an .onnx model")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    p.add_argument("--provider", choices=PROVIDERS, default="auto", help="execution provider (default auto)")
    p.add_argument("--warmup", type=non_negative_int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--repeat", type=positive_int, default=20, help="timed runs (default 20)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the input and random weights (default 0)")
    p.add_argument("--weights", default="random", metavar="random|zeros|FILE", help="weights for a spec")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset for a spec (default 20)")
    p.add_argument("--check", action="store_true", help="compare with the PyTorch module (spec only)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"stop the model after SECONDS (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--max-size",
        type=parse_size,
        default=DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help=f"refuse weights, a model or an input over SIZE (e.g. 500M, 20G; default {size_text(DEFAULT_MAX_SIZE)})",
    )
    add_max_layers(p)
    p.set_defaults(run=run, parser=p)


RUNS = (".arch", ".onnx")  # what `run` takes: a spec, or a model


def run(args: argparse.Namespace) -> int:
    if Path(args.source).suffix.lower() not in RUNS:
        # `archc run model.py` read Python as a spec: some 60 syntax errors, none of them the mistake
        args.parser.error(
            f"run takes a .arch spec or an .onnx model; {shown(args.source)} is neither"
            + (" (generated PyTorch source runs with python)" if args.source.endswith(".py") else "")
        )
    from archc.commands.deps import require

    require("run", "onnx", "onnxruntime", "numpy")
    from archc.backends.onnx.runtime import Prepared, RunError, check_input_size, run_isolated

    source = Path(args.source)
    net = None  # a spec's Network, to render what a back-end refuses in it

    if source.suffix.lower() == ".onnx":
        given = [opt for opt, on in (("--weights", args.weights != "random"), ("--opset", args.opset is not None)) if on]
        # options that cannot apply to a model are usage errors (exit 2), refused before anything runs
        if given:
            args.parser.error(f"{' and '.join(given)} apply to a .arch spec; {shown(source.name)} is a model with its own weights and opset")
        if args.check:  # an .onnx file has no PyTorch module
            args.parser.error("--check needs a .arch spec: an .onnx file has no PyTorch module to compare with")
        problem = why_not_a_spec(source)
        if problem is not None or not source.is_file():
            raise RunError(f"{shown(str(source))}: {'no such file' if problem in (None, 'no such file or directory') else problem}")
        prepared = Prepared.from_file(source, args.max_size)
    else:
        net = load_or_report(args.source, max_layers=args.max_layers)
        if net is None:
            return 1
        with net.rendering():  # what ONNX's opset or PyTorch's names (--check) cannot take, shown in the spec
            prepared = Prepared.from_analysis(
                net.analysis, args.weights, args.seed, args.opset, args.max_size, check=args.check
            )
    check_input_size(prepared, args.batch, shown(str(source)), args.max_size)
    with contextlib.ExitStack() as stack:
        if net is not None:
            stack.enter_context(net.rendering())
        report = run_isolated(
            prepared, shown(str(source)), args.timeout,
            batch=args.batch, provider=args.provider, warmup=args.warmup, repeat=args.repeat, seed=args.seed, check=args.check,
        )  # fmt: skip
    # NaN or infinity in either output is an error of inf: it fails, and prints as null in JSON
    failed = report.max_rel_error is not None and not report.max_rel_error <= _tolerance()
    if args.json:
        data = report.as_json()
        data["source"] = str(source)
        data["check_passed"] = None if report.max_rel_error is None else not failed
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        print(_text(report, str(source)))
    return 1 if failed else 0


def _tolerance() -> float:
    from archc.backends.onnx.runtime import CHECK_TOLERANCE

    return CHECK_TOLERANCE


def _text(r: Any, source: str) -> str:
    lat = r.latency_ms
    shape = "x".join(str(d) for d in r.output_shape)
    lines = [
        f"{shown(r.network)} ({shown(source)}), batch {r.batch}" + (f", opset {r.opset}" if r.opset else ""),
        f"provider    {r.provider}" + (f"  ({r.note})" if r.note else ""),
        f"output      {shape}  (batch first{'; NCHW' if len(r.output_shape) == 4 else ''})",
        f"latency     p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f} ms  "
        f"({r.repeat} run{'s' if r.repeat != 1 else ''} after {r.warmup} warm-up)",
        f"throughput  {r.throughput_ips:,.1f} images/s",
    ]
    if r.gflops is None:
        lines.append("compute     MACs unknown (no shapes for every Conv/Gemm), GFLOP/s unknown")
    else:
        from archc.analysis import si

        lines.append(f"compute     {si(r.macs_per_image)} MACs/image -> {r.gflops:,.1f} GFLOP/s achieved")
    if r.max_rel_error is not None and math.isinf(r.max_rel_error):
        lines.append("check       FAILED: NaN or infinity in the outputs of onnxruntime or PyTorch")
    elif r.max_rel_error is not None:
        verdict = "ok" if r.max_rel_error <= _tolerance() else "FAILED"
        where = f", output and {shown(r.compared)} before the final softmax" if r.compared else ""
        lines.append(
            f"check       max relative error vs PyTorch {r.max_rel_error:.2e} ({verdict}, tolerance {_tolerance():g}{where})"
        )
    return "\n".join(lines)
