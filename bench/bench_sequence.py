"""Sequence-model benchmarks, side by side in one run (a script, not a test).

    .venv/bin/python bench/bench_sequence.py [--quick] [--forms]

(a) onnxruntime throughput on archc's ONNX against `torch.onnx.export` of the same
    generated PyTorch module at the same weights: GPT-2 small at T=128 (the zoo
    spec with `input 128 tokens`; its 1024-row position table kept) and ViT-B/16,
    batch 1 and 8, both sessions with onnxruntime's default optimisations
    (ORT_ENABLE_ALL), timed in interleaved rounds: wall and CPU time with the
    default threads, and CPU time with one thread (the graph's work, which a
    shared machine's load does not add to). Target: at least 1.0x. Then
    which fused operators onnxruntime made of each graph (from a profiled run):
    whether it fused the attention (com.microsoft Attention, MultiHeadAttention,
    GroupQueryAttention), the layer norms, the GELUs, the scaled MatMuls.
    `--forms` instead: GPT-2's attention block as archc lowers it beside the
    other forms worth trying (`attention_forms`), one thread.
(b) ONNX compile of GPT-2 small (T=1024, 124,439,808 params, 498 MB of float32
    weights), whole processes: `archc compile` against a process that imports
    torch, builds archc's generated module and runs `torch.onnx.export` on it.
    Target: archc at least 5x faster (wall and CPU time, interleaved); its peak
    RSS (VmHWM) at most 2x the weights' bytes. The files are written to a
    temporary directory and deleted.
(c) `archc check specs/llama3_8b.arch` (8,030,261,248 params), whole process:
    target under 0.5 s; its peak RSS next to a check of a 2-layer spec (memory
    does not grow with the parameter count: no weight is allocated).

The exporter is torch's TorchScript one (`dynamo=False`): the dynamo exporter
needs onnxscript, which this environment lacks. Figures: RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_onnx import PEAK, run_child

ROOT = Path(__file__).resolve().parent.parent
GPT2 = ROOT / "specs" / "gpt2_small.arch"
VIT = ROOT / "specs" / "vit_b_16.arch"
LLAMA3 = ROOT / "specs" / "llama3_8b.arch"
FUSED_ATTENTION = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"}

# The torch side of (b): import torch, build archc's generated module, export it.
TORCH_EXPORT = """
import sys, torch
namespace = {}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), namespace)
model = namespace[sys.argv[2]]().eval()
ids = torch.zeros(1, int(sys.argv[4]), dtype=torch.long)
torch.onnx.export(model, (ids,), sys.argv[3], dynamo=False, opset_version=20,
                  input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}})
"""


def gpt2_at(tokens: int) -> str:
    """The zoo's GPT-2 small spec read at another context length (the position table stays 1024 rows)."""
    text = GPT2.read_text(encoding="utf-8")
    text = text.replace("input 1024 tokens", f"input {tokens} tokens")
    return re.sub(r"(->|output =) 1024x", rf"\1 {tokens}x", text)


# --- (a) throughput -----------------------------------------------------------------------
def _exported(net, weights, path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from archc.analysis.tensors import tied_keys
    from archc.ir import INPUT

    module = net.to_torch()
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    state.update({alias: state[owner] for alias, owner in tied_keys(net.analysis).items()})
    module.load_state_dict(state, strict=True)
    module.eval()
    dims = (1, *net.analysis.physical(INPUT))
    example = torch.zeros(dims, dtype=torch.long) if _ids(net) else torch.randn(dims)
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=20,
                          input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}})


def _ids(net) -> bool:  # type: ignore[no-untyped-def]
    from archc.ir import Layout

    return bool(net.graph.input_shape.layout is Layout.TOKENS)


def _input(net, batch: int):  # type: ignore[no-untyped-def]
    import numpy as np

    from archc.ir import INPUT

    rng = np.random.default_rng(0)
    dims = (batch, *net.analysis.physical(INPUT))
    if _ids(net):
        vocabulary = min(n.attrs["V"] for n in net.graph.nodes if n.kind == "embedding")
        return rng.integers(0, vocabulary, dims, dtype=np.int64)
    return rng.standard_normal(dims, dtype=np.float32)


def fused_ops(model: str | bytes, tmp: Path, x) -> collections.Counter[str]:  # type: ignore[no-untyped-def]
    """The operators onnxruntime ran (after its optimisations), from one profiled run."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp / "profile")
    opts.log_severity_level = 3
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    session.run(None, {"input": x})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    ops: collections.Counter[str] = collections.Counter()
    seen = set()
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and "op_name" in args and e["name"].endswith("_kernel_time") and e["name"] not in seen:
            seen.add(e["name"])
            ops[args["op_name"]] += 1
    return ops


def _session(model: bytes | str, threads: int = 0):  # type: ignore[no-untyped-def]
    """A session as `archc run` makes one (ORT_ENABLE_ALL), whose idle threads do not spin: two
    sessions alternate here, and one's spinning pool would slow the other's runs (as in bench_v2).
    `threads=1`: one intra-op thread, whose CPU time is the graph's work, whatever the load."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _timed_cpu(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Wall seconds and CPU seconds (this process's threads: onnxruntime's pool) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _spread(xs: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """median [first quartile - third quartile]"""
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return f"{q[1] * scale:7.{digits}f} [{q[0] * scale:.{digits}f}-{q[2] * scale:.{digits}f}]"


def _race(sessions: dict, x, rounds: int, per: int) -> dict[str, list[tuple[float, float]]]:  # type: ignore[type-arg,no-untyped-def]
    """`rounds` rounds; in each, every session runs `per` timed runs in turn, after one untimed run
    (back in cache after the other graph's block) when `per` > 1 (a run of a second or more is not
    helped by it); which goes first alternates from round to round."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sessions}
    names = list(sessions)
    for sess in sessions.values():  # untimed: onnxruntime sizes its buffers for this batch
        sess.run(None, {"input": x})
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            sess = sessions[name]
            if per > 1:
                sess.run(None, {"input": x})
            for _ in range(per):
                times[name].append(_timed_cpu(lambda sess=sess: sess.run(None, {"input": x})))
    return times


def bench_throughput(tmp: Path, rounds: int) -> None:
    import numpy as np

    import archc
    from archc.backends.onnx.generate import build_model
    from archc.backends.weights import make_weights

    print(f"(a) onnxruntime, CPU ({os.cpu_count()} cores), archc's ONNX vs torch.onnx.export of the same module, same weights.")
    print("    Both graphs run in alternating rounds (which goes first alternates too). Per run: wall time and the CPU")
    print("    time onnxruntime's threads spent, with onnxruntime's default threads; then the CPU time with one thread")
    print("    (the graph's work: other tenants' load adds nothing to it). median [quartiles], ms a run.")
    print("    ratio = torch's time / archc's (above 1.0 archc's graph is the faster); paired: the median of the")
    print("    per-round ratios, which cancels load that changes between rounds")
    print("    graph                 batch  runs        wall ms (default threads)           CPU ms       CPU ms (1 thread)")
    for label, net in (
        ("GPT-2 small, T=128", archc.loads(gpt2_at(128), "gpt2_small_128.arch")),
        ("ViT-B/16", archc.load(VIT)),
    ):
        weights = make_weights(net.analysis, seed=0)
        ours = build_model(net.analysis, weights=weights).SerializeToString()
        path = tmp / "exported.onnx"
        _exported(net, weights, path)
        del weights
        x = _input(net, 1)
        models = {"archc": ours, "torch.onnx.export": str(path)}
        sessions = {name: _session(m) for name, m in models.items()}
        outs = [s.run(None, {"input": x})[0] for s in sessions.values()]
        err = float(np.abs(outs[0] - outs[1]).max() / np.abs(outs[1]).max())
        print(f"    {label} ({net.params:,} params, {net.macs / 1e9:.2f} GMACs a sample; the two graphs agree to {err:.1e})")
        for batch in (1, 8):
            xb = _input(net, batch)
            per = 3 if batch == 1 else 1
            default = _race(sessions, xb, rounds, per)
            single = _race({name: _session(m, threads=1) for name, m in models.items()}, xb, rounds, per)
            for name in models:
                wall = [w for w, _ in default[name]]
                cpu = [c for _, c in default[name]]
                one = [c for _, c in single[name]]
                print(f"    {name:21} {batch:5}  {len(wall):4}  {_spread(wall, 1e3):>28} {_spread(cpu, 1e3):>24} {_spread(one, 1e3):>24}")
            ratios = []
            for kind, runs, i in (("wall", default, 0), ("CPU", default, 1), ("CPU, 1 thread", single, 1)):
                a, t = [r[i] for r in runs["archc"]], [r[i] for r in runs["torch.onnx.export"]]
                paired = [tt / aa for aa, tt in zip(a, t, strict=True)]
                ratios.append(f"{kind} {statistics.median(t) / statistics.median(a):.2f}x (paired {_spread(paired, digits=2).strip()})")
            print(f"    ratio at batch {batch}: " + "; ".join(ratios) + "  (target >= 1.0x)")
        for name, model in models.items():
            ops = fused_ops(model, tmp, x)
            attention = sorted(op for op in ops if op in FUSED_ATTENTION)
            fused = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()) if op not in _PLAIN)
            print(f"    {name:20} attention fused: {'yes (' + ', '.join(attention) + ')' if attention else 'no'};"
                  f" {sum(ops.values())} kernels; fused or contrib ops: {fused or 'none'}")
        del sessions
        path.unlink()


_PLAIN = {  # standard ONNX ops, to pick out what onnxruntime fused
    "Add", "MatMul", "Reshape", "Transpose", "Split", "Softmax", "Gather", "Concat", "Shape", "Slice",
    "Expand", "Unsqueeze", "Mul", "Div", "Sqrt", "Cast", "Equal", "Where", "Trilu", "Gemm", "Conv", "Pow",
    "ReduceMean", "Sub", "Neg", "Constant", "ConstantOfShape", "Range", "ReorderOutput", "ReorderInput",
    "Identity", "Squeeze",
}


# --- forms of attention --------------------------------------------------------------------
def attention_forms(length: int = 128, width: int = 768, heads: int = 12) -> dict[str, bytes]:
    """GPT-2's causal attention block (q, k, v and o projections included) as archc lowers it, and
    the same block, same weights, in the other forms worth trying on onnxruntime's CPU provider."""
    import numpy as np
    import onnx
    from onnx import helper

    import archc
    from archc.backends.onnx.generate import build_model

    net = archc.loads(f"input {length}x{width}\na: attention {heads} causal=true\n", "block.arch")
    base = build_model(net.analysis, weights="random")
    nodes = list(base.graph.node)
    head, tail = nodes[:9], nodes[-3:]  # the q, k, v projections (Transpose, MatMul, Add each); o's
    assert [n.output[0] for n in head[2::3]] == ["a/q", "a/k", "a/v"] and tail[1].input[0] == "a/heads_joined"
    dim = width // heads

    def variant(middle: list, opset: int = 20, extra: tuple = (), keep_tail: bool = True) -> bytes:  # type: ignore[type-arg]
        model = onnx.ModelProto()
        model.CopyFrom(base)
        del model.graph.node[:]
        model.graph.node.extend(middle + tail if keep_tail else middle)
        model.graph.initializer.extend(extra)
        del model.opset_import[:]
        model.opset_import.append(helper.make_opsetid("", opset))
        model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
        onnx.checker.check_model(model, full_check=True)
        return model.SerializeToString()

    ints = lambda name, values: onnx.numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    core = nodes[9:-3]  # heads split, scores, mask, Softmax, weighted sum, heads joined
    fused = [
        *(n for n in head if n.op_type == "Transpose"),
        helper.make_node("Concat", [f"a.{n}.weight/T" for n in "qkv"], ["qkv.weight"], axis=1),
        helper.make_node("Concat", [f"a.{n}.bias" for n in "qkv"], ["qkv.bias"], axis=0),
        helper.make_node("MatMul", ["input", "qkv.weight"], ["qkv/matmul"]),
        helper.make_node("Add", ["qkv/matmul", "qkv.bias"], ["qkv"]),
        helper.make_node("Reshape", ["qkv", "/qkv/shape"], ["qkv/heads"]),
        helper.make_node("Transpose", ["qkv/heads"], ["qkv/t"], perm=[2, 0, 3, 1, 4]),  # [3, batch, heads, L, dim]
        helper.make_node("Split", ["qkv/t"], ["q3", "k3", "v3"], axis=0, num_outputs=3),
        *(helper.make_node("Squeeze", [f"{n}3", "/axis0"], [f"a/{n}_t4"]) for n in "qkv"),
        helper.make_node("Transpose", ["a/k_t4"], ["a/k_t"], perm=[0, 1, 3, 2]),
        helper.make_node("Identity", ["a/q_t4"], ["a/q_t"]),
        helper.make_node("Identity", ["a/v_t4"], ["a/v_t"]),
        *(n for n in core if n.op_type not in ("Reshape", "Transpose") or n.output[0] in ("a/joined", "a/heads_joined")),
    ]
    k_like_q = [*head, *(n for n in core if n.output[0] != "a/k_t")]
    at = next(i for i, n in enumerate(k_like_q) if n.output[0] == "a/scores")
    k_like_q[at:at] = [
        helper.make_node("Transpose", ["a/k/heads"], ["a/k_t4"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["a/k_t4"], ["a/k_t"], perm=[0, 1, 3, 2]),
    ]
    gemm = [helper.make_node("Reshape", ["input", "/rows"], ["input/rows"])]  # [batch*L, C]: Gemm takes 2-D
    for n in "qkvo":
        reads, made = ("input/rows", f"a/{n}") if n != "o" else ("a/heads_joined/rows", "output")
        if n == "o":
            gemm += [*core, helper.make_node("Reshape", ["a/heads_joined", "/rows"], ["a/heads_joined/rows"])]
        gemm.append(helper.make_node("Gemm", [reads, f"a.{n}.weight", f"a.{n}.bias"], [f"{made}/rows"], transB=1))
        gemm.append(helper.make_node("Reshape", [f"{made}/rows", "/seq"], [made]))
    standard = [*head, helper.make_node("Attention", ["a/q", "a/k", "a/v"], ["a/heads_joined"], is_causal=1,
                                        q_num_heads=heads, kv_num_heads=heads)]
    return {
        "archc (three MatMuls, Transposes, FusedMatMul, Add mask)": base.SerializeToString(),
        "k transposed as q is, then [0,1,3,2]": variant(k_like_q),
        "one q,k,v MatMul + Split": variant(fused, extra=(ints("/qkv/shape", [0, length, 3, heads, dim]), ints("/axis0", [0]))),
        "q, k, v, o as Reshape + Gemm (bias inside)": variant(
            gemm, extra=(ints("/rows", [-1, width]), ints("/seq", [-1, length, width])), keep_tail=False
        ),
        "opset-23 Attention op": variant(standard, opset=23),
    }


def bench_forms(rounds: int) -> None:
    import numpy as np

    print("forms of GPT-2's attention block (projections included; batch 8, T=128), onnxruntime CPU, one thread,")
    print("CPU ms a run, median [quartiles], interleaved; ratio = archc's form / this one (above 1.0 this one is faster)")
    forms = attention_forms()
    x = np.random.default_rng(0).standard_normal((8, 128, 768), dtype=np.float32)
    sessions = {name: _session(model, threads=1) for name, model in forms.items()}
    outs = {name: s.run(None, {"input": x})[0] for name, s in sessions.items()}
    times = _race(sessions, x, rounds, 3)
    first = next(iter(forms))
    base = statistics.median(c for _, c in times[first])
    for name, runs in times.items():
        cpu = [c for _, c in runs]
        err = float(np.abs(outs[name] - outs[first]).max() / np.abs(outs[first]).max())
        print(f"    {name:58} {_spread(cpu, 1e3):>24}  {base / statistics.median(cpu):.3f}x  (error vs archc's {err:.0e})")


# --- (b) compile ----------------------------------------------------------------------------
def peak_run(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and the process's own peak RSS (VmHWM) of one `archc` run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: archc {' '.join(argv)}\n{proc.stderr}")
    return wall, int(proc.stderr.strip().splitlines()[-1])


def run_cpu(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, from the child's rusage) of one child process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{err}")
    return wall, usage.ru_utime + usage.ru_stime


def bench_compile(tmp: Path, runs: int) -> None:
    import archc

    net = archc.load(GPT2)
    weight_bytes = 4 * net.params
    source = tmp / "gpt2.py"
    archc_onnx, torch_onnx = tmp / "archc.onnx", tmp / "torch.onnx"
    subprocess.run([sys.executable, "-m", "archc", "compile", str(GPT2), "-o", str(source)], cwd=ROOT, check=True)
    ours = [sys.executable, "-m", "archc", "compile", str(GPT2), "-o", str(archc_onnx)]
    theirs = [sys.executable, "-c", TORCH_EXPORT, str(source), "GPT2_Small", str(torch_onnx), "1024"]
    run_child(ours), run_child(theirs)  # untimed: .pyc files written, page cache warm for both
    a_runs, t_runs = [], []
    for i in range(runs):  # interleaved, which goes first alternating
        for side in ("archc", "torch") if i % 2 == 0 else ("torch", "archc"):
            if side == "archc":
                a_runs.append(run_cpu(ours))
                archc_onnx.unlink()
            else:
                t_runs.append(run_cpu(theirs))
                torch_onnx.unlink()
    _, rss = peak_run(["compile", str(GPT2), "-o", str(archc_onnx)])
    size = archc_onnx.stat().st_size
    archc_onnx.unlink()
    floor = [run_cpu([sys.executable, "-c", "import archc.backends.onnx.generate"]) for _ in range(runs)]
    print(f"(b) GPT-2 small ({net.params:,} params, {weight_bytes / 1e6:.0f} MB of float32 weights) -> ONNX, whole process,"
          f" median of {runs} (interleaved)")
    print("                         wall s (each run)                 CPU s (user + system; each run)")
    for name, got in (("archc compile", a_runs), ("torch.onnx.export", t_runs)):
        walls, cpus = [w for w, _ in got], [c for _, c in got]
        print(f"    {name:20} {statistics.median(walls):7.2f}  ({', '.join(f'{x:.2f}' for x in walls)})"
              f"   {statistics.median(cpus):7.2f}  ({', '.join(f'{x:.2f}' for x in cpus)})")
    wall_ratio = statistics.median(w for w, _ in t_runs) / statistics.median(w for w, _ in a_runs)
    cpu_ratio = statistics.median(c for _, c in t_runs) / statistics.median(c for _, c in a_runs)
    print(f"    speed-up             {wall_ratio:7.1f}x by wall time, {cpu_ratio:.1f}x by CPU time  (target >= 5x;"
          " torch's side: import torch, build, export)")
    print(f"    of archc's CPU time, importing archc's ONNX back-end (archc, numpy, onnx):"
          f" {statistics.median(c for _, c in floor):.2f} s")
    print(f"    archc compile peak RSS {rss / 1e6:5.0f} MB = {rss / weight_bytes:.2f}x the weights (target <= 2x);"
          f" file {size / 1e6:.0f} MB (the tied weight once)")


# --- (c) check ------------------------------------------------------------------------------
def bench_check(tmp: Path, runs: int) -> None:
    tiny = tmp / "tiny.arch"
    tiny.write_text("input 16 tokens\nembedding V=100 D=8\nrepeat 2 { attention 2 causal=true }\n", encoding="utf-8")
    argv = [sys.executable, "-m", "archc", "check", str(LLAMA3)]
    run_child(argv)
    checks, floors = [], []
    for _ in range(runs):  # interleaved
        checks.append(run_cpu(argv))
        floors.append(run_cpu([sys.executable, "-c", "import lark, pydantic"]))
    _, rss = peak_run(["check", str(LLAMA3)])
    _, tiny_rss = peak_run(["check", str(tiny)])
    times, cpu = [w for w, _ in checks], [c for _, c in checks]
    print(f"(c) archc check specs/llama3_8b.arch (8,030,261,248 params), whole process, median of {runs}")
    print(f"    archc check          {statistics.median(times):7.3f} s  (min {min(times):.3f}; target < 0.5 s);"
          f" CPU {statistics.median(cpu):.3f} s")
    print(f"    import lark, pydantic {statistics.median(w for w, _ in floors):6.3f} s  (the start-up floor);"
          f" CPU {statistics.median(c for _, c in floors):.3f} s")
    print(f"    peak RSS             {rss / 1e6:7.1f} MB  (a 2-layer spec: {tiny_rss / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--forms", action="store_true", help="only: forms of the attention block (about 2 min)")
    args = parser.parse_args()
    if args.forms:
        bench_forms(4 if args.quick else 12)
        return
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as d:
        tmp = Path(d)
        bench_check(tmp, 5 if args.quick else 15)
        bench_compile(tmp, 1 if args.quick else 3)
        bench_throughput(tmp, 3 if args.quick else 8)


if __name__ == "__main__":
    main()
