"""Bottom-up pose inference: the official HigherHRNet test (``tools/valid.py``) on any device, and batched.

Per image, as the official code does it:

1. :func:`get_multi_scale_size` / :func:`resize_align_multi_scale`: the image is warped (``cv2.warpAffine``,
   bilinear, zero border) so that its short side is ``DATASET.INPUT_SIZE * scale`` and the long side the next
   multiple of 64 keeping the aspect; ``center``/``scale`` describe that warp (official convention: ``scale``
   in units of 200 pixels).
2. The network runs on the normalised RGB image (``pixel / 255``, ImageNet mean/std) and, with
   ``TEST.FLIP_TEST``, on its mirror: :func:`stage_maps` (the official ``get_multi_stage_outputs``) averages
   the heatmaps of the stages (``TEST.WITH_HEATMAPS``), keeps the tags (``TEST.WITH_AE``), mirrors the flipped
   maps back and swaps left and right joints (the flip index), and with ``TEST.PROJECT2IMAGE`` resizes
   everything to the input size of scale 1.
3. :func:`aggregate` (``aggregate_results``) sums the scales' heatmaps (divided by their number at the end)
   and stacks the tag maps of scale 1 along a last axis ``L``.
4. :func:`hrstream.pose.bottomup_group.parse` groups the peaks into people; :func:`get_final_preds` maps them
   to image pixels with the inverse of the warp.

Steps 1 and 4's grouping run on the host (numpy and OpenCV, as the official); the network, the resizing of
maps, NMS, top-k and refinement run in torch on ``device``.

Coordinates: image pixels with the centre of the top-left pixel at ``(0, 0)`` (:mod:`hrstream.types`); the
official half-pixel step of ``adjust`` is kept, so results equal the official ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hrstream.models.higherhrnet import BottomUpTestSpec
from hrstream.pose.bottomup_group import parse
from hrstream.pose.crops import IMAGENET_MEAN, IMAGENET_STD
from hrstream.runtime.engine import Chunk, Output
from hrstream.types import FrameResult, Poses

__all__ = [
    "BottomUpBatch",
    "BottomUpPose",
    "BottomUpResult",
    "aggregate",
    "bottomup_infer",
    "bottomup_infer_batch",
    "decode_batch",
    "get_final_preds",
    "get_multi_scale_size",
    "official_affine",
    "prepare_batch",
    "resize_align_multi_scale",
    "stage_maps",
    "to_poses",
]


@dataclass(eq=False)
class BottomUpResult:
    """The people the official inference finds in one image.

    Attributes:
        people: ``float32 (P, K, 3 + L)``: ``x, y`` image pixels, the heatmap value (the keypoint score), then
            the ``L`` tag values of the joint (e.g. image and mirror with the flip test); all zero for a joint
            not found. People in the official order (order of creation by the grouping).
        scores: ``float32 (P,)`` person scores: the mean keypoint score over the ``K`` joints (0 where not
            found), before refinement, as the official.
        center, scale: the warp of the last test scale (``center`` pixels, ``scale`` in 200-pixel units).
        heatmap_shape: ``(K, H, W)`` of the aggregated heatmaps the people were read from.
        heatmap_sum: their sum (a checksum of the maps).
    """

    people: np.ndarray
    scores: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    heatmap_shape: tuple[int, int, int]
    heatmap_sum: float


def get_multi_scale_size(
    height: int, width: int, input_size: int, current_scale: float, min_scale: float
) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Official ``get_multi_scale_size``: ``((w_resized, h_resized), center (2,) int, scale (2,) float64)``.

    The short side becomes ``int(ceil64(min_scale * input_size) * current_scale / min_scale)``; the long side
    keeps the aspect, rounded up to a multiple of 64 at ``min_scale`` first.
    """
    h, w = int(height), int(width)
    center = np.array([int(w / 2.0 + 0.5), int(h / 2.0 + 0.5)])
    min_input = int((min_scale * input_size + 63) // 64 * 64)
    if w < h:
        w_resized = int(min_input * current_scale / min_scale)
        h_resized = int(int((min_input / w * h + 63) // 64 * 64) * current_scale / min_scale)
        scale_w = w / 200.0
        scale_h = h_resized / w_resized * w / 200.0
    else:
        h_resized = int(min_input * current_scale / min_scale)
        w_resized = int(int((min_input / h * w + 63) // 64 * 64) * current_scale / min_scale)
        scale_h = h / 200.0
        scale_w = w_resized / h_resized * h / 200.0
    return (w_resized, h_resized), center, np.array([scale_w, scale_h])


def official_affine(
    center: np.ndarray, scale: np.ndarray, output_size: Sequence[int], *, inv: bool = False
) -> np.ndarray:
    """The official ``get_affine_transform`` without rotation or shift, with its float64 ``scale * 200``:
    ``(2, 3)`` mapping image pixels to a ``(w, h)`` output whose centre is ``center`` (``inv``: the reverse)."""
    src_w = float(np.asarray(scale, np.float64).reshape(-1)[0]) * 200.0
    dst_w, dst_h = float(output_size[0]), float(output_size[1])
    c = np.asarray(center, np.float64).reshape(2)
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = c
    src[1] = c + np.array([0.0, src_w * -0.5])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5], np.float32)
    for pts in (src, dst):
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], np.float32)
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def resize_align_multi_scale(
    image: np.ndarray, input_size: int, current_scale: float, min_scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Official ``resize_align_multi_scale``: ``uint8 (H, W, 3)`` -> ``(resized image, center, scale)``."""
    size, center, scale = get_multi_scale_size(
        image.shape[0], image.shape[1], input_size, current_scale, min_scale
    )
    trans = official_affine(center, scale, size)
    return cv2.warpAffine(np.ascontiguousarray(image), trans, size), center, scale


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) to ``size`` ``(h, w)``."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _one_pass(
    outputs: Sequence[torch.Tensor], test: BottomUpTestSpec, flip_index: torch.Tensor | None
) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """Heatmap average and tag maps of one network pass (``flip_index``: the pass ran on the mirror)."""
    k = test.num_joints
    hm_sum: torch.Tensor | None = None
    count = 0
    tags = []
    last = outputs[-1]
    for i, out in enumerate(outputs):
        if len(outputs) > 1 and i != len(outputs) - 1:
            out = _resize(out, (last.shape[2], last.shape[3]))
        if flip_index is not None:
            out = torch.flip(out, [3])
        offset = k if test.with_heatmaps_loss[i] else 0
        if test.with_heatmaps_loss[i] and test.with_heatmaps[i]:
            hm = out[:, :k] if flip_index is None else out[:, :k][:, flip_index]
            hm_sum = hm if hm_sum is None else hm_sum + hm
            count += 1
        if test.with_ae_loss[i] and test.with_ae[i]:
            tag = out[:, offset:]
            if flip_index is not None and test.tag_per_joint:
                tag = tag[:, flip_index]
            tags.append(tag)
    return (None if hm_sum is None else hm_sum / count), tags


def stage_maps(
    outputs: Sequence[torch.Tensor],
    outputs_flip: Sequence[torch.Tensor] | None,
    test: BottomUpTestSpec,
    size_projected: tuple[int, int] | None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Official ``get_multi_stage_outputs`` from the network's outputs on an image (and its mirror).

    Args:
        outputs, outputs_flip: the stage maps ``[(N, C_i, h_i, w_i)]`` of the image and of its mirror (or
            ``None`` without the flip test).
        size_projected: ``(w, h)`` to resize every map to (``PROJECT2IMAGE``), or ``None``.

    Returns:
        ``heatmaps`` (one ``(N, K, h, w)`` average per pass) and ``tags`` (one ``(N, T, h, w)`` per stage with
        tags, per pass).
    """
    heatmaps, tags = [], []
    avg, t = _one_pass(outputs, test, None)
    if avg is not None:
        heatmaps.append(avg)
    tags += t
    if outputs_flip is not None:
        index = torch.as_tensor(test.flip_index, device=outputs_flip[0].device)
        avg, t = _one_pass(outputs_flip, test, index)
        heatmaps.append(avg)  # type: ignore[arg-type]  # the official divides by zero stages here as well
        tags += t
    if test.with_center and test.ignore_center:
        heatmaps = [h[:, :-1] for h in heatmaps]
        tags = [t[:, :-1] for t in tags]
    if test.project2image and size_projected:
        hw = (size_projected[1], size_projected[0])
        heatmaps = [_resize(h, hw) for h in heatmaps]
        tags = [_resize(t, hw) for t in tags]
    return heatmaps, tags


def aggregate(
    test: BottomUpTestSpec,
    scale_factor: float,
    final: torch.Tensor | None,
    tags_list: list[torch.Tensor],
    heatmaps: list[torch.Tensor],
    tags: list[torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Official ``aggregate_results``: add one scale's maps to the running heatmap sum and tag list."""
    if scale_factor == 1 or len(test.scale_factor) == 1:
        if final is not None and not test.project2image:
            tags = [_resize(t, (final.shape[2], final.shape[3])) for t in tags]
        tags_list.extend(t.unsqueeze(4) for t in tags)
    avg = (heatmaps[0] + heatmaps[1]) / 2.0 if test.flip_test else heatmaps[0]
    if final is None:
        return avg, tags_list
    if test.project2image:
        return final + avg, tags_list
    return final + _resize(avg, (final.shape[2], final.shape[3])), tags_list


def get_final_preds(
    people: np.ndarray, center: np.ndarray, scale: np.ndarray, heatmap_size: Sequence[int]
) -> np.ndarray:
    """Official ``get_final_preds``: ``(P, K, C)`` heatmap coordinates -> image pixels (columns 0-1; the rest
    unchanged), through the inverse warp of ``center``/``scale`` onto a ``(w, h)`` ``heatmap_size`` grid."""
    out = people.copy()
    if out.size == 0:
        return out
    trans = official_affine(center, scale, heatmap_size, inv=True)
    xy = people[..., :2].astype(np.float64)
    out[..., 0] = trans[0, 0] * xy[..., 0] + trans[0, 1] * xy[..., 1] + trans[0, 2]
    out[..., 1] = trans[1, 0] * xy[..., 0] + trans[1, 1] * xy[..., 1] + trans[1, 2]
    return out


def _normalize(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """``uint8 (h, w, 3)`` RGB images of one size -> ``float32 (N, 3, h, w)`` (ToTensor + Normalize)."""
    x = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def _crop(
    outputs: list[torch.Tensor], b: int, size: tuple[int, int], padded: tuple[int, int]
) -> list[torch.Tensor]:
    """Image ``b``'s valid region of batched stage maps: a ``size`` ``(w, h)`` input in a ``padded`` one."""
    out = []
    for o in outputs:
        stride_w, stride_h = padded[0] // o.shape[3], padded[1] // o.shape[2]
        out.append(o[b : b + 1, :, : size[1] // stride_h, : size[0] // stride_w])
    return out


@dataclass(eq=False)
class BottomUpBatch:
    """The network inputs of a batch of images (:func:`prepare_batch`): per test scale (largest first) the
    images resized as the official code does and padded to a common size, normalised on the device.

    Attributes:
        test: the bottom-up test settings.
        bases: per image, its base size ``(w, h)`` (the inputs of scale 1: ``PROJECT2IMAGE``'s target).
        scales: per test scale ``(scale, inputs float32 (N, 3, h, w), sizes [(w, h)], warps [(center, scale)])``.
    """

    test: BottomUpTestSpec
    bases: list[tuple[int, int]]
    scales: list[tuple[float, torch.Tensor, list[tuple[int, int]], list[tuple[np.ndarray, np.ndarray]]]]

    def inputs(self) -> list[torch.Tensor]:
        """The network calls in order: per scale the batch, then (flip test) its mirror image."""
        calls = []
        for _, x, _, _ in self.scales:
            calls.append(x)
            if self.test.flip_test:
                calls.append(torch.flip(x, [3]))
        return calls


@torch.inference_mode()
def prepare_batch(
    images: Sequence[np.ndarray], test: BottomUpTestSpec, device: torch.device | str
) -> BottomUpBatch:
    """Every image of a batch resized, padded and normalised for each test scale (see
    :func:`bottomup_infer_batch`); ``uint8 (H, W, 3)`` RGB images of any sizes."""
    dev = torch.device(device)
    min_scale = min(test.scale_factor)
    bases = [
        get_multi_scale_size(im.shape[0], im.shape[1], test.input_size, 1.0, min_scale)[0] for im in images
    ]
    prepared = BottomUpBatch(test, bases, [])
    if not images:
        return prepared
    for s in sorted(test.scale_factor, reverse=True):
        resized = [resize_align_multi_scale(im, test.input_size, s, min_scale) for im in images]
        sizes = [(r.shape[1], r.shape[0]) for r, _, _ in resized]
        padded = (max(w for w, _ in sizes), max(h for _, h in sizes))
        batch = [
            np.pad(r, ((0, padded[1] - r.shape[0]), (0, padded[0] - r.shape[1]), (0, 0)))
            for r, _, _ in resized
        ]
        x = _normalize(batch, dev)
        for i, (w, h) in enumerate(sizes):  # padding is 0 after normalisation
            x[i, :, h:, :] = 0
            x[i, :, :, w:] = 0
        prepared.scales.append((s, x, sizes, [(c, sc) for _, c, sc in resized]))
    return prepared


@torch.inference_mode()
def decode_batch(prepared: BottomUpBatch, outputs: Sequence[Sequence[torch.Tensor]]) -> list[BottomUpResult]:
    """The people of every image of ``prepared`` from the network's stage outputs of
    :meth:`BottomUpBatch.inputs` (in their order, on any device): stage maps, aggregation over the scales,
    grouping, refinement and image coordinates, as the official test."""
    test, bases = prepared.test, prepared.bases
    n = len(bases)
    finals: list[torch.Tensor | None] = [None] * n
    tag_lists: list[list[torch.Tensor]] = [[] for _ in range(n)]
    warps: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(2), np.zeros(2))] * n
    calls = iter(outputs)
    for s, x, sizes, scale_warps in prepared.scales:
        warps = scale_warps
        padded = (int(x.shape[3]), int(x.shape[2]))
        outs = [o.float() for o in next(calls)]
        outs_flip = [o.float() for o in next(calls)] if test.flip_test else None
        for b, size in enumerate(sizes):
            mine = _crop(outs, b, size, padded)
            mine_flip = None
            if outs_flip is not None:  # the mirror of a padded image has its padding on the left
                flipped_back = [torch.flip(o, [3]) for o in outs_flip]
                mine_flip = [torch.flip(o, [3]) for o in _crop(flipped_back, b, size, padded)]
            heatmaps, tags = stage_maps(mine, mine_flip, test, bases[b])
            finals[b], tag_lists[b] = aggregate(test, s, finals[b], tag_lists[b], heatmaps, tags)
    results = []
    for b in range(n):
        final = finals[b]
        assert final is not None
        final = final / float(len(test.scale_factor))
        tags = torch.cat(tag_lists[b], dim=4)
        people, scores = parse(final, tags, test, adjust_=test.adjust, refine_=test.refine)
        center, scale = warps[b]
        preds = get_final_preds(people[0], center, scale, (final.shape[3], final.shape[2]))
        results.append(
            BottomUpResult(
                people=preds,
                scores=scores[0],
                center=center,
                scale=scale,
                heatmap_shape=(int(final.shape[1]), int(final.shape[2]), int(final.shape[3])),
                heatmap_sum=float(final.double().sum()),
            )
        )
    return results


@torch.inference_mode()
def bottomup_infer_batch(
    model: nn.Module,
    images: Sequence[np.ndarray],
    test: BottomUpTestSpec,
    device: torch.device | str | None = None,
) -> list[BottomUpResult]:
    """The official inference of every image of a batch, with one network call (two with the flip test) per
    test scale for the whole batch: :func:`prepare_batch`, the network, :func:`decode_batch`.

    Images may differ in size: each is resized as the official code does, then the batch is padded at the
    right and bottom to a common size (zeros after normalisation); each image's maps are cut back to its own
    region before any peak is taken, so the padding never yields a keypoint. The maps near the right and
    bottom edges of a padded image may differ slightly from an unpadded run (the network sees the padding).

    Args:
        model: a :class:`~hrstream.models.higherhrnet.PoseHigherHRNet` (eval mode) on ``device``.
        images: ``uint8 (H, W, 3)`` RGB frames.
        test: ``model.spec.higher.test``.
        device: where the network and the map operations run (default: the model's).
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    if not images:
        return []
    prepared = prepare_batch(images, test, dev)
    return decode_batch(prepared, [model(x) for x in prepared.inputs()])


def bottomup_infer(
    model: nn.Module, image: np.ndarray, test: BottomUpTestSpec, device: torch.device | str | None = None
) -> BottomUpResult:
    """The official HigherHRNet inference (``tools/valid.py``) of one ``uint8 (H, W, 3)`` RGB image: see the
    module docstring and :class:`BottomUpResult`. The network runs on ``image`` alone (no padding)."""
    return bottomup_infer_batch(model, [image], test, device)[0]


def to_poses(result: BottomUpResult, *, score_threshold: float = 0.0, max_people: int | None = None) -> Poses:
    """The people of a :class:`BottomUpResult` as :class:`~hrstream.types.Poses`, best first.

    People scoring below ``score_threshold`` are dropped, then at most ``max_people`` are kept. Keypoint scores
    are the heatmap values (0 for a joint not found, whose position is then 0, 0); boxes are the extent
    (xyxy pixels) of the joints with a positive score and ``box_scores`` the person scores.
    """
    people, scores = result.people, result.scores
    k = people.shape[1] if people.ndim == 3 else 0
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= score_threshold][:max_people]
    kps = people[order, :, :2].astype(np.float32)
    kscores = people[order, :, 2].astype(np.float32)
    boxes = np.zeros((len(order), 4), np.float32)
    for i, (pts, sc) in enumerate(zip(kps, kscores, strict=True)):
        seen = pts[sc > 0]
        if len(seen):
            boxes[i] = [*seen.min(axis=0), *seen.max(axis=0)]
    return Poses(boxes, scores[order], kps.reshape(-1, k, 2), kscores.reshape(-1, k))


class BottomUpPose:
    """The bottom-up estimator of a pipeline (:class:`hrstream.pipeline.estimators.Estimator`): every person of
    whole frames of any sources, no detector and no crops; the frames of a batch padded to a common size (the
    padding masked out of the peaks), the people into ``FrameResult.poses`` best first (boxes from their joints;
    ``score_thr``: the lowest person score kept; ``max_people``: at most this many). Its maps are decoded where
    the network ran (``device_outputs``)."""

    needs_boxes: ClassVar[bool] = False
    fills: ClassVar[str] = "poses"
    device_outputs: ClassVar[bool] = True

    def __init__(
        self, test: BottomUpTestSpec, device: torch.device, *, score_thr: float, max_people: int | None
    ) -> None:
        self.test = test
        self.device = device
        self.score_thr = score_thr
        self.max_people = max_people

    def weight(self, result: FrameResult) -> int:
        """A frame weighs what its network input costs in top-down crops of 256x192 (``runtime.batch_size``
        counts those): a 16:9 frame at input size 512 (512x960) weighs 10."""
        base, _, _ = get_multi_scale_size(
            result.frame.height, result.frame.width, self.test.input_size, 1.0, 1.0
        )
        return max(1, round(base[0] * base[1] / (256 * 192)))

    def prepare(self, batch: Sequence[FrameResult]) -> BottomUpBatch:
        return prepare_batch([r.frame.image for r in batch], self.test, self.device)

    def chunks(self, prepared: BottomUpBatch) -> list[Chunk]:
        return [Chunk(x, normalized=True) for x in prepared.inputs()]

    def decode(
        self, batch: Sequence[FrameResult], prepared: BottomUpBatch, outputs: Sequence[Output]
    ) -> None:
        calls = [o if isinstance(o, tuple) else (o,) for o in outputs]
        for r, found in zip(batch, decode_batch(prepared, calls), strict=True):
            r.poses = to_poses(found, score_threshold=self.score_thr, max_people=self.max_people)
