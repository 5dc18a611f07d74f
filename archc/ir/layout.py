"""Layouts: what the dimensions of a per-sample shape mean.

A closed set. Each layout knows its axes as the spec writes them (channels
last, as on the slides: `HxWxC`), which of them a window slides over (its
spatial axes), where its features are, and how generated code holds it
(`physical_order`: PyTorch and ONNX convolutions want channels first).

The front end never guesses a layout from a shape: it states one, and where
the user writes dimensions (`input`, `->`, `expect ... output`) the rule is
`written_layout`, the one place that reads a layout from a count of numbers.

>>> Layout.IMAGE.spatial_axes, Layout.IMAGE.physical_order(), Layout.IMAGE.channel_axis()
('HW', (2, 0, 1), 1)
>>> written_layout((227, 227, 3)), written_layout((4096,)), written_layout((16000, 1))
(<Layout.IMAGE: 'HxWxC'>, <Layout.FLAT: 'N'>, <Layout.SEQUENCE: 'LxC'>)
"""

from __future__ import annotations

from enum import StrEnum


class Physical(StrEnum):
    """How generated code orders a sample's axes (batch first in every case)."""

    CHANNELS_FIRST = "channels first"  # batch x C x spatial: convolutions and pooling (all of contract v1)
    CHANNELS_LAST = "channels last"  # batch x L x C: sequence layers (contract v2)


class Layout(StrEnum):
    """The value is the layout's text form, as messages and the contract write it."""

    FLAT = "N"  # a flat feature vector
    SEQUENCE = "LxC"  # L positions of C channels
    IMAGE = "HxWxC"
    VOLUME = "DxHxWxC"  # D frames of HxWxC
    TOKENS = "T tokens"  # integer token ids: positions without features

    @property
    def axes(self) -> str:
        """One letter per dimension, in the written order: `HWC`."""
        return _AXES[self]

    @property
    def spatial_axes(self) -> str:
        """The axes a window (conv, pooling) slides over, in order: `HW`; empty when none."""
        return _AXES[self][:-1] if self in _WITH_POSITIONS else ""

    @property
    def spatial_rank(self) -> int:
        return len(self.spatial_axes)

    @property
    def feature_axis(self) -> int | None:
        """The index of the features (channels) in the written dims; None for token ids."""
        return None if self is Layout.TOKENS else len(_AXES[self]) - 1

    @property
    def noun(self) -> str:
        """What a shape of this layout is called in messages: 'the flat vector 4096'."""
        return _NOUNS[self]

    def physical_order(self, convention: Physical = Physical.CHANNELS_FIRST) -> tuple[int, ...]:
        """Which written dim each per-sample dim of generated code holds (batch excluded).

        >>> Layout.VOLUME.physical_order(), Layout.SEQUENCE.physical_order(Physical.CHANNELS_LAST)
        ((3, 0, 1, 2), (0, 1))
        """
        written = tuple(range(len(_AXES[self])))
        features = self.feature_axis
        if convention is Physical.CHANNELS_LAST or features is None:
            return written
        return (features, *(i for i in written if i != features))

    def channel_axis(self, convention: Physical = Physical.CHANNELS_FIRST) -> int:
        """The axis of the features in generated code's tensors, batch being axis 0.

        Softmax and concat act along it. Token ids have none: ValueError.
        """
        features = self.feature_axis
        if features is None:
            raise ValueError(f"{self.noun} have no feature axis")
        return 1 + self.physical_order(convention).index(features)

    def flat_order(self) -> str:
        """The order in which flattening lays the axes out (PyTorch flattens channels first): `C,H,W`."""
        return ",".join(_AXES[self][i] for i in self.physical_order())

    def text(self, dims: tuple[int, ...]) -> str:
        """A shape of this layout as messages write it: `55x55x96`, `4096`, `1024 tokens`."""
        written = "x".join(str(d) for d in dims)
        return f"{written} tokens" if self is Layout.TOKENS else written


_AXES = {
    Layout.FLAT: "N",
    Layout.SEQUENCE: "LC",
    Layout.IMAGE: "HWC",
    Layout.VOLUME: "DHWC",
    Layout.TOKENS: "T",
}
_WITH_POSITIONS = frozenset({Layout.SEQUENCE, Layout.IMAGE, Layout.VOLUME})
_NOUNS = {
    Layout.FLAT: "flat vector",
    Layout.SEQUENCE: "sequence",
    Layout.IMAGE: "image",
    Layout.VOLUME: "volume",
    Layout.TOKENS: "token ids",
}

# The contract's rule, "the number of dimensions written says the layout" (v2's
# `T tokens` is written with its word, not by a count).
WRITTEN = {1: Layout.FLAT, 2: Layout.SEQUENCE, 3: Layout.IMAGE, 4: Layout.VOLUME}


def written_layout(dims: tuple[int, ...]) -> Layout | None:
    """The layout of dimensions the user wrote (`input`, `->`, `expect`), or None if none has that many."""
    return WRITTEN.get(len(dims))


def written_spatial_ranks() -> frozenset[int]:
    """The spatial ranks a written shape can have: how many sizes a window key may list (`F=3x5`)."""
    return frozenset(layout.spatial_rank for layout in WRITTEN.values() if layout.spatial_rank)
