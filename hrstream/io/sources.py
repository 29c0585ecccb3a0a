"""Frame sources: video files, network streams and cameras (PyAV), still images and image sequences.

A source is an iterator of :class:`hrstream.types.Frame` (``image`` uint8 ``(H, W, 3)`` RGB, upright) with an
``info`` (:class:`SourceInfo`), ``close()`` and context-manager use. Open one with :func:`open_source`.

Timestamps: ``Frame.pts_s = pts * time_base`` from the stream (variable frame rate stays variable); ``pts``
and ``time_base`` are kept on the frame so writers can reproduce them exactly. Frame index / fps is never
used for videos. Still images have ``pts_s=None`` (they have no time); image sequences are the one place
where time is ``index / fps`` (images carry no PTS), with ``pts=index`` and ``time_base=1/fps``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from hrstream.errors import InputError
from hrstream.io.base import Source, SourceInfo, later
from hrstream.io.images import ImageSource
from hrstream.io.inputs import InputSpec, expand_inputs
from hrstream.io.probe import (
    DEFAULT_MAX_PIXELS,
    check_file,
    check_header_size,
    check_pixels,
    default_max_pixels,
    limit_decoder,
    open_container,
    rotate_upright,
)
from hrstream.io.urls import ffmpeg_options_for_url, redact_text
from hrstream.types import Frame

__all__ = ["DEFAULT_MAX_PIXELS", "ImageSource", "Source", "SourceInfo", "VideoSource", "open_source"]

log = logging.getLogger(__name__)


@dataclass
class _Decoded:
    image: np.ndarray
    pts: int | None
    rotation: int
    extra: dict[str, object] = field(default_factory=dict)


class VideoSource(Source):
    """Frames of one video stream decoded by PyAV (files, URLs, cameras). Use :func:`open_source`.

    The first frame is decoded while opening, so a source that opens has at least one frame and a known
    upright size. Files that end early (truncated) yield what decodes, set ``truncated`` and log one warning.
    """

    def __init__(
        self,
        target: str,
        *,
        display: str,
        name: str,
        is_live: bool,
        fmt: str | None = None,
        container_options: dict[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        max_pixels: int | None = None,
    ) -> None:
        super().__init__()
        max_pixels = default_max_pixels() if max_pixels is None else int(max_pixels)
        self._display = display
        self._max_pixels = max_pixels
        self._is_live = is_live
        self._container = open_container(
            target,
            display=display,
            fmt=fmt,
            container_options=container_options,
            timeout=timeout,
            max_pixels=max_pixels,
        )
        self._closed = False
        try:
            self.info = self._open(name, target, container_options)
        except BaseException:
            self.close()
            raise

    def _open(self, name: str, target: str, container_options: dict[str, str] | None) -> SourceInfo:
        c = self._container
        if not c.streams.video:
            kinds = sorted({s.type for s in c.streams}) or ["nothing"]
            raise InputError(
                f"{self._display}: has no video stream (found {', '.join(kinds)}); give a video file or stream"
            )
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        self._stream = stream
        cc = stream.codec_context
        if not self._is_live and "://" not in target:  # a file over the cap must not read as a damaged one
            check_header_size(
                self._display,
                target,
                (cc.width, cc.height),
                self._max_pixels,
                container_options=container_options,
            )
        check_pixels(self._display, cc.width, cc.height, self._max_pixels, header=True)
        limit_decoder(cc, self._max_pixels)
        self._time_base = Fraction(stream.time_base) if stream.time_base is not None else None
        self._start_s = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        self._last_pts_s: float | None = None
        self._nonmonotonic = 0
        self._untimed = 0
        self._last_captured: float | None = None
        self._decoded = self._decode()
        try:
            first = next(self._decoded)
        except StopIteration:
            raise InputError(
                f"{self._display}: no frame could be decoded; the file is damaged or truncated"
            ) from None
        self._pending: _Decoded | None = first
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        duration_s = None
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif c.duration is not None and c.duration > 0:
            duration_s = c.duration / 1_000_000
        if self._is_live:
            duration_s = None
        num_frames = int(stream.frames) if stream.frames else None
        if num_frames is None and duration_s and fps:
            num_frames = round(duration_s * fps)
        self._duration_s = duration_s
        self._fps = fps
        h, w = first.image.shape[:2]
        return SourceInfo(
            name=name,
            width=int(w),
            height=int(h),
            fps=fps,
            time_base=self._time_base,
            duration_s=duration_s,
            num_frames=num_frames,
            rotation=first.rotation,
            has_audio=bool(c.streams.audio),
            is_live=self._is_live,
            codec=cc.name,
            path=self._display,
        )

    def _decode(self) -> Iterator[_Decoded]:
        """Demux + decode, yielding upright RGB images; read errors on files end the stream as truncated."""
        stream = self._stream
        try:
            for packet in self._container.demux(stream):
                for frame in packet.decode():
                    check_pixels(self._display, frame.width, frame.height, self._max_pixels)
                    rgb = frame.to_ndarray(format="rgb24")
                    image, rotation = rotate_upright(rgb, frame.rotation)
                    yield _Decoded(image, frame.pts, rotation)
        except InputError:
            raise
        except (av.error.FFmpegError, OSError, EOFError) as exc:
            msg = redact_text(f"{type(exc).__name__}: {exc}")
            if self._is_live:
                raise InputError(
                    f"{self._display}: read failed ({msg}); the stream stalled or closed"
                ) from None
            self.truncated = True
            self._warn(
                f"{self._display}: decoding stopped early after a read error ({msg}); the file is damaged"
            )

    def __next__(self) -> Frame:
        if self._closed:
            raise StopIteration
        while True:
            if self._pending is not None:
                item, self._pending = self._pending, None
            else:
                try:
                    item = next(self._decoded)
                except StopIteration:
                    self._check_truncated()
                    raise
            captured_at = time.time() if self._is_live else None
            if item.pts is None:
                # No PTS. Files: skip (never guess from index/fps). Live: before the first timed frame skip it;
                # after, advance the stream time by the wall-clock time elapsed since the previous frame.
                if captured_at is None or self._last_pts_s is None or self._last_captured is None:
                    self._untimed += 1
                    if self._untimed == 1:
                        log.info("%s: skipping frame(s) without a timestamp", self._display)
                    continue
                pts_s = self._last_pts_s + max(1e-6, captured_at - self._last_captured)
            else:
                pts_s = float(item.pts * self._time_base) if self._time_base is not None else None
            if pts_s is not None and not later(self._last_pts_s, pts_s):
                self._nonmonotonic += 1
                if self._nonmonotonic == 1:
                    self._warn(
                        f"{self._display}: timestamps go backwards at {pts_s:.3f}s; such frames are skipped"
                    )
                continue
            self._last_pts_s = pts_s
            self._last_captured = captured_at
            frame = Frame(
                source_id=self.info.name,
                index=self.frames_yielded,
                pts_s=pts_s,
                image=item.image,
                captured_at=captured_at,
                pts=item.pts,
                time_base=self._time_base,
            )
            self.frames_yielded += 1
            return frame

    def _check_truncated(self) -> None:
        if self.truncated or self._is_live or self._duration_s is None or self._last_pts_s is None:
            return
        frame_s = 1.0 / self._fps if self._fps else 0.0
        end_s = self._last_pts_s - self._start_s + frame_s
        if end_s < self._duration_s - max(0.5, 2 * frame_s):
            self.truncated = True
            self._warn(
                f"{self._display}: file ended early at {end_s:.2f}s of {self._duration_s:.2f}s declared "
                f"({self.frames_yielded} frames decoded); it is probably truncated"
            )

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            self._container.close()
        except Exception as exc:  # closing a broken stream must not mask the real error
            log.debug("%s: close failed: %s", self._display, redact_text(str(exc)))


def open_source(
    spec: str | InputSpec,
    *,
    live: bool | None = None,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
    rtsp_transport: str = "tcp",
    max_pixels: int | None = None,
    image_fps: float = 30.0,
    name: str | None = None,
) -> Source:
    """Probe and open one input; the first frame is decoded before this returns.

    Args:
        spec: a path, URL, camera (``/dev/videoN`` or ``"N"``) or an :class:`InputSpec` from
            :func:`expand_inputs` (a folder of images must come as an ``InputSpec`` or a folder path).
        live: force live handling on/off; default: URLs and cameras are live, files are not.
        open_timeout_s, read_timeout_s: deadlines for network and camera sources (PyAV ``timeout``).
        rtsp_transport: ``"tcp"`` (default) or ``"udp"`` etc. for RTSP.
        max_pixels: refuse frames with more pixels than this (decompression bombs); ``None``:
            ``$HRSTREAM_MAX_PIXELS`` where set, else :data:`DEFAULT_MAX_PIXELS` (40 MP).
        image_fps: the frame rate assigned to an image sequence (images have no timestamps).
        name: the ``info.name`` / ``Frame.source_id`` to use instead of the sanitised basename (for callers
            that must tell apart inputs with equal basenames).

    Raises:
        InputError: one line naming the input (credentials redacted), what is wrong and what to do.
    """
    if isinstance(spec, InputSpec):
        job = spec
    else:
        jobs = expand_inputs([spec])
        if len(jobs) != 1:
            raise InputError(f"{spec}: names {len(jobs)} inputs; expand it with expand_inputs() first")
        job = jobs[0]
    if job.error is not None:
        raise job.error
    display, name = job.display, name or job.name
    max_pixels = default_max_pixels() if max_pixels is None else int(max_pixels)
    if job.kind == "images":
        return ImageSource(list(job.paths), name=name, display=display, fps=image_fps, max_pixels=max_pixels)
    if job.kind == "image":
        return ImageSource([job.spec], name=name, display=display, fps=None, max_pixels=max_pixels)
    if job.kind == "video":
        check_file(job.spec)
        return VideoSource(
            job.spec,
            display=display,
            name=name,
            is_live=bool(live),
            container_options={"protocol_whitelist": "file"},
            max_pixels=max_pixels,
        )
    timeout = (float(open_timeout_s), float(read_timeout_s))
    is_live = True if live is None else live
    if job.kind == "camera":
        device = job.spec if job.spec.startswith("/dev/") else f"/dev/video{job.spec}"
        if not os.path.exists(device):
            raise InputError(f"{device}: camera not found; list cameras with 'v4l2-ctl --list-devices'")
        return VideoSource(
            device,
            display=device,
            name=name,
            is_live=is_live,
            fmt="v4l2",
            timeout=timeout,
            max_pixels=max_pixels,
        )
    opts = ffmpeg_options_for_url(job.spec, rtsp_transport=rtsp_transport)
    return VideoSource(
        job.spec,
        display=display,
        name=name,
        is_live=is_live,
        container_options=opts,
        timeout=timeout,
        max_pixels=max_pixels,
    )
