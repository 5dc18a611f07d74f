"""The documentation keeps up with the code: every layer kind documented, README's commands intact."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from archc.api import compile_text
from archc.kinds import KINDS


def test_every_kind_is_in_the_language_reference() -> None:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    missing = [name for name in KINDS if f"`{name}`" not in text]
    assert not missing, f"document these kinds in docs/language.md: {missing}"


def test_readme_opens_with_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block is not None and readme.index("```bash") < 200, "README must open with the commands"
    commands = [ln for ln in block.group(1).splitlines() if ln and not ln.startswith("#")]
    assert len(commands) == 2
    main_job, tests = commands
    assert "archc compile specs/alexnet_lecture.arch -o alexnet.onnx" in main_job
    assert "archc run alexnet.onnx" in main_job
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # .ci/run must run the README's exact test command
    test_command = tests.rsplit("&&", 1)[1].strip()
    assert test_command in ci
    assert "pip install torch==2.13.0" in tests and "pip install -q torch==2.13.0" in ci


# --- every spec in the README and docs checks as written -------------------------------------------
DOCS = ("README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$", re.M | re.S)
# A block that reads like a spec: its first statement is one a spec starts with.
SPEC_START = re.compile(r"^\s*(network\s+\w+|input\s+\d|block\s+\w+\s*[({])", re.M)


def code_blocks() -> list[tuple[str, int, str, str]]:
    """(file, line, info string, body) of every fenced code block of README.md and docs/*.md."""
    found = []
    for name in DOCS:
        text = (ROOT / name).read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            body = "\n".join(line[len(m["indent"]) :] for line in m["body"].splitlines()) + "\n"
            found.append((name, text.count("\n", 0, m.start()) + 1, m["info"].strip(), body))
    return found


def test_every_code_block_says_what_it_is() -> None:
    """An untagged block may be a spec nobody checks: each carries an info string (`arch` for a spec,
    `arch fragment` for an excerpt, `text` for output, `bash`, `yaml`, ...)."""
    untagged = [f"{name}:{line}" for name, line, info, _ in code_blocks() if not info]
    assert not untagged, f"give these code blocks an info string: {untagged}"


def test_blocks_that_read_like_specs_are_tagged_as_specs() -> None:
    mislabelled = [
        f"{name}:{line} ({info})"
        for name, line, info, body in code_blocks()
        if info.split()[:1] != ["arch"] and SPEC_START.search(body)
    ]
    assert not mislabelled, f"these look like specs: tag them `arch` (or `arch fragment`): {mislabelled}"


@pytest.mark.parametrize(
    ("name", "line", "body"),
    [(name, line, body) for name, line, info, body in code_blocks() if info == "arch"],
    ids=lambda v: v if isinstance(v, str) and v.endswith(".md") else None,
)
def test_every_spec_in_the_docs_checks_as_written(name: str, line: int, body: str) -> None:
    """```arch blocks are whole specs: pasted into a file, `archc check --strict` passes."""
    result = compile_text(body, "example.arch")
    assert result.network is not None and not result.diagnostics, f"{name}:{line}:\n{result.render()}"


# --- the docs are complete inside the repository ----------------------------------------------------
def test_no_link_leaves_the_repository() -> None:
    """The README linked ../shared/LANGUAGE.md: a 404 on a forge. Every relative link of the README,
    CONTRIBUTING.md and docs/ names a file of this repository, and none names the old contract."""
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    bad = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if "LANGUAGE.md" in text or "../shared" in text:
            bad.append(f"{page.name}: names ../shared/LANGUAGE.md, outside the repository")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path = (page.parent / target).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                bad.append(f"{page.name}: ({target}) is not a file of the repository")
    assert not bad, "\n".join(bad)


def test_every_key_of_every_kind_is_in_the_language_reference() -> None:
    """docs/language.md is the whole reference: each kind's row names each of its keys."""
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    missing = []
    for name, kind in KINDS.items():
        if kind.traits.merge is not None:  # written as `add { }`, never as a layer line: no keys to write
            continue
        row = next((r for r in re.findall(r"^\|.*$", text, re.M) if f"`{name}`" in r.split("|")[1]), "")
        missing += [f"{name}.{key.name}" for key in kind.keys if f"`{key.name}`" not in row]
    assert not missing, f"document these keys in their kind's row of docs/language.md: {missing}"
