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


def _readme_snippet() -> dict:
    """The README's `.pre-commit-config.yaml` example, parsed."""
    yaml = pytest.importorskip("yaml")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    after = readme[readme.index("**pre-commit**") :]
    block = after[after.index("```yaml\n") + len("```yaml\n") : after.index("```", after.index("```yaml\n") + 7)]
    config = yaml.safe_load(block)
    assert isinstance(config, dict) and len(config["repos"]) == 1, block
    return config


def _git_out(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **ENV})


def run_readme_snippet(repo: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    """The README's snippet in a fresh project, `repo` (this repository, or a clone) standing for
    its URL: `pre-commit validate-config`, then `pre-commit try-repo REPO --ref REV` on one good and
    one bad spec. Skips where pre-commit cannot build the hook environment (offline)."""
    pytest.importorskip("pre_commit")
    config = _readme_snippet()
    entry = config["repos"][0]
    rev, ids = str(entry["rev"]), [h["id"] for h in entry["hooks"]]
    if _git_out(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        if not _git_out(repo, "tag", "--list").stdout.strip():
            pytest.skip(f"a clone without tags: the snippet's rev {rev!r} cannot be looked up here")
        pytest.fail(
            f"the README's pre-commit snippet names rev {rev!r}, which is no tag or commit of this "
            f"repository: `pre-commit run` fails for anyone who copies it (create the tag: git tag -a {rev})"
        )
    hooks = __import__("yaml").safe_load(_git_out(repo, "show", f"{rev}:.pre-commit-hooks.yaml").stdout)
    assert set(ids) <= {h["id"] for h in hooks}, f"the snippet's hooks {ids} are not all hooks of {rev}"
    project = tmp_path / "project"
    project.mkdir()
    (project / "good.arch").write_text(GOOD)
    (project / "bad.arch").write_text(BAD)
    entry["repo"] = str(repo)
    (project / ".pre-commit-config.yaml").write_text(__import__("json").dumps(config))  # JSON is YAML
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    env = {**os.environ, **ENV, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "NO_COLOR": "1"}
    env.pop("GITHUB_ACTIONS", None)
    pre_commit = [sys.executable, "-m", "pre_commit"]
    valid = subprocess.run([*pre_commit, "validate-config", ".pre-commit-config.yaml"], cwd=project, capture_output=True, text=True, env=env)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    proc = subprocess.run(
        [*pre_commit, "try-repo", str(repo), "--ref", rev, "--verbose", "--color=never", "--files", "good.arch", "bad.arch"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    if "An unexpected error has occurred" in out or "CalledProcessError" in out:
        pytest.skip(f"pre-commit could not build the hook environment (offline?):\n{out[-2000:]}")
    return proc, config


def test_the_readme_snippet_works_as_written(tmp_path: Path) -> None:
    """The README's snippet said `rev: v0.1.0`, a tag that did not exist: `pre-commit run` failed."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    if _git_out(ROOT, "rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone: its tags may be missing")
    proc, _ = run_readme_snippet(ROOT, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # bad.arch fails archc check
    check = out[out.index("archc check") : out.index("archc fmt")]
    assert "Failed" in check and "bad.arch:2:" in check and "error[E202]" in check
    assert "ok    good.arch" in check
    assert "Passed" in out[out.index("archc fmt") :], out
