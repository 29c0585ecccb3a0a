"""The runner when outputs cannot be created, and when a stage fails in the middle of a run.

Real inputs, the tiny official-architecture network, real files; the only injected fault is a detector that
raises on a chosen frame (as a detector whose weights or device break mid-run would).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.cli_checks import VIDEOS, invoke, manifest_jobs, read_jsonl, run_local, video_facts
from support.tiny_models import TinyModel, tiny_pose_model

from hrstream.pipeline.builder import load_networks
from hrstream.pipeline.recipe_load import load_recipe
from hrstream.runs import exit_code

CLIP_A = VIDEOS / "street_960x540_5fps.mp4"  # 5 frames
CLIP_B = VIDEOS / "football_1280x720_mpeg4.mp4"  # 5 frames
LONG = VIDEOS / "basketball_426x240_2997.mp4"  # 300 frames


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


def _complete_outputs(outputs: dict[str, str], frames: int) -> None:
    """Every output of a source is a finished file holding ``frames`` frames."""
    assert video_facts(outputs["video"]).frames == frames
    assert len(read_jsonl(outputs["jsonl"])) == frames  # every line complete
    assert json.loads(Path(outputs["tracks"]).read_text())["num_frames"] == frames


def test_outputs_that_cannot_be_created_fail_their_source_alone(tiny_pose: TinyModel, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{CLIP_A.stem}.jsonl").mkdir()  # a folder where A's records file must go
    args = ["run", str(CLIP_A), str(CLIP_B), *tiny_pose.args(), "--detector", "full-frame", "--amp", "off"]
    result = invoke([*args, "--out", str(out), "-q"])
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    naming = [line for line in result.stderr.splitlines() if str(CLIP_A) in line]
    assert len(naming) == 1 and "outputs" in naming[0] and "Is a directory" in naming[0], result.stderr
    jobs = {j["input"]: j for j in json.loads((out / "manifest.json").read_text())["jobs"]}
    assert jobs[str(CLIP_A)]["status"] == "failed" and "Is a directory" in jobs[str(CLIP_A)]["error"]
    assert jobs[str(CLIP_B)]["status"] == "ok"
    _complete_outputs(jobs[str(CLIP_B)]["outputs"], video_facts(CLIP_B).frames)
    assert (out / f"{CLIP_A.stem}.jsonl").is_dir()  # left as it was, and nothing half-made beside it
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(CLIP_A.stem)) == [f"{CLIP_A.stem}.jsonl"]


class DetectorFailingAt:
    """The run's own detector, raising on frame ``index`` of source ``source``."""

    def __init__(self, inner: Any, source: str, index: int) -> None:
        self.inner = inner
        self.source = source
        self.index = index

    def detect(self, frames: Any) -> Any:
        if any(f.source_id == self.source and f.index == self.index for f in frames):
            raise RuntimeError("detector crashed (injected)")
        return self.inner.detect(frames)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_stage_error_mid_run_ends_the_run_and_closes_every_output(
    tiny_pose: TinyModel, tmp_path: Path
) -> None:
    recipe = load_recipe(
        "pose",
        None,
        {
            "model": str(tiny_pose.config),
            "weights": str(tiny_pose.weights),
            "detector.name": "full-frame",
            "runtime.amp": "off",
            "runtime.batch_size": 1,
            "runtime.streams": 2,  # both sources open when the error comes
        },
    )
    networks = load_networks(recipe, progress=False)
    networks = replace(networks, detector=DetectorFailingAt(networks.detector, LONG.stem, 60))
    results, signum = run_local(networks, [str(LONG), str(CLIP_B)], tmp_path / "out")
    assert signum is None and exit_code(results, signum) == 1
    by_input = {r.input: r for r in results}
    long = by_input[str(LONG)]
    assert long.status == "failed" and "detector crashed (injected)" in (long.error or "")
    # the queues between the detector and the outputs hold far fewer than 60 frames: many got through, and
    # frame 60 never did
    assert 0 < long.frames < 60
    _complete_outputs(long.outputs, long.frames)  # what got through is in finished files
    for r in results:  # every source the error cut short failed with it, its files closed
        assert r.status in ("ok", "failed"), r
        _complete_outputs(r.outputs, r.frames)


def test_a_stage_error_before_any_output_reports_every_started_source(
    tiny_pose: TinyModel, tmp_path: Path
) -> None:
    """A stage that fails before a started source's first frame reached its outputs still reports that source
    (failed, naming the error) in the results and the manifest."""
    over = {
        "detector.name": "full-frame",
        "runtime.amp": "off",
        "runtime.batch_size": 1,
        "runtime.streams": 2,
    }
    recipe = load_recipe(
        "pose", None, {"model": str(tiny_pose.config), "weights": str(tiny_pose.weights), **over}
    )
    networks = load_networks(recipe, progress=False)
    networks = replace(networks, detector=DetectorFailingAt(networks.detector, CLIP_A.stem, 3))
    results, _ = run_local(networks, [str(CLIP_A), str(CLIP_B)], tmp_path / "out")
    assert {r.input for r in results} == {str(CLIP_A), str(CLIP_B)}
    assert all(r.status == "failed" and "detector crashed" in (r.error or "") for r in results), results
    _, jobs = manifest_jobs(tmp_path / "out")
    assert {j["status"] for j in jobs.values()} == {"failed"}
