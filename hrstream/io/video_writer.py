"""Crash-safe H.264 MP4 writing that keeps the source's timestamps (and its audio).

* H.264 (libx264), ``yuv420p``; odd widths/heights are padded to even by repeating the last column/row.
* Every frame carries its source ``pts`` in the source ``time_base`` and the output stream uses that time
  base, so variable frame rate and 29.97 fps timestamps survive exactly, from the first frame on: a source
  whose first PTS is not 0 (an MKV whose audio priming puts the first frame at 21 ms) keeps it. The muxer
  would otherwise start each track at 0 (moving only the first frame, or shifting all by the audio priming);
  ``frag_discont`` with ``use_editlist`` makes each fragment carry its own start time instead. No B-frames,
  so PTS equal DTS.
* Fragmented MP4 (``frag_keyframe+empty_moov+default_base_moof``) **and** ``flush_packets=1``, with a
  keyframe at least every ``gop_s`` seconds: a process killed with SIGKILL leaves a file that decodes up to
  the last complete fragment (at most about one GOP is lost).
* Finished at a clean :meth:`~VideoWriter.close` (``finish``, the default): the fragmented file is remuxed,
  without re-encoding, into a regular MP4 with its index (``moov``) at the front, written beside it and moved
  over it atomically, so players see the duration and seek at once. Until then, and wherever the process dies,
  the fragmented file stays as it is.
* ``rebase``: the first frame written is at time 0 and every later one keeps its distance to it, so a file that
  starts mid-stream (a live segment) is a video of its own, whose duration is what it holds.
* ``audio_source``: a file whose first audio stream is copied (no re-encode) up to the current video time.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from hrstream.errors import InputError
from hrstream.io.base import later
from hrstream.io.records import new_temp_file
from hrstream.io.urls import redact_text

__all__ = ["VideoWriter", "finish_mp4"]

log = logging.getLogger(__name__)

_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+frag_discont"
#: Fragments carry their own start time (``tfdt``) from the first packet's PTS, so no track is moved to 0.
_MUXER_OPTIONS = {"movflags": _MOVFLAGS, "use_editlist": "1", "flush_packets": "1"}
#: The finished file: one index in front of the samples; an edit list keeps a first frame that is not at 0.
_FINISHED_OPTIONS = {"movflags": "faststart", "use_editlist": "1"}


def finish_mp4(path: str | os.PathLike[str]) -> None:
    """Rewrite a fragmented MP4 as a regular one with its index at the front, packets copied (no re-encoding)
    with their timestamps: into a temporary file beside it (the umask's mode), then moved over it atomically.
    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = new_temp_file(path.parent, path.name)
    os.close(fd)
    try:
        with (
            av.open(str(path), mode="r") as src,
            av.open(str(tmp), mode="w", format="mp4", container_options=dict(_FINISHED_OPTIONS)) as dst,
        ):
            streams = [s for s in src.streams if s.type in ("video", "audio")]
            out = {}
            for s in streams:
                o = dst.add_stream_from_template(s)
                o.time_base = s.time_base
                out[s.index] = o
            for packet in src.demux(streams):
                if packet.dts is None:  # the demuxer's end-of-stream packets
                    continue
                packet.stream = out[packet.stream.index]
                dst.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _as_fraction(value: Any, what: str) -> Fraction:
    try:
        frac = Fraction(value)
    except (TypeError, ValueError):
        raise ValueError(f"VideoWriter: {what} must be a number or Fraction, got {value!r}") from None
    if frac <= 0:
        raise ValueError(f"VideoWriter: {what} must be > 0, got {value!r}")
    return frac


class VideoWriter:
    """Write RGB frames to a crash-safe H.264 MP4, keeping the source timestamps.

    Args:
        path: output ``.mp4`` path (parent folders are created).
        width, height: size of the images passed to :meth:`write`; the video is padded to even size.
        time_base: the source stream's time base (``Fraction``); output PTS are in these units.
        fps: average frame rate; used for the keyframe interval and for frames written without a PTS.
        preset: libx264 preset (``ultrafast`` ... ``veryslow``).
        crf: libx264 constant rate factor (0-51, lower is better quality).
        audio_source: a media file whose first audio stream is copied into the output, or ``None``.
        gop_s: seconds between keyframes at most (bounds what a crash loses); ``max_gop`` caps it in frames.
        rebase: write the first frame at time 0 and each later one at its distance to the first, instead of
            at the source's times (a segment cut from a live stream: its container starts at 0 and its duration
            is the segment's). Not with ``audio_source``.
        finish: at a clean :meth:`close`, remux the crash-safe fragmented file into a regular MP4 with its index
            at the front (:func:`finish_mp4`; the duration is in the header). ``False`` leaves it fragmented
            (closing is then immediate whatever the file's size).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        time_base: Fraction | float | None,
        fps: float | None,
        preset: str = "veryfast",
        crf: int = 23,
        audio_source: str | None = None,
        gop_s: float = 1.0,
        max_gop: int = 60,
        rebase: bool = False,
        finish: bool = True,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"VideoWriter: width and height must be > 0, got {width}x{height}")
        if rebase and audio_source is not None:
            raise ValueError(
                "VideoWriter: rebase does not shift an audio_source's times; give one or the other"
            )
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height = int(width), int(height)
        self.out_width, self.out_height = self.width + (self.width % 2), self.height + (self.height % 2)
        fps_frac = _as_fraction(fps, "fps").limit_denominator(1_000_000) if fps else Fraction(30)
        self.fps = fps_frac
        self.time_base = (
            _as_fraction(time_base, "time_base").limit_denominator(2**31 - 1) if time_base else 1 / fps_frac
        )
        self.frames_written = 0
        self.frames_skipped = 0
        self.rebase = bool(rebase)
        self.finish = bool(finish)
        self._offset: int | None = None  # with rebase: the first frame's time, in time_base units
        self._last_pts: int | None = None
        self._closed = False
        gop = max(1, min(int(max_gop), round(float(fps_frac) * gop_s)))

        self._container = av.open(
            str(self.path),
            mode="w",
            format="mp4",
            container_options=dict(_MUXER_OPTIONS),
        )
        try:
            stream = self._container.add_stream("libx264", rate=fps_frac)
            stream.width, stream.height = self.out_width, self.out_height
            stream.pix_fmt = "yuv420p"
            stream.time_base = self.time_base
            stream.codec_context.time_base = self.time_base
            stream.codec_context.gop_size = gop
            stream.codec_context.max_b_frames = 0  # B-frames make the muxer shift timestamps (negative dts)
            stream.options = {"preset": str(preset), "crf": str(int(crf)), "bf": "0"}
            self._stream = stream
            self._audio_in: Any = None
            self._audio_out: Any = None
            self._audio_packets: Any = None
            self._audio_next: Any = None
            if audio_source is not None:
                self._open_audio(audio_source)
        except BaseException:
            self._container.close()
            raise

    # ---------------------------------------------------------------- audio
    def _open_audio(self, audio_source: str) -> None:
        try:
            src = av.open(str(audio_source), mode="r", container_options={"protocol_whitelist": "file"})
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"{audio_source}: cannot open for audio ({redact_text(str(exc))})") from None
        if not src.streams.audio:
            src.close()
            log.info("%s: no audio stream; writing video only", audio_source)
            return
        in_stream = src.streams.audio[0]
        self._audio_in = src
        self._audio_out = self._container.add_stream_from_template(in_stream)
        self._audio_packets = src.demux(in_stream)
        self._audio_next = None

    def _mux_audio_until(self, t_s: float | None) -> None:
        """Copy audio packets whose time is <= ``t_s`` seconds (all remaining when ``None``)."""
        if self._audio_packets is None:
            return
        while True:
            pkt = self._audio_next
            if pkt is None:
                try:
                    pkt = next(self._audio_packets)
                except (StopIteration, av.error.FFmpegError, EOFError):
                    self._audio_packets = None
                    return
                if pkt.dts is None or pkt.pts is None:  # flush packets / no timing: skip
                    continue
            pkt_s = float(pkt.pts * pkt.time_base)
            if t_s is not None and pkt_s > t_s:
                self._audio_next = pkt
                return
            self._audio_next = None
            pkt.stream = self._audio_out
            self._container.mux(pkt)

    # ---------------------------------------------------------------- video
    def _prepare(self, image_rgb: np.ndarray) -> np.ndarray:
        img = np.asarray(image_rgb)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"VideoWriter.write: image must be uint8 (H, W, 3) RGB, got {img.dtype}{img.shape}"
            )
        if img.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"VideoWriter.write: image is {img.shape[1]}x{img.shape[0]}, writer expects "
                f"{self.width}x{self.height}"
            )
        pad_h, pad_w = self.out_height - self.height, self.out_width - self.width
        if pad_h or pad_w:
            img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        return np.ascontiguousarray(img)

    def write(self, image_rgb: np.ndarray, pts: int | None = None, time_base: Any = None) -> None:
        """Encode one frame.

        Args:
            image_rgb: ``uint8 (height, width, 3)`` RGB.
            pts: the frame's source PTS in ``time_base`` units; ``None`` continues one frame after the last.
            time_base: the unit of ``pts``; ``None`` means the writer's ``time_base``. Other time bases are
                rescaled (rounded) to the writer's.

        Frames whose PTS is not after the previous frame's are skipped (counted in ``frames_skipped``). With
        ``rebase`` the first frame's time is subtracted from every frame's.
        """
        if self._closed:
            raise ValueError(f"VideoWriter({self.path}) is closed")
        img = self._prepare(image_rgb)
        if pts is None:
            step = max(1, round(1 / (self.fps * self.time_base)))
            out_pts = 0 if self._last_pts is None else self._last_pts + step
        elif time_base is None or Fraction(time_base) == self.time_base:
            out_pts = int(pts)
        else:
            out_pts = round(Fraction(int(pts)) * Fraction(time_base) / self.time_base)
        if self.rebase and pts is not None:
            if self._offset is None:
                self._offset = out_pts
            out_pts -= self._offset
        if not later(self._last_pts, out_pts):
            self.frames_skipped += 1
            if self.frames_skipped == 1:
                log.warning("%s: frame with non-increasing pts %d skipped", self.path.name, out_pts)
            return
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = out_pts
        frame.time_base = self.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = out_pts
        self.frames_written += 1
        self._mux_audio_until(float(out_pts * self.time_base))

    def close(self, *, finish: bool | None = None) -> None:
        """Flush the encoder, copy the audio up to the end of the video, close the file and, with ``finish``
        (default: the writer's), remux it into a regular MP4; idempotent.

        A failed remux leaves the fragmented file, complete and playable, and logs a warning.
        """
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._last_pts is not None:
                end_s = float((self._last_pts + 1 / (self.fps * self.time_base)) * self.time_base)
                self._mux_audio_until(end_s)
        finally:
            self._container.close()
            if self._audio_in is not None:
                self._audio_in.close()
        if (self.finish if finish is None else finish) and self.frames_written > 0:
            try:
                finish_mp4(self.path)
            except (av.error.FFmpegError, OSError) as exc:
                log.warning(
                    "%s: left as fragmented MP4 (playable, its duration not in the header): finishing failed (%s)",
                    self.path,
                    redact_text(str(exc)),
                )

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(finish=None if exc_type is None else False)  # leaving on an error: no remux to wait for
