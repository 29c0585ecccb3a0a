"""The live view: each source's newest annotated frame as JPEG, encoded only while someone watches.

The pipeline hands every written result to :meth:`LiveView.offer` (a reference is kept, nothing is drawn or
encoded there, so an unwatched camera costs nothing). A viewer follows a source at a view width with
:meth:`LiveView.stream` (in the HTTP server's event loop: a waiting viewer holds no thread): it waits for a result
newer than the last it got, then has it drawn (``FrameResult.plot()``, once per frame) and JPEG-encoded at that
width, once per frame and width whatever the number of viewers (the encoding is shared), on a small pool of
threads of the view's own. A slow or stalled viewer gets the newest frame when it asks again and misses the ones
between: it never holds up the pipeline or another viewer. :attr:`LiveView.encodes` counts the encodings, so
the cost of watching can be read (``/api/status``, ``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from hrstream.types import FrameResult

__all__ = ["JpegFrame", "LiveView", "view_width"]

#: View widths are rounded to a multiple of this (so viewers share encodings) and kept within these bounds.
WIDTH_STEP, MIN_WIDTH, MAX_WIDTH = 16, 64, 3840


@dataclass(frozen=True)
class JpegFrame:
    """One encoded view: the JPEG ``data``, the frame's ``index``, ``captured_at`` (wall clock, live sources),
    ``written_at`` (when the pipeline handed it to the view) and when it was encoded."""

    data: bytes
    index: int
    captured_at: float | None
    written_at: float
    encoded_at: float


class _Slot:
    """One source's newest result, its encodings (by width) of that result, and the viewers waiting."""

    def __init__(self) -> None:
        self.current: tuple[int, FrameResult | None, float] = (0, None, 0.0)  # (serial, result, written_at)
        self.encoded: dict[int, tuple[int, JpegFrame]] = {}  # width -> (serial, frame)
        self.lock = threading.Lock()  # one encoder at a time per source
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()


class LiveView:
    """The newest frame of every source, encoded on demand (see the module docstring).

    Args:
        quality: JPEG quality (0-100).
        encoders: threads that draw and encode (shared by every source and viewer).
    """

    def __init__(self, *, quality: int = 80, encoders: int = 2) -> None:
        self.quality = int(quality)
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(encoders)), thread_name_prefix="hrstream-view")
        self.encodes = 0  # JPEG encodings so far (the cost of watching)
        self.sent = 0  # frames handed to viewers so far
        self.viewers = 0  # viewers following a source now

    def offer(self, result: FrameResult) -> None:
        """A written result (from the pipeline's sink thread): becomes its source's newest."""
        with self._lock:
            slot = self._slots.get(result.frame.source_id)
            if slot is None:
                slot = self._slots[result.frame.source_id] = _Slot()
            slot.current = (slot.current[0] + 1, result, time.time())  # one assignment: read whole elsewhere
            waiters = list(slot.waiters)
        _wake(waiters)

    def forget(self, source: str) -> None:
        """A source was removed: drop its frame (its viewers' streams end)."""
        with self._lock:
            slot = self._slots.pop(source, None)
            waiters = [] if slot is None else list(slot.waiters)
        _wake(waiters)

    def sources(self) -> list[str]:
        """The sources with a slot now (a frame, or a viewer waiting for the first)."""
        with self._lock:
            return list(self._slots)

    def latest(self, source: str, width: int | None = None) -> JpegFrame | None:
        """The newest frame of ``source`` encoded at ``width`` (``None``: the frame's own), or ``None``."""
        with self._lock:
            slot = self._slots.get(source)
        if slot is None:
            return None
        got = self._encode(slot, width)
        return None if got is None else got[1]

    async def stream(
        self, source: str, width: int | None = None, *, alive: Callable[[], bool] | None = None
    ) -> AsyncIterator[JpegFrame]:
        """The frames of ``source`` as they come (the newest each time; those a slow reader missed are
        skipped), from the first one it delivers (a camera still connecting is waited for). Ends when the
        source is forgotten, or when ``alive()`` (asked every second while no frame comes) says it is gone."""
        loop = asyncio.get_running_loop()
        waiter = (loop, asyncio.Event())
        with self._lock:
            slot = self._slots.get(source)
            if slot is None:
                slot = self._slots[source] = _Slot()
            slot.waiters.add(waiter)
            self.viewers += 1
        seen = 0
        try:
            while True:
                waiter[1].clear()
                with self._lock:
                    if self._slots.get(source) is not slot:
                        return
                    serial, result, _ = slot.current
                    fresh = serial != seen and result is not None
                if not fresh:
                    try:
                        await asyncio.wait_for(waiter[1].wait(), 1.0)
                    except asyncio.TimeoutError:
                        if alive is not None and not alive():
                            return
                    continue
                got = await loop.run_in_executor(self._pool, self._encode, slot, width)
                if got is None:
                    continue
                seen, frame = got
                self.sent += 1
                yield frame
        finally:
            with self._lock:
                slot.waiters.discard(waiter)
                self.viewers -= 1
                orphan = not slot.waiters and slot.current[1] is None and self._slots.get(source) is slot
                if orphan and alive is not None and not alive():
                    del self._slots[source]  # a viewer of a source removed before its first frame

    def close(self) -> None:
        """Stop the encoder threads (the service is stopping)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _encode(self, slot: _Slot, width: int | None) -> tuple[int, JpegFrame] | None:
        with slot.lock:
            serial, result, written_at = slot.current
            if result is None:
                return None
            key = 0 if width is None else int(width)
            cached = slot.encoded.get(key)
            if cached is not None and cached[0] == serial:
                return cached
            image = result.plot()
            if width is not None:
                image = _resize(image, width)
            ok, data = cv2.imencode(
                ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
            )
            if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
                return None
            frame = JpegFrame(
                data.tobytes(), result.frame.index, result.frame.captured_at, written_at, time.time()
            )
            slot.encoded = {k: v for k, v in slot.encoded.items() if v[0] == serial}  # older frames' go
            slot.encoded[key] = (serial, frame)
            with self._lock:
                self.encodes += 1
            return serial, frame


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    for loop, event in waiters:
        with contextlib.suppress(RuntimeError):  # its loop has closed
            loop.call_soon_threadsafe(event.set)


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
