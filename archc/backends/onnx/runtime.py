"""Running a network on onnxruntime: provider choice, seeded input, latency and throughput.

>>> import archc
>>> net = archc.loads("input 8x8x3\\nconv1: conv K=4 F=3\\nfc 2", filename="tiny.arch")
>>> report = benchmark(Prepared.from_analysis(net.analysis), batch=2, provider="cpu", warmup=1, repeat=3)
>>> report.provider, report.output_shape, report.macs_per_image
('CPUExecutionProvider', [2, 2], 4176)

Throughput is images/s at the p50 latency; achieved GFLOP/s is
2 * MACs * batch / p50 latency, with MACs from the IR (or, for an `.onnx`
file, from its Conv and Gemm nodes after shape inference).
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from archc.analysis import Analysis
from archc.backends.onnx.generate import build_model, save_model
from archc.backends.onnx.io import EXTERNAL_THRESHOLD
from archc.backends.weights import make_weights
from archc.diagnostics import ArchError

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
PROVIDERS = ("auto", "cuda", "cpu")
CHECK_TOLERANCE = 1e-4  # max relative error between onnxruntime and PyTorch that --check accepts


class RunError(ArchError):
    """The model could not be run as asked."""


@dataclass
class Prepared:
    """A model ready for onnxruntime: bytes or a path, plus what the report needs."""

    model: bytes | str  # serialised model, or the path of one (external data, .onnx input)
    name: str
    macs_per_image: int | None
    analysis: Analysis | None = None  # the spec's, for --check
    weights: dict[str, np.ndarray] | None = None  # what the ONNX model holds, for --check
    opset: int | None = None
    keep: Any = None  # a TemporaryDirectory holding an external-data model, alive while needed

    @classmethod
    def from_analysis(
        cls, analysis: Analysis, weights: Any = "random", seed: int = 0, opset: int | None = None
    ) -> Prepared:
        """A spec's network, lowered with these weights (raises `TargetError` for what ONNX cannot express)."""
        arrays = make_weights(analysis, weights, seed)
        model = build_model(analysis, weights=arrays, seed=seed, opset=opset)
        used_opset = model.opset_import[0].version
        name, macs = analysis.graph.network, analysis.totals.macs
        if sum(a.nbytes for a in arrays.values()) <= EXTERNAL_THRESHOLD:
            return cls(model.SerializeToString(), name, macs, analysis, arrays, used_opset)
        keep = tempfile.TemporaryDirectory(prefix="archc-run-")  # protobuf caps in-memory models at 2 GiB
        path = Path(keep.name) / f"{name}.onnx"
        save_model(model, path)
        return cls(str(path), name, macs, analysis, arrays, used_opset, keep)

    @classmethod
    def from_file(cls, path: Path) -> Prepared:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:
            raise RunError(f"{path}: not a readable ONNX model: {e}") from e
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        return cls(str(path), model.graph.name or path.stem, onnx_macs(model), opset=opset)


def onnx_macs(model: onnx.ModelProto) -> int | None:
    """MACs per image of the Conv and Gemm nodes (dim 0 is the batch), or None when unknown."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shape inference failing only means "unknown"
        return None
    shapes: dict[str, list[int | None]] = {}
    for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    inits = {t.name: list(t.dims) for t in inferred.graph.initializer}
    total = 0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        w, out = inits.get(node.input[1]) or shapes.get(node.input[1]), shapes.get(node.output[0])
        if not w or not out or any(d is None for d in [*w, *out[1:]]):
            return None
        if node.op_type == "Conv":  # per output element: (C/G) * kh * kw
            total += math.prod(out[1:]) * math.prod(w[1:])  # type: ignore[arg-type]
        else:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            k = w[1] if trans_b else w[0]
            total += math.prod(out[1:]) * k  # type: ignore[arg-type,operator]
    return total


def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* pip packages, where they are installed.

    onnxruntime-gpu finds them on the library path only; `pip install
    'onnxruntime-gpu[cuda,cudnn]'` puts them in site-packages instead, and
    `preload_dlls` (onnxruntime 1.21+) loads them from there. Best effort: where
    they are elsewhere, the provider still finds them the usual way.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
        preload()


def choose_providers(requested: str) -> tuple[list[str], str | None]:
    """Providers to ask onnxruntime for, and a note when auto falls back to CPU."""
    available = ort.get_available_providers()
    if requested == "cpu":
        return [CPU], None
    if CUDA in available:
        _preload_cuda_libraries()
    if requested == "cuda":
        if CUDA not in available:
            raise RunError(
                f"--provider cuda: onnxruntime {ort.__version__} here has no CUDA provider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu instead of onnxruntime"
            )
        return [CUDA, CPU], None
    if CUDA in available:
        return [CUDA, CPU], None
    return [CPU], "CUDA is not available here; fell back to CPU"


def make_session(model: bytes | str, providers: list[str], full_float32: bool = False) -> ort.InferenceSession:
    """A session with graph optimisations on. `full_float32`: no TF32 on the GPU.

    The CUDA provider multiplies in TF32 by default on Ampere and newer (as
    PyTorch's cuDNN convolutions do): on an H200 that left AlexNet and ResNet-50
    about 4e-4 from float32, above `--check`'s 1e-4, so a check runs without it.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: we report provider fallbacks ourselves
    chosen: list[str | tuple[str, dict[str, str]]] = [
        (p, {"use_tf32": "0"}) if p == CUDA and full_float32 else p for p in providers
    ]
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=chosen)
    except Exception as e:
        raise RunError(f"onnxruntime could not load the model: {e}") from e


def make_input(session: ort.InferenceSession, batch: int, seed: int) -> tuple[str, np.ndarray]:
    """Seeded standard-normal input for the session's single input; symbolic dim 0 becomes `batch`."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise RunError(f"the model takes {len(inputs)} inputs ({names}); archc run feeds models of one input")
    (inp,) = inputs
    if inp.type != "tensor(float)":
        raise RunError(f"input {inp.name!r} is {inp.type}; archc run feeds float32 only")
    dims = list(inp.shape)
    if isinstance(dims[0], int) and dims[0] != batch:
        raise RunError(f"the model's batch dimension is fixed at {dims[0]}; use --batch {dims[0]}")
    dims[0] = batch
    if not all(isinstance(d, int) for d in dims):
        raise RunError(f"input {inp.name!r} has symbolic dimensions {inp.shape} other than the batch")
    return inp.name, np.random.default_rng(seed).standard_normal(dims, dtype=np.float32)


@dataclass
class Report:
    network: str
    requested_provider: str
    provider: str  # the provider that actually ran the model
    providers: list[str]
    note: str | None
    batch: int
    output_shape: list[int]
    warmup: int
    repeat: int
    latency_ms: dict[str, float]
    throughput_ips: float
    macs_per_image: int | None
    gflops: float | None
    opset: int | None
    max_rel_error: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _timer(session: ort.InferenceSession, name: str, x: np.ndarray, on_gpu: bool) -> Callable[[], object]:
    """One timed inference step."""
    if not on_gpu:
        return lambda: session.run(None, {name: x})
    # On the GPU, input and output stay on the device, so that we time the model
    # and not host<->device copies (run_with_iobinding waits for the GPU to finish).
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_output(session.get_outputs()[0].name, "cuda")
    return lambda: session.run_with_iobinding(binding)


def benchmark(
    prepared: Prepared,
    batch: int = 1,
    provider: str = "auto",
    warmup: int = 3,
    repeat: int = 20,
    seed: int = 0,
    check: bool = False,
) -> Report:
    """Time `repeat` runs after `warmup` runs on seeded input.

    With `check`, also run the PyTorch module at the same weights on the same
    input and record the max relative error (see `torch_error`).
    """
    if batch < 1 or warmup < 0 or repeat < 1:
        raise RunError("--batch and --repeat must be at least 1, --warmup at least 0")
    providers, note = choose_providers(provider)
    session = make_session(prepared.model, providers, full_float32=check)
    actual = session.get_providers()
    if check and actual[0] == CUDA:
        note = "TF32 off for --check: full float32 on the GPU" + (f"; {note}" if note else "")
    if CUDA in providers and CUDA not in actual:
        if provider == "cuda":
            raise RunError("the CUDA provider is installed but failed to start (is a GPU visible?)")
        note = "the CUDA provider failed to start; fell back to CPU"
    name, x = make_input(session, batch, seed)
    output = session.run(None, {name: x})[0]
    step = _timer(session, name, x, actual[0] == CUDA)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    p50, p90 = (float(v) for v in np.percentile(times, [50, 90]))
    macs = prepared.macs_per_image
    report = Report(
        network=prepared.name,
        requested_provider=provider,
        provider=actual[0],
        providers=actual,
        note=note,
        batch=batch,
        output_shape=list(output.shape),
        warmup=warmup,
        repeat=repeat,
        latency_ms={"p50": p50 * 1e3, "p90": p90 * 1e3, "mean": float(np.mean(times)) * 1e3, "min": min(times) * 1e3},
        throughput_ips=batch / p50,
        macs_per_image=macs,
        gflops=2 * macs * batch / p50 / 1e9 if macs is not None else None,
        opset=prepared.opset,
    )
    if check:
        report.max_rel_error = torch_error(prepared, x, output)
    return report


def torch_error(prepared: Prepared, x: np.ndarray, output: np.ndarray) -> float:
    """max|y_ort - y_torch| / max|y_torch|: error relative to the output's scale.

    (Element-wise relative error is meaningless where outputs cross zero.)
    """
    if prepared.analysis is None or prepared.weights is None:
        raise RunError("--check needs a .arch spec: an .onnx file has no PyTorch module to compare with")
    try:
        import torch
    except ImportError as e:
        raise RunError("--check needs PyTorch (pip install torch)") from e
    from archc.backends.torch.generate import build_module

    module = build_module(prepared.analysis)
    try:
        module.load_state_dict({k: torch.from_numpy(v) for k, v in prepared.weights.items()}, strict=True)
    except RuntimeError as e:
        raise RunError(f"the PyTorch module does not accept the ONNX model's weights: {e}") from e
    module.eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    if expected.shape != output.shape:
        raise RunError(f"PyTorch gives shape {list(expected.shape)}, onnxruntime {list(output.shape)}")
    scale = max(float(np.abs(expected).max()), float(np.finfo(np.float32).tiny))
    return float(np.abs(output - expected).max()) / scale
