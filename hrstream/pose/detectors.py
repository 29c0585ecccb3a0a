"""Person detectors for top-down pose: whole frame, a COCO detections file, or torchvision COCO models.

Every detector has ``detect(frames) -> list[Detections]`` (:class:`~hrstream.types.Detections`: boxes xyxy
``float32 (n, 4)`` in the frame's pixels and scores ``float32 (n,)``), one per frame, sorted by decreasing
score, all frames of a batch in one call.

Specs for :func:`make_detector`:

* ``full-frame``: one box ``(0, 0, W, H)`` with score 1 per frame.
* ``file:PATH``: COCO results-format JSON (``[{image_id, category_id, bbox: [x, y, w, h], score}]``);
  ``image_id`` is the frame index; only ``category_id == 1`` (person) is kept. The file is untrusted input:
  a box or score that is not a finite number, a box reaching past :data:`MAX_BOX_COORD` or with a negative
  width or height is refused (:class:`~hrstream.errors.InputError` naming the file and the entry). Unless a threshold is given,
  boxes are selected as the official top-down evaluation selects them (:class:`FileSelection`, from the
  pose config's ``TEST`` section): every person box scoring at least ``TEST.IMAGE_THRE``, no box NMS, no
  cap; the poses are then rescored and OKS-suppressed with ``TEST.IN_VIS_THRE`` / ``TEST.OKS_THRE``.
* ``fast``: torchvision ``ssdlite320_mobilenet_v3_large`` (COCO); ``accurate``:
  ``fasterrcnn_resnet50_fpn_v2`` (COCO). Weights come from torchvision's weights API and torch's cache.

A torchvision detector can test on the frame and its mirror image (``flip_test``) and fuse the two sets of
boxes (:func:`fuse_flipped`), as the pose network's flip test does for heatmaps.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np
import torch
import torchvision
from scipy.optimize import linear_sum_assignment
from torchvision.models import detection as tvdet

from hrstream.errors import ConfigError, InputError, WeightsUnavailableError
from hrstream.types import Detections, Frame

__all__ = [
    "DETECTOR_SPECS",
    "Detector",
    "FileDetector",
    "FileSelection",
    "FullFrameDetector",
    "TorchvisionDetector",
    "check_flip_test",
    "filter_people",
    "fuse_flipped",
    "fuse_mirror_outputs",
    "make_detector",
    "mirror_boxes",
    "torch_cache_path",
]

logger = logging.getLogger(__name__)

DETECTOR_SPECS = ("full-frame", "file:PATH", "fast", "accurate")
PERSON = 1

_TORCHVISION: dict[str, tuple[str, Callable[..., torch.nn.Module], Any]] = {
    "fast": (
        "ssdlite320_mobilenet_v3_large",
        tvdet.ssdlite320_mobilenet_v3_large,
        tvdet.SSDLite320_MobileNet_V3_Large_Weights.DEFAULT,
    ),
    "accurate": (
        "fasterrcnn_resnet50_fpn_v2",
        tvdet.fasterrcnn_resnet50_fpn_v2,
        tvdet.FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT,
    ),
}


class Detector(Protocol):
    """``detect(frames)``: the person boxes of each frame. ``batched``: a network, worth handing many frames
    at once (a pipeline batches frames for it)."""

    batched: bool

    def detect(self, frames: Sequence[Frame]) -> list[Detections]: ...


def _empty() -> Detections:
    return Detections.empty()


def filter_people(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    score_thr: float,
    nms_iou: float | None,
    max_people: int | None,
) -> Detections:
    """Score threshold, torchvision NMS (when ``nms_iou`` is set), top ``max_people``; sorted by score."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    keep = s >= score_thr
    b, s = b[keep], s[keep]
    if len(b) and nms_iou is not None:
        idx = torchvision.ops.nms(torch.from_numpy(b), torch.from_numpy(s), float(nms_iou)).numpy()
    else:
        idx = np.argsort(-s, kind="stable")
    if max_people is not None:
        idx = idx[:max_people]
    return Detections(b[idx], s[idx])


def mirror_boxes(boxes: torch.Tensor, axis: float) -> torch.Tensor:
    """``(n, 4)`` xyxy boxes of a mirrored image mapped back: ``x -> axis - x`` (``x0`` and ``x1`` swap).

    ``axis`` is ``W`` where pixel ``c`` spans ``[c, c + 1)`` (COCO-trained torchvision models) and ``W - 1``
    where pixel centres are at integers (hrstream's convention and its detectors' training flip).
    """
    return torch.stack([axis - boxes[:, 2], boxes[:, 1], axis - boxes[:, 0], boxes[:, 3]], 1)


def fuse_flipped(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    boxes_flip: torch.Tensor,
    scores_flip: torch.Tensor,
    iou_thr: float = 0.6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse the detections of a frame (``boxes (n, 4)``, ``scores (n,)``) with those of its mirror image,
    already mapped back to the frame (``boxes_flip (m, 4)``, ``scores_flip (m,)``); boxes xyxy in pixels.

    Weighted box fusion (Solovyev et al., "Weighted boxes fusion", 2021) over the two views, one box per view:
    each box of the frame is paired with at most one box of the mirror (the optimal assignment on IoU,
    ``scipy.optimize.linear_sum_assignment``; pairs below ``iou_thr`` are not paired). A pair's box is the
    score-weighted mean of its two boxes, its score their mean; a box without a partner keeps half its score.
    Two boxes of the same view are never merged: the model's own NMS already kept them apart (two people
    who overlap). Returns ``(boxes (k, 4), scores (k,))`` sorted by score.
    """
    b0, s0 = boxes.float().reshape(-1, 4), scores.float().reshape(-1)
    b1, s1 = boxes_flip.float().reshape(-1, 4), scores_flip.float().reshape(-1)
    paired0 = torch.zeros(len(b0), dtype=torch.bool)
    paired1 = torch.zeros(len(b1), dtype=torch.bool)
    out_b: list[torch.Tensor] = []
    out_s: list[torch.Tensor] = []
    if len(b0) and len(b1):
        iou = torch.nan_to_num(torchvision.ops.box_iou(b0, b1), nan=0.0)  # two empty boxes: 0 / 0
        rows, cols = linear_sum_assignment(iou.numpy(), maximize=True)
        ok = iou[rows, cols] >= iou_thr
        r, c = torch.as_tensor(rows)[ok], torch.as_tensor(cols)[ok]
        w0, w1 = s0[r][:, None], s1[c][:, None]
        out_b.append((b0[r] * w0 + b1[c] * w1) / (w0 + w1).clamp_min(1e-12))
        out_s.append((s0[r] + s1[c]) / 2.0)
        paired0[r] = True
        paired1[c] = True
    out_b += [b0[~paired0], b1[~paired1]]
    out_s += [s0[~paired0] / 2.0, s1[~paired1] / 2.0]
    fused, mean = torch.cat(out_b), torch.cat(out_s)
    order = torch.argsort(mean, descending=True, stable=True)
    return fused[order], mean[order]


def fuse_mirror_outputs(
    out: dict[str, torch.Tensor], mirror: dict[str, torch.Tensor], axis: float, iou_thr: float = 0.6
) -> tuple[torch.Tensor, torch.Tensor]:
    """The person (label 1) boxes and scores of one torchvision output dict fused with those of the output for
    the mirror image (mapped back by :func:`mirror_boxes` at ``axis``) by :func:`fuse_flipped`, on the CPU."""
    p, pm = out["labels"] == PERSON, mirror["labels"] == PERSON
    return fuse_flipped(
        out["boxes"][p].float().cpu(),
        out["scores"][p].float().cpu(),
        mirror_boxes(mirror["boxes"][pm].float().cpu(), axis),
        mirror["scores"][pm].float().cpu(),
        iou_thr,
    )


class FullFrameDetector:
    """One person box covering the whole frame, ``(0, 0, W, H)``, score 1."""

    batched = False

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        return [
            Detections(np.array([[0.0, 0.0, f.width, f.height]], np.float32), np.ones((1,), np.float32))
            for f in frames
        ]


@dataclass(frozen=True)
class FileSelection:
    """How the official top-down evaluation (``lib/dataset/coco.py``) selects people from a detections file.

    ``image_thr`` (``TEST.IMAGE_THRE``): person boxes scoring less are dropped (no box NMS, no cap);
    ``in_vis_thr`` (``TEST.IN_VIS_THRE``): each pose is rescored by its box score times the mean of its
    keypoint scores above this; ``oks_thr`` (``TEST.OKS_THRE``): OKS NMS of the rescored poses
    (:func:`hrstream.pose.oks_nms`). The defaults are the official ``lib/config/default.py``'s; the
    official experiment YAMLs (and hrstream's configs) set 0.0 / 0.2 / 0.9.
    """

    image_thr: float = 0.1
    in_vis_thr: float = 0.0
    oks_thr: float = 0.5

    @classmethod
    def from_test(cls, test: Mapping[str, Any] | None) -> FileSelection:
        """Read a config's ``TEST`` section (``ModelSpec.test``); missing keys take the official defaults."""
        test = test or {}
        base = cls()
        try:
            return cls(
                image_thr=float(test.get("IMAGE_THRE", base.image_thr)),
                in_vis_thr=float(test.get("IN_VIS_THRE", base.in_vis_thr)),
                oks_thr=float(test.get("OKS_THRE", base.oks_thr)),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"config TEST.IMAGE_THRE / IN_VIS_THRE / OKS_THRE must be numbers ({e})"
            ) from None


#: Largest coordinate or size a detections file may give, in pixels (far beyond any frame the pixel cap
#: admits, yet exact in float32 arithmetic and safe for drawing).
MAX_BOX_COORD = 1e7


def _box_problem(x: float, y: float, w: float, h: float, score: float) -> str | None:
    """What is wrong with one detection of a file (``None``: nothing): numbers that are not finite, a box
    reaching past :data:`MAX_BOX_COORD`, a negative width or height."""
    box = f"bbox [{x:g}, {y:g}, {w:g}, {h:g}]"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f"{box} holds a value that is not a finite number"
    if not math.isfinite(score):
        return f"score {score:g} is not a finite number"
    if max(abs(x), abs(y), abs(x + w), abs(y + h)) > MAX_BOX_COORD:
        return f"{box} reaches outside +-{MAX_BOX_COORD:g} pixels"
    if w < 0:
        return f"{box} has a negative width"
    if h < 0:
        return f"{box} has a negative height"
    return None


class FileDetector:
    """Detections read from a COCO results-format JSON file; ``image_id`` is the frame index.

    ``score_thr=None`` keeps what the official evaluation keeps: boxes scoring at least
    ``selection.image_thr`` (the config's ``TEST.IMAGE_THRE``); a number replaces it. ``nms_iou`` and
    ``max_people`` (``None``: none, as in the official evaluation) add a box NMS and a cap.
    """

    batched = False

    def __init__(
        self,
        path: str | Path,
        *,
        score_thr: float | None = None,
        nms_iou: float | None = None,
        max_people: int | None = None,
        selection: FileSelection | None = None,
    ) -> None:
        self.path = Path(path)
        self.selection = selection or FileSelection()
        if score_thr is None:
            score_thr = self.selection.image_thr
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"detections file {self.path}: cannot read it as JSON ({e})") from e
        if not isinstance(data, list):
            raise InputError(
                f"detections file {self.path}: expected a list of COCO results, got {type(data).__name__}"
            )
        per_frame: dict[int, tuple[list[list[float]], list[float]]] = {}
        for i, det in enumerate(data):
            try:
                if int(det.get("category_id", PERSON)) != PERSON:
                    continue
                x, y, w, h = (float(v) for v in det["bbox"])
                image_id, score = int(det["image_id"]), float(det["score"])
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise InputError(
                    f"detections file {self.path}: entry {i} needs image_id, bbox [x, y, w, h] and score ({e})"
                ) from e
            problem = _box_problem(x, y, w, h, score)
            if problem is not None:
                raise InputError(
                    f"detections file {self.path}: entry {i} (image_id {image_id}): {problem}; fix the entry or "
                    "remove it (boxes are COCO [x, y, width, height] in pixels, width and height >= 0)"
                )
            entry = per_frame.setdefault(image_id, ([], []))
            entry[0].append([x, y, x + w, y + h])
            entry[1].append(score)
        self._dets = {
            k: filter_people(
                np.asarray(v[0], np.float32),
                np.asarray(v[1], np.float32),
                score_thr=score_thr,
                nms_iou=nms_iou,
                max_people=max_people,
            )
            for k, v in per_frame.items()
        }
        logger.info("read detections for %d frames from %s", len(self._dets), self.path)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        return [self._dets.get(f.index, _empty()) for f in frames]


class TorchvisionDetector:
    """A torchvision detection model (``model(list of (3, H, W) float in [0, 1]) -> dicts``), class 1 = person.

    ``flip_test``: also run the mirror image of each frame (in the same batch) and fuse both views' boxes
    with :func:`fuse_flipped` at ``flip_iou`` before the score threshold, NMS and ``max_people``.
    ``pixel_edges_at_integers``: the model's box convention, which the mirror must respect. COCO-trained
    torchvision models have pixel ``c`` spanning ``[c, c + 1)``, so a mirrored ``x`` maps back to ``W - x``;
    hrstream's ``det_hrnet`` detectors learn boxes with pixel centres at integers (the synthetic truth's
    convention, and their training flip's), so ``x`` maps back to ``W - 1 - x``.
    """

    batched = True

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        score_thr: float = 0.5,
        nms_iou: float | None = 0.5,
        max_people: int | None = None,
        device: str | torch.device = "cpu",
        flip_test: bool = False,
        flip_iou: float = 0.6,
        pixel_edges_at_integers: bool = True,
    ) -> None:
        if not 0.0 < flip_iou <= 1.0:
            raise ConfigError(f"detector flip_iou must be in (0, 1], got {flip_iou}")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.score_thr = score_thr
        self.nms_iou = nms_iou
        self.max_people = max_people
        self.flip_test = bool(flip_test)
        self.flip_iou = float(flip_iou)
        self._mirror_width_offset = 0.0 if pixel_edges_at_integers else -1.0

    @torch.inference_mode()
    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        if not frames:
            return []
        inputs = [f.device_image(self.device).float() / 255.0 for f in frames]
        n = len(inputs)
        outs = self.model(inputs + [x.flip(-1) for x in inputs] if self.flip_test else inputs)
        result = []
        for i, out in enumerate(outs[:n]):
            if self.flip_test:
                axis = inputs[i].shape[-1] + self._mirror_width_offset
                boxes, scores = fuse_mirror_outputs(out, outs[n + i], axis, self.flip_iou)
            else:
                person = out["labels"] == PERSON
                boxes, scores = out["boxes"][person].float().cpu(), out["scores"][person].float().cpu()
            result.append(
                filter_people(
                    boxes.numpy(),
                    scores.numpy(),
                    score_thr=self.score_thr,
                    nms_iou=self.nms_iou,
                    max_people=self.max_people,
                )
            )
        return result


def torch_cache_path(url: str) -> Path:
    """Where torch's hub cache keeps the file of ``url``: ``torch.hub.get_dir()/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _ensure_weights(spec: str, arch: str, weights: Any, timeout_s: float) -> None:
    url = weights.url
    path = torch_cache_path(url)
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    hash_prefix = torch.hub.HASH_REGEX.search(path.name)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        logger.info("downloading %s weights from %s", arch, url)
        torch.hub.download_url_to_file(
            url, str(path), hash_prefix.group(1) if hash_prefix else None, progress=False
        )
    except Exception as e:  # URLError, timeouts, HTTP errors, hash mismatch: all mean "not available"
        raise WeightsUnavailableError(
            f"detector '{spec}' ({arch}): cannot download weights from {url} "
            f"({type(e).__name__}: {e}); put the file at {path}, or use --detector full-frame or "
            f"--detector file:PATH, which work offline"
        ) from e
    finally:
        socket.setdefaulttimeout(old)


def check_flip_test(spec: str, flip_test: bool) -> None:
    """Raise :class:`ConfigError` when ``flip_test`` is asked of a detector that is no network (``full-frame``,
    ``file:PATH``, ``seg``): only network detectors can run the mirror image."""
    if flip_test and spec not in _TORCHVISION:
        raise ConfigError(
            f"detector flip_test is for network detectors (fast, accurate, a det_hrnet config), not {spec!r}; "
            "set detector.flip_test: false"
        )


def make_detector(
    spec: str,
    *,
    score_thr: float | None = 0.5,
    nms_iou: float | None = 0.5,
    max_people: int | None = None,
    device: str | torch.device = "cpu",
    download_timeout_s: float = 30.0,
    flip_test: bool = False,
    test: Mapping[str, Any] | None = None,
) -> Detector:
    """Build a detector from a spec (``full-frame``, ``file:PATH``, ``fast``, ``accurate``); ``flip_test``
    (torchvision models only) also runs the mirror image, see :class:`TorchvisionDetector`.

    ``test`` is the pose config's ``TEST`` section: with ``score_thr=None`` a ``file:`` detector keeps what
    the official evaluation keeps (:class:`FileSelection`); network detectors take ``None`` as 0.5.

    Raises:
        ConfigError: unknown spec or bad option.
        InputError: the detections file cannot be read.
        WeightsUnavailableError: torchvision weights are neither cached nor downloadable.
    """
    check_flip_test(spec, flip_test)
    det: Detector
    if spec == "full-frame":
        det = FullFrameDetector()
    elif spec.startswith("file:"):
        det = FileDetector(
            spec[5:],
            score_thr=score_thr,
            nms_iou=nms_iou,
            max_people=max_people,
            selection=FileSelection.from_test(test),
        )
    elif spec in _TORCHVISION:
        arch, builder, weights = _TORCHVISION[spec]
        _ensure_weights(spec, arch, weights, download_timeout_s)
        model = builder(weights=weights)
        det = TorchvisionDetector(
            model,
            score_thr=0.5 if score_thr is None else score_thr,
            nms_iou=nms_iou,
            max_people=max_people,
            device=device,
            flip_test=flip_test,
        )
    else:
        raise ConfigError(
            f"unknown detector {spec!r}; expected one of {', '.join(DETECTOR_SPECS)}, seg, "
            "or a det_hrnet config (registered name or YAML path)"
        )
    return det
