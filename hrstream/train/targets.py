"""Pose training targets and loss: the official gaussian heatmaps and ``JointsMSELoss``.

Conventions (``lib/dataset/JointsDataset.py`` and ``lib/core/loss.py`` of the official HRNet code):

* Joints are ``(K, 2)`` (x, y) pixels of the *input crop* (pixel centres at integers).
* A joint lands on the heatmap at ``int(x / stride + 0.5)``, ``int(y / stride + 0.5)`` with
  ``stride = image_size / heatmap_size`` per axis; its target is an unnormalised gaussian (peak 1.0) of
  ``sigma`` heatmap pixels, cut to a ``(6 sigma + 1)`` square.
* ``target_weight`` is 1 for a labelled joint (visibility > 0) and 0 for an unlabelled one or one whose
  gaussian square lies wholly outside the heatmap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["JointsMSELoss", "generate_target"]


def generate_target(
    joints: np.ndarray,
    joints_vis: np.ndarray,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The official gaussian heatmap targets.

    Args:
        joints: ``(K, 2)`` (or ``(K, 3)``) crop pixels.
        joints_vis: ``(K,)`` or ``(K, >=1)``; a joint counts as labelled where the first value is > 0.
        image_size: ``(w, h)`` of the network input; heatmap_size: ``(w, h)`` of its output.
        sigma: gaussian standard deviation in heatmap pixels (official: 2).

    Returns:
        ``target`` ``float32 (K, h, w)`` and ``target_weight`` ``float32 (K, 1)``.
    """
    joints = np.asarray(joints, dtype=np.float64).reshape(len(joints), -1)
    vis = np.asarray(joints_vis, dtype=np.float32).reshape(len(joints), -1)[:, 0]
    k = len(joints)
    hm_w, hm_h = int(heatmap_size[0]), int(heatmap_size[1])
    stride_x = float(image_size[0]) / hm_w
    stride_y = float(image_size[1]) / hm_h
    target_weight = (vis > 0).astype(np.float32).reshape(k, 1)
    target = np.zeros((k, hm_h, hm_w), dtype=np.float32)
    tmp = sigma * 3
    size = int(2 * tmp + 1)
    ax = np.arange(size, dtype=np.float32)
    c0 = size // 2
    g = np.exp(-((ax[None, :] - c0) ** 2 + (ax[:, None] - c0) ** 2) / (2 * sigma**2)).astype(np.float32)
    for j in range(k):
        mu_x = int(joints[j, 0] / stride_x + 0.5)
        mu_y = int(joints[j, 1] / stride_y + 0.5)
        ul = (int(mu_x - tmp), int(mu_y - tmp))
        br = (int(mu_x + tmp + 1), int(mu_y + tmp + 1))
        if ul[0] >= hm_w or ul[1] >= hm_h or br[0] < 0 or br[1] < 0:
            target_weight[j] = 0.0
            continue
        if target_weight[j, 0] <= 0.5:
            continue
        gx0, gx1 = max(0, -ul[0]), min(br[0], hm_w) - ul[0]
        gy0, gy1 = max(0, -ul[1]), min(br[1], hm_h) - ul[1]
        ix0, ix1 = max(0, ul[0]), min(br[0], hm_w)
        iy0, iy1 = max(0, ul[1]), min(br[1], hm_h)
        target[j, iy0:iy1, ix0:ix1] = g[gy0:gy1, gx0:gx1]
    return target, target_weight


class JointsMSELoss(nn.Module):
    """The official ``JointsMSELoss``: ``0.5 * mean((w * (pred - target))^2)`` over batch, joints and pixels.

    ``forward(output (N, K, h, w), target (N, K, h, w), target_weight (N, K, 1))`` -> scalar. The official
    per-joint loop (mean over ``N*h*w`` per joint, then the mean over joints) equals this single mean.
    """

    def __init__(self, use_target_weight: bool = True) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor
    ) -> torch.Tensor:
        pred = output.float()
        tgt = target.float()
        if self.use_target_weight:
            w = target_weight.float().reshape(pred.shape[0], pred.shape[1], 1, 1)
            pred = pred * w
            tgt = tgt * w
        return 0.5 * torch.mean((pred - tgt) ** 2)
