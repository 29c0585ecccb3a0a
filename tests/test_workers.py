"""``hrstream run --workers N``: spawned worker processes, each input isolated from the others' crashes.

A folder with good inputs, one that crashes its worker once (retried on a new worker), one that crashes it
every time (a real SIGSEGV: failed after two attempts, with the cause) and one that stalls (ended by
``--input-timeout``) gives the same outputs for the good inputs as a plain single-process run, and the main
process alone keeps a valid manifest. Real processes, real signals; the misbehaviour is the workers' test hook
(:mod:`hrstream.runs.processes`, :mod:`hrstream.runs.scheduler`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import pytest
from support.batch_runs import (
    GOOD,
    assert_same_outputs,
    batch_folder,
    faults,
    manifest_entries,
    plain_batch_run,
)
from support.cli_checks import ROOT, cli_env, invoke, read_jsonl, run_cli
from support.make_clips import _video
from support.tiny_models import TinyModel, tiny_pose_model

from hrstream.runs.processes import exit_cause
from hrstream.runs.worker import FAULTS_ENV
from hrstream.runtime import usable_cpu_count
from hrstream.schemas import validate

TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


def _args(tiny: TinyModel, out: Path) -> list[str]:
    return [*tiny.args(), "--detector", "full-frame", "--out", str(out)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The plain run of the batch folder and a ``--workers 2`` run with the test hook over the same folder."""
    media, plain, tiny = plain_batch_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("workers") / "out"
    res = run_cli(
        ["run", str(media), *_args(tiny, out), "--workers", "2", "--input-timeout", str(TIMEOUT_S)],
        env=cli_env(**{FAULTS_ENV: faults("segv")}),
        timeout=300,
    )
    return {"plain": plain, "out": out, "res": res}


def test_good_inputs_equal_a_plain_run(runs: dict) -> None:
    res = runs["res"]
    assert res.returncode == 1, res.stderr  # two inputs failed
    assert "Traceback" not in res.stderr
    assert_same_outputs(runs["plain"], runs["out"])
    doc = json.loads((runs["out"] / "manifest.json").read_text())
    validate(doc, "manifest", label="manifest.json")
    _, jobs = manifest_entries(runs["out"])
    assert {n: jobs[n]["status"] for n in GOOD} == dict.fromkeys(GOOD, "ok")
    for name in GOOD:
        assert jobs[name]["frames"] == len(read_jsonl(runs["out"] / f"{name}.jsonl"))


def test_a_crash_costs_only_its_input(runs: dict) -> None:
    run, jobs = manifest_entries(runs["out"])
    # flaky: its worker died mid-input once; the retry on a new worker completed it
    assert jobs["flaky"]["attempts"] == 2 and jobs["flaky"]["status"] == "ok"
    # crashy: a segfault on both attempts, then failed with the cause
    crashy = jobs["crashy"]
    assert crashy["status"] == "failed" and crashy["attempts"] == 2
    assert "died on each of 2 attempts" in crashy["error"] and "SIGSEGV" in crashy["error"]
    # stuck: ended by the time limit, not retried
    stuck = jobs["stuck"]
    assert stuck["status"] == "failed" and stuck["attempts"] == 1
    assert f"timed out after {TIMEOUT_S:g} s" in stuck["error"]
    # two workers from the start, each with one of the two cores; new ones replaced the three that died
    workers = run["workers"]
    assert sorted(w["worker"] for w in workers[:2]) == [0, 1]
    assert len({w["pid"] for w in workers}) == len(workers) >= 2 + 3
    assert {w["threads"] for w in workers} == {max(1, usable_cpu_count() // 2)}
    assert all(w["start_s"] >= w["setup_s"] > 0 for w in workers)
    assert run["executor"] == "processes" and run["state"] == "done"
    for w in workers:  # every worker is gone once the run ended
        with pytest.raises(ProcessLookupError):
            os.kill(w["pid"], 0)
    err = runs["res"].stderr
    assert "trying it again (attempt 2 of 2)" in err
    summary = err[err.index("status ") :]
    assert re.search(r"^ok\s+3\s", summary, re.M) and re.search(r"^failed\s+2\s", summary, re.M), summary


def test_status_after_the_run(runs: dict) -> None:
    status = invoke(["status", str(runs["out"])])
    assert status.exit_code == 1
    assert "5 inputs: 3 done, 2 failed, 0 running, 0 remaining" in status.stdout


def test_exit_causes() -> None:
    assert exit_cause(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert "out-of-memory" in exit_cause(-signal.SIGKILL)
    assert exit_cause(70) == "exit code 70"


def test_options_that_need_workers_or_files(tiny_pose: TinyModel, tmp_path: Path) -> None:
    clip = batch_folder(tmp_path) / "good_a.mp4"
    for extra, message in [
        (["--input-timeout", "5"], "--input-timeout needs worker processes"),
        (["--cpus-per-worker", "1"], "--cpus-per-worker needs worker processes"),
        (["--workers", "0"], "--workers '0'"),
        (["--workers", "many"], "--workers 'many'"),
    ]:
        result = invoke(["run", str(clip), *_args(tiny_pose, tmp_path / "out"), *extra])
        assert result.exit_code == 2, (extra, result.stderr)
        assert message in result.stderr
    live = invoke(["run", "rtsp://127.0.0.1:9/x", *_args(tiny_pose, tmp_path / "out"), "--workers", "2"])
    assert live.exit_code == 2 and "live sources" in live.stderr


def test_more_workers_than_cores_each_get_a_thread(tiny_pose: TinyModel, tmp_path: Path) -> None:
    """``--workers 3`` on 2 cores (this process held to 2 of the machine's CPUs for the run, or ``--workers 2``
    on 1; the spawned worker inherits the mask): each worker has at least one torch thread, and the input is
    processed."""
    usable = os.sched_getaffinity(0)
    cpus = set(sorted(usable)[:2])
    clip = batch_folder(tmp_path) / "good_a.mp4"
    out = tmp_path / "out"
    os.sched_setaffinity(0, cpus)
    try:
        assert usable_cpu_count() == len(cpus)
        res = invoke(
            ["run", str(clip), *_args(tiny_pose, out), "--workers", str(len(cpus) + 1), "--no-video"]
        )
    finally:
        os.sched_setaffinity(0, usable)
    assert res.exit_code == 0, res.stderr[-3000:]
    run, jobs = manifest_entries(out)
    assert jobs["good_a"]["status"] == "ok"
    assert [w["threads"] for w in run["workers"]] == [1]  # one input: one worker started, with one thread


@pytest.mark.slow
def test_sigint_drains_the_workers(tiny_pose: TinyModel, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    _video(media / "long.mp4", "libx264", 160, 120, list(range(150)), Fraction(1, 25))
    _video(media / "stuck.mp4", "libx264", 160, 120, list(range(10)), Fraction(1, 25))
    out = tmp_path / "out"
    args = ["run", str(media), *_args(tiny_pose, out), "--workers", "2", "--batch-size", "1", "--grace", "4"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrstream.cli", *args, "-q"],
        env=cli_env(**{FAULTS_ENV: "stuck=stall"}),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 120
    while True:  # both inputs running, the long one written in part
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        try:
            _, jobs = manifest_entries(out)
            lines = (out / "long.jsonl").read_bytes().count(b"\n")
        except (OSError, ValueError, KeyError, IndexError):
            time.sleep(0.1)
            continue
        if {j["status"] for j in jobs.values()} == {"running"} and lines >= 5:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run, jobs = manifest_entries(out)
    assert run["state"] == "interrupted"
    assert jobs["long"]["status"] == "interrupted" and jobs["stuck"]["status"] == "interrupted"
    records = read_jsonl(out / "long.jsonl")  # drained: every record complete, the video closed
    assert 5 <= len(records) < 150 and [r["frame"] for r in records] == list(range(len(records)))
    assert "did not drain within 4 s" in err  # the stuck one was killed after the grace period
    for w in run["workers"]:
        with pytest.raises(ProcessLookupError):
            os.kill(w["pid"], 0)


@pytest.mark.slow
def test_one_metrics_endpoint_serves_every_workers_numbers(tiny_pose: TinyModel, tmp_path: Path) -> None:
    """``--metrics-port`` with ``--workers 2``: the main process serves one endpoint with both workers' sources
    (their counters reach it with their progress); no worker binds the port."""
    from prometheus_client.parser import text_string_to_metric_families
    from support.rtsp import free_port

    media = tmp_path / "media"
    media.mkdir()
    for name in ("one", "two"):
        _video(media / f"{name}.mp4", "libx264", 160, 120, list(range(150)), Fraction(1, 25))
    out, port = tmp_path / "out", free_port()
    args = ["run", str(media), *_args(tiny_pose, out), "--workers", "2", "--batch-size", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrstream.cli", *args, "--metrics-port", str(port), "--no-video"],
        env=cli_env(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    seen: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline and len(seen) < 2:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    text = resp.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            for fam in text_string_to_metric_families(text):
                if fam.name == "hrstream_source_frames_out":
                    frames = {s.labels["source"]: s.value for s in fam.samples if s.name.endswith("_total")}
                    if all(frames.get(n, 0) > 0 for n in ("one", "two")):  # both workers in one scrape
                        seen = frames
            time.sleep(0.2)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert set(seen) == {"one", "two"} and all(v > 0 for v in seen.values()), (seen, err[-2000:])
    assert proc.returncode == 0, err[-3000:]
    assert "Address already in use" not in err and "Traceback" not in err
