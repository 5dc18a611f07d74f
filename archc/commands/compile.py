"""`archc compile SPEC -o OUT`: write PyTorch source (.py) or an ONNX model (.onnx).

The target comes from OUT's suffix unless `--to` says; `-o /dev/null` without
`--to` compiles to every target installed (PyTorch source, and ONNX with the
`[onnx]` extra) and writes nothing. ONNX models carry
weights: `random` (PyTorch's default init, seeded), `zeros`, or a `.pt`/`.pth`/
`.safetensors` state_dict, checked against the spec. Output is written
atomically (an external-data file too, for models over 1.8 GB); nothing is
written when anything fails. A model over `--max-size`, or over the free
space where it goes, is refused before a byte is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from archc.api import Network
from archc.commands.common import add_max_layers, load_or_report, non_negative_int
from archc.diagnostics import ArchError, shown
from archc.limits import DEFAULT_MAX_SIZE, parse_size, size_text

TARGETS = {".py": "torch", ".onnx": "onnx"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("compile", help="generate PyTorch source or an ONNX model", description=__doc__)
    p.add_argument("spec", metavar="SPEC", help="the .arch spec")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write (.py or .onnx)")
    p.add_argument("--to", choices=sorted(set(TARGETS.values())), help="target (default: from OUT's suffix)")
    p.add_argument("--weights", default=None, metavar="random|zeros|FILE", help="ONNX weights (default random)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed for random weights (default 0)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20: the newest every supported onnxruntime runs)")
    p.add_argument(
        "--max-size",
        type=parse_size,
        default=DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help=f"refuse a model over SIZE (e.g. 500M, 20G; default {size_text(DEFAULT_MAX_SIZE)})",
    )
    add_max_layers(p)
    p.set_defaults(run=run, parser=p)


def target_of(out: Path, to: str | None) -> str:
    if to:
        return to
    target = TARGETS.get(out.suffix.lower())
    if target is None:
        raise ArchError(f"cannot tell the target from {out.name!r}: name it .py or .onnx, or pass --to torch|onnx")
    return target


def is_devnull(out: Path) -> bool:
    """`-o /dev/null` (or what the platform calls it): compile, write nothing."""
    import os

    try:
        return os.path.exists(os.devnull) and os.path.samefile(out, os.devnull)
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if args.to is None and is_devnull(out):
        # "-o /dev/null just compiles": every target, to find what either back-end refuses
        import importlib.util

        targets = ["torch"] + (["onnx"] if all(importlib.util.find_spec(m) for m in ("onnx", "numpy")) else [])
    else:
        try:
            targets = [target_of(out, args.to)]
        except ArchError as exc:  # `-o x.txt`: a usage error (exit 2), as the README says
            args.parser.error(str(exc))
    if targets == ["torch"] and (args.weights is not None or args.opset is not None):
        raise ArchError("--weights and --opset apply to --to onnx; PyTorch source carries no weights")
    if args.weights == "":
        raise ArchError("--weights needs random, zeros or a file (.pt, .pth, .safetensors)")
    from archc.files import refuse_overwriting

    weights_file = [args.weights] if args.weights not in (None, "random", "zeros") else []
    refuse_overwriting(out, args.spec, *weights_file)
    net = load_or_report(args.spec, max_layers=args.max_layers)
    if net is None:
        return 1
    done = [_torch(net, out) if target == "torch" else _onnx(net, out, args, weights_file) for target in targets]
    if is_devnull(out):
        missing = "" if "onnx" in targets or args.to else "; ONNX not compiled: pip install 'archc[onnx]'"
        print(f"compiled {shown(args.spec)} ({net.name}, {net.params:,} params) to {' and '.join(done)}, wrote nothing{missing}")
    return 0


def _torch(net: Network, out: Path) -> str:
    from archc.files import check_output, write_atomic

    try:
        source = net.torch_source()
    except ModuleNotFoundError as e:
        raise ArchError(f"the PyTorch generator is not available ({e.name} is missing)") from e
    check_output(out)
    write_atomic(out, source.encode("utf-8"))
    if not is_devnull(out):
        print(f"wrote {shown(str(out))} ({net.name}, PyTorch source, {net.params:,} params)")
    return "PyTorch source"


def _onnx(net: Network, out: Path, args: argparse.Namespace, weights_file: list[str]) -> str:
    from archc.commands.deps import require

    require("compile --to onnx", "onnx", "numpy")
    from archc.backends.onnx.generate import write_model
    from archc.backends.onnx.opsets import default_opset
    from archc.backends.weights import make_weights
    from archc.files import check_output
    from archc.limits import check_free_space, check_size

    # Before a byte is read or written: a 45-byte spec can describe terabytes of weights.
    nbytes = model_bytes(net)
    check_size(f"{net.name}'s weights", nbytes, args.max_size)
    # A weight file is read and checked before the output: its errors come first.
    weights = make_weights(net.analysis, args.weights) if weights_file else args.weights or "random"
    check_output(out)
    check_free_space(out, nbytes)
    with net.rendering():
        written = write_model(net.analysis, out, weights=weights, seed=args.seed, opset=args.opset)
    opset = f"ONNX opset {args.opset or default_opset()}"
    if not is_devnull(out):
        size = sum(p.stat().st_size for p in written)
        extra = f" + external data {shown(written[1].name)}" if len(written) > 1 else ""
        print(f"wrote {shown(str(out))}{extra} ({net.name}, {opset}, {net.params:,} params, {size / 1e6:.1f} MB)")
    return opset


def model_bytes(net: Network) -> int:
    """The bytes of float32 tensors an ONNX model of `net` carries (its constants aside)."""
    from archc.analysis.tensors import tensor_specs

    return 4 * sum(spec.numel for spec in tensor_specs(net.analysis))
