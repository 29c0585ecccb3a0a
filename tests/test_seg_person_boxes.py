"""boxes_from_segmentation on synthetic label maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrstream.seg import boxes_from_segmentation

PERSON, RIDER, CAR = 11, 12, 13


@pytest.fixture
def labels() -> np.ndarray:
    lab = np.zeros((120, 200), np.uint8)
    lab[10:70, 20:50] = PERSON  # person A: x 20..49, y 10..69
    lab[40:100, 120:150] = RIDER  # person B (rider class): x 120..149, y 40..99
    lab[60:68, 130:135] = PERSON  # 40 px inside B: part of B, alone too small
    lab[5:9, 180:184] = PERSON  # 16 px speck
    lab[80:110, 60:110] = CAR  # not a person
    lab[75:100, 53:58] = PERSON  # person C, a thin strip (125 px) below-right of A
    return lab


def test_components_become_boxes_and_small_ones_are_dropped(labels):
    boxes, scores = boxes_from_segmentation(labels, [PERSON, RIDER], min_area=50)
    assert boxes.dtype == np.float32 and boxes.shape == (3, 4) and scores.shape == (3,)
    np.testing.assert_array_equal(scores, 1.0)
    got = {tuple(int(v) for v in b) for b in boxes}
    assert got == {(20, 10, 50, 70), (120, 40, 150, 100), (53, 75, 58, 100)}
    # Ordered by area when scores tie: A and B (1800 px) before C (125 px).
    assert tuple(boxes[-1]) == (53, 75, 58, 100)
    few, _ = boxes_from_segmentation(labels, [PERSON, RIDER], min_area=10)
    assert len(few) == 4  # the 16 px speck is kept now
    only_person, _ = boxes_from_segmentation(labels, [PERSON], min_area=50)
    assert {tuple(int(v) for v in b) for b in only_person} == {(20, 10, 50, 70), (53, 75, 58, 100)}


def test_scores_are_the_mean_person_probability(labels):
    probs = np.zeros((19, *labels.shape), np.float32)
    probs[PERSON][labels == PERSON] = 0.9
    probs[RIDER][labels == RIDER] = 0.6
    probs[PERSON][40:100, 120:150] += 0.1  # B: rider 0.6 + person 0.1 except where labelled person
    boxes, scores = boxes_from_segmentation(
        labels, [PERSON, RIDER], min_area=50, probs=torch.from_numpy(probs)
    )
    by_box = {tuple(int(v) for v in b): float(s) for b, s in zip(boxes, scores, strict=True)}
    assert by_box[(20, 10, 50, 70)] == pytest.approx(0.9)
    b_mask = (labels == PERSON)[40:100, 120:150]
    want_b = float(np.where(b_mask, 1.0, 0.7).mean())
    assert by_box[(120, 40, 150, 100)] == pytest.approx(want_b, rel=1e-5)
    assert list(scores) == sorted(scores, reverse=True)


def test_merge_joins_nearby_fragments_and_empty_maps(labels):
    merged, _ = boxes_from_segmentation(labels, [PERSON], min_area=50, merge_px=3)
    # C is 3 columns right of and 5 rows below A: one box around both.
    assert {tuple(int(v) for v in b) for b in merged} == {(20, 10, 58, 100)}
    boxes, scores = boxes_from_segmentation(np.zeros((8, 8), np.uint8), [PERSON])
    assert boxes.shape == (0, 4) and scores.shape == (0,)
