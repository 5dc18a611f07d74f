"""archc: an architecture-spec compiler and validator for neural networks.

>>> import archc
>>> net = archc.loads("input 28x28x1\\nfc 10", filename="tiny.arch")
>>> net.params
7850
"""

from archc.api import CompileResult, Layer, Network, compile_file, compile_text, load, loads
from archc.diagnostics import ArchError, Diagnostic, SpecError

__all__ = [
    "ArchError",
    "CompileResult",
    "Diagnostic",
    "Layer",
    "Network",
    "SpecError",
    "compile_file",
    "compile_text",
    "load",
    "loads",
]
__version__ = "0.1.0"
