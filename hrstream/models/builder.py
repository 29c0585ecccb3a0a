"""Build networks from configs: ``from_config`` is the one public constructor."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from hrstream.errors import ConfigError
from hrstream.models.config import ModelSpec, load_config, parse_config
from hrstream.models.heads import HRFPN, PoseHRNet, SegHRNet
from hrstream.models.higherhrnet import PoseHigherHRNet
from hrstream.models.hrnet import HRNetBackbone
from hrstream.models.litehrnet import PoseLiteHRNet

__all__ = ["build_hrfpn", "build_model", "from_config", "resolve_config"]


def resolve_config(cfg: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``cfg`` (registered config name, YAML path or dict) -> ``(config dict, description of its source)``."""
    if isinstance(cfg, Mapping):
        return load_config(cfg), "<dict config>"
    text = str(cfg)
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        return load_config(path), text
    from hrstream.models.registry import config_path  # a registered name

    return load_config(config_path(text)), text


def build_model(spec: ModelSpec) -> nn.Module:
    """The official module a :class:`ModelSpec` describes, in eval mode."""
    s1 = spec.stage1
    if spec.task == "det":
        from hrstream.models.detection import build_detector

        return build_detector(spec)
    if spec.lite is not None:
        model: nn.Module = PoseLiteHRNet(spec.lite, num_joints=spec.num_outputs)
    elif spec.higher is not None:
        model = PoseHigherHRNet(
            spec.stages,
            spec.higher,
            stage1_blocks=s1.num_blocks[0] if s1 else 4,
            stage1_channels=s1.num_channels[0] if s1 else 64,
            stage1_block=s1.block if s1 else "BOTTLENECK",
        )
    elif spec.task == "cls":  # the backbone of a classification YAML: stage 4's four branch outputs
        model = HRNetBackbone(
            spec.stages,
            stage1_blocks=s1.num_blocks[0] if s1 else 4,
            stage1_channels=s1.num_channels[0] if s1 else 64,
            stage1_block=s1.block if s1 else "BOTTLENECK",
            last_multi_scale=True,
        )
    elif spec.task == "pose":
        model = PoseHRNet(
            spec.stages,
            num_joints=spec.num_outputs,
            final_conv_kernel=spec.final_conv_kernel,
            stage1_blocks=s1.num_blocks[0] if s1 else 4,
            stage1_channels=s1.num_channels[0] if s1 else 64,
            stage1_block=s1.block if s1 else "BOTTLENECK",
        )
    else:
        model = SegHRNet(
            spec.stages,
            num_classes=spec.num_outputs,
            final_conv_kernel=spec.final_conv_kernel,
            align_corners=spec.align_corners,
            stage1_blocks=s1.num_blocks[0] if s1 else 4,
            stage1_channels=s1.num_channels[0] if s1 else 64,
            stage1_block=s1.block if s1 else "BOTTLENECK",
        )
    model.spec = spec  # type: ignore[assignment]
    return model.eval()


def from_config(cfg: str | Path | Mapping[str, Any]) -> nn.Module:
    """Build the network of a config in the official HRNet schema, in eval mode, with random weights.

    Args:
        cfg: a registered config name (``"pose_hrnet_w32_256x192"``), a YAML path, or a dict in the official
            experiments schema (``MODEL.NAME`` ``pose_hrnet`` / ``seg_hrnet``, ``MODEL.EXTRA.STAGE2..4``, ...;
            ``litehrnet`` with the official backbone ``extra`` dict as ``MODEL.EXTRA``).

    Returns:
        ``pose_hrnet``, ``litehrnet``: a module mapping ``(N, 3, H, W)`` normalised RGB to heatmaps
        ``(N, K, H/4, W/4)``.
        ``pose_higher_hrnet``: the bottom-up :class:`~hrstream.models.higherhrnet.PoseHigherHRNet`, mapping
        ``(N, 3, H, W)`` to ``[(N, K+T, H/4, W/4), (N, K, H/2, W/2)]`` (heatmaps and tags, higher-resolution
        heatmaps); ``model.spec.method == "bottomup"``.
        ``seg_hrnet``: a module mapping ``(N, 3, H, W)`` to logits ``(N, C, H/4, W/4)``.
        ``cls_hrnet``: the :class:`~hrstream.models.hrnet.HRNetBackbone` (``forward_features`` gives the four
        branch outputs); the classification head is not built.
        ``det_hrnet``: torchvision's FCOS on HRNetV2p (:mod:`hrstream.models.detection`).
        The parsed :class:`~hrstream.models.config.ModelSpec` is attached as ``model.spec``.

    Raises:
        ConfigError: unknown name (with close names), unreadable file, or a missing/wrong field (named).
    """
    data, src = resolve_config(cfg)
    return build_model(parse_config(data, source=src))


def build_hrfpn(cfg: str | Path | Mapping[str, Any], *, out_channels: int = 256, num_outs: int = 5) -> HRFPN:
    """V2p: an :class:`HRFPN` on the backbone of a config (any task: stage 4 is built multi-resolution)."""
    data, src = resolve_config(cfg)
    spec = parse_config(data, source=src)
    if spec.lite is not None:
        raise ConfigError(f"{src}: HRFPN (V2p) is built on an HRNet backbone; litehrnet configs have none")
    backbone = HRNetBackbone(
        spec.stages, upsample="bilinear", align_corners=spec.align_corners, last_multi_scale=True
    )
    return HRFPN(backbone, out_channels=out_channels, num_outs=num_outs).eval()
