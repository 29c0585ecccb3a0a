"""Drawing: backgrounds, textured shaded figures in depth order, per-pixel part labels, visibility.

Figures are drawn with OpenCV, anti-aliased and with sub-pixel precision, into the RGB image; the same
shapes are drawn without anti-aliasing into a ``uint16`` *code map* holding ``track_id * 16 + part_id`` of
the nearest surface at each pixel (``part_id`` indexes :data:`hrstream.synth.body.PARTS` from 1), from
which the instance mask and the keypoint visibility are read. Coordinates: pixel centres at integers.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from hrstream.synth.body import PART_OF_KEYPOINT, PARTS, ProjectedBody

__all__ = ["CameraNoise", "draw_person", "keypoint_visibility", "make_background", "make_look",
           "person_extent"]  # fmt: skip

_SHIFT = 4
_ONE = 1 << _SHIFT
_PART_ID = {name: i + 1 for i, name in enumerate(PARTS)}
_TORSO = _PART_ID["torso"]
# shoulders and hips seen on the torso are hidden once turned this far away (depth, fraction of height):
# about 50 degrees past the profile-facing side, i.e. 0.75 x their sideways offset
_TRUNK_HIDDEN_DEPTH = {5: -0.086, 6: -0.086, 11: -0.056, 12: -0.056}


def _rgb(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


def make_look(rng: np.random.Generator) -> dict:
    """Random clothing/skin colours (RGB) and patterns of one person."""
    skin_base = np.array([224, 172, 140]) * rng.uniform(0.35, 1.05)
    return {
        "shirt": _rgb(rng),
        "trousers": _rgb(rng, 15, 200),
        "skin": tuple(int(v) for v in np.clip(skin_base, 30, 255)),
        "hair": _rgb(rng, 10, 120),
        "shoes": _rgb(rng, 5, 90),
        "stripe": _rgb(rng),
        "stripes": int(rng.integers(0, 5)),
        "long_sleeves": bool(rng.random() < 0.6),
        "shorts": bool(rng.random() < 0.25),
    }


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random ``uint8 (H, W, 3)`` RGB background: gradients, smooth noise, a texture and clutter."""
    h, w = height, width
    top, bottom = np.array(_rgb(rng), np.float32), np.array(_rgb(rng), np.float32)
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (h, w, 3)).copy()
    split = int(rng.uniform(0.3, 0.6) * h)  # a ground plane of another colour
    img[split:] = img[split:] * 0.5 + np.array(_rgb(rng), np.float32) * 0.5
    small = rng.normal(0, 1, (max(2, h // 24), max(2, w // 24), 3)).astype(np.float32)
    img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(5, 30)
    kind = int(rng.integers(3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # stripes at a random angle
        a, period = rng.uniform(0, math.pi), rng.uniform(6, 40)
        pattern = np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)
    elif kind == 1:  # checker
        c = rng.uniform(8, 48)
        pattern = ((xx // c + yy // c) % 2) * 2 - 1
    else:  # bricks
        bh = rng.uniform(6, 24)
        row = yy // bh
        pattern = (((xx + (row % 2) * bh) % (2 * bh) < 1.5) | (yy % bh < 1.5)).astype(np.float32) * -2 + 1
    img += pattern[..., None] * rng.uniform(4, 25)
    out = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 14))):  # clutter: boxes, discs, poles
        col = _rgb(rng)
        x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        s = int(rng.uniform(0.03, 0.25) * min(w, h)) + 2
        shape = int(rng.integers(3))
        if shape == 0:
            cv2.rectangle(out, (x0, y0), (x0 + s, y0 + int(s * rng.uniform(0.3, 2))), col, -1, cv2.LINE_AA)
        elif shape == 1:
            cv2.circle(out, (x0, y0), s // 2, col, -1, cv2.LINE_AA)
        else:
            cv2.line(
                out, (x0, 0), (x0 + int(rng.uniform(-20, 20)), h), col, int(rng.integers(1, 8)), cv2.LINE_AA
            )
    return out


def _fx(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def _capsule(img: np.ndarray, p0, p1, r0: float, r1: float, color, aa: bool) -> None:
    """A tapered capsule from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``), pixels, filled."""
    line = cv2.LINE_AA if aa else cv2.LINE_8
    x0, y0, x1, y1 = float(p0[0]) * _ONE, float(p0[1]) * _ONE, float(p1[0]) * _ONE, float(p1[1]) * _ONE
    dx, dy = x1 - x0, y1 - y0
    n = math.hypot(dx, dy)
    a0, a1 = r0 * _ONE, r1 * _ONE
    if n > 1e-3:
        nx, ny = -dy / n, dx / n
        poly = np.array(
            [[x0 + nx * a0, y0 + ny * a0], [x1 + nx * a1, y1 + ny * a1],
             [x1 - nx * a1, y1 - ny * a1], [x0 - nx * a0, y0 - ny * a0]]
        )  # fmt: skip
        cv2.fillConvexPoly(img, poly.astype(np.int32), color, line, _SHIFT)
    cv2.circle(img, (int(x0), int(y0)), max(1, int(a0)), color, -1, line, _SHIFT)
    cv2.circle(img, (int(x1), int(y1)), max(1, int(a1)), color, -1, line, _SHIFT)


def _poly(pts) -> np.ndarray:
    return np.rint(np.asarray(pts, np.float64) * _ONE).astype(np.int32)


def _shade(c, k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, v * k)) for v in c)  # type: ignore[return-value]


def _part_color(name: str, look: dict) -> tuple[int, int, int]:
    if name in ("head", "neck") or name.endswith("hand"):
        return look["skin"]
    if name.endswith("foot"):
        return look["shoes"]
    if name.endswith("upper_arm") or name == "torso":
        return look["shirt"]
    if name.endswith("forearm"):
        return look["shirt"] if look["long_sleeves"] else look["skin"]
    if name.endswith("shin"):
        return look["skin"] if look["shorts"] else look["trousers"]
    return look["trousers"]


def draw_person(img: np.ndarray, code: np.ndarray, body: ProjectedBody, look: dict, track_id: int) -> None:
    """Draw one figure into ``img`` (RGB, anti-aliased) and ``code`` (``track_id * 16 + part``), in place.

    Parts are drawn far to near so the figure occludes itself correctly.
    """
    items: list[tuple[float, str]] = [(0.0, "torso"), (0.001, "neck"), (0.002, "head")]
    items += [(seg[4], name) for name, seg in body.segments.items() if name != "neck"]
    items.sort(key=lambda it: it[0])
    base = track_id * 16
    for _, name in items:
        col = _part_color(name, look)
        pid = base + _PART_ID[name]
        if name == "torso":
            poly = _poly(body.torso)
            cv2.fillConvexPoly(img, poly, _shade(col, 0.8), cv2.LINE_AA, _SHIFT)
            inner = (
                body.torso.mean(0)
                + (body.torso - body.torso.mean(0)) * 0.8
                - np.array([0.04, 0.02]) * body.scale
            )
            cv2.fillConvexPoly(img, _poly(inner), col, cv2.LINE_AA, _SHIFT)
            sh, hp = (body.joints[5] + body.joints[6]) / 2, (body.joints[11] + body.joints[12]) / 2
            half = np.abs(body.torso[:, 0] - body.torso[:, 0].mean()).max() * 0.85
            for k in range(look["stripes"]):
                a, b = sh + (hp - sh) * (0.15 + 0.2 * k), sh + (hp - sh) * (0.22 + 0.2 * k)
                quad = [a - (half, 0), a + (half, 0), b + (half, 0), b - (half, 0)]
                cv2.fillConvexPoly(img, _poly(quad), look["stripe"],
                                   cv2.LINE_AA, _SHIFT)  # fmt: skip
            cv2.fillConvexPoly(code, poly, pid, cv2.LINE_8, _SHIFT)
        elif name == "head":
            c, (rx, ry), facing, face_x = body.head
            axes = (max(1, int(rx * _ONE)), max(1, int(ry * _ONE)))
            cv2.ellipse(img, _fx(c), axes, 0, 0, 360, look["hair"], -1, cv2.LINE_AA, _SHIFT)
            if facing > -0.25:
                fc = c + np.array([face_x * 0.35 * rx, 0.15 * ry])
                fa = (max(1, int(rx * (0.45 + 0.4 * max(0.0, facing)) * _ONE)), max(1, int(ry * 0.8 * _ONE)))
                cv2.ellipse(img, _fx(fc), fa, 0, 0, 360, look["skin"], -1, cv2.LINE_AA, _SHIFT)
                dot = max(1, int(0.12 * rx * _ONE))
                for k in (1, 2):
                    if body.face_front[k]:
                        cv2.circle(img, _fx(body.joints[k]), dot, (25, 20, 20), -1, cv2.LINE_AA, _SHIFT)
                if body.face_front[0]:
                    cv2.circle(
                        img, _fx(body.joints[0]), dot, _shade(look["skin"], 0.7), -1, cv2.LINE_AA, _SHIFT
                    )
            cv2.ellipse(code, _fx(c), axes, 0, 0, 360, pid, -1, cv2.LINE_8, _SHIFT)
        else:
            p0, p1, r0, r1, _ = body.segments[name]
            _capsule(img, p0, p1, r0, r1, _shade(col, 0.7), True)
            d = p1 - p0
            n = float(math.hypot(d[0], d[1])) or 1.0
            off = np.array([-d[1], d[0]]) / n * (0.3 if d[1] >= 0 else -0.3)
            _capsule(img, p0 + off * r0, p1 + off * r1, 0.55 * r0, 0.55 * r1, col, True)
            if look["stripes"] and col == look["shirt"] and name.endswith("arm"):
                for t in (0.35, 0.7):
                    a, b = p0 + d * t, p0 + d * (t + 0.1)
                    nv = np.array([-d[1], d[0]]) / n * 0.9
                    quad = [a + nv * r0, b + nv * r0, b - nv * r0, a - nv * r0]
                    cv2.fillConvexPoly(img, _poly(quad), look["stripe"],
                                       cv2.LINE_AA, _SHIFT)  # fmt: skip
            _capsule(code, p0, p1, r0, r1, pid, False)


def person_extent(body: ProjectedBody, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel ROI ``(x0, y0, x1, y1)`` (exclusive ends) containing everything drawn for ``body``, clipped."""
    m = 0.09 * body.scale + 2
    pts = np.concatenate([body.joints, body.torso])
    x0, y0 = np.floor(pts.min(0) - m).astype(int)
    x1, y1 = np.ceil(pts.max(0) + m).astype(int) + 1
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def keypoint_visibility(code: np.ndarray, body: ProjectedBody, track_id: int) -> np.ndarray:
    """``uint8 (17,)`` COCO visibility of ``body``'s keypoints given the finished code map.

    0: outside the frame; 2: the pixel under the keypoint shows this person's own part that carries the joint
    (a face point must also face the camera; a shoulder/hip seen on the torso must not be turned well away);
    1 otherwise (hidden by someone else or by the person's own body).
    """
    h, w = code.shape
    v = np.zeros(17, np.uint8)
    for k in range(17):
        x, y = body.joints[k]
        if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
            continue
        c = int(code[int(math.floor(y + 0.5)), int(math.floor(x + 0.5))])
        ok = (c >> 4) == track_id and (c & 15) in PART_OF_KEYPOINT[k]
        if ok and k < 5:
            ok = bool(body.face_front[k])
        if ok and k in _TRUNK_HIDDEN_DEPTH and (c & 15) == _TORSO:
            ok = body.joint_depth[k] > _TRUNK_HIDDEN_DEPTH[k]
        v[k] = 2 if ok else 1
    return v


class CameraNoise:
    """Blur and Gaussian sensor noise. The noise of each frame is a random crop of one of a few
    pre-drawn fields (drawing fresh normal noise every frame would dominate the render time)."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, noise_sigma: float, blur_sigma: float,
                 fields: int = 3, pad: int = 32) -> None:  # fmt: skip
        self.rng, self.w, self.h, self.pad, self.blur = rng, width, height, pad, blur_sigma
        self.fields = []
        if noise_sigma > 0:
            for _ in range(fields):
                f = rng.standard_normal((height + pad, width + pad, 3), dtype=np.float32) * noise_sigma
                self.fields.append(np.rint(f).astype(np.int16))

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """A new ``uint8 (H, W, 3)`` image: ``img`` blurred, plus noise."""
        out = cv2.GaussianBlur(img, (0, 0), self.blur) if self.blur > 0 else img.copy()
        if self.fields:
            k, dy, dx = self.rng.integers(len(self.fields)), *self.rng.integers(0, self.pad + 1, 2)
            noise = self.fields[int(k)][dy : dy + self.h, dx : dx + self.w]
            out = np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        return out
