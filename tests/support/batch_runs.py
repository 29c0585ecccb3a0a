"""A folder of clips with a crashing, a flaky and a stuck input, for the tests of worker processes and Ray
actors, and the checks that their outputs equal a plain single-process run's.

The misbehaviour comes from the workers' test hook (``HRSTREAM_TEST_FAULTS``, see
:mod:`hrstream.runs.worker`): it acts in the worker after an input's second frame is written, so each
crash happens mid-input with its outputs half written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from support.cli_checks import VIDEOS, read_jsonl, run_cli
from support.tiny_models import TinyModel, tiny_pose_model

__all__ = [
    "CLIPS",
    "GOOD",
    "assert_same_outputs",
    "batch_folder",
    "faults",
    "manifest_entries",
    "plain_batch_run",
]

#: output name -> source clip (``stuck`` first, so its time limit runs while the others are processed)
CLIPS = {
    "stuck": "gen_vfr_160x120.mp4",
    "good_a": "gen_vfr_160x120.mp4",
    "flaky": "gen_rot90_160x120.mp4",
    "crashy": "gen_vfr_160x120.mp4",
    "good_b": "street_960x540_5fps.mp4",
}
#: the inputs that must end ok, with the outputs of a plain run (``flaky`` after one retry)
GOOD = ("good_a", "flaky", "good_b")


def batch_folder(root: Path) -> Path:
    """``root/media`` holding the clips of :data:`CLIPS` as ``NAME.mp4``."""
    media = root / "media"
    media.mkdir(parents=True)
    for name, clip in CLIPS.items():
        shutil.copy(VIDEOS / clip, media / f"{name}.mp4")
    return media


def plain_batch_run(factory: Any) -> tuple[Path, Path, TinyModel]:
    """``(media, out, tiny model)``: the folder of :data:`CLIPS` processed by a plain single-process run with
    the tiny model (full-frame detector), once per test session (pytest's ``tmp_path_factory``)."""
    root = factory.getbasetemp() / "plain_batch_run"
    media, out = root / "media", root / "plain"
    tiny = tiny_pose_model(root / "tiny")
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text())["state"] == "done":
        return media, out, tiny
    if media.exists():
        shutil.rmtree(media)
    batch_folder(root)
    res = run_cli(["run", str(media), *tiny.args(), "--detector", "full-frame", "--out", str(out), "-q"])
    assert res.returncode == 0, res.stderr
    return media, out, tiny


def faults(crash: str) -> str:
    """The test hook's value: ``flaky`` crashes on its first attempt, ``crashy`` on every one (``crash``:
    ``exit``, ``segv`` or ``kill``), ``stuck`` stalls."""
    return f"flaky=exit-once,crashy={crash},stuck=stall"


def manifest_entries(out: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(newest run record, {output name: entry})`` of ``out/manifest.json``."""
    doc = json.loads((out / "manifest.json").read_text())
    return doc["runs"][-1], {j["name"]: j for j in doc["jobs"]}


def _records(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "batch"} for r in read_jsonl(path)]


def assert_same_outputs(expected: Path, got: Path, names: tuple[str, ...] = GOOD) -> None:
    """The JSONL records (but the network-call number) and the tracks documents of ``names`` are equal."""
    for name in names:
        one, two = _records(expected / f"{name}.jsonl"), _records(got / f"{name}.jsonl")
        assert len(one) == len(two) > 0, name
        assert one == two, name
        t1 = json.loads((expected / f"{name}.tracks.json").read_text())
        t2 = json.loads((got / f"{name}.tracks.json").read_text())
        assert t1["tracks"] == t2["tracks"] and t1["num_frames"] == t2["num_frames"], name
