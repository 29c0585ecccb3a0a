"""Grouping of bottom-up keypoints into people: the official HigherHRNet ``HeatmapParser`` (``lib/core/group.py``).

Steps, per image, with the official numerics (dtypes included, so results equal the official code's):

1. :func:`top_k` (torch, on the maps' device): non-maximum suppression by max-pooling (``NMS_KERNEL``,
   ``NMS_PADDING``: a pixel survives where it equals the maximum of its window), then the ``MAX_NUM_PEOPLE``
   highest peaks per joint with their tags.
2. :func:`match_by_tag` (numpy): joints are visited in the official joint order; peaks scoring above
   ``DETECTION_THRESHOLD`` join the person whose mean tag is nearest (a Hungarian assignment on
   ``round(distance) * 100 - score`` with ``USE_DETECTION_VAL``, :func:`~hrstream.pose.munkres.munkres_pairs`)
   when the distance is below ``TAG_THRESHOLD``, else start a new person.
3. :func:`adjust`: a quarter pixel towards the higher neighbour, plus the half-pixel offset of the official
   code (``x + 0.5 +- 0.25``).
4. :func:`refine` (torch): each person's undetected joints are taken at the best ``heatmap - round(tag
   distance to the person's mean tag)`` position, when that heatmap value is positive.

People are ``float32 (P, K, 3 + L)`` arrays: ``x, y`` in heatmap pixels (after :func:`adjust`, the official
half-pixel convention: ``x + 0.5`` is the centre of column ``x``), the heatmap value, and the ``L`` tag values
(one per tag map: e.g. the tags of the image and of its mirror with the flip test). A joint not found is all
zeros. The person score is the mean of the 17 heatmap values after :func:`adjust`, before :func:`refine`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hrstream.models.higherhrnet import BottomUpTestSpec
from hrstream.pose.munkres import munkres_pairs

__all__ = ["Peaks", "adjust", "match_by_tag", "nms", "parse", "refine", "top_k"]


@dataclass(eq=False)
class Peaks:
    """The ``M`` best peaks per joint of ``N`` images: ``tag_k`` ``float32 (N, K, M, L)``, ``loc_k``
    ``int64 (N, K, M, 2)`` (x, y heatmap pixels), ``val_k`` ``float32 (N, K, M)``."""

    tag_k: np.ndarray
    loc_k: np.ndarray
    val_k: np.ndarray


def nms(det: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """``(N, K, H, W)`` heatmaps with every value that is not the maximum of its window set to 0."""
    maxm = F.max_pool2d(det, kernel, 1, padding)
    return det * torch.eq(maxm, det).float()


def top_k(det: torch.Tensor, tag: torch.Tensor, test: BottomUpTestSpec) -> Peaks:
    """Peaks of ``det`` ``(N, K, H, W)`` and their tags from ``tag`` ``(N, K or 1, H, W, L)``."""
    det = nms(det, test.nms_kernel, test.nms_padding)
    n, k, h, w = det.shape
    val_k, ind = det.reshape(n, k, -1).topk(test.max_num_people, dim=2)
    tags = tag.reshape(tag.shape[0], tag.shape[1], w * h, -1)
    if not test.tag_per_joint:
        tags = tags.expand(-1, k, -1, -1)
    tag_k = torch.stack([torch.gather(tags[..., i], 2, ind) for i in range(tags.shape[3])], dim=3)
    loc_k = torch.stack((ind % w, torch.div(ind, w, rounding_mode="floor")), dim=3)
    return Peaks(tag_k.cpu().numpy(), loc_k.cpu().numpy(), val_k.cpu().numpy())


def match_by_tag(
    tag_k: np.ndarray, loc_k: np.ndarray, val_k: np.ndarray, test: BottomUpTestSpec
) -> np.ndarray:
    """The people of one image, ``float32 (P, K', 3 + L)`` (``K'`` joints grouped), from its peaks
    ``(K, M, L)``, ``(K, M, 2)``, ``(K, M)``; people in order of creation."""
    num_joints = len(test.joint_order)
    empty = np.zeros((num_joints, 3 + tag_k.shape[2]))
    # Keys are the first tag value (a numpy float32) of a person's first joint, as in the official code.
    people: dict[np.floating, np.ndarray] = {}
    person_tags: dict[np.floating, list[np.ndarray]] = {}
    for i, idx in enumerate(test.joint_order):
        tags = tag_k[idx]
        joints = np.concatenate((loc_k[idx], val_k[idx, :, None], tags), 1)  # float64, as the official
        keep = joints[:, 2] > test.detection_threshold
        tags, joints = tags[keep], joints[keep]
        if joints.shape[0] == 0:
            continue
        if i == 0 or not people:
            for tag, joint in zip(tags, joints, strict=True):
                people.setdefault(tag[0], np.copy(empty))[idx] = joint
                person_tags[tag[0]] = [tag]
            continue
        keys = list(people)[: test.max_num_people]
        if test.ignore_too_much and len(keys) == test.max_num_people:
            continue
        means = np.array([np.mean(person_tags[key], axis=0) for key in keys])
        dist = np.linalg.norm(joints[:, None, 3:] - means[None, :, :], ord=2, axis=2)
        cost = np.round(dist) * 100 - joints[:, 2:3] if test.use_detection_val else np.copy(dist)
        added, grouped = dist.shape
        if added > grouped:
            cost = np.concatenate((cost, np.zeros((added, added - grouped)) + 1e10), axis=1)
        for row, col in munkres_pairs(cost):
            if row < added and col < grouped and dist[row][col] < test.tag_threshold:
                key = keys[col]
                people[key][idx] = joints[row]
                person_tags[key].append(tags[row])
            else:
                key = tags[row][0]
                people.setdefault(key, np.copy(empty))[idx] = joints[row]
                person_tags[key] = [tags[row]]
    return (
        np.array([people[key] for key in people]).astype(np.float32).reshape(-1, num_joints, empty.shape[1])
    )


def _neighbour_steps(det: torch.Tensor, j: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(n, 2)`` steps of +-0.25 towards the higher neighbour along x and y (ties step down) at the integer
    positions ``(x, y)`` of joint maps ``det[j]`` ``(K, H, W)``; neighbours are clamped into the map."""
    _, h, w = det.shape
    right = det[j, y, (x + 1).clamp(max=w - 1)] > det[j, y, (x - 1).clamp(min=0)]
    down = det[j, (y + 1).clamp(max=h - 1), x] > det[j, (y - 1).clamp(min=0), x]
    quarter = torch.tensor(0.25, dtype=torch.float64, device=det.device)
    return torch.stack([torch.where(right, quarter, -quarter), torch.where(down, quarter, -quarter)], dim=1)


def adjust(people: np.ndarray, det: torch.Tensor) -> np.ndarray:
    """The official ``adjust`` of one image's people ``(P, K, 3 + L)`` on its heatmaps ``det`` ``(K, H, W)``:
    each joint with a positive score moves to ``x + 0.5 +- 0.25``, ``y + 0.5 +- 0.25``. Returns a new array."""
    out = people.copy()
    p_idx, j_idx = np.nonzero(out[:, :, 2] > 0)
    if p_idx.size == 0:
        return out
    dev = det.device
    xy = out[p_idx, j_idx, :2].astype(np.int64)
    j = torch.as_tensor(j_idx, device=dev)
    x = torch.as_tensor(xy[:, 0], device=dev)
    y = torch.as_tensor(xy[:, 1], device=dev)
    steps = _neighbour_steps(det, j, y, x).cpu().numpy()
    out[p_idx, j_idx, :2] = xy + 0.5 + steps
    return out


def _tag_score(det: torch.Tensor, tags: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``det - round(|tags - mean|)`` for maps ``det`` ``(..., n)`` and tags ``(..., n, L)`` against ``mean``
    ``(..., 1, L)``; the squared differences summed left to right, as numpy sums fewer than 8 values."""
    diff = tags - mean
    dist = diff[..., 0] ** 2
    for col in range(1, diff.shape[-1]):
        dist = dist + diff[..., col] ** 2
    return det - torch.round(dist**0.5)


def _best_pixels(det: torch.Tensor, tag: torch.Tensor, means: torch.Tensor, *, block: int = 8,
                 chunk: int = 32) -> torch.Tensor:  # fmt: skip
    """Row-major flat index of the first maximum of :func:`_tag_score` over one joint's map, per mean.

    ``det`` ``(H, W)``, ``tag`` ``(H, W, L)``, ``means`` ``(n, L)`` -> ``int64 (n,)``. Exact branch and bound:
    the map is cut into ``block x block`` tiles; a tile's score cannot exceed its highest heatmap value minus
    the rounded distance from the mean to the box holding the tile's tags (shrunk by a margin for float
    error), while the exact score at each tile's highest pixel bounds the maximum from below. Only the tiles
    that could hold the maximum are scored, pixel by pixel, with the very arithmetic of a whole-map pass; ties
    go to the lowest pixel index, as ``argmax`` does.
    """
    h, w = det.shape
    n_l = tag.shape[-1]
    hb, wb = -(-h // block), -(-w // block)
    d = F.pad(det, (0, wb * block - w, 0, hb * block - h), value=float("-inf"))
    t = F.pad(tag.permute(2, 0, 1), (0, wb * block - w, 0, hb * block - h)).permute(1, 2, 0)

    def tiles(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(hb, block, wb, block, -1).permute(0, 2, 1, 3, 4).reshape(hb * wb, block * block, -1)

    tile_det = tiles(d[..., None])[..., 0]  # (B, block*block)
    tile_tag = tiles(t)  # (B, block*block, L)
    rows = torch.arange(hb * block, device=det.device)[:, None].expand(-1, wb * block)
    cols = torch.arange(wb * block, device=det.device)[None, :].expand(hb * block, -1)
    tile_idx = tiles((rows * w + cols)[..., None])[..., 0]  # flat index in the unpadded map
    top, arg = tile_det.max(dim=1)
    rep_tag = tile_tag[torch.arange(tile_det.shape[0], device=det.device), arg]  # (B, L)
    lo, hi = tile_tag.amin(dim=1), tile_tag.amax(dim=1)  # padding tags are 0: the boxes only grow
    best = torch.empty(means.shape[0], dtype=torch.int64, device=det.device)
    for start in range(0, means.shape[0], chunk):
        m = means[start : start + chunk]
        n = m.shape[0]
        lower = _tag_score(top[None, :], rep_tag[None, :, :], m[:, None, :]).amax(dim=1)
        gap = (lo[None] - m[:, None]).clamp(min=0) + (m[:, None] - hi[None]).clamp(min=0)
        near = (gap**2).sum(-1).sqrt()
        near = (near * (1 - 1e-5) - 1e-5).clamp(min=0)
        pair, tile = torch.nonzero(top[None, :] - torch.round(near) >= lower[:, None], as_tuple=True)
        score = _tag_score(tile_det[tile], tile_tag[tile], m[pair][:, None, :].expand(-1, 1, n_l))
        peak = torch.full((n,), float("-inf"), device=det.device).scatter_reduce(
            0, pair, score.amax(dim=1), "amax"
        )
        idx = torch.where(score == peak[pair][:, None], tile_idx[tile], h * w).amin(dim=1)
        best[start : start + n] = torch.full((n,), h * w, device=det.device).scatter_reduce(
            0, pair, idx, "amin"
        )
    return best


def refine(people: np.ndarray, det: torch.Tensor, tag: torch.Tensor) -> np.ndarray:
    """The official ``refine`` of one image's people ``(P, K, 3 + L)`` (after :func:`adjust`) on its heatmaps
    ``det`` ``(K, H, W)`` and tags ``tag`` ``(K, H, W, L)`` (``(1, H, W, L)`` without ``TAG_PER_JOINT``): every
    joint with score 0 takes the position maximising ``det - round(|tag - person's mean tag|)`` (first such
    pixel in row-major order), if the heatmap is positive there. Returns a new array."""
    out = people.copy()
    k, h, w = det.shape
    if tag.shape[0] == 1 and k > 1:
        tag = tag.expand(k, -1, -1, -1)
    missing: dict[int, list[tuple[int, np.ndarray]]] = {}
    for p in range(out.shape[0]):
        found = out[p, :, 2] > 0
        absent = out[p, :, 2] == 0
        if not found.any() or not absent.any():
            continue
        xy = out[p, found, :2].astype(np.int32)
        tags = tag[
            torch.as_tensor(np.flatnonzero(found)), torch.as_tensor(xy[:, 1]), torch.as_tensor(xy[:, 0])
        ]
        mean = np.mean(tags.cpu().numpy(), axis=0)  # float32, rows summed in order as numpy does
        for j in np.flatnonzero(absent):
            missing.setdefault(int(j), []).append((p, mean))
    for j, items in missing.items():
        means = torch.as_tensor(np.stack([m for _, m in items]), device=det.device)
        best = _best_pixels(det[j], tag[j], means)
        y, x = torch.div(best, w, rounding_mode="floor"), best % w
        jj = torch.full_like(best, j)
        val = det[j].reshape(-1)[best]
        pos = torch.stack([x, y], dim=1).to(torch.float64) + 0.5 + _neighbour_steps(det, jj, y, x)
        for (p, _), v, (px, py) in zip(items, val.cpu().numpy(), pos.cpu().numpy(), strict=True):
            if v > 0:
                out[p, j, 0], out[p, j, 1], out[p, j, 2] = px, py, v
    return out


def parse(
    det: torch.Tensor,
    tag: torch.Tensor,
    test: BottomUpTestSpec,
    *,
    adjust_: bool = True,
    refine_: bool = True,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The official ``HeatmapParser.parse`` for every image of a batch.

    Args:
        det: ``(N, K, H, W)`` aggregated heatmaps; tag: ``(N, K or 1, H, W, L)`` tags.

    Returns:
        per image, its people ``float32 (P, K, 3 + L)`` and their scores ``float32 (P,)``.
    """
    peaks = top_k(det, tag, test)
    people_all, scores_all = [], []
    for b in range(det.shape[0]):
        people = match_by_tag(peaks.tag_k[b], peaks.loc_k[b], peaks.val_k[b], test)
        if adjust_:
            people = adjust(people, det[b])
        scores = np.array([p[:, 2].mean() for p in people], dtype=np.float32)
        if refine_:
            people = refine(people, det[b], tag[b])
        people_all.append(people)
        scores_all.append(scores)
    return people_all, scores_all
