"""An output folder that cannot be written, one that fills up, temporary files a killed run left, and links
planted in it: one line naming the folder and the cause, what was written before kept, the manifest valid.

How the folder is made unwritable, for real, whoever runs the tests:

* read-only: ``chmod`` does not stop root, so as root the command runs in a mount namespace of its own where
  the folder is bind-mounted read-only (``unshare --mount``: writes fail with ``EROFS``, as on a read-only
  disk, and the mount goes away with the process); as any other user ``chmod`` is enough;
* full: ``RLIMIT_FSIZE`` (``ulimit -f``) makes every write past the limit fail with ``EFBIG`` ("File too large"),
  as writes fail on a full disk, for any user and without mounting anything (a small tmpfs would need
  privileges a test machine may not give, and would be seen by every process).

The commands run as child processes (real exits, real stderr); runs that only read back run in this process.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.cli_checks import ROOT, VIDEOS, cli_env, invoke, read_jsonl
from support.tiny_models import TinyModel, tiny_pose_model

from hrstream.errors import OutputError
from hrstream.io.records import new_temp_file
from hrstream.runs.manifest import Manifest
from hrstream.schemas import validate

CLIP = VIDEOS / "gen_vfr_160x120.mp4"  # 16 frames
OTHER = VIDEOS / "gen_rot90_160x120.mp4"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


def _args(tiny: TinyModel, out: Path, *inputs: Path) -> list[str]:
    return [
        "run",
        *map(str, inputs),
        *tiny.args(),
        "--detector",
        "full-frame",
        "--no-video",
        "-q",
        "--out",
        str(out),
    ]


def _child(
    args: list[str], *, prefix: tuple[str, ...] = (), before: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """``[*prefix] python -m hrstream.cli ARGS`` with ``before()`` run in the child first (limits)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "hrstream.cli", *args],
        env=cli_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=before,
    )


def _read_only(folder: Path) -> tuple[str, ...]:
    """Make ``folder`` read-only for a child process: the command prefix that does (see the module's
    docstring)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return ()
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without the right to mount: no way to make a folder read-only for root")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(folder))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _first_run(tiny: TinyModel, out: Path) -> dict[str, bytes]:
    """``OTHER`` processed into ``out``: what the folder holds before the run under test."""
    res = invoke(_args(tiny, out, OTHER))
    assert res.exit_code == 0, res.stderr
    return _files(out)


def _lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.strip()]


def test_a_read_only_folder_ends_the_run_in_one_line_and_keeps_what_it_holds(
    tiny: TinyModel, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    before = _first_run(tiny, out)
    try:
        res = _child(_args(tiny, out, CLIP), prefix=_read_only(out))
    finally:
        out.chmod(0o755)
    (line,) = _lines(res.stderr)
    assert res.returncode == 2, res.stderr
    assert line.startswith(f"hrstream: error: {out}: cannot write into the output folder ("), line
    assert "Read-only file system" in line or "Permission denied" in line, line
    assert _files(out) == before  # nothing touched, the manifest as it was
    validate(json.loads((out / "manifest.json").read_text()), "manifest", label="manifest.json")


def test_a_folder_that_fills_up_fails_the_input_in_one_line_and_keeps_complete_records(
    tiny: TinyModel, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    before = _first_run(tiny, out)
    limit = 8192  # the manifest fits; the 16 records of CLIP (about 14 KB) do not

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), no signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = _child(_args(tiny, out, CLIP), before=small_disk)
    (line,) = _lines(res.stderr)
    assert res.returncode == 1, res.stderr  # the input failed
    assert str(CLIP) in line and f"in {out} failed (File too large)" in line, line
    records = read_jsonl(out / f"{CLIP.stem}.jsonl")  # every record whole: the one cut short was taken back
    assert 0 < len(records) < 16 and [r["frame"] for r in records] == list(range(len(records)))
    assert {k: v for k, v in _files(out).items() if k in before and k != "manifest.json"} == {
        k: v for k, v in before.items() if k != "manifest.json"
    }  # the earlier input's files are as they were
    doc = json.loads((out / "manifest.json").read_text())
    validate(doc, "manifest", label="manifest.json")
    jobs = {j["name"]: j for j in doc["jobs"]}
    assert jobs[OTHER.stem]["status"] == "ok"
    assert jobs[CLIP.stem]["status"] == "failed" and "File too large" in jobs[CLIP.stem]["error"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_manifest_that_cannot_be_written_is_one_error_and_keeps_its_last_state(tmp_path: Path) -> None:
    """The manifest's write at the end of a run on a disk that takes no more (``RLIMIT_FSIZE`` of 100 bytes in
    this process, for the one call): an :class:`OutputError` naming the file and the cause; the file on disk is
    the last one written, and no temporary file is left."""
    shutil.copy(CLIP, tmp_path / "a.mp4")
    manifest = Manifest.load(tmp_path / "out")
    manifest.begin_run(manifest.plan([_spec(tmp_path / "a.mp4")], None, "r1"), executor="local")
    written = (tmp_path / "out" / "manifest.json").read_bytes()
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, old[1]))
    try:
        with pytest.raises(OutputError, match=r"manifest\.json: cannot be written \(File too large\)"):
            manifest.end_run("done")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, previous)
    assert (tmp_path / "out" / "manifest.json").read_bytes() == written
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json"]


def _spec(path: Path) -> Any:
    from hrstream.io import expand_inputs

    return expand_inputs([str(path)])[0]


def test_temporary_files_a_killed_run_left_are_removed_at_the_next_run(
    tiny: TinyModel, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _first_run(tiny, out)
    (out / "x.annotated").mkdir()
    left = []  # the names the writers give their temporary files (new_temp_file), as a killed run leaves them
    for folder, name in [
        (out, "manifest.json"),
        (out, f"{CLIP.stem}.mp4"),
        (out, f"{CLIP.stem}.tracks.json"),
    ]:
        fd, path = new_temp_file(folder, name)
        os.write(fd, b"half written")
        os.close(fd)
        left.append(path)
    left.append(out / "x.annotated" / ".000003.jpg.tmp.jpg")  # an image sequence's
    left[-1].write_bytes(b"half a jpeg")
    mine = [out / "notes.tmp", out / ".keep", out / "x.annotated" / "000001.jpg"]
    for p in mine:
        p.write_text("the user's")
    res = invoke(_args(tiny, out, CLIP))
    assert res.exit_code == 0, res.stderr
    assert [p for p in left if p.exists()] == []
    assert all(p.read_text() == "the user's" for p in mine)


def test_temporary_files_of_a_run_going_on_are_left_alone(tiny: TinyModel, tmp_path: Path) -> None:
    """Another process (alive) runs into the folder, as its manifest says: its temporary files are in use."""
    out = tmp_path / "out"
    _first_run(tiny, out)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        doc = json.loads((out / "manifest.json").read_text())
        doc["state"] = "running"
        doc["runs"][-1].update(state="running", pid=other.pid, ended=None)
        (out / "manifest.json").write_text(json.dumps(doc))
        fd, in_use = new_temp_file(out, "manifest.json")
        os.close(fd)
        res = invoke(_args(tiny, out, CLIP))
        assert res.exit_code == 0, res.stderr
        assert in_use.exists()
    finally:
        other.kill()
        other.wait()


def test_a_link_planted_in_the_folder_is_refused_and_never_written_through(
    tiny: TinyModel, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("precious\n")
    (out / f"{CLIP.stem}.jsonl").symlink_to(victim)
    res = invoke(_args(tiny, out, CLIP))
    assert res.exit_code == 1
    (line,) = _lines(res.stderr)
    assert f"{out / CLIP.stem}.jsonl is a symbolic link (to {victim})" in line and str(CLIP) in line, line
    assert victim.read_text() == "precious\n"
    assert (out / f"{CLIP.stem}.jsonl").is_symlink()  # left for the user to look at
    (out / "manifest.json").unlink()
    (out / "manifest.json").symlink_to(victim)
    res = invoke(_args(tiny, out, CLIP))
    assert res.exit_code == 2
    (line,) = _lines(res.stderr)
    assert line == (
        f"hrstream: error: {out / 'manifest.json'} is a symbolic link (to {victim}); hrstream does not write "
        "through links in an output folder: remove it"
    )
    assert victim.read_text() == "precious\n"
