"""The live view: each source's newest annotated frame as JPEG, encoded only while someone watches.

The pipeline hands every written result to :meth:`LiveView.offer` (a reference is kept, nothing is drawn or
encoded there, so an unwatched camera costs nothing). A viewer asks :meth:`LiveView.frames` for a source at a
view width: it waits for a result newer than the last it got, draws it (``FrameResult.plot()``, once per frame)
and JPEG-encodes it at that width, once per frame and width whatever the number of viewers (the encoding is
shared). A slow or stalled viewer gets the newest frame when it asks again and misses the ones between: it never
holds up the pipeline or another viewer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from hrstream.types import FrameResult

__all__ = ["JpegFrame", "LiveView"]

#: View widths are rounded to a multiple of this (so viewers share encodings) and kept within these bounds.
WIDTH_STEP, MIN_WIDTH, MAX_WIDTH = 16, 64, 3840


@dataclass(frozen=True)
class JpegFrame:
    """One encoded view: the JPEG ``data``, the frame's ``index`` and ``captured_at`` (wall clock, live
    sources), and when it was encoded."""

    data: bytes
    index: int
    captured_at: float | None
    encoded_at: float


class _Slot:
    """One source's newest result and its encodings (by width) of that result."""

    def __init__(self) -> None:
        self.result: FrameResult | None = None
        self.serial = 0  # bumped on every offer
        self.encoded: dict[int, tuple[int, JpegFrame]] = {}  # width -> (serial, frame)
        self.lock = threading.Lock()  # one encoder at a time per source


class LiveView:
    """The newest frame of every source, encoded on demand (see the module docstring).

    Args:
        quality: JPEG quality (0-100).
    """

    def __init__(self, *, quality: int = 80) -> None:
        self.quality = int(quality)
        self._slots: dict[str, _Slot] = {}
        self._cond = threading.Condition()
        self.encodes = 0  # JPEG encodings so far (the cost of watching)

    def offer(self, result: FrameResult) -> None:
        """A written result (from the pipeline's sink thread): becomes its source's newest."""
        with self._cond:
            slot = self._slots.setdefault(result.frame.source_id, _Slot())
            slot.result = result
            slot.serial += 1
            self._cond.notify_all()

    def forget(self, source: str) -> None:
        """A source was removed: drop its frame (its viewers' streams end)."""
        with self._cond:
            self._slots.pop(source, None)
            self._cond.notify_all()

    def latest(self, source: str, width: int | None = None) -> JpegFrame | None:
        """The newest frame of ``source`` encoded at ``width`` (``None``: the frame's own), or ``None``."""
        with self._cond:
            slot = self._slots.get(source)
        return None if slot is None else self._encode(slot, width)

    def frames(
        self, source: str, width: int | None = None, *, stop: threading.Event | None = None
    ) -> Iterator[JpegFrame]:
        """The frames of ``source`` as they come (the newest each time; those a slow reader missed are skipped);
        ends when the source is forgotten or ``stop`` is set."""
        seen = 0
        while stop is None or not stop.is_set():
            with self._cond:
                slot = self._slots.get(source)
                if slot is None:
                    return
                if slot.serial == seen:
                    self._cond.wait(0.5)
                    continue
                seen = slot.serial
            frame = self._encode(slot, width)
            if frame is not None:
                yield frame

    def _encode(self, slot: _Slot, width: int | None) -> JpegFrame | None:
        with slot.lock:
            result, serial = slot.result, slot.serial
            if result is None:
                return None
            key = 0 if width is None else int(width)
            cached = slot.encoded.get(key)
            if cached is not None and cached[0] == serial:
                return cached[1]
            image = result.plot()
            if width is not None:
                image = _resize(image, width)
            ok, data = cv2.imencode(
                ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
            )
            if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
                return None
            frame = JpegFrame(data.tobytes(), result.frame.index, result.frame.captured_at, time.time())
            slot.encoded = {k: v for k, v in slot.encoded.items() if v[0] == serial}  # older frames' go
            slot.encoded[key] = (serial, frame)
            self.encodes += 1
            return frame


def view_width(asked: int | None) -> int | None:
    """The width a viewer gets for the one it asked: rounded to :data:`WIDTH_STEP`, within bounds."""
    if asked is None:
        return None
    w = int(round(asked / WIDTH_STEP)) * WIDTH_STEP
    return max(MIN_WIDTH, min(MAX_WIDTH, w))


def _resize(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= width:
        return image
    height = max(2, int(round(h * width / w)))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
