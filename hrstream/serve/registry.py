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
from dataclasses import dataclass, field
from typing import Any, Protocol

from hrstream.io import SOURCE_OPTIONS, expand_inputs
from hrstream.runs.items import WorkItem
from hrstream.runs.local import PipelineSession
from hrstream.runtime.counters import RunCounters
from hrstream.serve.sources_file import SourcesFile, SourceSpec

__all__ = ["LocalPlacement", "Placement", "SourceRegistry", "SourceRejected", "check_spec"]

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_URL = 2048


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
    """Where sources run: ``place`` starts one, ``unplace`` stops it (its outputs closed)."""

    def place(self, spec: SourceSpec) -> None: ...

    def unplace(self, name: str) -> None: ...


class LocalPlacement:
    """Sources on the pipeline of this process, recorded in the output folder's manifest under their names (a
    service's sources are who they are by name: a camera keeps its name when its URL changes)."""

    def __init__(self, session: PipelineSession, recipe_digest: str) -> None:
        self.session = session
        self.recipe_digest = recipe_digest

    def place(self, spec: SourceSpec) -> None:
        (job,) = expand_inputs([spec.url])
        item = WorkItem(spec.name, job, spec.name, {"recipe": self.recipe_digest}, dict(spec.options))
        self.session.add(item)

    def unplace(self, name: str) -> None:
        self.session.remove(name)


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
            self.counters.forget(spec.name)  # a source of this name earlier: its numbers start afresh
            self.placement.place(spec)
            self._entries[spec.name] = _Entry(spec)
            if persist and self.file is not None:
                self.file.add(spec)
        log.info("source %s added (%s)", spec.name, spec.display)

    def remove(self, name: str, *, persist: bool = True) -> None:
        """Stop a source and close its outputs (``persist``: and drop it from the sources file).

        Raises:
            KeyError: no source has that name.
        """
        with self._lock:
            if name not in self._entries:
                raise KeyError(name)
            del self._entries[name]
            self.placement.unplace(name)
            if persist and self.file is not None:
                self.file.remove(name)
        log.info("source %s removed", name)

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
        """One source's public record: name, display URL (credentials redacted), options, state, counters."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise KeyError(name)
        snap = self.counters.snapshot().get(name, {})
        return {
            "name": name,
            "url": entry.spec.display,
            "options": dict(entry.spec.options),
            "added_at": entry.added_at,
            "state": _public_state(snap.get("state", "connecting")),
            "retry_at": snap.get("retry_at"),
            **{
                k: snap.get(k, 0)
                for k in ("frames_in", "frames_out", "drops", "reconnects", "gaps", "segments")
            },
            "latency_s": snap.get("latency_s"),
            "screen_latency_s": snap.get("screen_latency_s"),
        }

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self.names()]


def _public_state(state: str) -> str:
    """The API's words: ``live``, ``connecting``, ``reconnecting``, ``gave_up``, ``stopped``."""
    return {"connected": "live", "reading": "live", "ended": "stopped", "gave_up": "gave_up"}.get(
        state, state
    )
