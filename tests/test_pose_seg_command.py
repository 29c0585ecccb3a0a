"""`--task pose,seg` (both networks, one pass, one video) and `--detector seg` (boxes from the segmentation)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from support.tiny_models import TinyModel, tiny_pose_model, tiny_seg_model

from hrstream.models.datasets_meta import CITYSCAPES_CLASSES as CITYSCAPES
from hrstream.seg import boxes_from_segmentation, read_label_map

DATA = Path(__file__).parent / "data"
CLIP = DATA / "videos" / "street_960x540_5fps.mp4"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyModel, TinyModel]:
    folder = tmp_path_factory.mktemp("tiny")
    return tiny_pose_model(folder), tiny_seg_model(folder)


def _models(tiny: tuple[TinyModel, TinyModel]) -> list[str]:
    pose, seg = tiny
    return [*pose.args(), "--seg-model", str(seg.config), "--seg-weights", str(seg.weights)]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hrstream.cli", "run", *args, "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pose_and_seg_in_one_pass(tiny, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _run(str(CLIP), "--task", "pose,seg", *_models(tiny), "--detector", "full-frame", "--out", str(out))
    assert r.returncode == 0, r.stderr
    with av.open(str(CLIP)) as c:
        n = sum(1 for _ in c.decode(video=0))
    with av.open(str(out / f"{CLIP.stem}.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == n
    records = [json.loads(x) for x in (out / f"{CLIP.stem}.jsonl").read_text().splitlines()]
    assert [rec["frame"] for rec in records] == list(range(n))
    assert all("people" in rec and "classes" in rec for rec in records)
    assert all(len(rec["people"]) == 1 for rec in records)  # full-frame: one box per frame
    assert len(list((out / f"{CLIP.stem}.labels").glob("*.png"))) == n
    doc = json.loads((out / f"{CLIP.stem}.tracks.json").read_text())
    assert doc["model"]["segmentation"]["architecture"] == "seg_hrnet"


def test_detector_seg_boxes_come_from_the_label_maps(tiny, tmp_path: Path) -> None:
    """The random tiny segmentation net paints no 'person'; a recipe naming 'wall' as the person class makes
    its wall components the detections, so the boxes can be checked against the written label maps."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {"detector": {"seg_classes": ["wall"], "min_area": 2000}, "tracker": {"enabled": False}}
        )
    )
    out = tmp_path / "out"
    r = _run(
        str(CLIP),
        "--task",
        "pose,seg",
        "--pipeline",
        str(recipe),
        *_models(tiny),
        "--detector",
        "seg",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in (out / f"{CLIP.stem}.jsonl").read_text().splitlines()]
    total = 0
    for rec in records:
        labels = read_label_map(out / f"{CLIP.stem}.labels" / f"{rec['frame']:06d}.png")
        boxes, _ = boxes_from_segmentation(labels, [CITYSCAPES.index("wall")], min_area=2000)
        got = np.array([p["box"] for p in rec["people"]], np.float64).reshape(-1, 4)
        assert len(got) == len(boxes)
        np.testing.assert_allclose(np.sort(got, axis=0), np.sort(boxes.astype(np.float64), axis=0), atol=0.01)
        total += len(got)
    assert total > 0


def _seg_detector_recipe_error(tiny, tmp_path: Path, detector: dict) -> str:
    """Run ``--detector seg`` with a recipe holding ``detector``: exit 2 with one line on stderr, no
    traceback, nothing written; returns that line."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"detector": detector}))
    out = tmp_path / "o"
    r = _run(str(CLIP), "--pipeline", str(recipe), *_models(tiny), "--detector", "seg", "--out", str(out))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
    return r.stderr


def test_detector_seg_without_person_classes_is_a_clear_error(tiny, tmp_path: Path) -> None:
    assert "pedestrian" in _seg_detector_recipe_error(tiny, tmp_path, {"seg_classes": ["pedestrian"]})


def test_detector_flip_test_with_seg_boxes_is_a_clear_error(tiny, tmp_path: Path) -> None:
    assert "flip_test" in _seg_detector_recipe_error(tiny, tmp_path, {"flip_test": True})
