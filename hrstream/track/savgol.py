"""Offline Savitzky-Golay smoothing of one person's keypoint track (uses past and future frames).

For files, where the whole track is known: each keypoint coordinate is fitted with a local polynomial
(:func:`scipy.signal.savgol_filter`) over a window given in seconds. Keypoints scoring below ``min_score``
are treated as missing: they are linearly interpolated in time from the confident ones before the fit
(and held at the ends); their scores are not changed, so they stay marked low.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.signal import savgol_filter

from hrstream.errors import ConfigError
from hrstream.types import Poses

__all__ = ["FixedLagSavgol", "savgol_smooth_track", "savgol_window_length"]

logger = logging.getLogger(__name__)


def savgol_window_length(times: np.ndarray, window_s: float) -> int:
    """The odd number of frames covering ``window_s`` seconds at the median frame interval of ``times``,
    clipped to the track length (at least 1)."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    n = len(times)
    if n <= 1:
        return 1
    step = float(np.median(np.diff(times)))
    frames = round(window_s / step) if step > 0 else n
    frames = max(1, min(int(frames), n))
    if frames % 2 == 0:
        frames = frames + 1 if frames + 1 <= n else frames - 1
    return max(frames, 1)


def savgol_smooth_track(
    times: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    *,
    window_s: float = 0.3,
    polyorder: int = 2,
    min_score: float = 0.3,
) -> np.ndarray:
    """Smooth one track offline.

    Args:
        times: ``(T,)`` frame times in seconds, non-decreasing. The filter assumes a steady frame rate; the
            window length comes from the median frame interval.
        keypoints: ``(T, K, 2)`` pixels.
        scores: ``(T, K)`` keypoint scores.
        window_s: window length in seconds (converted to an odd number of frames, clipped to ``T``).
        polyorder: polynomial order, lowered to ``window - 1`` when the window is that short.
        min_score: keypoints scoring below this are missing for the fit (interpolated from the others).

    Returns:
        ``float32 (T, K, 2)`` smoothed pixels. A keypoint never confident in the track is returned raw.
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    kp = np.asarray(keypoints, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    n = len(times)
    if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 2 or sc.shape != kp.shape[:2]:
        raise ValueError(
            f"savgol_smooth_track: need times (T,), keypoints (T, K, 2), scores (T, K); got {times.shape}, "
            f"{kp.shape}, {sc.shape}"
        )
    if window_s <= 0 or polyorder < 0:
        raise ConfigError(f"savgol: need window_s > 0 and polyorder >= 0, got {window_s=} {polyorder=}")
    if n > 1 and np.any(np.diff(times) < 0):
        raise ValueError("savgol_smooth_track: times must be non-decreasing (sort the track by time)")
    if n == 0:
        return kp.astype(np.float32)
    filled = kp.copy()
    ok = sc >= min_score
    for k in range(kp.shape[1]):
        v = ok[:, k]
        if v.all() or not v.any():
            continue
        for c in range(2):
            filled[~v, k, c] = np.interp(times[~v], times[v], kp[v, k, c])
    window = savgol_window_length(times, window_s)
    order = min(int(polyorder), window - 1)
    if window < 3 or order < 0:
        logger.debug("savgol: track of %d frames too short for window %.3f s; not smoothed", n, window_s)
        return filled.astype(np.float32)
    smoothed = savgol_filter(filled, window, order, axis=0, mode="interp")
    never = ~ok.any(axis=0)  # (K,) keypoints with no confident sample: leave raw
    smoothed[:, never] = kp[:, never]
    return smoothed.astype(np.float32)


class FixedLagSavgol:
    """Streaming Savitzky-Golay smoothing with a fixed delay of ``lag`` frames (half the window).

    Each pushed frame comes back ``lag`` frames later, smoothed with :func:`savgol_smooth_track` over the
    ``lag`` frames before and after it (per track ID; fewer at the start and on :meth:`flush`). The caller
    passes an opaque ``item`` with each frame (for example its ``FrameResult``) and gets it back with the
    smoothed poses, so it can emit results in order with the delay.

    Args:
        fps: nominal frame rate, fixes the delay: ``lag = window // 2`` with ``window`` the odd number of
            frames in ``window_s`` at this rate.
        window_s, polyorder, min_score: as in :func:`savgol_smooth_track`.
    """

    def __init__(
        self, *, fps: float, window_s: float = 0.3, polyorder: int = 2, min_score: float = 0.3
    ) -> None:
        if fps <= 0 or window_s <= 0 or polyorder < 0:
            raise ConfigError(
                f"savgol: need fps > 0, window_s > 0, polyorder >= 0; got {fps=} {window_s=} {polyorder=}"
            )
        window = max(1, round(window_s * fps))
        self.window = window if window % 2 else window + 1
        self.lag = self.window // 2
        self.window_s = float(window_s)
        self.polyorder = int(polyorder)
        self.min_score = float(min_score)
        self.reset()

    def reset(self) -> None:
        """Drop the buffered frames (call :meth:`flush` first to get them)."""
        self._buf: list[tuple[Any, Poses, float]] = []
        self._next = 0  # index in the buffer of the next frame to emit

    def _smooth(self, index: int) -> tuple[Any, Poses]:
        item, poses, t = self._buf[index]
        out = poses[np.arange(len(poses))]
        out.raw_keypoints = poses.keypoints.copy()
        if poses.track_ids is None or len(poses) == 0:
            return item, out
        lo, hi = max(0, index - self.lag), min(len(self._buf), index + self.lag + 1)
        for i, tid in enumerate(poses.track_ids.tolist()):
            times, kps, scs, row = [], [], [], 0
            for j in range(lo, hi):
                p = self._buf[j][1]
                hit = np.flatnonzero(p.track_ids == tid) if p.track_ids is not None else []
                if len(hit):
                    if j == index:
                        row = len(times)
                    times.append(self._buf[j][2])
                    kps.append(p.keypoints[hit[0]])
                    scs.append(p.keypoint_scores[hit[0]])
            sm = savgol_smooth_track(
                np.array(times),
                np.stack(kps),
                np.stack(scs),
                window_s=self.window_s,
                polyorder=self.polyorder,
                min_score=self.min_score,
            )
            out.keypoints[i] = sm[row]
        return item, out

    def push(self, item: Any, poses: Poses, *, t: float) -> list[tuple[Any, Poses]]:
        """Add one frame; returns the frames now ``lag`` frames old (zero or one), smoothed."""
        self._buf.append((item, poses, float(t)))
        ready = []
        while self._next < len(self._buf) and len(self._buf) - 1 - self._next >= self.lag:
            ready.append(self._smooth(self._next))
            self._next += 1
        self._trim()
        return ready

    def flush(self) -> list[tuple[Any, Poses]]:
        """Emit every frame still buffered (end of the video) and reset."""
        ready = [self._smooth(i) for i in range(self._next, len(self._buf))]
        self.reset()
        return ready

    def _trim(self) -> None:
        drop = max(0, self._next - self.lag)
        if drop:
            del self._buf[:drop]
            self._next -= drop
