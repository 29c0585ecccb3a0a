"""Causal filters for a set of 2-D points (one person's keypoints), confidence-gated and time-aware.

Every filter here has ``filter(points (K, 2), t, valid (K,)) -> (K, 2)``: ``t`` is the frame time in
seconds (the frame rate may vary), ``valid`` marks the keypoints confident enough to update the estimate.
A keypoint that is not valid leaves the estimate unchanged (One-Euro holds it; the Kalman filter predicts
it for at most ``max_predict_s``, then holds it, and starts afresh when the keypoint comes back). A keypoint
never seen valid is passed through raw.
Coordinates are pixels; parameters are in seconds, Hz and pixels per second.
"""

from __future__ import annotations

import math

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter

from hrstream.errors import ConfigError

__all__ = ["KalmanPointFilter", "OneEuroFilter"]


def _smoothing_factor(dt: np.ndarray, cutoff_hz: np.ndarray | float) -> np.ndarray:
    """Exponential smoothing factor of a first-order low-pass with ``cutoff_hz`` over ``dt`` seconds."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64))
    return 1.0 / (1.0 + tau / np.asarray(dt, dtype=np.float64))


def _valid_mask(valid: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if valid is None:
        return np.ones(shape, dtype=bool)
    v = np.asarray(valid, dtype=bool)
    if v.ndim == len(shape) - 1:
        v = v[..., None]
    return np.broadcast_to(v, shape)


class OneEuroFilter:
    """The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012), element-wise over an array.

    A first-order low-pass whose cutoff rises with the speed: ``cutoff = min_cutoff + beta * |dx/dt|``,
    where the speed is itself low-passed at ``d_cutoff``. Slow motion is smoothed hard (less jitter), fast
    motion lightly (less lag).

    Args:
        min_cutoff: cutoff in Hz at zero speed.
        beta: cutoff increase in Hz per (pixel per second) of speed.
        d_cutoff: cutoff in Hz of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ConfigError(
                f"one_euro: need min_cutoff > 0 Hz, d_cutoff > 0 Hz, beta >= 0; got {min_cutoff=} {d_cutoff=} "
                f"{beta=}"
            )
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the state."""
        self._x: np.ndarray | None = None  # filtered value
        self._dx: np.ndarray | None = None  # filtered speed, units per second
        self._t: np.ndarray | None = None  # time of the last update, per element
        self._seen: np.ndarray | None = None

    def filter(self, x: np.ndarray, t: float, valid: np.ndarray | None = None) -> np.ndarray:
        """Filter one sample.

        Args:
            x: ``(K, 2)`` (any fixed shape) values, pixels.
            t: sample time in seconds.
            valid: ``bool`` of ``x``'s shape or of its shape without the last axis; False holds the estimate.

        Returns:
            ``float64`` array of ``x``'s shape: the estimate (raw ``x`` where never valid).
        """
        x = np.asarray(x, dtype=np.float64)
        ok = _valid_mask(valid, x.shape)
        if self._x is None or self._x.shape != x.shape:
            self._x = x.copy()
            self._dx = np.zeros_like(x)
            self._t = np.full(x.shape, float(t))
            self._seen = ok.copy()
            return x.copy()
        first = ok & ~self._seen
        self._x[first] = x[first]
        self._dx[first] = 0.0
        self._t[first] = t
        self._seen |= first
        dt = float(t) - self._t
        step = ok & ~first & (dt > 0)
        if np.any(step):
            dts = dt[step]
            speed = (x[step] - self._x[step]) / dts
            a_d = _smoothing_factor(dts, self.d_cutoff)
            dx = a_d * speed + (1.0 - a_d) * self._dx[step]
            a = _smoothing_factor(dts, self.min_cutoff + self.beta * np.abs(dx))
            self._x[step] = a * x[step] + (1.0 - a) * self._x[step]
            self._dx[step] = dx
            self._t[step] = t
        return np.where(self._seen, self._x, x)


class KalmanPointFilter:
    """Constant-velocity Kalman filters (filterpy), one per keypoint, state ``(x, vx, y, vy)``.

    Args:
        accel_std: process noise, the standard deviation of the (piecewise constant) acceleration in
            pixels per s^2; larger follows quick moves better, smooths less.
        meas_std: measurement noise in pixels.
        init_vel_std: initial velocity uncertainty in pixels per second.
        max_predict_s: a keypoint that is not valid is predicted for at most this long, then held.
    """

    def __init__(
        self,
        accel_std: float = 500.0,
        meas_std: float = 3.0,
        init_vel_std: float = 300.0,
        max_predict_s: float = 0.3,
    ) -> None:
        if accel_std <= 0 or meas_std <= 0 or init_vel_std <= 0 or max_predict_s < 0:
            raise ConfigError(
                f"kalman: need accel_std, meas_std, init_vel_std > 0 and max_predict_s >= 0; got {accel_std=} "
                f"{meas_std=} {init_vel_std=} {max_predict_s=}"
            )
        self.accel_std = float(accel_std)
        self.meas_std = float(meas_std)
        self.init_vel_std = float(init_vel_std)
        self.max_predict_s = float(max_predict_s)
        self._h = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
        self.reset()

    def reset(self) -> None:
        """Forget the state."""
        self._filters: list[KalmanFilter | None] = []
        self._t: float | None = None
        self._last_update: np.ndarray = np.zeros(0)

    def _new(self, z: np.ndarray) -> KalmanFilter:
        kf = KalmanFilter(dim_x=4, dim_z=2)
        kf.x = np.array([[z[0]], [0.0], [z[1]], [0.0]])
        kf.H = self._h
        kf.R = np.eye(2) * self.meas_std**2
        kf.P = np.diag([self.meas_std**2, self.init_vel_std**2, self.meas_std**2, self.init_vel_std**2])
        return kf

    def filter(self, x: np.ndarray, t: float, valid: np.ndarray | None = None) -> np.ndarray:
        """Filter one sample of ``x (K, 2)`` pixels at ``t`` seconds; ``valid (K,)``. Returns ``float64 (K, 2)``."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
        k = len(x)
        ok = np.ones(k, bool) if valid is None else np.asarray(valid, bool).reshape(k)
        if len(self._filters) != k:
            self._filters = [None] * k
            self._last_update = np.full(k, -np.inf)
            self._t = None
        dt = 0.0 if self._t is None else max(float(t) - self._t, 0.0)
        self._t = float(t) if self._t is None else max(self._t, float(t))
        out = x.copy()
        if dt > 0:
            f = np.eye(4)
            f[0, 1] = f[2, 3] = dt
            q = Q_discrete_white_noise(dim=2, dt=dt, var=self.accel_std**2, block_size=2)
        for i in range(k):
            kf = self._filters[i]
            gap = float(t) - self._last_update[i]
            if kf is None or (ok[i] and gap > self.max_predict_s):
                if ok[i]:
                    self._filters[i] = self._new(x[i])
                    self._last_update[i] = float(t)
                continue
            if dt > 0 and gap <= self.max_predict_s:
                kf.predict(F=f, Q=q)
            if ok[i]:
                kf.update(x[i].reshape(2, 1))
                self._last_update[i] = float(t)
            out[i] = kf.x[0, 0], kf.x[2, 0]
        return out
