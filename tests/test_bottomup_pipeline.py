"""Bottom-up pose through the same pipeline: no detector, no crops, the people of whole frames as ``Poses``.

The tiny official HigherHRNet of ``tests/data/higherhrnet_reference`` (random weights, its official outputs on a
real COCO image recorded by the official code) runs through ``hrstream run`` and ``hrstream.stream``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.cli_checks import VIDEOS, invoke, read_jsonl

import hrstream
from hrstream.schemas import validate_jsonl

DATA = Path(__file__).parent / "data"
REF = DATA / "higherhrnet_reference"
CONFIG = REF / "higherhrnet_tiny.yaml"
IMAGE = DATA / "coco" / "000000000785.jpg"


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(REF / "official_higherhrnet_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def weights(fixture: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("higherhrnet") / "tiny.pth"
    torch.save(fixture["state_dict"], path)
    return path


def test_run_on_a_coco_image_writes_every_person_the_official_inference_groups(fixture, weights, tmp_path):
    out = tmp_path / "out"
    args = ["run", str(IMAGE), "--model", str(CONFIG), "--weights", str(weights), "--amp", "off"]
    res = invoke([*args, "--det-thr", "0", "--max-people", "1000", "-q", "--out", str(out)])
    assert res.exit_code == 0, res.stderr
    validate_jsonl(str(out / f"{IMAGE.stem}.jsonl"))
    (record,) = read_jsonl(out / f"{IMAGE.stem}.jsonl")
    people = record["people"]
    ref, scores = fixture["image_people"].numpy(), fixture["image_scores"].numpy()
    order = np.argsort(-scores, kind="stable")  # people come out best first
    assert len(people) == len(ref) == 400
    got = np.array([p["raw_keypoints"] for p in people])
    # records round pixels to 0.01 and scores to 1e-4: within half a last digit of the official values, plus
    # the float32 noise of the maps (a few 1e-6: the fixture's own tolerance for scores is 1e-5)
    np.testing.assert_allclose(got, ref[order, :, :2], rtol=0, atol=0.005 + 1e-5)
    box_scores = [p["box_score"] for p in people]
    np.testing.assert_allclose(box_scores, scores[order], rtol=0, atol=5e-5 + 1e-5)
    kscores = np.array([[k[2] for k in p["keypoints"]] for p in people])
    np.testing.assert_allclose(kscores, ref[order, :, 2], rtol=0, atol=5e-5 + 1e-5)
    # each person's box is the extent of the joints it found
    found = ref[order[0], :, 2] > 0
    box = people[0]["box"]
    assert box[:2] == pytest.approx(ref[order[0], found, :2].min(0), abs=0.01)
    assert (out / f"{IMAGE.stem}.annotated" / "000000.jpg").is_file()


def test_two_videos_of_two_sizes_through_one_bottom_up_engine(weights, tmp_path):
    clips = [str(VIDEOS / "street_960x540_5fps.mp4"), str(VIDEOS / "football_1280x720_mpeg4.mp4")]
    results = list(
        hrstream.stream(
            clips, task="pose", model=str(CONFIG), weights=str(weights), amp="off", streams=2, max_people=5,
            out=tmp_path / "out", batch_size=64,
        )
    )  # fmt: skip
    assert len(results) == 10
    by_batch: dict[int, set[str]] = {}
    for r in results:
        assert r.detections is None  # no detector ran
        assert 0 < len(r.poses) <= 5 and r.poses.keypoints.shape[1:] == (17, 2)
        by_batch.setdefault(r.batch, set()).add(r.source_id)
    # Both sources through the one engine. Whether a call holds frames of both depends on the decoders' timing
    # (5 frames each: one source can end before the other opens); a call of frames of two sizes, padded, is
    # test_bottomup.py::test_a_batch_of_frames_equals_single_frames.
    assert set().union(*by_batch.values()) == {"street_960x540_5fps", "football_1280x720_mpeg4"}
    doc = json.loads((tmp_path / "out" / "football_1280x720_mpeg4.tracks.json").read_text())
    assert doc["model"]["architecture"] == "pose_higher_hrnet" and doc["num_frames"] == 5


def test_bad_combinations_are_one_line_and_exit_2(weights, tmp_path):
    base = ["run", str(IMAGE), "--out", str(tmp_path / "out")]
    detector = invoke([*base, "--model", str(CONFIG), "--weights", str(weights), "--detector", "full-frame"])
    assert detector.exit_code == 2 and "bottom-up network" in detector.stderr
    assert len(detector.stderr.strip().splitlines()) == 1 and "Traceback" not in detector.stderr
    recipe = tmp_path / "bottomup.yaml"
    recipe.write_text("pose:\n  method: bottomup\n")
    wrong = invoke([*base, "--pipeline", str(recipe), "--model", "pose_hrnet_w32_256x192"])
    assert wrong.exit_code == 2 and "pose.method is bottomup" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
