"""COCO keypoint evaluation (pycocotools ``COCOeval(..., 'keypoints')``) and export to COCO results."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrstream.errors import InputError
from hrstream.pose.nms import rescore
from hrstream.types import Poses

__all__ = ["COCO_KEYPOINT_METRICS", "evaluate_coco_keypoints", "to_coco_results"]

logger = logging.getLogger(__name__)

#: The ten numbers of ``COCOeval.stats`` for keypoints, named as the official HRNet code prints them.
COCO_KEYPOINT_METRICS: tuple[str, ...] = (
    "AP",
    "AP .5",
    "AP .75",
    "AP (M)",
    "AP (L)",
    "AR",
    "AR .5",
    "AR .75",
    "AR (M)",
    "AR (L)",
)


def to_coco_results(
    poses: Sequence[Poses],
    image_ids: Sequence[int],
    *,
    category_id: int = 1,
    rescore_official: bool = True,
    in_vis_thr: float = 0.2,
) -> list[dict[str, Any]]:
    """COCO keypoint results (``[{image_id, category_id, keypoints: [x, y, s] * K, score}]``).

    Args:
        poses: one :class:`~hrstream.types.Poses` per image.
        image_ids: the COCO image id of each entry of ``poses``.
        rescore_official: person score = box score x mean keypoint score above ``in_vis_thr`` (the
            official evaluation); otherwise the box score.

    The third value of each keypoint is its score (the official ``maxvals``).
    """
    if len(poses) != len(image_ids):
        raise ValueError(f"got {len(poses)} Poses but {len(image_ids)} image ids")
    out: list[dict[str, Any]] = []
    for p, image_id in zip(poses, image_ids, strict=True):
        if len(p) == 0:
            continue
        if rescore_official:
            scores = rescore(p.box_scores, p.keypoint_scores, in_vis_thr=in_vis_thr)
        else:
            scores = p.box_scores.astype(np.float64)
        kps = np.concatenate([p.keypoints, p.keypoint_scores[..., None]], axis=2).astype(np.float64)
        for i in range(len(p)):
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_id),
                    "keypoints": kps[i].reshape(-1).tolist(),
                    "score": float(scores[i]),
                }
            )
    return out


def evaluate_coco_keypoints(
    results: str | Path | Sequence[dict[str, Any]],
    gt_json_path: str | Path,
) -> dict[str, float]:
    """Run pycocotools' keypoint evaluation.

    Args:
        results: a COCO results JSON path or the list itself (``image_id``, ``category_id``,
            ``keypoints`` flat ``[x, y, v] * K``, ``score``).
        gt_json_path: COCO keypoint annotations JSON.

    Returns:
        ``{name: value}`` for :data:`COCO_KEYPOINT_METRICS` (``AP`` is AP@[.5:.95]). With no results every
        value is 0.0.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(results, (str, Path)):
        try:
            dets = json.loads(Path(results).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"keypoint results {results}: cannot read it as JSON ({e})") from e
    else:
        dets = list(results)
    if not dets:
        logger.warning("no keypoint results to evaluate; every metric is 0")
        return dict.fromkeys(COCO_KEYPOINT_METRICS, 0.0)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        try:
            gt = COCO(str(gt_json_path))
        except (OSError, ValueError) as e:
            raise InputError(f"COCO annotations {gt_json_path}: cannot read them ({e})") from e
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    logger.debug("pycocotools:\n%s", sink.getvalue())
    return {name: float(v) for name, v in zip(COCO_KEYPOINT_METRICS, ev.stats, strict=True)}
