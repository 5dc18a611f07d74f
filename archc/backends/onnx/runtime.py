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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from archc.analysis import Analysis
from archc.analysis.tensors import tied_keys
from archc.backends import TORCH_INSTALL
from archc.backends.onnx.generate import build_model, save_model
from archc.backends.onnx.io import EXTERNAL_THRESHOLD
from archc.backends.weights import make_weights, varied
from archc.diagnostics import ArchError, shown
from archc.ir import INPUT
from archc.limits import DEFAULT_MAX_SIZE, DEFAULT_TIMEOUT, check_size

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
    onnx_model: onnx.ModelProto | None = None  # an .onnx file's graph (no external data), for size checks
    vocabulary: int | None = None  # token ids are drawn below this (the smallest table they index)
    compared: str | None = None  # --check: the layer whose output is compared too (a final softmax's input)

    @classmethod
    def from_analysis(
        cls,
        analysis: Analysis,
        weights: Any = "random",
        seed: int = 0,
        opset: int | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        check: bool = False,
    ) -> Prepared:
        """A spec's network, lowered with these weights (raises `TargetError` for what ONNX cannot express).

        For `check` (comparing with PyTorch), random weights have their
        constant-initialised tensors redrawn (`archc.backends.weights.varied`:
        a fresh batchnorm is the identity, so it would prove nothing), and a
        final softmax's input is an output of the model too, compared as well: a
        near-uniform softmax hides any error in the logits under it.
        """
        from archc.analysis.tensors import tensor_specs

        # before a weight is made: a 45-byte spec can ask for terabytes
        check_size(f"{analysis.graph.network}'s weights", 4 * sum(s.numel for s in tensor_specs(analysis)), max_size)
        arrays = make_weights(analysis, weights, seed)
        if check and isinstance(weights, str) and weights == "random":
            arrays = varied(analysis, arrays, seed)
        compared = before_final_softmax(analysis) if check else None
        model = build_model(analysis, weights=arrays, seed=seed, opset=opset, outputs=[compared] if compared else [])
        used_opset = model.opset_import[0].version
        name, macs = analysis.graph.network, analysis.totals.macs
        vocabulary = onnx_vocabulary(model)
        if sum(a.nbytes for a in arrays.values()) <= EXTERNAL_THRESHOLD:
            serialised = model.SerializeToString()
            return cls(serialised, name, macs, analysis, arrays, used_opset, vocabulary=vocabulary, compared=compared)
        keep = tempfile.TemporaryDirectory(prefix="archc-run-")  # protobuf caps in-memory models at 2 GiB
        path = Path(keep.name) / f"{name}.onnx"
        save_model(model, path)
        return cls(str(path), name, macs, analysis, arrays, used_opset, keep, vocabulary=vocabulary, compared=compared)

    @classmethod
    def from_file(cls, path: Path, max_size: int = DEFAULT_MAX_SIZE) -> Prepared:
        """An `.onnx` file, validated before onnxruntime sees it (see `validate_model`)."""
        where = shown(str(path))
        check_size(f"{where}: the model file", path.stat().st_size, max_size)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:
            raise RunError(f"{where}: not a readable ONNX model: {_first_line(e)}") from e
        validate_model(model, path, max_size)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        return cls(str(path), model.graph.name or path.stem, onnx_macs(model), opset=opset, onnx_model=model, vocabulary=onnx_vocabulary(model))


def before_final_softmax(analysis: Analysis) -> str | None:
    """The layer a final softmax reads (`fc1` in `... fc 1000; softmax`), or None.

    >>> import archc
    >>> before_final_softmax(archc.loads("input 8\\nfc1: fc 4\\nsoftmax").analysis)
    'fc1'
    """
    graph = analysis.graph
    last = next((n for n in graph.nodes if n.name == graph.output), None)
    if last is None or last.kind != "softmax" or last.inputs[0] == INPUT:
        return None
    return last.inputs[0]


def onnx_vocabulary(model: onnx.ModelProto) -> int | None:
    """The rows of the smallest table that a Gather indexes with the graph's input (token ids), if any."""
    names = {i.name for i in model.graph.input}
    tables = {t.name: t.dims[0] for t in model.graph.initializer if t.dims}
    rows = [
        tables[n.input[0]]
        for n in model.graph.node
        if n.op_type == "Gather" and len(n.input) == 2 and n.input[1] in names and n.input[0] in tables
    ]
    return min(rows) if rows else None



def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return shown((lines[0] if lines else type(e).__name__)[:300])


def _tensor_bytes(dims: Iterable[int], elem_type: int) -> int:
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except Exception:  # noqa: BLE001 - a type numpy has no name for (strings, 4-bit): count a byte
        itemsize = 1
    return math.prod(dims) * itemsize


def validate_model(model: onnx.ModelProto, path: Path, max_size: int = DEFAULT_MAX_SIZE) -> None:
    """Refuse an untrusted model before a session is made from it.

    onnxruntime trusts its input: a Conv with one input raised IndexError, a
    declared `[batch, 100000, 100000, 100]` MemoryError, and some shapes kill
    the process. So: the ONNX checker, strict shape inference, one float input
    of known rank with no negative dimension, tensor outputs, and initializers
    whose declared sizes fit `max_size`.
    """
    where = shown(str(path))
    graph = model.graph
    initialized = {t.name for t in graph.initializer}
    for inp in graph.input:
        if inp.name in initialized:
            continue
        t = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or not t.HasField("shape") or not t.shape.dim:
            raise RunError(f"{where}: input {inp.name!r} has no tensor shape; archc reads models whose inputs have a known rank")
        negative = [d.dim_value for d in t.shape.dim if d.HasField("dim_value") and d.dim_value < 0]
        if negative:
            raise RunError(f"{where}: input {inp.name!r} has a negative dimension ({negative[0]})")
    for out in graph.output:
        if not out.type.HasField("tensor_type"):
            raise RunError(f"{where}: output {out.name!r} is not a tensor; archc run reads tensor outputs")
    declared = 0
    for t in graph.initializer:
        if any(d < 0 for d in t.dims):
            raise RunError(f"{where}: initializer {t.name!r} has a negative dimension")
        declared += _tensor_bytes(t.dims, t.data_type)
    check_size(f"{where}: the model's initializers", declared, max_size)
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:
        raise RunError(f"{where}: not a valid ONNX model: {_first_line(e)}") from e


def check_input_size(prepared: Prepared, batch: int, where: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
    """Refuse a batch whose input, or any value of known shape, would not fit `max_size`.

    `where` names the model in the message (its file)."""
    model = prepared.onnx_model
    if model is None:
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - validated already; sizes then stay unknown
        return
    g = inferred.graph
    for v in [*g.input, *g.value_info, *g.output]:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if dims and dims[0] is None:
            dims[0] = batch
        if dims and all(d is not None for d in dims):
            check_size(f"{where}: value {v.name!r} at batch {batch}", _tensor_bytes(dims, t.elem_type), max_size)  # type: ignore[arg-type]


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
    # fatal only: errors come back as exceptions, which archc reports escaped (onnxruntime's
    # own log would print an untrusted model's names raw); provider fallbacks we report ourselves
    opts.log_severity_level = 4
    chosen: list[str | tuple[str, dict[str, str]]] = [
        (p, {"use_tf32": "0"}) if p == CUDA and full_float32 else p for p in providers
    ]
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=chosen)
    except Exception as e:
        raise RunError(f"onnxruntime could not load the model: {e}") from e


def make_input(
    session: ort.InferenceSession, batch: int, seed: int, vocabulary: int | None = None
) -> tuple[str, np.ndarray]:
    """Seeded input for the session's single input; symbolic dim 0 becomes `batch`.

    Standard-normal floats, or for int64 token ids, ids drawn uniformly below `vocabulary`.
    """
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise RunError(f"the model takes {len(inputs)} inputs ({names}); archc run feeds models of one input")
    (inp,) = inputs
    ids = inp.type == "tensor(int64)"
    if inp.type != "tensor(float)" and not (ids and vocabulary):
        raise RunError(f"input {inp.name!r} is {inp.type}; archc run feeds float32, and int64 token ids to an embedding")
    dims = list(inp.shape)
    if not dims:
        raise RunError(f"input {inp.name!r} has no shape; archc run feeds tensors of known rank")
    if isinstance(dims[0], int) and dims[0] != batch:
        raise RunError(f"the model's batch dimension is fixed at {dims[0]}; use --batch {dims[0]}")
    dims[0] = batch
    if not all(isinstance(d, int) for d in dims):
        raise RunError(f"input {inp.name!r} has symbolic dimensions {inp.shape} other than the batch")
    rng = np.random.default_rng(seed)
    if ids:
        assert vocabulary is not None
        return inp.name, rng.integers(0, vocabulary, dims, dtype=np.int64)
    return inp.name, rng.standard_normal(dims, dtype=np.float32)


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
    compared: str | None = None  # --check: a layer compared besides the output (a final softmax's input)

    def as_json(self) -> dict[str, Any]:
        """The report as JSON values: a float that is not finite (an error of inf) becomes null."""
        return {k: _finite(v) for k, v in asdict(self).items()}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def run_isolated(
    prepared: Prepared, where: str, timeout: float = DEFAULT_TIMEOUT, **options: Any
) -> Report:
    """`benchmark(prepared, **options)` with onnxruntime in a child process, stopped after `timeout` seconds.

    An untrusted model can hang onnxruntime (a Loop of 2^62 trips) or kill it
    (SIGFPE in a kernel): either way the child goes, and archc reports a
    located error instead of hanging or dying. The child is forked (so it
    shares the prepared model without copying it, and must be the first to
    start CUDA, which the CLI's process never does); the report comes back, and
    for `check` the input and output, which the PyTorch module (trusted code,
    and one whose thread pool a forked child could inherit locked) then runs
    on here.
    """
    check = bool(options.get("check"))
    import multiprocessing
    import signal

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        import faulthandler

        faulthandler.disable()  # a crash is the parent's to report, in one line
        try:
            report, x, outputs = measure(prepared, **options)
            outcome: tuple[str, Any] = ("ok", (report, x, outputs) if check else (report, None, None))
        except ArchError as e:
            outcome = ("error", str(e))
        except BaseException as e:  # noqa: BLE001 - reported by the parent, which decides
            outcome = ("error", f"onnxruntime failed: {type(e).__name__}: {_first_line(e)}")
        send.send(outcome)

    process = context.Process(target=child, daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise RunError(
                f"{where}: the model did not finish within {timeout:g} s (--timeout); stopped it"
            )
        try:
            kind, value = receive.recv()
        except EOFError:  # the child died without a word: a crash inside onnxruntime
            process.join(5)
            code = process.exitcode
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
            raise RunError(f"{where}: onnxruntime crashed ({how}) while running the model") from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receive.close()
    if kind == "error":
        raise RunError(f"{where}: {value}")
    report, x, outputs = value
    if check:
        report.max_rel_error = torch_error(prepared, x, outputs)
    assert isinstance(report, Report)
    return report


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
    report, x, outputs = measure(prepared, batch, provider, warmup, repeat, seed, check)
    if check:
        report.max_rel_error = torch_error(prepared, x, outputs)
    return report


def measure(
    prepared: Prepared,
    batch: int = 1,
    provider: str = "auto",
    warmup: int = 3,
    repeat: int = 20,
    seed: int = 0,
    check: bool = False,
) -> tuple[Report, np.ndarray, list[np.ndarray]]:
    """`benchmark` on onnxruntime alone: the report (no error yet), the input and the first output
    (with `check`, every output: `Prepared.compared`'s value follows).

    `check` also turns TF32 off, so that the outputs can be compared with PyTorch's.
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
    name, x = make_input(session, batch, seed, prepared.vocabulary)
    outputs = session.run(None, {name: x})
    output = outputs[0]
    if not isinstance(output, np.ndarray):
        raise RunError(f"the model's first output is a {type(output).__name__}, not a tensor")
    step = _timer(session, name, x, actual[0] == CUDA)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    p50, p90 = (max(float(v), 1e-9) for v in np.percentile(times, [50, 90]))  # a clock tick of 0 divides nothing
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
        compared=prepared.compared,
    )
    return report, x, outputs if check else [output]


def torch_error(prepared: Prepared, x: np.ndarray, outputs: list[np.ndarray]) -> float:
    """max|y_ort - y_torch| / max|y_torch|: error relative to the output's scale.

    (Element-wise relative error is meaningless where outputs cross zero.)
    `outputs` are onnxruntime's: the output, then `prepared.compared`'s value
    when there is one, which is compared too (the larger error counts).
    """
    if prepared.analysis is None or prepared.weights is None:
        raise RunError("--check needs a .arch spec: an .onnx file has no PyTorch module to compare with")
    try:
        import torch
    except ImportError as e:
        raise RunError(f"--check needs PyTorch: {TORCH_INSTALL}") from e
    from archc.backends.torch.generate import build_module

    module = build_module(prepared.analysis)
    try:
        state = {k: torch.from_numpy(v) for k, v in prepared.weights.items()}
        state.update({alias: state[owner] for alias, owner in tied_keys(prepared.analysis).items()})
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RunError(f"the PyTorch module does not accept the ONNX model's weights: {e}") from e
    module.eval()
    seen: list[np.ndarray] = []
    if prepared.compared is not None:  # the final softmax's input, as its module receives it
        softmax = next(n for n in prepared.analysis.graph.nodes if n.name == prepared.analysis.graph.output)
        module.get_submodule(softmax.name).register_forward_hook(lambda m, args, out: seen.append(args[0].numpy()))
    with torch.no_grad():
        expected = [module(torch.from_numpy(x)).numpy(), *seen]
    errors = [_relative_error(got, want) for got, want in zip(outputs, expected, strict=True)]
    return max(errors)


def _relative_error(output: np.ndarray, expected: np.ndarray) -> float:
    if expected.shape != output.shape:
        raise RunError(f"PyTorch gives shape {list(expected.shape)}, onnxruntime {list(output.shape)}")
    if not (np.isfinite(output).all() and np.isfinite(expected).all()):
        return math.inf  # NaN or infinity anywhere fails the check, whatever the other side says
    scale = max(float(np.abs(expected).max()), float(np.finfo(np.float32).tiny))
    return float(np.abs(output - expected).max()) / scale
