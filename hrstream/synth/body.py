"""An articulated 3D stick figure with the 17 COCO joints, posed by joint angles and projected to the image.

Body frame (units of the person's height): x to the person's **left**, y up (soles at 0), z forward. The
figure is turned by its yaw ``psi`` about the vertical (0: facing the camera, +pi/2: facing screen right,
pi: facing away) and projected orthographically around its anchor, so turning foreshortens the torso and
swaps left and right on screen when the person faces away. Depth ``d`` grows toward the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PARTS", "PART_OF_KEYPOINT", "PoseAngles", "ProjectedBody", "pose_body"]

#: Drawable parts; the part id in label maps is the index here plus 1.
PARTS: tuple[str, ...] = (
    "torso", "head", "neck",
    "l_upper_arm", "r_upper_arm", "l_forearm", "r_forearm", "l_hand", "r_hand",
    "l_thigh", "r_thigh", "l_shin", "r_shin", "l_foot", "r_foot",
)  # fmt: skip
_P = {name: i + 1 for i, name in enumerate(PARTS)}

#: For each COCO keypoint, the part ids on which it can be seen.
PART_OF_KEYPOINT: tuple[frozenset[int], ...] = (
    *(frozenset({_P["head"]}),) * 5,
    frozenset({_P["torso"], _P["l_upper_arm"]}),
    frozenset({_P["torso"], _P["r_upper_arm"]}),
    frozenset({_P["l_upper_arm"], _P["l_forearm"]}),
    frozenset({_P["r_upper_arm"], _P["r_forearm"]}),
    frozenset({_P["l_forearm"], _P["l_hand"]}),
    frozenset({_P["r_forearm"], _P["r_hand"]}),
    frozenset({_P["torso"], _P["l_thigh"]}),
    frozenset({_P["torso"], _P["r_thigh"]}),
    frozenset({_P["l_thigh"], _P["l_shin"]}),
    frozenset({_P["r_thigh"], _P["r_shin"]}),
    frozenset({_P["l_shin"], _P["l_foot"]}),
    frozenset({_P["r_shin"], _P["r_foot"]}),
)

# proportions (fractions of the standing height)
_HIP_Y, _HIP_X, _SH_Y, _SH_X = 0.52, 0.075, 0.815, 0.115
_THIGH, _SHIN, _UPPER, _FORE = 0.245, 0.235, 0.17, 0.15
_HEAD_C, _HEAD_RX, _HEAD_RY = (0.0, 0.925, 0.01), 0.056, 0.068
# face points on the head: (yaw about the vertical, pitch, radius, cosine threshold to face the camera)
_FACE = (
    (0.0, -0.15, 0.055, -0.2),  # nose (its tip still shows in profile)
    (0.42, 0.12, 0.05, 0.0),  # left eye (person's left is +x)
    (-0.42, 0.12, 0.05, 0.0),  # right eye
    (1.5, 0.02, 0.052, -0.3),  # left ear
    (-1.5, 0.02, 0.052, -0.3),  # right ear
)
#: Half widths (fraction of height) of limb capsules at their two ends.
LIMB_RADII: dict[str, tuple[float, float]] = {
    "upper_arm": (0.034, 0.027),
    "forearm": (0.026, 0.020),
    "thigh": (0.052, 0.038),
    "shin": (0.036, 0.027),
    "foot": (0.022, 0.018),
    "neck": (0.026, 0.026),
}


@dataclass
class PoseAngles:
    """Joint angles in radians. Leg/arm flexion is about the body's x axis (forward swing positive);
    abduction raises an arm sideways (pi/2 is horizontal). Knee/elbow values are flexion of the child
    segment relative to its parent."""

    hip: tuple[float, float] = (0.0, 0.0)  # (left, right)
    knee: tuple[float, float] = (0.1, 0.1)
    shoulder: tuple[float, float] = (0.0, 0.0)
    abduction: tuple[float, float] = (0.08, 0.08)
    elbow: tuple[float, float] = (0.15, 0.15)
    forearm_abduction: tuple[float, float] | None = None  # absolute, overrides the arm's for waving
    bob: float = 0.0
    head_yaw: float = 0.0


def walking_angles(phase: float, amplitude: float, t: float) -> PoseAngles:
    """A plausible gait at ``phase`` (radians, one stride per 2 pi); ``amplitude`` 0 stands still."""
    g = float(np.clip(amplitude, 0.0, 1.0))
    s, c = math.sin(phase), math.cos(phase)
    breath = 0.01 * math.sin(2.1 * t)
    hip = (0.42 * g * s, -0.42 * g * s)
    knee = (0.08 + g * 0.65 * max(0.0, c) ** 1.5, 0.08 + g * 0.65 * max(0.0, -c) ** 1.5)
    shoulder = (-0.35 * g * s, 0.35 * g * s)
    elbow = (0.2 + 0.3 * g * max(0.0, -s), 0.2 + 0.3 * g * max(0.0, s))
    return PoseAngles(
        hip=hip,
        knee=knee,
        shoulder=shoulder,
        abduction=(0.08 + breath, 0.08 + breath),
        elbow=elbow,
        bob=0.012 * g * math.cos(2 * phase),
    )


def _dir(flex: float, abd: float, side: float) -> np.ndarray:
    """Unit direction from a joint hanging down, swung forward by ``flex`` and out by ``abd``."""
    ca = math.cos(flex)
    return np.array([side * math.sin(abd) * ca, -math.cos(abd) * ca, math.sin(flex)])


@dataclass
class ProjectedBody:
    """A posed figure in image pixels.

    Attributes:
        joints: ``float64 (17, 2)`` COCO keypoints (x, y).
        joint_depth: ``float64 (17,)`` depth toward the camera (fraction of height).
        face_front: ``bool (5,)`` whether each face keypoint faces the camera (else self-occluded).
        segments: ``{part: (p0, p1, r0, r1, depth)}`` capsules in pixels for limbs, neck and feet.
        torso: ``float64 (m, 2)`` convex polygon (pixels).
        head: ``(centre (2,), (rx, ry) px, facing, face_x)``: the head ellipse, the cosine between the face
            direction and the camera, and the face's sideways offset on screen (-1..1).
        scale: pixels per unit height.
    """

    joints: np.ndarray
    joint_depth: np.ndarray
    face_front: np.ndarray
    segments: dict[str, tuple[np.ndarray, np.ndarray, float, float, float]]
    torso: np.ndarray
    head: tuple[np.ndarray, tuple[float, float], float, float]
    scale: float


def pose_body(angles: PoseAngles, yaw: float, anchor: tuple[float, float], height_px: float) -> ProjectedBody:
    """Pose and project a figure whose soles' midpoint (standing) is at pixel ``anchor`` and ``height_px`` tall."""
    s = float(height_px)
    cy, sy = math.cos(yaw), math.sin(yaw)
    ax, ay = anchor

    def project(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray(p, np.float64).reshape(-1, 3)
        xr = p[:, 0] * cy + p[:, 2] * sy
        depth = -p[:, 0] * sy + p[:, 2] * cy
        return np.stack([ax + s * xr, ay - s * p[:, 1]], axis=1), depth

    bob = angles.bob
    j3 = np.zeros((17, 3))
    seg3: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, side in ((0, 1.0), (1, -1.0)):  # 0: left (+x), 1: right
        lr = "lr"[k]
        hip = np.array([side * _HIP_X, _HIP_Y + bob, 0.0])
        knee = hip + _THIGH * _dir(angles.hip[k], 0.03, side)
        ankle = knee + _SHIN * _dir(angles.hip[k] - angles.knee[k], 0.02, side)
        toe = ankle + np.array([0.0, -0.025, 0.075])
        sh = np.array([side * _SH_X, _SH_Y + bob, 0.0])
        abd = angles.abduction[k]
        elbow = sh + _UPPER * _dir(angles.shoulder[k], abd, side)
        fabd = abd if angles.forearm_abduction is None else angles.forearm_abduction[k]
        wrist = elbow + _FORE * _dir(angles.shoulder[k] + angles.elbow[k], fabd, side)
        hand = wrist + 0.045 * _dir(angles.shoulder[k] + angles.elbow[k], fabd, side)
        j3[5 + k], j3[7 + k], j3[9 + k] = sh, elbow, wrist
        j3[11 + k], j3[13 + k], j3[15 + k] = hip, knee, ankle
        seg3[f"{lr}_upper_arm"] = (sh, elbow)
        seg3[f"{lr}_forearm"] = (elbow, wrist)
        seg3[f"{lr}_hand"] = (wrist, hand)
        seg3[f"{lr}_thigh"] = (hip, knee)
        seg3[f"{lr}_shin"] = (knee, ankle)
        seg3[f"{lr}_foot"] = (ankle, toe)
    head_c = np.array([_HEAD_C[0], _HEAD_C[1] + bob, _HEAD_C[2]])
    seg3["neck"] = (np.array([0.0, _SH_Y + bob - 0.01, 0.0]), head_c - np.array([0.0, 0.03, 0.0]))

    # face points on a sphere, turned by the body yaw plus the head's own yaw
    hy = angles.head_yaw
    face_front = np.zeros(5, bool)
    face_depth = np.zeros(5)
    for i, (fyaw, pitch, rad, thr) in enumerate(_FACE):
        a = fyaw + hy
        d = np.array([math.sin(a) * math.cos(pitch), math.sin(pitch), math.cos(a) * math.cos(pitch)])
        j3[i] = head_c + rad * d
        face_front[i] = (-d[0] * sy + d[2] * cy) > thr
        face_depth[i] = -d[0] * sy + d[2] * cy
    joints, depth = project(j3)

    names = list(seg3)
    ends = np.array([p for name in names for p in seg3[name]])
    corners = []
    for y, hx, hz in ((_SH_Y + 0.015 + bob, 0.125, 0.05), (_HIP_Y - 0.02 + bob, 0.088, 0.045)):
        for sx in (-1, 1):
            for sz in (-1, 1):
                corners.append((sx * hx, y, sz * hz))
    pts, dep = project(np.concatenate([ends, np.array(corners), head_c[None]]))
    m = 2 * len(names)
    segments = {}
    for i, name in enumerate(names):
        base = name[2:] if name[:2] in ("l_", "r_") else name
        r0, r1 = LIMB_RADII.get(base, (0.022, 0.02))
        segments[name] = (pts[2 * i], pts[2 * i + 1], r0 * s, r1 * s, float(dep[2 * i] + dep[2 * i + 1]) / 2)
    tpts, hc = pts[m : m + 8], pts[m + 8]
    hull = _convex_hull(tpts)
    facing = math.cos(hy) * cy - math.sin(hy) * sy  # cos of the head's yaw relative to the camera
    face_x = math.sin(yaw + hy)
    head = (hc, (_HEAD_RX * s, _HEAD_RY * s), float(facing), float(face_x))
    return ProjectedBody(joints, depth, face_front, segments, hull, head, s)


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull of ``(n, 2)`` points, counter-clockwise, as ``float64 (m, 2)``."""
    p = sorted(map(tuple, np.asarray(pts, np.float64)))

    def cross(o: tuple, a: tuple, b: tuple) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple] = []
    for q in p:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    upper: list[tuple] = []
    for q in reversed(p):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    return np.array(lower[:-1] + upper[:-1], np.float64)
