"""Writing segmentation results: lossless label-map PNGs, class fractions, COCO run-length masks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from hrstream.errors import InputError

__all__ = ["LabelMapWriter", "class_fractions", "masks_to_rle", "read_label_map", "rle_to_mask"]

logger = logging.getLogger(__name__)


def _as_uint8_labels(labels: np.ndarray) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or labels.ndim != 2:
        got = labels.shape if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"labels must be a (H, W) integer array, got {got}")
    if labels.dtype == np.uint8:
        return np.ascontiguousarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(
            f"labels must be in 0..255 to be stored as uint8 PNG, got {labels.min()}..{labels.max()}"
        )
    return np.ascontiguousarray(labels.astype(np.uint8))


class LabelMapWriter:
    """Writes one single-channel 8-bit PNG per frame, ``{index:06d}.png``, whose pixel values are the labels.

    PNG is lossless, so :func:`read_label_map` returns exactly the labels written. Usable with ``with``.
    """

    def __init__(self, directory: str | Path, *, compression: int = 3) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.directory}: cannot create the label-map folder ({e.strerror})") from e
        self._params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
        self.count = 0

    def path_for(self, index: int) -> Path:
        """Where frame ``index``'s label map goes."""
        return self.directory / f"{int(index):06d}.png"

    def write(self, index: int, labels: np.ndarray) -> Path:
        """Write ``labels`` (``(H, W)`` integers in 0..255) for frame ``index``; returns the file path."""
        path = self.path_for(index)
        if not cv2.imwrite(str(path), _as_uint8_labels(labels), self._params):
            raise InputError(f"{path}: could not write the label map (check the folder is writable)")
        self.count += 1
        return path

    def close(self) -> None:
        """Nothing is buffered; present so the writer is a sink like the others."""
        logger.debug("%d label maps written to %s", self.count, self.directory)

    def __enter__(self) -> LabelMapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_label_map(path: str | Path) -> np.ndarray:
    """Read a label-map PNG back: ``uint8 (H, W)`` labels, exactly as written."""
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise InputError(f"{path}: not a readable PNG label map")
    if labels.ndim != 2:
        raise InputError(f"{path}: a label map must have one channel, got shape {labels.shape}")
    return labels


def class_fractions(labels: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Fraction of the frame's pixels of each class: ``{name: fraction in [0, 1]}`` for every class.

    The denominator is all pixels, so pixels of labels outside ``classes`` (e.g. ignore 255) count in no
    class and the fractions then sum to less than 1.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got {labels.shape}")
    total = labels.size
    flat = labels.astype(np.int64, copy=False).ravel()
    flat = flat[(flat >= 0) & (flat < len(classes))]
    counts = np.bincount(flat, minlength=len(classes))
    return {name: (float(counts[i]) / total if total else 0.0) for i, name in enumerate(classes)}


def masks_to_rle(
    labels: np.ndarray, class_ids: Sequence[int], *, classes: Sequence[str] | None = None
) -> dict[str, dict[str, object]]:
    """COCO run-length encodings of one binary mask per requested class, JSON-ready.

    Returns ``{key: {"size": [H, W], "counts": str}}`` with ``key`` the class name (from ``classes``) or
    the class id as a string; ``counts`` is the compressed RLE string of ``pycocotools.mask.encode``.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got {labels.shape}")
    out: dict[str, dict[str, object]] = {}
    for cid in class_ids:
        mask = np.asfortranarray((labels == int(cid)).astype(np.uint8))
        rle = mask_utils.encode(mask)
        key = classes[int(cid)] if classes is not None else str(int(cid))
        out[key] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return out


def rle_to_mask(rle: dict[str, object]) -> np.ndarray:
    """Decode one entry of :func:`masks_to_rle` back to a ``bool (H, W)`` mask."""
    counts = rle["counts"]
    coded = {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return mask_utils.decode(coded).astype(bool)
