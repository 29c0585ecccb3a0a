"""``hrstream run`` under faults: bad inputs beside a good one, SIGINT, a second SIGINT, SIGKILL.

The signal tests run the command as a child process (real signals, real stderr); all runs use the tiny
official-architecture network so that clips are processed at tens of frames per second on a CPU.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import yaml
from support.cli_checks import (
    ROOT,
    VIDEOS,
    cli_env,
    invoke,
    jsonl_lines,
    manifest_jobs,
    read_jsonl,
    video_facts,
)
from support.tiny_models import TinyModel, tiny_pose_model

LONG_CLIP = VIDEOS / "basketball_426x240_2997.mp4"  # 300 frames
GOOD_CLIP = VIDEOS / "street_960x540_5fps.mp4"


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


def _audio_only(path: Path) -> None:
    """One second of a 440 Hz tone, AAC in MP4, no video stream."""
    rate = 16000
    t = np.arange(rate) / rate
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for i in range(0, rate, 1024):
            chunk = (0.3 * np.sin(2 * np.pi * 440 * t[i : i + 1024])).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)


def _truncated_mkv(path: Path, frames: int = 40) -> int:
    """The first ``frames`` packets of the long clip remuxed to Matroska, then cut in half. Returns
    ``frames``."""
    full = path.with_name("full.mkv")
    with av.open(str(LONG_CLIP)) as src, av.open(str(full), "w") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        n = 0
        for packet in src.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            dst.mux(packet)
            n += 1
            if n >= frames:
                break
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return frames


def test_bad_inputs_fail_alone_with_one_line_each(tiny_pose: TinyModel, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "empty.mp4").write_bytes(b"")
    (media / "notes.mp4").write_text("these are meeting notes, not a video\n")
    _audio_only(media / "audio_only.mp4")
    full_frames = _truncated_mkv(media / "cut.mkv")
    bad = [str(media / n) for n in ("missing.mp4", "empty.mp4", "notes.mp4", "audio_only.mp4")]
    bad.append("ftp://x/y.mp4")
    cut = str(media / "cut.mkv")
    out = tmp_path / "out"
    args = ["run", *bad[:3], str(GOOD_CLIP), *bad[3:], cut, *tiny_pose.args(), "--detector", "full-frame"]
    result = invoke([*args, "--out", str(out), "-q"])
    assert result.exit_code == 1, result.stderr
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for spec in [*bad, cut]:
        naming = [line for line in lines if spec in line]
        assert len(naming) == 1, (spec, result.stderr)
        assert len(naming[0]) < 300
    assert "ended early" in next(line for line in lines if cut in line)

    state, jobs = manifest_jobs(out)
    assert state == "done"
    assert {jobs[s]["status"] for s in bad} == {"failed"}
    assert all(jobs[s]["error"] for s in bad)
    good = jobs[str(GOOD_CLIP)]
    assert good["status"] == "ok"
    n = video_facts(GOOD_CLIP).frames
    assert video_facts(good["outputs"]["video"]).frames == n == good["frames"]
    assert len(read_jsonl(good["outputs"]["jsonl"])) == n
    assert json.loads(Path(good["outputs"]["tracks"]).read_text())["num_frames"] == n

    # the cut file: what could be decoded is processed and kept, and the manifest says it was truncated
    part = jobs[cut]
    assert part["truncated"] is True
    assert 0 < part["frames"] < full_frames
    assert video_facts(part["outputs"]["video"]).frames == part["frames"]
    assert len(read_jsonl(part["outputs"]["jsonl"])) == part["frames"]


def _start_long_run(tiny_pose: TinyModel, out: Path, *extra: str) -> subprocess.Popen[str]:
    args = ["run", str(LONG_CLIP), *tiny_pose.args(), "--detector", "full-frame", "--batch-size", "1"]
    return subprocess.Popen(
        [sys.executable, "-m", "hrstream.cli", *args, "--out", str(out), "-q", *extra],
        env=cli_env(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_lines(proc: subprocess.Popen[str], jsonl: Path, n: int, timeout: float = 600) -> int:
    """Poll until ``jsonl`` holds at least ``n`` complete lines; returns how many it holds then. ``timeout`` only
    stops a run that makes no progress (a shared 2-core machine may take minutes for 100 frames)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run ended early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        if jsonl.exists():
            count = jsonl.read_bytes().count(b"\n")
            if count >= n:
                return count
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"fewer than {n} records in {timeout} s")


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    """Wait for the run to exit (``timeout`` is a safety net against a hang, not a speed requirement)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"no exit within {timeout} s of the signal")
    return proc.returncode, err


GRACE_S = 10.0


@pytest.mark.slow
def test_sigint_drains_and_closes_every_output(tiny_pose: TinyModel, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start_long_run(tiny_pose, out, "--grace", str(GRACE_S))
    stem = LONG_CLIP.stem
    at_signal = _wait_for_lines(proc, out / f"{stem}.jsonl", 5)
    proc.send_signal(signal.SIGINT)
    rc, err = _finish(proc)
    assert rc == 130, err
    assert "Traceback" not in err
    records = read_jsonl(out / f"{stem}.jsonl")  # every line parses and the last one is complete
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert at_signal <= len(records) < 300
    video = video_facts(out / f"{stem}.mp4")
    # the writer closed the file properly: every frame handed to it decodes, one per record
    assert video.frames == len(records)
    np.testing.assert_allclose(video.pts_s, [r["pts_s"] for r in records], atol=1e-6)
    state, jobs = manifest_jobs(out)
    assert state == "interrupted"
    assert jobs[str(LONG_CLIP)]["status"] == "interrupted"
    assert jobs[str(LONG_CLIP)]["frames"] == len(records)
    doc = json.loads((out / f"{stem}.tracks.json").read_text())
    assert doc["num_frames"] == len(records)


@pytest.mark.slow
def test_second_sigint_aborts(tiny_pose: TinyModel, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start_long_run(tiny_pose, out, "--grace", "120")
    jsonl = out / f"{LONG_CLIP.stem}.jsonl"
    at_signal = _wait_for_lines(proc, jsonl, 5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rc, err = _finish(proc)  # the 120 s grace is never reached: the second signal does not wait for a drain
    assert rc == 130, err
    assert "aborting" in err
    assert "Traceback" not in err
    records, tail = jsonl_lines(jsonl)
    assert tail == b""
    # a drain writes every frame in flight (about 18 with these queue sizes); an abort stops at once
    assert len(records) - at_signal <= 5, (at_signal, len(records))
    assert manifest_jobs(out)[0] == "interrupted"


@pytest.mark.slow
def test_sigkill_leaves_readable_outputs(tiny_pose: TinyModel, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start_long_run(tiny_pose, out)
    stem = LONG_CLIP.stem
    # about three keyframe intervals (1 s GOP at 29.97 fps), so that fragments have been completed
    _wait_for_lines(proc, out / f"{stem}.jsonl", 100)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    records, _tail = jsonl_lines(out / f"{stem}.jsonl")  # the unterminated tail (if any) is ignored
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert len(records) >= 100
    video = video_facts(out / f"{stem}.mp4")
    print(f"SIGKILL after {len(records)} records: {video.frames} frames decode")
    assert 0 < video.frames <= len(records) + 1
    np.testing.assert_allclose(video.pts_s, [r["pts_s"] for r in records[: video.frames]], atol=1e-6)
    # the tracks document is written (atomically) when the source ends: after a SIGKILL there is none, and no
    # half-written temporary file beside it
    assert sorted(p.name for p in out.iterdir() if ".tracks" in p.name) == []


@pytest.fixture(scope="module")
def slow_pose(tiny_pose: TinyModel) -> TinyModel:
    """The tiny network on 768x1024 crops (its weights fit any size: it is convolutional): about a second a frame
    on a quiet 2-core CPU, several on a loaded one."""
    config = yaml.safe_load(tiny_pose.config.read_text())
    config["MODEL"].update(IMAGE_SIZE=[768, 1024], HEATMAP_SIZE=[192, 256])
    path = tiny_pose.config.with_name("slow_pose.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return TinyModel(path, tiny_pose.weights)


def test_grace_bounds_the_time_from_the_signal_to_the_exit(slow_pose: TinyModel, tmp_path: Path) -> None:
    """``--grace`` is an upper bound. The pipeline cannot drain in time: a slow network behind a lane that holds
    the whole 300-frame clip. SIGINT once a frame was written: after ``--grace`` the run is cut, every output
    closed with the frames it has, and the process exits at once, not when the network call in flight ends.

    The time is measured from the signal and bounded relative to ``--grace``: at least the grace (the drain had
    its chance), less than one and a half times it (closing files of a few frames and the manifest took under
    0.6 s on the loaded 2-core machine; a network call of this model several seconds)."""
    grace = 2.0
    recipe = tmp_path / "long_lane.yaml"
    recipe.write_text("runtime:\n  queue_size: 300\n  batch_size: 1\n")
    out = tmp_path / "out"
    args = ["run", str(LONG_CLIP), *slow_pose.args(), "--detector", "full-frame", "--device", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrstream.cli", *args, "--pipeline", str(recipe), "--grace", str(grace)]
        + ["--out", str(out), "-q"],
        env=cli_env(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    jsonl = out / f"{LONG_CLIP.stem}.jsonl"
    _wait_for_lines(proc, jsonl, 1)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc, err = _finish(proc)
    elapsed = time.monotonic() - signalled
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err and f"not drained {grace:.1f} s after stop; aborting" in err, err[-3000:]
    assert grace <= elapsed < 1.5 * grace, (elapsed, err[-3000:])
    records = read_jsonl(jsonl)  # whole lines, the frames in order, far fewer than the lane held
    assert 1 <= len(records) < 100 and [r["frame"] for r in records] == list(range(len(records)))
    assert video_facts(out / f"{LONG_CLIP.stem}.mp4").frames == len(records)  # the video was finished
    assert json.loads((out / f"{LONG_CLIP.stem}.tracks.json").read_text())["num_frames"] == len(records)
    state, jobs = manifest_jobs(out)
    assert state == "interrupted" and jobs[str(LONG_CLIP)]["status"] == "interrupted"
    assert jobs[str(LONG_CLIP)]["frames"] == len(records)


def _wait_until(proc: subprocess.Popen[str], ready: Any, what: str, timeout: float = 300) -> None:
    """Poll ``ready()`` until it is true (``timeout`` only ends a run that never gets there)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never {what} ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.01)


@pytest.mark.parametrize("moment", ["importing torch", "loading the model"])
def test_ctrl_c_while_starting_ends_130_without_a_traceback(
    tiny_pose: TinyModel, tmp_path: Path, moment: str
) -> None:
    """SIGINT in the first seconds: while the command's modules load (torch's library being mapped into the
    process), or while the network loads (after its weights were read): one line, exit 130, no traceback."""
    args = [
        "run",
        str(LONG_CLIP),
        *tiny_pose.args(),
        "--detector",
        "full-frame",
        "--out",
        str(tmp_path / "out"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrstream.cli", *args],
        env=cli_env(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    maps = Path(f"/proc/{proc.pid}/maps")
    if moment == "importing torch":
        _wait_until(proc, lambda: "libtorch" in maps.read_text(), "imported torch")
    else:
        assert proc.stderr is not None
        lines: list[str] = []
        _wait_until(proc, lambda: lines.append(proc.stderr.readline()) or " loaded " in lines[-1], "loaded")
    proc.send_signal(signal.SIGINT)
    rc, err = _finish(proc)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "hrstream: interrupted" in err or "SIGINT received" in err, err[-3000:]
