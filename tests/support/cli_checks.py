"""Helpers for end-to-end tests of ``hrstream run``: invoke the command, read back what it wrote.

Everything is read with independent tools (PyAV for videos, ``json`` for records) so that the checks do not
trust the code under test.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from click.testing import CliRunner, Result

__all__ = [
    "ROOT",
    "VIDEOS",
    "VideoFacts",
    "cli_env",
    "invoke",
    "jsonl_lines",
    "manifest_jobs",
    "read_jsonl",
    "run_cli",
    "video_facts",
    "video_frames",
]

ROOT = Path(__file__).resolve().parents[2]
VIDEOS = ROOT / "tests" / "data" / "videos"


@dataclass(frozen=True)
class VideoFacts:
    """What a decoded video holds: frame count, per-frame PTS seconds, upright (width, height)."""

    frames: int
    pts_s: list[float]
    size: tuple[int, int]


def video_facts(path: str | Path) -> VideoFacts:
    """Decode every frame of the first video stream (errors at the end of a cut file stop the count)."""
    pts: list[float] = []
    size = (0, 0)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        try:
            for frame in c.decode(stream):
                w, h = frame.width, frame.height
                if int(getattr(frame, "rotation", 0) or 0) % 180 != 0:
                    w, h = h, w
                size = (w, h)
                pts.append(float(frame.pts * frame.time_base))
        except av.error.FFmpegError:
            pass
    return VideoFacts(len(pts), pts, size)


def video_frames(path: str | Path, *, upright: bool = True) -> list[np.ndarray]:
    """Every frame as RGB uint8 (H, W, 3), rotated upright when the stream carries a rotation."""
    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            img = frame.to_ndarray(format="rgb24")
            rot = int(getattr(frame, "rotation", 0) or 0) % 360
            if upright and rot:
                # PyAV reports the counter-clockwise angle of the display matrix
                img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
            out.append(img)
    return out


def jsonl_lines(path: str | Path) -> tuple[list[dict[str, Any]], bytes]:
    """The parsed complete lines of a JSONL file and the unterminated tail (``b""`` when it ends cleanly)."""
    data = Path(path).read_bytes()
    *complete, tail = data.split(b"\n")
    return [json.loads(line) for line in complete if line.strip()], tail


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSONL file that must end with a newline."""
    records, tail = jsonl_lines(path)
    assert tail == b"", f"{path} ends with an unterminated line: {tail[:80]!r}"
    return records


def manifest_jobs(out_dir: str | Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """``(state, {input: job})`` from ``OUT/manifest.json``."""
    data = json.loads((Path(out_dir) / "manifest.json").read_text())
    assert data["format"] == "hrstream.manifest"
    return data["state"], {j["input"]: j for j in data["jobs"]}


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess run: one torch thread, no network weights, plus ``extra``."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_cli(
    args: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m hrstream.cli ARGS`` as a child process; returns its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "hrstream.cli", *args],
        env=env or cli_env(),
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen_run(args: list[str]) -> subprocess.Popen[str]:
    """``hrstream run ARGS`` started as a child process (to signal it, or to watch it while it runs), with
    stdout and stderr piped as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "hrstream.cli", "run", *args],
        env=cli_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def invoke(args: list[str], *, env: dict[str, str] | None = None) -> Result:
    """Run the command in this process with click's runner (stderr kept apart from stdout).

    The command installs its own logging handler on the root logger; the previous handlers and level are
    restored afterwards so that later tests log normally.
    """
    from hrstream.cli import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return CliRunner().invoke(main, args, env=env, catch_exceptions=True)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def pose_run(factory: Any, clip: str = "street_960x540_5fps.mp4") -> Path:
    """``hrstream run --task pose`` (tiny model, full-frame detector, no video) on ``clip``, once per test
    session: the output folder is shared by every test module that asks (schemas, exports)."""
    from support.tiny_models import tiny_pose_model

    out = factory.getbasetemp() / "schemas_exports_pose_run"
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text())["state"] == "done":
        return out
    model = tiny_pose_model(factory.mktemp("tiny_pose"))
    args = ["run", str(VIDEOS / clip), "--task", "pose", *model.args(), "--detector", "full-frame"]
    res = run_cli([*args, "--no-video", "-q", "--out", str(out)])
    assert res.returncode == 0, res.stderr
    return out


def run_local(networks: Any, specs: list[str], out: Path, **options: Any) -> tuple[list[Any], int | None]:
    """``networks`` over ``specs`` in this process into ``out`` (the run lifecycle with a
    :class:`~hrstream.runs.LocalExecutor`, as ``hrstream run`` without workers): its results and signal."""
    from hrstream.runs import LocalExecutor, run_inputs

    executor = LocalExecutor(networks, out_dir=out, **options)
    outcome = run_inputs(specs, executor, out_dir=out, recipe_digest=networks.recipe.digest())
    return outcome.results, outcome.signum
