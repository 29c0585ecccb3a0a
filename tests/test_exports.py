"""Exports of a real tracks document: COCO results (read back and scored by pycocotools), PoseTrack18 and
OpenPose files, cross-checked against the run's own JSONL records."""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from support.cli_checks import pose_run

from hrstream.errors import InputError
from hrstream.exports import (
    export_tracks,
    load_tracks,
    posetrack18_sequence,
    to_coco_results,
    to_posetrack18,
    write_openpose,
)

POSE_CLIP = "street_960x540_5fps.mp4"
STEM = POSE_CLIP.rsplit(".", 1)[0]
# The 17 landmark names of PoseTrack18 annotations, in their slot order (from the dataset's own files).
POSETRACK18_NAMES = [
    "nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip
# The 15 landmarks the PoseTrack18 evaluation scores (the ears are placeholders).
POSETRACK18_EVALUATED = set(POSETRACK18_NAMES) - {"left_ear", "right_ear"}


@pytest.fixture(scope="module")
def pose_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pose_run(tmp_path_factory)


@pytest.fixture()
def tracks(pose_out: Path) -> dict[str, Any]:
    return load_tracks(pose_out / f"{STEM}.tracks.json")


@pytest.fixture()
def records(pose_out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (pose_out / f"{STEM}.jsonl").read_text().splitlines()]


def _gt(tracks: dict[str, Any], key: str) -> COCO:
    """A COCO ground truth whose people are the tracks' own ``key`` keypoints, every one labelled visible."""
    images, anns = [], []
    for f in range(tracks["num_frames"]):
        images.append({"id": f, "width": tracks["video"]["width"], "height": tracks["video"]["height"]})
    for tr in tracks["tracks"]:
        for j, f in enumerate(tr["frames"]):
            x0, y0, x1, y1 = tr["boxes"][j]
            kp = np.asarray(tr[key][j], np.float64)
            flat = np.column_stack([kp, np.full(len(kp), 2.0)]).reshape(-1).tolist()
            anns.append({
                "id": len(anns) + 1, "image_id": f, "category_id": 1, "iscrowd": 0, "keypoints": flat,
                "num_keypoints": len(kp), "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
            })  # fmt: skip
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": tracks["keypoint_names"], "skeleton": []}],
    }
    gt.createIndex()
    return gt


def _keypoint_ap(gt: COCO, results: list[dict[str, Any]]) -> float:
    dt = gt.loadRes(copy.deepcopy(results))
    ev = COCOeval(gt, dt, "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0])


def test_coco_results_load_and_score_ap_1(tracks: dict[str, Any]) -> None:
    results = to_coco_results(tracks)
    people = sum(len(tr["frames"]) for tr in tracks["tracks"])
    assert len(results) == people > 0
    gt = _gt(tracks, "smoothed")
    dt = gt.loadRes(copy.deepcopy(results))
    assert len(dt.getAnnIds()) == people
    assert _keypoint_ap(gt, results) == pytest.approx(1.0)
    # A person moved far away no longer matches: the evaluation is not vacuous.
    moved = copy.deepcopy(results)
    moved[0]["keypoints"] = [v + 500.0 if i % 3 != 2 else v for i, v in enumerate(moved[0]["keypoints"])]
    assert _keypoint_ap(gt, moved) < 0.9
    # The raw keypoints, scored against a ground truth made of the raw keypoints.
    assert _keypoint_ap(_gt(tracks, "keypoints"), to_coco_results(tracks, use="raw")) == pytest.approx(1.0)


def test_coco_results_fields(tracks: dict[str, Any]) -> None:
    tr = tracks["tracks"][0]
    for use, key in [("raw", "keypoints"), ("smoothed", "smoothed"), ("offline", "smoothed_offline")]:
        results = [r for r in to_coco_results(tracks, use=use) if r["track_id"] == tr["track_id"]]
        assert [r["image_id"] for r in results] == tr["frames"]
        for j, r in enumerate(results):
            kp = np.asarray(r["keypoints"], np.float64).reshape(-1, 3)
            np.testing.assert_allclose(kp[:, :2], tr.get(key, tr["smoothed"])[j], atol=1e-4)
            np.testing.assert_allclose(kp[:, 2], tr["scores"][j], atol=1e-4)
            assert r["category_id"] == 1
            s = np.asarray(tr["scores"][j])
            want = s[s > 0.2].mean() * tr["box_scores"][j] if (s > 0.2).any() else 0.0
            assert r["score"] == pytest.approx(want, abs=1e-5)
    with pytest.raises(ValueError, match="use='best'"):
        to_coco_results(tracks, use="best")


def test_coco_results_image_id_mapping(tracks: dict[str, Any]) -> None:
    frames = tracks["tracks"][0]["frames"]
    mapping = {frames[0]: 785, frames[-1]: 40083}
    results = to_coco_results(tracks, image_ids=mapping)
    assert sorted(r["image_id"] for r in results) == [785, 40083]
    as_list = to_coco_results(tracks, image_ids=[100 + f for f in range(frames[1] + 1)])
    assert [r["image_id"] for r in as_list] == [100 + f for f in frames[:2]]


def test_posetrack18_document(tracks: dict[str, Any]) -> None:
    video = "000342_mpii_test"
    doc = to_posetrack18(tracks, video_name=video)
    assert set(doc) == {"images", "annotations", "categories"}
    (cat,) = doc["categories"]
    assert cat["name"] == "person" and cat["id"] == 1
    assert cat["keypoints"] == POSETRACK18_NAMES
    assert set(cat["keypoints"]) >= POSETRACK18_EVALUATED
    assert all(1 <= a <= 17 and 1 <= b <= 17 for a, b in cat["skeleton"])
    # Every frame is an image; ids follow PoseTrack18's 1 + video (6 digits) + frame (4 digits).
    assert len(doc["images"]) == tracks["num_frames"]
    for f, img in enumerate(doc["images"]):
        assert img["file_name"] == f"images/val/{video}/{f:06d}.jpg"
        assert img["id"] == img["frame_id"] == int(f"1000342{f:04d}")
    ids = {img["id"] for img in doc["images"]}
    anns = doc["annotations"]
    assert len(anns) == sum(len(tr["frames"]) for tr in tracks["tracks"])
    assert len({a["id"] for a in anns}) == len(anns)
    by_track = {tr["track_id"]: tr for tr in tracks["tracks"]}
    for a in anns:
        assert a["image_id"] in ids and a["category_id"] == 1
        tr = by_track[a["track_id"]]
        j = tr["frames"].index(a["image_id"] - 10003420000)
        kp = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
        filled = [0, *range(5, 17)]  # a COCO model fills no head_bottom / head_top; the ears are placeholders
        np.testing.assert_allclose(kp[filled, :2], np.asarray(tr["smoothed"][j])[filled], atol=1e-4)
        np.testing.assert_allclose(
            np.asarray(a["scores"])[filled], np.asarray(tr["scores"][j])[filled], atol=1e-4
        )
        assert kp[1:5].tolist() == [[0.0, 0.0, 0.0]] * 4
        x0, y0, x1, y1 = tr["boxes"][j]
        np.testing.assert_allclose(a["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-2)
    json.dumps(doc, allow_nan=False)


def test_posetrack18_needs_posetrack_landmarks(tracks: dict[str, Any]) -> None:
    doc = copy.deepcopy(tracks)
    doc["keypoint_names"] = [f"kp{i}" for i in range(len(doc["keypoint_names"]))]
    with pytest.raises(InputError, match="hold none of PoseTrack18's landmarks"):
        to_posetrack18(doc, video_name="clip")


def test_openpose_files(tracks: dict[str, Any], records: list[dict[str, Any]], tmp_path: Path) -> None:
    paths = write_openpose(tracks, tmp_path / "op", STEM)
    assert [p.name for p in paths] == [f"{STEM}_{r['frame']:012d}_keypoints.json" for r in records]
    assert sorted(p.name for p in (tmp_path / "op").iterdir()) == [
        p.name for p in paths
    ]  # no temp files left
    for path, rec in zip(paths, records, strict=True):
        data = json.loads(path.read_text())
        assert data["version"] == 1.3
        tracked = [p for p in rec["people"] if p["track_id"] is not None]  # tracks hold confirmed people only
        assert len(data["people"]) == len(tracked)
        for person, want in zip(data["people"], tracked, strict=True):
            assert person["person_id"] == [want["track_id"]]
            body25 = np.reshape(person["pose_keypoints_2d"], (25, 3))
            kp = np.asarray(want["keypoints"])
            np.testing.assert_allclose(body25[0], [*kp[0, :2], min(kp[0, 2], 1.0)], atol=1e-4)  # Nose
            np.testing.assert_allclose(body25[2, :2], kp[6, :2], atol=1e-4)  # RShoulder
            assert person["face_keypoints_2d"] == person["hand_left_keypoints_2d"] == []
    written = sum(len(json.loads(p.read_text())["people"]) for p in paths)
    assert written == sum(len(tr["frames"]) for tr in tracks["tracks"]) > 0


def test_export_tracks_files(pose_out: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = pose_out / f"{STEM}.tracks.json"
    caplog.set_level(logging.INFO)
    (coco,) = export_tracks(src, "coco", tmp_path)
    assert coco.name == f"{STEM}.coco_results.json"
    assert json.loads(coco.read_text()) == to_coco_results(load_tracks(src))
    (pt,) = export_tracks(src, "posetrack18", tmp_path)
    assert pt.name == f"{posetrack18_sequence(STEM).name}.json" and set(json.loads(pt.read_text())) == {
        "images",
        "annotations",
        "categories",
    }
    op = export_tracks(src, "openpose", tmp_path / "op")
    assert len(op) == load_tracks(src)["num_frames"]
    assert any("OpenPose" in r.getMessage() for r in caplog.records)


def test_export_rejects_bad_documents(pose_out: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape(str(pose_out / f"{STEM}.jsonl")) + ": not JSON"):
        export_tracks(pose_out / f"{STEM}.jsonl", "coco", tmp_path)
    missing = tmp_path / "missing.tracks.json"
    with pytest.raises(InputError, match="missing.tracks.json: cannot read"):
        export_tracks(missing, "coco", tmp_path)
    bad = tmp_path / "bad.tracks.json"
    doc = json.loads((pose_out / f"{STEM}.tracks.json").read_text())
    doc["tracks"][0]["boxes"].pop()
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"bad.tracks.json: .* at \$\.tracks\[0\]\.boxes"):
        export_tracks(bad, "openpose", tmp_path / "op")
    assert not (tmp_path / "op").exists()
    with pytest.raises(ValueError, match="format 'xml'"):
        export_tracks(pose_out / f"{STEM}.tracks.json", "xml", tmp_path)
