"""Opening containers safely: PyAV errors mapped to one-line :class:`InputError`, pixel caps, rotation.

Every message names the input (credentials redacted), says what is wrong and what to do.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import Any

import av
import numpy as np

from hrstream.errors import InputError
from hrstream.io.urls import redact_text

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "check_file",
    "check_header_size",
    "check_pixels",
    "default_max_pixels",
    "limit_decoder",
    "open_container",
    "rotate_upright",
]

log = logging.getLogger(__name__)

#: Largest frame accepted by default: 40 megapixels (8K UHD 7680x4320 is 33.2 MP). FFmpeg's own cap is INT_MAX.
DEFAULT_MAX_PIXELS = 40_000_000
#: The environment variable that replaces :data:`DEFAULT_MAX_PIXELS` (a whole number of pixels).
MAX_PIXELS_ENV = "HRSTREAM_MAX_PIXELS"
_RAISE_CAP = f"if the input is trusted, raise the cap: {MAX_PIXELS_ENV}=N (max_pixels= in the Python API)"


def default_max_pixels() -> int:
    """The pixel cap of inputs opened without an explicit ``max_pixels``: ``$HRSTREAM_MAX_PIXELS`` where set,
    else :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        InputError: the variable is not a positive whole number.
    """
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(
            f"{MAX_PIXELS_ENV}={text!r} is not a positive whole number of pixels; fix or unset it"
        )
    return value


def limit_decoder(codec_context: Any, max_pixels: int) -> None:
    """Make FFmpeg's decoder itself refuse frames over ``max_pixels`` before it allocates them."""
    opts = dict(codec_context.options or {})
    opts["max_pixels"] = str(int(max_pixels))
    codec_context.options = opts


def check_pixels(display: str, width: int, height: int, max_pixels: int, *, header: bool = False) -> None:
    """Raise :class:`InputError` when ``width * height`` exceeds ``max_pixels`` (a decompression bomb).

    With ``header=True`` a size of 0 means "not known before decoding" and passes (the decoder and the
    per-frame check still enforce the cap).
    """
    if header and (width == 0 or height == 0):
        return
    if width <= 0 or height <= 0:
        raise InputError(f"{display}: frame size {width}x{height} is invalid; the file is damaged")
    if width * height > max_pixels:
        raise InputError(
            f"{display}: frame size {width}x{height} ({width * height} pixels) exceeds the cap of {max_pixels} "
            f"pixels; refused as a possible decompression bomb ({_RAISE_CAP})"
        )


def check_header_size(
    display: str,
    target: str,
    size: tuple[int, int],
    max_pixels: int,
    *,
    fmt: str | None = None,
    container_options: dict[str, str] | None = None,
) -> None:
    """Refuse a local file whose frame size, as its container's header states it, exceeds ``max_pixels``.

    ``size`` is what the opened stream reports. A file opened with the cap reports ``0x0`` where FFmpeg's
    probe refused a frame size over it (it then clears the size), so the decoder would fail later with an
    error that reads like a damaged file. Only then is the header read again, with no decoder allowed
    (``codec_whitelist``), which reads the size without decoding anything; a size over the cap raises
    :func:`check_pixels`' error (what the size is, the cap, and how to raise it).
    """
    if size[0] > 0 and size[1] > 0:
        return
    options = dict(container_options or {}, codec_whitelist="none")  # the demuxer only: nothing is decoded
    try:
        with av.open(target, mode="r", format=fmt, container_options=options) as c:
            if not c.streams.video:
                return
            cc = c.streams.video[0].codec_context
            width, height = int(cc.width), int(cc.height)
    except (av.error.FFmpegError, OSError):
        return
    if width > 0 and height > 0:
        check_pixels(display, width, height, max_pixels)


def rotate_upright(image: np.ndarray, rotation: float | int | None) -> tuple[np.ndarray, int]:
    """Apply a display-matrix rotation so the image is upright.

    Args:
        image: ``(H, W, 3)`` array as decoded (stored orientation).
        rotation: counter-clockwise degrees the frame must be turned for display (PyAV ``frame.rotation``,
            FFmpeg's ``av_display_rotation_get``), e.g. ``90`` or ``-90``; ``None``/``0`` for none.

    Returns:
        ``(upright, applied)``: a C-contiguous array (``(W, H, 3)`` for quarter turns) and the applied
        counter-clockwise angle in ``{0, 90, 180, 270}``. Angles that are not quarter turns are rounded.
    """
    if not rotation:
        return image, 0
    k = round(float(rotation) / 90.0) % 4
    if k == 0:
        return image, 0
    return np.ascontiguousarray(np.rot90(image, k)), 90 * k


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact_text(str(text))


def open_container(
    target: str,
    *,
    display: str,
    fmt: str | None = None,
    container_options: dict[str, str] | None = None,
    timeout: tuple[float, float] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Any:
    """``av.open(target)`` for reading, with every failure turned into one :class:`InputError` line.

    ``display`` is the name used in messages (the redacted URL); ``timeout`` is ``(open_s, read_s)``;
    ``max_pixels`` is passed to the decoders FFmpeg opens while probing, so a huge frame is never allocated.
    """
    kwargs: dict[str, Any] = {
        "mode": "r",
        "container_options": dict(container_options or {}),
        "options": {"max_pixels": str(int(max_pixels))},
    }
    if fmt is not None:
        kwargs["format"] = fmt
    if timeout is not None:
        kwargs["timeout"] = timeout
    network = "://" in target
    t0 = time.monotonic()
    try:
        return av.open(target, **kwargs)
    except ConnectionRefusedError:
        raise InputError(
            f"{display}: connection refused; check the host and port and that the server is running"
        ) from None
    except av.error.ExitError:
        limit = f" within {timeout[0]:g} s" if timeout else ""
        raise InputError(
            f"{display}: no answer{limit}; check that the server is up and sends a stream"
        ) from None
    except TimeoutError:
        raise InputError(f"{display}: timed out while opening; check the network and the server") from None
    except (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError) as exc:
        raise InputError(
            f"{display}: the server refused access ({_status(exc)}); check the user name and password in the URL",
            permanent=True,
        ) from None
    except av.error.HTTPNotFoundError:
        raise InputError(
            f"{display}: the server has no such stream (404 Not Found); check the path of the URL",
            permanent=True,
        ) from None
    except av.error.HTTPError as exc:
        raise InputError(
            f"{display}: the server answered with an error ({_status(exc)}); check the server and the URL",
            permanent=True,
        ) from None
    except av.error.InvalidDataError:
        if network and timeout is not None and time.monotonic() - t0 >= 0.9 * timeout[0]:
            # FFmpeg's RTSP client reports a server that never answers as invalid data, at the deadline
            raise InputError(
                f"{display}: no answer within {timeout[0]:g} s; check that the server is up and sends a stream"
            ) from None
        what = "stream" if network else "file"
        raise InputError(
            f"{display}: not a media {what} FFmpeg can read (invalid data); "
            + (
                "check that the URL points at a video stream"
                if network
                else "it is damaged, truncated or not a video: re-export or remove it"
            ),
            permanent=network,
        ) from None
    except FileNotFoundError:
        raise InputError(f"{display}: not found (no such file, device or stream path); check it") from None
    except PermissionError as exc:
        if getattr(exc, "errno", None) == errno.EACCES:
            raise InputError(f"{display}: permission denied; check read permissions") from None
        raise InputError(f"{display}: refused ({_describe(exc)})") from None
    except (av.error.FFmpegError, OSError) as exc:
        if getattr(exc, "errno", None) == errno.EINVAL and "format_whitelist" in kwargs["container_options"]:
            raise InputError(
                f"{display}: cannot be opened ({_describe(exc)}); its format is not allowed for network input "
                "(HLS/DASH playlists are refused) or an option is invalid",
                permanent=True,
            ) from None
        if network and getattr(exc, "errno", None) == errno.EIO:
            raise InputError(
                f"{display}: not a media stream FFmpeg can read ({_describe(exc)}); check that the URL points at "
                "a video stream",
                permanent=True,
            ) from None
        raise InputError(
            f"{display}: cannot be opened ({_describe(exc)}); check that it is a video"
        ) from None


def _status(exc: BaseException) -> str:
    """The HTTP/RTSP status an FFmpeg error names (``"401 Unauthorized"``), else its text."""
    text = _describe(exc)
    if "Server returned " in text:
        text = text.split("Server returned ", 1)[1].split(":", 1)[0].split(" (")[0]
    return text.strip()


def check_file(path: str) -> None:
    """Probe a local file before decoding: it must exist, be a regular file and not be empty."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file; check the path")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty (0 bytes); re-copy or re-export it")
