"""Top-down pose estimation: boxes of many frames -> crops -> ONE batched model call -> keypoints."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from hrstream.models.meta import Decoder
from hrstream.pose.crops import IMAGENET_MEAN, IMAGENET_STD, box_to_center_scale, crop_batch, crop_cpu
from hrstream.pose.decode import DECODE_METHODS, decode_heatmaps, flip_test_merge
from hrstream.pose.keypoints import COCO_FLIP_PAIRS
from hrstream.pose.nms import oks_nms
from hrstream.runtime.engine import Chunk, Output, normalize_uint8
from hrstream.types import Detections, Frame, FrameResult, Poses

__all__ = ["CropBatch", "TopDownEstimator", "TopDownPose"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class CropBatch:
    """The person crops of a batch of frames, ready for one network call (:meth:`TopDownEstimator.prepare`).

    Attributes:
        inputs: ``uint8 (N, h, w, 3)`` RGB on the host (CPU crops, normalised where the network runs) or, when
            ``normalized``, ``float32 (N, 3, h, w)`` ``(pixel/255 - mean) / std`` on the device (GPU crops).
            ``N`` is the number of people, twice that with the flip test (the flipped crops follow).
        counts: people per frame; ``boxes`` / ``scores`` per frame (xyxy pixels, detector scores).
        center, scale: ``float32 (n, 2)`` per person in the official convention (``box_to_center_scale``).
    """

    inputs: np.ndarray | torch.Tensor
    normalized: bool
    counts: list[int]
    boxes: list[np.ndarray]
    scores: list[np.ndarray]
    center: np.ndarray
    scale: np.ndarray

    @property
    def total(self) -> int:
        """People in the batch."""
        return int(sum(self.counts))

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def chunks(self, max_batch: int | None) -> list[np.ndarray | torch.Tensor]:
        """``inputs`` in consecutive pieces of at most ``max_batch`` (``None``: one piece)."""
        step = max_batch or max(1, len(self))
        return [self.inputs[i : i + step] for i in range(0, len(self), step)]


def _pixels(image: np.ndarray | Frame) -> np.ndarray:
    return image.image if isinstance(image, Frame) else image


class TopDownEstimator:
    """Estimate keypoints for the given boxes of a batch of frames.

    Args:
        model_fn: maps normalised crops ``float32 (N, 3, h, w)`` on ``device`` to heatmaps ``(N, K, h', w')``
            (used by :meth:`estimate`; a pipeline runs :meth:`prepare`, its engine and :meth:`decode`).
        input_size: model input ``(w, h)``, e.g. ``(192, 256)``.
        heatmap_size: expected heatmap ``(w, h)``; checked against the model output when given.
        mean, std: normalisation of ``pixel / 255`` (official: ImageNet statistics, RGB order).
        flip_pairs: left/right joint pairs for the flip test.
        flip_test: also run the horizontally flipped crops (appended to the same batch) and average.
        shift_heatmap: the official ``TEST.SHIFT_HEATMAP`` (shift the flipped-back heatmaps one pixel right);
            UDP models are flipped without the shift (MMPose UDP configs), so pass ``False`` with ``"udp"``.
        decoder: ``"msra"`` (official), ``"dark"`` or ``"udp"`` (crops then use the UDP affine).
        device: where crops, the model call and decoding run.
        max_batch: at most this many crops per ``model_fn`` call (flipped crops count), or ``None``.
        padding: box enlargement before cropping (official 1.25).
        oks_nms_thr: when set, per-frame OKS NMS (official ``oks_nms``) with this threshold.
        oks_in_vis_thr: keypoints scoring more count in the OKS NMS rescoring (official ``IN_VIS_THRE``).
        oks_sigmas: ``(K,)`` OKS sigmas of the keypoints (``None``: COCO's).
        num_keypoints: K, used for frames without people.
        kernel: gaussian kernel of the ``"dark"`` / ``"udp"`` decoders.
    """

    def __init__(
        self,
        model_fn: Callable[[torch.Tensor], torch.Tensor],
        *,
        input_size: tuple[int, int] = (192, 256),
        heatmap_size: tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS,
        flip_test: bool = False,
        shift_heatmap: bool = True,
        decoder: Decoder = "msra",
        device: str | torch.device = "cpu",
        max_batch: int | None = None,
        padding: float = 1.25,
        oks_nms_thr: float | None = None,
        oks_in_vis_thr: float = 0.2,
        oks_sigmas: Sequence[float] | None = None,
        num_keypoints: int = 17,
        kernel: int = 11,
    ) -> None:
        if decoder not in DECODE_METHODS:
            raise ValueError(f"decoder must be one of {DECODE_METHODS}, got {decoder!r}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        self.model_fn = model_fn
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = None if heatmap_size is None else (int(heatmap_size[0]), int(heatmap_size[1]))
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.flip_pairs = np.asarray(flip_pairs, dtype=np.int64).reshape(-1, 2)
        self.flip_test = flip_test
        self.shift_heatmap = shift_heatmap
        self.decoder: Decoder = decoder
        self.device = torch.device(device)
        self.max_batch = max_batch
        self.padding = padding
        self.oks_nms_thr = oks_nms_thr
        self.oks_in_vis_thr = float(oks_in_vis_thr)
        self.oks_sigmas = None if oks_sigmas is None else np.asarray(oks_sigmas, np.float64)
        self.num_keypoints = num_keypoints
        self.kernel = kernel
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)

    @property
    def aspect_ratio(self) -> float:
        return self.input_size[0] / self.input_size[1]

    def _check_heatmaps(self, out: torch.Tensor, n: int) -> torch.Tensor:
        if out.ndim != 4 or out.shape[0] != n:
            raise ValueError(f"model_fn must return (N={n}, K, h, w) heatmaps, got {tuple(out.shape)}")
        if self.heatmap_size is not None and (out.shape[3], out.shape[2]) != self.heatmap_size:
            raise ValueError(
                f"heatmaps are {out.shape[3]}x{out.shape[2]} (w x h), expected heatmap_size {self.heatmap_size}"
            )
        return out.float()

    def _crops(
        self,
        images: Sequence[np.ndarray | Frame],
        frame_idx: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
    ) -> tuple[np.ndarray | torch.Tensor, bool]:
        """The crops and whether they are normalised already.

        On the CPU: the official ``cv2.warpAffine`` crop of each box (bit-exact with the official code), as
        ``uint8 (n, h, w, 3)`` (normalised where the network runs). On other devices: one ``grid_sample`` over
        the frames on the device (within 0.5 grey levels of it), normalised ``float32 (n, 3, h, w)``.
        """
        udp = self.decoder == "udp"
        if self.device.type == "cpu":
            crops = np.stack(
                [
                    crop_cpu(_pixels(images[f]), center[i], scale[i], self.input_size, udp=udp)
                    for i, f in enumerate(frame_idx)
                ]
            )
            return crops, False
        used = set(frame_idx.tolist())
        tensors: list[torch.Tensor] = []
        for i, img in enumerate(images):
            if i in used and isinstance(img, Frame):
                tensors.append(img.device_image(self.device))  # uploaded once per frame (the detector's copy)
            elif i in used:
                t = torch.from_numpy(np.ascontiguousarray(img)).to(self.device, non_blocking=True)
                tensors.append(t.permute(2, 0, 1))
            else:  # never sampled: a placeholder keeps indices aligned
                tensors.append(torch.zeros((3, 1, 1), dtype=torch.uint8, device=self.device))
        crops_t = crop_batch(
            tensors, frame_idx, center, scale, self.input_size, mean=self.mean, std=self.std, udp=udp
        )
        return crops_t, True

    def prepare(
        self,
        images: Sequence[np.ndarray | Frame],
        boxes: Sequence[np.ndarray],
        box_scores: Sequence[np.ndarray] | None = None,
    ) -> CropBatch:
        """Every box of every frame cropped for one network call (flipped copies appended with the flip test).

        Args:
            images: per frame ``uint8 (H, W, 3)`` RGB, or the :class:`~hrstream.types.Frame` (on a GPU its
                device copy is shared with the detector's).
            boxes: per frame ``(n_i, 4)`` xyxy pixels.
            box_scores: per frame ``(n_i,)``; ones when ``None``.
        """
        if len(images) != len(boxes):
            raise ValueError(f"got {len(images)} images but {len(boxes)} box arrays")
        bxs = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
        if box_scores is None:
            box_scores = [np.ones(len(b), np.float32) for b in bxs]
        scores = [
            np.asarray(s, dtype=np.float32).reshape(len(b)) for s, b in zip(box_scores, bxs, strict=True)
        ]
        counts = [len(b) for b in bxs]
        total = sum(counts)
        if total == 0:
            empty = np.zeros((0, self.input_size[1], self.input_size[0], 3), np.uint8)
            z = np.zeros((0, 2), np.float32)
            return CropBatch(empty, False, counts, bxs, scores, z, z)
        frame_idx = np.repeat(np.arange(len(bxs)), counts)
        center, scale = box_to_center_scale(
            np.concatenate(bxs, 0), aspect_ratio=self.aspect_ratio, box_format="xyxy", padding=self.padding
        )
        crops, normalized = self._crops(images, frame_idx, center, scale)
        if self.flip_test:
            if normalized:
                crops = torch.cat([crops, crops.flip(3)], 0)  # type: ignore[union-attr]
            else:
                crops = np.concatenate([crops, crops[:, :, ::-1]], 0)
        return CropBatch(crops, normalized, counts, bxs, scores, center, scale)

    def decode(self, crops: CropBatch, heatmaps: torch.Tensor) -> list[Poses]:
        """Keypoints from the network's heatmaps of ``crops`` (``(N, K, h', w')``, any device).

        Returns:
            One :class:`~hrstream.types.Poses` per frame: keypoints ``(n_i, K, 2)`` image pixels (pixel
            centres at integers) and their heatmap maxima.
        """
        total = crops.total
        if total == 0:
            return [Poses.empty(self.num_keypoints) for _ in crops.counts]
        heatmaps = self._check_heatmaps(heatmaps, len(crops))
        if self.flip_test:
            heatmaps = flip_test_merge(
                heatmaps[:total], heatmaps[total:], self.flip_pairs, shift=self.shift_heatmap
            )
        c_t = torch.from_numpy(crops.center).to(heatmaps.device)
        s_t = torch.from_numpy(crops.scale).to(heatmaps.device)
        coords, maxvals = decode_heatmaps(heatmaps, c_t, s_t, self.decoder, kernel=self.kernel)
        coords_np = coords.cpu().numpy()
        scores_np = maxvals[..., 0].cpu().numpy()
        logger.debug("estimated %d people in %d frames", total, len(crops.counts))
        result: list[Poses] = []
        start = 0
        for i, n in enumerate(crops.counts):
            sl = slice(start, start + n)
            start += n
            poses = Poses(
                boxes=crops.boxes[i],
                box_scores=crops.scores[i],
                keypoints=coords_np[sl],
                keypoint_scores=scores_np[sl],
            )
            if self.oks_nms_thr is not None:
                poses = oks_nms(
                    poses,
                    self.oks_nms_thr,
                    aspect_ratio=self.aspect_ratio,
                    padding=self.padding,
                    in_vis_thr=self.oks_in_vis_thr,
                    **({} if self.oks_sigmas is None else {"sigmas": self.oks_sigmas}),
                )
            result.append(poses)
        return result

    @torch.inference_mode()
    def estimate(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        box_scores: Sequence[np.ndarray] | None = None,
    ) -> list[Poses]:
        """Keypoints of every box of every frame, all crops through ``model_fn`` at once (in chunks of
        ``max_batch``): :meth:`prepare`, the network, :meth:`decode`.

        Args:
            images: per frame ``uint8 (H, W, 3)`` RGB.
            boxes: per frame ``(n_i, 4)`` xyxy pixels.
            box_scores: per frame ``(n_i,)``; ones when ``None``.

        Returns:
            One :class:`~hrstream.types.Poses` per frame: keypoints ``(n_i, K, 2)`` image pixels (pixel
            centres at integers) and their heatmap maxima.
        """
        crops = self.prepare(images, boxes, box_scores)
        if crops.total == 0:
            return self.decode(crops, torch.zeros(0))
        outs = []
        for chunk in crops.chunks(self.max_batch):
            x = chunk if crops.normalized else normalize_uint8(torch.from_numpy(chunk), self._mean, self._std)
            outs.append(self.model_fn(x))
        return self.decode(crops, torch.cat(outs, 0) if len(outs) > 1 else outs[0])


class TopDownPose:
    """The top-down estimator of a pipeline (:class:`hrstream.pipeline.estimators.Estimator`): the crops of every
    person box of a batch of frames of any sources (``FrameResult.detections``), through the network in as few
    calls as the engine's batch allows, decoded into ``FrameResult.poses`` (keypoints in image pixels, the boxes
    and their scores kept); frames without boxes get no people."""

    needs_boxes: ClassVar[bool] = True
    fills: ClassVar[str] = "poses"
    device_outputs: ClassVar[bool] = False

    def __init__(self, estimator: TopDownEstimator) -> None:
        self.estimator = estimator

    def weight(self, result: FrameResult) -> int:
        return max(1, len(result.detections) if result.detections is not None else 0)

    def prepare(self, batch: Sequence[FrameResult]) -> CropBatch:
        dets = [r.detections if r.detections is not None else Detections.empty() for r in batch]
        return self.estimator.prepare(
            [r.frame.image for r in batch], [d.boxes for d in dets], [d.scores for d in dets]
        )

    def chunks(self, crops: CropBatch) -> list[Chunk]:
        if not crops.total:
            return []
        return [Chunk(c, crops.normalized) for c in crops.chunks(self.estimator.max_batch)]

    def decode(self, batch: Sequence[FrameResult], crops: CropBatch, outputs: Sequence[Output]) -> None:
        heatmaps = torch.cat(outputs, 0) if len(outputs) > 1 else (outputs[0] if outputs else torch.zeros(0))  # type: ignore[arg-type]
        for r, poses in zip(batch, self.estimator.decode(crops, heatmaps), strict=True):  # type: ignore[arg-type]
            r.poses = poses
            r.frame.release_device()  # the last network that needs the frame on the device
