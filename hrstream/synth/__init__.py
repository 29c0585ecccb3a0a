"""Synthetic videos of articulated people with exact ground truth, for training and measuring hrstream.

* :class:`SynthConfig` / :func:`generate`: frames (:class:`SynthFrame`) with COCO keypoints, visibility,
  boxes, identities and an instance mask;
* :func:`write_clip`: an MP4 plus its ground truth as a ``NAME.tracks.json`` (the shape of hrstream's pose
  output) and 16-bit instance-mask PNGs;
* :func:`write_coco_dataset`: a COCO-keypoints training set (images, ``annotations.json``, person masks).
"""

from __future__ import annotations

from hrstream.synth.config import MOTIONS, SynthConfig, SynthFrame
from hrstream.synth.generate import generate
from hrstream.synth.writers import read_truth_tracks, write_clip, write_coco_dataset

__all__ = [
    "MOTIONS",
    "SynthConfig",
    "SynthFrame",
    "generate",
    "read_truth_tracks",
    "write_clip",
    "write_coco_dataset",
]
