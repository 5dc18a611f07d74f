"""What the commands share: colour detection, loading a spec and reporting its diagnostics."""

from __future__ import annotations

import os
import sys
from typing import IO

from archc.api import CompileResult, Network, compile_file


def use_color(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def report(result: CompileResult, stream: IO[str] | None = None) -> None:
    """Print a result's diagnostics (errors and warnings), if any."""
    out = stream or sys.stderr
    if result.diagnostics:
        print(result.render(color=use_color(out)), file=out)


def load_or_report(path: str, strict: bool = False) -> Network | None:
    """The network, or None after printing why not (warnings fail too when strict)."""
    result = compile_file(path)
    report(result)
    if result.network is None or (strict and result.warnings):
        return None
    return result.network
