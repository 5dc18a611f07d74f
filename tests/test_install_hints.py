"""Every message that says how to install torch says what the README says: torch pinned first."""

from __future__ import annotations

import ast
import re
import sys

import pytest
from conftest import ROOT

from archc.backends import TORCH_INSTALL, TORCH_VERSION


def test_the_readme_pins_the_torch_the_messages_name() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pins = set(re.findall(r"pip install (?:-q )?torch==([0-9.]+)", readme))
    assert pins == {TORCH_VERSION}
    assert TORCH_INSTALL.startswith(f"pip install torch=={TORCH_VERSION} && ")


def test_no_message_installs_an_unpinned_torch() -> None:
    """`pip install torch` (a multi-GB CUDA build) or the extra alone contradicted the README."""
    offenders = []
    for path in sorted((ROOT / "archc").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            for install in re.findall(r"pip install[^()\n]*", text):
                if "torch" in install and f"torch=={TORCH_VERSION}" not in install:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {install}")
    assert not offenders, "use archc.backends.TORCH_INSTALL:\n" + "\n".join(offenders)


def test_building_a_module_without_torch_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numpy")
    import archc
    from archc.backends.torch.generate import TorchGenError, build_module

    net = archc.loads("input 4\nfc 3")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(TorchGenError) as info:
        build_module(net.analysis)
    assert str(info.value).endswith(": pip install torch==2.13.0 && pip install 'archc[torch]'")


def test_a_missing_extra_with_torch_is_pinned_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from archc.commands import deps
    from archc.diagnostics import ArchError

    monkeypatch.setattr(deps.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ArchError) as info:
        deps.require("run --check", "onnx", "torch")
    assert str(info.value) == (
        "archc run --check needs onnx, torch: pip install torch==2.13.0 && pip install 'archc[torch]' "
        "&& pip install 'archc[onnx]'"
    )
