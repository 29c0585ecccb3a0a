"""The options of ``hrstream run`` that spread a run over worker processes or Ray actors, and the run itself.

``--workers N`` (or ``auto``: one per CUDA device, else one per ``--cpus-per-worker`` cores, default 2) runs
:class:`~hrstream.runs.processes.ProcessExecutor`; ``--executor ray`` runs
:class:`~hrstream.runs.ray_actors.RayExecutor`. Without either a run stays in one process
(:class:`~hrstream.runs.local.LocalExecutor`). ``--input-timeout`` needs one of them: only a worker process or an
actor can be ended without ending the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrstream.errors import ConfigError
from hrstream.pipeline.recipe import Recipe
from hrstream.runs.lifecycle import Executor
from hrstream.runs.manifest import Manifest
from hrstream.runtime import usable_cpu_count

__all__ = ["ParallelOptions", "make_executor", "parse_workers", "retry_specs"]

log = logging.getLogger(__name__)

#: Cores per CPU worker of ``--workers auto``.
AUTO_CPUS_PER_WORKER = 2


def parse_workers(value: str | int | None) -> int | str | None:
    """``--workers``: a positive integer or ``auto``; a :class:`ConfigError` otherwise."""
    if value is None or value == "auto":
        return value
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"--workers {value!r}: expected a number >= 1 or 'auto'")
    return n


@dataclass(frozen=True)
class ParallelOptions:
    """``--workers``, ``--executor``, ``--ray-address``, ``--cpus-per-worker`` and ``--input-timeout``."""

    workers: int | str | None = None
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_worker: int | None = None
    input_timeout: float | None = None

    @classmethod
    def pop_from(cls, options: dict[str, Any]) -> ParallelOptions:
        """Take these options out of the command's keyword arguments (the rest are recipe flags)."""
        return cls(
            workers=parse_workers(options.pop("workers", None)),
            executor=options.pop("executor", None) or "local",
            ray_address=options.pop("ray_address", None),
            cpus_per_worker=options.pop("cpus_per_worker", None),
            input_timeout=options.pop("input_timeout", None),
        )

    @property
    def requested(self) -> bool:
        """Worker processes or Ray actors were asked for."""
        return self.executor == "ray" or self.workers is not None

    def check(self) -> None:
        """A :class:`ConfigError` for options that need worker processes or actors without them."""
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"--executor {self.executor!r}: expected local or ray")
        if self.requested:
            return
        for flag, value in (
            ("--input-timeout", self.input_timeout),
            ("--cpus-per-worker", self.cpus_per_worker),
        ):
            if value is not None:
                raise ConfigError(f"{flag} needs worker processes: add --workers N (or --executor ray)")
        if self.ray_address is not None:
            raise ConfigError("--ray-address needs --executor ray")


def make_executor(
    recipe: Recipe, out_dir: str | Path, options: ParallelOptions, *, grace_s: float
) -> Executor:
    """The executor ``options`` ask for (worker processes or Ray actors)."""
    from hrstream.runs.processes import process_executor, worker_devices, worker_threads
    from hrstream.runs.worker import WorkerSettings

    settings = WorkerSettings(
        recipe,
        str(Path(out_dir).resolve()),
        grace_s=grace_s,
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    workers = options.workers
    if options.executor == "ray":
        from hrstream.runs.ray_actors import RayExecutor

        return RayExecutor(
            settings,
            address=options.ray_address,
            workers=None if workers == "auto" else workers,  # type: ignore[arg-type]
            cpus_per_worker=options.cpus_per_worker,
            input_timeout=options.input_timeout,
        )
    device = recipe.runtime.device
    if workers == "auto":
        cuda = [d for d in worker_devices(device, 64) if d is not None]
        cpw = options.cpus_per_worker or AUTO_CPUS_PER_WORKER
        workers = len(set(cuda)) or max(1, usable_cpu_count() // cpw)
    if not isinstance(workers, int):  # pragma: no cover - ParallelOptions.check refuses it
        raise ConfigError(f"--workers {workers!r}: expected a number >= 1 or 'auto'")
    return process_executor(
        settings,
        workers=workers,
        threads=worker_threads(workers, options.cpus_per_worker),
        devices=worker_devices(device, workers),
        input_timeout=options.input_timeout,
    )


def retry_specs(out_dir: str | Path) -> list[str]:
    """The inputs ``--retry-failed`` runs again: every file input of ``OUT/manifest.json`` that is not done."""
    return Manifest.load(out_dir).unfinished_inputs()
