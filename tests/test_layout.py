"""Layouts in the IR, and windows resolved for the input's spatial rank.

The language writes flat vectors, sequences (`LxC`), images and volumes
(`DxHxWxC`); the IR's layouts and the window arithmetic are checked here
directly, and on written specs of every rank.
"""

from __future__ import annotations

import pytest

import archc
from archc.ir import Layout, Physical, Shape, written_layout, written_spatial_ranks
from archc.kinds import KINDS, Key, KeyType, ShapeError, coerce, per_dimension, resolve_window, window_explain
from archc.tools.diff import diff
from archc.tools.summary import attr_text, summary_json


def test_each_layout_knows_its_axes_and_physical_order() -> None:
    rows = {
        Layout.FLAT: ("N", "", 0, (0,), 1),
        Layout.SEQUENCE: ("LC", "L", 1, (1, 0), 1),
        Layout.IMAGE: ("HWC", "HW", 2, (2, 0, 1), 1),
        Layout.VOLUME: ("DHWC", "DHW", 3, (3, 0, 1, 2), 1),
    }
    for layout, (axes, spatial, features, order, channel_axis) in rows.items():
        assert layout.axes == axes and layout.spatial_axes == spatial
        assert layout.spatial_rank == len(spatial) and layout.feature_axis == features
        assert layout.physical_order() == order and layout.channel_axis() == channel_axis
    assert Layout.SEQUENCE.physical_order(Physical.CHANNELS_LAST) == (0, 1)
    assert Layout.SEQUENCE.channel_axis(Physical.CHANNELS_LAST) == 2
    assert Layout.TOKENS.spatial_rank == 0 and Layout.TOKENS.feature_axis is None
    with pytest.raises(ValueError, match="no feature axis"):
        Layout.TOKENS.channel_axis()
    assert Layout.IMAGE.flat_order() == "C,H,W" and Layout.VOLUME.flat_order() == "C,D,H,W"


def test_shapes_carry_their_layout() -> None:
    clip = Shape.of(Layout.VOLUME, (16, 112, 112, 3))
    assert clip.text() == "16x112x112x3" and clip.nchw() == (3, 16, 112, 112)
    assert clip.spatial == (16, 112, 112) and clip.channels == 3 and clip.is_spatial
    assert clip.resized((8, 56, 56), 64).dims == (8, 56, 56, 64)
    assert Shape.of(Layout.TOKENS, (1024,)).text() == "1024 tokens"
    assert Shape.flat(4096).spatial == () and not Shape.flat(4096).is_spatial


def test_the_number_of_dims_written_says_the_layout() -> None:
    assert written_layout((227, 227, 3)) is Layout.IMAGE
    assert written_layout((4096,)) is Layout.FLAT
    assert written_layout((16, 768)) is Layout.SEQUENCE  # contract v2
    assert written_layout((16, 112, 112, 3)) is Layout.VOLUME
    assert written_layout((1, 2, 3, 4, 5)) is None
    assert written_spatial_ranks() == {1, 2, 3}
    net = archc.loads("input 8x8x3\nfc 10\n")
    assert net.graph.input_shape.layout is Layout.IMAGE and net.analysis.output_shape.layout is Layout.FLAT
    for text, layout in (("16000x1", Layout.SEQUENCE), ("16x112x112x3", Layout.VOLUME)):
        assert archc.loads(f"input {text}\nrelu\n").graph.input_shape.layout is layout


def test_window_keys_keep_what_was_written_until_the_input_is_known() -> None:
    net = archc.loads("input 9x9x3\nc: conv K=4 F=3 S=2x1\n")
    node, facts = net.graph.node("c"), net.analysis.facts["c"]
    assert (node.attrs["F"], node.attrs["S"], node.attrs["P"]) == (3, (2, 1), 0)
    assert facts.window is not None
    assert (facts.window.kernel, facts.window.stride, facts.window.out) == ((3, 3), (2, 1), (4, 7))
    assert net.layers[0].attrs["F"] == (3, 3)  # the API spells it per dim
    f = Key("F", KeyType.SIZES)
    assert per_dimension(f, 3, 3) == (3, 3, 3) and per_dimension(f, (3, 5), 2) == (3, 5)
    assert coerce(f, (3, 7, 7)) == (3, 7, 7)  # a volume's window: 3 frames by 7x7
    with pytest.raises(ValueError, match=r"F must be a positive integer, or one per dimension \(HxW, DxHxW\), not 3x3x3x3"):
        coerce(f, (3, 3, 3, 3))  # no layout has four spatial dims


def test_a_window_written_either_way_is_the_same_layer() -> None:
    one, each = (
        archc.loads("input 9x9x3\nc: conv K=4 F=3 S=1x1\n"),
        archc.loads("input 9x9x3\nc: conv K=4 F=3x3\n"),
    )
    assert diff(one, each).identical
    assert summary_json(one)["layers"] == summary_json(each)["layers"]
    assert (
        attr_text("conv", one.graph.node("c").attrs)
        == attr_text("conv", each.graph.node("c").attrs)
        == "K=4 F=3"
    )


def test_a_window_resolves_for_any_spatial_rank() -> None:
    clip = Shape.of(Layout.VOLUME, (5, 8, 8, 3))
    win = resolve_window({"F": 3, "S": None, "P": "same", "ceil": False}, clip, KINDS["maxpool"])
    assert win.kernel == (3, 3, 3) and win.out == (2, 3, 3)
    assert win.begin == (0, 0, 0) and win.end == (1, 1, 1) and win.pads == (0, 0, 0, 1, 1, 1)
    assert window_explain(win, clip) == [
        "D: (5 - 3 + 0+1)/3 + 1 = 2",
        "H: (8 - 3 + 0+1)/3 + 1 = 3",
        "W: (8 - 3 + 0+1)/3 + 1 = 3",
    ]
    signal = Shape.of(Layout.SEQUENCE, (100, 2))
    conv = {"K": 4, "F": 5, "S": 2, "P": 0, "D": 1, "G": 1, "bias": True}
    assert resolve_window(conv, signal, KINDS["conv"]).out == (48,)


def test_a_window_with_the_wrong_number_of_sizes_is_an_error_on_its_key() -> None:
    clip = Shape.of(Layout.VOLUME, (5, 8, 8, 3))
    with pytest.raises(ShapeError) as caught:
        resolve_window({"F": (3, 3), "S": None, "P": 0, "ceil": False}, clip, KINDS["maxpool"])
    assert caught.value.key == "F"
    assert caught.value.message == (
        "maxpool F=3x3 gives 2 sizes, but the volume 5x8x8x3 has 3 spatial dimensions (DHW)"
    )
