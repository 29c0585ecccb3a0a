"""The manifest of an output folder: ``OUT/manifest.json``, one entry for every input ever processed into it.

Entries accumulate across runs and are keyed by the input's resolved path (:func:`~hrstream.runs.items.input_key`: symlinks
followed; a URL as displayed, credentials redacted; a camera as given). Each entry holds the input's output
name, so names stay distinct across runs too: ``sub/x.mp4`` never takes the name ``x`` that ``other/x.mp4``
got in an earlier run (:meth:`Manifest.plan`).

An entry's ``status`` goes ``pending`` (queued by a run) -> ``running`` (written to disk before any of its
outputs is touched) -> ``ok`` | ``failed`` | ``interrupted``. Only a completed job marks it ``ok``, with its
fingerprint (input size, ``mtime_ns``, recipe digest) and the size of every output; a later run skips it
only while the fingerprint and every output's size still match. An input killed while writing stays
``running`` (or its outputs' sizes no longer match) and is processed again.

Only one process writes the manifest (the main process of a run; worker processes and Ray actors report to
it). Every write is atomic (:func:`hrstream.io.write_json_atomic`) and the class is thread-safe.

For runs that report while they go (live sources: connection state, frames, drops, gaps)::

    manifest.update(key, frames=1200, drops=3, live={"state": "reconnecting", "gaps": 2})  # in memory
    manifest.flush()                     # writes if anything changed
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from hrstream.errors import ConfigError, OutputError
from hrstream.io import InputSpec, safe_name, write_json_atomic
from hrstream.io.urls import is_url
from hrstream.runs.items import Plan, WorkItem, fingerprint, input_key, output_sizes
from hrstream.types import SourceResult

__all__ = ["MANIFEST_NAME", "EntryStatus", "Manifest"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT = "hrstream.manifest"
VERSION = 2
#: Runs kept in the manifest's ``runs`` list (the newest).
RUNS_KEPT = 20

EntryStatus = Literal["pending", "running", "ok", "failed", "interrupted"]
RunState = Literal["running", "done", "interrupted", "failed"]

#: Fields of an entry that :meth:`Manifest.update` may set.
UPDATABLE = frozenset(
    {"status", "frames", "drops", "truncated", "error", "outputs", "elapsed_s", "worker", "live", "attempts"}
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_variant(name: str, base: str) -> bool:
    """``name`` is ``base`` or ``base_N`` (a name this base was given to keep it distinct)."""
    return name == base or re.fullmatch(re.escape(base) + r"_\d+", name) is not None


class Manifest:
    """The manifest of ``out_dir`` (see the module's docstring). Load it with :meth:`load`."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST_NAME
        self.state: RunState = "done"
        self.entries: dict[str, dict[str, Any]] = {}
        self.runs: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._dirty = False

    # -- reading ---------------------------------------------------------------------------------------
    @classmethod
    def load(cls, out_dir: str | Path) -> Manifest:
        """The manifest of ``out_dir`` (empty when there is none yet).

        Raises:
            ConfigError: ``manifest.json`` exists but is not a manifest (it names the file and the fix).
        """
        m = cls(out_dir)
        if not m.path.exists():
            return m

        try:
            data = json.loads(m.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}")
            jobs = data["jobs"]
            version = int(data.get("version", 1))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"{m.path}: not a readable hrstream manifest ({e}); move it away to start this folder afresh"
            ) from None
        m.state = data.get("state", "done")
        m.runs = list(data.get("runs") or [])
        for job in jobs:
            entry = dict(job) if version >= 2 else _from_v1(job)
            m.entries[entry["key"]] = entry
        return m

    def get(self, key: str) -> dict[str, Any] | None:
        """A copy of the entry of ``key``, or ``None``."""
        with self._lock:
            e = self.entries.get(key)
            return None if e is None else dict(e)

    def by_status(self) -> dict[str, list[dict[str, Any]]]:
        """Copies of every entry, grouped by ``status``."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for e in self.entries.values():
                out.setdefault(e["status"], []).append(dict(e))
        return out

    def run_in_progress(self) -> dict[str, Any] | None:
        """The newest run record when the manifest says a run is going on and its process is alive on this host
        (``None`` otherwise: entries left ``running`` then belong to a run that stopped)."""
        if self.state != "running" or not self.runs:
            return None
        run = self.runs[-1]
        if run.get("host") != socket.gethostname():
            return run  # cannot check another host's process: trust the record
        try:
            os.kill(int(run.get("pid", -1)), 0)
        except (OSError, ValueError):
            return None
        return run

    # -- planning --------------------------------------------------------------------------------------
    def plan(
        self,
        jobs: Sequence[InputSpec],
        names: Sequence[str | None] | None,
        recipe_digest: str,
        *,
        force: bool = False,
        options: Sequence[dict[str, Any] | None] | None = None,
    ) -> Plan:
        """Assign each input its key, output name and fingerprint, and decide what to process.

        Names: an input the manifest knows keeps its name (unless a different name is given for it); a new
        input gets the name given (``names[i]``) or its sanitised basename, made distinct from every name
        the manifest holds for another input and from the others of this run (``clip``, ``clip_2``, ...).

        Skipped (unless ``force``): files done by an earlier run (status ``ok``) whose fingerprint is
        unchanged and whose outputs all exist with the sizes recorded. An input named twice (the same key) is processed once.
        """
        with self._lock:
            held = {e["name"]: k for k, e in self.entries.items() if e.get("name")}
            used: set[str] = set()
            seen: set[str] = set()
            plan = Plan([], [], {})
            for i, job in enumerate(jobs):
                key = input_key(job)
                if key in seen:
                    plan.duplicates.append(job.display)
                    log.warning("%s: named more than once in this run; processed once", job.display)
                    continue
                seen.add(key)
                wanted = names[i] if names is not None and i < len(names) else None
                base = safe_name(wanted) if wanted else job.name
                prev = self.entries.get(key)
                if prev and prev.get("name") and _is_variant(prev["name"], base) and prev["name"] not in used:
                    name = prev["name"]
                else:
                    name, k = base, 2
                    while name in used or held.get(name, key) != key:
                        name = f"{base}_{k}"
                        k += 1
                used.add(name)
                held[name] = key
                opts = options[i] if options is not None and i < len(options) else None
                item = WorkItem(key, job, name, fingerprint(job, recipe_digest), dict(opts or {}))
                plan.items.append(item)
                reason = None if force else self._skip_reason(item, prev)
                if reason is None:
                    plan.todo.append(item)
                    continue
                assert prev is not None
                log.info("%s: %s; skipped", job.display, reason)
                plan.skipped[name] = SourceResult(
                    job.display,
                    "skipped",
                    name=name,
                    frames=int(prev.get("frames") or 0),
                    outputs=dict(prev.get("outputs") or {}),
                    fingerprint=item.fingerprint,
                )
            return plan

    @staticmethod
    def _skip_reason(item: WorkItem, prev: dict[str, Any] | None) -> str | None:
        if (
            prev is None
            or item.live
            or prev.get("status") != "ok"
            or prev.get("fingerprint") != item.fingerprint
        ):
            return None
        recorded = prev.get("output_sizes")
        now = output_sizes(prev.get("outputs") or {})
        if recorded is None or now != recorded:
            log.info("%s: its outputs changed since it was done (%s); processing it again", item.display, now)
            return None
        return "done already with this recipe (manifest)"

    def unfinished_inputs(self) -> list[str]:
        """Keys of the file inputs that are not done (failed, interrupted, pending, or left running): what
        ``hrstream run --retry-failed`` processes when no input is named. Live inputs are left out."""
        with self._lock:
            return [
                k
                for k, e in self.entries.items()
                if e["status"] != "ok" and e.get("kind") not in ("url", "camera")
            ]

    # -- a run -----------------------------------------------------------------------------------------
    def begin_run(self, plan: Plan, **info: Any) -> None:
        """Start a run: its record (``info``: recipe, executor, workers...), every input of the plan entered
        (those to process as ``pending``), written at once."""
        with self._lock:
            self.state = "running"
            run = {"started": _now(), "ended": None, "state": "running", "pid": os.getpid()}
            run.update(host=socket.gethostname(), inputs=len(plan.items), todo=len(plan.todo), **info)
            self.runs = [*self.runs, run][-RUNS_KEPT:]
            todo = {it.key for it in plan.todo}
            for it in plan.items:
                e = self.entries.get(it.key)
                if e is None:
                    e = self.entries[it.key] = _new_entry(it)
                e.update(input=it.display, name=it.name, kind=it.job.kind)
                if it.key in todo:
                    e.update(status="pending", fingerprint=it.fingerprint, error=None, updated=_now())
            self._dirty = True
            self.flush()

    def set_run_info(self, **info: Any) -> None:
        """Add to the current run's record (``workers=[...]`` once they started) and write it."""
        with self._lock:
            if self.runs:
                self.runs[-1].update(info)
            self._dirty = True
            self.flush()

    def start(self, item: WorkItem, *, attempt: int = 1, worker: dict[str, Any] | None = None) -> None:
        """Mark ``item`` running and write the manifest before returning: call it before any output of the
        item is created or truncated."""
        with self._lock:
            e = self.entries.setdefault(item.key, _new_entry(item))
            e.update(
                status="running",
                name=item.name,
                input=item.display,
                kind=item.job.kind,
                fingerprint=item.fingerprint,
                attempts=attempt,
                error=None,
                output_sizes=None,
                worker=worker,
                updated=_now(),
            )
            self._dirty = True
            self.flush()

    def finish(self, item: WorkItem, result: SourceResult) -> None:
        """Record how ``item`` ended and write the manifest. ``ok`` results record their outputs' sizes; an
        ``ok`` whose outputs cannot be found is recorded as ``failed``."""
        if result.status == "skipped":
            return
        with self._lock:
            e = self.entries.setdefault(item.key, _new_entry(item))
            status, error = result.status, result.error
            sizes = output_sizes(result.outputs) if status == "ok" else None
            if status == "ok" and sizes is None:
                status, error = "failed", f"{item.display}: an output is missing after the job ended"
            e.update(
                status=status,
                name=item.name,
                input=item.display,
                kind=item.job.kind,
                frames=result.frames,
                drops=result.drops,
                truncated=result.truncated,
                error=error,
                outputs=dict(result.outputs),
                output_sizes=sizes,
                elapsed_s=round(float(result.elapsed_s), 3),
                fingerprint=item.fingerprint,
                attempts=result.attempts,
                worker=result.worker if result.worker is not None else e.get("worker"),
                updated=_now(),
            )
            if result.live is not None:  # a live source's gaps, reconnects, segments, final state
                e["live"] = {**(e.get("live") or {}), **result.live}
            self._dirty = True
            self.flush()

    def end_run(self, state: RunState, **info: Any) -> None:
        """Close the current run's record with ``state`` and write the manifest."""
        with self._lock:
            self.state = state
            if self.runs:
                self.runs[-1].update(ended=_now(), state=state, **info)
            self._dirty = True
        self.flush()

    # -- live reporting --------------------------------------------------------------------------------
    def update(self, key: str, **fields: Any) -> None:
        """Change fields of the entry of ``key`` in memory (written by the next :meth:`flush`).

        Allowed fields: ``status``, ``frames``, ``drops``, ``truncated``, ``error``, ``outputs``,
        ``elapsed_s``, ``worker``, ``attempts`` and ``live`` (a mapping: for a live source e.g. ``state``
        ``connected`` / ``reconnecting`` / ``gave_up``, ``reconnects``, ``gaps``, ``gap_s``; merged into
        the entry's ``live``).

        Raises:
            KeyError: no entry has ``key``.
            ValueError: a field that is not allowed.
        """
        bad = set(fields) - UPDATABLE
        if bad:
            raise ValueError(f"cannot update {sorted(bad)}; allowed: {', '.join(sorted(UPDATABLE))}")
        with self._lock:
            e = self.entries[key]
            live = fields.pop("live", None)
            if live is not None:
                e["live"] = {**(e.get("live") or {}), **dict(live)}
            e.update(fields, updated=_now())
            self._dirty = True

    def flush(self) -> None:
        """Write the manifest (atomically) if anything changed since the last write.

        Raises:
            OutputError: it cannot be written (a read-only or full folder); the file keeps its last version.
        """
        with self._lock:
            if not self._dirty:
                return
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                write_json_atomic(self.path, self.to_dict())
            except OSError as e:
                raise OutputError(
                    f"{self.path}: cannot be written ({e.strerror or e}); it keeps its last state. Make "
                    f"{self.out_dir} writable or free space, then run again"
                ) from None
            self._dirty = False

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "format": FORMAT,
                "version": VERSION,
                "state": self.state,
                "updated": _now(),
                "runs": [dict(r) for r in self.runs],
                "jobs": [dict(e) for e in self.entries.values()],
            }


def _new_entry(item: WorkItem) -> dict[str, Any]:
    return {
        "key": item.key,
        "input": item.display,
        "name": item.name,
        "kind": item.job.kind,
        "status": "pending",
        "attempts": 0,
        "frames": 0,
        "drops": 0,
        "truncated": False,
        "error": None,
        "outputs": {},
        "output_sizes": None,
        "elapsed_s": 0.0,
        "fingerprint": dict(item.fingerprint),
        "worker": None,
        "updated": _now(),
    }


def _from_v1(job: Mapping[str, Any]) -> dict[str, Any]:
    """An entry of a version-1 manifest (keyed by the input as given, no names, no output sizes): its key is
    the input resolved now, its name read from its outputs; it is never skipped (no sizes recorded)."""
    spec = str(job["input"])
    key = spec if is_url(spec) else str(Path(spec).expanduser().resolve())
    outputs = {str(k): str(v) for k, v in (job.get("outputs") or {}).items()}
    names = {Path(p).name.split(".")[0] for p in outputs.values()}
    status = job.get("status", "failed")
    return {
        "key": key,
        "input": spec,
        "name": names.pop() if len(names) == 1 else None,
        "kind": None,
        "status": "ok" if status == "skipped" else status,
        "attempts": 1,
        "frames": int(job.get("frames") or 0),
        "drops": int(job.get("drops") or 0),
        "truncated": bool(job.get("truncated")),
        "error": job.get("error"),
        "outputs": outputs,
        "output_sizes": None,
        "elapsed_s": float(job.get("elapsed_s") or 0.0),
        "fingerprint": dict(job.get("fingerprint") or {}),
        "worker": None,
        "updated": _now(),
    }
