"""A clear error, not a traceback, when a command's optional dependencies are missing.

>>> require("compile", "json")  # present: returns quietly
"""

from __future__ import annotations

import importlib.util

from archc.diagnostics import ArchError

EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "numpy": "onnx", "torch": "torch", "safetensors": "onnx"}


def require(command: str, *modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        from archc.backends import TORCH_INSTALL

        extras = sorted({EXTRAS.get(m, m) for m in missing})
        install = "pip install " + " ".join(f"'archc[{e}]'" for e in extras if e != "torch")
        if "torch" in extras:  # pinned first, as the README says
            install = TORCH_INSTALL + (f" && {install}" if len(extras) > 1 else "")
        raise ArchError(f"archc {command} needs {', '.join(missing)}: {install}")
