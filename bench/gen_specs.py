"""Generate large specs for the scaling benchmarks (not committed as files: made on demand)."""

from __future__ import annotations


def flat_spec(layers: int) -> str:
    """`layers` layers in sequence: conv/batchnorm/relu triples on a small input."""
    lines = ["network Big", "input 32x32x16"]
    kinds = ("conv K=16 F=3 P=1 bias=false", "batchnorm", "relu")
    for i in range(layers):
        lines.append(kinds[i % 3])
    lines.append("expect output = 32x32x16")
    return "\n".join(lines) + "\n"


def nested_calls_spec(depth: int) -> str:
    """A chain of `depth` blocks, each calling the one before: 1,000 nested block calls."""
    lines = ["network Deep", "input 8x8x4", "block B0 { conv K=4 F=3 P=1; relu }"]
    for i in range(1, depth):
        lines.append(f"block B{i}(K=4) {{ B{i - 1}; conv K=K F=1 }}")
    lines.append(f"top: B{depth - 1}")
    return "\n".join(lines) + "\n"


def many_calls_spec(calls: int) -> str:
    """`calls` block calls in sequence (ResNet-style residual blocks)."""
    lines = [
        "input 16x16x8",
        "block Basic(K) {",
        "  residual { conv K=K F=3 P=1 bias=false; batchnorm; relu; conv K=K F=3 P=1 bias=false; batchnorm }",
        "  relu",
        "}",
        f"body: repeat {calls} {{ Basic K=8 }}",
    ]
    return "\n".join(lines) + "\n"


def blocks_spec(layers: int) -> str:
    """About `layers` layers, all inside block calls, repeats, residuals and concats.

    A `Unit` (12 layers) holds a residual and a concat and calls `ConvBN` twice; ten
    units make one stage, a `repeat`. Every 12 layers open three scopes (the repeat
    copy that is the unit, two `ConvBN` calls), the shape of a ResNet or Inception
    spec at scale, where `archc summary` was once quadratic in the number of scopes.
    """
    lines = [
        "network Blocks",
        "input 16x16x8",
        "block ConvBN(K) { conv K=K F=3 P=1 bias=false; batchnorm; relu }",
        "block Unit(K) {",
        "  residual { ConvBN K=K; conv K=K F=3 P=1 bias=false; batchnorm }",
        "  relu",
        "  concat { branch { ConvBN K=K//2 } branch { conv K=K//2 F=1 } }",
        "}",
    ]
    units = max(1, layers // 12)
    for stage, first in enumerate(range(0, units, 10), start=1):
        lines.append(f"stage{stage}: repeat {min(10, units - first)} {{ Unit K=8 }}")
    lines.append("expect output = 16x16x8")
    return "\n".join(lines) + "\n"
