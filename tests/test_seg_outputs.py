"""Label-map PNGs, class fractions, RLE masks, palettes and overlays."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hrstream.errors import InputError
from hrstream.seg import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    LabelMapWriter,
    class_fractions,
    get_palette,
    indexed_palette,
    masks_to_rle,
    overlay,
    read_label_map,
    rle_to_mask,
)

SEG = Path(__file__).parent / "data" / "seg"


@pytest.fixture(scope="module")
def gt_labels() -> np.ndarray:
    labels = cv2.imread(str(SEG / "cityscapes_frankfurt_000294_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
    assert labels is not None and labels.ndim == 2
    return labels


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(SEG / "cityscapes_frankfurt_000294_256x128.png")), cv2.COLOR_BGR2RGB)


def test_label_maps_decode_back_exactly(tmp_path, gt_labels):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 19, size=(37, 53), dtype=np.int64)  # non-uint8 input, odd size
    with LabelMapWriter(tmp_path / "labels") as writer:
        p0 = writer.write(0, gt_labels)
        p7 = writer.write(7, noise)
    assert p0.name == "000000.png" and p7.name == "000007.png"
    assert writer.count == 2
    back = read_label_map(p0)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, gt_labels)
    assert 255 in back  # the ignore label survives too
    np.testing.assert_array_equal(read_label_map(p7), noise.astype(np.uint8))
    with pytest.raises(ValueError, match="0..255"):
        writer.write(8, noise - 1)
    with pytest.raises(InputError):
        read_label_map(tmp_path / "missing.png")


def test_class_fractions_count_pixels(gt_labels):
    fr = class_fractions(gt_labels, CITYSCAPES_CLASSES)
    assert list(fr) == list(CITYSCAPES_CLASSES)
    ignored = float((gt_labels == 255).mean())
    assert sum(fr.values()) == pytest.approx(1.0 - ignored)
    for i, name in enumerate(CITYSCAPES_CLASSES):
        assert fr[name] == pytest.approx(float((gt_labels == i).mean()))
    assert fr["road"] > 0.1


def test_rle_masks_round_trip_through_json(gt_labels):
    ids = [0, 11, 13, 18]
    rles = json.loads(json.dumps(masks_to_rle(gt_labels, ids, classes=CITYSCAPES_CLASSES)))
    assert set(rles) == {"road", "person", "car", "bicycle"}
    for cid in ids:
        rle = rles[CITYSCAPES_CLASSES[cid]]
        assert rle["size"] == list(gt_labels.shape) and isinstance(rle["counts"], str)
        np.testing.assert_array_equal(rle_to_mask(rle), gt_labels == cid)
    assert set(masks_to_rle(gt_labels, [2])) == {"2"}


def test_palettes():
    classes, palette = get_palette("cityscapes")
    assert len(classes) == 19 and palette.shape == (19, 3) and palette.dtype == np.uint8
    assert tuple(palette[CITYSCAPES_CLASSES.index("person")]) == (220, 20, 60)
    assert len({tuple(c) for c in palette}) == 19
    lip = indexed_palette(20)
    assert tuple(lip[0]) == (0, 0, 0) and len({tuple(c) for c in lip}) == 20
    assert get_palette("person")[1].shape == (2, 3)
    with pytest.raises(ValueError, match="cityscapes"):
        get_palette("ade")


def test_overlay_blends_without_touching_the_input(frame, gt_labels):
    before = frame.copy()
    out = overlay(frame, gt_labels, CITYSCAPES_PALETTE, opacity=0.5, legend=False)
    np.testing.assert_array_equal(frame, before)
    assert out.shape == frame.shape and out.dtype == np.uint8 and out is not frame
    valid = gt_labels != 255
    expected = 0.5 * frame.astype(np.float32) + 0.5 * CITYSCAPES_PALETTE[np.where(valid, gt_labels, 0)]
    assert np.abs(out[valid].astype(np.float32) - expected[valid]).max() <= 1.0
    np.testing.assert_array_equal(out[~valid], frame[~valid])  # ignore pixels keep the frame
    np.testing.assert_array_equal(
        overlay(frame, gt_labels, CITYSCAPES_PALETTE, opacity=0.0, legend=False), frame
    )


def test_overlay_legend_is_drawn_in_the_corner(frame, gt_labels):
    plain = overlay(frame, gt_labels, CITYSCAPES_PALETTE, legend=False)
    with_legend = overlay(frame, gt_labels, CITYSCAPES_PALETTE, classes=CITYSCAPES_CLASSES)
    changed = np.any(with_legend != plain, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 200
    assert ys.min() < 10 and xs.min() < 10  # anchored top-left
    assert xs.max() < frame.shape[1] * 0.75  # a corner, not the whole frame
    # The swatch of the largest class is its palette colour.
    counts = np.bincount(gt_labels[gt_labels != 255].ravel(), minlength=19)
    top = int(np.argmax(counts))
    assert tuple(with_legend[8, 8]) == tuple(CITYSCAPES_PALETTE[top])
    with pytest.raises(ValueError, match="match"):
        overlay(frame, gt_labels[:10], CITYSCAPES_PALETTE)
