"""Exports of a whole run folder (``hrstream export OUT ...``) and the ``dataset.json`` that describes them.

A run folder is the ``--out`` of ``hrstream run``: its ``manifest.json`` lists every input processed into it.
Every pose job done there (status ``ok``, with a tracks document) is exported; the others are listed as
skipped. ``dataset.json`` in the export folder records what was exported::

    {"format": "hrstream.dataset", "version": 1, "created", "hrstream_version",
     "source": the run folder or tracks document, "export": {"format", "use", "stride", "unconfirmed"},
     "models": [the tracks documents' model entries: name, architecture, weights, weights_sha256, ...],
     "recipes": [recipe digests of the runs], "annotations": the COCO file (coco-dataset),
     "videos": [{"name", "input", "frames", "images", "annotations", "recipe", "model", "error"}],
     "skipped": [{"input", "status", "reason"}]}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hrstream.errors import InputError
from hrstream.io import write_json_atomic

__all__ = ["DATASET_NAME", "RunJob", "run_jobs", "write_dataset_json"]

log = logging.getLogger(__name__)

DATASET_NAME = "dataset.json"


@dataclass(frozen=True)
class RunJob:
    """A pose job of a run folder: its output ``name``, ``tracks`` document path, ``source`` (the input's
    resolved path) and the ``recipe`` digest it ran with."""

    name: str
    tracks: Path
    source: str
    recipe: str | None


def run_jobs(out_dir: str | Path) -> tuple[list[RunJob], list[dict[str, Any]]]:
    """The pose jobs done in the run folder ``out_dir`` (in the manifest's order) and the inputs left out
    (``{"input", "status", "reason"}``).

    Raises:
        InputError: ``out_dir`` has no manifest (not a run folder).
    """
    from hrstream.runs.manifest import MANIFEST_NAME, Manifest

    out = Path(out_dir)
    if not (out / MANIFEST_NAME).is_file():
        raise InputError(
            f"{out}: no {MANIFEST_NAME}; pass the --out folder of 'hrstream run' or a NAME.tracks.json"
        )
    jobs: list[RunJob] = []
    skipped: list[dict[str, Any]] = []
    for entry in Manifest.load(out).entries.values():
        status, tracks = entry["status"], (entry.get("outputs") or {}).get("tracks")
        reason = None
        if status != "ok":
            reason = entry.get("error") or f"not done ({status})"
        elif tracks is None:
            reason = "no tracks document (not a pose job)"
        elif not Path(tracks).is_file():
            reason = f"{tracks} is missing"
        if reason is not None:
            skipped.append({"input": entry["input"], "status": status, "reason": reason})
            continue
        recipe = (entry.get("fingerprint") or {}).get("recipe")
        jobs.append(RunJob(entry["name"], Path(tracks), entry["key"], recipe))
    return jobs, skipped


def write_dataset_json(
    out_dir: str | Path,
    *,
    source: str | Path,
    export: Mapping[str, Any],
    videos: Sequence[Mapping[str, Any]],
    tracks_docs: Sequence[Mapping[str, Any]],
    skipped: Sequence[Mapping[str, Any]] = (),
    annotations: str | None = None,
) -> Path:
    """Write ``out_dir/dataset.json`` (see the module's docstring); ``tracks_docs``: the documents exported
    (their models are listed once each)."""
    from hrstream import __version__

    models: list[dict[str, Any]] = []
    for doc in tracks_docs:
        if doc["model"] not in models:
            models.append(dict(doc["model"]))
    recipes = sorted({str(v["recipe"]) for v in videos if v.get("recipe")})
    data = {
        "format": "hrstream.dataset",
        "version": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "hrstream_version": __version__,
        "source": str(Path(source).resolve()),
        "export": dict(export),
        "models": models,
        "recipes": recipes,
        "annotations": annotations,
        "videos": [dict(v) for v in videos],
        "skipped": [dict(s) for s in skipped],
    }
    path = Path(out_dir) / DATASET_NAME
    write_json_atomic(path, data)
    return path
