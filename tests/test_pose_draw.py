"""Skeleton drawing: input untouched, limbs drawn where both ends are confident, colour per track id."""

from __future__ import annotations

import numpy as np

from hrstream.pose import COCO_SKELETON, color_for, draw_poses
from hrstream.types import Poses


def _person(offset: float = 0.0, track: int | None = None, low: tuple[int, ...] = ()) -> Poses:
    kp = np.zeros((17, 2), np.float32)
    kp[:, 0] = 150 + offset + np.arange(17) * 3  # far from the (5, 7) limb below
    kp[:, 1] = 30 + np.arange(17) * 8
    kp[5] = (60 + offset, 60)  # left shoulder
    kp[7] = (60 + offset, 120)  # left elbow: limb (5, 7) is a vertical segment
    scores = np.full((17,), 0.9, np.float32)
    scores[list(low)] = 0.1
    return Poses(
        boxes=np.array([[30 + offset, 20, 220 + offset, 180]], np.float32),
        box_scores=np.ones(1),
        keypoints=kp[None],
        keypoint_scores=scores[None],
        track_ids=None if track is None else np.array([track]),
    )


def test_input_untouched_and_limb_drawn():
    image = np.full((200, 240, 3), 20, np.uint8)
    before = image.copy()
    out = draw_poses(image, _person(track=3))
    np.testing.assert_array_equal(image, before)
    assert out is not image and out.shape == image.shape and out.dtype == np.uint8
    # The middle of limb (5, 7), away from any keypoint disc, carries the track's colour.
    assert (5, 7) in COCO_SKELETON
    np.testing.assert_array_equal(out[90, 60], color_for(3))
    assert np.any(out != image)


def test_low_score_end_hides_limb():
    image = np.zeros((200, 240, 3), np.uint8)
    shown = draw_poses(image, _person(track=1))
    hidden = draw_poses(image, _person(track=1, low=(7,)), kpt_thr=0.3)
    assert shown[90, 60].any()
    assert not hidden[90, 60].any()
    # Lowering the threshold under the score brings the limb back.
    again = draw_poses(image, _person(track=1, low=(7,)), kpt_thr=0.05)
    assert again[90, 60].any()


def test_colour_follows_track_id_and_label_and_boxes():
    image = np.zeros((200, 240, 3), np.uint8)
    a = draw_poses(image, _person(track=1))
    b = draw_poses(image, _person(track=2))
    assert not np.array_equal(a[90, 60], b[90, 60])
    unlabeled = draw_poses(image, _person())
    # The id label adds pixels above the person that the unlabeled drawing lacks.
    assert (a[:28] != unlabeled[:28]).any()
    boxed = draw_poses(image, _person(track=1), draw_boxes=True)
    assert boxed[100, 30].any() and not a[100, 30].any()


def test_empty_poses_returns_copy():
    image = np.ones((10, 10, 3), np.uint8)
    out = draw_poses(image, Poses.empty())
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_tentative_people_are_drawn_without_an_id():
    image = np.zeros((200, 240, 3), np.uint8)
    above = slice(0, 26)  # the label's rows: above the highest keypoint disc (y = 30, radius 3)
    confirmed = draw_poses(image, _person(track=4))
    assert confirmed[above].any()  # "id 4"
    tentative = draw_poses(image, _person(track=-1))  # the tracker's -1: no identity yet
    assert tentative[90, 60].any()  # the skeleton is drawn
    assert not tentative[above].any()  # but no "id -1" label
