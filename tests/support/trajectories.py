"""Synthetic people for tracking and smoothing tests: 17-keypoint COCO skeletons on known paths.

Everything is deterministic given a seed. Coordinates are pixels (x right, y down); times are seconds.
A person is a :class:`PersonPath` (a straight walk plus a sway and swinging limbs); a scene samples
several people at given frame times, adds Gaussian noise to keypoints and boxes, and leaves out people
while they are occluded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hrstream.types import Poses

# COCO keypoint layout of a standing person, in units of the person's height, relative to the box centre.
# Order: nose, l/r eye, l/r ear, l/r shoulder, l/r elbow, l/r wrist, l/r hip, l/r knee, l/r ankle.
SKELETON_TEMPLATE = np.array(
    [
        [0.00, -0.44],
        [0.02, -0.46],
        [-0.02, -0.46],
        [0.05, -0.45],
        [-0.05, -0.45],
        [0.11, -0.32],
        [-0.11, -0.32],
        [0.14, -0.15],
        [-0.14, -0.15],
        [0.15, 0.00],
        [-0.15, 0.00],
        [0.08, 0.02],
        [-0.08, 0.02],
        [0.08, 0.25],
        [-0.08, 0.25],
        [0.08, 0.48],
        [-0.08, 0.48],
    ]
)
_SWING = {7: 0.5, 8: -0.5, 9: 1.0, 10: -1.0, 13: 0.5, 14: -0.5, 15: 1.0, 16: -1.0}  # limb -> phase weight


@dataclass
class PersonPath:
    """One person: box centre ``start + velocity * (t - t_start)`` plus a sinusoidal sway.

    Attributes:
        pid: ground-truth identity.
        start: ``(x, y)`` pixels of the box centre at ``t_start``.
        velocity: ``(vx, vy)`` pixels per second.
        height: person height in pixels.
        sway: ``(amplitude px, frequency Hz)`` of a vertical sway of the whole body.
        swing: ``(amplitude as a fraction of height, frequency Hz)`` of the horizontal swing of arms and legs.
        t_start, t_end: the person exists in ``[t_start, t_end]``.
        occlusions: ``(t0, t1)`` intervals where the detector does not see the person.
    """

    pid: int
    start: tuple[float, float]
    velocity: tuple[float, float]
    height: float = 200.0
    sway: tuple[float, float] = (6.0, 1.0)
    swing: tuple[float, float] = (0.08, 1.0)
    t_start: float = 0.0
    t_end: float = math.inf
    occlusions: list[tuple[float, float]] = field(default_factory=list)

    def alive(self, t: float) -> bool:
        return self.t_start <= t <= self.t_end

    def visible(self, t: float) -> bool:
        return self.alive(t) and not any(a <= t < b for a, b in self.occlusions)

    def keypoints(self, t: float) -> np.ndarray:
        """True ``(17, 2)`` keypoints at time ``t``."""
        dt = t - self.t_start
        cx = self.start[0] + self.velocity[0] * dt
        cy = self.start[1] + self.velocity[1] * dt + self.sway[0] * math.sin(2 * math.pi * self.sway[1] * dt)
        kp = SKELETON_TEMPLATE * self.height + np.array([cx, cy])
        swing = self.swing[0] * self.height * math.sin(2 * math.pi * self.swing[1] * dt)
        for k, w in _SWING.items():
            kp[k, 0] += w * swing
        return kp

    def box(self, t: float) -> np.ndarray:
        """True ``(4,)`` xyxy box: the keypoints' extent padded by 10% of the height."""
        kp = self.keypoints(t)
        pad = 0.1 * self.height
        return np.array(
            [kp[:, 0].min() - pad, kp[:, 1].min() - pad, kp[:, 0].max() + pad, kp[:, 1].max() + pad]
        )


def frame_times(duration_s: float, fps: float, *, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """Frame times ``0, 1/fps, ...`` below ``duration_s``; ``jitter`` (fraction of a frame) varies the rate."""
    n = int(math.floor(duration_s * fps + 1e-9))
    t = np.arange(n) / fps
    if jitter > 0:
        rng = np.random.default_rng(seed)
        t = t + rng.uniform(-jitter / 2, jitter / 2, n) / fps
        t[0] = 0.0
        t = np.maximum.accumulate(t)
    return t


@dataclass
class SceneFrame:
    """One sampled frame: the ground truth and the noisy detections (in shuffled order)."""

    t: float
    gt_ids: np.ndarray  # (m,) int, people visible in this frame
    gt_boxes: np.ndarray  # (m, 4) xyxy
    gt_keypoints: np.ndarray  # (m, 17, 2)
    poses: Poses


def make_scene(
    people: list[PersonPath],
    times: np.ndarray,
    *,
    keypoint_noise: float = 2.0,
    box_noise: float = 2.0,
    score: float = 0.9,
    seed: int = 0,
) -> list[SceneFrame]:
    """Sample ``people`` at ``times``: Gaussian noise (std in pixels) on keypoints and box corners."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in times:
        vis = [p for p in people if p.visible(float(t))]
        order = rng.permutation(len(vis))
        vis = [vis[i] for i in order]
        gt_kp = np.array([p.keypoints(float(t)) for p in vis]).reshape(-1, 17, 2)
        gt_box = np.array([p.box(float(t)) for p in vis]).reshape(-1, 4)
        poses = Poses(
            boxes=gt_box + rng.normal(0, box_noise, gt_box.shape),
            box_scores=np.clip(score + rng.normal(0, 0.03, len(vis)), 0, 1),
            keypoints=gt_kp + rng.normal(0, keypoint_noise, gt_kp.shape),
            keypoint_scores=np.clip(0.85 + rng.normal(0, 0.05, (len(vis), 17)), 0, 1),
        )
        frames.append(SceneFrame(float(t), np.array([p.pid for p in vis], int), gt_box, gt_kp, poses))
    return frames


def noisy_track(
    times: np.ndarray, *, noise: float = 4.0, seed: int = 0, person: PersonPath | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One person's keypoints over ``times``: ``(truth (T, 17, 2), noisy (T, 17, 2), scores (T, 17))``."""
    person = person or PersonPath(
        0, (200.0, 300.0), (60.0, 0.0), height=300.0, sway=(15.0, 0.5), swing=(0.1, 0.8)
    )
    rng = np.random.default_rng(seed)
    truth = np.array([person.keypoints(float(t)) for t in times])
    noisy = truth + rng.normal(0, noise, truth.shape)
    scores = np.clip(0.85 + rng.normal(0, 0.05, truth.shape[:2]), 0, 1)
    return truth, noisy, scores


def crossing_people(occlusion: tuple[float, float] = (1.75, 2.25)) -> list[PersonPath]:
    """Three people over 4 s: 1 walks right and 2 walks left on nearly the same line, crossing at t = 2 s
    while 2 is occluded for ``occlusion`` (about 0.5 s); 3 walks down and crosses 1's path near t = 1 s."""
    return [
        PersonPath(1, (100.0, 300.0), (100.0, 0.0), height=200.0),
        PersonPath(2, (500.0, 310.0), (-100.0, 0.0), height=200.0, swing=(0.08, 0.8), occlusions=[occlusion]),
        PersonPath(3, (200.0, 20.0), (0.0, 110.0), height=180.0, swing=(0.08, 1.2)),
    ]
