"""Runs a task over many inputs: one pipeline per input, the network loaded once, failures isolated.

Exit codes of a run (see :func:`exit_code`): 0 all inputs done, 1 some inputs failed, 130/143 interrupted
(SIGINT/SIGTERM: intake stops, what is in flight drains, every output is closed properly).

A manifest ``manifest.json`` in ``--out`` (written atomically after every input) records each input's
size, mtime, the recipe hash, its status and outputs; a rerun skips inputs already done with the same
recipe and retries the failed ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hrstream.errors import HrstreamError, InputError, StageError
from hrstream.io import InputSpec, expand_inputs, open_source, write_json_atomic
from hrstream.io.base import Source
from hrstream.io.reconnect import open_live_source
from hrstream.runtime import Pipeline, StopOnSignals, configure_cpu_threads

__all__ = ["JobResult", "RunControl", "Runner", "exit_code"]

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    """The outcome of one input."""

    input: str
    status: str  # "ok" | "failed" | "interrupted" | "skipped"
    frames: int = 0
    drops: int = 0
    truncated: bool = False
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    fingerprint: dict[str, Any] = field(default_factory=dict)


class RunControl:
    """The stop switch shared by the signal handlers and the job loop (one pipeline at a time)."""

    def __init__(self) -> None:
        self.stopped = False
        self.aborted = False
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    def attach(self, pipeline: Pipeline | None) -> None:
        with self._lock:
            self._pipeline = pipeline
            if pipeline is not None and self.stopped:
                pipeline.request_stop()

    def request_stop(self) -> None:
        with self._lock:
            self.stopped = True
            if self._pipeline is not None:
                self._pipeline.request_stop()

    def abort(self) -> None:
        with self._lock:
            self.stopped = self.aborted = True
            if self._pipeline is not None:
                self._pipeline.abort()


def exit_code(results: list[JobResult], signum: int | None) -> int:
    if signum is not None:
        return 128 + signum
    return 1 if any(r.status == "failed" for r in results) else 0


def unique_names(jobs: list[InputSpec]) -> list[str]:
    """Output names of ``jobs``, distinct within a run: inputs whose sanitised names are equal
    (``a/clip.mp4``, ``b/clip.mp4``, ``b/clip.mkv``) get ``clip``, ``clip_2``, ``clip_3`` in input order, so
    that no job overwrites another one's files and a rerun of the same command gives the same names."""
    used: set[str] = set()
    names = []
    for job in jobs:
        base = name = job.name
        k = 2
        while name in used:
            name = f"{base}_{k}"
            k += 1
        used.add(name)
        names.append(name)
    return names


def _outputs_exist(prev: dict[str, Any]) -> bool:
    return all(Path(p).is_file() for p in (prev.get("outputs") or {}).values())


def _fingerprint(job: InputSpec, recipe_hash: str) -> dict[str, Any]:
    fp: dict[str, Any] = {"recipe": recipe_hash}
    if job.kind in ("video", "image"):
        try:
            st = os.stat(job.spec)
            fp.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        except OSError:
            pass
    return fp


# build(source, job_name, control) -> Pipeline whose sink is the job's outputs (with .frames, .paths)
PipelineBuilder = Callable[[Source, Any], tuple[Pipeline, Any]]


class Runner:
    """Runs ``build`` pipelines over inputs.

    Args:
        out_dir: the ``--out`` folder (created).
        build: ``build(source, progress) -> (pipeline, outputs)`` for one opened source; ``outputs`` has
            ``frames``, ``paths`` and ``close()``.
        recipe: the recipe (hashed into the manifest so a changed recipe reprocesses inputs).
        grace_s: after a stop request, abort a job that has not drained within this many seconds.
        source_options: keyword arguments of :func:`hrstream.io.open_source` (deadlines, live buffer).
        make_progress: ``make_progress(source) -> (callback, finish)`` for a progress display, or ``None``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        build: PipelineBuilder,
        *,
        recipe: dict[str, Any],
        grace_s: float = 10.0,
        source_options: dict[str, Any] | None = None,
        make_progress: Callable[[Source], tuple[Any, Callable[[], None]]] | None = None,
        reserved_threads: int = 1,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.build = build
        self.recipe_hash = hashlib.sha256(
            json.dumps(recipe, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        self.grace_s = grace_s
        self.source_options = dict(source_options or {})
        self.make_progress = make_progress
        self.control = RunControl()
        self.manifest_path = self.out_dir / "manifest.json"
        self.results: list[JobResult] = []
        configure_cpu_threads(reserved_threads)

    def _previous(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.manifest_path.read_text())
            return {j["input"]: j for j in data.get("jobs", [])}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _save_manifest(self, state: str) -> None:
        write_json_atomic(
            self.manifest_path,
            {
                "format": "hrstream.manifest",
                "version": 1,
                "state": state,
                "jobs": [asdict(r) for r in self.results],
            },
        )

    def run(self, specs: list[str]) -> tuple[list[JobResult], int | None]:
        """Process every input; returns the results and the signal that interrupted the run (or ``None``)."""
        previous = self._previous()
        jobs = expand_inputs(specs)
        with StopOnSignals(self.control) as sig:
            for job, name in zip(jobs, unique_names(jobs), strict=True):
                if self.control.stopped:
                    break
                fp = _fingerprint(job, self.recipe_hash)
                prev = previous.get(job.display)
                if (
                    prev
                    and prev.get("status") in ("ok", "skipped")
                    and prev.get("fingerprint") == fp
                    and job.kind in ("video", "image")
                    and _outputs_exist(prev)
                ):
                    log.info("%s: already done with this recipe (manifest); skipped", job.display)
                    self.results.append(
                        JobResult(
                            job.display,
                            "skipped",
                            frames=int(prev.get("frames") or 0),
                            fingerprint=fp,
                            outputs=prev.get("outputs", {}),
                        )
                    )
                    continue
                result = self._run_job(job, name)
                result.fingerprint = fp
                self.results.append(result)
                self._save_manifest("running")
            self._save_manifest("interrupted" if sig.signum is not None else "done")
            return self.results, sig.signum

    def _run_job(self, job: InputSpec, name: str | None = None) -> JobResult:
        t0 = time.monotonic()
        try:
            opener = open_live_source if job.kind in ("url", "camera") else open_source
            source = opener(job, name=name, **self.source_options)
        except InputError as e:
            if self.control.stopped:  # a signal ended the open (e.g. while reconnecting)
                log.warning("%s", e)
                return JobResult(job.display, "interrupted", error=str(e))
            log.error("%s", e)
            return JobResult(job.display, "failed", error=str(e))
        outputs = None
        finish: Callable[[], None] = lambda: None  # noqa: E731
        try:
            progress = None
            if self.make_progress is not None:
                progress, finish = self.make_progress(source)
            try:
                pipeline, outputs = self.build(source, progress)
            except OSError as e:  # an output file cannot be created: this input fails, the others go on
                msg = f"{job.display}: cannot create its outputs in {self.out_dir} ({e.strerror or e})"
                log.error("%s", msg)
                return JobResult(job.display, "failed", error=msg, elapsed_s=time.monotonic() - t0)
            self.control.attach(pipeline)
            stats = pipeline.run(grace_s=self.grace_s)
        except StageError as e:
            cause = e.cause
            if isinstance(cause, HrstreamError) and not isinstance(cause, InputError):
                raise cause from e  # configuration/weights problems end the run (exit 2)
            msg = f"{job.display}: {cause}" if isinstance(cause, InputError) else f"{job.display}: {e}"
            log.error("%s", msg)
            return JobResult(
                job.display,
                "failed",
                frames=getattr(outputs, "frames", 0),
                error=msg,
                outputs=_paths(outputs),
                elapsed_s=time.monotonic() - t0,
            )
        finally:
            self.control.attach(None)
            finish()
            if outputs is not None:
                outputs.close()
            source.close()
        truncated = bool(getattr(source, "truncated", False))
        status = "interrupted" if stats.outcome != "completed" else "ok"
        result = JobResult(
            job.display,
            status,
            frames=outputs.frames,
            drops=stats.drops,
            truncated=truncated,
            outputs=_paths(outputs),
            elapsed_s=time.monotonic() - t0,
        )
        if truncated:
            result.error = f"{job.display}: file ended early; decoded {outputs.frames} frames"
        log.info(
            "%s: %s, %d frames in %.1f s (%d dropped)",
            job.display,
            status,
            result.frames,
            result.elapsed_s,
            result.drops,
        )
        return result


def _paths(outputs: Any) -> dict[str, str]:
    return {k: str(v) for k, v in getattr(outputs, "paths", {}).items()}
