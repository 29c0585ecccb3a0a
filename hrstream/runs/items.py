"""The inputs of a run as planned: each with its key, output name and fingerprint.

:func:`input_key` names an input across runs (its resolved path; a URL with its credentials redacted; a camera as
given), :func:`fingerprint` says what would make it worth processing again (size, ``mtime_ns``, recipe digest),
:func:`output_sizes` what its outputs were when it completed. A :class:`Plan` is what a run does with its inputs
(:meth:`hrstream.runs.manifest.Manifest.plan` makes it; :func:`plan_without_manifest` where no folder is written).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrstream.io import InputSpec, safe_name
from hrstream.io.urls import is_url
from hrstream.types import SourceResult

__all__ = ["Plan", "WorkItem", "fingerprint", "input_key", "output_sizes", "plan_without_manifest"]


@dataclass(frozen=True)
class WorkItem:
    """One input of a run, as the manifest planned it: ``key`` (:func:`input_key`), the expanded ``job``, its
        output ``name`` (distinct across runs), its ``fingerprint`` (:func:`fingerprint`) and its own ``options`` (a
    sources file's ``key=value``: ``detect_every``)."""

    key: str
    job: InputSpec
    name: str
    fingerprint: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def display(self) -> str:
        return self.job.display

    @property
    def live(self) -> bool:
        return self.job.kind in ("url", "camera")


@dataclass
class Plan:
    """What a run does: ``items`` every input in order; ``todo`` those to process; ``skipped`` the results of
    those done already (by ``name``); ``duplicates`` inputs named twice (processed once)."""

    items: list[WorkItem]
    todo: list[WorkItem]
    skipped: dict[str, SourceResult]
    duplicates: list[str] = field(default_factory=list)


def input_key(job: InputSpec) -> str:
    """The manifest key of an input: its resolved absolute path (symlinks followed); a URL as displayed
    (credentials redacted); a camera as given."""
    if job.kind == "url" or is_url(job.spec):
        return job.display
    if job.kind == "camera":
        return job.spec
    return str(Path(job.spec).expanduser().resolve()) if job.spec.strip() else job.spec


def fingerprint(job: InputSpec, recipe_digest: str) -> dict[str, Any]:
    """``{"recipe": digest}`` plus, for files, ``size`` and ``mtime_ns`` (an image folder: the total size,
    the newest ``mtime_ns`` and the number of images). A change in any of them reprocesses the input."""
    fp: dict[str, Any] = {"recipe": recipe_digest}
    try:
        if job.kind in ("video", "image"):
            st = os.stat(job.spec)
            fp.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        elif job.kind == "images":
            stats = [os.stat(p) for p in job.paths]
            fp.update(
                size=sum(s.st_size for s in stats),
                mtime_ns=max((s.st_mtime_ns for s in stats), default=0),
                images=len(stats),
            )
    except OSError:
        pass
    return fp


def output_sizes(outputs: Mapping[str, str]) -> dict[str, int] | None:
    """Bytes of each output (a folder: the sum of its files), or ``None`` when one of them is missing."""
    sizes: dict[str, int] = {}
    for kind, path in outputs.items():
        p = Path(path)
        try:
            if p.is_dir():
                sizes[kind] = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            else:
                sizes[kind] = p.stat().st_size
        except OSError:
            return None
    return sizes


def plan_without_manifest(
    jobs: Sequence[InputSpec],
    names: Sequence[str | None] | None = None,
    options: Sequence[dict[str, Any] | None] | None = None,
) -> Plan:
    """Every input to process, with output names distinct within the run: a name given for an input
    (``--sources`` lines ``NAME URL``) first, else the sanitised input name; equal names (``a/clip.mp4``,
    ``b/clip.mp4``) get ``clip``, ``clip_2``, ``clip_3`` in input order. For runs that write no folder (and so
    keep no manifest): :func:`hrstream.stream` without ``out``."""
    used: set[str] = set()
    items = []
    for i, job in enumerate(jobs):
        wanted = names[i] if names is not None and i < len(names) else None
        base = name = safe_name(wanted) if wanted else job.name
        k = 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        items.append(WorkItem(input_key(job), job, name, {}, dict(_nth(options, i) or {})))
    return Plan(items, list(items), {})


def _nth(values: Sequence[Any] | None, i: int) -> Any:
    return values[i] if values is not None and i < len(values) else None
