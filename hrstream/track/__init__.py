"""Multi-person tracking and temporal keypoint smoothing.

* :class:`PoseTracker`: Kalman filter per person box + two-stage IoU/OKS assignment; integer IDs from 1,
  never reused within a video (``reset()`` starts a new video and restarts the IDs).
* :class:`KeypointSmoother` / :func:`make_smoother`: per-track One-Euro or Kalman smoothing of keypoints.
* :func:`repair_tracks`: offline, on finished tracks of a file: cut where a track passes to another person and
  join the pieces of one person, by the colour of their clothing.
* :func:`savgol_smooth_track`: offline Savitzky-Golay smoothing of a whole track (files);
  :class:`FixedLagSavgol`: the same while streaming, with a delay of half the window.
"""

from __future__ import annotations

from hrstream.track.box_kalman import BoxKalman
from hrstream.track.geometry import COCO_SIGMAS, box_iou, oks_matrix
from hrstream.track.point_filters import KalmanPointFilter, OneEuroFilter
from hrstream.track.repair import RepairParams, repair_tracks
from hrstream.track.savgol import FixedLagSavgol, savgol_smooth_track, savgol_window_length
from hrstream.track.smoothers import SMOOTHER_NAMES, KeypointSmoother, SmootherName, make_smoother
from hrstream.track.tracker import PoseTracker

__all__ = [
    "COCO_SIGMAS",
    "SMOOTHER_NAMES",
    "BoxKalman",
    "FixedLagSavgol",
    "KalmanPointFilter",
    "KeypointSmoother",
    "OneEuroFilter",
    "PoseTracker",
    "RepairParams",
    "SmootherName",
    "box_iou",
    "make_smoother",
    "oks_matrix",
    "repair_tracks",
    "savgol_smooth_track",
    "savgol_window_length",
]
