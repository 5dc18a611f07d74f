"""`archc import MODEL -o OUT [--weights FILE]`: a Caffe prototxt or an ONNX model as an `.arch` spec.

The format comes from MODEL's suffix: `.prototxt` (Caffe's text format: the
network, no weights) or `.onnx`. The spec written is formatted as `archc fmt`
writes it, checks clean, asserts its totals (`expect params`, `expect macs`)
and names its source in a comment. `-o -` writes it to stdout. `--weights
FILE` writes the model's tensors as `.safetensors` under the spec's state_dict
names, for `archc compile OUT --weights FILE -o back.onnx`. Both outputs are
written atomically, and only once everything has been read and checked:
nothing is written on failure. What a model holds that archc cannot express is
an error naming where (file:line:col, or the ONNX node), exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from archc.diagnostics import ArchError, shown
from archc.limits import DEFAULT_MAX_SIZE, parse_size, size_text

if TYPE_CHECKING:
    import numpy

    from archc.importers.common import Imported

# suffix -> (format, module, function): a module is imported only when its format is asked for
FORMATS = {
    ".prototxt": ("Caffe prototxt", "archc.importers.caffe", "import_prototxt"),
    ".onnx": ("ONNX", "archc.importers.onnx", "import_onnx"),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", help="turn a Caffe prototxt or an ONNX model into a spec", description=__doc__)
    p.add_argument("model", metavar="MODEL", help="the model: a .prototxt (Caffe) or an .onnx file")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the .arch spec to write ('-': stdout)")
    p.add_argument("--weights", default=None, metavar="FILE", help="also write the weights (.safetensors; ONNX only)")
    p.add_argument(
        "--max-size",
        type=parse_size,
        default=DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help=f"refuse a model whose weights declare over SIZE (e.g. 20G; default {size_text(DEFAULT_MAX_SIZE)})",
    )
    p.add_argument(
        "--length",
        type=int,
        default=None,
        metavar="L",
        help="import an ONNX model whose sequence length was left open at export at L positions",
    )
    p.set_defaults(run=run)


def importer(model: Path) -> Callable[..., Imported]:
    """The function that imports `model`, chosen by its suffix."""
    import importlib

    found = FORMATS.get(model.suffix.lower())
    if found is None:
        raise ArchError(
            f"cannot tell the format of {shown(str(model))} from its name: archc imports Caffe .prototxt "
            "and .onnx files"
        )
    what, module, function = found
    if module.endswith(".onnx"):
        from archc.commands.deps import require

        require("import", "onnx", "numpy")
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise ArchError(f"importing {what} models is not available in this version of archc") from None
    imports: Callable[..., Imported] = getattr(loaded, function)
    return imports


def run(args: argparse.Namespace) -> int:
    from archc.files import check_output, refuse_overwriting
    from archc.importers.common import ImportFailure, finish

    model = Path(args.model)
    imports = importer(model)
    to_stdout = args.output == "-"
    weights_out = Path(args.weights) if args.weights is not None else None
    if weights_out is not None:
        if model.suffix.lower() == ".prototxt":
            raise ArchError(
                "--weights: a .prototxt holds no weights (Caffe keeps them in a .caffemodel, which archc does not read)"
            )
        if weights_out.suffix.lower() != ".safetensors":
            raise ArchError(f"--weights {shown(args.weights)}: name the file .safetensors")
        if not to_stdout:
            refuse_overwriting(weights_out, args.output)
    if args.length is not None and model.suffix.lower() != ".onnx":
        raise ArchError("--length: only an ONNX model leaves its length open (a prototxt states its input shape)")
    # Before any work: the outputs are not the input, and their directories exist.
    out = None if to_stdout else check_output(args.output, model)
    if weights_out is not None:
        weights_out = check_output(weights_out, model)
    from archc.files import why_not_a_spec

    problem = why_not_a_spec(model)  # a FIFO blocked the read forever; /proc files, link loops
    if problem is None and model.is_dir():
        problem = "a directory, not a model file"
    if problem is not None:
        raise ArchError(f"{shown(str(model))}: {problem}")
    try:
        # the message of a model over the limit says to raise --max-size
        imported = imports(model, args.max_size, args.length) if model.suffix.lower() == ".onnx" else imports(model)
    except ImportFailure as exc:
        from archc.commands.common import use_color

        print(exc.render(color=use_color(sys.stderr)), file=sys.stderr)
        return 1
    spec = finish(imported)
    _write(spec, out, imported, weights_out)
    if out is not None:
        lines = spec.count("\n")
        print(f"wrote {shown(str(out))} ({lines} lines) from {shown(str(model))}", file=sys.stderr)
    if weights_out is not None:
        n = len(imported.weights or {})
        print(f"wrote {shown(str(weights_out))} ({n} tensors)", file=sys.stderr)
    return 0


def _write(spec: str, out: Path | None, imported: Imported, weights_out: Path | None) -> None:
    """The weights (if asked for), then the spec: each to a temporary renamed into place at the end."""
    from archc.files import atomic_path, write_atomic

    if weights_out is not None:
        if imported.weights is None:
            raise ArchError(f"{shown(imported.source)} carries no weights to write")
        from archc.commands.deps import require

        require("import --weights", "numpy")
        weights = imported.weights
        with atomic_path(weights_out) as tmp:
            _save_safetensors(weights, tmp)
            _write_spec(spec, out, write_atomic)
        return
    _write_spec(spec, out, write_atomic)


def _write_spec(spec: str, out: Path | None, write_atomic: Callable[[Path, bytes], None]) -> None:
    if out is None:
        sys.stdout.write(spec)
        sys.stdout.flush()
    else:
        write_atomic(out, spec.encode("utf-8"))


def _save_safetensors(weights: dict[str, numpy.ndarray], path: Path) -> None:
    """The tensors as a `.safetensors` file, each written from its own buffer.

    `safetensors.numpy.save_file` copies every tensor to bytes first: for an
    imported model whose weights are views of the memory-mapped ONNX file,
    that doubled the peak memory. The format is an 8-byte little-endian header
    length, a JSON header (`{name: {dtype, shape, data_offsets}}`, padded with
    spaces to 8 bytes), then the data in the header's order.
    """
    import json

    import numpy as np

    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(weights.items())}
    header: dict[str, object] = {}
    offset = 0
    for name, arr in arrays.items():
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for arr in arrays.values():
            f.write(arr.astype("<f4", copy=False).data.cast("B"))
