"""Online identity repair (hrstream.track.relabel.OnlineRelabel): the tracker's IDs renamed frame by frame by
the colour of the torso, with what has been seen so far."""

from __future__ import annotations

import numpy as np
from support.scenes import FPS, hand_over_scene, occlusion_scene, person, render

from hrstream.track.appearance import clear_view_histograms
from hrstream.track.relabel import OnlineRelabel
from hrstream.track.repair import RepairParams
from hrstream.types import Poses


def _relabel(
    frames: list[list[tuple[int, str, float]]], relabel: OnlineRelabel, t0: float = 0.0
) -> list[dict[str, int]]:
    """Per frame, shirt -> reported ID, for frames given as lists of ``(tracker id, shirt, x)`` (ordered by
    tracker ID, as the tracker reports them), from time ``t0``."""
    out = []
    for f, people in enumerate(frames):
        people = sorted(people)
        img = render([(s, x) for _, s, x in people])
        boxes, kps = zip(*[person(x) for _, _, x in people], strict=True) if people else ((), ())
        n = len(people)
        poses = Poses(
            boxes=np.asarray(boxes, np.float32).reshape(n, 4),
            box_scores=np.full(n, 0.9, np.float32),
            keypoints=np.asarray(kps, np.float32).reshape(n, 17, 2),
            keypoint_scores=np.full((n, 17), 0.9, np.float32),
            track_ids=np.asarray([p[0] for p in people], np.int64),
        )
        views = clear_view_histograms(img, poses.boxes, poses.keypoints, poses.keypoint_scores)
        res = relabel.update(poses, t=t0 + f / FPS, views=views)
        assert np.array_equal(res.boxes, poses.boxes)  # only the IDs change
        out.append({shirt: int(tid) for (_, shirt, _), tid in zip(people, res.track_ids, strict=True)})
    return out


def test_a_track_passed_to_another_person_gets_a_new_id_after_min_views_frames():
    ids = _relabel(hand_over_scene(), OnlineRelabel())
    assert all(ids[f]["red"] == 1 for f in range(15))
    assert [ids[f]["green"] for f in range(15, 30)] == [1, 1] + [2] * 13  # the 3rd clear view decides


def test_a_person_back_after_an_occlusion_gets_their_id_back_and_a_stranger_does_not():
    frames = occlusion_scene()
    ids = _relabel(frames, OnlineRelabel())
    assert {ids[f]["red"] for f in range(12)} == {1} and {ids[f]["blue"] for f in range(45)} == {2}
    assert [ids[f]["red"] for f in range(30, 45)] == [3, 3] + [1] * 13
    assert {ids[f]["green"] for f in range(30, 45)} == {4}
    # out of reach: a gap longer than max_gap_s keeps the new ID
    ids = _relabel(frames, OnlineRelabel(RepairParams(max_gap_s=1.0)))
    assert {ids[f]["red"] for f in range(30, 45)} == {3}


def test_the_old_track_coming_back_after_its_person_was_taken_over_reports_a_new_id():
    # red hidden on frames 10-19 comes back as track 2 and takes back ID 1; then tracker track 1 (alive,
    # lost) matches a blue person on frame 30: it may not report red's ID
    frames = []
    for f in range(40):
        people = []
        if f < 10:
            people.append((1, "red", 40 + 2 * f))
        elif f >= 20:
            people.append((2, "red", 40 + 2 * f))
        if f >= 30:
            people.append((1, "blue", 280))
        frames.append(people)
    ids = _relabel(frames, OnlineRelabel())
    assert [ids[f]["red"] for f in range(20, 25)] == [2, 2, 1, 1, 1]
    assert {ids[f]["blue"] for f in range(30, 40)} == {3}


def test_memory_stays_bounded_on_a_long_stream_and_reset_restarts_ids():
    relabel = OnlineRelabel()
    for k in range(40):  # 40 people, one after another, each seen for 1 s, 10 s apart
        _relabel([[(k + 1, "red" if k % 2 else "blue", 60 + 4 * f)] for f in range(10)], relabel, t0=10.0 * k)
    assert len(relabel._people) <= 7 and len(relabel._tracks) <= 7  # the last minute's
    relabel.reset()
    ids = _relabel([[(7, "blue", 60)]], relabel)
    assert ids == [{"blue": 1}]


def test_track_stage_computes_clear_views_once_and_passes_them_on():
    """The recipe's repair switches: the track stage computes the clear views once per frame, relabels with
    them (online) and hands them to the sink in FrameResult.clear_views (offline, files only)."""
    from fractions import Fraction

    from hrstream.io.base import SourceInfo
    from hrstream.pipeline.recipe_load import PIPELINES_DIR, load_recipe
    from hrstream.pipeline.tracking import TrackStage, source_trackers
    from hrstream.runtime.markers import SourceStarted
    from hrstream.types import Frame, FrameResult

    def info(live: bool) -> SourceInfo:
        return SourceInfo("s", 320, 240, FPS, Fraction(1, 10), None, None, 0, False, live, "h264", "s")

    def track_stage(recipe):
        return TrackStage(source_trackers(recipe.tracker, recipe.smoother))

    synthetic = load_recipe(None, PIPELINES_DIR / "synthetic.yaml")
    stage = track_stage(synthetic)
    stage.on_marker(SourceStarted("s", info(False)))
    stage.on_marker(SourceStarted("live", info(True)))
    assert stage.states.get("s").relabel is not None and stage.states.get("s").clear_views
    assert stage.states.get("live").clear_views  # the online repair needs them live too
    plain = track_stage(load_recipe("pose"))
    plain.on_marker(SourceStarted("s", info(False)))
    assert plain.states.get("s").relabel is None and not plain.states.get("s").clear_views

    results = []
    for f, people in enumerate(hand_over_scene()):
        img = render([(s, x) for _, s, x in people])
        box, kps = person(people[0][2])
        poses = Poses(
            boxes=np.asarray([box], np.float32),
            box_scores=np.full(1, 0.9, np.float32),
            keypoints=np.asarray([kps], np.float32),
            keypoint_scores=np.full((1, 17), 0.9, np.float32),
        )
        results += list(stage.process(FrameResult(Frame("s", f, f / FPS, img), poses=poses)))
    assert all(r.clear_views is not None and len(r.clear_views) == len(r.poses) == 1 for r in results)
    assert all(r.clear_views[0] is not None for r in results)  # one person, always clear
    assert [int(r.poses.tracker_ids[0]) for r in results] == [1] * 30  # the tracker keeps one track ...
    assert [int(r.poses.track_ids[0]) for r in results] == [1] * 17 + [2] * 13  # ... renamed on green
    plain_out = next(iter(plain.process(FrameResult(Frame("s", 0, 0.0, img), poses=poses))))
    assert plain_out.clear_views is None
