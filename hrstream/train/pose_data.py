"""Top-down pose training samples from a COCO keypoints dataset (images folder + annotation JSON).

One sample per person instance with ``num_keypoints > 0`` (``iscrowd`` 0), its box cleaned and turned into
the official ``(center, scale)`` (aspect fix to the input's ``w/h``, 1.25 padding; :func:`box_to_center_scale`).
Training augmentation follows ``JointsDataset.__getitem__`` of the official code: random scale
``clip(N(1, sf), 1-sf, 1+sf)``, rotation ``clip(N(0, rf), -2rf, 2rf)`` with probability 0.6, horizontal flip with
the COCO flip pairs (probability 0.5), optional half-body crops; then the official affine crop
(:func:`get_affine_transform` + ``cv2.warpAffine``, bilinear, zero border).

Randomness comes from a generator seeded by ``(seed, epoch, index)``, so a sample is the same whatever the
number of loader workers.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hrstream.errors import InputError
from hrstream.pose.crops import IMAGENET_MEAN, IMAGENET_STD, box_to_center_scale, get_affine_transform
from hrstream.pose.keypoints import COCO_FLIP_PAIRS
from hrstream.train.targets import generate_target

__all__ = ["PersonRecord", "PoseAugment", "PoseDataset", "load_coco_people", "read_coco", "read_rgb"]

log = logging.getLogger(__name__)

#: COCO upper-body joints (nose .. wrists), for half-body augmentation.
UPPER_BODY = tuple(range(11))


@dataclass(frozen=True)
class PersonRecord:
    """One person instance: ``image`` path, COCO ``image_id``, clean ``box`` xywh ``(4,)`` float32, ``joints``
    ``(K, 2)`` float32 image pixels, ``vis`` ``(K,)`` float32 in {0, 1}, ``center``/``scale`` ``(2,)``."""

    image: Path
    image_id: int
    box: np.ndarray
    joints: np.ndarray
    vis: np.ndarray
    center: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class PoseAugment:
    """Augmentation settings (the official ``DATASET`` keys). ``enabled=False`` gives the plain crop."""

    enabled: bool = True
    scale_factor: float = 0.35
    rot_factor: float = 45.0
    rot_prob: float = 0.6
    flip: bool = True
    half_body_prob: float = 0.0
    half_body_min_joints: int = 8

    @classmethod
    def from_config(cls, cfg: dict[str, Any], enabled: bool = True) -> PoseAugment:
        d = cfg.get("DATASET") or {}
        return cls(
            enabled=enabled,
            scale_factor=float(d.get("SCALE_FACTOR", 0.35)),
            rot_factor=float(d.get("ROT_FACTOR", 45)),
            flip=bool(d.get("FLIP", True)),
            half_body_prob=float(d.get("PROB_HALF_BODY", 0.0)),
            half_body_min_joints=int(d.get("NUM_JOINTS_HALF_BODY", 8)),
        )


def read_rgb(path: Path) -> np.ndarray:
    """``uint8 (H, W, 3)`` RGB; :class:`InputError` naming the file when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(
            f"{path}: cannot read it as an image; check the file or remove it from the annotations"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_coco(ann_file: Path) -> Any:
    """A ``pycocotools.coco.COCO`` index of ``ann_file`` (its prints silenced); :class:`InputError` naming the
    file when it is missing or not COCO annotations."""
    from pycocotools.coco import COCO

    if not ann_file.is_file():
        raise InputError(f"{ann_file}: annotation file not found; pass a COCO annotation JSON")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(ann_file))
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{ann_file}: cannot read it as COCO annotations ({e})") from e


def load_coco_people(
    ann_file: str | Path, images_dir: str | Path, *, num_joints: int, aspect_ratio: float
) -> list[PersonRecord]:
    """Person instances of a COCO keypoints file, as the official ``_load_coco_keypoint_annotation_kernal``.

    Boxes are clipped to the image (``x2 = min(W-1, x1 + max(0, w-1))``), empty ones and instances without
    labelled keypoints are dropped. Raises :class:`InputError` naming the file for unreadable annotations or
    missing images.
    """
    ann_file, images_dir = Path(ann_file), Path(images_dir)
    coco = read_coco(ann_file)
    people: list[PersonRecord] = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        path = images_dir / info["file_name"]
        width, height = int(info["width"]), int(info["height"])
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            if ann.get("category_id", 1) != 1 or int(ann.get("num_keypoints", 0)) <= 0:
                continue
            kp = np.asarray(ann.get("keypoints", []), dtype=np.float32).reshape(-1, 3)
            if len(kp) != num_joints or kp[:, 2].max() <= 0:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            x1, y1 = max(0.0, x), max(0.0, y)
            x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
            y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
            if ann.get("area", 1.0) <= 0 or x2 < x1 or y2 < y1:
                continue
            box = np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)
            c, s = box_to_center_scale(box[None], aspect_ratio=aspect_ratio)
            people.append(
                PersonRecord(
                    path, int(image_id), box, kp[:, :2].copy(), np.minimum(kp[:, 2], 1.0), c[0], s[0]
                )
            )
    missing = sorted({str(p.image) for p in people if not p.image.is_file()})
    if missing:
        raise InputError(f"{missing[0]}: image named in {ann_file} not found ({len(missing)} missing)")
    if not people:
        raise InputError(f"{ann_file}: no person instance with keypoints (num_keypoints > 0)")
    return people


class PoseDataset(Dataset):
    """Samples ``(image (3, h, w) float32 normalised RGB, target (K, h', w') float32, target_weight (K, 1),
    meta)``; ``meta`` holds ``index``, ``center`` ``(2,)`` and ``scale`` ``(2,)`` (after augmentation)."""

    def __init__(
        self,
        people: Sequence[PersonRecord],
        *,
        image_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float = 2.0,
        augment: PoseAugment | None = None,
        flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS,
        seed: int = 0,
    ) -> None:
        self.people = list(people)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.augment = augment or PoseAugment(enabled=False)
        self.flip_pairs = np.asarray(flip_pairs, dtype=np.int64).reshape(-1, 2)
        self.seed = int(seed)
        self.epoch = 0
        self._mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        self._std = np.asarray(IMAGENET_STD, dtype=np.float32)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.people)

    def _half_body(self, joints: np.ndarray, vis: np.ndarray, rng: np.random.Generator) -> tuple | None:
        upper = [j for j in range(len(joints)) if vis[j] > 0 and j in UPPER_BODY]
        lower = [j for j in range(len(joints)) if vis[j] > 0 and j not in UPPER_BODY]
        chosen = upper if (rng.random() < 0.5 and len(upper) > 2) else (lower if len(lower) > 2 else upper)
        if len(chosen) < 2:
            return None
        pts = joints[chosen]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        _, s = box_to_center_scale(
            np.concatenate([lo, hi - lo])[None],
            aspect_ratio=self.image_size[0] / self.image_size[1],
            padding=1.5,
        )
        return pts.mean(axis=0).astype(np.float32), s[0]  # the official centre is the joints' mean

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        rec = self.people[index]
        img = read_rgb(rec.image)
        joints, vis = rec.joints.copy(), rec.vis.copy()
        c, s = rec.center.copy(), rec.scale.copy()
        r = 0.0
        a = self.augment
        if a.enabled:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if (
                a.half_body_prob > 0
                and vis.sum() > a.half_body_min_joints
                and rng.random() < a.half_body_prob
            ):
                hb = self._half_body(joints, vis, rng)
                if hb is not None:
                    c, s = hb
            sf, rf = a.scale_factor, a.rot_factor
            s = s * float(np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf))
            r = (
                float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf))
                if rng.random() <= a.rot_prob
                else 0.0
            )
            if a.flip and rng.random() <= 0.5:
                width = img.shape[1]
                img = img[:, ::-1]
                joints[:, 0] = width - joints[:, 0] - 1
                for left, right in self.flip_pairs:
                    joints[[left, right]] = joints[[right, left]]
                    vis[[left, right]] = vis[[right, left]]
                joints *= vis[:, None]
                c = c.copy()
                c[0] = width - c[0] - 1
        trans = get_affine_transform(c, s, r, self.image_size)
        crop = cv2.warpAffine(np.ascontiguousarray(img), trans, self.image_size, flags=cv2.INTER_LINEAR)
        pts = np.concatenate([joints, np.ones((len(joints), 1))], axis=1) @ trans.T
        joints = np.where(vis[:, None] > 0, pts, joints).astype(np.float32)
        target, weight = generate_target(joints, vis, self.image_size, self.heatmap_size, self.sigma)
        x = (crop.astype(np.float32) / 255.0 - self._mean) / self._std
        meta = {"index": index, "center": np.asarray(c, np.float32), "scale": np.asarray(s, np.float32)}
        return (
            torch.from_numpy(x.transpose(2, 0, 1).copy()),
            torch.from_numpy(target),
            torch.from_numpy(weight),
            meta,
        )
