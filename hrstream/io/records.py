"""Crash-safe records: per-frame JSON Lines, atomic whole-file JSON, and safe output names.

* :class:`JsonlWriter` writes one JSON object per line and flushes after each line, so a killed process
  leaves every complete line parseable (at most the last line is partial).
* :func:`write_json_atomic` replaces a file via a temp file in the same directory + fsync + ``os.replace``,
  so readers see the old or the new content, never a partial one.
* Every file is created with the mode a new file gets (``0666`` less the umask), temporary files included
  (:func:`new_temp_file`, unlike ``tempfile.mkstemp``'s ``0600``).
* :func:`safe_name` / :func:`output_path` turn any input spec (path, URL with credentials, ``../../x``)
  into a name that stays inside the output directory; a symbolic link planted where an output goes is refused
  (nothing is written through it).
* :func:`remove_temp_files` deletes the temporary files a killed process left in a folder (the names
  :func:`new_temp_file` makes); :func:`check_writable` tells whether a folder takes a new file at all.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from hrstream.errors import InputError

__all__ = [
    "JsonlWriter",
    "NumpyJSONEncoder",
    "check_writable",
    "is_temp_name",
    "new_temp_file",
    "output_path",
    "remove_temp_files",
    "safe_name",
    "to_jsonable",
    "write_json_atomic",
    "write_text_atomic",
]

MAX_NAME_LEN = 80


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays (and tuples, sets, Paths) into plain JSON types; NaN/inf become None."""
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


class NumpyJSONEncoder(json.JSONEncoder):
    """``json.JSONEncoder`` that also writes numpy scalars and arrays (arrays as nested lists)."""

    def default(self, o: Any) -> Any:
        if isinstance(o, (np.ndarray, np.generic, Path, set, frozenset)):
            return to_jsonable(o)
        return super().default(o)


def _dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(to_jsonable(obj), cls=NumpyJSONEncoder, allow_nan=False, **kwargs)


class JsonlWriter:
    """Append JSON objects to ``path``, one per line, each handed to the OS at once; ``close()`` fsyncs.

    The file is opened in append mode so a resumed run adds to it; a symbolic link in its place is refused
    (``ELOOP``), never written through. Usable as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = (
            os.O_WRONLY
            | os.O_APPEND
            | os.O_CREAT
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_CLOEXEC", 0)
        )
        self._fd: int | None = os.open(self.path, flags, 0o666)
        self.lines_written = 0

    def write(self, obj: Any) -> None:
        """Write ``obj`` (a dict of JSON-able values, numpy allowed) as one line, handed to the OS whole.

        A line that cannot be written whole (a full disk) is taken back: the file ends with the line before it,
        and the ``OSError`` is raised."""
        if self._fd is None:
            raise ValueError(f"JsonlWriter({self.path}) is closed")
        data = memoryview((_dumps(obj, separators=(",", ":")) + "\n").encode("utf-8"))
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            raise
        self.lines_written += 1

    def close(self) -> None:
        """Fsync and close; safe to call twice."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def new_temp_file(folder: str | os.PathLike[str], name: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """Create a new, empty file ``folder/.NAME.XXXXXXXX{suffix}`` for writing; returns its descriptor and path.

    Like ``tempfile.mkstemp`` (created exclusively, never an existing file or a planted link) but with the mode
    every new file gets, ``0666`` less the process umask, instead of ``0600``: a file moved into place from it
    is as readable as any other output.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        path = Path(folder) / f".{name}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free temporary name for {name}")


#: The names of temporary files: :func:`new_temp_file`'s ``.NAME.XXXXXXXX.tmp`` / ``.part`` (and any suffix
#: after them), and the image writers' ``.NAME.tmp.jpg``.
_TEMP_NAME = re.compile(r"\..+\.(?:[0-9a-f]{8}\.(?:tmp|part)(?:\..*)?|tmp\.jpg)")


def is_temp_name(name: str) -> bool:
    """``name`` is the name of a temporary file hrstream writes before moving it into place."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (:func:`is_temp_name`) in ``folder`` and its subfolders one level down (an
    image sequence's), which a process killed while writing left behind; links are removed, never followed.
    Only call it when no other process writes there. Returns what was removed."""
    root = Path(folder)
    removed: list[Path] = []
    folders = [root]
    with contextlib.suppress(OSError):
        folders += [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    for where in folders:
        try:
            entries = list(where.iterdir())
        except OSError:
            continue
        for p in entries:
            if is_temp_name(p.name) and (p.is_symlink() or p.is_file()):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Create and remove a temporary file in ``folder`` (which must exist). Raises the ``OSError`` of a folder
    that cannot take one (read-only, full, not a folder, no permission)."""
    fd, path = new_temp_file(folder, "write-check")
    os.close(fd)
    path.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: temp file in the same dir, flush, fsync, replace, fsync dir."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path.parent, path.name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, _dumps(obj, indent=indent) + "\n")


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


def safe_name(spec: str, *, max_len: int = MAX_NAME_LEN) -> str:
    """A file-name-safe id for an input: its basename without extension, or ``host_port_path`` for a URL.

    The result has only ``[A-Za-z0-9_-]`` (no dots, so never ``.`` or ``..``; no path separators, no control
    characters), at most ``max_len`` characters, never the credentials of a URL, and applying it again
    returns the same name, except that a bare number names a camera (``0`` -> ``camera0``);
    :func:`output_path` keeps an already sanitised name as it is.
    Camera devices (``/dev/video0``) become ``video0``; a bare camera index ``0`` becomes ``camera0``.
    """
    spec = str(spec).strip()
    if re.fullmatch(r"\d+", spec):
        raw = f"camera{spec}"
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", spec):
        parts = urlsplit(spec)
        host = parts.hostname or "url"
        port = f"_{parts.port}" if _safe_port(parts) else ""
        path = unquote(parts.path).strip("/").replace("/", "_")
        raw = f"{host}{port}" + (f"_{path}" if path else "")
        raw = os.path.splitext(raw)[0] if "." in path else raw
    else:
        base = re.split(r"[\\/]+", spec.rstrip("/\\"))[-1]
        stem, ext = os.path.splitext(base)
        raw = stem if stem and ext and not stem.startswith(".") else base
    raw = unicodedata.normalize("NFKC", raw)
    raw = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", raw).strip("_-")
    name = name[:max_len].rstrip("_-")
    return name or "input"


def _safe_port(parts: Any) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def output_path(out_dir: str | os.PathLike[str], name: str, suffix: str) -> Path:
    """``out_dir / (safe_name(name) + suffix)``, resolved, guaranteed to lie inside ``out_dir``.

    Raises:
        InputError: if the result would escape ``out_dir`` (it cannot after sanitising; this is a guard).
    """
    root = Path(out_dir).resolve()
    if "/" in suffix or "\\" in suffix or ".." in suffix:
        raise InputError(f"output suffix {suffix!r} must not contain path separators or '..'")
    # an already sanitised name is kept as is (a bare number would otherwise read as a camera index)
    safe = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) and len(name) <= MAX_NAME_LEN else safe_name(name)
    planted = root / f"{safe}{suffix}"
    if planted.is_symlink():
        raise InputError(
            f"{planted} is a symbolic link (to {os.readlink(planted)}); hrstream does not write through links in "
            "an output folder: remove it"
        )
    candidate = planted.resolve()
    if candidate.parent != root:
        raise InputError(f"output name for {name!r} resolves outside {root}; rename the input")
    return candidate
