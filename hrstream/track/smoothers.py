"""Temporal keypoint smoothing per tracked person: ``update(poses, *, t) -> poses``.

A :class:`KeypointSmoother` keeps one point filter (see :mod:`hrstream.track.point_filters`) per track ID;
it needs the ``track_ids`` set by a tracker. Keypoints scoring below ``min_score`` do not update their
filter. The returned poses carry the smoothed estimate in ``keypoints`` and the input in ``raw_keypoints``;
scores are unchanged. For offline (whole-file) smoothing see :func:`hrstream.track.savgol_smooth_track`.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from hrstream.errors import ConfigError
from hrstream.track.point_filters import KalmanPointFilter, OneEuroFilter
from hrstream.types import Poses

__all__ = ["SMOOTHER_NAMES", "KeypointSmoother", "SmootherName", "make_smoother"]

logger = logging.getLogger(__name__)

SmootherName = Literal["one_euro", "kalman", "none"]
SMOOTHER_NAMES: tuple[str, ...] = get_args(SmootherName)

_FILTERS: dict[str, type] = {"one_euro": OneEuroFilter, "kalman": KalmanPointFilter}


@dataclass(eq=False)
class _SmoothedTrack:
    filter: OneEuroFilter | KalmanPointFilter
    last_seen: float


def _check_method(method: str) -> None:
    if method not in SMOOTHER_NAMES:
        raise ConfigError(f"unknown smoother {method!r}; choose one of: {', '.join(SMOOTHER_NAMES)}")


def _check_params(method: str, params: dict[str, object]) -> None:
    if method == "none":
        if params:
            raise ConfigError(f"smoother 'none' takes no parameters, got: {', '.join(sorted(params))}")
        return
    accepted = [p for p in inspect.signature(_FILTERS[method].__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"smoother {method!r}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}, "
            "min_score, forget_s"
        )


class KeypointSmoother:
    """Smooth keypoints over time, one filter state per track.

    Args:
        method: ``"one_euro"`` (:class:`OneEuroFilter`: ``min_cutoff`` Hz, ``beta``, ``d_cutoff`` Hz),
            ``"kalman"`` (:class:`KalmanPointFilter`: ``accel_std`` px/s^2, ``meas_std`` px, ...) or
            ``"none"`` (pass-through that still fills ``raw_keypoints``).
        min_score: keypoints scoring below this do not update the estimate (the filter holds/predicts).
        forget_s: a track not seen for longer than this many seconds is forgotten (its ID starts afresh).
        **params: parameters of the chosen filter.
    """

    def __init__(
        self,
        method: SmootherName = "one_euro",
        *,
        min_score: float = 0.3,
        forget_s: float = 1.0,
        **params: float,
    ) -> None:
        _check_method(method)
        _check_params(method, params)
        if forget_s < 0:
            raise ConfigError(f"smoother: forget_s must be >= 0 seconds, got {forget_s}")
        self.method = method
        self.min_score = float(min_score)
        self.forget_s = float(forget_s)
        self.params = dict(params)
        if method != "none":
            _FILTERS[method](**params)  # validate the values now, not on the first person
        self.reset()

    def reset(self) -> None:
        """Forget every track (call between videos)."""
        self._states: dict[int, _SmoothedTrack] = {}

    @property
    def num_tracks(self) -> int:
        """Tracks with a filter state."""
        return len(self._states)

    def update(self, poses: Poses, *, t: float) -> Poses:
        """Smooth one frame.

        Args:
            poses: tracked people (``track_ids`` must be set unless ``method == "none"``).
            t: frame time in seconds.

        Returns:
            A new ``Poses``: ``keypoints`` smoothed (``float32 (n, K, 2)`` pixels), ``raw_keypoints`` the
            input keypoints, other fields unchanged.
        """
        t = float(t)
        out = poses[np.arange(len(poses))]
        out.raw_keypoints = poses.keypoints.copy()
        if self.method == "none" or len(poses) == 0:
            self._forget(t)
            return out
        if poses.track_ids is None:
            raise ConfigError(
                f"smoother {self.method!r} needs poses with track_ids; put a tracker before it or use 'none'"
            )
        smoothed = np.empty_like(poses.keypoints)
        for i, tid in enumerate(poses.track_ids.tolist()):
            if tid < 0:  # not (yet) a confirmed track: nothing to smooth with
                smoothed[i] = poses.keypoints[i]
                continue
            state = self._states.get(tid)
            if state is None:
                state = _SmoothedTrack(_FILTERS[self.method](**self.params), t)
                self._states[tid] = state
            state.last_seen = t
            valid = poses.keypoint_scores[i] >= self.min_score
            smoothed[i] = state.filter.filter(poses.keypoints[i], t, valid)
        out.keypoints = smoothed
        self._forget(t)
        return out

    def _forget(self, t: float) -> None:
        old = [tid for tid, st in self._states.items() if t - st.last_seen > self.forget_s]
        for tid in old:
            del self._states[tid]
        if old:
            logger.debug("smoother: forgot tracks %s", old)


def make_smoother(name: SmootherName, **params: float) -> KeypointSmoother:
    """Build a :class:`KeypointSmoother` by name (``one_euro``, ``kalman`` or ``none``).

    Raises:
        ConfigError: for an unknown name (the message lists the choices) or unknown parameters.
    """
    _check_method(name)
    return KeypointSmoother(name, **params)
