"""`hrstream eval coco`: COCO keypoint AP through the command, checked against pycocotools itself."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrstream.cli import main

COCO_DIR = Path(__file__).parent / "data" / "coco"
GT = COCO_DIR / "test_coco.json"


def _ap(stdout: str) -> float:
    return next(float(line.split()[-1]) for line in stdout.splitlines() if line.startswith("AP "))


def test_ground_truth_as_predictions_scores_ap_one(tmp_path: Path) -> None:
    gt = json.loads(GT.read_text())
    preds = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt["annotations"]
        if a["num_keypoints"] > 0
    ]
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(preds))
    r = CliRunner().invoke(main, ["eval", "coco", str(path), "--gt", str(GT)])
    assert r.exit_code == 0, r.output
    assert _ap(r.output) == pytest.approx(1.0)


def test_example_predictions_score_what_pycocotools_reports() -> None:
    preds = COCO_DIR / "example_coco_preds.json"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(GT))
        ev = COCOeval(coco, coco.loadRes(str(preds)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    r = CliRunner().invoke(main, ["eval", "coco", str(preds), "--gt", str(GT)])
    assert r.exit_code == 0, r.output
    assert _ap(r.output) == pytest.approx(ev.stats[0], abs=1e-4)
    assert _ap(r.output) == pytest.approx(0.8609, abs=1e-4)  # the figure pycocotools prints for this file


def test_unreadable_results_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    r = CliRunner().invoke(main, ["eval", "coco", str(bad), "--gt", str(GT)])
    assert r.exit_code != 0
    assert "Traceback" not in r.output
