"""Heatmap decoding (argmax + refinement + back to image pixels) and the flip test.

Every function accepts numpy arrays or torch tensors; torch inputs are processed batched on their device
and torch tensors come back. Heatmaps are ``(n, K, h, w)``; ``center``/``scale`` are ``(n, 2)`` in the
official convention (``scale`` = padded, aspect-fixed box size / 200; see :mod:`hrstream.pose.crops`).
Returned ``coords`` are ``(n, K, 2)`` (x, y) image pixels (pixel centres at integers) and ``scores`` are
``(n, K, 1)`` heatmap maxima (the official ``maxvals``).

Methods:

* ``"msra"``: the official ``get_final_preds`` (argmax; with ``post_process`` a quarter-pixel step toward
  the higher neighbour when ``1 < x < w-1`` and ``1 < y < h-1``; inverse official affine). A joint whose
  maximum is not positive gets the heatmap origin mapped to the image, as the official code does.
* ``"dark"``: MMPose's unbiased decoding (DARK): gaussian modulation of the heatmaps (``kernel``, default
  11), log, then a second-order Taylor step at the argmax; same affine as ``"msra"``.
* ``"udp"``: MMPose's UDP decoding for Gaussian heatmaps (``post_dark_udp``) with the UDP inverse
  transform (``scale*200 / (size - 1)``). Crops must then be made with the UDP affine.

For ``"dark"`` and ``"udp"`` a joint without positive response starts from ``(-1, -1)`` (MMPose).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, get_args

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hrstream.models.meta import Decoder
from hrstream.pose._decode_np import decode_dark_np, decode_msra_np, decode_udp_np
from hrstream.pose.crops import PIXEL_STD

__all__ = ["DECODE_METHODS", "decode_heatmaps", "flip_back", "flip_test_merge"]

DECODE_METHODS: tuple[str, ...] = get_args(Decoder)
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def flip_back(heatmaps: ArrayT, flip_pairs: np.ndarray | Sequence[Sequence[int]]) -> ArrayT:
    """The official ``flip_back``: mirror ``(n, K, h, w)`` heatmaps along x and swap left/right joints.

    Returns a new array/tensor of the input's kind; the input is not modified.
    """
    pairs = np.asarray(flip_pairs, dtype=np.int64).reshape(-1, 2)
    perm = np.arange(heatmaps.shape[1])
    perm[pairs[:, 0]], perm[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    if isinstance(heatmaps, torch.Tensor):
        return heatmaps.flip(3)[:, torch.as_tensor(perm, device=heatmaps.device)]
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (n, K, h, w), got {heatmaps.shape}")
    return np.ascontiguousarray(heatmaps[:, perm, :, ::-1])


def flip_test_merge(
    heatmaps: ArrayT,
    flipped_heatmaps: ArrayT,
    flip_pairs: np.ndarray | Sequence[Sequence[int]],
    shift: bool = True,
) -> ArrayT:
    """The official flip test: ``(heatmaps + flip_back(flipped_heatmaps)) / 2``.

    ``flipped_heatmaps`` is the model output on the horizontally flipped crops. With ``shift``
    (``TEST.SHIFT_HEATMAP``) the flipped-back heatmaps move one pixel right first (column 0 keeps its
    value), as ``output_flipped[:, :, :, 1:] = output_flipped[:, :, :, :-1]``.
    """
    back = flip_back(flipped_heatmaps, flip_pairs)
    if shift:
        if isinstance(back, torch.Tensor):
            back = torch.cat([back[..., :1], back[..., :-1]], dim=3)
        else:
            back = np.concatenate([back[..., :1], back[..., :-1]], axis=3)
    return (heatmaps + back) * 0.5


def decode_heatmaps(
    heatmaps: ArrayT,
    center: np.ndarray | torch.Tensor,
    scale: np.ndarray | torch.Tensor,
    method: Decoder = "msra",
    *,
    post_process: bool = True,
    kernel: int = 11,
) -> tuple[ArrayT, ArrayT]:
    """Decode ``(n, K, h, w)`` heatmaps to image keypoints.

    Args:
        heatmaps: numpy array or torch tensor (any float dtype).
        center, scale: ``(n, 2)`` official convention; numpy or torch.
        method: ``"msra"``, ``"dark"`` or ``"udp"`` (see the module docstring).
        post_process: for ``"msra"``, the quarter-pixel refinement (``TEST.POST_PROCESS``).
        kernel: gaussian kernel size for ``"dark"`` / ``"udp"`` (odd).

    Returns:
        ``coords`` ``(n, K, 2)`` float32 image pixels and ``scores`` ``(n, K, 1)`` float32, numpy when
        ``heatmaps`` is numpy, else torch tensors on ``heatmaps``' device.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"decode method must be one of {DECODE_METHODS}, got {method!r}")
    if kernel % 2 != 1:
        raise ValueError(f"kernel must be odd, got {kernel}")
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (n, K, h, w), got {tuple(heatmaps.shape)}")
    if not isinstance(heatmaps, torch.Tensor):
        hm = np.asarray(heatmaps, dtype=np.float32)
        c = np.asarray(center.cpu() if isinstance(center, torch.Tensor) else center, np.float32).reshape(
            -1, 2
        )
        s = np.asarray(scale.cpu() if isinstance(scale, torch.Tensor) else scale, np.float32).reshape(-1, 2)
        if method == "msra":
            return decode_msra_np(hm, c, s, post_process=post_process)
        if method == "dark":
            return decode_dark_np(hm, c, s, kernel=kernel)
        return decode_udp_np(hm, c, s, kernel=kernel)
    return _decode_torch(heatmaps, center, scale, method, post_process, kernel)


# ---------------------------------------------------------------- torch (batched, on the device)


def _wide_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _argmax(hm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, k, _, w = hm.shape
    vals, idx = hm.reshape(n, k, -1).max(dim=2)
    return vals, idx % w, torch.div(idx, w, rounding_mode="floor")


def _at(hm: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``hm[n, k, y[n, k], x[n, k]]`` with indices clamped into the map."""
    h, w = hm.shape[2], hm.shape[3]
    flat = y.clamp(0, h - 1) * w + x.clamp(0, w - 1)
    return hm.reshape(hm.shape[0], hm.shape[1], -1).gather(2, flat.unsqueeze(2)).squeeze(2)


def _gauss_kernel(kernel: int, device: torch.device) -> torch.Tensor:
    g = torch.as_tensor(cv2.getGaussianKernel(kernel, 0).reshape(-1), dtype=torch.float32, device=device)
    return g


def _blur(hm: torch.Tensor, kernel: int, *, reflect: bool) -> torch.Tensor:
    """Separable gaussian blur (cv2's kernel for sigma 0) per map; zero or reflect-101 border."""
    n, k, h, w = hm.shape
    g = _gauss_kernel(kernel, hm.device)
    r = kernel // 2
    x = hm.reshape(n * k, 1, h, w)
    if reflect:
        x = F.pad(x, (r, r, r, r), mode="reflect" if min(h, w) > r else "replicate")
        x = F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    else:
        x = F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, r)), g.view(1, 1, -1, 1), padding=(r, 0))
    return x.reshape(n, k, h, w)


def _decode_torch(
    heatmaps: torch.Tensor,
    center: np.ndarray | torch.Tensor,
    scale: np.ndarray | torch.Tensor,
    method: str,
    post_process: bool,
    kernel: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    dev = heatmaps.device
    wide = _wide_dtype(dev)
    hm = heatmaps.detach().to(torch.float32)
    n, k, h, w = hm.shape
    c = torch.as_tensor(center, device=dev).reshape(-1, 2).to(torch.float32).to(wide)
    s = torch.as_tensor(scale, device=dev).reshape(-1, 2).to(torch.float32).to(wide)
    maxvals, ix, iy = _argmax(hm)
    positive = maxvals > 0
    if method == "msra":
        x = torch.where(positive, ix, torch.zeros_like(ix))
        y = torch.where(positive, iy, torch.zeros_like(iy))
        coords = torch.stack([x, y], dim=2).to(torch.float32)
        if post_process:
            inside = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
            dx = _at(hm, y, x + 1) - _at(hm, y, x - 1)
            dy = _at(hm, y + 1, x) - _at(hm, y - 1, x)
            step = torch.stack([torch.sign(dx), torch.sign(dy)], dim=2) * 0.25
            coords = coords + torch.where(inside.unsqueeze(2), step, torch.zeros_like(step))
        # Official inverse affine: a similarity scaled by scale[0]*200 / w in both axes.
        f = (s[:, 0] * PIXEL_STD / w).view(n, 1)
        out_x = c[:, 0:1] + (coords[..., 0].to(wide) - w * 0.5) * f
        out_y = c[:, 1:2] + (coords[..., 1].to(wide) - h * 0.5) * f
    else:
        x = torch.where(positive, ix, torch.full_like(ix, -1))
        y = torch.where(positive, iy, torch.full_like(iy, -1))
        coords = torch.stack([x, y], dim=2).to(wide)
        offset = _dark_offsets(hm, x, y, kernel) if method == "dark" else _udp_offsets(hm, x, y, kernel)
        coords = coords + offset.to(wide)
        if method == "dark":
            f = (s[:, 0] * PIXEL_STD / w).view(n, 1)
            out_x = c[:, 0:1] + (coords[..., 0] - w * 0.5) * f
            out_y = c[:, 1:2] + (coords[..., 1] - h * 0.5) * f
        else:
            size = s * PIXEL_STD
            out_x = coords[..., 0] * (size[:, 0:1] / (w - 1.0)) + c[:, 0:1] - size[:, 0:1] * 0.5
            out_y = coords[..., 1] * (size[:, 1:2] / (h - 1.0)) + c[:, 1:2] - size[:, 1:2] * 0.5
    preds = torch.stack([out_x, out_y], dim=2).to(torch.float32)
    return preds, maxvals.unsqueeze(2)


def _solve_step(
    dx: torch.Tensor, dy: torch.Tensor, dxx: torch.Tensor, dxy: torch.Tensor, dyy: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``-inv([[dxx+eps, dxy], [dxy, dyy+eps]]) @ [dx, dy]`` in closed form; also the determinant."""
    a, d = dxx + eps, dyy + eps
    det = a * d - dxy * dxy
    safe = torch.where(det == 0, torch.ones_like(det), det)
    ox = -(d * dx - dxy * dy) / safe
    oy = -(-dxy * dx + a * dy) / safe
    return ox, oy, det


def _dark_offsets(hm: torch.Tensor, x: torch.Tensor, y: torch.Tensor, kernel: int) -> torch.Tensor:
    n, k, h, w = hm.shape
    hm64 = hm.to(_wide_dtype(hm.device))
    origin_max = hm64.amax(dim=(2, 3), keepdim=True)
    blurred = _blur(hm, kernel, reflect=False).to(hm64.dtype)
    blurred = blurred * (origin_max / blurred.amax(dim=(2, 3), keepdim=True))
    lg = torch.log(torch.clamp(blurred.to(torch.float32), min=1e-10)).to(hm64.dtype)
    at = lambda yy, xx: _at(lg, yy, xx)  # noqa: E731
    dx = 0.5 * (at(y, x + 1) - at(y, x - 1))
    dy = 0.5 * (at(y + 1, x) - at(y - 1, x))
    dxx = 0.25 * (at(y, x + 2) - 2 * at(y, x) + at(y, x - 2))
    dxy = 0.25 * (at(y + 1, x + 1) - at(y - 1, x + 1) - at(y + 1, x - 1) + at(y - 1, x - 1))
    dyy = 0.25 * (at(y + 2, x) - 2 * at(y, x) + at(y - 2, x))
    ox, oy, det = _solve_step(dx, dy, dxx, dxy, dyy, 0.0)
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det != 0)
    off = torch.stack([ox, oy], dim=2)
    return torch.where(ok.unsqueeze(2), off, torch.zeros_like(off))


def _udp_offsets(hm: torch.Tensor, x: torch.Tensor, y: torch.Tensor, kernel: int) -> torch.Tensor:
    lg = torch.log(torch.clamp(_blur(hm, kernel, reflect=True), 0.001, 50.0))
    lg = F.pad(lg, (1, 1, 1, 1), mode="replicate").to(_wide_dtype(hm.device))
    xp, yp = x + 1, y + 1  # positions in the edge-padded map
    at = lambda yy, xx: _at(lg, yy, xx)  # noqa: E731
    i_ = at(yp, xp)
    ix1, ix1_ = at(yp, xp + 1), at(yp, xp - 1)
    iy1, iy1_ = at(yp + 1, xp), at(yp - 1, xp)
    ix1y1, ix1_y1_ = at(yp + 1, xp + 1), at(yp - 1, xp - 1)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    ox, oy, _ = _solve_step(dx, dy, dxx, dxy, dyy, float(np.finfo(np.float32).eps))
    return torch.stack([ox, oy], dim=2)
