"""The three output forms of HRNet on one backbone: V1 (pose), V2 (segmentation), V2p (feature pyramid).

* :class:`PoseHRNet` is the official ``pose_hrnet``: V1 (the highest-resolution branch only) followed by
  ``final_layer``, a conv to ``NUM_JOINTS`` heatmaps. ``(N, 3, H, W) -> (N, K, H/4, W/4)``.
* :class:`SegHRNet` is the official ``seg_hrnet``: V2 (all four branches bilinearly upsampled to the highest and
  concatenated) followed by ``last_layer`` (1x1 conv with bias, BN, ReLU, 1x1 conv to classes).
  ``(N, 3, H, W) -> (N, C, H/4, W/4)`` logits.
* :class:`HRFPN` is V2p as in MMDetection's HRFPN: V2 concatenation, a 1x1 reduction, average pooling to
  ``num_outs`` levels and a 3x3 conv per level. It returns an ``OrderedDict`` of maps (strides 4, 8, 16, 32, 64
  for the default 5 levels) and has ``out_channels``, so torchvision's detection heads accept it as a backbone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hrstream.models.hrnet import BN_MOMENTUM, HRNetBackbone, StageSpec

__all__ = ["HRFPN", "PoseHRNet", "SegHRNet", "concat_v2"]


def concat_v2(features: Sequence[torch.Tensor], *, align_corners: bool = False) -> torch.Tensor:
    """V2: upsample every branch to the first one's size (bilinear) and concatenate along channels."""
    h, w = features[0].shape[-2:]
    ups = [features[0]] + [
        F.interpolate(f, size=(h, w), mode="bilinear", align_corners=align_corners) for f in features[1:]
    ]
    return torch.cat(ups, dim=1)


class PoseHRNet(HRNetBackbone):
    """Official ``pose_hrnet`` (nearest upsampling in fusions, single-resolution last module)."""

    def __init__(
        self,
        stages: Sequence[StageSpec],
        *,
        num_joints: int,
        final_conv_kernel: int = 1,
        stage1_blocks: int = 4,
        stage1_channels: int = 64,
        stage1_block: str = "BOTTLENECK",
    ):
        super().__init__(
            stages,
            upsample="nearest",
            last_multi_scale=False,
            stage1_blocks=stage1_blocks,
            stage1_channels=stage1_channels,
            stage1_block=stage1_block,
        )
        self.num_joints = num_joints
        self.final_layer = nn.Conv2d(
            self.out_channels_list[0],
            num_joints,
            kernel_size=final_conv_kernel,
            stride=1,
            padding=1 if final_conv_kernel == 3 else 0,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(N, 3, H, W)`` normalised RGB -> heatmaps ``(N, K, H/4, W/4)``."""
        return self.final_layer(self.forward_features(x)[0])


class SegHRNet(HRNetBackbone):
    """Official ``seg_hrnet`` (bilinear upsampling with ``ALIGN_CORNERS``, V2 head ``last_layer``)."""

    def __init__(
        self,
        stages: Sequence[StageSpec],
        *,
        num_classes: int,
        final_conv_kernel: int = 1,
        align_corners: bool = False,
        stage1_blocks: int = 4,
        stage1_channels: int = 64,
        stage1_block: str = "BOTTLENECK",
    ):
        super().__init__(
            stages,
            upsample="bilinear",
            align_corners=align_corners,
            last_multi_scale=True,
            stage1_blocks=stage1_blocks,
            stage1_channels=stage1_channels,
            stage1_block=stage1_block,
        )
        self.num_classes = num_classes
        c = sum(self.out_channels_list)
        self.last_layer = nn.Sequential(
            nn.Conv2d(c, c, kernel_size=1, stride=1, padding=0),
            nn.BatchNorm2d(c, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(
                c,
                num_classes,
                kernel_size=final_conv_kernel,
                stride=1,
                padding=1 if final_conv_kernel == 3 else 0,
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(N, 3, H, W)`` normalised RGB -> logits ``(N, C, H/4, W/4)``."""
        return self.last_layer(concat_v2(self.forward_features(x), align_corners=self.align_corners))


class HRFPN(nn.Module):
    """V2p: a feature pyramid from V2, as MMDetection's HRFPN (its defaults: AVG pooling, stride 1).

    Args:
        backbone: an :class:`HRNetBackbone` whose stage 4 keeps all branches (``last_multi_scale=True``).
        out_channels: channels of every pyramid level.
        num_outs: number of levels; level ``i`` has stride ``4 * 2**i`` relative to the input.

    ``forward(x)`` returns ``OrderedDict[str, Tensor]`` with keys ``"0" .. str(num_outs-1)``.
    """

    def __init__(self, backbone: HRNetBackbone, *, out_channels: int = 256, num_outs: int = 5):
        super().__init__()
        if len(backbone.out_channels_list) < 2:
            raise ValueError("HRFPN needs a backbone whose last stage keeps every branch (V2)")
        self.backbone = backbone
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.reduction_conv = nn.Conv2d(sum(backbone.out_channels_list), out_channels, kernel_size=1)
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1) for _ in range(num_outs)
        )
        for m in [self.reduction_conv, *self.fpn_convs]:
            nn.init.kaiming_normal_(m.weight, a=1)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.backbone.forward_features(x)
        out = self.reduction_conv(concat_v2(feats, align_corners=False))
        levels = [out] + [F.avg_pool2d(out, kernel_size=2**i, stride=2**i) for i in range(1, self.num_outs)]
        return OrderedDict(
            (str(i), conv(level)) for i, (conv, level) in enumerate(zip(self.fpn_convs, levels, strict=True))
        )
