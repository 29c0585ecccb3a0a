"""Errors a person can act on.

Every error hrstream raises for bad input or configuration derives from :class:`HrstreamError`. The CLI
turns them into one line on stderr and the exit code they carry; library users catch them by class.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "HrstreamError",
    "InputError",
    "OutputError",
    "SourceGaveUp",
    "StageError",
    "WeightsError",
    "WeightsUnavailableError",
]


class HrstreamError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this error ends a run."""

    exit_code: int = 1


class ConfigError(HrstreamError, ValueError):
    """A model config, pipeline recipe or option is missing a field or has a wrong value (exit 2)."""

    exit_code = 2


class WeightsError(HrstreamError, ValueError):
    """A checkpoint cannot be used: unknown layout, missing/unexpected/mis-shaped keys, bad hash (exit 2)."""

    exit_code = 2


class WeightsUnavailableError(WeightsError):
    """Weights are not cached and cannot be downloaded (offline, unreachable, 404) (exit 2)."""

    exit_code = 2


class InputError(HrstreamError):
    """One input (file, folder entry, URL) cannot be read. Other inputs of the run go on (exit 1).

    ``permanent``: the failure will not go away by itself (a 404, refused credentials, a format FFmpeg cannot
    read), as opposed to a transient one (a timeout, a refused connection, a dropped stream) that a live
    source retries.
    """

    exit_code = 1

    def __init__(self, *args: object, permanent: bool = False) -> None:
        super().__init__(*args)
        self.permanent = permanent


class OutputError(HrstreamError):
    """The output folder cannot be written: read-only, full, not a folder, or a symbolic link planted where a
    file of the run goes (exit 2). What was written before is left as it was."""

    exit_code = 2


class SourceGaveUp(InputError):
    """A live source reached its limit of reconnect attempts (``--max-reconnects``) and stopped trying."""


class StageError(HrstreamError, RuntimeError):
    """An exception raised inside a pipeline stage, re-raised in the caller with the stage's name."""

    exit_code = 1

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage '{stage}' failed: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.cause = cause
