"""Sources: every test clip, bad inputs, images, and live sources from real servers on 127.0.0.1."""

from __future__ import annotations

import http.server
import itertools
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from support.servers import SilentServer

from hrstream.errors import InputError
from hrstream.io import expand_inputs, install_redaction, open_source

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT / "tests" / "data" / "videos"
COCO = ROOT / "tests" / "data" / "coco"
SUPPORT = ROOT / "tests" / "support"
sys.path.insert(0, str(SUPPORT))
from make_clips import VFR_INTERVALS_MS  # noqa: E402

ALL_CLIPS = sorted(p.name for p in VIDEOS.iterdir() if p.suffix in (".mp4", ".mkv"))


# ------------------------------------------------------------------------------------------ helpers
def _encode(path: Path, n: int, *, fmt: str | None = None, size=(64, 48), fps: int = 25) -> None:
    """A small real H.264 clip (moving gradient) written with PyAV."""
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        st = c.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"preset": "ultrafast", "g": str(fps)}
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (np.arange(w) * 4 + i * 3) % 256
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in st.encode(f):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _http_server(directory: Path) -> Iterator[str]:
    handler = lambda *a, **k: _Quiet(*a, directory=str(directory), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


# ------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("clip", ALL_CLIPS)
def test_every_clip_opens_with_exact_timestamps(clip: str) -> None:
    path = VIDEOS / clip
    with av.open(str(path)) as c:  # the container's own frame count, read independently
        declared = c.streams.video[0].frames
    with open_source(str(path)) as s:
        info = s.info
        frames = list(s)
    assert frames, clip
    assert not s.truncated and not s.warnings
    assert info.name == path.stem and info.path == str(path) and not info.is_live
    if declared:
        assert len(frames) == declared
    else:
        assert info.num_frames is not None and abs(len(frames) - info.num_frames) <= 1
    tb = info.time_base
    for i, f in enumerate(frames):
        assert f.index == i and f.source_id == info.name and f.captured_at is None
        assert f.image.dtype == np.uint8 and f.image.shape == (info.height, info.width, 3)
        assert f.time_base == tb and f.pts_s == float(f.pts * tb)
    assert np.all(np.diff([f.pts_s for f in frames]) > 0)


def test_vfr_clip_keeps_irregular_timestamps() -> None:
    with open_source(str(VIDEOS / "gen_vfr_160x120.mp4")) as s:
        pts_ms = [round(f.pts_s * 1000) for f in s]
    assert np.diff(pts_ms).tolist() == VFR_INTERVALS_MS


def test_rotation_metadata_is_applied() -> None:
    with av.open(str(VIDEOS / "gen_rot90_160x120.mp4")) as c:
        raw = next(c.decode(video=0))
        assert (raw.width, raw.height, raw.rotation) == (160, 120, 90)  # stored landscape, 90 deg CCW
        stored = raw.to_ndarray(format="rgb24")
    with open_source(str(VIDEOS / "gen_rot90_160x120.mp4")) as s:
        assert (s.info.width, s.info.height, s.info.rotation) == (120, 160, 90)
        img = next(s).image
    red = (img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)
    ys, xs = np.nonzero(red)
    # the marker stored at the top-left ends at the bottom-left after a 90 deg counter-clockwise turn
    assert ys.min() > img.shape[0] - 25 and xs.max() < 25
    assert np.abs(img.astype(int) - np.rot90(stored).astype(int)).max() == 0


def test_ten_bit_hevc_decodes_to_uint8_rgb() -> None:
    with open_source(str(VIDEOS / "gen_hevc10_64x48.mkv")) as s:
        assert s.info.codec == "hevc"
        img = next(s).image
    assert img.dtype == np.uint8
    assert img[:3, :3].reshape(-1, 3).mean(axis=0) == pytest.approx([255, 0, 0], abs=25)  # red marker


def test_truncated_mkv_decodes_part_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    full = tmp_path / "full.mkv"
    _encode(full, 100)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="hrstream.io"), open_source(str(cut)) as s:
        n = sum(1 for _ in s)
    assert 0 < n < 100
    assert s.truncated
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cut.mkv" in warnings[0].getMessage()


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        tone = np.sin(np.linspace(0, 200, 8192, dtype=np.float32))[None] * 0.2
        for k in range(0, 8192, 1024):
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(tone[:, k : k + 1024]), format="fltp", layout="mono"
            )
            f.sample_rate, f.pts = 16000, k
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)


def _bad_input(tmp_path: Path, kind: str) -> tuple[str, str]:
    """Make one bad input; return (spec, a word the error must contain)."""
    if kind == "missing":
        return str(tmp_path / "nope.mp4"), "no such"
    if kind == "empty":
        p = tmp_path / "empty.mp4"
        p.write_bytes(b"")
        return str(p), "0 bytes"
    if kind == "text":
        p = tmp_path / "notes.mp4"
        p.write_text("this is not a video\n" * 20)
        return str(p), "not a media file"
    if kind == "audio_only":
        p = tmp_path / "song.m4a"
        _audio_only(p)
        return str(p), "no video stream"
    if kind == "tiny_truncated_mp4":
        full = tmp_path / "full.mp4"
        _encode(full, 10)
        p = tmp_path / "tiny_cut.mp4"
        p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        return str(p), "truncated"
    if kind == "ftp":
        return "ftp://127.0.0.1/clip.mp4", "unsupported URL scheme"
    if kind == "file_url":
        return "file:///etc/passwd", "unsupported URL scheme"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "text", "audio_only", "tiny_truncated_mp4", "ftp", "file_url"]
)
def test_bad_inputs_fail_with_one_clear_line(tmp_path: Path, kind: str) -> None:
    spec, word = _bad_input(tmp_path, kind)
    with pytest.raises(InputError) as ei:
        open_source(spec)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(spec) and word in msg
    # expand_inputs reports instead of raising (files are probed later, by open_source)
    (job,) = expand_inputs([spec])
    if kind in ("missing", "ftp", "file_url"):
        assert job.error is not None and word in str(job.error)


def test_pixel_cap_refuses_decompression_bomb(tmp_path: Path) -> None:
    w, h = 4000, 3000  # 12 MP of black: a 40 KB PNG
    row = b"\x00" * (1 + 3 * w)
    co = zlib.compressobj(9)
    idat = b"".join(co.compress(row) for _ in range(h)) + co.flush()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InputError, match="bomb.png"):
        open_source(str(bomb), max_pixels=5_000_000)
    with open_source(str(bomb), max_pixels=20_000_000) as s:  # under the cap it decodes
        assert next(s).image.shape == (h, w, 3)
    with pytest.raises(InputError, match="decompression bomb"):
        open_source(str(VIDEOS / "street_960x540_5fps.mp4"), max_pixels=100_000)


def _flat_ffv1(path: Path, width: int, height: int, rgb: tuple[int, int, int]) -> Path:
    """A valid one-frame FFV1 MKV of one flat colour (a few tens of KB, whatever its size in pixels)."""
    with av.open(str(path), "w") as c:
        stream = c.add_stream("ffv1", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), rgb, np.uint8), format="rgb24")
        frame.pts = 0
        c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    return path


def test_a_valid_video_over_the_pixel_cap_says_so_and_how_to_raise_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = _flat_ffv1(tmp_path / "photo_48mp.mkv", 8000, 6000, (40, 120, 200))  # 48 MP, over the 40 MP cap
    assert big.stat().st_size < 1_000_000
    monkeypatch.delenv("HRSTREAM_MAX_PIXELS", raising=False)
    with pytest.raises(InputError) as err:
        open_source(str(big))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{big}: ")
    assert "8000x6000" in msg and "exceeds the cap of 40000000 pixels" in msg, msg
    assert "HRSTREAM_MAX_PIXELS" in msg and "damaged" not in msg and "truncated" not in msg, msg
    monkeypatch.setenv("HRSTREAM_MAX_PIXELS", "48000000")  # what the message says to do
    with open_source(str(big)) as s:
        image = next(s).image
    assert image.shape == (6000, 8000, 3)
    assert np.abs(image[::500, ::500].astype(int) - (40, 120, 200)).max() <= 3
    monkeypatch.setenv("HRSTREAM_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="HRSTREAM_MAX_PIXELS.*'lots'"):
        open_source(str(big))


# ------------------------------------------------------------------------------------------ images
def test_still_image_is_one_frame_without_time() -> None:
    jpg = sorted(COCO.glob("*.jpg"))[0]
    with open_source(str(jpg)) as s:
        frames = list(s)
    assert len(frames) == 1 and frames[0].pts_s is None and s.info.num_frames == 1
    ref = cv2.cvtColor(cv2.imread(str(jpg)), cv2.COLOR_BGR2RGB)
    assert frames[0].image.shape == ref.shape
    assert np.abs(frames[0].image.astype(int) - ref.astype(int)).mean() < 3  # another JPEG decoder agrees


def test_folder_of_images_is_one_sequence_job(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    imgs = {i: rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for i in (1, 2, 10)}
    for i, img in imgs.items():
        cv2.imwrite(str(tmp_path / f"img{i}.png"), img[..., ::-1])
    (job,) = expand_inputs([str(tmp_path)])
    assert job.kind == "images" and [Path(p).name for p in job.paths] == ["img1.png", "img2.png", "img10.png"]
    with open_source(job, image_fps=10.0) as s:
        frames = list(s)
    assert [f.pts_s for f in frames] == [0.0, 0.1, 0.2]
    assert [f.pts for f in frames] == [0, 1, 2] and frames[0].time_base == Fraction(1, 10)
    for f, i in zip(frames, (1, 2, 10), strict=True):
        assert np.array_equal(f.image, imgs[i])  # PNG is lossless


def test_expand_inputs_folders_globs_urls_cameras(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.mkv"):
        shutil.copy(VIDEOS / "gen_vfr_160x120.mp4", tmp_path / name)
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    jobs = expand_inputs(
        [
            str(tmp_path),
            str(tmp_path / "*.mp4"),
            "rtsp://u:pw@127.0.0.1:8554/cam",
            "/dev/video0",
            "1",
            str(tmp_path / "missing.mp4"),
            str(tmp_path / "empty"),
            str(tmp_path / "*.none"),
        ]
    )
    assert [(j.kind, Path(j.spec).name) for j in jobs[:3]] == [
        ("video", "a.mkv"),
        ("video", "b.mp4"),
        ("video", "b.mp4"),
    ]
    assert [j.kind for j in jobs[3:6]] == ["url", "camera", "camera"]
    assert jobs[3].display == "rtsp://***@127.0.0.1:8554/cam" and "pw" not in jobs[3].name
    assert [j.ok for j in jobs[6:]] == [False, False, False]


# ------------------------------------------------------------------------------------------ network
def test_credentials_redacted_in_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    url = "rtsp://u:S3cr%21t@127.0.0.1:1/x"
    install_redaction()
    av.logging.set_level(av.logging.DEBUG)  # FFmpeg's own messages go to the libav.* loggers
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(InputError) as ei:
            open_source(url, open_timeout_s=2)
        logging.getLogger("libav.test").error("could not open %s", url)  # as FFmpeg would print it
    finally:
        av.logging.set_level(None)
    text = str(ei.value) + "\n" + caplog.text + "\n" + "\n".join(r.getMessage() for r in caplog.records)
    assert "rtsp://***@127.0.0.1:1/x" in text
    assert "S3cr!t" not in text and "S3cr%21t" not in text


@pytest.fixture(scope="module")
def served_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    d = tmp_path_factory.mktemp("www")
    _encode(d / "clip.ts", 40, fmt="mpegts")
    yield from ((d, base) for base in _http_server(d))


def test_http_mpegts_is_live_with_stream_timestamps(served_dir: tuple[Path, str]) -> None:
    _, base = served_dir
    t0 = time.time()
    with open_source(f"{base}/clip.ts", open_timeout_s=5, read_timeout_s=5) as s:
        info = s.info
        frames = list(s)
    assert info.is_live and info.duration_s is None and info.path == f"{base}/clip.ts"
    assert len(frames) >= 35  # a live source may skip a first frame without PTS, never invent one
    assert all(f.captured_at is not None and t0 <= f.captured_at <= time.time() for f in frames)
    assert all(f.pts_s == float(f.pts * f.time_base) for f in frames)
    assert np.diff([f.pts_s for f in frames]) == pytest.approx(0.04, abs=1e-6)


def test_remote_hls_playlist_is_refused_and_reaches_no_other_port(served_dir: tuple[Path, str]) -> None:
    d, base = served_dir
    victim = SilentServer()
    try:
        (d / "list.m3u8").write_text(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"
            f"http://127.0.0.1:{victim.port}/secret.ts\n#EXT-X-ENDLIST\n"
        )
        with pytest.raises(InputError, match="list.m3u8.*not allowed for network input"):
            open_source(f"{base}/list.m3u8", open_timeout_s=3, read_timeout_s=3)
        time.sleep(0.2)
        assert victim.accepted == []
    finally:
        victim.close()


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_server_that_never_sends_fails_within_deadline(scheme: str) -> None:
    srv = SilentServer()
    try:
        t0 = time.monotonic()
        with pytest.raises(InputError, match="127.0.0.1"):
            open_source(f"{scheme}://127.0.0.1:{srv.port}/x", open_timeout_s=1.0, read_timeout_s=1.0)
        elapsed = time.monotonic() - t0
    finally:
        srv.close()
    assert elapsed < 5.0
    assert srv.accepted  # it really connected and waited


def _gst_rtsp_available() -> bool:
    py = Path("/usr/bin/python3")
    if not py.exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([str(py), "-c", probe], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(
    not _gst_rtsp_available(), reason="GStreamer RTSP server (see .ci/apt-packages.txt) missing"
)
def test_rtsp_source_over_tcp(tmp_path: Path) -> None:
    port = _free_port()
    clip = tmp_path / "clip.mp4"
    _encode(clip, 50)
    server = subprocess.Popen(
        ["/usr/bin/python3", str(SUPPORT / "rtsp_server.py"), str(clip), str(port), "/test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")},
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("READY"), "RTSP server did not start"
        url = f"rtsp://user:S3cr%21t@127.0.0.1:{port}/test"
        with open_source(url, open_timeout_s=5, read_timeout_s=5) as s:
            info = s.info
            frames = list(itertools.islice(s, 20))
    finally:
        server.kill()
        server.wait(timeout=10)
    assert info.is_live and info.codec == "h264" and (info.width, info.height) == (64, 48)
    assert "S3cr" not in info.path and info.name == f"127_0_0_1_{port}_test"
    assert len(frames) == 20
    pts = [f.pts_s for f in frames]
    assert np.all(np.diff(pts) > 0)
    assert np.diff(pts) == pytest.approx(0.04, abs=2e-3)  # 25 fps from RTP timestamps (90 kHz)


def test_live_stream_that_stalls_raises_within_read_deadline(served_dir: tuple[Path, str]) -> None:
    d, _ = served_dir
    data = (d / "clip.ts").read_bytes()
    release = threading.Event()

    class Stall(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            release.wait(15)  # then stall: the connection stays open, nothing more is sent

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/live.ts"
    got = 0
    try:
        with open_source(url, open_timeout_s=3, read_timeout_s=1) as s:
            t0 = time.monotonic()
            with pytest.raises(InputError, match="read failed"):
                for _ in s:
                    got += 1
            elapsed = time.monotonic() - t0
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()
    assert got > 5 and elapsed < 5.0
