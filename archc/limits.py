"""The limits that keep an untrusted spec, weight file or model from filling the disk or the memory.

A spec is bounded before anything is built from it: its numbers (`MAX_NUMBER`,
`MAX_DIM`, `MIN_MAGNITUDE`), how deep it nests (`MAX_DEPTH`) and how many
layers it elaborates to (`--max-layers`, default `DEFAULT_MAX_LAYERS`, counted
before a repeat or a block call creates them).

A 45-byte spec (`input 1` / `fc 1000000000000`) describes 8 TB of weights, and a
40-byte ONNX input shape asks for more memory than any machine has. So before
archc writes a model, loads weights or starts onnxruntime, it compares the
bytes that would be written or allocated with `--max-size` (default
`DEFAULT_MAX_SIZE`) and, for a file, with the free space where it goes.
`archc run` also runs the model under `--timeout` seconds (default
`DEFAULT_TIMEOUT`). The README lists them ("Untrusted input").

>>> parse_size("4G"), parse_size("512M"), parse_size("1000")
(4294967296, 536870912, 1000)
>>> size_text(3 * 2**30)
'3.0 GiB'
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from archc.diagnostics import ArchError, shown

# --- specs -----------------------------------------------------------------------------------------
MAX_NUMBER = 10**18  # a number written or computed: 1e18 (an int64 holds it; no network needs more)
MIN_MAGNITUDE = 1e-300  # a nonzero number smaller than this would round to 0 (or a subnormal) as a float
MAX_DIM = 2**31 - 1  # a size: a layer's key (K, F, N...), a dimension of a shape (the largest int32)
MAX_DEPTH = 100  # braces and parentheses inside each other, and block calls inside those (a real spec: < 10)
DEFAULT_MAX_LAYERS = 1_000_000  # layers a spec may elaborate to (`--max-layers`); a repeat copy with none counts as one

# --- models ----------------------------------------------------------------------------------------
DEFAULT_MAX_SIZE = 4 * 2**30  # bytes: 7x VGG-16's weights, a 1-billion-parameter float32 model
DEFAULT_TIMEOUT = 60.0  # seconds that `archc run` gives the model
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class LimitError(ArchError):
    """Doing what was asked would take more bytes than allowed or available."""


def parse_size(text: str) -> int:
    """argparse type: `4G`, `512M`, `100K` or a number of bytes (units are powers of 1024)."""
    import argparse  # only the CLI calls this; the front end imports the constants above

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 4G, 512M or 1000000, not {text!r}")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a size of at least 1 byte, not {text!r}")
    return value


def size_text(n: float) -> str:
    """`n` bytes in the largest binary unit that keeps the number at least 1."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n)} bytes"


def check_size(what: str, nbytes: int, limit: int) -> None:
    """Refuse `what` when it needs more than `limit` bytes (`--max-size`)."""
    if nbytes > limit:
        raise LimitError(
            f"{what} would take {size_text(nbytes)}, more than --max-size {size_text(limit)}; "
            "if that is intended, raise --max-size"
        )


def check_free_space(target: Path, nbytes: int) -> None:
    """Refuse to write `nbytes` to `target` when its filesystem has less space free.

    A device or a pipe (`-o /dev/null`) takes anything: not checked.
    """
    if target.exists() and not target.is_file():
        return
    folder = target.parent if target.parent.is_dir() else Path(os.curdir)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # a filesystem that cannot say: the write itself will tell
    if nbytes > free:
        raise LimitError(
            f"cannot write {shown(str(target))}: the model takes {size_text(nbytes)}, "
            f"but only {size_text(free)} are free there"
        )
