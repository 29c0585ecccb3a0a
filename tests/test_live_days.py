"""Live for days: cameras that heal, outages recorded as data, segments, flat memory, numbers to watch.

Real GStreamer RTSP servers on 127.0.0.1 (``support.rtsp``) are stopped, restarted, restarted at another
resolution or never started; the CLI runs in a child process as users run it. The network is the tiny official
HRNet of ``support.tiny_models``.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import subprocess
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from support.cli_checks import VIDEOS, manifest_jobs, popen_run, read_jsonl, video_facts
from support.clips import h264_clip
from support.outage import measure_return
from support.rtsp import RtspServer, free_port, needs_rtsp
from support.servers import SilentServer
from support.tiny_models import tiny_pose_model

import hrstream
from hrstream.errors import SourceGaveUp
from hrstream.io.reconnect import open_live_source
from hrstream.schemas import validate_jsonl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory):
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 60 s camera stream (426x240, 30 fps) and the same camera reconfigured to 320x180."""
    folder = tmp_path_factory.mktemp("camera_clips")
    return {
        "long": h264_clip(folder / "long.mp4", fps=30, repeat=6),
        "small": h264_clip(folder / "small.mp4", fps=30, size=(320, 180)),
    }


def _records(out: Path, name: str) -> list[dict]:
    """Every JSONL record of a live source, over its segments in order (named by their start time)."""
    return [r for p in sorted(out.glob(f"{name}_*Z.jsonl")) for r in read_jsonl(p)]


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def _frames(records: list[dict]) -> list[dict]:
    return [r for r in records if "event" not in r]


def _quick_recipe(tmp_path: Path, backoff_max_s: float) -> Path:
    recipe = tmp_path / "live.yaml"
    recipe.write_text(
        f"sources:\n  backoff_max_s: {backoff_max_s}\n  open_timeout_s: 2\n  read_timeout_s: 2\n"
    )
    return recipe


@needs_rtsp
def test_a_camera_down_for_40_s_resumes_with_one_gap_record_and_the_other_goes_on(tiny_pose, clips, tmp_path):
    a, b = RtspServer(clip=clips["long"]).start(), RtspServer(clip=clips["long"]).start()
    out = tmp_path / "out"
    listing = tmp_path / "cameras.txt"
    listing.write_text(f"door {a.url}\nhall {b.url}\n")
    args = ["--sources", str(listing), "--pipeline", str(_quick_recipe(tmp_path, 2.0)), "--task", "pose"]
    proc = popen_run([*args, *tiny_pose.args(), "--detector", "full-frame", "--no-video", "--out", str(out)])
    try:
        _wait(lambda: len(_frames(_records(out, "door"))) >= 30, 90, "door's first frames")
        t_down = time.time()
        a.kill()  # a camera reboots: it is away for 40 s
        time.sleep(40.0)
        a = RtspServer(port=a.port, clip=clips["long"]).start()
        t_up = time.time()
        _wait(lambda: any(r.get("event") == "gap" for r in _records(out, "door")), 30, "the gap record")
        time.sleep(2.0)
        t_end = time.time()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        a.kill()
        b.kill()
    assert proc.returncode == 130, stderr[-3000:]
    door, hall = _records(out, "door"), _records(out, "hall")
    for path in out.glob("*.jsonl"):
        validate_jsonl(str(path))  # frame and event records alike
    gaps = [r for r in door if r.get("event") == "gap"]
    assert len(gaps) == 1, gaps
    g = gaps[0]
    frames = _frames(door)
    before = max((f for f in frames if f["captured_at"] < t_down + 0.5), key=lambda f: f["captured_at"])
    after = min((f for f in frames if f["captured_at"] > t_up), key=lambda f: f["captured_at"])
    # the records around the gap: the last frame before it, and the first after it that was not dropped (on a
    # reconnect FFmpeg hands over what it buffered while probing at once, and the live lane may drop some)
    assert g["from"] == pytest.approx(before["captured_at"], abs=1e-6)
    assert g["pts_before"] == pytest.approx(before["pts_s"], abs=1e-6)
    assert g["to"] <= after["captured_at"] and g["pts_after"] <= after["pts_s"]
    if after["dropped_before"] == 0:
        assert g["to"] == pytest.approx(after["captured_at"], abs=1e-6)
        assert g["pts_after"] == pytest.approx(after["pts_s"], abs=1e-6)
    assert 40.0 <= g["to"] - g["from"] == pytest.approx(g["duration_s"], abs=1e-3)
    assert g["to"] - t_up < 2.0 + 4.0  # back within the backoff cap (2 s) plus an open
    assert any(r.get("event") == "reconnect" for r in door)
    assert [r for r in hall if "event" in r] == []  # the other camera never noticed
    hall_frames = _frames(hall)
    rate_before = sum(t_down - 10 < r["captured_at"] < t_down for r in hall_frames) / 10
    rate_during = sum(t_down + 5 < r["captured_at"] < t_up for r in hall_frames) / (t_up - t_down - 5)
    assert rate_during >= 0.8 * rate_before, (rate_before, rate_during)
    assert max(r["captured_at"] for r in hall_frames) > t_end - 3
    state, jobs = manifest_jobs(out)
    assert state == "interrupted"
    door_job = next(j for k, j in jobs.items() if k.endswith(f":{a.port}/live"))
    assert door_job["live"]["gaps"] == 1 and door_job["live"]["reconnects"] >= 1


@needs_rtsp
def test_a_camera_back_at_another_resolution_goes_on_in_a_new_segment(tiny_pose, clips, tmp_path):
    cam = RtspServer(clip=clips["long"]).start()
    out = tmp_path / "out"
    listing = tmp_path / "cameras.txt"
    listing.write_text(f"gate {cam.url}\n")
    args = ["--sources", str(listing), "--pipeline", str(_quick_recipe(tmp_path, 1.0)), "--task", "pose"]
    proc = popen_run(
        [*args, *tiny_pose.args(), "--detector", "full-frame", "--preset", "ultrafast", "--out", str(out)]
    )
    try:
        _wait(lambda: len(_frames(_records(out, "gate"))) >= 20, 90, "the first frames")
        cam.kill()
        cam = RtspServer(port=cam.port, clip=clips["small"]).start()  # reconfigured to 320x180
        _wait(
            lambda: sum(r.get("width") == 320 for r in _records(out, "gate")) >= 20, 40, "frames at 320x180"
        )
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        cam.kill()
    assert proc.returncode == 130, stderr[-3000:]
    segments = sorted(out.glob("gate_*Z.jsonl"))
    assert len(segments) == 2, segments
    sizes = []
    for seg in segments:
        validate_jsonl(str(seg))
        frames = _frames(read_jsonl(seg))
        assert len({(r["width"], r["height"]) for r in frames}) == 1  # one size per segment
        facts = video_facts(seg.with_suffix(".mp4"))
        assert facts.size == (frames[0]["width"], frames[0]["height"])  # not stretched
        assert facts.frames == len(frames)
        assert all(len(r["people"]) == 1 and r["people"][0]["box"][2] <= r["width"] for r in frames)
        sizes.append(facts.size)
    assert sizes == [(426, 240), (320, 180)]
    changes = [r for p in segments for r in read_jsonl(p) if r.get("event") == "resolution"]
    assert [(c["from"], c["to"]) for c in changes] == [([426, 240], [320, 180])]


def test_a_refused_camera_gives_up_after_max_reconnects_with_exit_3_and_the_others_go_on(tiny_pose, tmp_path):
    url = f"rtsp://u:S3cr%21t@127.0.0.1:{free_port()}/x"  # nothing listens there
    out = tmp_path / "out"
    clip = VIDEOS / "gen_vfr_160x120.mp4"
    args = [url, str(clip), *tiny_pose.args(), "--detector", "full-frame", "--no-video", "--out", str(out)]
    proc = popen_run([*args, "--max-reconnects", "3", "--open-timeout", "2"])
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 3, stderr[-3000:]
    shown = url.replace("u:S3cr%21t", "***")
    gave_up = [ln for ln in stderr.splitlines() if ln.startswith("ERROR") and "gave up after 3" in ln]
    assert len(gave_up) == 1 and shown in gave_up[0], stderr[-3000:]
    assert len(read_jsonl(out / "gen_vfr_160x120.jsonl")) == 16  # the file ran to its end meanwhile
    _, jobs = manifest_jobs(out)
    assert jobs[str(clip)]["status"] == "ok" and jobs[shown]["status"] == "failed"
    texts = [stdout, stderr] + [p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()]
    assert not any("S3cr" in t for t in texts)


@needs_rtsp
def test_a_camera_back_after_25_s_delivers_within_3_s_plus_its_start_up(clips):
    # the default backoff (0.5 s doubling to a 30 s cap) has reached 8-16 s between opens by then; the probe
    # every second finds the server back
    r = measure_return(clips["long"], 25.0)
    assert r.return_s < 3.0 + r.startup_s, r
    assert len(r.gaps) == 1 and r.gaps[0]["duration_s"] >= 25.0, r.gaps


class _Clock:
    """An injected clock for a live source's waits (``wait(seconds) -> interrupted``): a wait returns at once
    and moves the clock on by its length; the clock also runs with real time (opens and probes take what they
    take). ``at(t, action)`` runs ``action`` once when the clock passes ``t``; ``stop_at`` ends the source's
    retries. ``events`` holds ``(time, message)`` of every log line of the reconnect logic."""

    def __init__(self, stop_at: float = float("inf")) -> None:
        self.skipped = 0.0
        self.t0 = time.monotonic()
        self.waits: list[float] = []
        self.stop_at = stop_at
        self.events: list[tuple[float, str]] = []
        self._actions: list[tuple[float, object]] = []

    @property
    def now(self) -> float:
        return self.skipped + time.monotonic() - self.t0

    def at(self, t: float, action) -> None:
        self._actions.append((t, action))

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.skipped += seconds
        for item in [a for a in self._actions if a[0] <= self.now]:
            self._actions.remove(item)
            item[1]()
        return self.now >= self.stop_at

    def failed_opens(self) -> list[float]:
        return [t for t, msg in self.events if "attempt" in msg and "failed" in msg]


@pytest.fixture
def clock(caplog: pytest.LogCaptureFixture):
    """A :class:`_Clock` that also timestamps the reconnect logic's log lines (DEBUG and up) on it."""
    clk = _Clock()

    class Stamp(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            clk.events.append((clk.now, record.getMessage()))

    logger = logging.getLogger("hrstream.io.reconnect")
    handler = Stamp(logging.DEBUG)
    logger.addHandler(handler)
    with caplog.at_level(logging.DEBUG, logger="hrstream.io.reconnect"):
        yield clk
    logger.removeHandler(handler)


@needs_rtsp
def test_permanent_answers_are_reported_at_once(clock):
    srv = RtspServer().start()
    try:
        wrong = srv.url.replace("/live", "/nothere")
        t0 = time.monotonic()
        with pytest.raises(
            SourceGaveUp, match=r"gave up after 1 open attempt.*404 Not Found.*check the path"
        ):
            open_live_source(wrong, max_reconnects=5, open_timeout_s=2, read_timeout_s=2)
        assert time.monotonic() - t0 < 2.0  # a 404 is not retried when a limit is set
        # unlimited reconnects: still retried, slowly (at the backoff cap), and said so once; the server
        # answers every probe meanwhile, which opens nothing sooner
        clock.stop_at = 95.0
        with pytest.raises(Exception, match="interrupted while connecting"):
            open_live_source(wrong, backoff_max_s=30.0, open_timeout_s=2, read_timeout_s=2, wait=clock.wait)
        said = [msg for _, msg in clock.events if "retried every 30 s" in msg]
        assert len(said) == 1 and "404 Not Found" in said[0]
        opens = [0.0] + [t for t, msg in clock.events if "failed again" in msg]
        assert opens == pytest.approx([0.0, 30.0, 60.0, 90.0], abs=0.5), opens
        assert max(clock.waits) <= 1.0  # probed every second
    finally:
        srv.kill()


def test_backoff_grows_to_its_cap_with_jitter_through_an_injected_wait(clock):
    with pytest.raises(SourceGaveUp, match="gave up after 7 open attempt"):
        open_live_source(
            f"rtsp://127.0.0.1:{free_port()}/x",
            max_reconnects=7,
            backoff_s=0.5,
            backoff_max_s=4.0,
            wait=clock.wait,
        )
    caps = [min(4.0, 0.5 * 2**k) for k in range(6)]  # 0.5 1 2 4 4 4: waits before attempts 2..7
    opens = [*clock.failed_opens(), clock.now]  # the seventh failure is the give-up
    assert len(opens) == 7  # probes (every second, all refused) are not attempts
    waits = np.diff(opens)
    assert all(c / 2 <= w <= c + 0.2 for w, c in zip(waits, caps, strict=True)), (waits, caps)  # + an open
    assert waits[3] > waits[0] * 2  # it grows
    assert len({round(w, 6) for w in waits[3:]}) > 1  # and is jittered at the cap
    assert max(clock.waits) <= 1.0  # in steps of one probe interval


def test_the_backoff_alone_without_probes(clock):
    with pytest.raises(SourceGaveUp, match="gave up after 4 open attempt"):
        open_live_source(
            f"rtsp://127.0.0.1:{free_port()}/x",
            max_reconnects=4,
            backoff_s=2.0,
            backoff_max_s=4.0,
            wait=clock.wait,
            probe_s=None,
        )
    caps = [2.0, 4.0, 4.0]
    assert len(clock.waits) == 3 and all(c / 2 <= w <= c for w, c in zip(clock.waits, caps, strict=True))


@needs_rtsp
def test_a_server_that_answers_a_probe_again_is_opened_at_once(clock):
    port = free_port()
    servers: list[RtspServer] = []
    up: list[float] = []

    def camera_back() -> None:
        servers.append(RtspServer(port=port).start())
        up.append(clock.now)  # it answers from here on

    clock.at(40.0, camera_back)  # the camera is back after 40 s
    clock.stop_at = 120.0
    try:
        src = open_live_source(
            f"rtsp://127.0.0.1:{port}/live", open_timeout_s=2, read_timeout_s=2, wait=clock.wait
        )
        src.close()
        opens = clock.failed_opens()
        assert opens and max(np.diff(opens)) > 8.0  # the backoff had grown past 8 s between opens
        seen = [t for t, msg in clock.events if "answers again; reconnecting now" in msg]
        assert len(seen) == 1 and 0.0 <= seen[0] - up[0] <= 1.2  # the first probe after its return
        assert not [t for t in opens if t > up[0]]  # and that open succeeded
    finally:
        for srv in servers:
            srv.kill()


@pytest.mark.parametrize(("open_s", "read_s"), [(1.0, 20.0), (6.0, 1.0)])
def test_the_open_deadline_is_open_timeout_s_not_read_timeout_s(open_s: float, read_s: float) -> None:
    # a server that accepts the connection and never answers: the open ends at its own deadline
    srv = SilentServer()
    try:
        t0 = time.monotonic()
        with pytest.raises(SourceGaveUp, match=f"no answer within {open_s:g} s"):
            open_live_source(
                f"rtsp://127.0.0.1:{srv.port}/x",
                max_reconnects=1,
                open_timeout_s=open_s,
                read_timeout_s=read_s,
            )
        elapsed = time.monotonic() - t0
    finally:
        srv.close()
    assert srv.accepted
    assert open_s * 0.9 <= elapsed < open_s + 4.0, (
        elapsed
    )  # a deadline is never early; late by an open's work


@needs_rtsp
def test_the_read_deadline_is_read_timeout_s_not_open_timeout_s(clips) -> None:
    # a camera that stops sending mid-stream (the server frozen, its connection open): the source notices
    # within its read deadline (2 x read_timeout_s without a frame at most), not the much longer open deadline
    cam = RtspServer(clip=clips["long"]).start()
    src = open_live_source(cam.url, open_timeout_s=30.0, read_timeout_s=1.0)
    try:
        for _ in range(10):
            next(src)
        cam.signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        threading.Thread(target=lambda: [None for _ in src], daemon=True).start()  # reads on, reconnects
        _wait(lambda: src.state == "reconnecting", 15.0, "the stall noticed")
        noticed = time.monotonic() - t_stop
        assert noticed < 2 * 1.0 + 3.0, noticed  # well before the 30 s open deadline could play a part
    finally:
        cam.signal(signal.SIGCONT)
        src.interrupt()
        src.close()
        cam.kill()


_LARGE = 64 * 1024  # an image is one block of this size or more; the run's records are small blocks


def _memory_reading() -> tuple[int, int]:
    """(bytes in small blocks, number of large blocks) traced now, after a full garbage collection."""
    gc.collect()
    traces = tracemalloc.take_snapshot().traces
    return sum(t.size for t in traces if t.size < _LARGE), sum(1 for t in traces if t.size >= _LARGE)


@needs_rtsp
def test_live_memory_is_flat_with_several_people(tiny_pose, clips, tmp_path):
    """A live source with four people for ~30 s in segments of 2 s: what the run keeps does not grow."""
    cam = RtspServer(clip=clips["long"]).start()
    boxes = [[40 + 100 * k, 40, 70, 150] for k in range(4)]  # four people in every frame (xywh)
    dets = [{"image_id": i, "category_id": 1, "bbox": b, "score": 0.9} for i in range(3000) for b in boxes]
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    tracemalloc.start(1)
    # Readings over two windows of two segments each, 16 s apart, each taken as soon as a segment has closed
    # (its tracks document appeared): small blocks (records, tracks, per-person state) saw-tooth with the
    # segments, a closed segment's tracks being freed, so the lowest reading of each window is compared.
    # Images are large blocks whose number varies with how many frames are in the queues at that moment:
    # bounded by the queues, so the most seen in the late window is compared with the early one.
    windows = {0: (8.0, 12.0), 1: (24.0, 28.0)}
    small: dict[int, tuple[int, int]] = {}  # window -> lowest (bytes in small blocks, frame index)
    large: dict[int, int] = {}  # window -> most large blocks
    closed = 0  # segments closed so far
    try:
        results = hrstream.stream(
            cam.url, model=str(tiny_pose.config), weights=str(tiny_pose.weights), detector=f"file:{det_file}",
            det_thr=0.5, segment_s=2.0, out=tmp_path / "out",
        )  # fmt: skip
        t0 = None
        for r in results:
            t0 = t0 or time.monotonic()
            assert len(r.poses) == 4
            elapsed = time.monotonic() - t0
            now_closed = len(list((tmp_path / "out").glob("*.tracks.json")))
            segment_closed, closed = now_closed > closed, now_closed
            for w, (start, end) in windows.items():
                if segment_closed and start <= elapsed < end:
                    small_bytes, large_blocks = _memory_reading()
                    small[w] = min(small.get(w, (small_bytes, r.frame.index)), (small_bytes, r.frame.index))
                    large[w] = max(large.get(w, 0), large_blocks)
            if elapsed > 28:
                break
        results.close()
    finally:
        tracemalloc.stop()
        cam.kill()
    (m1, f1), (m2, f2) = small[0], small[1]
    per_frame = (m2 - m1) / (f2 - f1)
    print(f"\nlive memory: small blocks {m1} B at frame {f1}, {m2} B at frame {f2}: {per_frame:.0f} B a frame; "
          f"most large blocks {large[0]} then {large[1]}")  # fmt: skip
    # keeping the tracks until the end costs ~4 x 5.4 kB a frame; segments keep at most 2 s of them
    assert f2 - f1 > 200 and per_frame < 1_000, (small, per_frame)
    # frames kept beyond the queues would add one large block (or more) a frame: 200 or more here
    assert large[1] <= large[0] + 20, large
    assert len(list((tmp_path / "out").glob("*.tracks.json"))) >= 10


@needs_rtsp
def test_metrics_are_served_to_prometheus_during_a_live_run(tiny_pose, clips, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    cam = RtspServer(clip=clips["long"]).start()
    port = free_port()
    secret_url = cam.url.replace("rtsp://", "rtsp://u:S3cr%21t@")
    listing = tmp_path / "cams.txt"
    listing.write_text(f"lobby {secret_url}\n")
    args = ["--sources", str(listing), *tiny_pose.args(), "--detector", "full-frame", "--no-video"]
    proc = popen_run([*args, "--metrics-port", str(port), "--out", str(tmp_path / "out")])
    try:
        text = ""

        def scraped() -> bool:
            nonlocal text
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    text = resp.read().decode()
            except OSError:
                return False
            if "hrstream_source_latency_seconds_bucket{" not in text:
                return False
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            return any(s.value > 0 for s in fams["hrstream_source_frames_out"].samples)

        _wait(scraped, 90, "a scrape with the camera's numbers")

        def manifest_live() -> dict:
            try:
                _, jobs = manifest_jobs(tmp_path / "out")
            except (OSError, ValueError):
                return {}
            (job,) = jobs.values()
            return job if job.get("live") else {}

        # the manifest exists from the start and follows the camera while it runs
        _wait(lambda: manifest_live().get("frames", 0) > 0, 20, "the camera's state in the manifest")
        running = manifest_live()
        assert running["status"] == "running" and running["live"]["state"] == "connected"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        cam.kill()
    assert proc.returncode == 130, stderr[-3000:]
    families = {f.name: f for f in text_string_to_metric_families(text)}
    out = {
        s.labels["source"]: s.value
        for s in families["hrstream_source_frames_out"].samples
        if s.name.endswith("_total")
    }
    assert out["lobby"] > 0
    up = {s.labels["source"]: s.value for s in families["hrstream_source_up"].samples}
    assert up == {"lobby": 1.0}
    latency = families["hrstream_source_latency_seconds"]
    assert latency.type == "histogram"
    count = next(s.value for s in latency.samples if s.name.endswith("_count"))
    inf = next(s.value for s in latency.samples if s.labels.get("le") == "+Inf")
    assert count == inf >= out["lobby"] * 0.9  # every written live frame, in seconds
    busy = {s.labels["stage"]: s.value for s in families["hrstream_stage_busy_seconds"].samples}
    assert busy["infer"] > 0 and busy["batch"] > 0  # the batcher's own work is measured, not a zero
    assert "hrstream_queue_depth" in families and "hrstream_network_seconds" not in families  # no duplicate
    scrape = tmp_path / "scrape.prom"
    scrape.write_text(text)
    lint = subprocess.run(
        ["promtool", "check", "metrics"], stdin=scrape.open(), capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "S3cr" not in text and "rtsp://" not in text  # labels are names, never URLs
    assert "lobby: connected" in stderr  # the status line


@needs_rtsp
def test_an_outage_still_open_at_the_stop_is_recorded_as_a_gap_ending_at_the_stop(tiny_pose, clips, tmp_path):
    cam = RtspServer(clip=clips["long"]).start()
    out = tmp_path / "out"
    listing = tmp_path / "cams.txt"
    listing.write_text(f"gate {cam.url}\n")
    args = ["--sources", str(listing), "--pipeline", str(_quick_recipe(tmp_path, 1.0)), "--task", "pose"]
    proc = popen_run([*args, *tiny_pose.args(), "--detector", "full-frame", "--no-video", "--out", str(out)])
    try:
        _wait(lambda: len(_frames(_records(out, "gate"))) >= 10, 90, "the camera's first frames")
        cam.kill()
        t_down = time.time()

        def reconnecting() -> bool:
            try:
                (job,) = manifest_jobs(out)[1].values()
            except (OSError, ValueError):
                return False
            return (job.get("live") or {}).get("state") == "reconnecting"

        _wait(reconnecting, 60, "the camera seen down")  # down, reconnecting, when the run stops
        time.sleep(1.0)
        t_stop = time.time()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        cam.kill()
    assert proc.returncode == 130, stderr[-3000:]
    records = _records(out, "gate")
    for path in out.glob("*.jsonl"):
        validate_jsonl(str(path))
    gap = records[-1]
    assert gap.get("event") == "gap" and gap["open"] is True, records[-3:]
    last_frame = _frames(records)[-1]
    assert gap["from"] == pytest.approx(last_frame["captured_at"], abs=1e-6) and gap["from"] < t_down + 0.5
    assert t_stop - 0.5 <= gap["to"] <= t_stop + 10.0 and gap["duration_s"] >= 1.0
    _, jobs = manifest_jobs(out)
    (job,) = jobs.values()
    assert job["live"]["gaps"] == 1  # counted with the others
    # the end-of-run line covers frames written: none in the last 4 s, so no latency figure from before
    last = [line for line in stderr.splitlines() if "gate:" in line and "frames in" in line][-1]
    assert "reconnects" in last
