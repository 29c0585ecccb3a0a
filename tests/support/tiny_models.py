"""Tiny HRNet models for end-to-end tests: a config YAML plus a safetensors file, made from the fixtures.

The fixtures ``tests/data/hrnet_reference/official_{pose,seg}_hrnet_w4_tiny.pt`` hold the official
architectures with widths 4/8/16/32 and seeded random weights, so ``hrstream run`` can go through the whole
pipeline in a fraction of a second per frame on a CPU. The outputs are meaningless as poses or labels; the
tests check plumbing (frames, timestamps, records, files), not accuracy.

Use from a test module::

    from support.tiny_models import tiny_pose_model

    @pytest.fixture(scope="session")
    def tiny_pose(tmp_path_factory):
        return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

__all__ = ["REFERENCE", "TinyModel", "tiny_lite_model", "tiny_pose_model", "tiny_seg_model"]

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "hrnet_reference"

# (width, height) of the pose network input and of its heatmaps: 4x smaller, the official ratio.
POSE_IMAGE_SIZE = [96, 128]
POSE_HEATMAP_SIZE = [24, 32]


@dataclass(frozen=True)
class TinyModel:
    """Paths to pass as ``--model`` and ``--weights``."""

    config: Path
    weights: Path

    def args(self) -> list[str]:
        """``["--model", CONFIG, "--weights", WEIGHTS]`` for a command line."""
        return ["--model", str(self.config), "--weights", str(self.weights)]


def _write(folder: Path, stem: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> TinyModel:
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / f"{stem}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    weights_path = folder / f"{stem}.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(weights_path))
    return TinyModel(cfg_path, weights_path)


def tiny_pose_model(folder: str | Path, *, flip_test: bool = False) -> TinyModel:
    """Write ``tiny_pose.yaml`` (official pose schema, 17 COCO joints, 128x96 HxW input) and
    ``tiny_pose.safetensors`` into ``folder``."""
    ref = torch.load(REFERENCE / "official_pose_hrnet_w4_tiny.pt", weights_only=True)
    config = {
        "MODEL": {
            "NAME": "pose_hrnet",
            "NUM_JOINTS": 17,
            "IMAGE_SIZE": list(POSE_IMAGE_SIZE),
            "HEATMAP_SIZE": list(POSE_HEATMAP_SIZE),
            "EXTRA": ref["config"]["MODEL"]["EXTRA"],
        },
        "TEST": {"FLIP_TEST": flip_test, "POST_PROCESS": True, "SHIFT_HEATMAP": True},
    }
    return _write(Path(folder), "tiny_pose", config, ref["state_dict"])


def _stage(modules: int, branches: int, blocks: list[int], channels: list[int], block: str) -> dict[str, Any]:
    return {
        "NUM_MODULES": modules,
        "NUM_BRANCHES": branches,
        "BLOCK": block,
        "NUM_BLOCKS": blocks,
        "NUM_CHANNELS": channels,
        "FUSE_METHOD": "SUM",
    }


def tiny_seg_model(folder: str | Path) -> TinyModel:
    """Write ``tiny_seg.yaml`` (official seg schema, the seg_hrnet_w18 module/block counts with widths
    4/8/16/32, 19 Cityscapes classes, ``ALIGN_CORNERS: false``) and ``tiny_seg.safetensors`` into ``folder``."""
    ref = torch.load(REFERENCE / "official_seg_hrnet_w4_tiny.pt", weights_only=True)
    config = {
        "MODEL": {
            "NAME": "seg_hrnet",
            "ALIGN_CORNERS": bool(ref["align_corners"]),
            "EXTRA": {
                "FINAL_CONV_KERNEL": 1,
                "STAGE1": _stage(1, 1, [4], [64], "BOTTLENECK"),
                "STAGE2": _stage(1, 2, [4, 4], [4, 8], "BASIC"),
                "STAGE3": _stage(4, 3, [4, 4, 4], [4, 8, 16], "BASIC"),
                "STAGE4": _stage(3, 4, [4, 4, 4, 4], [4, 8, 16, 32], "BASIC"),
            },
        },
        "DATASET": {"NUM_CLASSES": int(ref["num_classes"])},
        "TEST": {"IMAGE_SIZE": [256, 128], "FLIP_TEST": False},
    }
    return _write(Path(folder), "tiny_seg", config, ref["state_dict"])


LITE_REFERENCE = Path(__file__).resolve().parents[1] / "data" / "litehrnet_reference"


def tiny_lite_model(folder: str | Path, *, naive: bool = False) -> TinyModel:
    """Write ``tiny_lite.yaml`` (``litehrnet``, the official backbone ``extra`` dict with widths 8/16/32/64,
    17 COCO joints, 128x96 HxW input) and ``tiny_lite.safetensors`` (the official tiny model's tensors in
    the MMPose 0.x layout) into ``folder``; ``naive`` picks the ``NAIVE`` module type."""
    name = "official_litehrnet_tiny_naive.pt" if naive else "official_litehrnet_tiny.pt"
    ref = torch.load(LITE_REFERENCE / name, weights_only=True)
    extra = _lists(ref["meta"]["backbone_extra"])
    config = {
        "MODEL": {
            "NAME": "litehrnet",
            "NUM_JOINTS": 17,
            "IMAGE_SIZE": list(POSE_IMAGE_SIZE),
            "HEATMAP_SIZE": list(POSE_HEATMAP_SIZE),
            "EXTRA": extra,
        },
        "TEST": {"FLIP_TEST": False, "POST_PROCESS": True, "SHIFT_HEATMAP": True},
    }
    return _write(Path(folder), "tiny_lite_naive" if naive else "tiny_lite", config, ref["state_dict"])


def _lists(value: Any) -> Any:
    """Tuples as lists, recursively (the official ``extra`` dicts use tuples; YAML configs have lists)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value
