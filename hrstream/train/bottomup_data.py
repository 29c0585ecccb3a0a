"""Bottom-up (HigherHRNet) training samples from a COCO keypoints dataset, as the official ``CocoKeypoints``.

A sample is a whole image: every person with keypoints is a target at once. Per image (official order):

1. the ignore mask: 0 on crowd regions and on people annotated without keypoints, 1 elsewhere;
2. ``RandomAffineTransform``: a square crop of ``DATASET.INPUT_SIZE`` around the image centre moved by up to
   ``MAX_TRANSLATE * scale`` pixels, the short (``SCALE_TYPE: short``) or long side scaled by a factor drawn
   in ``[MIN_SCALE, MAX_SCALE]``, rotated by up to ``MAX_ROTATION`` degrees; the joints and the mask are mapped
   onto each output resolution (``DATASET.OUTPUT_SIZE``) with the same transform;
3. ``RandomHorizontalFlip`` with probability ``DATASET.FLIP``: image, masks and joints mirrored, left and
   right joints swapped (the flip index), ``x -> R - x - 1`` on the maps;
4. targets per resolution (:func:`~hrstream.train.bottomup_targets.heatmap_targets`, ``DATASET.SIGMA``;
   :func:`~hrstream.train.bottomup_targets.joint_indices`, ``DATASET.MAX_NUM_PEOPLE``) and the image
   normalised (``pixel / 255``, ImageNet mean/std, RGB).

Randomness comes from a generator seeded by ``(seed, epoch, index)``: a sample does not depend on the number
of loader workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hrstream.errors import InputError
from hrstream.models.higherhrnet import HigherHRNetSpec
from hrstream.pose.crops import IMAGENET_MEAN, IMAGENET_STD
from hrstream.train.bottomup_targets import heatmap_targets, joint_indices
from hrstream.train.pose_data import read_coco, read_rgb

__all__ = ["BottomUpAugment", "BottomUpDataset", "ImageRecord", "affine_matrix", "load_coco_images"]


@dataclass(frozen=True)
class ImageRecord:
    """One training image: ``joints`` ``float32 (M, K, 3)`` (x, y, visibility) image pixels of the people kept
    (``iscrowd`` 0 or with keypoints), ``ignore`` the annotations masked out (crowds, people without
    keypoints) as COCO ``segmentation`` values."""

    image: Path
    image_id: int
    width: int
    height: int
    joints: np.ndarray
    ignore: tuple[Any, ...]


@dataclass(frozen=True)
class BottomUpAugment:
    """The official ``DATASET`` augmentation keys; ``enabled=False`` gives the centred crop, unscaled."""

    enabled: bool = True
    max_rotation: float = 30.0
    min_scale: float = 0.75
    max_scale: float = 1.5
    scale_type: str = "short"
    max_translate: float = 40.0
    flip: float = 0.5

    @classmethod
    def from_config(cls, cfg: dict[str, Any], enabled: bool = True) -> BottomUpAugment:
        d = cfg.get("DATASET") or {}
        scale_type = str(d.get("SCALE_TYPE", "short"))
        if scale_type not in ("short", "long"):
            raise InputError(f"DATASET.SCALE_TYPE must be short or long, got {scale_type!r}")
        return cls(
            enabled=enabled,
            max_rotation=float(d.get("MAX_ROTATION", 30)),
            min_scale=float(d.get("MIN_SCALE", 0.75)),
            max_scale=float(d.get("MAX_SCALE", 1.25)),
            scale_type=scale_type,
            max_translate=float(d.get("MAX_TRANSLATE", 40)),
            flip=float(d.get("FLIP", 0.5)),
        )


def load_coco_images(ann_file: str | Path, images_dir: str | Path, *, num_joints: int) -> list[ImageRecord]:
    """Every image with at least one annotation (the official training filter), with its people."""
    ann_file, images_dir = Path(ann_file), Path(images_dir)
    coco = read_coco(ann_file)
    records = []
    for image_id in sorted(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
        if not anns:
            continue
        info = coco.loadImgs(image_id)[0]
        kept = [a for a in anns if a.get("iscrowd", 0) == 0 or a.get("num_keypoints", 0) > 0]
        joints = np.zeros((len(kept), num_joints, 3), np.float32)
        for i, a in enumerate(kept):
            kp = np.asarray(a.get("keypoints") or [0] * 3 * num_joints, np.float32).reshape(-1, 3)
            if len(kp) != num_joints:
                raise InputError(
                    f"{ann_file}: annotation {a.get('id')} has {len(kp)} keypoints, not {num_joints}"
                )
            joints[i] = kp
        ignore = tuple(
            a["segmentation"]
            for a in anns
            if (a.get("iscrowd", 0) or a.get("num_keypoints", 0) == 0) and a.get("segmentation")
        )
        path = images_dir / info["file_name"]
        records.append(
            ImageRecord(path, int(image_id), int(info["width"]), int(info["height"]), joints, ignore)
        )
    missing = [str(r.image) for r in records if not r.image.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: image named in {ann_file} not found ({len(missing)} missing)")
    if not records:
        raise InputError(f"{ann_file}: no annotated image")
    return records


def _decode(seg: Any, h: int, w: int) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as a ``uint8 (h, w)`` 0/1 mask."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        seg = mask_utils.frPyObjects(seg, h, w)
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), str):
        seg = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
    return mask_utils.decode(seg)


def affine_matrix(center: Sequence[float], scale: float, res: int, rot: float = 0.0) -> np.ndarray:
    """The official ``_get_affine_matrix``: ``(3, 3)`` mapping image pixels to a ``res x res`` map for a
    ``scale * 200`` pixel square around ``center``, rotated by ``rot`` degrees about the map centre."""
    h = 200.0 * scale
    t = np.eye(3)
    t[0, 0] = t[1, 1] = res / h
    t[0, 2] = res * (-float(center[0]) / h + 0.5)
    t[1, 2] = res * (-float(center[1]) / h + 0.5)
    if rot != 0:
        a = -rot * math.pi / 180.0
        r = np.eye(3)
        r[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
        shift = np.eye(3)
        shift[:2, 2] = -res / 2
        back = np.eye(3)
        back[:2, 2] = res / 2
        t = back @ r @ shift @ t
    return t


class BottomUpDataset(Dataset):
    """Samples ``(image float32 (3, S, S), targets [float32 (K, R_i, R_i)], masks [float32 (R_i, R_i)],
    joints [int64 (M, K, 2)])`` with one entry per output resolution ``R_i``."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        spec: HigherHRNetSpec,
        *,
        sigma: float = 2.0,
        augment: BottomUpAugment | None = None,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.spec = spec
        self.sigma = float(sigma)
        self.augment = augment or BottomUpAugment(enabled=False)
        self.seed = int(seed)
        self.epoch = 0
        self._mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        self._std = np.asarray(IMAGENET_STD, dtype=np.float32)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _mask(self, rec: ImageRecord) -> np.ndarray:
        m = np.zeros((rec.height, rec.width))
        for seg in rec.ignore:
            m += _decode(seg, rec.height, rec.width)
        return (m < 0.5).astype(np.float32)

    def __getitem__(
        self, index: int
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        rec = self.records[index]
        img = read_rgb(rec.image)
        h, w = img.shape[:2]
        mask = self._mask(rec)
        a = self.augment
        center = np.array([w / 2.0, h / 2.0])
        scale = (min(h, w) if a.scale_type == "short" else max(h, w)) / 200.0
        rot, flip = 0.0, False
        if a.enabled:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            scale *= rng.random() * (a.max_scale - a.min_scale) + a.min_scale
            rot = (rng.random() * 2 - 1) * a.max_rotation
            if a.max_translate > 0:
                lim = int(a.max_translate * scale)
                center += rng.integers(-lim, lim, size=2) if lim > 0 else 0
            flip = rng.random() < a.flip
        size = self.spec.input_size
        x = cv2.warpAffine(img, affine_matrix(center, scale, size, rot)[:2], (size, size))
        if flip:
            x = x[:, ::-1]
        targets, masks, joints = [], [], []
        flip_index = list(self.spec.test.flip_index) or list(range(self.spec.num_joints))
        for res in self.spec.output_size:
            mat = affine_matrix(center, scale, res, rot)[:2]
            m = cv2.warpAffine((mask * 255).astype(np.uint8), mat, (res, res)) / 255
            m = (m > 0.5).astype(np.float32)
            j = rec.joints.copy().astype(np.float64)
            j[..., :2] = j[..., :2] @ mat[:, :2].T + mat[:, 2]
            if flip:
                m = m[:, ::-1]
                j = j[:, flip_index]
                j[..., 0] = res - j[..., 0] - 1
            targets.append(torch.from_numpy(heatmap_targets(j, self.spec.num_joints, res, self.sigma)))
            masks.append(torch.from_numpy(np.ascontiguousarray(m)))
            joints.append(
                torch.from_numpy(
                    joint_indices(j, self.spec.test.max_num_people, res, self.spec.tag_per_joint)
                )
            )
        x = (x.astype(np.float32) / 255.0 - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), targets, masks, joints
