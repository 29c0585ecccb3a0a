"""A source's outputs in segments: cut by time and at a size change, each segment complete, old ones pruned."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from support.cli_checks import read_jsonl, video_facts

from hrstream.io.base import SourceInfo
from hrstream.outputs.files import JsonlSink, VideoSink
from hrstream.outputs.segments import SourceOutputs, segment_label
from hrstream.types import Frame, FrameResult

T0 = 1_800_000_000.0  # a wall clock (2027-01-15)


def _live_info(w: int, h: int) -> SourceInfo:
    return SourceInfo("cam", w, h, 10.0, Fraction(1, 10), None, None, 0, False, True, "h264", "rtsp://x/cam")


def _result(i: int, t: float, size: tuple[int, int]) -> FrameResult:
    w, h = size
    img = np.full((h, w, 3), i % 256, np.uint8)
    frame = Frame("cam", i, i / 10, img, captured_at=t, pts=i, time_base=Fraction(1, 10))
    return FrameResult(frame, annotated=img)


def _outputs(folder: Path, *, segment_s: float | None, keep: int | None = None) -> SourceOutputs:
    def open_segment(label: str | None, width: int, height: int) -> dict:
        name = "cam" if label is None else f"cam_{label}"
        return {
            "video": VideoSink(folder / f"{name}.mp4", _live_info(width, height), preset="ultrafast"),
            "jsonl": JsonlSink(folder / f"{name}.jsonl", source="cam"),
        }

    return SourceOutputs(open_segment, live=True, segment_s=segment_s, keep_segments=keep)


def test_segments_are_cut_by_time_named_by_their_start_and_each_complete(tmp_path):
    out = _outputs(tmp_path, segment_s=2.0)
    for i in range(50):  # 5 s at 10 fps
        out.write(_result(i, T0 + i / 10, (64, 48)))
        if i == 25:
            out.event("gap", {"from": T0 + 2.5, "to": T0 + 2.6})  # lands in the segment it happened in
    out.close()
    labels = [segment_label(T0 + s, live=True) for s in (0, 2, 4)]
    assert labels[0] == time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(T0))
    assert sorted(p.stem for p in tmp_path.glob("*.jsonl")) == [f"cam_{lab}" for lab in labels]
    counts = []
    for lab in labels:
        records = read_jsonl(tmp_path / f"cam_{lab}.jsonl")
        frames = [r for r in records if "event" not in r]
        assert video_facts(tmp_path / f"cam_{lab}.mp4").frames == len(frames)  # a whole video of its own
        counts.append(len(frames))
        if lab == labels[1]:
            assert [r["event"] for r in records if "event" in r] == ["gap"]
    assert counts == [20, 20, 10] and out.segments == 3


def test_a_size_change_starts_a_segment_and_old_segments_are_pruned(tmp_path):
    out = _outputs(tmp_path, segment_s=1.0, keep=2)
    for i in range(40):
        size = (64, 48) if i < 25 else (32, 24)  # reconfigured at frame 25 (2.5 s)
        out.write(_result(i, T0 + i / 10, size))
    out.close()
    # cuts at 1, 2, 2.5 (the size; the same second as the cut before: "_2"), 3.5 s: five segments, two kept
    assert out.segments == 5
    kept = sorted(tmp_path.glob("*.jsonl"))
    labels = [segment_label(T0 + 2.5, live=True) + "_2", segment_label(T0 + 3.5, live=True)]
    assert [p.stem for p in kept] == [f"cam_{lab}" for lab in labels]
    assert len(list(tmp_path.glob("*.mp4"))) == 2
    assert video_facts(kept[0].with_suffix(".mp4")).size == (32, 24)


def test_an_unsegmented_file_keeps_its_plain_names_until_its_size_changes(tmp_path):
    def open_segment(label: str | None, width: int, height: int) -> dict:
        name = "clip" if label is None else f"clip_{label}"
        return {"jsonl": JsonlSink(tmp_path / f"{name}.jsonl", source="clip")}

    out = SourceOutputs(open_segment, live=False, segment_s=None)
    for i in range(30):
        out.write(_result(i, T0, (64, 48) if i < 20 else (32, 24)))
    out.close()
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["clip.jsonl", "clip_t000002.jsonl"]
    assert len(read_jsonl(tmp_path / "clip.jsonl")) == 20


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch):
    """This process in America/New_York (UTC-5 in January) for the test, its zone restored afterwards."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    assert time.localtime(T0).tm_hour != time.gmtime(T0).tm_hour  # the zone took effect
    yield
    monkeypatch.undo()
    time.tzset()


def test_segment_names_are_utc_on_a_host_in_another_zone(tmp_path, new_york):
    """A live segment is named by the UTC time of its first frame (``Z``), whatever the host's zone: T0 is
    2027-01-15 08:00:00 UTC (03:00 in New York)."""
    assert segment_label(T0, live=True) == "20270115T080000Z"
    out = _outputs(tmp_path, segment_s=2.0)
    for i in range(30):  # 3 s at 10 fps: segments at 0 and 2 s
        out.write(_result(i, T0 + i / 10, (64, 48)))
    out.close()
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [
        "cam_20270115T080000Z.jsonl",
        "cam_20270115T080002Z.jsonl",
    ]
