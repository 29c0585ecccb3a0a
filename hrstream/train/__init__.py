"""Training of pose_hrnet (COCO keypoints, the official recipe), pose_higher_hrnet (bottom-up, the official
HigherHRNet recipe), seg_hrnet (images + label masks) and det_hrnet
(COCO person boxes; torchvision FCOS on HRNetV2p) on CPU or CUDA, deterministic for a given seed, saving
safetensors weights with a JSON sidecar.

Public API::

    from hrstream.train import train_bottomup, train_det, train_pose, train_seg
    result = train_pose("synthetic_pose_hrnet_w18_small_128x96", "data/images", "data/annotations.json", "runs/p")
"""

from __future__ import annotations

from hrstream.train.bottomup import train_bottomup
from hrstream.train.common import TrainResult
from hrstream.train.det import train_det, validate_det
from hrstream.train.pose import train_pose, validate_pose
from hrstream.train.seg import train_seg, validate_seg
from hrstream.train.targets import JointsMSELoss, generate_target

__all__ = [
    "JointsMSELoss",
    "TrainResult",
    "generate_target",
    "train_bottomup",
    "train_det",
    "train_pose",
    "train_seg",
    "validate_det",
    "validate_pose",
    "validate_seg",
]
