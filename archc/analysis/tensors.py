"""The learnable tensors (and buffers) a network has, as its kinds declare them.

One list serves every back-end: the PyTorch generator's `state_dict` keys, the
ONNX generator's initializer names, and the weight loader's validation all
come from `tensor_specs`, so they cannot drift apart. The analysis counts
weights and biases from the same declarations (`LayerKind.counts`).

Shapes are PyTorch's: conv weight `[K, C/G, Fh, Fw]`, fc weight `[N, in]`
(inputs in C,H,W order), batchnorm `weight`/`bias`/`running_mean`/
`running_var` of `[C]`. `num_batches_tracked` (a PyTorch bookkeeping buffer)
is accepted when loading and ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archc.analysis.analyze import Analysis
from archc.kinds import KINDS
from archc.kinds.kind import Applied
from archc.kinds.kind import Init as Init
from archc.kinds.kind import Role as Role

IGNORED_KEYS_SUFFIXES = (".num_batches_tracked",)


@dataclass(frozen=True)
class TensorSpec:
    name: str  # state_dict key == ONNX initializer name: "layer1.0.conv1.weight"
    layer: str
    shape: tuple[int, ...]
    role: Role
    init: Init
    fan_in: int
    value: float = 0.0  # every element, for Init.CONSTANT

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
        layer = Applied(node.attrs, facts.inputs, facts.output, facts.window)
        for t in KINDS[node.kind].tensors(layer):
            if t.alias is None:  # a tied tensor is its owner's, listed (and stored) once
                name = f"{node.name}.{t.name}" if t.name else node.name  # "": the layer is the parameter
                specs.append(TensorSpec(name, node.name, t.shape, t.role, t.init, t.fan_in, t.value))
    return specs


def tied_keys(analysis: Analysis) -> dict[str, str]:
    """The state_dict keys of tied tensors, and the key of the tensor each shares.

    PyTorch's `state_dict()` lists a tied weight under both names (`parameters()`
    once); archc stores and counts it once, at its owner. Loading a state_dict
    into the generated module needs both keys.

    >>> import archc
    >>> net = archc.loads("input 4 tokens\\nwte: embedding V=10 D=8\\nhead: fc 10 bias=false tie=wte")
    >>> tied_keys(net.analysis)
    {'head.weight': 'wte.weight'}
    """
    out: dict[str, str] = {}
    for node in analysis.graph.nodes:
        facts = analysis.facts[node.name]
        for t in KINDS[node.kind].tensors(Applied(node.attrs, facts.inputs, facts.output, facts.window)):
            if t.alias is not None:
                out[f"{node.name}.{t.name}"] = t.alias
    return out
