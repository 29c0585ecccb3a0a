"""``hrstream export`` on a job with several tracks (two too short for the offline Savitzky-Golay pass) and
people no confirmed track holds: every format read back with independent tools (json, csv, pycocotools,
and the official PoseTrack evaluation code where it is installed)."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from support.tracks_docs import NUM_FRAMES, TRACK_FRAMES, write_job

from hrstream.cli import main
from hrstream.exports import posetrack18_sequence, to_posetrack18

NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle",
]  # fmt: skip
# OpenPose's own point names (its output documentation), in its order.
BODY_25 = [
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip",
    "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe",
    "LHeel", "RBigToe", "RSmallToe", "RHeel",
]  # fmt: skip
COCO_18 = [
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
]  # fmt: skip
# OpenPose name -> COCO name of the same point (Neck and MidHip are midpoints, the feet are not predicted).
SAME = {
    "Nose": "nose", "RShoulder": "right_shoulder", "RElbow": "right_elbow", "RWrist": "right_wrist",
    "LShoulder": "left_shoulder", "LElbow": "left_elbow", "LWrist": "left_wrist", "RHip": "right_hip",
    "RKnee": "right_knee", "RAnkle": "right_ankle", "LHip": "left_hip", "LKnee": "left_knee",
    "LAnkle": "left_ankle", "REye": "right_eye", "LEye": "left_eye", "REar": "right_ear", "LEar": "left_ear",
}  # fmt: skip
FEET = {"LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"}


@pytest.fixture()
def job(tmp_path: Path) -> Path:
    return write_job(tmp_path / "job")


def _doc(job: Path) -> dict[str, Any]:
    return json.loads(job.read_text())


def _records(job: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in job.with_name(job.name.replace(".tracks.json", ".jsonl")).open()]


def _export(job: Path, out: Path, *args: str, code: int = 0) -> Any:
    res = CliRunner().invoke(main, ["export", str(job), "--out", str(out), "-q", *args])
    assert res.exit_code == code, res.output + str(res.exception)
    return res


def _expected(doc: dict[str, Any], use: str) -> dict[tuple[int, int], np.ndarray]:
    """(frame, track id) -> the keypoints a format must hold, read from the document by this test's rule:
    raw = ``keypoints``, smoothed = ``smoothed``, offline = ``smoothed_offline`` where the track has it, else
    ``smoothed`` (never the raw keypoints)."""
    out = {}
    for tr in doc["tracks"]:
        key = {"raw": "keypoints", "smoothed": "smoothed", "offline": "smoothed_offline"}[use]
        poses = tr[key] if key in tr else tr["smoothed"]
        for j, f in enumerate(tr["frames"]):
            out[(f, tr["track_id"])] = np.asarray(poses[j], np.float64)
    return out


def test_document_has_short_tracks(job: Path) -> None:
    doc = _doc(job)
    assert sorted(tr["track_id"] for tr in doc["tracks"]) == sorted(TRACK_FRAMES)
    assert [("smoothed_offline" in tr) for tr in doc["tracks"]] == [True, False, False]
    for tr in doc["tracks"]:  # the three keypoint sets differ, so a wrong one cannot pass
        assert not np.allclose(tr["keypoints"], tr["smoothed"], atol=0.5)
        if "smoothed_offline" in tr:
            assert not np.allclose(tr["smoothed_offline"], tr["smoothed"], atol=0.5)


@pytest.mark.parametrize("use", ["offline", "smoothed", "raw"])
def test_coco_and_csv_hold_the_chosen_keypoints(job: Path, tmp_path: Path, use: str) -> None:
    doc = _doc(job)
    want = _expected(doc, use)
    _export(job, tmp_path, "--format", "coco", "--use", use)
    results = json.loads((tmp_path / "street_clip.coco_results.json").read_text())
    assert len(results) == len(want) == sum(len(f) for f in TRACK_FRAMES.values())
    for r in results:
        kp = np.asarray(r["keypoints"]).reshape(17, 3)
        np.testing.assert_allclose(kp[:, :2], want[(r["image_id"], r["track_id"])], atol=1e-4)
    _export(job, tmp_path, "--format", "csv", "--use", use)
    with (tmp_path / "street_clip.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(want)
    for row in rows:
        xy = [[float(row[f"{n}_x"]), float(row[f"{n}_y"])] for n in NAMES]
        np.testing.assert_allclose(xy, want[(int(row["frame"]), int(row["track_id"]))], atol=1e-4)


@pytest.mark.parametrize("fmt", ["openpose", "openpose-coco18", "posetrack18"])
def test_tracked_formats_use_offline_keypoints_or_smoothed_for_short_tracks(
    job: Path, tmp_path: Path, fmt: str
) -> None:
    doc = _doc(job)
    want = _expected(doc, "offline")
    _export(job, tmp_path, "--format", fmt, "--use", "offline")
    got: dict[tuple[int, int], np.ndarray] = {}
    if fmt == "posetrack18":
        (path,) = tmp_path.glob("*.json")
        pt = json.loads(path.read_text())
        frame_of = {img["id"]: int(Path(img["file_name"]).stem) for img in pt["images"]}
        for a in pt["annotations"]:
            kp = np.asarray(a["keypoints"]).reshape(17, 3)
            got[(frame_of[a["image_id"]], a["track_id"])] = kp[:, :2]
        slots = [0, *range(5, 17)]  # the slots a COCO model fills (not head_bottom, head_top, the ears)
        for key, xy in got.items():
            np.testing.assert_allclose(xy[slots], want[key][slots], atol=1e-4)
    else:
        layout = BODY_25 if fmt == "openpose" else COCO_18
        for f in range(NUM_FRAMES):
            data = json.loads((tmp_path / f"street_clip_{f:012d}_keypoints.json").read_text())
            for person in data["people"]:
                pts = np.asarray(person["pose_keypoints_2d"]).reshape(len(layout), 3)
                xy = want[(f, person["person_id"][0])]
                for i, op_name in enumerate(layout):
                    if op_name in SAME:
                        np.testing.assert_allclose(pts[i, :2], xy[NAMES.index(SAME[op_name])], atol=1e-4)
                got[(f, person["person_id"][0])] = pts
    assert set(got) == set(want)


def test_unconfirmed_people_count_in_coco_ap(job: Path, tmp_path: Path) -> None:
    records = _records(job)
    untracked = [(r["frame"], p) for r in records for p in r["people"] if p["track_id"] is None]
    assert len(untracked) == NUM_FRAMES
    # ground truth: every person of every record, at the keypoints the records hold
    images = [{"id": f, "width": 640, "height": 240} for f in range(NUM_FRAMES)]
    anns = []
    for r in records:
        for p in r["people"]:
            kp = np.asarray(p["keypoints"], np.float64)
            x0, y0, x1, y1 = p["box"]
            anns.append({
                "id": len(anns) + 1, "image_id": r["frame"], "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                "keypoints": np.column_stack([kp[:, :2], np.full(17, 2.0)]).reshape(-1).tolist(),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
            })  # fmt: skip
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    gt.createIndex()

    def ap(results: list[dict[str, Any]]) -> float:
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return float(ev.stats[0])

    _export(job, tmp_path / "tracked", "--format", "coco")
    _export(job, tmp_path / "all", "--format", "coco", "--unconfirmed")
    tracked = json.loads((tmp_path / "tracked" / "street_clip.coco_results.json").read_text())
    everyone = json.loads((tmp_path / "all" / "street_clip.coco_results.json").read_text())
    assert len(everyone) == len(tracked) + len(untracked)
    extra = [r for r in everyone if r["track_id"] is None]
    for r, (f, p) in zip(extra, untracked, strict=True):
        assert r["image_id"] == f
        np.testing.assert_allclose(np.reshape(r["keypoints"], (17, 3)), p["keypoints"], atol=1e-4)
    assert ap(everyone) == pytest.approx(1.0)
    assert ap(tracked) < 0.75  # a third of the people missing: recall tops out at 11/19
    # --use raw takes the records' raw keypoints for them
    _export(job, tmp_path / "raw", "--format", "coco", "--unconfirmed", "--use", "raw")
    raw = [
        r
        for r in json.loads((tmp_path / "raw" / "street_clip.coco_results.json").read_text())
        if r["track_id"] is None
    ]
    for r, (_, p) in zip(raw, untracked, strict=True):
        np.testing.assert_allclose(np.reshape(r["keypoints"], (17, 3))[:, :2], p["raw_keypoints"], atol=1e-4)


def test_csv_rows(job: Path, tmp_path: Path) -> None:
    _export(job, tmp_path, "--format", "csv", "--unconfirmed")
    with (tmp_path / "street_clip.csv").open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert header[:9] == ["frame", "time_s", "track_id", "x0", "y0", "x1", "y1", "box_score", "score"]
    assert header[9:] == [f"{n}_{c}" for n in NAMES for c in ("x", "y", "score")]
    assert len(rows) == sum(len(f) for f in TRACK_FRAMES.values()) + NUM_FRAMES
    frames = [int(r[0]) for r in rows]
    assert frames == sorted(frames)
    doc = _doc(job)
    by_key = {(f, tr["track_id"]): (tr, j) for tr in doc["tracks"] for j, f in enumerate(tr["frames"])}
    for r in rows:
        assert float(r[1]) == pytest.approx(int(r[0]) / 25.0)
        if r[2] == "":
            continue  # a person no confirmed track holds
        tr, j = by_key[(int(r[0]), int(r[2]))]
        np.testing.assert_allclose([float(v) for v in r[3:7]], tr["boxes"][j], atol=1e-2)
        scores = [float(v) for v in r[11::3]]
        np.testing.assert_allclose(scores, tr["scores"][j], atol=1e-4)  # raw maxima, 1.06 included
        s = np.asarray(tr["scores"][j])
        assert float(r[8]) == pytest.approx(s[s > 0.2].mean() * tr["box_scores"][j], abs=1e-5)
    assert sum(r[2] == "" for r in rows) == NUM_FRAMES


@pytest.mark.parametrize(("fmt", "layout"), [("openpose", BODY_25), ("openpose-coco18", COCO_18)])
def test_openpose_layouts(job: Path, tmp_path: Path, fmt: str, layout: list[str]) -> None:
    doc = _doc(job)
    _export(job, tmp_path, "--format", fmt)
    files = sorted(tmp_path.glob("street_clip_*_keypoints.json"))
    assert len(files) == NUM_FRAMES
    tr = next(t for t in doc["tracks"] if t["track_id"] == 3)
    for j, f in enumerate(tr["frames"]):
        data = json.loads((tmp_path / f"street_clip_{f:012d}_keypoints.json").read_text())
        assert data["version"] == 1.3
        person = next(p for p in data["people"] if p["person_id"] == [3])
        pts = np.asarray(person["pose_keypoints_2d"]).reshape(-1, 3)
        assert len(person["pose_keypoints_2d"]) == 3 * len(layout)
        xy, sc = np.asarray(tr["smoothed"][j]), np.asarray(tr["scores"][j])
        assert pts[:, 2].min() >= 0.0 and pts[:, 2].max() <= 1.0  # confidences in [0, 1]
        for i, name in enumerate(layout):
            if name in SAME:
                k = NAMES.index(SAME[name])
                np.testing.assert_allclose(pts[i], [*xy[k], min(sc[k], 1.0)], atol=1e-4)
            elif name in FEET:
                assert pts[i].tolist() == [0.0, 0.0, 0.0]
            else:  # Neck, MidHip: midpoints of the shoulders / hips, the lower confidence
                a, b = (5, 6) if name == "Neck" else (11, 12)
                np.testing.assert_allclose(pts[i], [*(xy[a] + xy[b]) / 2, min(sc[a], sc[b])], atol=1e-4)
        assert layout.index("Neck") == 1
        assert pts[0, 2] == 1.0  # the nose's 1.06 clipped


def _posetrack(tmp_path: Path, name: str, source: str | None = None) -> tuple[Path, dict[str, Any]]:
    job = write_job(tmp_path / "job", name, source=source)
    _export(job, tmp_path / "pt", "--format", "posetrack18")
    (path,) = (tmp_path / "pt").glob("*.json")
    return path, json.loads(path.read_text())


@pytest.mark.parametrize(
    ("name", "digit", "split"),
    [("000342_mpii_test", 1, "val"), ("000001_bonn_train", 2, "train"), ("024575_mpiinew_test", 3, "val")],
)
def test_posetrack_names_keep_their_sequence(tmp_path: Path, name: str, digit: int, split: str) -> None:
    path, pt = _posetrack(tmp_path, name)
    assert path.name == f"{name}.json"
    number = int(name.split("_")[0])
    for f, img in enumerate(pt["images"]):
        assert img["file_name"] == f"images/{split}/{name}/{f:06d}.jpg"
        assert img["id"] == img["frame_id"] == int(f"{digit}{number:06d}{f:04d}")
        assert img["vid_id"] == f"{number:06d}" and img["nframes"] == NUM_FRAMES


def test_posetrack_any_name_gets_a_sequence_name(tmp_path: Path) -> None:
    path, pt = _posetrack(tmp_path, "street clip (1)")
    seq = path.stem
    number, source, rest = seq.split("_", 2)
    assert len(number) == 6 and number.isdigit() and source == "mpii" and "street" in rest
    assert posetrack18_sequence("street clip (1)").name != posetrack18_sequence("street clip (2)").name
    assert {Path(img["file_name"]).parent.name for img in pt["images"]} == {seq}
    assert [img["id"] for img in pt["images"]] == [int(f"1{number}{f:04d}") for f in range(NUM_FRAMES)]


def test_posetrack_frames_named_after_the_source_images(tmp_path: Path) -> None:
    folder = tmp_path / "000342_mpii_test"
    folder.mkdir()
    for n in range(20, 20 + NUM_FRAMES):  # PoseTrack's frames of this sequence start at 000020
        (folder / f"{n:06d}.jpg").write_bytes(b"")
    _, pt = _posetrack(tmp_path, "000342_mpii_test", source=str(folder))
    assert [img["file_name"] for img in pt["images"]] == [
        f"images/val/000342_mpii_test/{n:06d}.jpg" for n in range(20, 20 + NUM_FRAMES)
    ]
    assert [img["id"] for img in pt["images"]] == [10003420000 + n for n in range(20, 20 + NUM_FRAMES)]


def test_posetrack_slots(job: Path) -> None:
    doc = _doc(job)
    pt = to_posetrack18(doc, video_name="000342_mpii_test")
    assert pt["categories"][0]["keypoints"][:5] == [
        "nose",
        "head_bottom",
        "head_top",
        "left_ear",
        "right_ear",
    ]
    for a in pt["annotations"]:
        kp = np.asarray(a["keypoints"]).reshape(17, 3)
        assert kp[1:5].tolist() == [[0.0, 0.0, 0.0]] * 4  # no eyes in the head slots; ears are placeholders
        assert a["scores"][1:5] == [0.0] * 4
        assert (kp[[0, *range(5, 17)], 2] == 1).all()
        assert 0 <= a["track_id"] <= 999 and a["id"] // 100 == a["image_id"]
    assert len({a["id"] for a in pt["annotations"]}) == len(pt["annotations"])
    big = copy.deepcopy(doc)
    for tr in big["tracks"]:
        tr["track_id"] += 5000
    renumbered = to_posetrack18(big, video_name="000342_mpii_test")
    assert sorted({a["track_id"] for a in renumbered["annotations"]}) == [0, 1, 2]


def test_unconfirmed_is_for_coco_and_csv(job: Path, tmp_path: Path) -> None:
    res = _export(job, tmp_path, "--format", "openpose", "--unconfirmed", code=2)
    assert "--unconfirmed applies to --format coco, csv and coco-dataset" in res.output
    job.with_name("street_clip.jsonl").unlink()
    res = _export(job, tmp_path, "--format", "coco", "--unconfirmed", code=1)
    assert "street_clip.jsonl: cannot read the JSONL records" in res.output


def test_official_posetrack_loader_and_evaluation_accept_the_export(job: Path, tmp_path: Path) -> None:
    """poseval (the PoseTrack evaluation code) loads the export of any video name and scores it against a
    ground truth made of the same poses: AP 100 on every landmark the model predicts."""
    eval_helpers = pytest.importorskip(
        "poseval.eval_helpers",
        reason="the official PoseTrack evaluation code is not installed (it is not on PyPI: pip install "
        "git+https://github.com/leonid-pishchulin/poseval)",
    )
    evaluate_ap = pytest.importorskip("poseval.evaluateAP").evaluateAP
    for name in ("street_clip", "000342_mpii_test"):
        out = tmp_path / name
        path, pt = _posetrack(out, name)
        gt_dir, pred_dir = out / "gt", out / "pred"
        pred_dir.mkdir()
        shutil.copy(path, pred_dir / path.name)
        gt = copy.deepcopy(pt)
        for a in gt["annotations"]:  # PCKh needs head boxes: a 30 px box above the nose
            x, y = a["keypoints"][0], a["keypoints"][1]
            a["bbox_head"] = [x - 15, y - 25, 30, 30]
        gt_dir.mkdir()
        (gt_dir / path.name).write_text(json.dumps(gt))
        gt_frames, pr_frames = eval_helpers.load_data_dir(["", f"{gt_dir}/", f"{pred_dir}/"])
        assert len(gt_frames) == len(pr_frames) == NUM_FRAMES
        assert sum(len(f["annorect"]) for f in pr_frames) == sum(len(f) for f in TRACK_FRAMES.values())
        ap, _, _ = evaluate_ap(gt_frames, pr_frames, str(out), False, False)
        joint = eval_helpers.Joint()
        predicted = [i for i, n in joint.name.items() if isinstance(i, int) and n not in ("neck", "head_top")]
        np.testing.assert_allclose(ap[predicted, 0], 100.0)
        # moved predictions no longer match: the check can fail
        moved = copy.deepcopy(pt)
        for a in moved["annotations"]:
            a["keypoints"] = [v + 80.0 if i % 3 != 2 and v else v for i, v in enumerate(a["keypoints"])]
        (pred_dir / path.name).write_text(json.dumps(moved))
        gt_frames, pr_frames = eval_helpers.load_data_dir(["", f"{gt_dir}/", f"{pred_dir}/"])
        ap, _, _ = evaluate_ap(gt_frames, pr_frames, str(out), False, False)
        assert ap[predicted, 0].max() < 50.0
