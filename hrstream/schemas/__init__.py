"""JSON Schemas (draft 2020-12) of what hrstream writes, shipped with the package.

* ``frame``: one line of ``NAME.jsonl`` (pose and segmentation records);
* ``event``: a line of ``NAME.jsonl`` that records what happened to a live source (a gap, a reconnect, a
  resolution change, a give-up);
* ``tracks``: ``NAME.tracks.json`` of a pose job;
* ``manifest``: ``manifest.json`` of an output folder (every input processed into it, across runs).

:func:`validate` checks a document against its schema and then the rules a schema cannot say (the
per-frame arrays of a track are parallel, every pose has one entry per keypoint name, a manifest gives
each input one entry and each entry its own output name, ...).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

from hrstream.errors import InputError

__all__ = ["SCHEMA_NAMES", "SchemaValidationError", "load_schema", "validate", "validate_jsonl"]

SCHEMA_NAMES = ("frame", "event", "tracks", "manifest")


class SchemaValidationError(InputError, ValueError):
    """A document does not match its hrstream schema (names the document, the failing path and the rule)."""


def _base(name: str) -> str:
    base = name.removesuffix(".json").removesuffix(".schema")
    if base not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    return base


@functools.cache
def _load_text(filename: str) -> str:
    return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (``"frame"``, ``"tracks"`` or ``"manifest"``; ``"frame.schema.json"`` also works)
    as a fresh dict."""
    return json.loads(_load_text(f"{_base(name)}.schema.json"))


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _where(path: Iterable[Any]) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _fail(label: str, name: str, where: str, message: str) -> SchemaValidationError:
    return SchemaValidationError(
        f"{label}: not a valid hrstream {name} document at {where}: {message} "
        f"(regenerate it with this hrstream version, or fix that field)"
    )


def _check_tracks(doc: dict[str, Any], label: str) -> None:
    k = len(doc["keypoint_names"])
    for a, b in doc["skeleton"]:
        if a >= k or b >= k:
            raise _fail(label, "tracks", "$.skeleton", f"limb ({a}, {b}) names a keypoint >= {k}")
    seen: set[int] = set()
    for i, tr in enumerate(doc["tracks"]):
        where = f"$.tracks[{i}]"
        if tr["track_id"] in seen:
            raise _fail(label, "tracks", where, f"track_id {tr['track_id']} appears twice")
        seen.add(tr["track_id"])
        n = len(tr["frames"])
        for key in (
            "times",
            "boxes",
            "box_scores",
            "keypoints",
            "scores",
            "smoothed",
            "smoothed_offline",
            "online_ids",
        ):
            if key in tr and len(tr[key]) != n:
                raise _fail(label, "tracks", f"{where}.{key}", f"{len(tr[key])} entries for {n} frames")
        if any(b <= a for a, b in zip(tr["frames"], tr["frames"][1:], strict=False)):
            raise _fail(label, "tracks", f"{where}.frames", "frame indices must increase")
        for key in ("keypoints", "scores", "smoothed", "smoothed_offline"):
            for j, pose in enumerate(tr.get(key, [])):
                if len(pose) != k:
                    raise _fail(
                        label, "tracks", f"{where}.{key}[{j}]", f"{len(pose)} keypoints, expected {k}"
                    )


def _check_frame(rec: dict[str, Any], label: str) -> None:
    people = rec.get("people", [])
    if not people:
        return
    k = len(people[0]["keypoints"])
    for i, person in enumerate(people):
        for key in ("keypoints", "raw_keypoints"):
            if key in person and len(person[key]) != k:
                raise _fail(
                    label, "frame", f"$.people[{i}].{key}", f"{len(person[key])} keypoints, expected {k}"
                )


def _check_manifest(doc: dict[str, Any], label: str) -> None:
    keys: set[str] = set()
    names: dict[str, str] = {}
    for i, job in enumerate(doc["jobs"]):
        where = f"$.jobs[{i}]"
        if job["key"] in keys:
            raise _fail(label, "manifest", f"{where}.key", f"{job['key']!r} has two entries")
        keys.add(job["key"])
        name = job["name"]
        if name is not None and name in names:
            raise _fail(label, "manifest", f"{where}.name", f"{name!r} is also the name of {names[name]!r}")
        if name is not None:
            names[name] = job["key"]
        if job["status"] == "ok" and job["output_sizes"] is None:
            raise _fail(label, "manifest", f"{where}.output_sizes", "an ok job records its outputs' sizes")


def validate(obj: Any, name: str, *, label: str = "document") -> None:
    """Raise :class:`SchemaValidationError` unless ``obj`` (parsed JSON) is a valid ``name`` document.

    ``label`` names the document in the error (for example its file path). The first error found by the
    schema (the deepest one) is reported with its JSON path, e.g. ``$.people[0].box``.
    """
    import jsonschema

    base = _base(name)
    errors = list(_validator(base).iter_errors(obj))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        raise _fail(label, base, _where(err.absolute_path), err.message)
    if base == "tracks":
        _check_tracks(obj, label)
    elif base == "frame":
        _check_frame(obj, label)
    elif base == "manifest":
        _check_manifest(obj, label)


def validate_jsonl(path: str, *, allow_partial_last: bool = True) -> int:
    """Validate every line of a ``NAME.jsonl`` file as a ``frame`` (or, with an ``event`` key, an ``event``)
    record; returns the number of records.

    A killed run may leave a partial last line: with ``allow_partial_last`` it is skipped.
    """
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    count = 0
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if allow_partial_last and i == len(lines) - 1:
                break
            raise SchemaValidationError(f"{path}:{i + 1}: not JSON ({e}); the file is damaged") from e
        validate(
            rec, "event" if isinstance(rec, dict) and "event" in rec else "frame", label=f"{path}:{i + 1}"
        )
        count += 1
    return count
