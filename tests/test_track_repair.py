"""Offline track repair (hrstream.track.repair): cut tracks where they pass to another person, join the pieces
of one person, by the colour of their clothing on frames where they stand clear of the others."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support.scenes import FPS, H, W, hand_over_scene, occlusion_scene, person, render

from hrstream.errors import ConfigError
from hrstream.pipeline.tracking import repair_params
from hrstream.track.appearance import clear_view_histograms
from hrstream.track.repair import RepairParams, repair_tracks


def _tracks_and_views(
    frames: list[list[tuple[int, str, float]]],
) -> tuple[list[dict[str, Any]], dict[tuple[int, int], np.ndarray], dict[tuple[int, int], str]]:
    """Online tracks, clear views and the truth (``(track_id, frame) -> shirt``) from per-frame lists of
    ``(online track id, shirt, x)``."""
    tracks: dict[int, dict[str, list]] = {}
    views: dict[tuple[int, int], np.ndarray] = {}
    truth: dict[tuple[int, int], str] = {}
    for f, people in enumerate(frames):
        img = render([(s, x) for _, s, x in people])
        boxes, kps = zip(*[person(x) for _, _, x in people], strict=True) if people else ((), ())
        hists = clear_view_histograms(
            img,
            np.asarray(boxes).reshape(-1, 4),
            np.asarray(kps).reshape(-1, 17, 2),
            np.ones((len(people), 17)),
        )
        for (tid, shirt, _), box, h in zip(people, boxes, hists, strict=True):
            tr = tracks.setdefault(tid, {"frames": [], "times": [], "boxes": []})
            tr["frames"].append(f)
            tr["times"].append(f / FPS)
            tr["boxes"].append(box)
            truth[(tid, f)] = shirt
            if h is not None:
                views[(tid, f)] = h
    return [{"track_id": t, **v} for t, v in sorted(tracks.items())], views, truth


def _shirts_per_track(
    repaired: list[dict[str, Any]], truth: dict[tuple[int, int], str]
) -> dict[int, set[str]]:
    return {
        t["track_id"]: {truth[(o, f)] for o, f in zip(t["online_ids"], t["frames"], strict=True)}
        for t in repaired
    }


def test_clear_views_only_for_people_standing_clear_and_inside_the_frame():
    img = render([("red", 60), ("blue", 150), ("green", 165), ("red", 310)])
    boxes, kps = zip(*[person(x) for x in (60, 150, 165, 310)], strict=True)
    scores = np.ones((4, 17))
    scores[0, 11] = 0.1  # a hip not seen: no clear view of the first
    hists = clear_view_histograms(img, np.asarray(boxes), np.asarray(kps), scores)
    assert hists[0] is None  # torso not confident
    assert hists[1] is None and hists[2] is None  # overlapping each other
    assert hists[3] is None  # torso reaching out of the frame
    alone = clear_view_histograms(img, np.asarray(boxes[:1]), np.asarray(kps[:1]), np.ones((1, 17)))
    assert alone[0] is not None and np.isclose(alone[0].sum(), 1.0)
    assert clear_view_histograms(img, np.zeros((0, 4)), np.zeros((0, 17, 2)), np.zeros((0, 17))) == []


def test_tracks_swapped_at_a_crossing_are_cut_and_joined_back():
    # red walks right, blue walks left; they overlap on frames 10-15 and the online tracks swap on frame 13
    frames = []
    for f in range(26):
        xr, xb = 40 + 9 * f, 280 - 9 * f
        frames.append([(1 if f < 13 else 2, "red", xr), (2 if f < 13 else 1, "blue", xb)])
    tracks, views, truth = _tracks_and_views(frames)
    assert _shirts_per_track(
        [{**t, "online_ids": [t["track_id"]] * len(t["frames"])} for t in tracks], truth
    ) == {1: {"red", "blue"}, 2: {"red", "blue"}}
    repaired = repair_tracks(tracks, views, FPS)
    shirts = _shirts_per_track(repaired, truth)
    assert sorted(map(sorted, shirts.values())) == [["blue"], ["red"]]
    for t in repaired:  # every frame kept once, in order
        assert t["frames"] == sorted(set(t["frames"])) and len(t["frames"]) == 26
        assert len(t["times"]) == len(t["boxes"]) == len(t["online_ids"]) == 26


def test_a_person_back_after_an_occlusion_gets_their_track_back_and_a_stranger_does_not():
    frames = occlusion_scene()
    tracks, views, truth = _tracks_and_views(frames)
    repaired = repair_tracks(tracks, views, FPS)
    by_id = {t["track_id"]: t for t in repaired}
    assert sorted(by_id) == [1, 2, 4]
    assert by_id[1]["online_ids"] == [1] * 12 + [3] * 15 and by_id[1]["frames"] == [
        *range(12),
        *range(30, 45),
    ]
    assert _shirts_per_track(repaired, truth) == {1: {"red"}, 2: {"blue"}, 4: {"green"}}
    # out of reach: a gap longer than max_gap_s leaves the pieces apart
    apart = repair_tracks(tracks, views, FPS, RepairParams(max_gap_s=1.0))
    assert sorted(t["track_id"] for t in apart) == [1, 2, 3, 4]


def test_a_track_that_passes_to_another_person_is_cut_and_the_rest_gets_a_new_id():
    frames = hand_over_scene()
    tracks, views, truth = _tracks_and_views(frames)
    repaired = repair_tracks(tracks, views, FPS)
    assert [(t["track_id"], t["frames"][0], len(t["frames"])) for t in repaired] == [(1, 0, 15), (2, 15, 15)]
    assert _shirts_per_track(repaired, truth) == {1: {"red"}, 2: {"green"}}
    assert repaired[1]["online_ids"] == [1] * 15


def test_one_person_stays_one_track_and_nothing_means_nothing():
    frames = [[(5, "blue", 60 + 4 * f)] for f in range(30)]
    tracks, views, _ = _tracks_and_views(frames)
    (t,) = repair_tracks(tracks, views, FPS)
    assert t["track_id"] == 5 and t["frames"] == list(range(30)) and t["online_ids"] == [5] * 30
    assert repair_tracks([], {}, FPS) == []
    (bare,) = repair_tracks(tracks, {}, FPS)  # no clear view: nothing to compare, nothing changes
    assert bare["frames"] == list(range(30))


def test_recipe_section_gives_params_or_none_and_names_bad_values():
    from hrstream.pipeline.recipe_load import load_recipe

    def tracker(**kw):
        over = {"tracker.repair.offline": True, "tracker.repair.max_gap_s": 4}
        over.update({f"tracker.{k}": v for k, v in kw.items()})
        return load_recipe("pose", None, over).tracker

    assert repair_params(tracker()) == RepairParams(cut_distance=0.8, join_distance=0.5, max_gap_s=4.0)
    assert repair_params(tracker(), online=True) is None
    assert repair_params(tracker(**{"repair.online": True}), online=True) == RepairParams()
    assert repair_params(tracker(enabled=False)) is None
    assert repair_params(tracker(**{"repair.offline": False})) is None
    with pytest.raises(ConfigError, match=r"tracker.repair.join_distance must be a number in \(0.0, 1.0\]"):
        tracker(**{"repair.join_distance": 2})
    with pytest.raises(ConfigError, match="tracker.repair.max_gap_s must be a number >= 0.0, got 'long'"):
        tracker(**{"repair.max_gap_s": "long"})


def _sink_run(tmp_path, frames, *, relabelled: bool):
    """Run the crossing scene's frames through a pose source's JSONL and tracks sinks with the repair on;
    ``relabelled``: the reported IDs differ from the tracker's (an online relabelling ran: reported = 10 +
    tracker ID)."""
    from fractions import Fraction

    from hrstream.io.base import SourceInfo
    from hrstream.outputs.files import JsonlSink, TracksSink
    from hrstream.outputs.segments import SourceOutputs
    from hrstream.types import Frame, FrameResult, Poses

    tmp_path.mkdir(parents=True, exist_ok=True)
    info = SourceInfo("cross", W, H, FPS, Fraction(1, 10), 2.6, len(frames), 0, False, False, "h264", "x.mp4")
    model = {"name": "test", "architecture": "synth", "width": None, "weights": None, "weights_sha256": None,
             "trained_on": None}  # fmt: skip
    names = tuple(f"k{i}" for i in range(17))
    sinks = {
        "jsonl": JsonlSink(tmp_path / "cross.jsonl"),
        "tracks": TracksSink(
            tmp_path / "cross.tracks.json",
            info,
            model=model,
            keypoint_names=names,
            skeleton=(),
            repair=RepairParams(),
        ),
    }
    out = SourceOutputs(lambda label, width, height: sinks)
    for f, people in enumerate(frames):
        img = render([(s, x) for _, s, x in people])
        boxes, kps = zip(*[person(x) for _, _, x in people], strict=True)
        ids = np.asarray([p[0] for p in people], np.int64)
        poses = Poses(
            boxes=np.asarray(boxes, np.float32),
            box_scores=np.full(len(people), 0.9, np.float32),
            keypoints=np.asarray(kps, np.float32),
            keypoint_scores=np.full((len(people), 17), 0.9, np.float32),
            track_ids=ids + 10 if relabelled else ids,
            tracker_ids=ids if relabelled else None,
        )
        frame = Frame("cross", f, f / FPS, img, pts=f, time_base=Fraction(1, 10))
        views = clear_view_histograms(img, poses.boxes, poses.keypoints, poses.keypoint_scores)
        out.write(FrameResult(frame, poses=poses, clear_views=views))
    out.close()
    return out


def _crossing() -> list[list[tuple[int, str, float]]]:
    return [
        [(1 if f < 13 else 2, "red", 40 + 9 * f), (2 if f < 13 else 1, "blue", 280 - 9 * f)]
        for f in range(26)
    ]


def test_tracks_sink_writes_repaired_tracks_and_jsonl_keeps_online_ids(tmp_path):
    """The sink keeps clear views while frames pass and writes the repaired tracks; the JSONL keeps the
    IDs reported online (what the video showed)."""
    import json

    from hrstream.schemas import validate

    out = _sink_run(tmp_path, _crossing(), relabelled=False)
    doc = json.loads(out.paths["tracks"].read_text())
    validate(doc, "tracks")
    x0 = {t["track_id"]: [b[0] for b in t["boxes"]] for t in doc["tracks"]}
    assert sorted(x0) == [1, 2]
    assert x0[1] == [40 + 9 * f - 20 for f in range(26)]  # track 1 follows red throughout
    assert doc["tracks"][0]["online_ids"] == [1] * 13 + [2] * 13
    records = [json.loads(x) for x in out.paths["jsonl"].read_text().splitlines()]
    assert [p["track_id"] for p in records[20]["people"]] == [2, 1]


def test_repair_starts_from_the_tracker_ids_and_a_failed_repair_keeps_the_reported_ids(tmp_path, monkeypatch):
    """With an online relabelling the repair starts from the tracker's own tracks (Poses.tracker_ids) and
    lists the reported IDs in online_ids; if the repair fails, the document holds the tracks as reported."""
    import json

    import hrstream.track.postprocess as postprocess

    out = _sink_run(tmp_path / "a", _crossing(), relabelled=True)
    doc = json.loads(out.paths["tracks"].read_text())
    assert [t["track_id"] for t in doc["tracks"]] == [1, 2]  # the tracker's IDs, repaired
    assert doc["tracks"][0]["online_ids"] == [11] * 13 + [12] * 13

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(postprocess, "repair_tracks", broken)
    out = _sink_run(tmp_path / "b", _crossing(), relabelled=True)
    doc = json.loads(out.paths["tracks"].read_text())
    assert [t["track_id"] for t in doc["tracks"]] == [11, 12]
    assert doc["tracks"][0]["online_ids"] == [11] * 26 and len(doc["tracks"][0]["frames"]) == 26
    assert [b[0] for b in doc["tracks"][0]["boxes"]][:13] == [40 + 9 * f - 20 for f in range(13)]
