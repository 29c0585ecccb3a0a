"""Still images and image sequences as sources.

PyAV's image demuxers read each file's header (size against the pixel cap, rotation metadata) and decode it;
JPEG and PNG pixels are then taken from OpenCV's decoder (libjpeg, libpng), which the official HRNet and
HigherHRNet evaluation code read images with, so an image gives the pixels the published results were measured
on (FFmpeg's JPEG decoder differs by a few grey levels).
"""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np

from hrstream.errors import InputError
from hrstream.io.base import Source, SourceInfo
from hrstream.io.probe import (
    check_file,
    check_header_size,
    check_pixels,
    default_max_pixels,
    limit_decoder,
    open_container,
    rotate_upright,
)
from hrstream.io.urls import redact_text
from hrstream.types import Frame

__all__ = ["ImageSource"]

#: Codecs whose pixels come from OpenCV (as the official evaluation code reads them).
_OPENCV_CODECS = ("mjpeg", "png")


def _opencv_pixels(path: str, decoded: np.ndarray) -> np.ndarray:
    """``path`` decoded by OpenCV as ``uint8 (H, W, 3)`` RGB, its orientation metadata ignored (the caller
    applies the rotation FFmpeg reported); ``decoded`` (FFmpeg's) when OpenCV gives another size."""
    data = np.fromfile(path, np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.shape[:2] != decoded.shape[:2]:
        return decoded
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ImageSource(Source):
    """Still images: one image (``pts_s=None``) or a sequence with ``pts_s = index / fps``.

    Images are decoded lazily, one at a time, with the same pixel cap and rotation handling as videos.
    """

    def __init__(
        self,
        paths: list[str],
        *,
        name: str,
        display: str,
        fps: float | None,
        max_pixels: int | None = None,
    ) -> None:
        super().__init__()
        if not paths:
            raise InputError(f"{display}: no images to read")
        self._paths = list(paths)
        self._max_pixels = default_max_pixels() if max_pixels is None else int(max_pixels)
        self._sequence = fps is not None
        if fps is not None and fps <= 0:
            raise InputError(f"{display}: image sequence fps must be > 0, got {fps}")
        self._time_base = Fraction(1) / Fraction(fps).limit_denominator(1_000_000) if fps else None
        first, codec, rotation = self._read(self._paths[0])
        self._pending: np.ndarray | None = first
        self._next = 1
        h, w = first.shape[:2]
        n = len(self._paths)
        self.info = SourceInfo(
            name=name,
            width=int(w),
            height=int(h),
            fps=float(fps) if fps else None,
            time_base=self._time_base,
            duration_s=n / float(fps) if fps else None,
            num_frames=n,
            rotation=rotation,
            has_audio=False,
            is_live=False,
            codec=codec,
            path=display,
        )

    def _read(self, path: str) -> tuple[np.ndarray, str, int]:
        check_file(path)
        options = {"protocol_whitelist": "file"}
        with open_container(path, display=path, container_options=options, max_pixels=self._max_pixels) as c:
            if not c.streams.video:
                raise InputError(f"{path}: not an image FFmpeg can read; remove or convert it")
            cc = c.streams.video[0].codec_context
            check_header_size(path, path, (cc.width, cc.height), self._max_pixels, container_options=options)
            check_pixels(path, cc.width, cc.height, self._max_pixels, header=True)
            limit_decoder(cc, self._max_pixels)
            try:
                frame = next(c.decode(video=0))
            except (StopIteration, av.error.FFmpegError) as exc:
                raise InputError(
                    f"{path}: image cannot be decoded ({redact_text(str(exc))}); it is damaged or larger than the "
                    f"cap of {self._max_pixels} pixels"
                ) from None
            check_pixels(path, frame.width, frame.height, self._max_pixels)
            pixels = frame.to_ndarray(format="rgb24")
            if cc.name in _OPENCV_CODECS:
                pixels = _opencv_pixels(path, pixels)
            image, rotation = rotate_upright(pixels, frame.rotation)
            return image, cc.name, rotation

    def __next__(self) -> Frame:
        index = self.frames_yielded
        if self._pending is not None:
            image, self._pending = self._pending, None
        elif self._next < len(self._paths):
            image = self._read(self._paths[self._next])[0]
            self._next += 1
        else:
            raise StopIteration
        if self._sequence:
            frame = Frame(
                self.info.name,
                index,
                float(index * self._time_base),
                image,
                pts=index,
                time_base=self._time_base,
            )
        else:
            frame = Frame(self.info.name, index, None, image)
        self.frames_yielded += 1
        return frame
