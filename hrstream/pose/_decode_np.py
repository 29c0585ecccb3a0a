"""Numpy reference decoders, written to follow the official HRNet and MMPose code step by step.

Shapes: heatmaps ``float32 (n, K, h, w)``, center/scale ``float32 (n, 2)``; returns ``preds float32
(n, K, 2)`` image pixels and ``maxvals float32 (n, K, 1)``. See :mod:`hrstream.pose.decode`.
"""

from __future__ import annotations

import cv2
import numpy as np

from hrstream.pose.crops import PIXEL_STD, get_affine_transform

__all__ = ["decode_dark_np", "decode_msra_np", "decode_udp_np", "get_max_preds"]


def get_max_preds(heatmaps: np.ndarray, *, invalid: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of each map: ``coords float32 (n, K, 2)`` heatmap pixels and ``maxvals (n, K, 1)``.

    Joints whose maximum is not positive get ``invalid`` for both coordinates (official: 0, MMPose: -1).
    """
    n, k, _, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = np.argmax(flat, axis=2)
    maxvals = np.amax(flat, axis=2).reshape(n, k, 1)
    coords = np.stack([idx % w, idx // w], axis=2).astype(np.float32)
    coords = np.where(np.tile(maxvals > 0.0, (1, 1, 2)), coords, np.float32(invalid)).astype(np.float32)
    return coords, maxvals


def _to_image(coords: np.ndarray, center: np.ndarray, scale: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Official ``transform_preds``: inverse ``get_affine_transform`` per item, float32 result."""
    h, w = hw
    out = np.zeros(coords.shape, dtype=np.float32)
    for i in range(coords.shape[0]):
        t = get_affine_transform(center[i], scale[i], 0.0, (w, h), inv=True)
        pts = np.concatenate([coords[i].astype(np.float64), np.ones((coords.shape[1], 1))], axis=1)
        out[i] = pts @ t.T
    return out


def decode_msra_np(
    heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray, *, post_process: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The official ``get_final_preds``."""
    coords, maxvals = get_max_preds(heatmaps)
    n, k, h, w = heatmaps.shape
    if post_process:
        for i in range(n):
            for j in range(k):
                hm = heatmaps[i, j]
                px = int(np.floor(coords[i, j, 0] + 0.5))
                py = int(np.floor(coords[i, j, 1] + 0.5))
                if 1 < px < w - 1 and 1 < py < h - 1:
                    diff = np.array([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]])
                    coords[i, j] += np.sign(diff) * 0.25
    return _to_image(coords, center, scale, (h, w)), maxvals


def _gaussian_modulation(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """MMPose ``_gaussian_blur``: blur with a zero border, then rescale to the original maximum."""
    border = (kernel - 1) // 2
    out = heatmaps.copy()
    n, k, h, w = heatmaps.shape
    for i in range(n):
        for j in range(k):
            origin_max = np.max(heatmaps[i, j])
            dr = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
            dr[border:-border, border:-border] = heatmaps[i, j]
            dr = cv2.GaussianBlur(dr, (kernel, kernel), 0)
            out[i, j] = dr[border:-border, border:-border]
            out[i, j] *= origin_max / np.max(out[i, j])
    return out


def _taylor(lg: np.ndarray, coord: np.ndarray) -> np.ndarray:
    h, w = lg.shape
    px, py = int(coord[0]), int(coord[1])
    if 1 < px < w - 2 and 1 < py < h - 2:
        dx = 0.5 * (lg[py, px + 1] - lg[py, px - 1])
        dy = 0.5 * (lg[py + 1, px] - lg[py - 1, px])
        dxx = 0.25 * (lg[py, px + 2] - 2 * lg[py, px] + lg[py, px - 2])
        dxy = 0.25 * (lg[py + 1, px + 1] - lg[py - 1, px + 1] - lg[py + 1, px - 1] + lg[py - 1, px - 1])
        dyy = 0.25 * (lg[py + 2, px] - 2 * lg[py, px] + lg[py - 2, px])
        if dxx * dyy - dxy**2 != 0:
            hessian = np.array([[dxx, dxy], [dxy, dyy]])
            coord = coord + (-np.linalg.inv(hessian) @ np.array([dx, dy]))
    return coord


def decode_dark_np(
    heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray, *, kernel: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """MMPose ``keypoints_from_heatmaps(..., post_process='unbiased')`` (DARK), official affine."""
    coords, maxvals = get_max_preds(heatmaps, invalid=-1.0)
    n, k, h, w = heatmaps.shape
    lg = np.log(np.maximum(_gaussian_modulation(heatmaps, kernel), 1e-10))
    for i in range(n):
        for j in range(k):
            coords[i, j] = _taylor(lg[i, j], coords[i, j])
    return _to_image(coords, center, scale, (h, w)), maxvals


def decode_udp_np(
    heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray, *, kernel: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """MMPose ``keypoints_from_heatmaps(..., use_udp=True, target_type='GaussianHeatmap')``."""
    coords, maxvals = get_max_preds(heatmaps, invalid=-1.0)
    n, k, h, w = heatmaps.shape
    lg = heatmaps.astype(np.float32).copy()
    for i in range(n):
        for j in range(k):
            lg[i, j] = cv2.GaussianBlur(lg[i, j], (kernel, kernel), 0)
    lg = np.log(np.clip(lg, 0.001, 50))
    pad = np.pad(lg, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    eye_eps = np.finfo(np.float32).eps * np.eye(2)
    for i in range(n):
        for j in range(k):
            # Positions in the padded map; a joint at (-1, -1) reads the padded corner (clamped).
            xp = int(np.clip(coords[i, j, 0] + 1, 1, w))
            yp = int(np.clip(coords[i, j, 1] + 1, 1, h))
            m = pad[i, j]
            i_ = m[yp, xp]
            dx = 0.5 * (m[yp, xp + 1] - m[yp, xp - 1])
            dy = 0.5 * (m[yp + 1, xp] - m[yp - 1, xp])
            dxx = m[yp, xp + 1] - 2 * i_ + m[yp, xp - 1]
            dyy = m[yp + 1, xp] - 2 * i_ + m[yp - 1, xp]
            dxy = 0.5 * (
                m[yp + 1, xp + 1]
                - m[yp, xp + 1]
                - m[yp + 1, xp]
                + 2 * i_
                - m[yp, xp - 1]
                - m[yp - 1, xp]
                + m[yp - 1, xp - 1]
            )
            hess = np.array([[dxx, dxy], [dxy, dyy]], dtype=np.float64) + eye_eps
            coords[i, j] -= np.linalg.inv(hess) @ np.array([dx, dy], dtype=np.float64)
    size = scale.astype(np.float64) * PIXEL_STD
    preds = np.empty(coords.shape, dtype=np.float32)
    preds[..., 0] = (
        coords[..., 0] * (size[:, None, 0] / (w - 1.0)) + center[:, None, 0] - size[:, None, 0] * 0.5
    )
    preds[..., 1] = (
        coords[..., 1] * (size[:, None, 1] / (h - 1.0)) + center[:, None, 1] - size[:, None, 1] * 0.5
    )
    return preds, maxvals
