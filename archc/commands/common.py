"""What the commands share: colour detection, loading a spec and reporting its diagnostics."""

from __future__ import annotations

import os
import sys
from typing import IO

from archc.api import CompileResult, Network, compile_file


def non_negative_int(text: str) -> int:
    """argparse type: `--seed 7`; a negative or non-integer value is a usage error (exit 2)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: `--batch 8`; 0, a negative or a non-integer value is a usage error (exit 2)."""
    import argparse

    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, not {value}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: `--timeout 2.5`; 0, a negative value, NaN or a non-number is a usage error (exit 2)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, not {text}")
    return value


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
