"""The service's memory: its sources file, read and rewritten line by line, comments kept.

The file has the format of ``hrstream run --sources``: one source a line, ``NAME URL`` (or ``URL``, named after
the input) with optional ``key=value`` options (``detect_every=3``), ``#`` comments and blank lines anywhere.
:class:`SourcesFile` keeps every line as written; adding a source appends a line, removing one drops its line
(the comment lines around it stay), and every change is written atomically (a temporary file moved over the
old one, with the old one's permissions: the file holds camera credentials), so the file always holds one
complete set and a restart of the service resumes it. A change starts from the file as it is on disk, so an
edit made by hand and not yet applied (SIGHUP) is kept, not overwritten.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrstream.errors import InputError
from hrstream.io import SourceLine, expand_inputs, parse_source_line, safe_name

__all__ = ["SourceSpec", "SourcesFile", "format_line"]


@dataclass(frozen=True)
class SourceSpec:
    """A source of the service: its ``name`` (its outputs' and labels' name), its ``url`` as given (with any
    credentials: never shown; ``display`` is redacted) and its ``options``."""

    name: str
    url: str
    options: dict[str, Any]

    @property
    def display(self) -> str:
        return expand_inputs([self.url])[0].display


def format_line(spec: SourceSpec) -> str:
    """The sources file line of ``spec``: ``NAME URL key=value ...``."""
    opts = " ".join(f"{k}={v}" for k, v in sorted(spec.options.items()))
    return f"{spec.name} {spec.url}" + (f" {opts}" if opts else "")


def _named(line: SourceLine) -> SourceSpec:
    name = line.name or expand_inputs([line.spec])[0].name
    return SourceSpec(safe_name(name), line.spec, dict(line.options))


class SourcesFile:
    """A sources file (see the module docstring). Thread-safe.

    Args:
        path: the file; it need not exist yet (an empty service).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._lines: list[str] = []

    def read(self) -> list[SourceSpec]:
        """(Re)read the file: every source, in file order.

        Raises:
            InputError: the file cannot be read, a line is malformed, or two lines have one name (each names
                the line).
        """
        try:
            text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(
                f"{self.path}: cannot read the sources file ({getattr(e, 'strerror', None) or e})"
            ) from None
        specs: list[SourceSpec] = []
        seen: dict[str, int] = {}
        for n, line in enumerate(text.splitlines(), start=1):
            parsed = parse_source_line(line, where=f"{self.path}:{n}")
            if parsed is None:
                continue
            spec = _named(parsed)
            if spec.name in seen:
                raise InputError(
                    f"{self.path}:{n}: the name {spec.name!r} is taken by line {seen[spec.name]}"
                )
            seen[spec.name] = n
            specs.append(spec)
        with self._lock:
            self._lines = text.splitlines()
        return specs

    def add(self, spec: SourceSpec) -> None:
        """Append ``spec``'s line (in place of a line of that name, if the file has one) and write the file."""
        with self._lock:
            self._refresh()
            if any(self._name_of(line) == spec.name for line in self._lines):
                self._lines = [
                    format_line(spec) if self._name_of(line) == spec.name else line for line in self._lines
                ]
            else:
                self._lines.append(format_line(spec))
            self._write()

    def remove(self, name: str) -> None:
        """Drop the line of source ``name`` (comment lines stay) and write the file."""
        with self._lock:
            self._refresh()
            self._lines = [line for line in self._lines if self._name_of(line) != name]
            self._write()

    def _refresh(self) -> None:
        """The lines as they are on disk now (those last read if it cannot be read)."""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            self._lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []

    def _name_of(self, line: str) -> str | None:
        try:
            parsed = parse_source_line(line, where=str(self.path))
        except InputError:
            return None
        return None if parsed is None else _named(parsed).name

    def _write(self) -> None:
        """Write the lines atomically, keeping the file's permissions (a new file: owner only)."""
        text = "\n".join(self._lines) + ("\n" if self._lines else "")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o600
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
