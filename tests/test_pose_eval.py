"""COCO keypoint evaluation through pycocotools, and export of Poses to COCO results."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrstream.errors import InputError
from hrstream.pose import (
    COCO_FLIP_PAIRS,
    COCO_KEYPOINT_METRICS,
    COCO_KEYPOINT_NAMES,
    COCO_SKELETON,
    evaluate_coco_keypoints,
    to_coco_results,
)
from hrstream.types import Poses

COCO_DIR = Path(__file__).parent / "data" / "coco"
GT = COCO_DIR / "test_coco.json"
PREDS = COCO_DIR / "example_coco_preds.json"


def _gt_as_results() -> list[dict]:
    gt = json.loads(GT.read_text())
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt["annotations"]
        if a["num_keypoints"] > 0 and not a["iscrowd"]
    ]


def test_ground_truth_scores_perfectly():
    stats = evaluate_coco_keypoints(_gt_as_results(), GT)
    assert set(stats) == set(COCO_KEYPOINT_METRICS)
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AR"] == pytest.approx(1.0)


def test_example_predictions_match_pycocotools(tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(GT))
        ev = COCOeval(gt, gt.loadRes(str(PREDS)), "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    from_path = evaluate_coco_keypoints(PREDS, GT)
    from_list = evaluate_coco_keypoints(json.loads(PREDS.read_text()), GT)
    assert from_path == from_list
    np.testing.assert_allclose([from_path[k] for k in COCO_KEYPOINT_METRICS], ev.stats, atol=1e-12)
    assert 0.0 < from_path["AP"] < 1.0


def test_degraded_predictions_score_lower():
    noisy = _gt_as_results()
    rng = np.random.default_rng(0)
    for r in noisy:
        kp = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, 8, size=(len(kp), 2))
        r["keypoints"] = kp.reshape(-1).tolist()
    assert evaluate_coco_keypoints(noisy, GT)["AP"] < 0.99


def test_to_coco_results_roundtrip_scores_perfectly():
    gt = json.loads(GT.read_text())
    image_ids = [im["id"] for im in gt["images"]]
    poses = []
    for image_id in image_ids:
        anns = [a for a in gt["annotations"] if a["image_id"] == image_id and a["num_keypoints"] > 0]
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(len(anns), 17, 3)
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        poses.append(
            Poses(
                boxes=boxes,
                box_scores=np.ones(len(anns)),
                keypoints=kp[..., :2],
                keypoint_scores=np.where(kp[..., 2] > 0, 0.9, 0.1),
            )
        )
    results = to_coco_results(poses, image_ids)
    assert len(results) == sum(len(p) for p in poses)
    first = results[0]
    assert set(first) == {"image_id", "category_id", "keypoints", "score"}
    assert len(first["keypoints"]) == 51
    # Official rescoring: box score x mean of keypoint scores above 0.2.
    assert first["score"] == pytest.approx(0.9)
    assert evaluate_coco_keypoints(results, GT)["AP"] == pytest.approx(1.0)
    plain = to_coco_results(poses, image_ids, rescore_official=False)
    assert plain[0]["score"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        to_coco_results(poses, image_ids[:-1])


def test_empty_and_unreadable(tmp_path):
    assert evaluate_coco_keypoints([], GT) == dict.fromkeys(COCO_KEYPOINT_METRICS, 0.0)
    with pytest.raises(InputError, match="nope.json"):
        evaluate_coco_keypoints(tmp_path / "nope.json", GT)


def test_coco_metadata_matches_annotations():
    cat = json.loads(GT.read_text())["categories"][0]
    assert tuple(cat["keypoints"]) == COCO_KEYPOINT_NAMES
    assert [tuple(a - 1 for a in limb) for limb in cat["skeleton"]] == list(COCO_SKELETON)
    for a, b in COCO_FLIP_PAIRS:
        assert COCO_KEYPOINT_NAMES[a].replace("left", "right") == COCO_KEYPOINT_NAMES[b]
