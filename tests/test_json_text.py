"""The fast indented JSON writer of `archc summary --json` writes what `json.dumps(indent=2)` writes."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archc.tools.json_text import indented

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
keys = st.text() | st.integers() | st.booleans() | st.none() | st.floats()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner) | st.lists(inner).map(tuple) | st.dictionaries(keys, inner),
    max_leaves=30,
)


@given(values)
def test_same_text_as_json_dumps(value: Any) -> None:
    assert indented(value) == json.dumps(value, indent=2)


def test_subclasses_of_scalars_as_json_writes_them() -> None:
    class Size(IntEnum):
        BIG = 7

    value = {"a": Size.BIG, Size.BIG: [Size.BIG, 1.5, float("nan"), float("-inf")], "e": "é\n"}
    assert indented(value) == json.dumps(value, indent=2)


def test_what_json_refuses_is_refused() -> None:
    with pytest.raises(TypeError):
        indented({"a": object()})
    with pytest.raises(TypeError):
        indented({(1, 2): 3})
