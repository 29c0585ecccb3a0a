"""Scores of hrstream's pose output against ground truth (e.g. synthetic clips from ``hrstream synth``).

* :func:`evaluate_tracks`: one predicted ``NAME.tracks.json`` against its truth: PCK, keypoint error,
  MOT metrics (MOTA, IDF1, ID switches, ...) and keypoint jitter;
* :func:`evaluate_dir`: every clip of a folder, per clip and pooled;
* :func:`format_report`: a plain-text table of either.
"""

from __future__ import annotations

from hrstream.metrics.evaluate import ALPHAS, evaluate_dir, evaluate_tracks
from hrstream.metrics.frames import box_iou, load_tracks_doc, match_boxes, people_by_frame
from hrstream.metrics.report import format_report

__all__ = [
    "ALPHAS",
    "box_iou",
    "evaluate_dir",
    "evaluate_tracks",
    "format_report",
    "load_tracks_doc",
    "match_boxes",
    "people_by_frame",
]
