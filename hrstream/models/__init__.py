"""HRNet, HigherHRNet and Lite-HRNet networks faithful to the official code, their configs, checkpoints and published weights.

Public API::

    model = hrstream.models.from_config("pose_hrnet_w32_256x192")   # or a YAML path, or a dict
    hrstream.models.load_weights(model, "pose_hrnet_w32_256x192.pth")  # any published layout
"""

from __future__ import annotations

from hrstream.models.builder import build_hrfpn, build_model, from_config
from hrstream.models.checkpoints import LoadReport, detect_layout, load_weights, read_checkpoint
from hrstream.models.config import ModelSpec, load_config, parse_config
from hrstream.models.export import OnnxExport, export_onnx
from hrstream.models.heads import HRFPN, PoseHRNet, SegHRNet
from hrstream.models.higherhrnet import HigherHRNetSpec, PoseHigherHRNet
from hrstream.models.hrnet import HRNetBackbone, StageSpec
from hrstream.models.litehrnet import LiteHRNet, LiteHRNetSpec, PoseLiteHRNet

__all__ = [
    "HRFPN",
    "HRNetBackbone",
    "HigherHRNetSpec",
    "LiteHRNet",
    "LiteHRNetSpec",
    "LoadReport",
    "ModelSpec",
    "OnnxExport",
    "PoseHRNet",
    "PoseHigherHRNet",
    "PoseLiteHRNet",
    "SegHRNet",
    "StageSpec",
    "build_hrfpn",
    "build_model",
    "detect_layout",
    "export_onnx",
    "from_config",
    "load_config",
    "load_weights",
    "parse_config",
    "read_checkpoint",
]
