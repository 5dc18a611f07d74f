"""The pre-commit hooks (`.pre-commit-hooks.yaml`), run the way a user's repository runs them.

`pre-commit try-repo` installs archc from a git repository into a fresh
virtualenv with pip, which needs lark and pydantic (and hatchling to build)
from the package index. The test copies this working tree (tracked and
untracked files alike, as git would see them committed) into a temporary
repository, so it tests the hooks as they are now, committed or not. One run
covers both hooks. Skipped when pre-commit or git is missing, or when the
environment cannot be built (no network, no index).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

GOOD = "input 8x8x3\nc1: conv K=4 F=3 -> 6x6x4\nfc 10\n"
BAD = "input 8x8x3\nc1: conv K=4 F=3 -> 7x7x4\nfc 10\n"  # canonical, but the arrow is wrong
ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **ENV})


def _snapshot(dest: Path) -> Path:
    """This working tree as a one-commit repository (never touches the real one's state)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "snapshot")
    return dest


def test_hooks_pass_good_and_fail_bad(tmp_path: Path) -> None:
    pytest.importorskip("pre_commit")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    repo = _snapshot(tmp_path / "archc")
    project = tmp_path / "project"
    project.mkdir()
    (project / "good.arch").write_text(GOOD)
    (project / "bad.arch").write_text(BAD)
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    env = {**os.environ, **ENV, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)  # archc check would switch to annotations
    argv = [sys.executable, "-m", "pre_commit", "try-repo", str(repo), "--verbose", "--color=never"]
    proc = subprocess.run(
        [*argv, "--files", "good.arch", "bad.arch"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    if "An unexpected error has occurred" in out or "CalledProcessError" in out:
        pytest.skip(f"pre-commit could not build the hook environment (offline?):\n{out[-2000:]}")
    check = out[out.index("archc check") : out.index("archc fmt")]
    fmt = out[out.index("archc fmt") :]
    assert proc.returncode == 1, out
    assert "Failed" in check and "bad.arch:2:" in check and "error[E202]" in check
    assert "ok    good.arch" in check  # the good spec passed inside the same run
    assert "Passed" in fmt, out  # both files are already canonical: nothing rewritten
    assert (project / "bad.arch").read_text() == BAD
