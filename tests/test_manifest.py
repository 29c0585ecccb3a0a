"""The manifest of an output folder: it accumulates across runs, names stay distinct across runs, an input is
marked running before its outputs are touched and skipped only while its outputs are as recorded;
``hrstream status``, ``--retry-failed`` and ``--force``; the ``Manifest`` API (update / flush / autoflush).

Runs use the tiny test model on real clips (in this process through click's runner, or as a child process
where the test kills it)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
from support.cli_checks import ROOT, VIDEOS, cli_env, invoke, manifest_jobs, read_jsonl
from support.make_clips import _video
from support.tiny_models import TinyModel, tiny_pose_model

from hrstream.errors import ConfigError
from hrstream.io import expand_inputs
from hrstream.runs.items import input_key
from hrstream.runs.manifest import Manifest
from hrstream.schemas import SchemaValidationError, validate
from hrstream.types import SourceResult

CLIP = VIDEOS / "gen_vfr_160x120.mp4"  # 16 frames


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


def _run(tiny: TinyModel, out: Path, *args: str) -> tuple[int, str]:
    result = invoke(["run", *args, *tiny.args(), "--detector", "full-frame", "--no-video", "--out", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def _doc(out: Path) -> dict:
    doc = json.loads((out / "manifest.json").read_text())
    validate(doc, "manifest", label="manifest.json")
    return doc


def _by_key(out: Path) -> dict[str, dict]:
    return {j["key"]: j for j in _doc(out)["jobs"]}


def test_entries_accumulate_across_runs(tiny_pose: TinyModel, tmp_path: Path) -> None:
    x, y = tmp_path / "x.mp4", tmp_path / "y.mp4"
    shutil.copy(CLIP, x)
    shutil.copy(CLIP, y)
    out = tmp_path / "out"
    assert _run(tiny_pose, out, str(x))[0] == 0
    x_jsonl = out / "x.jsonl"
    stamp = x_jsonl.stat().st_mtime_ns
    assert _run(tiny_pose, out, str(y))[0] == 0  # another command into the same folder
    jobs = _by_key(out)
    assert set(jobs) == {str(x.resolve()), str(y.resolve())}
    assert {j["status"] for j in jobs.values()} == {"ok"}
    assert len(_doc(out)["runs"]) == 2
    # x is remembered: named again (by a relative path this time), it is skipped, its outputs untouched
    code, err = _run(
        tiny_pose, out, str(x.relative_to(Path.cwd())) if x.is_relative_to(Path.cwd()) else str(x)
    )
    assert code == 0 and "1 skipped" in err, err
    assert x_jsonl.stat().st_mtime_ns == stamp
    assert len(read_jsonl(x_jsonl)) == 16


def test_names_stay_distinct_across_runs(tiny_pose: TinyModel, tmp_path: Path) -> None:
    other, sub = tmp_path / "other" / "x.mp4", tmp_path / "sub" / "x.mp4"
    for p, src in ((other, CLIP), (sub, VIDEOS / "street_960x540_5fps.mp4")):
        p.parent.mkdir()
        shutil.copy(src, p)
    out = tmp_path / "out"
    assert _run(tiny_pose, out, str(other))[0] == 0
    first = (out / "x.jsonl").read_bytes()
    assert _run(tiny_pose, out, str(sub))[0] == 0  # a later run: sub/x.mp4 must not take the name x
    assert (out / "x.jsonl").read_bytes() == first
    jobs = _by_key(out)
    assert jobs[str(other.resolve())]["name"] == "x" and jobs[str(sub.resolve())]["name"] == "x_2"
    assert len(read_jsonl(out / "x_2.jsonl")) == 5 and len(read_jsonl(out / "x.jsonl")) == 16
    # both again, the later one first, with --force: each keeps its own name and files
    assert _run(tiny_pose, out, str(sub), str(other), "--force")[0] == 0
    jobs = _by_key(out)
    assert jobs[str(other.resolve())]["name"] == "x" and jobs[str(sub.resolve())]["name"] == "x_2"
    assert len(read_jsonl(out / "x_2.jsonl")) == 5 and len(read_jsonl(out / "x.jsonl")) == 16
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["x.jsonl", "x_2.jsonl"]


def _wait_rewrite(proc: subprocess.Popen[str], out: Path, key: str, n: int, timeout: float = 120) -> None:
    """Until the manifest says ``key`` is running and its JSONL, written anew, holds at least ``n`` lines (and
    fewer than the finished file held)."""
    jsonl = out / "long.jsonl"
    old = jsonl.read_bytes().count(b"\n")
    rewritten = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run ended early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        try:
            running = _by_key(out)[key]["status"] == "running"
            lines = jsonl.read_bytes().count(b"\n")
        except (OSError, ValueError):  # between the old file's removal and the new one
            continue
        rewritten = rewritten or (running and lines < old)
        if rewritten and lines >= n:
            assert lines < old
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"the JSONL was not rewritten up to {n} lines in {timeout} s")


@pytest.mark.slow
def test_input_killed_while_writing_is_processed_again(tiny_pose: TinyModel, tmp_path: Path) -> None:
    clip = tmp_path / "long.mp4"
    _video(clip, "libx264", 160, 120, list(range(40)), Fraction(1, 25))  # 40 frames
    out = tmp_path / "out"
    args = ["run", str(clip), *tiny_pose.args(), "--detector", "full-frame", "--no-video", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "hrstream.cli", *args, "-q"], env=cli_env(), cwd=ROOT, timeout=300
    )
    assert done.returncode == 0
    key = str(clip.resolve())
    assert _by_key(out)[key]["status"] == "ok"
    # the same input again (--force) killed after 6 records: the earlier "ok" must not survive
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrstream.cli", *args, "-q", "--force", "--batch-size", "1"],
        env=cli_env(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    _wait_rewrite(proc, out, key, 6)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    entry = _by_key(out)[key]
    assert entry["status"] == "running" and entry["output_sizes"] is None
    assert _doc(out)["state"] == "running"
    text = invoke(["status", str(out)])
    assert text.exit_code == 0 and "left running by a run that stopped" in text.stdout, text.stdout
    code, err = _run(tiny_pose, out, str(clip))  # not skipped: processed again, completely
    assert code == 0 and "0 skipped" in err, err
    assert [r["frame"] for r in read_jsonl(out / "long.jsonl")] == list(range(40))
    assert _by_key(out)[key]["status"] == "ok"


def test_changed_outputs_are_processed_again(tiny_pose: TinyModel, tmp_path: Path) -> None:
    clip = tmp_path / "a.mp4"
    shutil.copy(CLIP, clip)
    out = tmp_path / "out"
    assert _run(tiny_pose, out, str(clip))[0] == 0
    entry = _by_key(out)[str(clip.resolve())]
    assert entry["output_sizes"]["jsonl"] == (out / "a.jsonl").stat().st_size
    lines = (out / "a.jsonl").read_text().splitlines(keepends=True)
    (out / "a.jsonl").write_text("".join(lines[:7]))  # what a killed write leaves
    code, err = _run(tiny_pose, out, str(clip))
    assert code == 0 and "0 skipped" in err, err
    assert len(read_jsonl(out / "a.jsonl")) == 16
    (out / "a.tracks.json").unlink()  # a missing output too
    code, err = _run(tiny_pose, out, str(clip))
    assert code == 0 and "0 skipped" in err and (out / "a.tracks.json").is_file()
    code, err = _run(tiny_pose, out, str(clip))  # now as recorded: skipped
    assert code == 0 and "1 skipped" in err


def test_status_retry_failed_and_force(tiny_pose: TinyModel, tmp_path: Path) -> None:
    good, late = tmp_path / "good.mp4", tmp_path / "late.mp4"
    shutil.copy(CLIP, good)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    out = tmp_path / "out"
    assert invoke(["status", str(out)]).exit_code == 2  # no manifest yet
    code, _ = _run(tiny_pose, out, str(good), str(bad), str(late))
    assert code == 1
    status = invoke(["status", str(out)])
    assert status.exit_code == 1
    assert "3 inputs: 1 done, 2 failed, 0 running, 0 remaining" in status.stdout
    failed_lines = [line for line in status.stdout.splitlines() if line.startswith("  ")]
    assert any(str(bad) in line for line in failed_lines) and any(str(late) in line for line in failed_lines)

    assert (
        invoke(["run", str(good), "--retry-failed", "--out", str(out)]).exit_code == 2
    )  # inputs come from OUT
    shutil.copy(CLIP, late)
    bad.write_bytes(CLIP.read_bytes())
    stamp = (out / "good.jsonl").stat().st_mtime_ns
    code, err = _run(tiny_pose, out, "--retry-failed")
    assert code == 0, err
    assert (out / "good.jsonl").stat().st_mtime_ns == stamp  # done: not among the retried
    assert {j["status"] for j in _by_key(out).values()} == {"ok"}
    assert len(read_jsonl(out / "late.jsonl")) == 16 and len(read_jsonl(out / "bad.jsonl")) == 16
    status = invoke(["status", str(out)])
    assert status.exit_code == 0 and "3 done, 0 failed" in status.stdout
    code, err = _run(tiny_pose, out, "--retry-failed")
    assert code == 0 and "nothing to retry" in err

    code, err = _run(tiny_pose, out, str(good), "--force")
    assert code == 0 and "0 skipped" in err
    assert (out / "good.jsonl").stat().st_mtime_ns != stamp


def _item(manifest: Manifest, path: Path, name: str | None = None):
    plan = manifest.plan(expand_inputs([str(path)]), [name], "r1")
    return plan, plan.items[0]


def test_update_and_flush(tmp_path: Path) -> None:
    cam = "rtsp://user:S3cret@127.0.0.1:8554/door"
    manifest = Manifest.load(tmp_path)
    plan = manifest.plan(expand_inputs([cam]), ["door"], "r1")
    (item,) = plan.items
    assert "S3cret" not in item.key and item.key == item.job.display and item.name == "door"
    manifest.begin_run(plan, executor="local")
    manifest.start(item)
    manifest.update(item.key, frames=120, drops=3, live={"state": "connected"})
    manifest.update(item.key, live={"state": "reconnecting", "gaps": 1})
    on_disk = json.loads((tmp_path / "manifest.json").read_text())["jobs"][0]
    assert on_disk["frames"] == 0  # update() alone does not write
    manifest.flush()
    entry = _doc(tmp_path)["jobs"][0]
    assert entry["frames"] == 120 and entry["live"] == {"state": "reconnecting", "gaps": 1}
    assert "S3cret" not in (tmp_path / "manifest.json").read_text()
    with pytest.raises(ValueError, match="cannot update"):
        manifest.update(item.key, name="elsewhere")
    with pytest.raises(KeyError):
        manifest.update("rtsp://127.0.0.1:1/none", frames=1)

    manifest.update(item.key, frames=501)
    manifest.end_run("interrupted")  # writes what changed
    doc = _doc(tmp_path)
    assert doc["jobs"][0]["frames"] == 501 and doc["state"] == "interrupted"
    assert doc["runs"][-1]["state"] == "interrupted" and doc["runs"][-1]["ended"]


def test_threads_finishing_at_once_leave_a_valid_manifest(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for i in range(40):
        shutil.copy(CLIP, media / f"c{i}.mp4")
        (tmp_path / f"c{i}.jsonl").write_text("x\n" * i)
    manifest = Manifest.load(tmp_path)
    plan = manifest.plan(expand_inputs([str(media)]), None, "r1")
    manifest.begin_run(plan)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for item in plan.items[k::4]:
                manifest.start(item)
                jsonl = tmp_path / f"{item.name}.jsonl"
                manifest.finish(
                    item, SourceResult(item.display, "ok", frames=1, outputs={"jsonl": str(jsonl)})
                )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    stop = threading.Event()
    reads: list[int] = []

    def reader() -> None:  # the file is never seen half written
        while not stop.is_set():
            reads.append(len(json.loads((tmp_path / "manifest.json").read_text())["jobs"]))

    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert not errors and reads
    manifest.end_run("done")
    jobs = _doc(tmp_path)["jobs"]
    assert len(jobs) == 40 and {j["status"] for j in jobs} == {"ok"}
    assert {j["name"]: j["output_sizes"]["jsonl"] for j in jobs} == {f"c{i}": 2 * i for i in range(40)}


def test_plan_keys_names_and_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(CLIP, tmp_path / "a" / "clip.mp4")
    shutil.copy(CLIP, tmp_path / "b" / "clip.mp4")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "a" / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    manifest = Manifest.load(tmp_path / "out")
    jobs = expand_inputs(["a/clip.mp4", "b/clip.mp4", "link.mp4", str(tmp_path / "a" / "clip.mp4")])
    plan = manifest.plan(jobs, None, "r1")
    # the symlink and the absolute path are the same input as a/clip.mp4: processed once
    assert [i.key for i in plan.items] == [str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.mp4")]
    assert [i.name for i in plan.items] == ["clip", "clip_2"]
    assert len(plan.duplicates) == 2
    assert input_key(expand_inputs(["rtsp://u:p@h:1/x"])[0]) == expand_inputs(["rtsp://u:p@h:1/x"])[0].display
    # a name given for an input (--sources NAME URL) is kept when free, made distinct when not
    manifest.begin_run(plan)
    given = manifest.plan(expand_inputs(["b/clip.mp4"]), ["clip"], "r1")
    assert given.items[0].name == "clip_2"  # b/clip.mp4 already holds clip_2, and clip belongs to a/
    fresh = tmp_path / "c.mp4"
    shutil.copy(CLIP, fresh)
    assert manifest.plan(expand_inputs([str(fresh)]), ["clip"], "r1").items[0].name == "clip_3"
    assert manifest.plan(expand_inputs([str(fresh)]), ["door"], "r1").items[0].name == "door"


def test_schema_rules_a_schema_cannot_say(tmp_path: Path) -> None:
    clip = tmp_path / "a.mp4"
    shutil.copy(CLIP, clip)
    manifest = Manifest.load(tmp_path)
    plan, item = _item(manifest, clip)
    manifest.begin_run(plan)
    doc = manifest.to_dict()
    validate(doc, "manifest")
    twin = dict(doc["jobs"][0], key="/elsewhere/a.mp4")
    with pytest.raises(SchemaValidationError, match=r"\$\.jobs\[1\]\.name: 'a' is also the name of"):
        validate({**doc, "jobs": [*doc["jobs"], twin]}, "manifest")
    with pytest.raises(SchemaValidationError, match=r"\$\.jobs\[1\]\.key: .* has two entries"):
        validate({**doc, "jobs": [*doc["jobs"], dict(twin, key=doc["jobs"][0]["key"], name="b")]}, "manifest")
    ok = dict(doc["jobs"][0], status="ok")
    with pytest.raises(SchemaValidationError, match="output_sizes"):
        validate({**doc, "jobs": [ok]}, "manifest")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="move it away"):
        Manifest.load(tmp_path)


def test_a_version_1_manifest_is_read(tiny_pose: TinyModel, tmp_path: Path) -> None:
    clip = tmp_path / "a.mp4"
    shutil.copy(CLIP, clip)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jsonl").write_text("{}\n")
    v1 = {
        "format": "hrstream.manifest",
        "version": 1,
        "state": "done",
        "jobs": [
            {
                "input": str(clip),
                "status": "skipped",
                "frames": 16,
                "drops": 0,
                "truncated": False,
                "error": None,
                "outputs": {"jsonl": str(out / "a.jsonl")},
                "elapsed_s": 1.0,
                "fingerprint": {"recipe": "old"},
            }
        ],
    }
    (out / "manifest.json").write_text(json.dumps(v1))
    entry = Manifest.load(out).get(str(clip.resolve()))
    assert entry is not None and entry["name"] == "a" and entry["status"] == "ok"
    code, err = _run(tiny_pose, out, str(clip))  # no output sizes recorded: processed again
    assert code == 0 and "0 skipped" in err
    assert len(read_jsonl(out / "a.jsonl")) == 16
    state, jobs = manifest_jobs(out)
    assert state == "done" and jobs[str(clip)]["status"] == "ok"


def test_the_newest_runs_are_kept(tmp_path: Path) -> None:
    """Past ``RUNS_KEPT`` runs the oldest records go: the newest are kept, the current one last, and a run going
    on is the one ``run_in_progress`` sees after a reload."""
    from hrstream.runs.manifest import RUNS_KEPT

    clip = tmp_path / "a.mp4"
    shutil.copy(CLIP, clip)
    manifest = Manifest.load(tmp_path)
    total = RUNS_KEPT + 5
    for i in range(total):
        plan = manifest.plan(expand_inputs([str(clip)]), None, "r1", force=True)
        manifest.begin_run(plan, recipe=f"run{i}", executor="local")
        if i < total - 1:
            manifest.end_run("done")
    runs = _doc(tmp_path)["runs"]
    assert [r["recipe"] for r in runs] == [f"run{i}" for i in range(total - RUNS_KEPT, total)]
    assert runs[-1]["state"] == "running"
    current = Manifest.load(tmp_path).run_in_progress()  # this process is alive: the run is going on
    assert current is not None and current["recipe"] == f"run{total - 1}"
