"""What the commands share: colour detection, loading a spec and reporting its diagnostics."""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING

from archc.api import CompileResult, Network, compile_file
from archc.limits import DEFAULT_MAX_LAYERS

if TYPE_CHECKING:
    import argparse


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
    """argparse type: `--max-layers 5000000`; 0, a negative or a non-integer value is a usage error."""
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


def add_max_layers(parser: argparse.ArgumentParser) -> None:
    """`--max-layers N`: the most layers a spec may elaborate to (E140 past it)."""
    parser.add_argument(
        "--max-layers",
        type=positive_int,
        default=DEFAULT_MAX_LAYERS,
        metavar="N",
        help=f"refuse a spec that makes more than N layers (default {DEFAULT_MAX_LAYERS:,})",
    )


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


def load_or_report(path: str, strict: bool = False, max_layers: int = DEFAULT_MAX_LAYERS) -> Network | None:
    """The network, or None after printing why not (warnings fail too when strict)."""
    result = compile_file(path, max_layers=max_layers)
    report(result)
    if result.network is None or (strict and result.warnings):
        return None
    return result.network
