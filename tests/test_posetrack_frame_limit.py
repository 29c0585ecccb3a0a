"""PoseTrack18 image ids hold a 4-digit frame number: frames 0-9999 fit, frame 10000 is refused (it would
read as frame 0 of the next sequence)."""

from __future__ import annotations

import copy
import json

import pytest
from support.cli_checks import pose_run

from hrstream.errors import InputError
from hrstream.exports import posetrack18_sequence, to_posetrack18
from hrstream.exports.posetrack import posetrack18_image_id


def test_frames_0_to_9999_fit_an_image_id_and_10000_does_not() -> None:
    seq = posetrack18_sequence("000342_mpii_test")
    assert posetrack18_image_id(seq, 0) == 10003420000
    assert posetrack18_image_id(seq, 9999) == 10003429999
    for frame in (10_000, -1):
        with pytest.raises(InputError, match=f"frame {frame} does not fit a PoseTrack18 image id"):
            posetrack18_image_id(seq, frame)


def test_a_document_of_10000_frames_is_written_and_one_more_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    out = pose_run(tmp_path_factory)
    doc = json.loads(next(out.glob("*.tracks.json")).read_text())
    assert doc["tracks"]
    long = copy.deepcopy(doc)
    long["num_frames"] = 10_000  # frames 0..9999
    pt = to_posetrack18(long, video_name="000342_mpii_test")
    ids = [img["id"] for img in pt["images"]]
    assert len(ids) == len(set(ids)) == 10_000
    assert ids[0] == 10003420000 and ids[-1] == 10003429999
    assert pt["images"][-1]["file_name"].endswith("/000342_mpii_test/009999.jpg")
    longer = copy.deepcopy(doc)
    longer["num_frames"] = 10_001
    with pytest.raises(InputError, match="frame 10000 does not fit"):
        to_posetrack18(longer, video_name="000342_mpii_test")
