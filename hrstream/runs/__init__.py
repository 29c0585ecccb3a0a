"""Running inputs: one lifecycle (plan with the manifest, watch, stop on signals, record), its executors (this
process, worker processes, Ray actors) and what a run tells its user."""

from __future__ import annotations

from hrstream.runs.executors import ParallelOptions, make_executor, retry_specs
from hrstream.runs.lifecycle import Executor, RunEvents, RunOutcome, run_inputs
from hrstream.runs.local import LocalExecutor
from hrstream.runs.manifest import MANIFEST_NAME, Manifest
from hrstream.runs.report import EXIT_GAVE_UP, exit_code, format_status, format_summary
from hrstream.runs.start import start_run

__all__ = [
    "EXIT_GAVE_UP",
    "MANIFEST_NAME",
    "Executor",
    "LocalExecutor",
    "Manifest",
    "ParallelOptions",
    "RunEvents",
    "RunOutcome",
    "exit_code",
    "format_status",
    "format_summary",
    "make_executor",
    "retry_specs",
    "run_inputs",
    "start_run",
]
