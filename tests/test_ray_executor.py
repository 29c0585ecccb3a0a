"""``hrstream run --executor ray``: Ray Core actors on a local cluster started once for the session.

The cluster (2 CPUs and 2 fake GPUs: Ray schedules by the resources it is told of, so placement can be
checked without a GPU) runs ``hrstream run`` as a separate driver process: 2 actors, one per GPU, process a
folder with good inputs, one whose actor dies once (retried on a new actor), one whose actor is killed every
time (SIGKILL, as the OOM killer does: failed after two attempts) and one that stalls (its actor killed by
``--input-timeout``). The good inputs' outputs equal a plain single-process run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
from support.cli_checks import ROOT, cli_env, invoke, read_jsonl, run_cli, video_facts
from support.make_clips import _video
from support.tiny_models import TinyModel, tiny_pose_model

from hrstream.errors import ConfigError
from hrstream.runs.ray_actors import actor_plan
from hrstream.runs.worker import FAULTS_ENV
from hrstream.schemas import validate

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

TIMEOUT_S = 15.0


@pytest.fixture(scope="session")
def ray_address() -> str:
    """A local Ray cluster for the session (2 CPUs, 2 fake GPUs, no dashboard, no usage statistics)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


@pytest.fixture(scope="module")
def runs(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The plain run of the batch folder and an ``--executor ray`` run with the test hook over it."""
    media, plain, tiny = plain_batch_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("ray") / "out"
    args = [*tiny.args(), "--detector", "full-frame", "--out", str(out), "--executor", "ray"]
    res = run_cli(
        ["run", str(media), *args, "--ray-address", ray_address, "--input-timeout", str(TIMEOUT_S)],
        env=cli_env(**{FAULTS_ENV: faults("kill")}),
        timeout=400,
    )
    return {"plain": plain, "out": out, "res": res}


def test_two_actors_give_the_outputs_of_a_plain_run(runs: dict) -> None:
    res = runs["res"]
    assert res.returncode == 1, res.stderr[-3000:]
    assert_same_outputs(runs["plain"], runs["out"])
    validate(json.loads((runs["out"] / "manifest.json").read_text()), "manifest", label="manifest.json")
    run, jobs = manifest_entries(runs["out"])
    assert run["executor"] == "ray" and run["state"] == "done"
    assert {n: jobs[n]["status"] for n in GOOD} == dict.fromkeys(GOOD, "ok")


def test_a_dead_actor_is_replaced_and_its_input_retried(runs: dict) -> None:
    run, jobs = manifest_entries(runs["out"])
    assert jobs["flaky"]["status"] == "ok" and jobs["flaky"]["attempts"] == 2
    crashy = jobs["crashy"]
    assert crashy["status"] == "failed" and crashy["attempts"] == 2
    assert "actor died on each of 2 attempts" in crashy["error"]
    stuck = jobs["stuck"]
    assert stuck["status"] == "failed" and stuck["attempts"] == 1
    assert f"timed out after {TIMEOUT_S:g} s" in stuck["error"]
    # 2 actors, then one new actor for each of the 4 that died or were killed (flaky once, crashy twice, stuck)
    # as long as inputs were left
    assert len({w["pid"] for w in run["workers"]}) == len(run["workers"]) >= 2 + 2


def test_one_actor_per_gpu(runs: dict) -> None:
    run, _ = manifest_entries(runs["out"])
    workers = run["workers"]
    assert all(len(w["gpu_ids"]) == 1 for w in workers)
    assert {w["gpu_ids"][0] for w in workers[:2]} == {"0", "1"}  # the first two actors hold one GPU each
    assert all(w["threads"] == 1 for w in workers)  # 2 CPUs shared by 2 GPU actors


@pytest.mark.parametrize(
    ("resources", "device", "workers", "cpw", "expected"),
    [
        ({"CPU": 16, "GPU": 1}, "auto", None, None, (1, {"num_cpus": 16.0, "num_gpus": 1.0})),
        ({"CPU": 16, "GPU": 2}, "cuda", None, None, (2, {"num_cpus": 8.0, "num_gpus": 1.0})),
        ({"CPU": 16, "GPU": 2}, "cpu", None, None, (8, {"num_cpus": 2.0})),
        ({"CPU": 16}, "auto", None, 4, (4, {"num_cpus": 4.0})),
        ({"CPU": 2}, "auto", None, 1, (2, {"num_cpus": 1.0})),
        ({"CPU": 2}, "auto", 5, 1, (5, {"num_cpus": 1.0})),
        ({"CPU": 1}, "auto", None, None, (1, {"num_cpus": 1.0})),
        ({"CPU": 16, "GPU": 1}, "auto", 6, None, (6, {"num_cpus": 2.0, "num_gpus": 0.1667})),
    ],
)
def test_actor_plan(
    resources: dict, device: str, workers: int | None, cpw: int | None, expected: tuple
) -> None:
    assert actor_plan(resources, device=device, workers=workers, cpus_per_worker=cpw) == expected


def test_an_actor_that_cannot_fit_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not fit the cluster"):
        actor_plan({"CPU": 2}, device="auto", workers=None, cpus_per_worker=4)


def test_ray_address_needs_the_ray_executor(tiny_pose: TinyModel, tmp_path: Path) -> None:
    clip = batch_folder(tmp_path) / "good_a.mp4"
    result = invoke(
        ["run", str(clip), *tiny_pose.args(), "--out", str(tmp_path / "o"), "--ray-address", "x:1"]
    )
    assert result.exit_code == 2 and "--ray-address needs --executor ray" in result.stderr


def test_a_stop_drains_the_actors_within_the_grace_and_a_second_one_kills_them(
    ray_address: str, tiny_pose: TinyModel, tmp_path: Path
) -> None:
    """SIGINT to an ``--executor ray`` run with two busy actors, ``--grace 30``. The first signal asks them to
    drain: the one that can drains and its input ends interrupted with every file closed; the stalled one is
    not killed at the abort's 2 s (it still has its grace). A second signal aborts: the stalled actor is killed
    at once, long before the 30 s grace is over."""
    grace = 30.0
    media = tmp_path / "media"
    media.mkdir()
    _video(media / "long.mp4", "libx264", 160, 120, list(range(600)), Fraction(1, 25))
    _video(media / "stuck.mp4", "libx264", 160, 120, list(range(10)), Fraction(1, 25))
    out = tmp_path / "out"
    args = [*tiny_pose.args(), "--detector", "full-frame", "--batch-size", "1", "--out", str(out)]
    args += ["--executor", "ray", "--ray-address", ray_address, "--grace", str(grace), "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrstream.cli", "run", str(media), *args],
        env=cli_env(**{FAULTS_ENV: "stuck=stall"}),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300  # ends a run that never gets going, not a speed requirement
        while True:  # both actors busy: the long input written in part, the stuck one stalled after 2 frames
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            lines = {n: _lines(out / f"{n}.jsonl") for n in ("long", "stuck")}
            if lines["long"] >= 5 and lines["stuck"] >= 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        while proc.poll() is None and time.monotonic() - stopped < 6.0:  # past the abort's 2 s grace
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-3000:]  # the stop's grace is --grace, not 2 s
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=grace)
        elapsed = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-3000:]
    assert elapsed < grace, (elapsed, err[-3000:])  # killed by the abort, not at the end of the grace
    assert "stuck.mp4: did not drain within 2 s; killing its actor" in err, err[-3000:]
    assert "long.mp4: did not drain" not in err
    run, jobs = manifest_entries(out)
    assert run["state"] == "interrupted" and run["executor"] == "ray"
    assert jobs["long"]["status"] == jobs["stuck"]["status"] == "interrupted"
    records = read_jsonl(out / "long.jsonl")  # drained by its actor: every file closed with its frames
    assert 5 <= len(records) < 600 and [r["frame"] for r in records] == list(range(len(records)))
    assert jobs["long"]["frames"] == len(records) == video_facts(out / "long.mp4").frames
    assert json.loads((out / "long.tracks.json").read_text())["num_frames"] == len(records)
    assert not (out / "stuck.tracks.json").exists()  # its actor was killed before it could close anything


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0
