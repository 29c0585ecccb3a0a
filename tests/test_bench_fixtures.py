"""The benchmarks' clip trimming keeps the first frames as shown, also where B-frames reorder the packets."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_fixtures import trim_clip  # noqa: E402

#: H.264 with B-frames: packets in decode order show frames 0, 4, 2, 1, 3, 8, ...
BFRAMES = REPO / "tests" / "data" / "videos" / "basketball_426x240_2997.mp4"


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_a_trim_of_a_b_frame_clip_holds_its_first_frames_in_presentation_order(tmp_path: Path) -> None:
    with av.open(str(BFRAMES)) as c:
        order = [p.pts for p in c.demux(video=0) if p.dts is not None][:5]
    assert order != sorted(order)  # the clip does reorder
    source = _frames(BFRAMES)[:8]
    trimmed = _frames(trim_clip(BFRAMES, tmp_path / "four.mp4", 4))
    assert 4 <= len(trimmed) <= 8
    for i, frame in enumerate(trimmed):  # frames 0, 1, 2, 3 (and what decoding them needs), none skipped
        assert np.array_equal(frame, source[i]), i


def test_a_trim_without_b_frames_is_exact(tmp_path: Path) -> None:
    clip = REPO / "tests" / "data" / "videos" / "two_people_1080p30.mp4"
    trimmed = _frames(trim_clip(clip, tmp_path / "three.mp4", 3))
    source = _frames(clip)[:3]
    assert len(trimmed) == 3 and all(np.array_equal(a, b) for a, b in zip(trimmed, source, strict=True))
