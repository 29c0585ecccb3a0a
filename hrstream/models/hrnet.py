"""The HRNet backbone (Wang et al., TPAMI 2020), module for module as in the official code.

State-dict key names equal those of the official implementations
(HRNet/deep-high-resolution-net.pytorch ``pose_hrnet.py`` and HRNet/HRNet-Semantic-Segmentation ``seg_hrnet.py``):
``conv1, bn1, conv2, bn2, layer1, transition1, stage2, transition2, stage3, transition3, stage4``.

The two official variants differ only in how a lower-resolution branch is brought up to a higher one inside the
fusion units:

* ``upsample="nearest"`` (pose): ``nn.Upsample(scale_factor=2**(j-i), mode="nearest")`` after the 1x1 conv + BN.
* ``upsample="bilinear"`` (segmentation): ``F.interpolate(size=<target size>, mode="bilinear",
  align_corners=<config>)`` after the 1x1 conv + BN.

Neither adds parameters, so both load the same keys. The pose network's last module is single-resolution
(``multi_scale_output=False``): only the highest branch leaves stage 4.

Shapes: input ``(N, 3, H, W)``; branch ``i`` of the output has ``C_i`` channels at ``(H/4 / 2**i, W/4 / 2**i)``
(for sizes divisible by 32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "HighResolutionModule", "HRNetBackbone", "StageSpec", "Upsample"]

Upsample = Literal["nearest", "bilinear"]
BN_MOMENTUM = 0.1


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (``BASIC`` in the configs)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) with a residual connection (``BOTTLENECK`` in the configs)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


@dataclass(frozen=True)
class StageSpec:
    """One ``MODEL.EXTRA.STAGEn`` entry of an official config."""

    num_modules: int
    num_branches: int
    block: str
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]
    fuse_method: str = "SUM"


def _make_layer(
    block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int = 1
) -> nn.Sequential:
    downsample = None
    expansion = block.expansion  # type: ignore[attr-defined]
    if stride != 1 or inplanes != planes * expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * expansion, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * expansion, momentum=BN_MOMENTUM),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by exchange units that fuse every resolution into every other one."""

    def __init__(
        self,
        num_branches: int,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: Sequence[int],
        num_inchannels: Sequence[int],
        num_channels: Sequence[int],
        multi_scale_output: bool = True,
        *,
        upsample: Upsample = "nearest",
        align_corners: bool = False,
    ):
        super().__init__()
        if not (len(num_blocks) == len(num_inchannels) == len(num_channels) == num_branches):
            raise ValueError(
                f"NUM_BRANCHES({num_branches}) must equal the lengths of NUM_BLOCKS({len(num_blocks)}), "
                f"NUM_CHANNELS({len(num_channels)}) and the input channels({len(num_inchannels)})"
            )
        self.num_branches = num_branches
        self.num_inchannels = list(num_inchannels)
        self.multi_scale_output = multi_scale_output
        self.upsample = upsample
        self.align_corners = align_corners
        branches = []
        for i in range(num_branches):
            branches.append(_make_layer(block, self.num_inchannels[i], num_channels[i], num_blocks[i]))
            self.num_inchannels[i] = num_channels[i] * block.expansion
        self.branches = nn.ModuleList(branches)
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(inplace=True)

    def _make_fuse_layers(self) -> nn.ModuleList | None:
        if self.num_branches == 1:
            return None
        ch = self.num_inchannels
        fuse_layers = []
        for i in range(self.num_branches if self.multi_scale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(self.num_branches):
                if j > i:
                    parts: list[nn.Module] = [
                        nn.Conv2d(ch[j], ch[i], 1, 1, 0, bias=False),
                        nn.BatchNorm2d(ch[i], momentum=BN_MOMENTUM),
                    ]
                    if self.upsample == "nearest":
                        parts.append(nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
                    row.append(nn.Sequential(*parts))
                elif j == i:
                    row.append(None)
                else:
                    convs = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            convs.append(
                                nn.Sequential(
                                    nn.Conv2d(ch[j], ch[i], 3, 2, 1, bias=False),
                                    nn.BatchNorm2d(ch[i], momentum=BN_MOMENTUM),
                                )
                            )
                        else:
                            convs.append(
                                nn.Sequential(
                                    nn.Conv2d(ch[j], ch[j], 3, 2, 1, bias=False),
                                    nn.BatchNorm2d(ch[j], momentum=BN_MOMENTUM),
                                    nn.ReLU(False),
                                )
                            )
                    row.append(nn.Sequential(*convs))
            fuse_layers.append(nn.ModuleList(row))
        return nn.ModuleList(fuse_layers)

    def get_num_inchannels(self) -> list[int]:
        return list(self.num_inchannels)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.num_branches == 1:
            return [self.branches[0](x[0])]
        x = [branch(xi) for branch, xi in zip(self.branches, x, strict=True)]
        assert self.fuse_layers is not None
        out = []
        for i, fuse in enumerate(self.fuse_layers):
            y = x[0] if i == 0 else fuse[0](x[0])
            for j in range(1, self.num_branches):
                if i == j:
                    y = y + x[j]
                elif j > i and self.upsample == "bilinear":
                    z = fuse[j](x[j])
                    y = y + F.interpolate(
                        z, size=x[i].shape[-2:], mode="bilinear", align_corners=self.align_corners
                    )
                else:
                    y = y + fuse[j](x[j])
            out.append(self.relu(y))
        return out


class HRNetBackbone(nn.Module):
    """Stem + stage 1 (bottlenecks) + stages 2-4 of parallel multi-resolution modules.

    ``forward_features(x)`` returns the list of branch outputs of stage 4: all four for
    ``last_multi_scale=True`` (segmentation, V2), only the highest-resolution one for ``False`` (pose, V1).
    Subclasses add the official heads under their official names (``final_layer``, ``last_layer``).
    """

    def __init__(
        self,
        stages: Sequence[StageSpec],
        *,
        stage1_blocks: int = 4,
        stage1_channels: int = 64,
        stage1_block: str = "BOTTLENECK",
        upsample: Upsample = "nearest",
        align_corners: bool = False,
        last_multi_scale: bool = True,
    ):
        super().__init__()
        if len(stages) != 3:
            raise ValueError(f"HRNet needs STAGE2, STAGE3 and STAGE4 specs, got {len(stages)}")
        self.upsample = upsample
        self.align_corners = align_corners
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        block1 = BLOCKS[stage1_block]
        self.layer1 = _make_layer(block1, 64, stage1_channels, stage1_blocks)
        pre_channels = [stage1_channels * block1.expansion]

        self.stage_specs = tuple(stages)
        for n, spec in enumerate(stages, start=2):
            block = BLOCKS[spec.block]
            channels = [c * block.expansion for c in spec.num_channels]
            setattr(self, f"transition{n - 1}", self._make_transition_layer(pre_channels, channels))
            multi_scale = last_multi_scale if n == 4 else True
            stage, pre_channels = self._make_stage(spec, channels, multi_scale)
            setattr(self, f"stage{n}", stage)
        self.out_channels_list: list[int] = pre_channels

    def _make_transition_layer(self, pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i in range(len(cur)):
            if i < len(pre):
                if cur[i] != pre[i]:
                    layers.append(
                        nn.Sequential(
                            nn.Conv2d(pre[i], cur[i], 3, 1, 1, bias=False),
                            nn.BatchNorm2d(cur[i], momentum=BN_MOMENTUM),
                            nn.ReLU(inplace=True),
                        )
                    )
                else:
                    layers.append(None)
            else:
                convs = []
                for j in range(i + 1 - len(pre)):
                    inch = pre[-1]
                    outch = cur[i] if j == i - len(pre) else inch
                    convs.append(
                        nn.Sequential(
                            nn.Conv2d(inch, outch, 3, 2, 1, bias=False),
                            nn.BatchNorm2d(outch, momentum=BN_MOMENTUM),
                            nn.ReLU(inplace=True),
                        )
                    )
                layers.append(nn.Sequential(*convs))
        return nn.ModuleList(layers)

    def _make_stage(
        self, spec: StageSpec, num_inchannels: list[int], multi_scale_output: bool
    ) -> tuple[nn.Sequential, list[int]]:
        modules = []
        for i in range(spec.num_modules):
            reset_multi_scale = multi_scale_output or i != spec.num_modules - 1
            module = HighResolutionModule(
                spec.num_branches,
                BLOCKS[spec.block],
                spec.num_blocks,
                num_inchannels,
                spec.num_channels,
                reset_multi_scale,
                upsample=self.upsample,
                align_corners=self.align_corners,
            )
            modules.append(module)
            num_inchannels = module.get_num_inchannels()
        if not multi_scale_output:
            num_inchannels = num_inchannels[:1]
        return nn.Sequential(*modules), num_inchannels

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` normalised RGB -> list of stage-4 branch maps, highest resolution first."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        y_list: list[torch.Tensor] = [x]
        for n in (2, 3, 4):
            transition = getattr(self, f"transition{n - 1}")
            x_list = []
            for i, t in enumerate(transition):
                if t is None:
                    x_list.append(y_list[i])
                elif i < len(y_list):
                    x_list.append(t(y_list[i]))
                else:
                    x_list.append(t(y_list[-1]))
            y_list = getattr(self, f"stage{n}")(x_list)
        return y_list

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)
