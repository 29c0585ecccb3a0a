"""Class names and colour palettes of the segmentation datasets hrstream ships configs for.

A palette is a ``uint8 (C, 3)`` array of **RGB** colours, row ``c`` for label ``c``. Label values without
a row (e.g. the Cityscapes ignore label 255) are not coloured.
"""

from __future__ import annotations

import numpy as np

from hrstream.models.datasets_meta import CITYSCAPES_CLASSES as _CITYSCAPES_CLASSES
from hrstream.models.datasets_meta import CITYSCAPES_PALETTE as _CITYSCAPES_PALETTE

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "LIP_CLASSES",
    "LIP_PALETTE",
    "PERSON_CLASSES",
    "PERSON_PALETTE",
    "get_palette",
    "indexed_palette",
]

# Cityscapes trainIds 0..18 (the 19 evaluated classes) and the official colours (cityscapesScripts), RGB,
# from hrstream.models.datasets_meta (one copy for the package).
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(_CITYSCAPES_CLASSES)
CITYSCAPES_PALETTE: np.ndarray = np.array(_CITYSCAPES_PALETTE, dtype=np.uint8)

# Two-class person / background maps (e.g. a person mask from a human-parsing model).
PERSON_CLASSES: tuple[str, ...] = ("background", "person")
PERSON_PALETTE: np.ndarray = np.array([(0, 0, 0), (220, 20, 60)], dtype=np.uint8)

# LIP human parsing, 20 classes (label 0 is background).
LIP_CLASSES: tuple[str, ...] = (
    "background",
    "hat",
    "hair",
    "glove",
    "sunglasses",
    "upper clothes",
    "dress",
    "coat",
    "socks",
    "pants",
    "jumpsuits",
    "scarf",
    "skirt",
    "face",
    "left arm",
    "right arm",
    "left leg",
    "right leg",
    "left shoe",
    "right shoe",
)


def indexed_palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map for ``num_classes`` labels: ``uint8 (num_classes, 3)`` RGB.

    Colour ``c`` spreads the bits of ``c`` over the high bits of the three channels (bit 0 to red, bit 1
    to green, bit 2 to blue, then the next three bits one place lower, ...), so neighbouring labels get
    very different colours. Label 0 is black.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    out = np.zeros((num_classes, 3), dtype=np.uint8)
    for c in range(num_classes):
        rgb = [0, 0, 0]
        value, shift = c, 7
        while value and shift >= 0:
            for ch in range(3):
                rgb[ch] |= ((value >> ch) & 1) << shift
            value >>= 3
            shift -= 1
        out[c] = rgb
    return out


LIP_PALETTE: np.ndarray = indexed_palette(len(LIP_CLASSES))

_BY_NAME = {
    "cityscapes": (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE),
    "lip": (LIP_CLASSES, LIP_PALETTE),
    "person": (PERSON_CLASSES, PERSON_PALETTE),
}


def get_palette(dataset: str) -> tuple[tuple[str, ...], np.ndarray]:
    """``(class names, palette)`` of a dataset: ``"cityscapes"``, ``"lip"`` or ``"person"``."""
    key = dataset.lower()
    if key not in _BY_NAME:
        raise ValueError(f"unknown segmentation dataset {dataset!r}; choose one of {sorted(_BY_NAME)}")
    classes, palette = _BY_NAME[key]
    return classes, palette.copy()
