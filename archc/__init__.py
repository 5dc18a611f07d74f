"""archc: an architecture-spec compiler and validator for neural networks.

>>> import archc
>>> net = archc.loads("input 28x28x1\\nfc 10", filename="tiny.arch")
>>> net.params
7850
"""

from archc.api import CompileResult, Layer, Network, compile_file, compile_text, load, loads
from archc.diagnostics import ArchError, Diagnostic, SpecError
from archc.version import __version__

__all__ = [
    "ArchError",
    "CompileResult",
    "Diagnostic",
    "Layer",
    "Network",
    "SpecError",
    "__version__",
    "compile_file",
    "compile_text",
    "load",
    "loads",
]
