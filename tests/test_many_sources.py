"""Many sources, one pipeline: per-source lanes, shared batches, sources that end or die alone, the Python API.

Live tests use real GStreamer RTSP servers on 127.0.0.1 (``support.rtsp``); files are real clips decoded by
PyAV; the network is the tiny official HRNet of ``support.tiny_models``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import threading
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from support.cli_checks import (
    VIDEOS,
    invoke,
    manifest_jobs,
    popen_run,
    read_jsonl,
    run_cli,
    video_facts,
)
from support.clips import h264_clip
from support.rtsp import RtspServer, needs_rtsp
from support.tiny_models import tiny_pose_model

import hrstream
from hrstream.errors import InputError
from hrstream.io.base import SourceInfo
from hrstream.runtime.counters import RunCounters
from hrstream.runtime.feeder import SourceFeeder, SourceJob
from hrstream.runtime.markers import SourceEnded, SourceStarted
from hrstream.runtime.mux import SourceMux
from hrstream.runtime.queues import QueueClosed
from hrstream.types import Frame, FrameResult

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory):
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


def _pose_args(model, out: Path) -> list[str]:
    return ["--task", "pose", *model.args(), "--detector", "full-frame", "--out", str(out)]


# ----------------------------------------------------------------------------------------- the mux
def _item(sid: str, i: int) -> FrameResult:
    return FrameResult(Frame(sid, i, i / 10, np.zeros((2, 2, 3), np.uint8)))


def test_mux_takes_lanes_in_turn_and_never_waits_for_an_empty_one():
    mux = SourceMux()
    mux.add("a", maxsize=8, leaky=False)
    mux.add("b", maxsize=8, leaky=False)
    mux.add("idle", maxsize=8, leaky=True)  # a camera with nothing to give
    for i in range(3):
        mux.put("a", _item("a", i))
    mux.put("b", _item("b", 0))
    got = [(r.frame.source_id, r.frame.index) for r in (mux.get(timeout=0.5) for _ in range(4))]
    assert got == [("a", 0), ("b", 0), ("a", 1), ("a", 2)]
    with pytest.raises(queue.Empty):
        mux.get(timeout=0.05)  # nothing left anywhere: no wait on "idle" forever


def test_live_lane_drops_its_own_oldest_and_reports_it_with_the_next_frame():
    mux = SourceMux()
    counters = RunCounters()
    mux.add("cam", maxsize=2, leaky=True, counters=counters.source("cam", live=True))
    mux.add("file", maxsize=2, leaky=False, counters=counters.source("file", live=False))
    mux.put("cam", SourceStarted("cam", None))
    for i in range(5):
        mux.put("cam", _item("cam", i))  # never blocks: frames 0..2 dropped, the marker kept
    mux.put("file", _item("file", 0))
    mux.put("file", _item("file", 1))
    with pytest.raises(queue.Full):
        mux.put("file", _item("file", 2), timeout=0.05)  # a full file lane blocks
    assert counters.snapshot()["cam"]["drops"] == 3 and counters.snapshot()["file"]["drops"] == 0
    taken = [mux.get(timeout=0.5) for _ in range(5)]
    cams = [t for t in taken if isinstance(t, FrameResult) and t.frame.source_id == "cam"]
    assert isinstance(taken[0], SourceStarted)
    assert [c.frame.index for c in cams] == [3, 4]
    assert [c.dropped_before for c in cams] == [3, 0]


def test_mux_ends_after_every_lane_ended_and_drained():
    mux = SourceMux()
    mux.add("a", maxsize=4, leaky=False)
    mux.put("a", _item("a", 0))
    mux.end("a", SourceEnded("a", "ended"))
    mux.end("never-opened", SourceEnded("never-opened", "failed", "x: refused", started=False))
    mux.seal()
    got = list(mux)
    assert [type(g).__name__ for g in got] == ["FrameResult", "SourceEnded", "SourceEnded"]
    with pytest.raises(QueueClosed):
        mux.get(timeout=0.1)


class _ListSource:
    def __init__(self, name: str, n: int, *, fail_at: int | None = None, delay: float = 0.0) -> None:
        self.info = SourceInfo(name, 2, 2, 10.0, Fraction(1, 10), n / 10, n, 0, False, False, "raw", name)
        self.n, self.fail_at, self.delay, self.i = n, fail_at, delay, 0
        self.truncated, self.warnings, self.closed = False, [], False

    def __iter__(self):
        return self

    def __next__(self) -> Frame:
        if self.i == self.fail_at:
            raise InputError(f"{self.info.name}: read failed (broken)")
        if self.i >= self.n:
            raise StopIteration
        time.sleep(self.delay)
        self.i += 1
        return Frame(self.info.name, self.i - 1, (self.i - 1) / 10, np.zeros((2, 2, 3), np.uint8))

    def close(self) -> None:
        self.closed = True


def test_feeder_runs_files_n_at_a_time_and_a_failing_source_ends_alone():
    active, peak, lock = [0], [0], threading.Lock()
    sources = {}

    def opener(name: str, n: int, **kw):
        def open_(stop):
            if name == "missing":
                raise InputError("missing.mp4: no such file or folder")
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            sources[name] = _ListSource(name, n, **kw)
            return sources[name]

        return open_

    jobs = [
        SourceJob("a", "a", False, opener("a", 20, delay=0.005)),
        SourceJob("missing", "missing", False, opener("missing", 0)),
        SourceJob("broken", "broken", False, opener("broken", 20, fail_at=5, delay=0.005)),
        SourceJob("c", "c", False, opener("c", 20, delay=0.005)),
    ]
    mux = SourceMux()
    feeder = SourceFeeder(mux, RunCounters(), streams=2, file_buffer=4, live_buffer=2)
    feeder.start(jobs)
    frames: Counter[str] = Counter()
    ends = {}
    for item in mux:
        if isinstance(item, FrameResult):
            frames[item.frame.source_id] += 1
        elif isinstance(item, SourceEnded):
            ends[item.source_id] = item
            with lock:
                active[0] -= item.started
    feeder.join(timeout=5)
    assert frames == {"a": 20, "broken": 5, "c": 20}
    assert {k: v.status for k, v in ends.items()} == {
        "a": "ended", "missing": "failed", "broken": "failed", "c": "ended"
    }  # fmt: skip
    assert "broken" in ends["broken"].error and not ends["missing"].started
    assert peak[0] == 2  # never more than --streams files at once
    assert all(s.closed for s in sources.values())


def test_a_run_gives_a_camera_a_small_leaky_lane_and_a_file_a_bigger_blocking_one(tiny_pose):
    """The lanes a run's feeder opens (recipe -> builder -> feeder -> mux): a live source's holds
    ``runtime.live_buffer`` frames and drops its oldest, a file's holds ``runtime.queue_size`` and blocks."""
    from hrstream.pipeline.builder import load_networks
    from hrstream.pipeline.recipe_load import load_recipe

    overrides = {
        "model": str(tiny_pose.config),
        "weights": str(tiny_pose.weights),
        "detector.name": "full-frame",
    }
    recipe = load_recipe("pose", None, {**overrides, "runtime.queue_size": 6, "runtime.live_buffer": 2})
    counters = RunCounters()
    mux, feeder = load_networks(recipe, progress=False).source_feeder(counters)
    feeder.start(
        [
            SourceJob("cam", "cam", True, lambda stop: _ListSource("cam", 10)),
            SourceJob("file", "file", False, lambda stop: _ListSource("file", 10)),
        ]
    )
    # Nobody reads yet: the camera's decode thread goes through its 10 frames and ends (its lane keeps the
    # newest 2), the file's puts 6 and waits for room for the 7th. (The deadline only ends a hang.)
    deadline = time.monotonic() + 30
    while "cam" in feeder.reading() or counters.source("file", live=False).frames_in < 6:
        if time.monotonic() > deadline:
            mux.abort()  # wake the decode threads; the checks below say what went wrong
            break
        time.sleep(0.01)
    lanes = {lane.source_id: lane for lane in mux.stats()}
    assert (lanes["cam"].maxsize, lanes["cam"].leaky) == (2, True)
    assert (lanes["file"].maxsize, lanes["file"].leaky) == (6, False)
    snap = counters.snapshot()
    assert (snap["cam"]["frames_in"], snap["cam"]["drops"]) == (10, 8)
    assert (snap["file"]["frames_in"], snap["file"]["drops"]) == (6, 0) and "file" in feeder.reading()
    frames: dict[str, list[tuple[int, int]]] = {"cam": [], "file": []}
    for item in mux:
        if isinstance(item, FrameResult):
            frames[item.frame.source_id].append((item.frame.index, item.dropped_before))
    feeder.join(timeout=10)
    assert frames["cam"] == [(8, 8), (9, 0)]  # the newest two, the drop reported with the next frame
    assert frames["file"] == [(i, 0) for i in range(10)]  # nothing lost


# ----------------------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for name in (
        "gen_audio_64x48.mp4",
        "gen_rot90_160x120.mp4",
        "gen_vfr_160x120.mp4",
        "street_960x540_5fps.mp4",
    ):
        shutil.copy(VIDEOS / name, folder / name)
    return folder


def _records_without_batch(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "batch"} for r in read_jsonl(path)]


def test_streams_2_over_a_folder_equals_streams_1_and_mixes_sources_in_batches(
    tiny_pose, clip_folder, tmp_path
):
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"s{n}"
        res = run_cli(["run", str(clip_folder), *_pose_args(tiny_pose, out), "--streams", str(n), "-q"])
        assert res.returncode == 0, res.stderr
        outs[n] = out
    names = sorted(p.name for p in outs[1].glob("*.jsonl"))
    assert len(names) == 4 and names == sorted(p.name for p in outs[2].glob("*.jsonl"))
    for name in names:
        one, two = _records_without_batch(outs[1] / name), _records_without_batch(outs[2] / name)
        assert one == two, name  # per-source state stays per source: same tracks, same keypoints
        tracks1 = json.loads((outs[1] / name.replace(".jsonl", ".tracks.json")).read_text())["tracks"]
        tracks2 = json.loads((outs[2] / name.replace(".jsonl", ".tracks.json")).read_text())["tracks"]
        assert tracks1 == tracks2
        assert video_facts(outs[2] / name.replace(".jsonl", ".mp4")).frames == len(one)
    batches: dict[int, set[str]] = {}
    for name in names:
        for r in read_jsonl(outs[2] / name):
            batches.setdefault(r["batch"], set()).add(r["source"])
    assert any(len(s) > 1 for s in batches.values())  # one network call held frames of two videos
    state, jobs = manifest_jobs(outs[2])
    assert state == "done" and {j["status"] for j in jobs.values()} == {"ok"} and len(jobs) == 4


def test_a_broken_input_among_good_ones_fails_alone(tiny_pose, clip_folder, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    out = tmp_path / "out"
    res = run_cli(["run", str(bad), str(clip_folder / "gen_vfr_160x120.mp4"), *_pose_args(tiny_pose, out)])
    assert res.returncode == 1
    assert "bad.mp4" in res.stderr
    _, jobs = manifest_jobs(out)
    assert {Path(k).name: j["status"] for k, j in jobs.items()} == {
        "bad.mp4": "failed",
        "gen_vfr_160x120.mp4": "ok",
    }


def test_wrong_recipe_types_are_one_line_and_exit_2(tiny_pose, tmp_path):
    cases = {
        "runtime:\n  batch_size: abc\n": "runtime.batch_size must be an integer >= 1, got 'abc'",
        "runtime:\n  queue_size: 0\n": "runtime.queue_size must be an integer >= 1, got 0",
        "runtime:\n  max_wait_s: -1\n": "runtime.max_wait_s must be a number >= 0.0, got -1",
        "tracker:\n  iou_weight: 2\n": "tracker.iou_weight must be a number in [0.0, 1.0], got 2",
        "smoother:\n  file: gaussian\n": "smoother.file must be one of one_euro, kalman, none, got 'gaussian'",
        "runtime:\n  batchsize: 4\n": "unknown recipe field runtime.batchsize (did you mean batch_size",
    }
    for text, message in cases.items():
        recipe = tmp_path / "r.yaml"
        recipe.write_text(text)
        res = invoke(
            ["run", str(VIDEOS / "gen_vfr_160x120.mp4"), "--pipeline", str(recipe), "--out", str(tmp_path)]
        )
        assert res.exit_code == 2, (text, res.output)
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("hrstream: error:")]
        assert len(lines) == 1 and message in lines[0] and str(recipe) in lines[0], res.stderr


def test_the_recipe_task_is_honoured_and_flags_reach_their_fields(tiny_pose, tmp_path):
    from hrstream.pipeline.recipe import FLAG_FIELDS
    from hrstream.pipeline.recipe_load import load_recipe

    recipe = tmp_path / "seg.yaml"
    recipe.write_text("task: seg\nruntime:\n  batch_size: 2\n")
    assert load_recipe(None, recipe).task == "seg"
    assert load_recipe("pose", recipe).task == "pose"  # a --task flag wins over the recipe's
    over = load_recipe(
        None, None, {FLAG_FIELDS["det_thr"]: 0.7, FLAG_FIELDS["kpt_thr"]: 0.2, FLAG_FIELDS["max_people"]: 3}
    )
    assert (over.detector.score_thr, over.pose.kpt_thr, over.detector.max_people) == (0.7, 0.2, 3)
    # every flag of `hrstream run` that sets a recipe field is in the table (and only those)
    from hrstream.cli.run import run as run_command

    run_control = {  # how the run goes, not how frames flow: no recipe field
        "sources", "sources_file", "task", "out_dir", "pipeline_path", "no_video", "grace", "quiet", "verbose",
        "workers", "executor", "ray_address", "cpus_per_worker", "input_timeout", "retry_failed", "force",
    }  # fmt: skip
    params = {p.name for p in run_command.params} - run_control
    assert params | {"video"} == set(FLAG_FIELDS)


def test_sources_file_names_sources_and_skips_comments(tiny_pose, tmp_path):
    listing = tmp_path / "site.txt"
    listing.write_text(
        f"# the lobby cameras\nlobby {VIDEOS / 'gen_vfr_160x120.mp4'}  # first floor\n\n{VIDEOS / 'gen_rot90_160x120.mp4'}\n"
    )
    out = tmp_path / "out"
    res = run_cli(["run", "--sources", str(listing), *_pose_args(tiny_pose, out), "--no-video", "-q"])
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["gen_rot90_160x120.jsonl", "lobby.jsonl"]
    assert {r["source"] for r in read_jsonl(out / "lobby.jsonl")} == {"lobby"}
    listing.write_text("a b c\n")
    res = run_cli(["run", "--sources", str(listing), *_pose_args(tiny_pose, out)])
    assert (
        res.returncode == 2
        and f"{listing}:1: expected 'URL', 'NAME URL' or 'NAME URL key=value ...', got 'c'" in res.stderr
    )


# ----------------------------------------------------------------------------------------- Python API
def test_stream_yields_every_frame_of_two_sources_interleaved_and_plots(tiny_pose, tmp_path):
    clips = [str(VIDEOS / "gen_vfr_160x120.mp4"), str(VIDEOS / "gen_audio_64x48.mp4")]
    results = list(
        hrstream.stream(clips, model=str(tiny_pose.config), weights=str(tiny_pose.weights), detector="full-frame",
                        streams=2, out=tmp_path / "out")
    )  # fmt: skip
    by_source: dict[str, list[int]] = {}
    for r in results:
        by_source.setdefault(r.source_id, []).append(r.frame.index)
    assert by_source == {"gen_vfr_160x120": list(range(16)), "gen_audio_64x48": list(range(25))}
    first = results[0]
    assert first.poses is not None and first.poses.track_ids is not None and first.frame.pts_s is not None
    img = first.plot()
    assert img.shape == first.frame.image.shape and img.dtype == np.uint8 and img is not first.frame.image
    assert len(read_jsonl(tmp_path / "out" / "gen_audio_64x48.jsonl")) == 25  # out= writes files too


def test_stream_left_early_stops_its_threads_and_closes_its_files(tiny_pose, tmp_path):
    before = {t.ident for t in threading.enumerate()}
    out = tmp_path / "out"
    gen = hrstream.stream(str(VIDEOS / "basketball_426x240_2997.mp4"), model=str(tiny_pose.config),
                          weights=str(tiny_pose.weights), detector="full-frame", out=out)  # fmt: skip
    for i, _ in enumerate(gen):
        if i == 5:
            break
    gen.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and {t.ident for t in threading.enumerate()} - before:
        time.sleep(0.05)
    assert not {t.name for t in threading.enumerate() if t.ident not in before}
    records = read_jsonl(out / "basketball_426x240_2997.jsonl")
    assert 6 <= len(records) < 300
    facts = video_facts(out / "basketball_426x240_2997.mp4")  # a finished, readable file
    assert facts.frames == len(records)
    json.loads((out / "basketball_426x240_2997.tracks.json").read_text())


# ----------------------------------------------------------------------------------------- live
@pytest.fixture(scope="module")
def camera_clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two 20 s H.264 clips for two cameras: 30 fps and 10 fps."""
    folder = tmp_path_factory.mktemp("cameras")
    return (
        h264_clip(folder / "fast_30fps.mp4", fps=30, repeat=2),
        h264_clip(folder / "slow_10fps.mp4", fps=10, every=3, repeat=2),
    )


def _segment(folder: Path, name: str, suffix: str = ".jsonl") -> Path:
    """A live source's (first) segment file: ``NAME_<UTC start time>.jsonl``."""
    found = sorted(folder.glob(f"{name}_*T*Z{suffix}"))
    if not found:
        raise AssertionError(f"no {name}_*{suffix} in {folder}")
    return found[0]


def _wait_file_records(path: Path, n: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path}: fewer than {n} records after {timeout} s")


def _wait_records(folder: Path, name: str, n: int, timeout: float) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = sorted(folder.glob(f"{name}_*T*Z.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= n:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"{folder}/{name}_*.jsonl: fewer than {n} records after {timeout} s")


def _wait_captured(path: Path, t: float, timeout: float) -> None:
    """Wait until ``path`` holds a frame record captured at or after ``t`` (wall clock)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = path.read_text().splitlines()
        if any("captured_at" in ln and json.loads(ln).get("captured_at", 0) >= t for ln in lines[-50:] if ln):
            return
        time.sleep(0.2)
    raise AssertionError(f"{path}: no frame captured after {t} within {timeout} s")


def _frames(path: Path) -> list[dict]:
    """The frame records of a JSONL file (a live source's also holds event records: gaps, reconnects)."""
    return [r for r in read_jsonl(path) if "event" not in r]


def _rate(records: list[dict], t0: float, t1: float) -> float:
    """Frames per second written for captures in [t0, t1) (wall clock)."""
    return sum(1 for r in records if t0 <= r["captured_at"] < t1) / (t1 - t0)


def _delivered_rate(records: list[dict], t0: float, t1: float) -> float:
    """Frames per second the source delivered for captures in [t0, t1), written or not: the source's frame
    numbers (dropped frames keep theirs) against its capture times, which the network's speed does not set."""
    inside = [r for r in records if t0 <= r["captured_at"] < t1]
    assert len(inside) >= 2, f"fewer than two records captured in [{t0}, {t1})"
    a, b = inside[0], inside[-1]
    return (b["frame"] - a["frame"]) / (b["captured_at"] - a["captured_at"])


@needs_rtsp
def test_two_cameras_one_network_a_dead_one_never_holds_the_other_back(tiny_pose, camera_clips, tmp_path):
    fast, slow = RtspServer(clip=camera_clips[0]).start(), RtspServer(clip=camera_clips[1]).start()
    out = tmp_path / "out"
    proc = None
    try:
        cameras = tmp_path / "cameras.txt"
        cameras.write_text(f"fast {fast.url}\nslow {slow.url}\n")
        proc = popen_run(["--sources", str(cameras), *_pose_args(tiny_pose, out), "--preset", "ultrafast"])
        fast_jsonl = _wait_records(out, "fast", 45, 90)
        # FFmpeg's probe holds a 10 fps stream's first frames back a few seconds, then hands them over at once
        slow_jsonl = _wait_records(out, "slow", 40, 60)
        time.sleep(4.0)
        t_kill = time.time()
        slow.kill()  # the slow camera goes away for good
        time.sleep(6.0)
        t_end = time.time()
        # stop once the output has caught up with t_end: frames are written seconds after their capture on a
        # slow or loaded machine, and those still in flight at the stop are not what this test measures
        _wait_captured(fast_jsonl, t_end, 120)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        fast.kill()
        slow.kill()
    assert proc.returncode == 130, stderr[-3000:]
    fast_recs, slow_recs = _frames(fast_jsonl), _frames(slow_jsonl)
    # Both cameras ran at once, each at its own rate: each delivered its camera's frame rate (counted by the
    # sources' frame numbers, so whatever the machine's speed), and was written at most at that rate (a slow
    # or loaded machine drops frames, the live lanes' own); frames of both went through some network call.
    before = (t_kill - 3.7, t_kill - 0.2)
    slow_in, fast_in = _delivered_rate(slow_recs, *before), _delivered_rate(fast_recs, *before)
    assert 10.0 * 0.7 < slow_in <= 10.0 * 1.2 and 29.97 * 0.7 < fast_in <= 29.97 * 1.2, (slow_in, fast_in)
    slow_out, fast_out = _rate(slow_recs, *before), _rate(fast_recs, *before)
    assert 0 < slow_out <= slow_in * 1.2 and 0 < fast_out <= fast_in * 1.2, (slow_out, fast_out)
    batches: dict[int, set[str]] = {}
    for r in fast_recs + slow_recs:
        batches.setdefault(r["batch"], set()).add(r["source"])
    assert sum(len(s) == 2 for s in batches.values()) >= 3
    # The slow camera died and is being reconnected for the rest of the run: the fast one was not held back.
    # It went on being read at its frame rate, and its frames went on through the network while the dead one
    # was still away: the run was stopped only once frames captured 6 s after the death had been written
    # (``_wait_captured``), which a pipeline waiting on the dead camera never does. How many frames per second
    # a machine writes is its speed (a loaded one writes none for seconds at a time, one camera or two), so it
    # is not compared here.
    after = (t_kill + 1.0, t_end)
    assert _delivered_rate(fast_recs, *after) > 29.97 * 0.7
    assert max(r["captured_at"] for r in fast_recs) >= t_end
    slow_gaps = [r for r in read_jsonl(slow_jsonl) if r.get("event") == "gap"]
    # the dead camera never came back while the fast one was written: its one gap is the outage the stop closed
    assert len(slow_gaps) == 1 and slow_gaps[0]["open"] is True, slow_gaps
    # SIGINT closed every output: both videos decode to their last record, the manifest says interrupted
    for jsonl, recs in ((fast_jsonl, fast_recs), (slow_jsonl, slow_recs)):
        assert video_facts(jsonl.with_suffix(".mp4")).frames == len(recs)
        json.loads(jsonl.with_name(jsonl.stem + ".tracks.json").read_text())
    state, jobs = manifest_jobs(out)
    assert state == "interrupted" and len(jobs) == 2


@needs_rtsp
def test_a_camera_and_a_file_in_one_run(tiny_pose, tmp_path):
    cam = RtspServer().start()
    out = tmp_path / "out"
    clip = VIDEOS / "gen_vfr_160x120.mp4"
    proc = None
    try:
        listing = tmp_path / "sources.txt"
        listing.write_text(f"cam {cam.url}\n")
        proc = popen_run([str(clip), "--sources", str(listing), *_pose_args(tiny_pose, out), "--no-video"])
        _wait_records(out, "cam", 30, 90)
        _wait_file_records(out / "gen_vfr_160x120.jsonl", 16, 60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cam.kill()
    assert proc.returncode == 143, stderr[-3000:]
    assert len(read_jsonl(out / "gen_vfr_160x120.jsonl")) == 16  # the file finished while the camera ran
    assert _frames(_segment(out, "cam"))  # a file is not cut into segments, a camera is
    _, jobs = manifest_jobs(out)
    by_name = {Path(k).name: j["status"] for k, j in jobs.items()}
    assert by_name["gen_vfr_160x120.mp4"] == "ok" and by_name["live"] == "interrupted"
    assert os.path.getsize(_segment(out, "cam", ".tracks.json")) > 0
