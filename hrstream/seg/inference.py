"""Batched semantic-segmentation inference over video frames.

The estimator follows the official HRNet-Semantic-Segmentation test path
(``lib/datasets/base_dataset.py``): RGB ``/ 255``, minus the ImageNet mean, divided by the std; the
network's logits (a quarter of the input size) are upsampled bilinearly with the config's
``ALIGN_CORNERS`` to the frame size and the label is the argmax. On top of that it batches several
frames into one model call, does all the pre- and post-processing on the model's device, and offers the
official offline options: sliding windows with overlap (logits averaged on overlaps), horizontal flip
and several scales (logits averaged).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from hrstream.errors import ConfigError
from hrstream.runtime.engine import Chunk, Output
from hrstream.runtime.markers import Marker, PerSource
from hrstream.seg.temporal import ProbabilitySmoother
from hrstream.types import FrameResult, SegMap

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SegInputs",
    "Segmentation",
    "SegmentationEstimator",
    "estimator_options_from_config",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ModelFn = Callable[[torch.Tensor], Any]


@dataclass(frozen=True)
class _Job:
    """One model input: a window ``[y0:y1, x0:x1]`` of frame ``frame`` at the current scale."""

    frame: int
    y0: int
    y1: int
    x0: int
    x1: int
    flip: bool
    windowed: bool
    scale: int = 0


@dataclass(eq=False)
class SegInputs:
    """The model inputs of a batch of frames (:meth:`SegmentationEstimator.prepare_inputs`).

    Attributes:
        sizes: each frame's ``(H, W)``.
        chunks: the model calls: their jobs (which frame, window, flip, scale each row is) and their normalised
            ``float32 (n, 3, h, w)`` inputs on the device.
        windows: ``(scale index, frame) -> (h, w)`` of the scaled frames cut into windows.
    """

    sizes: list[tuple[int, int]]
    chunks: list[tuple[list[_Job], torch.Tensor]]
    windows: dict[tuple[int, int], tuple[int, int]]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of ``window`` pixels covering ``[0, length)`` with ``stride``.

    As in the official ``multi_scale_inference``: windows step by ``stride`` and the last one is pushed
    back so that it ends at ``length``; a length no larger than the window gives one start, 0.
    """
    if length <= window:
        return [0]
    count = math.ceil((length - window) / stride) + 1
    starts = []
    for i in range(count):
        end = min(i * stride + window, length)
        starts.append(max(end - window, 0))
    return sorted(set(starts))


def estimator_options_from_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :class:`SegmentationEstimator` from a config in the official seg schema.

    Reads ``DATASET.NUM_CLASSES``, ``MODEL.ALIGN_CORNERS`` (official default ``True``),
    ``TEST.FLIP_TEST``, ``TEST.SCALE_LIST`` (only when ``TEST.MULTI_SCALE`` is true) and
    ``TEST.OUTPUT_INDEX``. The input size is left native (``test_size=None``): the caller chooses it.
    """
    dataset = cfg.get("DATASET") or {}
    model = cfg.get("MODEL") or {}
    test = cfg.get("TEST") or {}
    if "NUM_CLASSES" not in dataset:
        raise ConfigError("segmentation config: missing field DATASET.NUM_CLASSES")
    opts: dict[str, Any] = {
        "num_classes": int(dataset["NUM_CLASSES"]),
        "align_corners": bool(model.get("ALIGN_CORNERS", True)),
        "flip": bool(test.get("FLIP_TEST", False)),
        "output_index": int(test.get("OUTPUT_INDEX", -1)),
    }
    if test.get("MULTI_SCALE", False):
        opts["scales"] = tuple(float(v) for v in test.get("SCALE_LIST", [1.0]))
    return opts


class SegmentationEstimator:
    """Per-pixel class labels for batches of RGB frames.

    Args:
        model_fn: maps a normalised ``float32 (N, 3, h, w)`` tensor on ``device`` to logits
            ``(N, C, h', w')`` (``h' ~ h / 4`` for HRNet). A list/tuple of outputs (OCR-style heads) is
            accepted; ``output_index`` picks one (official ``TEST.OUTPUT_INDEX``, default -1).
        num_classes: ``C``; at most 256 so that labels fit ``uint8``.
        test_size: ``(W, H)`` the frame is resized to before inference, or ``None`` for the native size.
        keep_aspect: with ``test_size``, fit the frame inside ``(W, H)`` keeping its aspect ratio
            (default) instead of stretching it to exactly ``(W, H)``.
        align_corners: the config's ``MODEL.ALIGN_CORNERS``, used for every bilinear resize of logits.
        mean, std: per-channel RGB normalisation applied after ``/ 255``.
        device: where preprocessing, the model and postprocessing run (the model must already be there).
        flip: also run the horizontally flipped input and average the logits (official flip test).
        scales: multiples of the (test) size to run; logits are averaged over scales.
        window: ``(w, h)`` sliding window for inputs larger than it, or ``None`` to run whole frames.
        overlap: fraction of the window shared by neighbouring windows (official: 1/3).
        max_batch: most model inputs (frames, windows, flipped copies) per model call.
        output_index: which output to use when ``model_fn`` returns several.
    """

    def __init__(
        self,
        model_fn: ModelFn,
        *,
        num_classes: int,
        test_size: tuple[int, int] | None = None,
        keep_aspect: bool = True,
        align_corners: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        device: str | torch.device = "cpu",
        flip: bool = False,
        scales: Sequence[float] = (1.0,),
        window: tuple[int, int] | None = None,
        overlap: float = 1.0 / 3.0,
        max_batch: int = 8,
        output_index: int = -1,
    ) -> None:
        if not 1 <= int(num_classes) <= 256:
            raise ConfigError(f"num_classes must be in 1..256 for uint8 labels, got {num_classes}")
        if test_size is not None and (len(test_size) != 2 or min(test_size) < 1):
            raise ConfigError(f"test_size must be (W, H) with positive sides or None, got {test_size!r}")
        if window is not None and (len(window) != 2 or min(window) < 1):
            raise ConfigError(f"window must be (w, h) with positive sides or None, got {window!r}")
        if not 0.0 <= overlap < 1.0:
            raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
        if not scales or min(scales) <= 0:
            raise ConfigError(f"scales must be positive numbers, got {tuple(scales)!r}")
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ConfigError(f"mean and std must have 3 values (std > 0), got {tuple(mean)}, {tuple(std)}")
        self.model_fn = model_fn
        self.num_classes = int(num_classes)
        self.test_size = None if test_size is None else (int(test_size[0]), int(test_size[1]))
        self.keep_aspect = bool(keep_aspect)
        self.align_corners = bool(align_corners)
        self.device = torch.device(device)
        self.flip = bool(flip)
        self.scales = tuple(float(s) for s in scales)
        self.window = None if window is None else (int(window[0]), int(window[1]))
        self.overlap = float(overlap)
        self.max_batch = int(max_batch)
        self.output_index = int(output_index)
        self._mean = torch.tensor([float(m) for m in mean], dtype=torch.float32, device=self.device)
        self._std = torch.tensor([float(s) for s in std], dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ public API
    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Labels of each frame: ``uint8 (H, W)`` class indices at the frame's own resolution."""
        return [logits.argmax(dim=0).to(torch.uint8).cpu().numpy() for logits in self.predict_logits(images)]

    def predict_probs(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Class probabilities of each frame: ``float32 (C, H, W)`` softmax of the logits, on ``device``."""
        return [torch.softmax(logits, dim=0) for logits in self.predict_logits(images)]

    @torch.inference_mode()
    def predict_logits(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Averaged logits of each frame: ``float32 (C, H, W)`` at the frame's resolution, on ``device``.

        ``images`` are ``uint8 (H, W, 3)`` RGB arrays; frames may differ in size. Frames (or their
        windows) of the same input shape share model calls of up to ``max_batch`` inputs:
        :meth:`prepare_inputs`, ``model_fn`` on each of its chunks, :meth:`combine`.
        """
        prepared = self.prepare_inputs(images)
        return self.combine(prepared, [self.model_fn(x) for _, x in prepared.chunks])

    @torch.inference_mode()
    def prepare_inputs(self, images: Sequence[np.ndarray]) -> SegInputs:
        """The model inputs of ``images`` (``uint8 (H, W, 3)`` RGB, any sizes): every scale, window and flip,
        grouped by input shape into chunks of at most ``max_batch`` normalised ``float32 (n, 3, h, w)``
        tensors on ``device``."""
        frames = [self._to_tensor(i, img) for i, img in enumerate(images)]
        sizes = [(int(x.shape[1]), int(x.shape[2])) for x in frames]
        prepared = SegInputs(sizes, [], {})
        flips = (False, True) if self.flip else (False,)
        for si, scale in enumerate(self.scales):
            scaled = [self._resize_input(x, scale) for x in frames]
            groups: dict[tuple[int, int], list[_Job]] = defaultdict(list)
            for i, x in enumerate(scaled):
                h, w = int(x.shape[1]), int(x.shape[2])
                tiles = self._tiles(h, w)
                windowed = len(tiles) > 1
                if windowed:
                    prepared.windows[(si, i)] = (h, w)
                for y0, y1, x0, x1 in tiles:
                    for fl in flips:
                        groups[(y1 - y0, x1 - x0)].append(_Job(i, y0, y1, x0, x1, fl, windowed, si))
            for jobs in groups.values():
                for start in range(0, len(jobs), self.max_batch):
                    chunk = jobs[start : start + self.max_batch]
                    prepared.chunks.append(
                        (chunk, torch.stack([self._crop(scaled[j.frame], j) for j in chunk]))
                    )
        return prepared

    @torch.inference_mode()
    def combine(self, prepared: SegInputs, outputs: Sequence[Any]) -> list[torch.Tensor]:
        """Averaged logits ``float32 (C, H, W)`` of each frame of ``prepared`` from the model's outputs of its
        chunks (in order; on any device): flips and windows averaged, upsampled to the frame, scales averaged."""
        sizes = prepared.sizes
        sums: list[torch.Tensor | None] = [None] * len(sizes)
        accs: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        nflips = 2 if self.flip else 1
        for (jobs, batch), out in zip(prepared.chunks, outputs, strict=True):
            logits = self._check_logits(out, int(batch.shape[0])).to(self.device)
            for job, lg in zip(jobs, logits, strict=True):
                if job.flip:
                    lg = lg.flip(-1)
                if job.windowed:
                    key = (job.scale, job.frame)
                    if key not in accs:
                        h, w = prepared.windows[key]
                        accs[key] = (
                            torch.zeros((self.num_classes, h, w), dtype=torch.float32, device=self.device),
                            torch.zeros((1, h, w), dtype=torch.float32, device=self.device),
                        )
                    acc, count = accs[key]
                    acc[:, job.y0 : job.y1, job.x0 : job.x1] += self._upsample(
                        lg, (job.y1 - job.y0, job.x1 - job.x0)
                    )
                    count[:, job.y0 : job.y1, job.x0 : job.x1] += 1.0
                else:
                    up = self._upsample(lg, sizes[job.frame])
                    if nflips > 1:
                        up = up / nflips
                    elif up is lg:
                        up = up.clone()  # not a view of the batch output
                    sums[job.frame] = self._add(sums[job.frame], up)
        for (_, i), (acc, count) in accs.items():
            sums[i] = self._add(sums[i], self._upsample(acc / count, sizes[i]))
        out_logits = []
        for s in sums:
            assert s is not None  # every frame got at least one job
            out_logits.append(s / len(self.scales) if len(self.scales) > 1 else s)
        return out_logits

    def input_size(self, width: int, height: int, scale: float = 1.0) -> tuple[int, int]:
        """``(w, h)`` of the network input for a ``width x height`` frame at ``scale`` (before windows)."""
        if self.test_size is None:
            base_w, base_h = float(width), float(height)
        elif self.keep_aspect:
            r = min(self.test_size[0] / width, self.test_size[1] / height)
            base_w, base_h = width * r, height * r
        else:
            base_w, base_h = float(self.test_size[0]), float(self.test_size[1])
        return max(1, int(base_w * scale + 0.5)), max(1, int(base_h * scale + 0.5))

    # ------------------------------------------------------------------ internals
    def _to_tensor(self, i: int, img: np.ndarray) -> torch.Tensor:
        """``uint8 (H, W, 3)`` RGB -> normalised ``float32 (3, H, W)`` on the device."""
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            got = f"{img.dtype}{img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"image {i} must be a uint8 (H, W, 3) RGB array, got {got}")
        t = torch.from_numpy(np.ascontiguousarray(img)).to(self.device, non_blocking=True)
        x = t.permute(2, 0, 1).to(torch.float32) / 255.0
        return (x - self._mean[:, None, None]) / self._std[:, None, None]

    def _resize_input(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        h, w = int(x.shape[1]), int(x.shape[2])
        nw, nh = self.input_size(w, h, scale)
        if (nh, nw) == (h, w):
            return x
        # Bilinear without antialiasing, as the official cv2.resize(..., INTER_LINEAR).
        return F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]

    def _tiles(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """``(y0, y1, x0, x1)`` windows covering an ``h x w`` input (one when it fits a window)."""
        if self.window is None:
            return [(0, h, 0, w)]
        win_w, win_h = self.window
        if h <= win_h and w <= win_w:
            return [(0, h, 0, w)]
        stride_h = max(1, int(win_h * (1.0 - self.overlap)))
        stride_w = max(1, int(win_w * (1.0 - self.overlap)))
        tiles = []
        for y0 in window_starts(h, win_h, stride_h):
            for x0 in window_starts(w, win_w, stride_w):
                tiles.append((y0, min(y0 + win_h, h), x0, min(x0 + win_w, w)))
        return tiles

    @staticmethod
    def _crop(x: torch.Tensor, job: _Job) -> torch.Tensor:
        crop = x[:, job.y0 : job.y1, job.x0 : job.x1]
        return crop.flip(-1) if job.flip else crop

    def _check_logits(self, out: Any, n: int) -> torch.Tensor:
        """The logits of one model call (the ``output_index`` one of several), checked: ``(n, C, h, w)``."""
        if isinstance(out, (list, tuple)):
            out = out[self.output_index]
        if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[0] != n:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"segmentation model must return logits (N={n}, C, h, w), got {got}")
        if out.shape[1] != self.num_classes:
            raise ConfigError(
                f"segmentation model returned {out.shape[1]} classes but num_classes={self.num_classes}; "
                "set num_classes (DATASET.NUM_CLASSES) to match the weights"
            )
        return out.to(torch.float32)

    def _upsample(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(logits.shape[-2:]) == tuple(size):
            return logits
        return F.interpolate(logits[None], size=size, mode="bilinear", align_corners=self.align_corners)[0]

    @staticmethod
    def _add(total: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """``total + x`` in place; ``x`` itself (a tensor owned by the caller) when there is no total."""
        return x if total is None else total.add_(x)


class Segmentation:
    """The segmentation estimator of a pipeline (:class:`hrstream.pipeline.estimators.Estimator`): whole frames
    of any sources through a :class:`SegmentationEstimator`, label maps ``uint8 (H, W)`` at each frame's
    resolution into ``FrameResult.seg``; with ``tau_s`` the argmax of per-source exponentially smoothed class
    probabilities (:class:`~hrstream.seg.temporal.ProbabilitySmoother`, reset at scene cuts). Its outputs are
    decoded on the engine's device (``device_outputs``)."""

    needs_boxes: ClassVar[bool] = False
    fills: ClassVar[str] = "seg"
    device_outputs: ClassVar[bool] = True

    def __init__(
        self, estimator: SegmentationEstimator, classes: Sequence[str], *, tau_s: float | None
    ) -> None:
        self.estimator = estimator
        self.classes = tuple(classes)
        self.tau_s = tau_s
        self._smoothers: PerSource[ProbabilitySmoother] = PerSource(
            lambda info: ProbabilitySmoother(tau_s)  # type: ignore[arg-type]
        )

    def weight(self, result: FrameResult) -> int:
        return 1

    def on_marker(self, marker: Marker) -> None:
        if self.tau_s:
            self._smoothers.on_marker(marker)

    def prepare(self, batch: Sequence[FrameResult]) -> SegInputs:
        return self.estimator.prepare_inputs([r.frame.image for r in batch])

    def chunks(self, prepared: SegInputs) -> list[Chunk]:
        return [Chunk(x, normalized=True) for _, x in prepared.chunks]

    def decode(self, batch: Sequence[FrameResult], prepared: SegInputs, outputs: Sequence[Output]) -> None:
        logits = self.estimator.combine(prepared, outputs)
        for r, lg in zip(batch, logits, strict=True):
            if self.tau_s:
                probs = self._smoothers[r.frame.source_id].update(
                    torch.softmax(lg, dim=0), t=r.frame.time, image=r.frame.image
                )
                lg = probs
            r.seg = SegMap(torch.argmax(lg, dim=0).to(torch.uint8).cpu().numpy(), self.classes)
