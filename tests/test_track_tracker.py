"""PoseTracker on synthetic scenes with known identities, scored with motmetrics (CLEAR MOT and IDF1).

Ground truth and tracker boxes are matched at IoU >= 0.5; IoU comes from pycocotools, not from the code
under test.
"""

from __future__ import annotations

import logging

import motmetrics as mm
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from support.trajectories import SKELETON_TEMPLATE, PersonPath, crossing_people, frame_times, make_scene

from hrstream.errors import ConfigError
from hrstream.track import PoseTracker
from hrstream.types import Poses

log = logging.getLogger(__name__)


def _xywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def _distances(gt: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """motmetrics distance ``1 - IoU`` (NaN below IoU 0.5), ``(len(gt), len(hyp))``."""
    if len(gt) == 0 or len(hyp) == 0:
        return np.empty((len(gt), len(hyp)))
    iou = np.asarray(mask_utils.iou(_xywh(hyp), _xywh(gt), [0] * len(gt))).T
    return np.where(iou >= 0.5, 1.0 - iou, np.nan)


def run_scene(frames, tracker: PoseTracker) -> tuple[dict[str, float], list[int]]:
    acc = mm.MOTAccumulator(auto_id=True)
    ids_seen: list[int] = []
    for f in frames:
        out = tracker.update(f.poses, t=f.t).tracked()
        assert out.track_ids is not None
        assert list(out.track_ids) == sorted(out.track_ids)  # stable order: by ID
        ids_seen += [i for i in out.track_ids.tolist() if i not in ids_seen]
        acc.update(f.gt_ids.tolist(), out.track_ids.tolist(), _distances(f.gt_boxes, out.boxes))
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name="scene")
    return summary.to_dict("records")[0], ids_seen


@pytest.mark.parametrize("fps", [5.0, 30.0, 60.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_crossing_and_occlusion_keep_identities(fps, seed):
    # frame times jitter by up to half a frame: the frame rate varies
    times = frame_times(4.0, fps, jitter=0.5, seed=seed)
    frames = make_scene(crossing_people(), times, keypoint_noise=4.0, box_noise=4.0, seed=seed)
    m, ids = run_scene(frames, PoseTracker())
    log.info(
        "fps %.0f seed %d: MOTA %.3f IDF1 %.3f switches %d ids %s",
        fps,
        seed,
        m["mota"],
        m["idf1"],
        m["num_switches"],
        ids,
    )
    assert m["num_switches"] == 0
    assert sorted(ids) == [1, 2, 3]  # the same three tracks at every frame rate, IDs from 1
    assert m["idf1"] >= 0.9
    assert m["mota"] >= 0.85  # the only misses are the frames before a track is confirmed


def test_occluded_person_gets_its_id_back():
    frames = make_scene(crossing_people(), frame_times(4.0, 30.0), seed=3)
    tracker = PoseTracker()
    ids_of_2 = set()
    for f in frames:
        out = tracker.update(f.poses, t=f.t).tracked()
        for gid, box in zip(f.gt_ids, f.gt_boxes, strict=True):
            d = _distances(box[None], out.boxes)[0]
            if gid == 2 and np.any(np.isfinite(d)):
                ids_of_2.add(int(out.track_ids[np.nanargmin(d)]))
        if 1.8 < f.t < 2.2:
            assert 2 not in f.gt_ids.tolist()
    assert ids_of_2 == {2}


def test_removed_track_id_is_never_reused():
    # person 1 leaves at 1.0 s; after max_age_s another person stands at the same place
    people = [
        PersonPath(1, (200.0, 300.0), (0.0, 0.0), t_end=1.0),
        PersonPath(2, (200.0, 300.0), (0.0, 0.0), t_start=2.5, t_end=4.0),
        PersonPath(3, (205.0, 300.0), (0.0, 0.0), t_start=5.5),
    ]
    frames = make_scene(people, frame_times(7.0, 30.0), seed=1)
    tracker = PoseTracker(max_age_s=1.0)
    m, ids = run_scene(frames, tracker)
    assert ids == [1, 2, 3]
    assert m["num_switches"] == 0
    assert tracker.num_tracks == 1


def test_reset_starts_a_new_video_with_ids_from_one():
    frames = make_scene(crossing_people(), frame_times(1.0, 30.0), seed=2)
    tracker = PoseTracker()
    for f in frames:
        tracker.update(f.poses, t=f.t)
    assert tracker.num_tracks == 3
    tracker.reset()
    assert tracker.num_tracks == 0
    for f in frames:
        out = tracker.update(f.poses, t=f.t).tracked()
    assert sorted(out.track_ids.tolist()) == [1, 2, 3]


def _one(box, score, t=0.0) -> Poses:
    person = PersonPath(0, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), (0.0, 0.0))
    return Poses(
        boxes=np.array([box], np.float32),
        box_scores=np.array([score]),
        keypoints=person.keypoints(t)[None],
        keypoint_scores=np.full((1, 17), 0.9),
    )


def test_every_detection_is_returned_tentative_ones_with_id_minus_one():
    box, other = [100.0, 100.0, 180.0, 320.0], [400.0, 100.0, 480.0, 320.0]
    tracker = PoseTracker(min_hits=2)
    first = tracker.update(_one(box, 0.9), t=0.0)
    assert first.track_ids.tolist() == [-1]  # tentative, still reported
    a, b = _one(other, 0.9), _one(box, 0.9)
    both = Poses(
        np.concatenate([a.boxes, b.boxes]),
        np.concatenate([a.box_scores, b.box_scores]),
        np.concatenate([a.keypoints, b.keypoints]),
        np.concatenate([a.keypoint_scores, b.keypoint_scores]),
    )
    out = tracker.update(both, t=1 / 30)
    # the confirmed track first (by ID), then the new tentative one in detection order
    assert out.track_ids.tolist() == [1, -1]
    np.testing.assert_array_equal(out.boxes, np.array([box, other], np.float32))
    assert out.tracked().track_ids.tolist() == [1]


def test_confirmation_after_min_hits_and_two_stage_thresholds():
    box = [100.0, 100.0, 180.0, 320.0]
    tracker = PoseTracker(min_hits=3)
    outs = [tracker.update(_one(box, 0.9), t=i / 30).tracked() for i in range(3)]
    assert [len(o) for o in outs] == [0, 0, 1]  # the confirming detection is returned
    assert outs[2].track_ids.tolist() == [1]
    # a weak detection (between low_thr and high_thr) keeps the confirmed track matched
    weak = tracker.update(_one(box, 0.3), t=3 / 30).tracked()
    assert weak.track_ids.tolist() == [1]
    # below low_thr: ignored
    assert len(tracker.update(_one(box, 0.05), t=4 / 30).tracked()) == 0
    # weak or mid-score detections never start tracks
    lone = PoseTracker(min_hits=1)
    assert len(lone.update(_one(box, 0.3), t=0.0).tracked()) == 0
    assert len(lone.update(_one(box, 0.55), t=0.1).tracked()) == 0  # >= high_thr but < new_track_thr
    assert lone.num_tracks == 0
    assert lone.update(_one(box, 0.7), t=0.2).tracked().track_ids.tolist() == [1]


def test_flicker_does_not_consume_an_id():
    tracker = PoseTracker(min_hits=3)
    far = [500.0, 100.0, 580.0, 320.0]
    tracker.update(_one(far, 0.9), t=0.0)
    tracker.update(_one(far, 0.9), t=0.033)  # two hits, then gone: dropped while tentative
    tracker.update(Poses.empty(), t=0.066)
    assert tracker.num_tracks == 0
    box = [100.0, 100.0, 180.0, 320.0]
    out = [tracker.update(_one(box, 0.9), t=0.1 + i / 30).tracked() for i in range(3)][-1]
    assert out.track_ids.tolist() == [1]


def test_predict_boxes_follow_the_motion_without_changing_state():
    person = PersonPath(1, (100.0, 300.0), (120.0, 30.0), sway=(0.0, 1.0), swing=(0.0, 1.0))
    times = frame_times(1.0, 30.0)
    tracker = PoseTracker()
    for f in make_scene([person], times, keypoint_noise=1.0, box_noise=1.0):
        tracker.update(f.poses, t=f.t)
    t_next = float(times[-1]) + 0.2  # detector skipped for 0.2 s
    ids, boxes = tracker.predict_boxes(t_next)
    ids2, boxes2 = tracker.predict_boxes(t_next)
    assert ids.tolist() == [1] and boxes.dtype == np.float32 and boxes.shape == (1, 4)
    np.testing.assert_array_equal(boxes, boxes2)
    iou_pred = mask_utils.iou(_xywh(boxes), _xywh(person.box(t_next)[None]), [0])[0, 0]
    iou_still = mask_utils.iou(
        _xywh(person.box(float(times[-1]))[None]), _xywh(person.box(t_next)[None]), [0]
    )
    assert iou_pred > 0.85 and iou_pred > iou_still[0, 0] + 0.1
    # the pose from the crop, with a box score, goes back into update and keeps the identity
    crop = _one(boxes[0], 0.8, t=t_next)
    assert tracker.update(crop, t=t_next).tracked().track_ids.tolist() == [1]


def test_bad_parameters_raise_config_error():
    with pytest.raises(ConfigError, match="low_thr"):
        PoseTracker(low_thr=0.7, high_thr=0.5)
    with pytest.raises(ConfigError, match="min_hits"):
        PoseTracker(min_hits=0)
    with pytest.raises(ConfigError, match="match_thr"):
        PoseTracker(match_thr=0.0)
    with pytest.raises(ConfigError, match=r"iou_weight must be in \[0, 1\], got 1.5"):
        PoseTracker(iou_weight=1.5)
    with pytest.raises(ValueError, match="finite"):
        PoseTracker().update(Poses.empty(), t=float("nan"))


def _bounce_scene() -> list[tuple[float, np.ndarray, Poses, list[int]]]:
    """Two people in different shirts walk towards each other, B stops in front of A (A hidden for 6 frames),
    then each walks back the way they came: motion alone predicts A beyond B and swaps them."""
    out = []
    fps, w, h = 10.0, 320, 240
    xa = [40 + 12 * i for i in range(10)] + [148] * 6 + [148 - 12 * i for i in range(1, 10)]
    xb = [260 - 10 * i for i in range(10)] + [160] * 6 + [160 + 10 * i for i in range(1, 10)]
    shirts = {1: (200, 30, 30), 2: (30, 60, 200)}
    for f, (a, b) in enumerate(zip(xa, xb, strict=True)):
        img = np.full((h, w, 3), 128, np.uint8)
        boxes, kps, ids = [], [], []
        for pid, x in ((1, a), (2, b)):  # B drawn last: in front
            x0, y0, x1, y1 = x - 20, 60, x + 20, 200
            img[y0 + 20 : y0 + 80, x0:x1] = shirts[pid]  # torso
            img[y0 + 80 : y1, x0 + 5 : x1 - 5] = (40, 40, 40)  # trousers
            img[y0 : y0 + 20, x0 + 10 : x1 - 10] = (220, 170, 140)  # head
            k = np.zeros((17, 2), np.float32)
            k[:, 0], k[:, 1] = x, np.linspace(y0 + 5, y1 - 5, 17)
            k[5], k[6], k[11], k[12] = (
                (x0 + 2, y0 + 22),
                (x1 - 2, y0 + 22),
                (x0 + 4, y0 + 78),
                (x1 - 4, y0 + 78),
            )
            hidden = pid == 1 and 10 <= f < 16
            if not hidden:
                boxes.append([x0, y0, x1, y1])
                kps.append(k)
                ids.append(pid)
        n = len(boxes)
        poses = Poses(
            boxes=np.asarray(boxes, np.float32).reshape(n, 4),
            box_scores=np.full(n, 0.9, np.float32),
            keypoints=np.asarray(kps, np.float32).reshape(n, 17, 2),
            keypoint_scores=np.full((n, 17), 0.9, np.float32),
        )
        out.append((f / fps, img, poses, ids))
    return out


def _identity_errors(tracker: PoseTracker) -> int:
    """Frames after the occlusion where a person carries the other's ID (IDs: 1 = A, 2 = B, by first sight)."""
    errors = 0
    for t, img, poses, ids in _bounce_scene():
        res = tracker.update(poses, t=t, image=img).tracked()
        for box, tid in zip(res.boxes, res.track_ids, strict=True):
            truth = ids[int(np.flatnonzero(np.all(poses.boxes == box, axis=1))[0])]
            errors += int(tid != truth)
    return errors


def test_appearance_keeps_identities_where_motion_swaps_them():
    assert _identity_errors(PoseTracker(min_hits=1)) > 0  # the constant-velocity model takes B for A
    assert _identity_errors(PoseTracker(min_hits=1, appearance_weight=0.3)) == 0


def test_appearance_histograms_tell_shirts_apart():
    from hrstream.track.appearance import appearance_distance, box_histograms

    scene = _bounce_scene()
    _, img0, p0, _ = scene[0]
    _, img5, p5, _ = scene[5]
    h0 = box_histograms(img0, p0.boxes, p0.keypoints, p0.keypoint_scores)
    h5 = box_histograms(img5, p5.boxes, p5.keypoints, p5.keypoint_scores)
    assert np.allclose(h0.sum(1), 1.0)
    d = appearance_distance(h0, h5)
    assert d[0, 0] < 0.1 and d[1, 1] < 0.1 and d[0, 1] > 0.5 and d[1, 0] > 0.5
    none = box_histograms(img0, np.array([[400.0, 10, 420, 30]]))  # outside the frame
    assert not none.any() and np.isnan(appearance_distance(none, h0)).all()
    with pytest.raises(ConfigError, match="appearance_weight"):
        PoseTracker(appearance_weight=1.5)


def _person(box: list[float], score: float) -> tuple[np.ndarray, float]:
    return np.asarray(box, np.float32), score


def _frame(*people: tuple[np.ndarray, float]) -> Poses:
    """People with 17 confident keypoints in a column down their boxes (x at 10% of the width, y from 10% to
    90% of the height)."""
    boxes = np.stack([b for b, _ in people]).astype(np.float32)
    frac = np.stack([np.full(17, 0.1), np.linspace(0.1, 0.9, 17)], axis=1)  # (17, 2) fractions of w, h
    kps = boxes[:, None, :2] + frac[None] * (boxes[:, None, 2:] - boxes[:, None, :2])
    return Poses(
        boxes, np.array([s for _, s in people], np.float32), kps.astype(np.float32), np.ones((len(boxes), 17))
    )


def test_a_second_box_on_a_tracked_person_starts_no_track():
    # A walks right; on frame 3 the detector adds a second, shifted box on A (IoU ~0.6 with A's box),
    # and a separate person B appears far away. With new_track_iou 0.5 only B starts a track.
    def frames():
        for i in range(6):
            x = 100.0 + 4 * i
            a = _person([x, 50, x + 80, 250], 0.9)
            if i == 3:
                yield (
                    i / 25,
                    _frame(a, _person([x + 15, 60, x + 100, 248], 0.8), _person([400, 60, 470, 240], 0.9)),
                )
            else:
                yield i / 25, _frame(a)

    for thr, expected in ((1.0, {1, 2, 3}), (0.5, {1, 2})):
        tracker = PoseTracker(min_hits=1, new_track_iou=thr)
        ids = set()
        for t, poses in frames():
            ids |= set(tracker.update(poses, t=t).tracked().track_ids.tolist())
        assert ids == expected, (thr, ids)
    with pytest.raises(ConfigError, match="new_track_iou"):
        PoseTracker(new_track_iou=0.0)


# -- the association cost: IoU and OKS ---------------------------------------------------------------------
# Two people of one size stand 12 px apart (their boxes overlap, IoU about 0.8); A holds its arms out and
# bends its knees, B stands straight. The detector's boxes jitter by 8 px: box overlap alone cannot tell them
# apart from frame to frame, their poses can.
_STANDING = SKELETON_TEMPLATE * 200.0  # (17, 2) relative to the box centre
_ARMS_OUT = _STANDING.copy()
_ARMS_OUT[[7, 9], 0] += 45.0  # left elbow, wrist out to the side
_ARMS_OUT[[8, 10], 0] -= 45.0
_ARMS_OUT[[7, 8, 9, 10], 1] -= 50.0  # and up
_ARMS_OUT[[13, 14], 0] += np.array([30.0, -30.0])  # knees apart


def _overlapping_pair(seed: int, frames: int = 60) -> list[tuple[float, Poses, list[int]]]:
    rng = np.random.default_rng(seed)
    centres = {1: np.array([300.0, 300.0]), 2: np.array([312.0, 302.0])}
    figures = {1: _ARMS_OUT, 2: _STANDING}
    half = np.array([-50.0, -110.0, 50.0, 110.0])
    out = []
    for f in range(frames):
        ids = [int(i) for i in rng.permutation([1, 2])]  # detection order varies
        boxes = np.stack([np.tile(centres[i], 2) + half + rng.normal(0, 8.0, 4) for i in ids])
        kps = np.stack([centres[i] + figures[i] + rng.normal(0, 2.0, (17, 2)) for i in ids])
        poses = Poses(
            boxes.astype(np.float32), np.full(2, 0.9), kps.astype(np.float32), np.full((2, 17), 0.9)
        )
        out.append((f / 30.0, poses, ids))
    return out


def _pair_identity_errors(tracker: PoseTracker, seed: int) -> int:
    """Frames after both are confirmed where the track of the first frame's person 1 holds someone else."""
    owner: dict[int, int] = {}  # track id -> person at confirmation
    errors = 0
    for t, poses, ids in _overlapping_pair(seed):
        res = tracker.update(poses, t=t).tracked()
        for box, tid in zip(res.boxes, res.track_ids, strict=True):
            person = ids[int(np.flatnonzero(np.all(poses.boxes == box, axis=1))[0])]
            errors += int(owner.setdefault(int(tid), person) != person)
    return errors


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlapping_people_are_told_apart_by_their_poses(seed):
    assert _pair_identity_errors(PoseTracker(), seed) == 0
    # the scene needs the poses: box overlap alone (iou_weight 1) mixes the two people up
    assert _pair_identity_errors(PoseTracker(iou_weight=1.0), seed) > 0


def _coco_oks(a: np.ndarray, b: np.ndarray, area: float, valid: np.ndarray) -> float:
    """COCO's OKS (cocoeval.computeOks): mean of exp(-d^2 / (2 area (2 sigma)^2)) over the valid keypoints."""
    sigmas = np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087,
                       .087, .089, .089])  # fmt: skip
    d2 = ((a - b) ** 2).sum(1)
    e = d2 / (2 * area * (2 * sigmas) ** 2)
    return float(np.exp(-e)[valid].mean())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(mask_utils.iou(_xywh(a[None]), _xywh(b[None]), [0])[0, 0])


def _cost_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A track's box and keypoints and a detection moved from them, and which keypoints the detection sees."""
    rng = np.random.default_rng(seed)
    box0 = np.array([100.0, 80.0, 190.0, 300.0])
    kp0 = SKELETON_TEMPLATE * 220.0 + np.array([145.0, 190.0])
    box1 = box0 + rng.uniform(-25, 25, 4)
    kp1 = kp0 + rng.normal(0, 9.0, kp0.shape)
    seen = rng.uniform(size=17) > 0.3
    return box0, kp0, box1, kp1, seen


def _matches(iou_weight: float, match_thr: float, seed: int) -> bool:
    """Whether a confirmed track takes the detection of :func:`_cost_case` on the next frame (same time: the
    predicted box is the last box)."""
    box0, kp0, box1, kp1, seen = _cost_case(seed)
    tracker = PoseTracker(min_hits=1, iou_weight=iou_weight, match_thr=match_thr, keypoint_thr=0.3)
    first = Poses(
        box0[None].astype(np.float32), np.array([0.9]), kp0[None].astype(np.float32), np.ones((1, 17))
    )
    assert tracker.update(first, t=0.0).track_ids.tolist() == [1]
    scores = np.where(seen, 0.9, 0.1)[None]
    det = Poses(box1[None].astype(np.float32), np.array([0.9]), kp1[None].astype(np.float32), scores)
    return tracker.update(det, t=0.0).track_ids.tolist() == [1]  # else a new track (ID 2) starts


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("w", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_cost_mixes_iou_and_oks_by_iou_weight(w, seed):
    box0, kp0, box1, kp1, seen = _cost_case(seed)
    b0, b1 = box0.astype(np.float32).astype(np.float64), box1.astype(np.float32).astype(np.float64)
    k0, k1 = kp0.astype(np.float32), kp1.astype(np.float32)
    area = (b0[2] - b0[0]) * (b0[3] - b0[1])
    cost = w * (1 - _iou(b0, b1)) + (1 - w) * (1 - _coco_oks(k0, k1, area, seen))
    assert 0.05 < cost < 0.8
    # the detection is taken exactly while the cost is within match_thr
    assert _matches(w, cost + 1e-6, seed)
    assert not _matches(w, cost - 1e-6, seed)


def test_cost_is_box_overlap_alone_without_a_keypoint_seen_by_both():
    box0, kp0, box1, kp1, _ = _cost_case(0)
    cost = 1 - _iou(box0.astype(np.float32).astype(np.float64), box1.astype(np.float32).astype(np.float64))
    tracker = PoseTracker(min_hits=1, iou_weight=0.0, match_thr=cost + 1e-6)
    first = Poses(
        box0[None].astype(np.float32), np.array([0.9]), kp0[None].astype(np.float32), np.ones((1, 17))
    )
    tracker.update(first, t=0.0)
    blind = Poses(
        box1[None].astype(np.float32), np.array([0.9]), kp1[None].astype(np.float32), np.zeros((1, 17))
    )
    assert tracker.update(blind, t=0.0).track_ids.tolist() == [1]
    tracker = PoseTracker(min_hits=1, iou_weight=0.0, match_thr=cost - 1e-6)
    tracker.update(first, t=0.0)
    assert tracker.update(blind, t=0.0).track_ids.tolist() == [2]  # a new track


# -- time going backwards --------------------------------------------------------------------------------
def test_time_going_back_is_no_motion_and_keeps_identities(caplog):
    # one person walks right at 300 px/s; a frame stamped 0.5 s too early shows it where it is
    person = PersonPath(1, (100.0, 300.0), (300.0, 0.0), sway=(0.0, 1.0), swing=(0.0, 1.0))
    tracker = PoseTracker()
    times = frame_times(1.0, 30.0)
    for f in make_scene([person], times, keypoint_noise=0.5, box_noise=0.5):
        assert tracker.update(f.poses, t=f.t).tracked().track_ids.tolist() == ([1] if f.t > 0.05 else [])
    last = float(times[-1])
    now = last + 1 / 30
    with caplog.at_level(logging.WARNING, logger="hrstream.track.tracker"):
        out = tracker.update(_one(person.box(now), 0.9, t=now), t=now - 0.5)
    assert "time went back" in caplog.text
    assert out.track_ids.tolist() == [1]  # not predicted 0.5 s backwards (150 px away)
    # the clock goes on from the latest time seen: the next frame is one frame later, not 0.5 s
    nxt = now + 1 / 30
    assert tracker.update(_one(person.box(nxt), 0.9, t=nxt), t=nxt).track_ids.tolist() == [1]
    ids, boxes = tracker.predict_boxes(nxt - 1.0)  # a time before the last update: predicted where it was
    assert ids.tolist() == [1] and _iou(boxes[0].astype(np.float64), person.box(nxt)) > 0.9
    assert tracker.num_tracks == 1


def test_predicted_boxes_of_several_tracks_come_ordered_by_id():
    frames = make_scene(crossing_people(), frame_times(1.0, 30.0), seed=4)
    tracker = PoseTracker()
    for f in frames:
        tracker.update(f.poses, t=f.t)
    ids, boxes = tracker.predict_boxes(frames[-1].t + 0.1)
    assert ids.tolist() == [1, 2, 3] and boxes.shape == (3, 4)


def _shirt_person(img: np.ndarray, x: int, shirt: tuple[int, int, int]) -> tuple[list[float], np.ndarray]:
    """Draw a person (head, shirt, trousers) at column ``x`` of ``img``; return its box and keypoints."""
    x0, y0, x1, y1 = x - 20, 60, x + 20, 200
    img[y0 + 20 : y0 + 80, x0:x1] = shirt
    img[y0 + 80 : y1, x0 + 5 : x1 - 5] = (40, 40, 40)
    img[y0 : y0 + 20, x0 + 10 : x1 - 10] = (220, 170, 140)
    k = np.zeros((17, 2), np.float32)
    k[:, 0], k[:, 1] = x, np.linspace(y0 + 5, y1 - 5, 17)
    k[5], k[6], k[11], k[12] = (x0 + 2, y0 + 22), (x1 - 2, y0 + 22), (x0 + 4, y0 + 78), (x1 - 4, y0 + 78)
    return [x0, y0, x1, y1], k


def _shirt_frame(
    people: list[tuple[int, tuple[int, int, int]]], score: float = 0.9
) -> tuple[np.ndarray, Poses]:
    img = np.full((240, 480, 3), 128, np.uint8)
    drawn = [_shirt_person(img, x, shirt) for x, shirt in people]
    n = len(drawn)
    poses = Poses(
        np.asarray([b for b, _ in drawn], np.float32),
        np.full(n, 0.9, np.float32),
        np.asarray([k for _, k in drawn], np.float32),
        np.full((n, 17), score, np.float32),
    )
    return img, poses


def test_appearance_is_a_running_mean_of_unoccluded_views_only():
    from hrstream.track.appearance import box_histograms

    m = 0.8
    tracker = PoseTracker(min_hits=1, appearance_weight=0.3, appearance_momentum=m, keypoint_thr=0.5)
    red, orange, blue = (200, 30, 30), (220, 120, 30), (30, 60, 200)

    def hist(img: np.ndarray, poses: Poses, i: int) -> np.ndarray:
        # the torso where shoulders and hips score >= keypoint_thr, else the middle of the box
        return box_histograms(img, poses.boxes, poses.keypoints, poses.keypoint_scores, 0.5)[i]

    def appearance(track_id: int) -> np.ndarray | None:
        return next(tr.appearance for tr in tracker._tracks if tr.track_id == track_id)

    # frame 0: A alone (red); B and C overlap each other: neither gets an appearance yet
    img0, p0 = _shirt_frame([(60, red), (300, blue), (318, orange)])
    assert tracker.update(p0, t=0.0, image=img0).track_ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(appearance(1), hist(img0, p0, 0))
    assert appearance(2) is None and appearance(3) is None
    # frame 1: A alone in orange, its keypoints less sure (0.4): blended; B and C still overlap; tracks with
    # and without appearance share the cost matrix
    img1, p1 = _shirt_frame([(62, orange), (300, blue), (318, orange)], score=0.4)
    assert tracker.update(p1, t=0.04, image=img1).track_ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(appearance(1), m * hist(img0, p0, 0) + (1 - m) * hist(img1, p1, 0), atol=1e-6)
    before = appearance(1).copy()
    # frame 2: someone overlaps A: its view mixes two people and leaves A's histogram alone
    img2, p2 = _shirt_frame([(64, orange), (80, blue), (300, blue), (318, orange)])
    tracker.update(p2, t=0.08, image=img2)
    np.testing.assert_array_equal(appearance(1), before)


def _walking(height0: float, growth: float, t: float) -> tuple[np.ndarray, np.ndarray]:
    """A person walking towards the camera (``growth`` > 0, pixels of height per second) or away from it
    (< 0), centred at (320, 300): ``(keypoints (17, 2), box (4,) xyxy)`` at time ``t``, box as make_scene pads."""
    h = height0 + growth * t
    kp = SKELETON_TEMPLATE * h + np.array([320.0, 300.0])
    pad = 0.1 * h
    box = np.array([kp[:, 0].min() - pad, kp[:, 1].min() - pad, kp[:, 0].max() + pad, kp[:, 1].max() + pad])
    return kp, box


@pytest.mark.parametrize("growth", [90.0, -80.0])  # towards the camera, away from it
def test_predicted_boxes_grow_and_shrink_with_a_person_changing_size(growth: float) -> None:
    tracker = PoseTracker()
    times = frame_times(1.0, 30.0)
    for t in times:
        kp, box = _walking(200.0, growth, float(t))
        poses = Poses(np.array([box], np.float32), np.array([0.9]), kp[None], np.full((1, 17), 0.9))
        tracker.update(poses, t=float(t))
    t_last, ahead = float(times[-1]), 0.3  # the detector skipped for 0.3 s
    last = _walking(200.0, growth, t_last)[1]
    truth = _walking(200.0, growth, t_last + ahead)[1]
    ids, boxes = tracker.predict_boxes(t_last + ahead)
    assert ids.tolist() == [1]
    size = lambda b: np.array([b[2] - b[0], b[3] - b[1]])  # noqa: E731
    change, predicted = size(truth) - size(last), size(boxes[0]) - size(last)
    assert np.all(np.abs(change) > 10.0)  # the person's box changed by more than 10 px meanwhile
    # the Kalman prediction extrapolates the size: at least half of the true change, in its direction
    assert np.all(predicted * np.sign(change) > 0.5 * np.abs(change)), (predicted, change)
    assert np.all(np.abs(predicted - change) < 0.5 * np.abs(change)), (predicted, change)
