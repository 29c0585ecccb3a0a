"""Expand what a user named on the command line into one job per video, image, image sequence, URL or camera.

:func:`expand_inputs` never raises for a bad input: each spec that cannot become a job yields an
:class:`InputSpec` whose ``error`` is set, so a run can report it and go on with the others.

Rules:

* a **file** is one job (``kind="image"`` for ``.jpg/.png/...``, else ``"video"``; a file that is not really a
  video is caught later by the probe in :func:`hrstream.io.open_source`);
* a **folder** is scanned (not recursively, sorted by natural order): every video file is a job; a folder holding
  only images is ONE ``"images"`` job (an image sequence); in a folder with videos and images the images are
  single-image jobs; other files are ignored; a folder without media is an error;
* a **glob** (``*``, ``?``, ``[``) that is not an existing path expands to its sorted matches, each treated as above;
* a **URL** (``scheme://...``) and a **camera** (``/dev/videoN`` or a bare integer ``N``) pass through; the URL
  scheme is checked here so an ``ftp://`` input is reported before anything is opened.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hrstream.errors import InputError
from hrstream.io.records import safe_name
from hrstream.io.urls import is_url, redact_url, validate_url

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "InputKind",
    "InputSpec",
    "expand_inputs",
    "natural_key",
    "SOURCE_OPTIONS",
    "SourceLine",
    "parse_source_line",
    "read_sources_file",
]

log = logging.getLogger(__name__)

InputKind = Literal["video", "image", "images", "url", "camera"]

VIDEO_EXTENSIONS = frozenset(
    [
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".ts",
        ".mts",
        ".m2ts",
        ".flv",
        ".wmv",
        ".mpg",
        ".mpeg",
        ".3gp",
        ".ogv",
        ".h264",
        ".264",
        ".hevc",
        ".h265",
        ".y4m",
    ]
)
IMAGE_EXTENSIONS = frozenset([".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"])

_CAMERA_RE = re.compile(r"^(?:\d+|/dev/video\d+)$")


@dataclass(frozen=True)
class InputSpec:
    """One job: what to open and how.

    Attributes:
        spec: the file path, folder path (for ``"images"``), URL or camera as given (URLs unredacted: pass
            ``display`` to logs, never ``spec``).
        kind: ``"video"``, ``"image"``, ``"images"`` (a folder of images), ``"url"`` or ``"camera"``.
        paths: for ``"images"``, the image files in natural sort order; else empty.
        error: set when this input cannot be used; the job should be reported as failed, not opened.
    """

    spec: str
    kind: InputKind | None
    paths: tuple[str, ...] = ()
    error: InputError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def name(self) -> str:
        """Sanitised id for outputs and logs (no separators, no credentials)."""
        return safe_name(self.spec)

    @property
    def display(self) -> str:
        """The spec with URL credentials redacted, for messages."""
        return redact_url(self.spec)


def natural_key(path: str) -> list[object]:
    """Sort key that orders ``img2.png`` before ``img10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _expand_folder(folder: str) -> list[InputSpec]:
    entries = sorted((str(p) for p in Path(folder).iterdir() if p.is_file()), key=natural_key)
    videos = [p for p in entries if _ext(p) in VIDEO_EXTENSIONS]
    images = [p for p in entries if _ext(p) in IMAGE_EXTENSIONS]
    ignored = len(entries) - len(videos) - len(images)
    if ignored:
        log.debug("%s: ignoring %d file(s) that are neither videos nor images", folder, ignored)
    if not videos and not images:
        return [
            InputSpec(
                folder,
                None,
                error=InputError(
                    f"{folder}: folder holds no videos ({', '.join(sorted(VIDEO_EXTENSIONS)[:6])}, ...) "
                    "or images; point at a folder of media files"
                ),
            )
        ]
    if not videos:
        return [InputSpec(folder, "images", paths=tuple(images))]
    return [InputSpec(p, "video") for p in videos] + [InputSpec(p, "image") for p in images]


def _expand_path(path: str) -> list[InputSpec]:
    if os.path.isdir(path):
        try:
            return _expand_folder(path)
        except OSError as exc:
            return [InputSpec(path, None, error=InputError(f"{path}: cannot list folder ({exc.strerror})"))]
    return [InputSpec(path, "image" if _ext(path) in IMAGE_EXTENSIONS else "video")]


def expand_inputs(specs: list[str] | tuple[str, ...]) -> list[InputSpec]:
    """Turn user input specs into jobs, one :class:`InputSpec` each, in the order given.

    Never raises for a bad input: a missing path, an empty glob, an unsupported URL scheme or an empty folder
    becomes an ``InputSpec`` with ``error`` set (its message names the input and the fix).
    """
    jobs: list[InputSpec] = []
    for raw in specs:
        spec = str(raw).strip()
        if not spec:
            jobs.append(
                InputSpec(spec, None, error=InputError("empty input name; give a file, folder or URL"))
            )
        elif is_url(spec):
            try:
                validate_url(spec)
                jobs.append(InputSpec(spec, "url"))
            except InputError as exc:
                jobs.append(InputSpec(spec, None, error=exc))
        elif _CAMERA_RE.match(spec):
            jobs.append(InputSpec(spec, "camera"))
        elif os.path.exists(spec):
            jobs.extend(_expand_path(spec))
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec), key=natural_key)
            if not matches:
                jobs.append(InputSpec(spec, None, error=InputError(f"{spec}: pattern matches no files")))
            for m in matches:
                jobs.extend(_expand_path(m))
        else:
            jobs.append(
                InputSpec(
                    spec,
                    None,
                    error=InputError(f"{spec}: no such file or folder; check the path and spelling"),
                )
            )
    return jobs


#: Per-source options a sources file line may carry (``key=value`` after ``NAME URL``), and their checks.
SOURCE_OPTIONS: dict[str, tuple[str, type]] = {"detect_every": ("an integer >= 1", int)}


@dataclass(frozen=True)
class SourceLine:
    """One source of a sources file: ``name`` (or ``None``), ``spec`` (URL, path, glob or camera), its
    ``options`` (``detect_every``...) and the ``line`` number it came from."""

    name: str | None
    spec: str
    options: dict[str, Any] = field(default_factory=dict)
    line: int = 0


def parse_source_line(line: str, *, where: str) -> SourceLine | None:
    """One line of a sources file (``None`` for a blank or comment line): ``URL``, ``NAME URL`` or
    ``NAME URL key=value ...``; ``where`` (``FILE:LINE``) names it in errors.

    Raises:
        InputError: too many fields without a name, or an unknown or bad option (the message names the line).
    """
    fields = re.split(r"\s+#", line, maxsplit=1)[0].split()
    if not fields or fields[0].startswith("#"):
        return None
    if len(fields) == 1:
        return SourceLine(None, fields[0])
    name, spec, rest = fields[0], fields[1], fields[2:]
    options: dict[str, Any] = {}
    for item in rest:
        key, eq, value = item.partition("=")
        if not eq:
            raise InputError(
                f"{where}: expected 'URL', 'NAME URL' or 'NAME URL key=value ...', got {item!r} after the URL"
            )
        if key not in SOURCE_OPTIONS:
            raise InputError(f"{where}: unknown option {key!r}; options: {', '.join(SOURCE_OPTIONS)}")
        what, kind = SOURCE_OPTIONS[key]
        try:
            number = kind(value)
        except ValueError:
            number = None
        if number is None or number < 1:
            raise InputError(f"{where}: {key} must be {what}, got {value!r}")
        options[key] = number
    return SourceLine(name, spec, options)


def read_sources_file(path: str | os.PathLike[str]) -> list[SourceLine]:
    """The sources listed in a text file (``--sources FILE``), one a line: ``URL``, ``NAME URL`` or
    ``NAME URL key=value ...`` (per-source options: :data:`SOURCE_OPTIONS`).

    Blank lines and ``#`` comments (a whole line, or after whitespace at its end) are skipped; a path, glob or
    camera may stand where a URL does. ``NAME`` names the source's outputs and its ``source_id``.

    Raises:
        InputError: the file cannot be read, or a line is malformed (the message names the line).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read the sources file ({getattr(e, 'strerror', None) or e})") from None
    out: list[SourceLine] = []
    for n, line in enumerate(text.splitlines(), start=1):
        entry = parse_source_line(line, where=f"{p}:{n}")
        if entry is not None:
            out.append(SourceLine(entry.name, entry.spec, entry.options, n))
    if not out:
        raise InputError(f"{p}: lists no sources; write one URL (or 'NAME URL') a line")
    return out
