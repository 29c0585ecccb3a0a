"""The source interface: :class:`SourceInfo` and the :class:`Source` base class (an iterator of frames)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType

from hrstream.io.urls import redact_text
from hrstream.types import Frame

__all__ = ["Source", "SourceInfo", "later"]


def later(last: float | None, value: float) -> bool:
    """The one rule of a stream's timeline: a frame's time (seconds or PTS ticks) must come after the last kept
    frame's. Sources skip a frame that breaks it (a file) or move it just after (a live stream across a
    reconnect); the video writer skips it (its muxer refuses it)."""
    return last is None or value > last


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a source once it is open.

    Attributes:
        name: sanitised id (see :func:`hrstream.io.safe_name`), used as ``Frame.source_id``.
        width, height: size of the frames yielded, in pixels, after rotation (upright).
        fps: average frame rate (frames/s) or ``None`` if unknown; informative only, never used for timing.
        time_base: the video stream's time base (``Fraction``), or ``None`` for still images.
        duration_s: declared duration in seconds, or ``None`` (live streams, unknown).
        num_frames: frame count from the container, or an estimate ``duration_s * fps``, or ``None``.
        rotation: counter-clockwise degrees applied to make frames upright (0, 90, 180, 270).
        has_audio: the input has at least one audio stream.
        is_live: a network stream or camera (frames carry ``captured_at``; queues may drop).
        codec: the video codec name (``"h264"``, ``"png"`` ...).
        path: the file or folder path, or the URL **with credentials redacted**.
    """

    name: str
    width: int
    height: int
    fps: float | None
    time_base: Fraction | None
    duration_s: float | None
    num_frames: int | None
    rotation: int
    has_audio: bool
    is_live: bool
    codec: str
    path: str


class Source:
    """Base class: an iterator of :class:`Frame` with ``info``, ``truncated``, ``warnings`` and ``close()``."""

    info: SourceInfo

    def __init__(self) -> None:
        self.truncated = False
        self.warnings: list[str] = []
        self.frames_yielded = 0

    def _warn(self, message: str) -> None:
        message = redact_text(message)
        self.warnings.append(message)
        log.warning("%s", message)

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:  # pragma: no cover - overridden
        raise StopIteration

    def close(self) -> None:
        """Release the decoder and files; safe to call twice."""

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
