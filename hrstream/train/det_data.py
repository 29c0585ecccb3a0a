"""Person detection training samples from a COCO dataset (images folder + annotation JSON).

Every non-crowd ``category_id`` 1 instance with a non-empty box is a target (keypoints are not needed).
Boxes stay in the file's coordinates (``bbox`` xywh -> xyxy). Augmentation: horizontal flip and a per-channel
gain; randomness comes from a generator seeded by ``(seed, epoch, index)``, so a sample is the same whatever
the number of loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hrstream.errors import InputError
from hrstream.train.pose_data import read_coco, read_rgb

__all__ = ["DetDataset", "ImageBoxes", "load_coco_boxes"]


@dataclass(frozen=True)
class ImageBoxes:
    """One image and its person boxes: ``boxes`` float32 ``(n, 4)`` xyxy in the image's pixels."""

    image: Path
    image_id: int
    width: int
    height: int
    boxes: np.ndarray


def load_coco_boxes(ann_file: str | Path, images_dir: str | Path) -> list[ImageBoxes]:
    """Every image of a COCO file with its person boxes (images without people are kept: negatives).

    Raises :class:`InputError` naming the file for unreadable annotations or missing images.
    """
    ann_file, images_dir = Path(ann_file), Path(images_dir)
    coco = read_coco(ann_file)
    out: list[ImageBoxes] = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        boxes = []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            if ann.get("category_id", 1) != 1:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w >= 1 and h >= 1:
                boxes.append([x, y, x + w, y + h])
        path = images_dir / info["file_name"]
        if not path.is_file():
            raise InputError(f"{path}: image named in {ann_file} not found")
        out.append(
            ImageBoxes(
                path,
                int(image_id),
                int(info["width"]),
                int(info["height"]),
                np.asarray(boxes, np.float32).reshape(-1, 4),
            )
        )
    if not out:
        raise InputError(f"{ann_file}: no images")
    return out


class DetDataset(Dataset):
    """``(image (3, H, W) float32 RGB in [0, 1], {"boxes": (n, 4) float32 xyxy, "labels": (n,) int64 ones})``.

    Flip convention: pixel centres at integers, so the image spans ``[-0.5, W - 0.5]`` and ``x -> W - 1 - x``.
    """

    def __init__(self, items: list[ImageBoxes], *, augment: bool = True, seed: int = 0) -> None:
        self.items = items
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        item = self.items[i]
        img = read_rgb(item.image).astype(np.float32) / 255.0
        boxes = item.boxes.copy()
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            if rng.random() < 0.5:
                img = img[:, ::-1]
                w = img.shape[1]
                boxes[:, [0, 2]] = (w - 1) - boxes[:, [2, 0]]
            img = np.clip(img * rng.uniform(0.8, 1.2, 3).astype(np.float32), 0.0, 1.0)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.ones(len(boxes), dtype=torch.int64),
        }
        return x, target
