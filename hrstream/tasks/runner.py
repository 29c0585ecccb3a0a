"""Runs a task over every input of a run through one pipeline: one network, every source, failures isolated.

All live inputs (URLs, cameras) run at once; files run ``runtime.streams`` at a time (default: 1 on a CPU,
4 on CUDA, where more streams fill bigger batches) in their order. Each input is a source of the same
pipeline (:mod:`hrstream.tasks.jobs`): its frames are batched with the others' through the shared network, its
outputs are its own. An input that cannot be opened, breaks or gives up ends alone; the others go on.

Exit codes of a run (see :func:`exit_code`): 0 all inputs done, 1 some inputs failed, 130/143 interrupted
(SIGINT/SIGTERM: intake of every source stops, what is in flight drains, every output is closed properly).

A manifest ``manifest.json`` in ``--out`` (written atomically after every input) records each input's
size, mtime, the recipe hash, its status and outputs; a rerun skips inputs already done with the same
recipe and retries the failed ones.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hrstream.errors import HrstreamError, InputError, StageError
from hrstream.io import InputSpec, SourceInfo, expand_inputs, open_source, safe_name, write_json_atomic
from hrstream.io.reconnect import open_live_source
from hrstream.runtime import Pipeline, PipelineStats, StopOnSignals, configure_cpu_threads
from hrstream.runtime.feeder import SourceFeeder, SourceJob
from hrstream.runtime.mux import SourceMux
from hrstream.tasks.jobs import PreparedTask
from hrstream.tasks.router import SinkRouter, SourceOutputs, SourceReport

__all__ = ["JobResult", "RunControl", "Runner", "default_streams", "exit_code"]

log = logging.getLogger(__name__)

#: ``make_progress(info) -> (callback(frames_done), finish())`` for a progress display.
ProgressFactory = Callable[[SourceInfo], tuple[Callable[[int], None] | None, Callable[[], None]]]


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
    """The stop switch shared by the signal handlers and the run's pipeline."""

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


def default_streams(device: Any) -> int:
    """Files decoded at a time when the recipe does not say: 1 on a CPU (the network is the bottleneck and
    one stream already fills its batches), 4 on CUDA (more streams fill the GPU's bigger batches)."""
    return 4 if str(device).startswith("cuda") else 1


def unique_names(jobs: list[InputSpec], given: Sequence[str | None] | None = None) -> list[str]:
    """Output names of ``jobs``, distinct within a run: a name given for an input (``--sources`` lines
    ``NAME URL``) first, else the sanitised input name; equal names (``a/clip.mp4``, ``b/clip.mp4``) get
    ``clip``, ``clip_2``, ``clip_3`` in input order, so no input overwrites another one's files and a rerun
    of the same command gives the same names."""
    used: set[str] = set()
    names = []
    for i, job in enumerate(jobs):
        wanted = given[i] if given is not None and i < len(given) else None
        base = name = safe_name(wanted) if wanted else job.name
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


class Runner:
    """Runs ``prepared`` over inputs.

    Args:
        prepared: the task with its network(s) loaded and its ``out_dir``.
        grace_s: after a stop request, abort if the pipeline has not drained within this many seconds.
        make_progress: a progress display per source, or ``None``.
        reserved_threads: CPU cores left to decoding and encoding (see :func:`configure_cpu_threads`).
    """

    def __init__(
        self,
        prepared: PreparedTask,
        *,
        grace_s: float = 10.0,
        make_progress: ProgressFactory | None = None,
        reserved_threads: int = 1,
    ) -> None:
        if prepared.out_dir is None:
            raise ValueError("Runner needs a PreparedTask with an out_dir")
        self.prepared = prepared
        self.recipe = prepared.recipe
        self.out_dir = prepared.out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.recipe_hash = self.recipe.digest()
        self.grace_s = grace_s
        self.make_progress = make_progress
        self.control = RunControl()
        self.manifest_path = self.out_dir / "manifest.json"
        self.results: list[JobResult] = []
        self.stats: PipelineStats | None = None  # the stages' counters of the last run (benchmarks read them)
        self._lock = threading.Lock()
        configure_cpu_threads(reserved_threads)

    def _previous(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.manifest_path.read_text())
            return {j["input"]: j for j in data.get("jobs", [])}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _save_manifest(self, state: str) -> None:
        with self._lock:
            jobs = [asdict(r) for r in self.results]
            write_json_atomic(
                self.manifest_path,
                {"format": "hrstream.manifest", "version": 1, "state": state, "jobs": jobs},
            )

    def _open(self, job: InputSpec, name: str, stop: threading.Event) -> Any:
        src = self.recipe.sources
        options: dict[str, Any] = {
            "name": name,
            "open_timeout_s": src.open_timeout_s,
            "read_timeout_s": src.read_timeout_s,
        }
        if job.kind in ("url", "camera"):
            return open_live_source(job, stop=stop, rtsp_transport=src.rtsp_transport, **options)
        return open_source(job, **options)

    def _open_outputs(self, info: SourceInfo) -> SourceOutputs:
        progress, finish = (None, None) if self.make_progress is None else self.make_progress(info)
        return self.prepared.open_outputs(info, progress=progress, finish_progress=finish)

    def run(
        self, specs: Sequence[str], *, names: Sequence[str | None] | None = None
    ) -> tuple[list[JobResult], int | None]:
        """Process every input; returns the results (in input order) and the signal that interrupted the run
        (or ``None``). ``names[i]`` names the input of ``specs[i]`` (when that spec is one input)."""
        previous = self._previous()
        given: list[str | None] = []
        jobs: list[InputSpec] = []
        for i, spec in enumerate(specs):
            expanded = expand_inputs([spec])
            jobs.extend(expanded)
            name = names[i] if names is not None and i < len(names) else None
            given.extend([name] if len(expanded) == 1 else [None] * len(expanded))
        order: list[tuple[InputSpec, str, dict[str, Any]]] = []
        todo: list[SourceJob] = []
        skipped: dict[str, JobResult] = {}
        for job, name in zip(jobs, unique_names(jobs, given), strict=True):
            fp = _fingerprint(job, self.recipe_hash)
            order.append((job, name, fp))
            prev = previous.get(job.display)
            if (
                prev
                and prev.get("status") in ("ok", "skipped")
                and prev.get("fingerprint") == fp
                and job.kind in ("video", "image")
                and _outputs_exist(prev)
            ):
                log.info("%s: already done with this recipe (manifest); skipped", job.display)
                skipped[name] = JobResult(
                    job.display,
                    "skipped",
                    frames=int(prev.get("frames") or 0),
                    fingerprint=fp,
                    outputs=prev.get("outputs", {}),
                )
                continue
            todo.append(
                SourceJob(
                    name,
                    job.display,
                    live=job.kind in ("url", "camera"),
                    open=lambda stop, job=job, name=name: self._open(job, name, stop),
                )
            )
        reports: dict[str, SourceReport] = {}
        by_name = {name: (job, fp) for job, name, fp in order}
        self.results = list(skipped.values())

        def done(report: SourceReport) -> None:
            reports[report.source_id] = report
            job, fp = by_name[report.source_id]
            log.info(
                "%s: %s, %d frames in %.1f s (%d dropped)",
                job.display,
                report.status,
                report.frames,
                report.elapsed_s,
                report.drops,
            )
            with self._lock:
                self.results.append(_result(job, fp, report))
            self._save_manifest("running")

        signum = None
        if todo:
            signum, error = self._run_pipeline(todo, done)
            if error is not None:  # a stage failed: every source it cut short failed with it
                for name, rep in reports.items():
                    if rep.status == "interrupted":
                        rep.status, rep.error = "failed", f"{by_name[name][0].display}: {error}"
        self.results = []
        for job, name, fp in order:
            if name in skipped:
                self.results.append(skipped[name])
            elif name in reports:
                self.results.append(_result(job, fp, reports[name]))
        self._save_manifest("interrupted" if signum is not None else "done")
        return self.results, signum

    def _run_pipeline(
        self, todo: list[SourceJob], done: Callable[[SourceReport], None]
    ) -> tuple[int | None, str | None]:
        rt = self.recipe.runtime
        streams = rt.streams or default_streams(self.prepared.engine.device)
        mux = SourceMux()
        feeder = SourceFeeder(mux, streams=streams, file_buffer=rt.queue_size, live_buffer=rt.live_buffer)
        router = SinkRouter(self._open_outputs, on_done=done, stop_source=feeder.stop_source)
        live = any(j.live for j in todo)
        pipeline = self.prepared.build(mux, router, live=live, on_stop=feeder.stop, name=self.out_dir.name)
        error = None
        with StopOnSignals(self.control) as sig:
            self.control.attach(pipeline)
            feeder.start(todo)
            try:
                self.stats = pipeline.run(grace_s=self.grace_s)
            except StageError as e:
                cause = e.cause
                if isinstance(cause, HrstreamError) and not isinstance(cause, InputError):
                    raise cause from e  # configuration/weights problems end the run (exit 2)
                error = str(cause) if isinstance(cause, InputError) else str(e)
                log.error("%s", error)
            finally:
                self.control.attach(None)
                feeder.stop()
                mux.close()
                feeder.join(timeout=5.0)
        return sig.signum, error


def _result(job: InputSpec, fp: dict[str, Any], rep: SourceReport) -> JobResult:
    return JobResult(
        job.display,
        rep.status,
        frames=rep.frames,
        drops=rep.drops,
        truncated=rep.truncated,
        error=rep.error,
        outputs=rep.outputs,
        elapsed_s=rep.elapsed_s,
        fingerprint=fp,
    )
