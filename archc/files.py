"""Files in and out: specs read safely, output written atomically.

Reading: a spec is a regular file. A FIFO, a device or a socket is refused
before it is read (reading one would block, or never end), and so is a
kernel pseudo-file under /proc or /sys (`/proc/self/environ` is not a spec,
and its lines must never be quoted in a log). A directory is walked without
following a link that leaves it or leads into one of its hidden folders.

Writing: to a temporary name beside the target, then renamed over it. A failed
compile leaves no file behind and never replaces a good file with a partial
one; SIGTERM (CI cancelling a job, `timeout`) removes the temporary as an
error would, and a temporary left by a killed run (SIGKILL) is removed by the
next run that writes the same target. The file keeps the mode of the one it
replaces. A symbolic link is followed (the file it names is replaced, the link
stays); a device or pipe (`-o /dev/null`) is written in place, since it cannot
be renamed over. Every failure to write is an `OutputError` that says which
path and why, never an OSError traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO

from archc.diagnostics import ArchError, shown

PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"))  # files whose reading has side effects or leaks state


class OutputError(ArchError):
    """An output cannot be written where it was asked for."""


class NotASpecFile(OSError):
    """A path that exists but must not be read as a spec (a FIFO, a device, a link that leaves the tree)."""


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# --- reading ------------------------------------------------------------------------------------
def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file or a directory."""
    for test, name in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return None


def _in_pseudo_filesystem(real: Path) -> bool:
    return any(real.is_relative_to(root) for root in PSEUDO_FILESYSTEMS)


def why_not_a_spec(path: Path, tree: Path | None = None) -> str | None:
    """Why `path` must not be read as a spec, or None when it may (a regular file or a directory).

    `tree`: the directory being walked. A symbolic link found there must lead
    to a file inside it and outside its hidden folders (`.git`), the folders
    the walk itself skips. A spec named on the command line is checked with
    the working directory as its tree (`read_regular`): a shell glob
    (`specs/*.arch`) names the links a pull request adds as surely as a walk
    finds them. Never blocks: nothing is opened.
    """
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.lexists(path):
            return f"a symbolic link to a missing file ({shown(os.readlink(path))})"
        return "no such file or directory"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"cannot read the file: {_why(exc)}"
    real = Path(os.path.realpath(path))
    if link and tree is not None:
        root = Path(os.path.realpath(tree))
        if not real.is_relative_to(root):
            return f"a symbolic link that leaves {shown(str(tree))} (to {shown(os.readlink(path))}); not followed"
        if any(part.startswith(".") for part in real.relative_to(root).parts):
            return f"a symbolic link into a hidden folder ({shown(os.readlink(path))}); not followed"
    kind = _kind(mode)
    if kind is not None:
        return f"{kind}, not a regular file"
    if _in_pseudo_filesystem(real):
        return f"a kernel file ({shown(str(real))}), not a spec"
    return None


def read_regular(path: Path, tree: Path | None = None) -> bytes:
    """The bytes of a regular file. Raises `NotASpecFile` (never blocking) for anything else.

    `tree`: the directory `path` was found in (default: the working directory);
    a symbolic link that leaves it is refused (`why_not_a_spec`), so that
    `specs/model.arch -> ../.git/config` is never read, and never quoted.
    The file is opened non-blocking and checked again once open, so that a
    file swapped for a FIFO between the check and the read cannot hang us.
    """
    problem = why_not_a_spec(path, tree=Path(os.curdir) if tree is None else tree)
    if problem == "no such file or directory":
        raise FileNotFoundError(errno.ENOENT, problem, str(path))
    if problem is not None:
        raise NotASpecFile(problem)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        kind = _kind(mode)
        if kind is not None:
            raise NotASpecFile(f"{kind}, not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


# --- the checks a command makes before it computes anything -------------------------------------
def same_file(a: Path, b: Path) -> bool:
    """Whether two paths are one file: the same inode, or, for a file not made yet, the same place."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return Path(os.path.realpath(a)) == Path(os.path.realpath(b))


def refuse_overwriting(output: Path | str, *inputs: Path | str) -> None:
    """An output must not replace one of the command's own inputs (`-o spec.arch`).

    `inputs` are every file read, found in a directory too, and are compared as
    files (a link or a hard link to a spec is that spec).
    """
    for source in inputs:
        if same_file(Path(output), Path(source)):
            raise OutputError(
                f"refusing to write {shown(str(output))}: it is the input {shown(str(source))}; choose another -o"
            )


def destination(target: Path) -> Path:
    """The file to write: the target, or what its symbolic link points to."""
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    if target.is_dir():
        raise OutputError(
            f"cannot write {shown(str(target))}: it is a directory; name a file, e.g. {shown(str(target / 'model.onnx'))}"
        )
    if target.parent.exists() and not target.parent.is_dir():
        raise OutputError(f"cannot write {shown(str(target))}: {shown(str(target.parent))} is a file, not a directory")
    return target


def check_output(output: Path | str, *inputs: Path | str) -> Path:
    """`-o OUTPUT` before any work: not an input, not a directory, in a directory that exists.

    A missing directory is an error, not created: `-o /typo/model.onnx` must
    not build a tree of folders (at `/` too) on a typo.
    """
    refuse_overwriting(output, *inputs)
    target = destination(Path(output))
    if not target.parent.is_dir():
        raise OutputError(
            f"cannot write {shown(str(output))}: the directory {shown(str(target.parent))} does not exist; "
            "archc creates none, make it first"
        )
    return target


# --- writing ------------------------------------------------------------------------------------
class Terminated(SystemExit):
    """SIGTERM while an output was being written: unwinds like an error, so the temporary is removed."""

    def __init__(self) -> None:
        super().__init__(128 + 15)  # the shell's status for a process that SIGTERM ended


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While writing, SIGTERM raises `Terminated` instead of killing the process on the spot.

    Only where SIGTERM still has its default action, and only in the main
    thread (the only one that may set a handler); SIGINT already raises
    KeyboardInterrupt.
    """
    import signal  # only where something is written

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another process holds it.

    A temporary is locked by the process writing it for as long as it writes:
    a lock the kernel drops when that process dies, however it dies.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): every temporary counts as in use
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _temporary_pattern(target: Path) -> re.Pattern[str]:
    """The names `tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")` gives for `target`."""
    return re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}\.tmp")


def remove_stale(folder: Path, pattern: re.Pattern[str], unused: Callable[[str], bool] = lambda name: True) -> None:
    """Remove files of `folder` named by `pattern` that no running process holds (left by a kill)
    and that `unused(name)`, asked once the file is locked, confirms nothing needs.

    Best effort: a file that cannot be opened, locked or removed stays.
    """
    try:
        names = [n for n in os.listdir(folder) if pattern.fullmatch(n)]
    except OSError:
        return
    for name in names:
        path = folder / name
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            try:
                same = os.fstat(fd).st_ino == os.lstat(path).st_ino
                if same and stat.S_ISREG(os.fstat(fd).st_mode) and _lock(fd) and unused(name):
                    path.unlink()
            finally:
                os.close(fd)


def _new_file_mode() -> int:
    """The mode `open()` would give a new file: 0o666 less the umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def file_mode(target: Path) -> int:
    """The mode to give what replaces `target`: the one it has, else a new file's."""
    return stat.S_IMODE(target.stat().st_mode) if target.exists() else _new_file_mode()


def is_device(target: Path) -> bool:
    """An existing target that is no regular file (`/dev/null`, a pipe): written in place."""
    return target.exists() and not stat.S_ISREG(target.stat().st_mode)


@contextlib.contextmanager
def temporary_beside(target: Path) -> Iterator[Path]:
    """A new, locked temporary file in `target`'s directory, removed at the end unless renamed.

    Temporaries of the same target left by a killed run are removed first.
    """
    import tempfile  # not on the path of `archc check`, which only reads

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target.parent, _temporary_pattern(target))
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {shown(str(target))}: {_why(exc)}") from exc
    tmp_path = Path(tmp)
    _lock(fd)  # held until the end: the temporary is in use, not stale
    try:
        with _sigterm_unwinds():
            yield tmp_path
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it over the target on success."""
    target = destination(Path(target))
    if is_device(target):
        try:  # a device or a pipe: there is nothing to rename over, write into it
            yield target
        except OSError as exc:
            raise OutputError(f"cannot write {shown(str(target))}: {_why(exc)}") from exc
        return
    mode = file_mode(target)
    with temporary_beside(target) as tmp_path:
        try:
            yield tmp_path
            os.chmod(tmp_path, mode)
            os.replace(tmp_path, target)
        except OSError as exc:
            # Only failures of this file (a full disk, say); others keep their own message.
            if exc.filename not in (None, str(tmp_path), str(target)):
                raise
            raise OutputError(f"cannot write {shown(str(target))}: {_why(exc)}") from exc


def reserve(f: IO[bytes], size: int) -> None:
    """Allocate a file's `size` bytes before writing them, where the filesystem can.

    Renaming a new file over an old one makes ext4 flush the new file's
    not-yet-allocated blocks (its auto_da_alloc safeguard): for a 244 MB model
    that flush cost 0.2-0.8 s here, preallocated it cost nothing.
    """
    with contextlib.suppress(OSError, AttributeError):  # not every filesystem (or OS) has it
        os.posix_fallocate(f.fileno(), 0, size)


def write_atomic(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
