"""Top-down person crops: box -> (center, scale) -> affine -> warped crop.

Conventions (those of the official HRNet code, ``lib/dataset/coco.py`` and ``lib/utils/transforms.py``):

* Pixel coordinates put the centre of the top-left pixel at ``(0, 0)``.
* A box ``xywh`` is ``(x, y, w, h)`` with ``w = x2 - x1`` (no ``+ 1``); its center is ``(x + w/2, y + h/2)``.
* ``scale`` is ``(2,)`` per box: the aspect-fixed, padded box size in units of ``pixel_std`` (200 px), so the
  region cropped is ``scale * 200`` pixels wide and tall around ``center``.
* The standard ("msra") affine maps the region's centre to ``(w_out/2, h_out/2)`` and scales by
  ``w_out / (scale[0]*200)`` in both axes; the UDP affine maps ``[c - S/2, c + S/2]`` onto ``[0, size-1]``
  (unbiased data processing, scale by ``size - 1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PIXEL_STD",
    "box_to_center_scale",
    "crop_batch",
    "crop_cpu",
    "get_affine_transform",
    "get_udp_warp_matrix",
    "xyxy_to_xywh",
]

PIXEL_STD = 200.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """``(n, 4)`` xyxy -> ``(n, 4)`` xywh with ``w = x2 - x1``, ``h = y2 - y1`` (float64)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def box_to_center_scale(
    boxes: np.ndarray,
    *,
    aspect_ratio: float,
    box_format: str = "xywh",
    padding: float = 1.25,
    pixel_std: float = PIXEL_STD,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes to the official ``(center, scale)`` (``_box2cs`` / ``_xywh2cs`` of ``lib/dataset/coco.py``).

    Args:
        boxes: ``(n, 4)`` boxes, ``xywh`` or ``xyxy`` as ``box_format`` says.
        aspect_ratio: model input ``width / height`` (192/256 = 0.75 for 256x192). The shorter side of the
            box is grown so the box has this aspect ratio (the center is kept).
        padding: the official 1.25 enlargement, applied after the aspect fix.
        pixel_std: the official 200.

    Returns:
        ``center`` ``float32 (n, 2)`` pixels and ``scale`` ``float32 (n, 2)`` = padded size / ``pixel_std``.
    """
    if box_format not in ("xywh", "xyxy"):
        raise ValueError(f"box_format must be 'xywh' or 'xyxy', got {box_format!r}")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if box_format == "xyxy":
        b = xyxy_to_xywh(b)
    x, y, w, h = (b[:, i].copy() for i in range(4))
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=1).astype(np.float32)
    wider = w > aspect_ratio * h
    taller = w < aspect_ratio * h
    h = np.where(wider, w / aspect_ratio, h)
    w = np.where(taller, h * aspect_ratio, w)
    scale = np.stack([w / pixel_std, h / pixel_std], axis=1).astype(np.float32)
    # The official code pads every box whose center x is not the sentinel -1.
    scale = np.where(center[:, :1] != -1, scale * np.float32(padding), scale).astype(np.float32)
    return center, scale


def _rotate(vec: Sequence[float], rot_rad: float) -> np.ndarray:
    sn, cs = math.sin(rot_rad), math.cos(rot_rad)
    return np.array([vec[0] * cs - vec[1] * sn, vec[0] * sn + vec[1] * cs], dtype=np.float32)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def get_affine_transform(
    center: np.ndarray,
    scale: np.ndarray,
    rot: float,
    output_size: Sequence[int],
    shift: Sequence[float] = (0.0, 0.0),
    inv: bool = False,
) -> np.ndarray:
    """The official ``get_affine_transform``: ``(2, 3)`` float64 mapping image pixels to crop pixels.

    Args:
        center: ``(2,)`` pixels; scale: ``(2,)`` in units of 200 px (only ``scale[0]`` sets the zoom).
        rot: degrees, counter-clockwise; output_size: ``(w, h)`` of the crop.
        shift: fraction of the region size to move the center by.
        inv: return the inverse map (crop pixels -> image pixels).

    The three point pairs are built in float32 and solved by ``cv2.getAffineTransform``, as in the
    official code, so the result matches it to the last bit.
    """
    center = np.asarray(center, dtype=np.float32).reshape(2)
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    if scale.size == 1:
        scale = np.repeat(scale, 2)
    shift_arr = np.asarray(shift, dtype=np.float32).reshape(2)
    scale_px = scale * np.float32(PIXEL_STD)
    src_w = float(scale_px[0])
    dst_w, dst_h = float(output_size[0]), float(output_size[1])
    rot_rad = math.pi * rot / 180.0
    src_dir = _rotate([0.0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0.0, dst_w * -0.5], dtype=np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center + scale_px * shift_arr
    src[1] = center + src_dir + scale_px * shift_arr
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5], dtype=np.float32) + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inv:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def get_udp_warp_matrix(
    center: np.ndarray, scale: np.ndarray, rot: float, output_size: Sequence[int], *, inv: bool = False
) -> np.ndarray:
    """UDP affine (unbiased data processing): ``(2, 3)`` float64 image pixels -> crop pixels.

    The region ``center +- scale*200/2`` maps onto ``[0, output_size - 1]`` per axis (MMPose
    ``get_warp_matrix(rot, 2*center, output_size - 1, scale*200)``); ``rot`` in degrees.
    """
    c = np.asarray(center, dtype=np.float64).reshape(2)
    s = np.asarray(scale, dtype=np.float64).reshape(2) * PIXEL_STD
    sx = (float(output_size[0]) - 1.0) / s[0]
    sy = (float(output_size[1]) - 1.0) / s[1]
    th = math.radians(rot)
    cs, sn = math.cos(th), math.sin(th)
    m = np.array(
        [
            [cs * sx, -sn * sx, sx * (-c[0] * cs + c[1] * sn + 0.5 * s[0])],
            [sn * sy, cs * sy, sy * (-c[0] * sn - c[1] * cs + 0.5 * s[1])],
        ]
    )
    return cv2.invertAffineTransform(m) if inv else m


def _affines(center: np.ndarray, scale: np.ndarray, output_size: Sequence[int], udp: bool) -> np.ndarray:
    c = np.asarray(center, dtype=np.float32).reshape(-1, 2)
    s = np.asarray(scale, dtype=np.float32).reshape(-1, 2)
    fn = get_udp_warp_matrix if udp else get_affine_transform
    out = np.zeros((len(c), 2, 3), dtype=np.float64)
    for i in range(len(c)):
        out[i] = fn(c[i], s[i], 0.0, output_size)
    return out


def crop_cpu(
    image_rgb: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    output_size: Sequence[int],
    *,
    udp: bool = False,
) -> np.ndarray:
    """The official crop: ``cv2.warpAffine`` (INTER_LINEAR, zero border) of one box.

    Args:
        image_rgb: ``uint8 (H, W, 3)``; center ``(2,)``; scale ``(2,)``; output_size ``(w, h)``.
        udp: use the UDP affine instead of the official one.

    Returns:
        ``uint8 (h, w, 3)`` crop, same channel order as the input.
    """
    trans = (get_udp_warp_matrix if udp else get_affine_transform)(center, scale, 0.0, output_size)
    w, h = int(output_size[0]), int(output_size[1])
    return cv2.warpAffine(image_rgb, trans, (w, h), flags=cv2.INTER_LINEAR)


def _as_chw_list(images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        return list(images.unbind(0))
    out = list(images)
    for t in out:
        if not isinstance(t, torch.Tensor) or t.ndim != 3 or t.shape[0] != 3:
            raise ValueError("images must be a (B, 3, H, W) tensor or a list of (3, H, W) tensors")
    return out


def crop_batch(
    images: torch.Tensor | Sequence[torch.Tensor],
    frame_idx: np.ndarray | Sequence[int],
    center: np.ndarray,
    scale: np.ndarray,
    output_size: Sequence[int],
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    udp: bool = False,
) -> torch.Tensor:
    """Crop and normalise many boxes from many frames on the images' device (``grid_sample``).

    Args:
        images: ``(B, 3, H, W)`` tensor or a list of ``(3, H_i, W_i)`` tensors, RGB, values in 0..255
            (uint8 or float), all on one device.
        frame_idx: ``(n,)`` which image each box comes from.
        center, scale: ``(n, 2)`` in the official convention (see :func:`box_to_center_scale`).
        output_size: ``(w, h)`` of the crops.
        mean, std: per-channel normalisation applied to ``pixel / 255``.
        udp: use the UDP affine instead of the official one.

    Returns:
        ``float32 (n, 3, h, w)`` ``(pixel/255 - mean) / std`` on the images' device. Sampling is
        bilinear with zero padding and pixel centres at integer coordinates, as ``cv2.warpAffine``
        with INTER_LINEAR and a constant 0 border (outside pixels are 0 before normalisation).
    """
    imgs = _as_chw_list(images)
    fidx = np.asarray(frame_idx, dtype=np.int64).reshape(-1)
    w_out, h_out = int(output_size[0]), int(output_size[1])
    device = imgs[0].device if imgs else torch.device("cpu")
    n = len(fidx)
    if n == 0:
        return torch.zeros((0, 3, h_out, w_out), dtype=torch.float32, device=device)
    # Crop pixel -> image pixel maps, then conjugated into grid_sample's normalised coordinates
    # (align_corners=False: x_norm = (2x + 1) / size - 1).
    inv = np.linalg.inv(
        np.concatenate(
            [_affines(center, scale, output_size, udp), np.tile([[[0.0, 0.0, 1.0]]], (n, 1, 1))], 1
        )
    )
    out_den = np.array(
        [[2.0 / w_out, 0.0, 1.0 / w_out - 1.0], [0.0, 2.0 / h_out, 1.0 / h_out - 1.0], [0, 0, 1]]
    )
    out_den_inv = np.linalg.inv(out_den)
    result = torch.empty((n, 3, h_out, w_out), dtype=torch.float32, device=device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    for b in np.unique(fidx):
        sel = np.nonzero(fidx == b)[0]
        img = imgs[int(b)]
        h_in, w_in = int(img.shape[1]), int(img.shape[2])
        in_norm = np.array(
            [[2.0 / w_in, 0.0, 1.0 / w_in - 1.0], [0.0, 2.0 / h_in, 1.0 / h_in - 1.0], [0, 0, 1]]
        )
        theta = (in_norm @ inv[sel] @ out_den_inv)[:, :2, :]
        theta_t = torch.as_tensor(theta, dtype=torch.float32, device=device)
        grid = F.affine_grid(theta_t, [len(sel), 3, h_out, w_out], align_corners=False)
        # One sampling call per frame: the crops' grids stacked along the height axis.
        grid = grid.reshape(1, len(sel) * h_out, w_out, 2)
        src = img.unsqueeze(0).to(torch.float32)
        crops = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        crops = crops.reshape(3, len(sel), h_out, w_out).permute(1, 0, 2, 3)
        result[torch.as_tensor(sel, device=device)] = crops
    return (result - mean_t) / std_t
