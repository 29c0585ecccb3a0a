"""Segmentation training samples: an images folder and a folder of label PNGs with the same stems.

Labels are single-channel PNGs of class indices (``0 .. num_classes-1``; 255 = ignore), e.g. 0/1 person masks.
Training augmentation follows the official ``BaseDataset.gen_sample`` of HRNet-Semantic-Segmentation: resize so
the long side is ``BASE_SIZE * s`` with ``s = 0.5 + randint(0, SCALE_FACTOR) / 10`` (image bilinear, label
nearest), pad to the crop size (image 0, label 255), random crop, horizontal flip with probability 0.5.
Validation resizes the image to ``TEST.IMAGE_SIZE`` and compares at the label's full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hrstream.errors import InputError
from hrstream.pose.crops import IMAGENET_MEAN, IMAGENET_STD
from hrstream.train.pose_data import read_rgb

__all__ = ["IGNORE_LABEL", "SegAugment", "SegDataset", "pair_images_masks", "read_label"]

IGNORE_LABEL = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class SegAugment:
    """Settings of the training augmentation (official ``TRAIN`` keys). ``enabled=False``: resize only."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        crop_size: Sequence[int] = (256, 256),
        base_size: int = 320,
        scale_factor: int = 16,
        flip: bool = True,
    ) -> None:
        self.enabled = enabled
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.base_size = int(base_size)
        self.scale_factor = int(scale_factor)
        self.flip = flip

    @classmethod
    def from_config(cls, cfg: dict[str, Any], enabled: bool = True) -> SegAugment:
        t = cfg.get("TRAIN") or {}
        test = cfg.get("TEST") or {}
        crop = t.get("IMAGE_SIZE") or test.get("IMAGE_SIZE") or [256, 256]
        return cls(
            enabled=enabled,
            crop_size=crop,
            base_size=int(t.get("BASE_SIZE", max(crop))),
            scale_factor=int(t.get("SCALE_FACTOR", 16)),
            flip=bool(t.get("FLIP", True)),
        )


def pair_images_masks(images_dir: str | Path, masks_dir: str | Path) -> list[tuple[Path, Path]]:
    """``(image, label)`` pairs: every image whose stem has a PNG (or any image file) in ``masks_dir``.

    Raises :class:`InputError` naming the folder when it is missing or no pair is found.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise InputError(f"{d}: folder not found")
    masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = [
        (p, masks[p.stem])
        for p in sorted(images_dir.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in masks
    ]
    if not pairs:
        raise InputError(f"{images_dir}: no image has a label file with the same name in {masks_dir}")
    return pairs


def read_label(path: Path, num_classes: int) -> np.ndarray:
    """``uint8 (H, W)`` class indices; :class:`InputError` naming the file for unreadable or out-of-range labels."""
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise InputError(f"{path}: cannot read it as a label image")
    if lab.ndim == 3:
        lab = lab[..., 0]
    lab = lab.astype(np.uint8)
    bad = (lab >= num_classes) & (lab != IGNORE_LABEL)
    if bad.any():
        raise InputError(
            f"{path}: label value {int(lab[bad].max())} is not a class (0..{num_classes - 1}) nor 255 (ignore)"
        )
    return lab


class SegDataset(Dataset):
    """Samples ``(image (3, h, w) float32 normalised RGB, label (h, w) int64)``.

    Training mode (``augment.enabled``): crops of ``augment.crop_size`` ``(w, h)``. Otherwise the image is
    resized to ``size`` ``(w, h)`` and the label too (nearest), or, with ``resize_labels=False`` (validation),
    kept at full resolution.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        *,
        num_classes: int,
        augment: SegAugment,
        size: Sequence[int] | None = None,
        seed: int = 0,
        resize_labels: bool = True,
    ) -> None:
        self.resize_labels = resize_labels
        self.pairs = list(pairs)
        self.num_classes = int(num_classes)
        self.augment = augment
        self.size = (int(size[0]), int(size[1])) if size is not None else augment.crop_size
        self.seed = int(seed)
        self.epoch = 0
        self._mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        self._std = np.asarray(IMAGENET_STD, dtype=np.float32)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def _augment(self, img: np.ndarray, lab: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        a = self.augment
        rng = np.random.default_rng([self.seed, self.epoch, index])
        s = 0.5 + int(rng.integers(0, a.scale_factor + 1)) / 10.0
        h, w = lab.shape
        long_size = max(1, int(a.base_size * s + 0.5))
        nh, nw = (
            (long_size, max(1, int(w * long_size / h + 0.5)))
            if h > w
            else (
                max(1, int(h * long_size / w + 0.5)),
                long_size,
            )
        )
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab, (nw, nh), interpolation=cv2.INTER_NEAREST)
        cw, ch = a.crop_size
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        if ph or pw:
            img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            lab = cv2.copyMakeBorder(lab, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE_LABEL)
        y0 = int(rng.integers(0, lab.shape[0] - ch + 1))
        x0 = int(rng.integers(0, lab.shape[1] - cw + 1))
        img, lab = img[y0 : y0 + ch, x0 : x0 + cw], lab[y0 : y0 + ch, x0 : x0 + cw]
        if a.flip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        return img, lab

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img_path, lab_path = self.pairs[index]
        img = read_rgb(img_path)
        lab = read_label(lab_path, self.num_classes)
        if img.shape[:2] != lab.shape:
            raise InputError(
                f"{lab_path}: label size {lab.shape[::-1]} differs from image {img.shape[1::-1]}"
            )
        if self.augment.enabled:
            img, lab = self._augment(img, lab, index)
        else:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_LINEAR)
            if self.resize_labels:
                lab = cv2.resize(lab, self.size, interpolation=cv2.INTER_NEAREST)
        x = (img.astype(np.float32) / 255.0 - self._mean) / self._std
        return torch.from_numpy(x.transpose(2, 0, 1).copy()), torch.from_numpy(lab.astype(np.int64).copy())
