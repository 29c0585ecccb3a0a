"""Bottom-up (HigherHRNet) training targets and losses, as the official code builds them.

Targets (``lib/dataset/target_generators/target_generators.py``), one set per output resolution
(``DATASET.OUTPUT_SIZE``, e.g. 128 and 256 for a 512 input):

* :func:`heatmap_targets`: ``float32 (K, R, R)``: for every person and labelled joint inside the map, an
  unnormalised gaussian (peak 1) of ``sigma`` map pixels centred on the joint's integer pixel
  ``(int(x), int(y))``, cut to a ``6 sigma + 3`` square; overlapping people take the maximum.
* :func:`joint_indices`: ``int64 (M, K, 2)`` for the associative-embedding loss: per person, its labelled
  joints inside the map packed first, each as ``(index into the flattened tag maps, 1)``, the rest ``(0, 0)``.
  With ``TAG_PER_JOINT`` the index is ``k * R * R + y * R + x``, else ``y * R + x``.

Joints are ``(M, K, 3)`` ``(x, y, visibility)`` in map pixels (pixel centres at integers).

Losses (``lib/core/loss.py``):

* :class:`HeatmapLoss`: per image, the mean over joints and pixels of ``(pred - target)^2`` times the mask
  (0 where people without keypoints or crowds are).
* :class:`AELoss`: per image, ``pull`` = the mean over people of the mean squared distance of a person's tags
  to its mean tag; ``push`` = ``0.5 * mean over ordered pairs of distinct people of exp(-(mean_a - mean_b)^2)``
  (``exp``) or of ``max(0, 1 - |mean_a - mean_b|)`` (``max``); 0 without people, push 0 with one.
* :class:`BottomUpLoss` (``MultiLossFactory`` + the sum of ``do_train``): per stage, the heatmap loss times
  ``HEATMAPS_LOSS_FACTOR`` and the push and pull losses times their factors, averaged over the batch and summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["AELoss", "BottomUpLoss", "HeatmapLoss", "LossTerms", "heatmap_targets", "joint_indices"]


def _gaussian(sigma: float) -> np.ndarray:
    size = 6 * sigma + 3
    x = np.arange(0, size, 1, float)
    y = x[:, None]
    c = 3 * sigma + 1
    return np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2))


def heatmap_targets(joints: np.ndarray, num_joints: int, output_res: int, sigma: float = -1) -> np.ndarray:
    """Official ``HeatmapGenerator``: ``joints`` ``(M, K, >=3)`` map pixels -> ``float32 (K, R, R)``.

    ``sigma < 0`` means ``output_res / 64`` (the official default); the configs use 2.
    """
    if sigma < 0:
        sigma = output_res / 64
    g = _gaussian(sigma)
    res = int(output_res)
    hms = np.zeros((num_joints, res, res), dtype=np.float32)
    for person in np.asarray(joints, dtype=np.float64).reshape(-1, num_joints, joints.shape[-1]):
        for idx, pt in enumerate(person):
            if pt[2] <= 0:
                continue
            x, y = int(pt[0]), int(pt[1])
            if x < 0 or y < 0 or x >= res or y >= res:
                continue
            ul = int(np.round(x - 3 * sigma - 1)), int(np.round(y - 3 * sigma - 1))
            br = int(np.round(x + 3 * sigma + 2)), int(np.round(y + 3 * sigma + 2))
            gx0, gx1 = max(0, -ul[0]), min(br[0], res) - ul[0]
            gy0, gy1 = max(0, -ul[1]), min(br[1], res) - ul[1]
            x0, x1 = max(0, ul[0]), min(br[0], res)
            y0, y1 = max(0, ul[1]), min(br[1], res)
            hms[idx, y0:y1, x0:x1] = np.maximum(hms[idx, y0:y1, x0:x1], g[gy0:gy1, gx0:gx1])
    return hms


def joint_indices(
    joints: np.ndarray, max_people: int, output_res: int, tag_per_joint: bool = True
) -> np.ndarray:
    """Official ``JointsGenerator``: ``(M, K, >=3)`` map pixels -> ``int64 (max_people, K, 2)``.

    People beyond ``max_people`` are dropped (the official raises on them).
    """
    j = np.asarray(joints, dtype=np.float64)
    k = j.shape[1] if j.ndim == 3 else 0
    out = np.zeros((max_people, k, 2), dtype=np.int64)
    res = int(output_res)
    for i, person in enumerate(j[:max_people]):
        slot = 0
        for idx, pt in enumerate(person):
            x, y = int(pt[0]), int(pt[1])
            if pt[2] > 0 and 0 <= x < res and 0 <= y < res:
                flat = y * res + x
                out[i, slot] = (idx * res * res + flat if tag_per_joint else flat, 1)
                slot += 1
    return out


class HeatmapLoss(nn.Module):
    """``forward(pred (N, K, H, W), gt (N, K, H, W), mask (N, H, W))`` -> ``(N,)`` masked mean squared error."""

    def forward(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if pred.shape != gt.shape:
            raise ValueError(f"heatmaps {tuple(pred.shape)} and targets {tuple(gt.shape)} differ in shape")
        loss = (pred - gt) ** 2 * mask[:, None, :, :].expand_as(pred)
        return loss.mean(dim=3).mean(dim=2).mean(dim=1)


class AELoss(nn.Module):
    """Associative-embedding loss: ``forward(tags (N, T*H*W, D), joints (N, M, K, 2))`` -> ``(push, pull)``,
    each ``(N,)``. ``tags`` are the tag maps flattened as :func:`joint_indices` indexes them."""

    def __init__(self, loss_type: str = "exp") -> None:
        super().__init__()
        if loss_type not in ("exp", "max"):
            raise ValueError(f"AE loss type must be 'exp' or 'max', got {loss_type!r}")
        self.loss_type = loss_type

    def _one(self, tags: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        visible = joints[..., 1] > 0  # (M, K)
        counts = visible.sum(dim=1)
        people = counts > 0
        zero = tags.new_zeros(())
        n = int(people.sum())
        if n == 0:
            return zero, zero
        vis = visible[people].to(tags.dtype)[..., None]  # (n, K, 1)
        picked = tags[joints[people][..., 0]] * vis  # (n, K, D)
        mean = picked.sum(dim=1) / counts[people, None].to(tags.dtype)  # (n, D)
        per_person = (((picked - mean[:, None]) ** 2) * vis).sum(dim=(1, 2)) / (
            counts[people] * tags.shape[1]
        )
        pull = per_person.sum() / n
        if n == 1:
            return zero, pull
        diff = mean[None, :, :] - mean[:, None, :]  # (n, n, D); the official tags are 1-D (D = 1)
        if self.loss_type == "exp":
            push = torch.exp(-(diff**2)).sum() - n
        else:
            push = torch.clamp(1 - diff.abs(), min=0).sum() - n
        return push / ((n - 1) * n) * 0.5, pull

    def forward(self, tags: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pushes, pulls = zip(*(self._one(tags[i], joints[i]) for i in range(tags.shape[0])), strict=True)
        return torch.stack(pushes), torch.stack(pulls)


@dataclass
class LossTerms:
    """The total loss and its parts per stage (batch means; ``None`` where a stage has no such term)."""

    total: torch.Tensor
    heatmaps: list[torch.Tensor | None]
    push: list[torch.Tensor | None]
    pull: list[torch.Tensor | None]


class BottomUpLoss(nn.Module):
    """The official ``MultiLossFactory`` and the loss sum of ``do_train``.

    Args:
        num_joints: K. with_heatmaps_loss, with_ae_loss: per output stage (``LOSS.WITH_*``).
        heatmaps_factor, push_factor, pull_factor: per stage (``LOSS.*_FACTOR``). ae_type: ``exp`` / ``max``.

    ``forward(outputs, heatmaps, masks, joints)`` takes lists with one entry per stage: network outputs
    ``(N, C_i, R_i, R_i)``, targets ``(N, K, R_i, R_i)``, masks ``(N, R_i, R_i)``, joints ``(N, M, K, 2)``.
    """

    def __init__(
        self,
        num_joints: int,
        *,
        with_heatmaps_loss: Sequence[bool],
        with_ae_loss: Sequence[bool],
        heatmaps_factor: Sequence[float],
        push_factor: Sequence[float],
        pull_factor: Sequence[float],
        ae_type: str = "exp",
    ) -> None:
        super().__init__()
        n = len(with_heatmaps_loss)
        if not (len(with_ae_loss) == len(heatmaps_factor) == len(push_factor) == len(pull_factor) == n):
            raise ValueError("every LOSS list needs one entry per output stage")
        self.num_joints = num_joints
        self.with_heatmaps_loss = tuple(with_heatmaps_loss)
        self.with_ae_loss = tuple(with_ae_loss)
        self.factors = (tuple(heatmaps_factor), tuple(push_factor), tuple(pull_factor))
        self.heatmap_loss = HeatmapLoss()
        self.ae_loss = AELoss(ae_type)

    def forward(
        self,
        outputs: Sequence[torch.Tensor],
        heatmaps: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
        joints: Sequence[torch.Tensor],
    ) -> LossTerms:
        if not (len(outputs) == len(heatmaps) == len(masks) == len(joints) == len(self.with_ae_loss)):
            raise ValueError(
                f"expected {len(self.with_ae_loss)} stages of outputs, targets, masks and joints"
            )
        hm_f, push_f, pull_f = self.factors
        total = outputs[0].new_zeros(())
        terms: tuple[list[torch.Tensor | None], ...] = ([], [], [])
        for i, out in enumerate(outputs):
            offset = 0
            hm = push = pull = None
            if self.with_heatmaps_loss[i]:
                offset = self.num_joints
                hm = (self.heatmap_loss(out[:, : self.num_joints], heatmaps[i], masks[i]) * hm_f[i]).mean(
                    dim=0
                )
                total = total + hm
            if self.with_ae_loss[i]:
                tags = out[:, offset:].contiguous().view(out.shape[0], -1, 1)
                p, q = self.ae_loss(tags, joints[i])
                push, pull = (p * push_f[i]).mean(dim=0), (q * pull_f[i]).mean(dim=0)
                if hm is not None:  # do_train adds the AE terms of a stage only with its heatmap loss
                    total = total + push + pull
            for store, value in zip(terms, (hm, push, pull), strict=True):
                store.append(value)
        return LossTerms(total, *terms)
