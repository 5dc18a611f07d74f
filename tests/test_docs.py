"""The documentation keeps up with the code: every layer kind documented, README's commands intact."""

from __future__ import annotations

import re

from conftest import ROOT

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
