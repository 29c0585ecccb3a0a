"""The service's sources: what runs where, added, removed and restarted while the service runs.

:class:`SourceRegistry` is the one place that changes the set of sources: from the HTTP API, from the sources
file (read at the start and again on SIGHUP) and on restart. It checks each source (a unique, safe name; an
allowed URL scheme; known options), places it on a pipeline through a :class:`Placement` and writes the change
back to the sources file. :class:`LocalPlacement` places sources on the one pipeline of this process (a
:class:`~hrstream.runs.local.PipelineSession`); a placement over several pipelines (one per GPU, Ray actors)
fits the same interface, so the API does not change with it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from hrstream.io import SOURCE_OPTIONS, expand_inputs
from hrstream.runs.items import WorkItem
from hrstream.runs.local import PipelineSession
from hrstream.runtime.counters import RunCounters
from hrstream.serve.sources_file import SourcesFile, SourceSpec

__all__ = ["LocalPlacement", "Placement", "SourceRegistry", "SourceRejected", "check_spec", "public_state"]

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_URL = 2048
#: Sources a service holds at most (each costs a decode thread and a lane).
MAX_SOURCES = 256


class SourceRejected(ValueError):
    """A source that cannot be added: ``field`` names what is wrong (``name``, ``url``, an option)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_spec(spec: SourceSpec) -> None:
    """Refuse a source whose name, URL or options are not what the service takes.

    Raises:
        SourceRejected: the field and what is wrong with it (credentials in a URL are never in the message).
    """
    if not NAME.match(spec.name):
        raise SourceRejected(
            "name", "a name is 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    if not spec.url or len(spec.url) > MAX_URL or any(c.isspace() for c in spec.url):
        raise SourceRejected("url", f"a URL is 1-{MAX_URL} characters without spaces")
    job = expand_inputs([spec.url])[0]
    if job.error is not None:
        raise SourceRejected("url", str(job.error))
    if job.kind not in ("url", "camera"):
        raise SourceRejected(
            "url", f"{job.display}: the service takes live sources (a stream URL or a camera)"
        )
    for key, value in spec.options.items():
        if key not in SOURCE_OPTIONS:
            raise SourceRejected(key, f"unknown option; options: {', '.join(SOURCE_OPTIONS)}")
        what, kind = SOURCE_OPTIONS[key]
        if not isinstance(value, kind) or isinstance(value, bool) or value < 1 or value > 10_000:
            raise SourceRejected(key, f"must be {what} (at most 10000)")


class Placement(Protocol):
    """Where sources run: ``place`` starts one; ``unplace`` stops it and returns what to wait on until its
    outputs are closed (an object with ``wait(timeout) -> bool``), or ``None`` when nothing ran."""

    def place(self, spec: SourceSpec) -> None: ...

    def unplace(self, name: str) -> Any: ...


class LocalPlacement:
    """Sources on the pipeline of this process, recorded in the output folder's manifest under their names (a
    service's sources are who they are by name: a camera keeps its name when its URL changes).

    The owner of the session calls :meth:`ended` when a source's lane ended (its outputs closed): the lanes of
    one name end in the order they were placed (the pipeline starts a name's new lane once its earlier one
    drained)."""

    def __init__(self, session: PipelineSession, recipe_digest: str) -> None:
        self.session = session
        self.recipe_digest = recipe_digest
        self._lanes: dict[str, deque[threading.Event]] = {}
        self._lock = threading.Lock()

    def place(self, spec: SourceSpec) -> None:
        (job,) = expand_inputs([spec.url])
        item = WorkItem(spec.name, job, spec.name, {"recipe": self.recipe_digest}, dict(spec.options))
        with self._lock:
            self._lanes.setdefault(spec.name, deque()).append(threading.Event())
        self.session.add(item)

    def unplace(self, name: str) -> threading.Event | None:
        with self._lock:
            lanes = self._lanes.get(name)
            done = lanes[-1] if lanes else None
        self.session.remove(name)
        return done

    def ended(self, name: str) -> None:
        """The oldest lane of ``name`` ended: whoever waits on it is told."""
        with self._lock:
            lanes = self._lanes.get(name)
            if not lanes:
                return
            lanes.popleft().set()
            if not lanes:
                del self._lanes[name]

    def running(self) -> list[str]:
        """Names with a lane not yet ended (placed, running or draining)."""
        with self._lock:
            return list(self._lanes)


@dataclass
class _Entry:
    spec: SourceSpec
    added_at: float = field(default_factory=time.time)


class SourceRegistry:
    """The sources of a service (see the module docstring).

    Args:
        placement: where sources run.
        counters: the run's counters (each source's state and numbers).
        sources_file: the file changes are written back to (``None``: nowhere).
    """

    def __init__(self, placement: Placement, counters: RunCounters, sources_file: SourcesFile | None) -> None:
        self.placement = placement
        self.counters = counters
        self.file = sources_file
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.RLock()

    # -- changes ------------------------------------------------------------------------------------------
    def add(self, spec: SourceSpec, *, persist: bool = True) -> None:
        """Start a source (``persist``: and write it to the sources file).

        Raises:
            SourceRejected: a bad name, URL or option, or a name already taken.
        """
        check_spec(spec)
        with self._lock:
            if spec.name in self._entries:
                raise SourceRejected(
                    "name", f"a source named {spec.name!r} exists; remove it first or pick another"
                )
            if len(self._entries) >= MAX_SOURCES:
                raise SourceRejected("name", f"the service holds at most {MAX_SOURCES} sources")
            self.placement.place(spec)
            self._entries[spec.name] = _Entry(spec)
            if persist and self.file is not None:
                self.file.add(spec)
        log.info("source %s added (%s)", spec.name, spec.display)

    def remove(self, name: str, *, persist: bool = True, wait_s: float = 0.0) -> bool:
        """Stop a source and close its outputs (``persist``: and drop it from the sources file); wait at most
        ``wait_s`` seconds for its outputs to be closed (the other sources and changes do not wait). Returns
        whether they were closed by then.

        Raises:
            KeyError: no source has that name.
        """
        with self._lock:
            if name not in self._entries:
                raise KeyError(name)
            del self._entries[name]
            done = self.placement.unplace(name)
            if persist and self.file is not None:
                self.file.remove(name)
        log.info("source %s removed", name)
        if done is None:
            return True
        return bool(done.wait(wait_s)) if wait_s > 0 else done.is_set()

    def restart(self, name: str) -> None:
        """Stop a source and start it again (a new connection and new segments)."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise KeyError(name)
            self.placement.unplace(name)
            self.placement.place(entry.spec)
            entry.added_at = time.time()
        log.info("source %s restarted", name)

    def reload(self) -> dict[str, list[str]]:
        """Apply the sources file as it is now (an edit by hand, SIGHUP): new sources start, missing ones stop,
        changed ones restart. Returns the names ``added``, ``removed``, ``changed``.

        Raises:
            hrstream.errors.InputError: the file cannot be read or is malformed (nothing changes then).
            SourceRejected: a source of the file is not one the service takes (nothing changes then).
        """
        if self.file is None:
            return {"added": [], "removed": [], "changed": []}
        wanted = {s.name: s for s in self.file.read()}
        for spec in wanted.values():
            check_spec(spec)
        with self._lock:
            current = {n: e.spec for n, e in self._entries.items()}
            removed = [n for n in current if n not in wanted]
            added = [n for n in wanted if n not in current]
            changed = [n for n in wanted if n in current and wanted[n] != current[n]]
            for name in removed + changed:
                self.remove(name, persist=False)
            for name in changed + added:
                self.add(wanted[name], persist=False)
        return {"added": added, "removed": removed, "changed": changed}

    # -- what it knows ------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def describe(self, name: str) -> dict[str, Any]:
        """One source's public record: name, display URL (credentials redacted), options, state (``live``,
        ``connecting``, ``reconnecting``, ``gave_up``, ``stopped``), counters, latencies.

        Raises:
            KeyError: no source has that name.
        """
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise KeyError(name)
        counters = self.counters.get(name)
        return self._record(name, entry, {} if counters is None else counters.snapshot())

    def describe_all(self) -> list[dict[str, Any]]:
        """Every source's record, in the order they were added."""
        with self._lock:
            entries = list(self._entries.items())
        out = []
        for name, entry in entries:
            counters = self.counters.get(name)
            out.append(self._record(name, entry, {} if counters is None else counters.snapshot()))
        return out

    @staticmethod
    def _record(name: str, entry: _Entry, snap: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "url": entry.spec.display,
            "options": dict(entry.spec.options),
            "added_at": entry.added_at,
            "state": public_state(snap.get("state", "connecting")),
            **{
                k: snap.get(k, 0)
                for k in ("frames_in", "frames_out", "drops", "reconnects", "gaps", "segments")
            },
            "latency_s": snap.get("latency_s"),
            "screen_latency_s": snap.get("screen_latency_s"),
        }


def public_state(state: str) -> str:
    """The API's words: ``live``, ``connecting``, ``reconnecting``, ``gave_up``, ``stopped``."""
    return {"connected": "live", "reading": "live", "ended": "stopped", "gave_up": "gave_up"}.get(
        state, state
    )
