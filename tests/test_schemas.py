"""The JSON Schemas of hrstream's outputs, checked against what real ``hrstream run`` jobs write.

A tiny official-architecture network runs the whole pipeline (decode, detect, infer, track, smooth, write)
on real clips; every JSONL record, the tracks document and the manifest must validate, and documents
broken in the ways a reader would trip over must not.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pycocotools import mask as mask_utils
from support.cli_checks import ROOT, VIDEOS, pose_run, run_cli
from support.tiny_models import tiny_seg_model

from hrstream.schemas import SCHEMA_NAMES, SchemaValidationError, load_schema, validate, validate_jsonl

POSE_CLIP = "street_960x540_5fps.mp4"
SEG_CLIP = "gen_vfr_160x120.mp4"


@pytest.fixture(scope="module")
def pose_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pose_run(tmp_path_factory)


@pytest.fixture(scope="module")
def seg_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seg_run")
    model = tiny_seg_model(folder / "model")
    recipe = yaml.safe_load((ROOT / "pipelines" / "seg.yaml").read_text())
    recipe["seg"].update(rle=True, label_maps=False)
    recipe_path = folder / "seg_rle.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    out = folder / "out"
    args = ["run", str(VIDEOS / SEG_CLIP), "--task", "seg", "--pipeline", str(recipe_path), *model.args()]
    res = run_cli([*args, "--no-video", "-q", "--out", str(out)])
    assert res.returncode == 0, res.stderr
    return out


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _stem(clip: str) -> str:
    return clip.rsplit(".", 1)[0]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schemas_are_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert load_schema(f"{name}.schema.json") == schema
    schema["title"] = "changed"
    assert load_schema(name)["title"] != "changed"  # every call returns a fresh copy


def test_unknown_schema_name() -> None:
    with pytest.raises(ValueError, match="unknown schema 'frames'"):
        load_schema("frames")


def test_pose_run_outputs_validate(pose_out: Path) -> None:
    stem = _stem(POSE_CLIP)
    jsonl = pose_out / f"{stem}.jsonl"
    records = _records(jsonl)
    assert validate_jsonl(str(jsonl)) == len(records) == 5
    with_people = [r for r in records if r["people"]]
    assert with_people, "the full-frame detector gives every frame a person once the track is confirmed"
    assert all(len(p["keypoints"]) == 17 for r in with_people for p in r["people"])
    tracks = json.loads((pose_out / f"{stem}.tracks.json").read_text())
    validate(tracks, "tracks", label="tracks.json")
    assert tracks["num_frames"] == len(records)
    manifest = json.loads((pose_out / "manifest.json").read_text())
    validate(manifest, "manifest", label="manifest.json")
    assert [j["status"] for j in manifest["jobs"]] == ["ok"]


def test_seg_run_records_validate(seg_out: Path) -> None:
    jsonl = seg_out / f"{_stem(SEG_CLIP)}.jsonl"
    records = _records(jsonl)
    assert validate_jsonl(str(jsonl)) == len(records) > 0
    validate(json.loads((seg_out / "manifest.json").read_text()), "manifest")
    for rec in records:
        assert "people" not in rec
        assert sum(rec["classes"].values()) == pytest.approx(1.0, abs=1e-4)
        for name, rle in rec["rle"].items():  # each RLE mask covers its class's fraction of the frame
            area = mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()})
            assert area / (rec["width"] * rec["height"]) == pytest.approx(rec["classes"][name], abs=1e-5)


def _first_person_record(pose_out: Path) -> dict[str, Any]:
    return next(r for r in _records(pose_out / f"{_stem(POSE_CLIP)}.jsonl") if r["people"])


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    if value is _DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


_DELETE = object()

FRAME_BREAKS = [
    (("people", 0, "box"), [1.0, 2.0, 3.0], "$.people[0].box"),
    (("people", 0, "keypoints", 3), [1.0, 2.0], "$.people[0].keypoints[3]"),
    (("people", 0, "track_id"), "7", "$.people[0].track_id"),
    (("people", 0, "box_score"), None, "$.people[0].box_score"),
    (("people", 0, "colour"), "red", "$.people[0]"),
    (("people", 0, "raw_keypoints"), [[1.0, 2.0]] * 16, "$.people[0].raw_keypoints"),
    (("frame",), -1, "$.frame"),
    (("frame",), _DELETE, "$"),
    (("width",), 0, "$.width"),
    (("pts_s",), "0.2", "$.pts_s"),
    (("classes",), {"road": 1.5}, "$.classes.road"),
    (("rle",), {"road": {"size": [4, 4]}}, "$.rle.road"),
]


@pytest.mark.parametrize(("path", "value", "where"), FRAME_BREAKS)
def test_broken_frame_record_fails(pose_out: Path, path: tuple[Any, ...], value: Any, where: str) -> None:
    rec = _first_person_record(pose_out)
    validate(copy.deepcopy(rec), "frame")
    _set(rec, path, value)
    with pytest.raises(SchemaValidationError) as info:
        validate(rec, "frame", label="run.jsonl:3")
    msg = str(info.value)
    assert msg.startswith("run.jsonl:3: not a valid hrstream frame document at ")
    assert f" at {where}:" in msg


def _tracks(pose_out: Path) -> dict[str, Any]:
    return json.loads((pose_out / f"{_stem(POSE_CLIP)}.tracks.json").read_text())


def _drop_last(key: str) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        doc["tracks"][0][key].pop()

    return edit


def _short_pose(doc: dict[str, Any]) -> None:
    doc["tracks"][0]["smoothed"][0].pop()


def _duplicate_track(doc: dict[str, Any]) -> None:
    doc["tracks"].append(copy.deepcopy(doc["tracks"][0]))


def _unordered_frames(doc: dict[str, Any]) -> None:
    fr = doc["tracks"][0]["frames"]
    fr[0], fr[1] = fr[1], fr[0]


def _bad_limb(doc: dict[str, Any]) -> None:
    doc["skeleton"].append([0, 17])


def _wrong_format(doc: dict[str, Any]) -> None:
    doc["format"] = "hrstream.manifest"


def _bad_sha(doc: dict[str, Any]) -> None:
    doc["model"]["weights_sha256"] = "abc"


TRACKS_BREAKS = [
    (_drop_last("boxes"), "$.tracks[0].boxes", "entries for 3 frames"),
    (_drop_last("scores"), "$.tracks[0].scores", "entries for 3 frames"),
    (_short_pose, "$.tracks[0].smoothed[0]", "16 keypoints, expected 17"),
    (_duplicate_track, "$.tracks[1]", "appears twice"),
    (_unordered_frames, "$.tracks[0].frames", "must increase"),
    (_bad_limb, "$.skeleton", "names a keypoint >= 17"),
    (_wrong_format, "$.format", "hrstream.tracks"),
    (_bad_sha, "$.model.weights_sha256", "does not match"),
]


@pytest.mark.parametrize(("edit", "where", "why"), TRACKS_BREAKS)
def test_broken_tracks_document_fails(pose_out: Path, edit: Any, where: str, why: str) -> None:
    doc = _tracks(pose_out)
    assert len(doc["tracks"][0]["frames"]) == 3  # frames 2..4: the tracker confirms a track on its 3rd hit
    edit(doc)
    with pytest.raises(SchemaValidationError) as info:
        validate(doc, "tracks", label="x.tracks.json")
    assert f" at {where}:" in str(info.value)
    assert why in str(info.value)


def test_broken_manifest_fails(pose_out: Path) -> None:
    manifest = json.loads((pose_out / "manifest.json").read_text())
    for path, value, where in [
        (("jobs", 0, "status"), "finished", "$.jobs[0].status"),
        (("jobs", 0, "frames"), -3, "$.jobs[0].frames"),
        (("state",), "paused", "$.state"),
        (("jobs",), _DELETE, "$"),
    ]:
        doc = copy.deepcopy(manifest)
        _set(doc, path, value)
        with pytest.raises(SchemaValidationError, match=re.escape(f" at {where}:")):
            validate(doc, "manifest", label="manifest.json")


def test_validate_jsonl_partial_last_line(pose_out: Path, tmp_path: Path) -> None:
    lines = (pose_out / f"{_stem(POSE_CLIP)}.jsonl").read_text().splitlines()
    cut = tmp_path / "killed.jsonl"
    cut.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    assert validate_jsonl(str(cut)) == len(lines) - 1
    with pytest.raises(SchemaValidationError, match="killed.jsonl:5: not JSON"):
        validate_jsonl(str(cut), allow_partial_last=False)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(SchemaValidationError, match="damaged.jsonl:2: not JSON"):
        validate_jsonl(str(damaged))
