"""One run lifecycle for the command line and the library: the same outputs from both, names through the output
folder's manifest, sinks added from outside the package, and ``--detect-every`` carrying boxes with the source's
one tracker.

Real clips, the tiny official-architecture network of ``support.tiny_models``, real files read back with
independent tools.
"""

from __future__ import annotations

import errno
import os
import shutil
from fractions import Fraction

import numpy as np
import pytest
from support.cli_checks import VIDEOS, invoke, manifest_jobs, read_jsonl
from support.tiny_models import TinyModel, tiny_pose_model

import hrstream
from hrstream.io.base import SourceInfo
from hrstream.outputs import SegmentContext, Sink, register_sink, unregister_sink
from hrstream.pipeline.detection import DetectStage
from hrstream.pipeline.recipe_load import load_recipe
from hrstream.pipeline.tracking import TrackStage, source_trackers
from hrstream.runtime.markers import SourceEnded, SourceStarted
from hrstream.types import Detections, Frame, FrameResult, Poses

CLIP_A = VIDEOS / "street_960x540_5fps.mp4"  # 5 frames
CLIP_B = VIDEOS / "football_1280x720_mpeg4.mp4"  # 5 frames


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


def _options(tiny: TinyModel) -> dict:
    # one frame per network call and fp32: the outputs do not depend on how frames happened to be batched
    return {
        "model": str(tiny.config),
        "weights": str(tiny.weights),
        "detector": "full-frame",
        "amp": "off",
        "batch_size": 1,
        "video": False,
    }


def test_the_command_and_stream_out_write_byte_identical_records_and_tracks(tiny_pose, tmp_path):
    args = [
        "run",
        str(CLIP_A),
        *tiny_pose.args(),
        "--detector",
        "full-frame",
        "--amp",
        "off",
        "--batch-size",
        "1",
    ]
    res = invoke([*args, "--no-video", "-q", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.stderr
    results = list(hrstream.stream(str(CLIP_A), task="pose", out=tmp_path / "lib", **_options(tiny_pose)))
    assert len(results) == 5
    for suffix in (".jsonl", ".tracks.json"):
        cli = (tmp_path / "cli" / f"{CLIP_A.stem}{suffix}").read_bytes()
        lib = (tmp_path / "lib" / f"{CLIP_A.stem}{suffix}").read_bytes()
        assert cli == lib, suffix
    # the library's run is in its folder's manifest as the command's is
    _, jobs = manifest_jobs(tmp_path / "lib")
    assert jobs[str(CLIP_A)]["status"] == "ok" and jobs[str(CLIP_A)]["frames"] == 5


def test_two_stream_calls_with_the_same_file_name_never_overwrite_each_other(tiny_pose, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(CLIP_A if sub == "a" else CLIP_B, tmp_path / sub / "clip.mp4")
    out = tmp_path / "out"
    first = list(
        hrstream.stream(str(tmp_path / "a" / "clip.mp4"), task="pose", out=out, **_options(tiny_pose))
    )
    second = list(
        hrstream.stream(str(tmp_path / "b" / "clip.mp4"), task="pose", out=out, **_options(tiny_pose))
    )
    assert {r.source_id for r in first} == {"clip"} and {r.source_id for r in second} == {"clip_2"}
    a, b = read_jsonl(out / "clip.jsonl"), read_jsonl(out / "clip_2.jsonl")
    assert [r["width"] for r in a] == [960] * 5 and [r["width"] for r in b] == [1280] * 5
    # and the first one again keeps its name (and processes it again: the library yields every frame)
    again = list(
        hrstream.stream(str(tmp_path / "a" / "clip.mp4"), task="pose", out=out, **_options(tiny_pose))
    )
    assert len(again) == 5 and {r.source_id for r in again} == {"clip"}


class RecordingSink(Sink):
    """A sink of a test, not of the package: what it was given, per segment."""

    seen: list[tuple[str, str, int]] = []
    closed: list[str] = []

    def __init__(self, ctx: SegmentContext) -> None:
        self.name = ctx.name
        self.size = (ctx.source.width, ctx.source.height)

    def write(self, result: FrameResult) -> None:
        assert (result.frame.width, result.frame.height) == self.size
        RecordingSink.seen.append((self.name, result.frame.source_id, result.frame.index))

    def close(self) -> None:
        RecordingSink.closed.append(self.name)


def test_a_sink_from_outside_the_package_receives_every_result_of_a_two_source_run(tiny_pose, tmp_path):
    RecordingSink.seen, RecordingSink.closed = [], []
    register_sink("recording", RecordingSink)
    try:
        results = list(
            hrstream.stream([str(CLIP_A), str(CLIP_B)], task="pose", streams=2, **_options(tiny_pose))
        )
    finally:
        unregister_sink("recording")
    assert len(results) == 10
    by_source = {
        s: sorted(i for n, src, i in RecordingSink.seen if src == s) for s in (CLIP_A.stem, CLIP_B.stem)
    }
    assert by_source == {CLIP_A.stem: [0, 1, 2, 3, 4], CLIP_B.stem: [0, 1, 2, 3, 4]}
    assert all(name == src for name, src, _ in RecordingSink.seen)  # its segment's name: the source's
    assert sorted(RecordingSink.closed) == sorted([CLIP_A.stem, CLIP_B.stem])  # closed once each
    # unregistered: a later run does not call it
    list(hrstream.stream(str(CLIP_A), task="pose", **_options(tiny_pose)))
    assert len(RecordingSink.seen) == 10


class FullDiskSink(Sink):
    """A sink of a test whose writes for source ``a`` fail from its third frame on, as on a full disk; it
    records the order of what it was given (a shared log)."""

    log: list[tuple[str, int]] = []

    def __init__(self, ctx: SegmentContext) -> None:
        self.name = ctx.name

    def write(self, result: FrameResult) -> None:
        if self.name == "a" and result.frame.index >= 2:
            FullDiskSink.log.append(("a failed", result.frame.index))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        FullDiskSink.log.append((self.name, result.frame.index))

    def close(self) -> None:
        pass


def test_one_sources_failed_outputs_cost_that_source_only(tiny_pose, tmp_path):
    """Two sources in one pipeline; the outputs of ``a`` fail on its third frame. ``a`` fails with the cause,
    ``b`` keeps every frame (also those after ``a`` failed) and ends ok."""
    media = tmp_path / "media"
    media.mkdir()
    for name in ("a", "b"):
        shutil.copy(VIDEOS / "gen_vfr_160x120.mp4", media / f"{name}.mp4")  # 16 frames
    out = tmp_path / "out"
    FullDiskSink.log = []
    register_sink("full_disk", FullDiskSink)
    try:
        results = list(hrstream.stream(str(media), task="pose", streams=2, out=out, **_options(tiny_pose)))
    finally:
        unregister_sink("full_disk")
    failed_at = FullDiskSink.log.index(("a failed", 2))
    assert ("b", 15) in FullDiskSink.log[failed_at:]  # b went on after a's failure (what this test is about)
    assert sorted(i for n, i in FullDiskSink.log if n == "b") == list(range(16))
    assert [r.frame.index for r in results if r.source_id == "b"] == list(range(16))
    assert len(read_jsonl(out / "b.jsonl")) == 16
    # what a wrote before is kept (frame 2 too: the JSONL sink is given each result before this one)
    assert [r["frame"] for r in read_jsonl(out / "a.jsonl")] == [0, 1, 2]
    _, jobs = manifest_jobs(out)
    a, b = jobs[str(media / "a.mp4")], jobs[str(media / "b.mp4")]
    assert b["status"] == "ok" and b["frames"] == 16 and b["error"] is None
    assert a["status"] == "failed" and "No space left on device" in a["error"]


class CountingDetector:
    """A detector of one person box per frame, counting the frames it was asked about."""

    batched = False

    def __init__(self) -> None:
        self.asked: list[int] = []

    def detect(self, frames: list[Frame]) -> list[Detections]:
        self.asked += [f.index for f in frames]
        return [
            Detections(np.array([[10.0 + 4 * f.index, 20.0, 50.0 + 4 * f.index, 100.0]]), np.ones(1))
            for f in frames
        ]


def test_detect_every_carries_boxes_with_the_sources_one_tracker():
    """Between detector runs the boxes are where the source's tracker (the track stage's) predicts its people:
    boxes, not poses made up from boxes; the detector runs again on every n-th frame."""
    recipe = load_recipe("pose", None, {"tracker.min_hits": 1})
    trackers = source_trackers(recipe.tracker, recipe.smoother)
    detector = CountingDetector()
    detect = DetectStage(detector, every_n=3, trackers=trackers)
    track = TrackStage(trackers)
    info = SourceInfo("s", 200, 150, 10.0, Fraction(1, 10), None, None, 0, False, False, "h264", "s.mp4")
    for stage in (detect, track):
        stage.on_marker(SourceStarted("s", info))
    carried = []
    for i in range(7):
        (r,) = detect.process([FrameResult(Frame("s", i, i / 10, np.zeros((150, 200, 3), np.uint8)))])
        if i % 3:
            carried.append(r.detections)
        n = len(r.detections)
        r.poses = Poses(r.detections.boxes, r.detections.scores, np.zeros((n, 17, 2)), np.full((n, 17), 0.9))
        (r,) = track.process(r)
        assert r.poses.track_ids.tolist() == [1]  # one person, one track all along
    assert detector.asked == [0, 3, 6]
    # frames 1, 2 carry frame 0's box (no motion seen yet); frames 4, 5 move on as the track moved at frame 3
    assert [c.boxes[0].tolist() for c in carried[:2]] == [pytest.approx([10.0, 20.0, 50.0, 100.0])] * 2
    assert carried[3].boxes[0][0] > carried[2].boxes[0][0] > 22.0
    assert all(c.scores.tolist() == [1.0] for c in carried)
    for stage in (detect, track):
        stage.on_marker(SourceEnded("s", "ended"))
    assert trackers.get("s") is None  # dropped at the source's end by its owner, the track stage
