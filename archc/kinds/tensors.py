"""The learnable tensors (and buffers) a network has, derived from the IR alone.

One list serves every back-end: the PyTorch generator's `state_dict` keys, the
ONNX generator's initializer names, and the weight loader's validation all
come from `tensor_specs`, so they cannot drift apart.

Shapes are PyTorch's: conv weight `[K, C/G, Fh, Fw]`, fc weight `[N, in]`
(inputs in C,H,W order), batchnorm `weight`/`bias`/`running_mean`/
`running_var` of `[C]`. `num_batches_tracked` (a PyTorch bookkeeping buffer)
is accepted when loading and ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the analysis builds on the kinds; only the type points back
    from archc.analysis import Analysis


class Role(StrEnum):
    WEIGHT = "weight"  # learnable, counted in weights
    BIAS = "bias"  # learnable, counted in biases
    BUFFER = "buffer"  # state, not a parameter (batchnorm running statistics)


class Init(StrEnum):
    """PyTorch's default initialisation for each tensor."""

    KAIMING_UNIFORM = "kaiming_uniform"  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)): kaiming_uniform_(a=sqrt(5))
    FAN_IN_UNIFORM = "fan_in_uniform"  # the same bound, for conv/fc biases
    ONES = "ones"
    ZEROS = "zeros"


IGNORED_KEYS_SUFFIXES = (".num_batches_tracked",)


@dataclass(frozen=True)
class TensorSpec:
    name: str  # state_dict key == ONNX initializer name: "layer1.0.conv1.weight"
    layer: str
    shape: tuple[int, ...]
    role: Role
    init: Init
    fan_in: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def bound(self) -> float:
        """The half-width of PyTorch's default uniform init (for the uniform inits)."""
        return 1.0 / math.sqrt(self.fan_in) if self.fan_in > 0 else 0.0


def tensor_specs(analysis: Analysis) -> list[TensorSpec]:
    """Every tensor of the analysed network in forward order.

    >>> import archc
    >>> net = archc.loads("input 8x8x3\\nconv1: conv K=4 F=3\\nbatchnorm\\nfc 2")
    >>> [(t.name, t.shape) for t in tensor_specs(net.analysis)][:3]
    [('conv1.weight', (4, 3, 3, 3)), ('conv1.bias', (4,)), ('batchnorm1.weight', (4,))]
    """
    specs: list[TensorSpec] = []
    for node in analysis.graph.nodes:
        facts = analysis.facts[node.name]
        a = node.attrs
        if node.kind == "conv":
            c = facts.inputs[0].channels
            fh, fw = a["F"]
            fan_in = (c // a["G"]) * fh * fw
            specs.append(
                TensorSpec(f"{node.name}.weight", node.name, (a["K"], c // a["G"], fh, fw), Role.WEIGHT, Init.KAIMING_UNIFORM, fan_in)
            )
            if a["bias"]:
                specs.append(TensorSpec(f"{node.name}.bias", node.name, (a["K"],), Role.BIAS, Init.FAN_IN_UNIFORM, fan_in))
        elif node.kind == "fc":
            n_in = facts.inputs[0].numel
            specs.append(TensorSpec(f"{node.name}.weight", node.name, (a["N"], n_in), Role.WEIGHT, Init.KAIMING_UNIFORM, n_in))
            if a["bias"]:
                specs.append(TensorSpec(f"{node.name}.bias", node.name, (a["N"],), Role.BIAS, Init.FAN_IN_UNIFORM, n_in))
        elif node.kind == "batchnorm":
            c = facts.inputs[0].channels
            specs += [
                TensorSpec(f"{node.name}.weight", node.name, (c,), Role.WEIGHT, Init.ONES, 0),
                TensorSpec(f"{node.name}.bias", node.name, (c,), Role.BIAS, Init.ZEROS, 0),
                TensorSpec(f"{node.name}.running_mean", node.name, (c,), Role.BUFFER, Init.ZEROS, 0),
                TensorSpec(f"{node.name}.running_var", node.name, (c,), Role.BUFFER, Init.ONES, 0),
            ]
    return specs
