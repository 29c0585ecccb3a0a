"""VideoWriter, JSONL/JSON records and output names, with real encoders, decoders and a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from hrstream.errors import InputError
from hrstream.io import (
    JsonlWriter,
    VideoWriter,
    open_source,
    output_path,
    redact_url,
    safe_name,
    write_json_atomic,
)

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT / "tests" / "data" / "videos"


def _copy_through(src: Path, dst: Path, *, max_frames: int | None = None, audio: bool = False) -> list[float]:
    """Decode ``src`` and write it with VideoWriter keeping each frame's pts; return the source pts_s list."""
    pts_s: list[float] = []
    with open_source(str(src)) as s:
        info = s.info
        with VideoWriter(
            dst,
            width=info.width,
            height=info.height,
            time_base=info.time_base,
            fps=info.fps,
            preset="ultrafast",
            audio_source=str(src) if audio else None,
        ) as w:
            for frame in s:
                w.write(frame.image, frame.pts, frame.time_base)
                pts_s.append(frame.pts_s)
                if max_frames and len(pts_s) >= max_frames:
                    break
    return pts_s


def _decode_pts_s(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        return [float(f.pts * st.time_base) for f in c.decode(st)]


@pytest.mark.parametrize(
    "clip,max_frames",
    [("basketball_426x240_2997.mp4", 120), ("gen_vfr_160x120.mp4", None)],
)
def test_writer_keeps_source_timestamps(tmp_path: Path, clip: str, max_frames: int | None) -> None:
    out = tmp_path / "out.mp4"
    src_pts = _copy_through(VIDEOS / clip, out, max_frames=max_frames)
    got = _decode_pts_s(out)
    assert len(got) == len(src_pts)
    assert got == pytest.approx(src_pts, abs=1e-9)
    steps = np.diff(src_pts)
    if clip.startswith("gen_vfr"):
        assert steps.max() / steps.min() > 3  # really variable, and it survived
    else:
        assert steps == pytest.approx(1001 / 30000, abs=1e-9)  # 29.97 fps, not rounded to 30


def _late_start_mkv(path: Path) -> list[float]:
    """An MKV whose first video frame is at 21 ms (1/1000 time base, 40 ms steps) beside AAC audio whose
    encoder priming starts it before 0, as real files are; returns the video frames' times."""
    times_ms = [21 + 40 * i for i in range(8)]
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        video.codec_context.max_b_frames = 0
        audio = c.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            c.mux(video.encode(frame))
        c.mux(video.encode(None))
        for k in range(6):
            tone = np.sin(np.arange(1024) * 0.2 + k).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = 16000, 1024 * k, Fraction(1, 16000)
            c.mux(audio.encode(chunk))
        c.mux(audio.encode(None))
    return [t / 1000 for t in times_ms]


def _audio_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(p.pts * p.time_base) for p in c.demux(audio=0) if p.pts is not None]


def test_writer_keeps_a_late_first_frame_and_the_audio_times(tmp_path: Path) -> None:
    src = tmp_path / "late_start.mkv"
    want = _late_start_mkv(src)
    src_audio = _audio_times(src)
    assert src_audio[0] < 0 < want[0]  # the priming: audio before 0, video at 21 ms
    out = tmp_path / "late_start.mp4"
    assert _copy_through(src, out, audio=True) == pytest.approx(want, abs=1e-9)  # what the source reports
    assert _decode_pts_s(out) == pytest.approx(want, abs=1e-9)  # every frame, the first one included
    got_audio = _audio_times(out)
    assert got_audio == pytest.approx(src_audio[: len(got_audio)], abs=1e-9) and len(got_audio) >= 3


def test_writer_pads_odd_size_to_even(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    with open_source(str(VIDEOS / "gen_odd_321x241.mkv")) as s:
        assert (s.info.width, s.info.height) == (321, 241)
        frames = list(s)
    with VideoWriter(out, width=321, height=241, time_base=frames[0].time_base, fps=25) as w:
        for f in frames:
            w.write(f.image, f.pts, f.time_base)
    with open_source(str(out)) as s:
        assert (s.info.width, s.info.height) == (322, 242)
        assert s.info.codec == "h264"
        decoded = list(s)
    assert len(decoded) == len(frames)
    diff = np.abs(decoded[0].image[:241, :321].astype(int) - frames[0].image.astype(int))
    assert diff.mean() < 4.0  # same picture (lossy), padding at the right/bottom only


def test_writer_passes_audio_through(tmp_path: Path) -> None:
    src = VIDEOS / "gen_audio_64x48.mp4"
    out = tmp_path / "with_audio.mp4"
    _copy_through(src, out, audio=True)
    with av.open(str(src)) as c:
        src_audio = [p for p in c.demux(audio=0) if p.dts is not None]
        src_codec = c.streams.audio[0].codec_context.name
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
        assert c.streams.audio[0].codec_context.name == src_codec
        out_audio = [p for p in c.demux(audio=0) if p.dts is not None]
    assert len(out_audio) >= len(src_audio) - 2  # muxed up to the end of the video (1 s each)
    with open_source(str(out)) as s:
        assert s.info.has_audio


def test_writer_without_audio_source_has_no_audio(tmp_path: Path) -> None:
    out = tmp_path / "no_audio.mp4"
    _copy_through(VIDEOS / "gen_audio_64x48.mp4", out, audio=False)
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 0


def test_writer_rejects_wrong_image(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "x.mp4", width=64, height=48, time_base=Fraction(1, 25), fps=25) as w:
        with pytest.raises(ValueError, match="64x48"):
            w.write(np.zeros((40, 64, 3), np.uint8), 0, Fraction(1, 25))
        w.write(np.zeros((48, 64, 3), np.uint8), 0, Fraction(1, 25))
        w.write(np.zeros((48, 64, 3), np.uint8), 0, Fraction(1, 25))  # same pts: skipped, not a crash
        assert (w.frames_written, w.frames_skipped) == (1, 1)


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """ISO BMFF boxes ``(type, payload start, payload end)`` between ``start`` and ``end`` (one level)."""
    out, pos, end = [], start, len(data) if end is None else end
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        out.append((kind.decode("latin-1"), pos + head, pos + size))
        pos += size
    return out


def _header_duration_s(path: Path) -> tuple[list[str], float]:
    """The file's top-level box types and the movie duration its ``mvhd`` states (what a browser shows before
    reading the rest of the file)."""
    data = path.read_bytes()
    top = _boxes(data)
    moov = next((b for b in top if b[0] == "moov"), None)
    assert moov is not None, [b[0] for b in top]
    _, p0, _ = next(b for b in _boxes(data, moov[1], moov[2]) if b[0] == "mvhd")
    if data[p0] == 1:
        timescale, duration = struct.unpack(">IQ", data[p0 + 20 : p0 + 32])
    else:
        timescale, duration = struct.unpack(">II", data[p0 + 12 : p0 + 20])
    return [b[0] for b in top], duration / timescale


def _segment(path: Path, pts: list[int], tb: Fraction, **options) -> None:
    """Frames at ``pts`` (in ``tb``) as a live segment cut from a running stream would get them."""
    with VideoWriter(path, width=160, height=120, time_base=tb, fps=30, preset="ultrafast", **options) as w:
        for i, p in enumerate(pts):
            w.write(np.full((120, 160, 3), (i * 7) % 255, np.uint8), p, tb)


@pytest.mark.parametrize("finish", [True, False])
def test_rebase_makes_a_segment_cut_from_a_stream_a_video_of_its_own(tmp_path: Path, finish: bool) -> None:
    tb = Fraction(1, 90000)
    steps = [3000, 3000, 3003, 2997, 6000] * 30  # 150 frames, a little irregular, one long step per five
    pts = list(51 * 90000 + np.concatenate([[0], np.cumsum(steps[:-1])]))  # the stream was at 51 s
    out = tmp_path / "cam_segment.mp4"
    _segment(out, pts, tb, rebase=True, finish=finish)
    span_s = float((pts[-1] - pts[0]) * tb)
    with av.open(str(out)) as c:
        assert (c.start_time or 0) == 0
        assert c.duration / 1e6 == pytest.approx(span_s + 1 / 30, abs=0.05)  # what it holds, not 51 s + that
        got = [f.pts * f.time_base for f in c.decode(video=0)]
    assert got[0] == 0 and len(got) == 150
    assert [float(t) for t in got] == pytest.approx([float((p - pts[0]) * tb) for p in pts], abs=1e-9)
    cap = cv2.VideoCapture(str(out))
    try:
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 150
        read = 0
        while cap.read()[0]:
            read += 1
    finally:
        cap.release()
    assert read == 150


def test_rebase_and_an_audio_source_are_refused_together(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rebase"):
        VideoWriter(
            tmp_path / "x.mp4",
            width=64,
            height=48,
            time_base=Fraction(1, 25),
            fps=25,
            rebase=True,
            audio_source=str(VIDEOS / "gen_audio_64x48.mp4"),
        )


def test_a_closed_file_carries_its_duration_in_its_header(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    src_pts = _copy_through(VIDEOS / "basketball_426x240_2997.mp4", out, max_frames=120)
    clip_s = src_pts[-1] - src_pts[0] + 1001 / 30000
    kinds, header_s = _header_duration_s(out)
    assert header_s == pytest.approx(clip_s, abs=0.05)
    assert kinds.index("moov") < kinds.index("mdat") and "moof" not in kinds  # index first, not fragmented
    with av.open(str(out)) as c:
        assert c.duration / 1e6 == pytest.approx(clip_s, abs=0.05)
    assert _decode_pts_s(out) == pytest.approx(src_pts, abs=1e-9)  # the remux kept every timestamp
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left
    # while it is written (and after a crash) the file is fragmented, its header without a duration
    tb = Fraction(1, 25)
    with VideoWriter(
        tmp_path / "open.mp4", width=64, height=48, time_base=tb, fps=25, preset="ultrafast"
    ) as w:
        for i in range(100):  # four 1 s GOPs: the first fragments are on disk
            w.write(np.full((48, 64, 3), i, np.uint8), i, tb)
        kinds, header_s = _header_duration_s(tmp_path / "open.mp4")
        assert "moof" in kinds and header_s == 0
    kinds, header_s = _header_duration_s(tmp_path / "open.mp4")
    assert "moof" not in kinds and header_s == pytest.approx(100 / 25, abs=0.05)


def test_sigkill_leaves_decodable_video_and_parseable_records(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "support" / "crash_writer.py"), str(tmp_path)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    written = 0
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        while written < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("WROTE "):
                written = int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert written >= 150, "the writer did not get going"
    decoded = 0
    with av.open(str(tmp_path / "video.mp4")) as c:
        try:
            for _ in c.decode(video=0):
                decoded += 1
        except av.error.FFmpegError:
            pass  # the last fragment may be cut; everything before it must decode
    # at most ~2 GOPs (1 s = 30 frames each) plus the encoder's lookahead may be lost
    print(f"SIGKILL after {written} frames: {decoded} decodable")
    assert decoded >= written - 75, (decoded, written)
    lines = (tmp_path / "frames.jsonl").read_text().split("\n")
    complete = lines[:-1]  # the text after the last newline may be a partial line
    records = [json.loads(x) for x in complete]
    assert len(records) >= written
    assert [r["index"] for r in records] == list(range(len(records)))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["frames"] >= written


def test_jsonl_writer_flushes_each_line_and_encodes_numpy(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "r.jsonl"
    w = JsonlWriter(path)
    w.write({"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), "d": (1, 2)})
    # readable by another reader before close: flushed
    assert json.loads(path.read_text().splitlines()[0]) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [1, 2]}
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write({})


def test_write_json_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"v": 1})
    write_json_atomic(path, {"v": np.int64(2), "arr": np.eye(2)})
    assert json.loads(path.read_text()) == {"v": 2, "arr": [[1.0, 0.0], [0.0, 1.0]]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temp files left
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text())["v"] == 2  # failed write left the old content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


@pytest.mark.parametrize(
    "spec",
    [
        "../../x",
        "../../../etc/passwd",
        "/abs/path/video.mp4",
        "..",
        ".",
        "",
        "a/../../b.mp4",
        "rtsp://admin:S3cr%21t@10.0.0.5:554/stream1",
        "http://u:p@example.com/../../x.ts",
        "evil\x00name\n.mp4",
        "C:\\Users\\x\\..\\..\\clip.mp4",
        "x" * 500 + ".mp4",
        "0",
        "/dev/video2",
    ],
)
def test_output_paths_stay_inside_out_dir(tmp_path: Path, spec: str) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    name = safe_name(spec)
    assert name and len(name) <= 80
    assert "/" not in name and "\\" not in name and ".." not in name
    assert not any(ord(ch) < 32 for ch in name)
    assert "S3cr" not in name and "admin" not in name and ":p@" not in name
    assert safe_name(name) == name
    p = output_path(out_dir, spec, ".jsonl")
    assert p.parent == out_dir.resolve()
    assert p.name.endswith(".jsonl")


def test_output_path_rejects_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        output_path(tmp_path, "clip", "/../../x")


def test_redact_url_keeps_host() -> None:
    assert redact_url("rtsp://u:S3cr%21t@127.0.0.1:1/x") == "rtsp://***@127.0.0.1:1/x"
    assert redact_url("http://host/p") == "http://host/p"


def test_tracks_document_counts_every_dropped_frame(tmp_path: Path) -> None:
    """``dropped_frames`` of a tracks document is the sum of its records' ``dropped_before`` (a live source
    drops frames many times over a segment), as the JSONL of the same results says."""
    from hrstream.io.base import SourceInfo
    from hrstream.outputs.files import JsonlSink, TracksSink
    from hrstream.schemas import validate
    from hrstream.types import Frame, FrameResult

    info = SourceInfo("cam", 8, 6, 10.0, Fraction(1, 10), None, None, 0, False, True, "h264", "rtsp://x/cam")
    model = dict.fromkeys(("width", "weights", "weights_sha256", "trained_on"), None)
    model.update(name="tiny", architecture="pose_hrnet")
    tracks = TracksSink(
        tmp_path / "cam.tracks.json", info, model=model, keypoint_names=("nose",), skeleton=()
    )
    jsonl = JsonlSink(tmp_path / "cam.jsonl", source="cam")
    drops = [0, 3, 0, 0, 5, 1, 0]
    for i, d in enumerate(drops):
        frame = Frame("cam", i, i / 10, np.zeros((6, 8, 3), np.uint8), captured_at=1e9 + i / 10)
        for sink in (tracks, jsonl):
            sink.write(FrameResult(frame, dropped_before=d))
    tracks.close()
    jsonl.close()
    doc = json.loads((tmp_path / "cam.tracks.json").read_text())
    validate(doc, "tracks", label="cam.tracks.json")
    records = [json.loads(line) for line in (tmp_path / "cam.jsonl").read_text().splitlines()]
    assert doc["dropped_frames"] == sum(r["dropped_before"] for r in records) == sum(drops)
    assert doc["num_frames"] == len(records) == len(drops)
