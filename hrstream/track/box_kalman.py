"""A constant-velocity Kalman filter on a person box, with the real time step between frames.

The state is ``(cx, cy, w, h, vcx, vcy, vw, vh)``: box centre and size in pixels and their velocities in
pixels per second. Process noise is white acceleration in continuous time, integrated over the actual
``dt`` (so a track behaves the same at 5 and 60 fps) and scaled with the box height (as SORT/ByteTrack
scale their noise with the box size). Measurement noise is proportional to the box height as well.
"""

from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

from hrstream.track.geometry import cxcywh_to_xyxy, xyxy_to_cxcywh

__all__ = ["BoxKalman"]

_MIN_SIZE = 1.0


def _transition(dt: float) -> np.ndarray:
    f = np.eye(8)
    f[:4, 4:] = np.eye(4) * dt
    return f


class BoxKalman:
    """Kalman filter of one box (filterpy), time-aware.

    Args:
        box: ``(4,)`` xyxy pixels, the first measurement.
        accel_std: white-acceleration density of the centre, in box heights per s^2 (per sqrt(s)).
        size_accel_std: the same for width and height.
        meas_std: measurement standard deviation as a fraction of the box height.
        init_vel_std: initial velocity standard deviation in box heights per second.
    """

    def __init__(
        self,
        box: np.ndarray,
        *,
        accel_std: float = 1.0,
        size_accel_std: float = 0.3,
        meas_std: float = 0.05,
        init_vel_std: float = 1.0,
    ) -> None:
        self.accel_std = float(accel_std)
        self.size_accel_std = float(size_accel_std)
        self.meas_std = float(meas_std)
        z = xyxy_to_cxcywh(box)[0]
        h = max(z[3], _MIN_SIZE)
        kf = KalmanFilter(dim_x=8, dim_z=4)
        kf.x = np.concatenate([z, np.zeros(4)]).reshape(8, 1)
        kf.H = np.hstack([np.eye(4), np.zeros((4, 4))])
        pos_std = 2.0 * self.meas_std * h
        vel_std = float(init_vel_std) * h
        kf.P = np.diag([pos_std**2] * 4 + [vel_std**2] * 4)
        self.kf = kf

    @property
    def height(self) -> float:
        return max(float(self.kf.x[3, 0]), _MIN_SIZE)

    def _process_noise(self, dt: float) -> np.ndarray:
        h = self.height
        q = np.array([self.accel_std, self.accel_std, self.size_accel_std, self.size_accel_std]) * h
        q = q**2
        big_q = np.zeros((8, 8))
        idx = np.arange(4)
        big_q[idx, idx] = q * dt**3 / 3.0
        big_q[idx, idx + 4] = q * dt**2 / 2.0
        big_q[idx + 4, idx] = q * dt**2 / 2.0
        big_q[idx + 4, idx + 4] = q * dt
        return big_q

    def predict(self, dt: float, *, hold_size: bool = False) -> None:
        """Advance the state by ``dt`` seconds (``dt <= 0`` leaves it unchanged).

        ``hold_size`` zeroes the width/height velocities first: for a track that is not seen, a size change
        measured from swinging limbs should not be extrapolated through the occlusion.
        """
        if dt <= 0:
            return
        if hold_size:
            self.kf.x[6:8, 0] = 0.0
        self.kf.predict(F=_transition(dt), Q=self._process_noise(dt))
        self.kf.x[2:4, 0] = np.maximum(self.kf.x[2:4, 0], _MIN_SIZE)

    def update(self, box: np.ndarray) -> None:
        """Correct with a measured ``(4,)`` xyxy box."""
        z = xyxy_to_cxcywh(box)[0].reshape(4, 1)
        r = (self.meas_std * max(float(z[3, 0]), _MIN_SIZE)) ** 2
        self.kf.update(z, R=np.eye(4) * r)
        self.kf.x[2:4, 0] = np.maximum(self.kf.x[2:4, 0], _MIN_SIZE)

    def box(self) -> np.ndarray:
        """The current estimate as ``float64 (4,)`` xyxy pixels."""
        return cxcywh_to_xyxy(self.kf.x[:4, 0])[0]

    def box_after(self, dt: float, *, hold_size: bool = False) -> np.ndarray:
        """The box predicted ``dt`` seconds ahead, ``float64 (4,)`` xyxy, without changing the state."""
        state = self.kf.x[:, 0].copy()
        if hold_size:
            state[6:8] = 0.0
        x = _transition(max(dt, 0.0)) @ state
        x[2:4] = np.maximum(x[2:4], _MIN_SIZE)
        return cxcywh_to_xyxy(x[:4])[0]
