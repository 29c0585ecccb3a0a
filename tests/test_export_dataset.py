"""``hrstream export ... --format coco-dataset`` and exports of a whole run folder, with ``dataset.json``.

The import tested: the COCO keypoints file loads with pycocotools (``COCO()``, which indexes images,
annotations and categories), ``COCO.loadRes`` takes predictions made from it, and ``COCOeval`` (iouType
``keypoints``) scores those predictions AP 1.0 and shifted ones less; the images are read back with PyAV /
OpenCV and compared with the source frames. The layout is CVAT's "COCO Keypoints 1.0" (subset ``default``).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from support.cli_checks import VIDEOS, invoke, video_frames
from support.make_clips import _video
from support.tiny_models import TinyModel, tiny_pose_model
from support.tracks_docs import NUM_FRAMES, TRACK_FRAMES, write_job

from hrstream import __version__
from hrstream.models.datasets_meta import COCO_KEYPOINT_NAMES, COCO_SKELETON

ANN = Path("annotations") / "person_keypoints_default.json"
IMAGES = Path("images") / "default"


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


@pytest.fixture()
def job(tmp_path: Path) -> Path:
    """A known tracks document (3 tracks, 640x240, 8 frames) whose source is a real clip of that size."""
    clip = tmp_path / "src" / "street_clip.mp4"
    clip.parent.mkdir()
    _video(clip, "libx264", 640, 240, list(range(NUM_FRAMES)), Fraction(1, 25), crf=12)
    return write_job(tmp_path / "job", source=str(clip))


def _export(*args: str) -> tuple[int, str]:
    result = invoke(["export", *args, "-q"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def _coco(ds: Path) -> COCO:
    return COCO(str(ds / ANN))


def test_known_job_as_a_coco_dataset(job: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    assert _export(str(job), "--format", "coco-dataset", "--stride", "3", "--out", str(ds)) == (0, "")
    coco = _coco(ds)
    doc = json.loads(job.read_text())
    (cat,) = coco.loadCats(coco.getCatIds())
    assert cat["name"] == "person" and cat["keypoints"] == list(COCO_KEYPOINT_NAMES)
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO_SKELETON]
    images = coco.loadImgs(coco.getImgIds())
    assert [(im["frame"], im["file_name"]) for im in images] == [
        (f, f"street_clip_{f:06d}.jpg") for f in (0, 3, 6)
    ]
    # the images are the source's frames (JPEG q95 of a clean synthetic picture: a few levels at most)
    source = video_frames(doc["video"]["input"])
    for im in images:
        jpg = cv2.cvtColor(cv2.imread(str(ds / IMAGES / im["file_name"])), cv2.COLOR_BGR2RGB)
        assert jpg.shape == (240, 640, 3) == (im["height"], im["width"], 3)
        assert np.abs(jpg.astype(int) - source[im["frame"]].astype(int)).mean() < 2.0
    # one annotation per tracked person on those frames, with the document's smoothed keypoints and boxes
    tracks = {t["track_id"]: t for t in doc["tracks"]}
    expected = sorted((f, tid) for tid, frames in TRACK_FRAMES.items() for f in frames if f % 3 == 0)
    anns = coco.loadAnns(coco.getAnnIds())
    by_image = {im["id"]: im["frame"] for im in images}
    assert sorted((by_image[a["image_id"]], a["track_id"]) for a in anns) == expected
    for a in anns:
        tr, frame = tracks[a["track_id"]], by_image[a["image_id"]]
        j = tr["frames"].index(frame)
        kp = np.asarray(a["keypoints"]).reshape(-1, 3)
        scores = np.asarray(tr["scores"][j])
        seen = scores >= 0.2
        assert (kp[:, 2] == np.where(seen, 2, 0)).all() and a["num_keypoints"] == int(seen.sum())
        np.testing.assert_allclose(kp[seen, :2], np.asarray(tr["smoothed"][j])[seen], atol=0.006)
        assert (kp[~seen] == 0).all()  # the barely seen wrist is not labelled
        x0, y0, x1, y1 = tr["boxes"][j]
        np.testing.assert_allclose(a["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=0.006)
        assert a["area"] == pytest.approx((x1 - x0) * (y1 - y0), abs=0.01)
        assert a["attributes"]["track_id"] == a["track_id"] and a["iscrowd"] == 0
    data = json.loads((ds / "dataset.json").read_text())
    assert data["format"] == "hrstream.dataset" and data["hrstream_version"] == __version__
    assert data["export"] == {"format": "coco-dataset", "use": "smoothed", "unconfirmed": False, "stride": 3}
    assert data["models"] == [doc["model"]] and data["annotations"] == str(ANN)
    assert [(v["name"], v["frames"], v["images"], v["annotations"]) for v in data["videos"]] == [
        ("street_clip", NUM_FRAMES, 3, len(expected))
    ]


def test_predictions_made_from_it_score_ap_1(job: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    assert _export(str(job), "--format", "coco-dataset", "--out", str(ds))[0] == 0
    gt = _coco(ds)
    anns = gt.loadAnns(gt.getAnnIds())
    assert len(gt.getImgIds()) == NUM_FRAMES and len(anns) == sum(len(f) for f in TRACK_FRAMES.values())

    def score(preds: list[dict[str, Any]]) -> float:
        ev = COCOeval(gt, gt.loadRes(preds), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return float(ev.stats[0])

    exact = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in anns
    ]
    assert score(copy.deepcopy(exact)) == pytest.approx(1.0)
    shifted = copy.deepcopy(exact)
    for p in shifted:
        kp = np.asarray(p["keypoints"], np.float64).reshape(-1, 3)
        kp[:, :2] += 8.0
        p["keypoints"] = kp.reshape(-1).tolist()
    assert score(shifted) < 0.9


def test_unconfirmed_people_come_from_the_records(job: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    code, _ = _export(
        str(job), "--format", "coco-dataset", "--stride", "4", "--unconfirmed", "--out", str(ds)
    )
    assert code == 0
    anns = _coco(ds).loadAnns(_coco(ds).getAnnIds())
    untracked = [a for a in anns if a["track_id"] is None]
    assert len(untracked) == 2 and all("track_id" not in a["attributes"] for a in untracked)  # frames 0 and 4


def _run_folder(tiny: TinyModel, root: Path) -> tuple[Path, dict[str, Path]]:
    media = root / "media"
    media.mkdir(parents=True)
    clips = {"rot": "gen_rot90_160x120.mp4", "street": "street_960x540_5fps.mp4"}
    for name, clip in clips.items():
        shutil.copy(VIDEOS / clip, media / f"{name}.mp4")
    (media / "broken.mp4").write_bytes(b"not a video")
    out = root / "out"
    result = invoke(
        ["run", str(media), *tiny.args(), "--detector", "full-frame", "--no-video", "--out", str(out)]
    )
    assert result.exit_code == 1, result.stderr  # the broken one failed
    return out, {name: media / f"{name}.mp4" for name in clips}


def test_a_run_folder_as_a_coco_dataset(tiny_pose: TinyModel, tmp_path: Path) -> None:
    out, clips = _run_folder(tiny_pose, tmp_path)
    ds = tmp_path / "ds"
    assert _export(str(out), "--format", "coco-dataset", "--stride", "2", "--out", str(ds))[0] == 0
    coco = _coco(ds)
    images = coco.loadImgs(coco.getImgIds())
    assert len({im["id"] for im in images}) == len(images)
    docs = {n: json.loads((out / f"{n}.tracks.json").read_text()) for n in clips}
    for name, doc in docs.items():
        mine = [im for im in images if im["video"] == name]
        assert [im["frame"] for im in mine] == list(range(0, doc["num_frames"], 2))
        frames = video_frames(clips[name])  # upright, as the run saw them
        for im in mine:
            jpg = cv2.imread(str(ds / IMAGES / im["file_name"]))
            assert jpg.shape[:2] == (im["height"], im["width"]) == frames[im["frame"]].shape[:2]
            assert (im["width"], im["height"]) == (doc["video"]["width"], doc["video"]["height"])
    assert docs["rot"]["video"]["rotation"] != 0 and (
        docs["rot"]["video"]["width"],
        docs["rot"]["video"]["height"],
    ) == (120, 160)
    data = json.loads((ds / "dataset.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    recipe = {j["fingerprint"]["recipe"] for j in manifest["jobs"]}
    assert data["recipes"] == sorted(recipe)
    weights = Path(tiny_pose.weights).read_bytes()
    assert [m["weights_sha256"] for m in data["models"]] == [hashlib.sha256(weights).hexdigest()]
    assert {v["name"]: (v["frames"], v["images"]) for v in data["videos"]} == {
        n: (d["num_frames"], -(-d["num_frames"] // 2)) for n, d in docs.items()
    }
    assert {Path(v["input"]) for v in data["videos"]} == {p.resolve() for p in clips.values()}
    assert [s["input"].endswith("broken.mp4") and s["status"] for s in data["skipped"]] == ["failed"]


def test_per_video_formats_over_a_run_folder(tiny_pose: TinyModel, tmp_path: Path) -> None:
    out, clips = _run_folder(tiny_pose, tmp_path)
    folder, single = tmp_path / "csv", tmp_path / "one"
    assert _export(str(out), "--format", "csv", "--out", str(folder))[0] == 0
    for name in clips:
        assert _export(str(out / f"{name}.tracks.json"), "--format", "csv", "--out", str(single))[0] == 0
        assert (folder / f"{name}.csv").read_text() == (single / f"{name}.csv").read_text()
        assert len(list(csv.reader((folder / f"{name}.csv").open()))) > 1
    assert not (single / "dataset.json").exists()  # one tracks document: the files only, as before
    data = json.loads((folder / "dataset.json").read_text())
    assert data["export"]["format"] == "csv" and sorted(v["files"][0] for v in data["videos"]) == [
        "rot.csv",
        "street.csv",
    ]


def test_export_errors(tiny_pose: TinyModel, job: Path, tmp_path: Path) -> None:
    code, err = _export(str(tmp_path / "job"), "--format", "csv", "--out", str(tmp_path / "x"))
    assert code == 1 and "no manifest.json" in err
    code, err = _export(str(job), "--format", "csv", "--stride", "2", "--out", str(tmp_path / "x"))
    assert code == 2 and "--stride applies to --format coco-dataset" in err
    # a source that changed since the run is left out, with its error; the others are exported
    out, clips = _run_folder(tiny_pose, tmp_path / "run")
    shutil.copy(VIDEOS / "gen_vfr_160x120.mp4", clips["street"])  # another size now
    ds = tmp_path / "ds"
    code, err = _export(str(out), "--format", "coco-dataset", "--out", str(ds))
    assert code == 1 and "1 video(s) not exported" in err
    videos = {v["name"]: v for v in json.loads((ds / "dataset.json").read_text())["videos"]}
    assert videos["rot"]["error"] is None and videos["rot"]["images"] > 0
    assert "the source changed since it was processed" in videos["street"]["error"]
    assert not list((ds / IMAGES).glob("street_*"))


def test_a_video_that_cannot_be_exported_does_not_stop_the_others(
    tiny_pose: TinyModel, tmp_path: Path
) -> None:
    out, clips = _run_folder(tiny_pose, tmp_path)
    first, *others = sorted(clips)
    (out / f"{first}.jsonl").unlink()  # --unconfirmed needs the records: this video fails alone
    folder = tmp_path / "csv"
    code, err = _export(str(out), "--format", "csv", "--unconfirmed", "--out", str(folder))
    assert code == 1 and f"{first}.jsonl: cannot read the JSONL records" in err
    assert "Traceback" not in err and "Logging error" not in err  # one line, not a dump
    assert sorted(p.name for p in folder.glob("*.csv")) == [f"{n}.csv" for n in others]
    videos = {v["name"]: v for v in json.loads((folder / "dataset.json").read_text())["videos"]}
    assert videos[first]["error"] and all(not videos[n].get("error") for n in others)


def test_coco_dataset_takes_the_chosen_keypoints_and_can_be_exported_again(job: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    for _ in range(2):  # a second export into the same folder replaces the first
        assert _export(str(job), "--format", "coco-dataset", "--use", "raw", "--out", str(ds)) == (0, "")
    coco = _coco(ds)
    tracks = {t["track_id"]: t for t in json.loads(job.read_text())["tracks"]}
    frame_of = {im["id"]: im["frame"] for im in coco.loadImgs(coco.getImgIds())}
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns
    for a in anns:
        tr = tracks[a["track_id"]]
        j = tr["frames"].index(frame_of[a["image_id"]])
        kp = np.asarray(a["keypoints"]).reshape(-1, 3)
        seen = kp[:, 2] > 0
        np.testing.assert_allclose(kp[seen, :2], np.asarray(tr["keypoints"][j])[seen], atol=0.006)  # raw
