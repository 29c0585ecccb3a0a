"""Lite-HRNet (Yu et al., CVPR 2021), module for module as in the official code.

State-dict key names equal those of HRNet/Lite-HRNet ``models/backbones/litehrnet.py`` (the backbone
MMPose ships too) with the ``backbone.`` prefix removed: ``stem, transition0, stage0, ..., head_layer``,
plus ``final_layer``, the official configs' head (``TopDownSimpleHead`` with no deconvolutions: one 1x1
convolution with bias). The convolution units carry mmcv ``ConvModule``'s names (``conv``, ``bn``), so
checkpoints in the MMPose 0.x (``backbone.*``, ``keypoint_head.final_layer.*``) and 1.x (``backbone.*``,
``head.final_layer.*``) layouts load strictly through :func:`hrstream.models.load_weights`.

Two module types:

* ``LITE``: conditional channel weighting blocks (cross-resolution weights from all branches pooled to the
  lowest resolution, a depthwise 3x3, spatial weights) on half the channels, then a channel shuffle.
* ``NAIVE``: ShuffleNet V2 units (1x1, depthwise 3x3, 1x1 on half the channels, then a shuffle) per branch.

The fusion reproduces the official arithmetic exactly: the official code starts the sum of output branch
``i`` with the highest-resolution input's term and then adds that term again in its loop over the inputs,
in place; for ``i = 0`` that addition doubles the first branch's tensor itself, which the rows ``i > 0``
then read. The trained checkpoints depend on it, so it is kept (written without in-place updates).

Shapes: input ``(N, 3, H, W)`` normalised RGB with ``H`` and ``W`` multiples of 32 (the fourth branch runs at
1/32); the stem halves the size twice, branch ``i`` runs at ``(H/4 / 2**i, W/4 / 2**i)``;
:class:`PoseLiteHRNet` returns heatmaps ``(N, K, H/4, W/4)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LiteHRModule", "LiteHRNet", "LiteHRNetSpec", "ModuleType", "PoseLiteHRNet", "channel_shuffle"]

ModuleType = Literal["LITE", "NAIVE"]
MODULE_TYPES: tuple[str, ...] = ("LITE", "NAIVE")


@dataclass(frozen=True)
class LiteHRNetSpec:
    """The official backbone ``extra`` dict: ``stem``, ``num_stages``, ``stages_spec`` and ``with_head``.

    Every per-stage field is a tuple with one entry per stage (``num_channels``: one tuple of branch widths
    per stage, highest resolution first).
    """

    stem_channels: int
    stem_out_channels: int
    expand_ratio: float
    num_modules: tuple[int, ...]
    num_branches: tuple[int, ...]
    num_blocks: tuple[int, ...]
    module_type: tuple[str, ...]
    with_fuse: tuple[bool, ...]
    reduce_ratios: tuple[int, ...]
    num_channels: tuple[tuple[int, ...], ...]
    with_head: bool = True

    @property
    def num_stages(self) -> int:
        return len(self.num_modules)

    def to_extra(self) -> dict:
        """The spec as the official ``extra`` dict (lists for tuples, as in a YAML config)."""
        return {
            "stem": {
                "stem_channels": self.stem_channels,
                "out_channels": self.stem_out_channels,
                "expand_ratio": self.expand_ratio,
            },
            "num_stages": self.num_stages,
            "stages_spec": {
                "num_modules": list(self.num_modules),
                "num_branches": list(self.num_branches),
                "num_blocks": list(self.num_blocks),
                "module_type": list(self.module_type),
                "with_fuse": list(self.with_fuse),
                "reduce_ratios": list(self.reduce_ratios),
                "num_channels": [list(c) for c in self.num_channels],
            },
            "with_head": self.with_head,
        }


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: ``(N, g*c, H, W)`` viewed as ``(N, g, c, H, W)``, transposed, flattened."""
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


class ConvModule(nn.Module):
    """Convolution, optional BatchNorm, optional activation; mmcv ``ConvModule``'s key names.

    As there, the convolution has a bias only when no norm follows it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        *,
        norm: bool = True,
        act: Literal["relu", "sigmoid"] | None = "relu",
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=not norm
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activate: nn.Module | None = {
            "relu": nn.ReLU(inplace=True),
            "sigmoid": nn.Sigmoid(),
            None: None,
        }[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class DepthwiseSeparableConvModule(nn.Module):
    """Depthwise 3x3 + BN (no activation), then pointwise 1x1 + BN + ReLU; mmcv's key names."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, 3, 1, 1, groups=in_channels, act=None)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class SpatialWeighting(nn.Module):
    """Squeeze-and-excitation on one branch: global average, 1x1 + ReLU, 1x1 + sigmoid, multiply."""

    def __init__(self, channels: int, ratio: int = 4):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, int(channels / ratio), 1, norm=False, act="relu")
        self.conv2 = ConvModule(int(channels / ratio), channels, 1, norm=False, act="sigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv2(self.conv1(self.global_avgpool(x)))


class CrossResolutionWeighting(nn.Module):
    """Weights for every branch from all branches pooled to the lowest resolution (1x1 + BN convs)."""

    def __init__(self, channels: Sequence[int], ratio: int):
        super().__init__()
        self.channels = list(channels)
        total = sum(self.channels)
        self.conv1 = ConvModule(total, int(total / ratio), 1, act="relu")
        self.conv2 = ConvModule(int(total / ratio), total, 1, act="sigmoid")

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        mini_size = x[-1].shape[-2:]
        pooled = [F.adaptive_avg_pool2d(s, mini_size) for s in x[:-1]] + [x[-1]]
        weights = torch.split(self.conv2(self.conv1(torch.cat(pooled, dim=1))), self.channels, dim=1)
        return [
            s * F.interpolate(a, size=s.shape[-2:], mode="nearest") for s, a in zip(x, weights, strict=True)
        ]


class ConditionalChannelWeighting(nn.Module):
    """The ``LITE`` block: half the channels of every branch pass, the other half are reweighted across
    resolutions, depthwise-convolved and reweighted spatially; the halves are concatenated and shuffled."""

    def __init__(self, in_channels: Sequence[int], reduce_ratio: int):
        super().__init__()
        branch_channels = [c // 2 for c in in_channels]
        self.cross_resolution_weighting = CrossResolutionWeighting(branch_channels, ratio=reduce_ratio)
        self.depthwise_convs = nn.ModuleList(
            ConvModule(c, c, 3, 1, 1, groups=c, act=None) for c in branch_channels
        )
        self.spatial_weighting = nn.ModuleList(SpatialWeighting(c, ratio=4) for c in branch_channels)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        halves = [s.chunk(2, dim=1) for s in x]
        x1 = [h[0] for h in halves]
        x2 = self.cross_resolution_weighting([h[1] for h in halves])
        x2 = [sw(dw(s)) for s, dw, sw in zip(x2, self.depthwise_convs, self.spatial_weighting, strict=True)]
        return [channel_shuffle(torch.cat([a, b], dim=1), 2) for a, b in zip(x1, x2, strict=True)]


class ShuffleUnit(nn.Module):
    """The ``NAIVE`` block (ShuffleNet V2 unit, stride 1): half the channels through 1x1, depthwise 3x3, 1x1."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        if channels != half * 2:
            raise ValueError(f"a shuffle unit needs an even number of channels, got {channels}")
        self.branch2 = nn.Sequential(
            ConvModule(half, half, 1),
            ConvModule(half, half, 3, 1, 1, groups=half, act=None),
            ConvModule(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1), 2)


class Stem(nn.Module):
    """3x3 stride-2 conv, then a stride-2 shuffle block with an expanded depthwise path: ``(N, 3, H, W) ->
    (N, out_channels, H/4, W/4)``."""

    def __init__(self, in_channels: int, stem_channels: int, out_channels: int, expand_ratio: float):
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = ConvModule(in_channels, stem_channels, 3, 2, 1)
        mid = int(round(stem_channels * expand_ratio))
        branch = stem_channels // 2
        inc = out_channels - branch if stem_channels == out_channels else out_channels - stem_channels
        self.branch1 = nn.Sequential(
            ConvModule(branch, branch, 3, 2, 1, groups=branch, act=None),
            ConvModule(branch, inc, 1),
        )
        self.expand_conv = ConvModule(branch, mid, 1)
        self.depthwise_conv = ConvModule(mid, mid, 3, 2, 1, groups=mid, act=None)
        self.linear_conv = ConvModule(mid, branch if stem_channels == out_channels else stem_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.conv1(x).chunk(2, dim=1)
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return channel_shuffle(torch.cat((self.branch1(x1), x2), dim=1), 2)


class IterativeHead(nn.Module):
    """From the lowest resolution up: each branch plus the (bilinearly upsampled, corners aligned) result
    of the one below, through a depthwise-separable conv that maps it to the next branch's width."""

    def __init__(self, in_channels: Sequence[int]):
        super().__init__()
        rev = list(in_channels)[::-1]
        self.projects = nn.ModuleList(
            DepthwiseSeparableConvModule(rev[i], rev[i + 1] if i < len(rev) - 1 else rev[i])
            for i in range(len(rev))
        )

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        y: list[torch.Tensor] = []
        last: torch.Tensor | None = None
        for s, project in zip(x[::-1], self.projects, strict=True):
            if last is not None:
                s = s + F.interpolate(last, size=s.shape[-2:], mode="bilinear", align_corners=True)
            last = project(s)
            y.append(last)
        return y[::-1]


def _dw_pw(cin: int, cout: int, stride: int, *, relu: bool) -> nn.Sequential:
    """Depthwise 3x3 + BN, pointwise 1x1 + BN (+ ReLU): the official transition and fusion unit."""
    parts: list[nn.Module] = [
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        parts.append(nn.ReLU())
    return nn.Sequential(*parts)


class LiteHRModule(nn.Module):
    """Parallel branches of ``LITE`` or ``NAIVE`` blocks, then (``with_fuse``) the exchange units."""

    def __init__(
        self,
        num_branches: int,
        num_blocks: int,
        in_channels: Sequence[int],
        reduce_ratio: int,
        module_type: str,
        *,
        with_fuse: bool = True,
    ):
        super().__init__()
        if num_branches != len(in_channels):
            raise ValueError(
                f"num_branches ({num_branches}) != number of input channels ({len(in_channels)})"
            )
        if module_type not in MODULE_TYPES:
            raise ValueError(f"module_type must be one of {MODULE_TYPES}, got {module_type!r}")
        self.in_channels = list(in_channels)
        self.num_branches = num_branches
        self.module_type = module_type
        self.with_fuse = with_fuse
        self.layers: nn.Module
        if module_type == "LITE":
            self.layers = nn.Sequential(
                *(ConditionalChannelWeighting(self.in_channels, reduce_ratio) for _ in range(num_blocks))
            )
        else:
            self.layers = nn.ModuleList(
                nn.Sequential(*(ShuffleUnit(c) for _ in range(num_blocks))) for c in self.in_channels
            )
        if with_fuse:
            self.fuse_layers = self._make_fuse_layers()
            self.relu = nn.ReLU()

    def _make_fuse_layers(self) -> nn.ModuleList:
        ch = self.in_channels
        rows = []
        for i in range(self.num_branches):
            row: list[nn.Module | None] = []
            for j in range(self.num_branches):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(ch[j], ch[i], 1, 1, 0, bias=False),
                            nn.BatchNorm2d(ch[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    row.append(
                        nn.Sequential(
                            *(
                                _dw_pw(ch[j], ch[i], 2, relu=False)
                                if k == i - j - 1
                                else _dw_pw(ch[j], ch[j], 2, relu=True)
                                for k in range(i - j)
                            )
                        )
                    )
            rows.append(nn.ModuleList(row))
        return nn.ModuleList(rows)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.module_type == "LITE":
            out = self.layers(x)
        else:
            out = [branch(s) for branch, s in zip(self.layers, x, strict=True)]
        if not self.with_fuse:
            return out
        # Official arithmetic (see the module docstring): the j = 0 term is added twice, and for i = 0 the
        # doubled sum becomes the first branch's tensor that the later rows read.
        first = out[0]
        fused = []
        for i, row in enumerate(self.fuse_layers):
            if i == 0:
                y = first + first
            else:
                # Called twice as in the official code, so that training updates BN statistics alike.
                a = row[0](first)
                y = a + (row[0](first) if self.training else a)
            for j in range(1, self.num_branches):
                y = y + (out[j] if i == j else row[j](out[j]))
            if i == 0:
                first = y
            fused.append(self.relu(y))
        return fused


class LiteHRNet(nn.Module):
    """The Lite-HRNet backbone: stem, ``num_stages`` stages of :class:`LiteHRModule`, the iterative head.

    ``forward_features(x)`` returns the branch maps after the head (or the last stage when
    ``with_head`` is false), highest resolution first; the official backbone passes on only the first.
    """

    def __init__(self, spec: LiteHRNetSpec, *, in_channels: int = 3):
        super().__init__()
        self.num_stages = spec.num_stages
        self.num_branches = spec.num_branches
        self.stem = Stem(in_channels, spec.stem_channels, spec.stem_out_channels, spec.expand_ratio)
        pre = [spec.stem_out_channels]
        for i in range(self.num_stages):
            channels = list(spec.num_channels[i])
            setattr(self, f"transition{i}", self._make_transition_layer(pre, channels))
            modules = [
                LiteHRModule(
                    spec.num_branches[i],
                    spec.num_blocks[i],
                    channels,
                    spec.reduce_ratios[i],
                    spec.module_type[i],
                    with_fuse=spec.with_fuse[i],
                )
                for _ in range(spec.num_modules[i])
            ]
            setattr(self, f"stage{i}", nn.Sequential(*modules))
            pre = channels
        self.with_head = spec.with_head
        if self.with_head:
            self.head_layer = IterativeHead(pre)
        self.out_channels_list: list[int] = pre
        self._init_weights()

    @staticmethod
    def _make_transition_layer(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i in range(len(cur)):
            if i < len(pre):
                layers.append(_dw_pw(pre[i], cur[i], 1, relu=True) if cur[i] != pre[i] else None)
            else:
                steps = i + 1 - len(pre)
                layers.append(
                    nn.Sequential(
                        *(
                            _dw_pw(pre[-1], cur[i] if k == steps - 1 else pre[-1], 2, relu=True)
                            for k in range(steps)
                        )
                    )
                )
        return nn.ModuleList(layers)

    def _init_weights(self) -> None:
        """The official initialisation: convolutions N(0, 0.001), norms weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` normalised RGB -> branch maps, highest resolution (``H/4, W/4``) first."""
        y_list = [self.stem(x)]
        for i in range(self.num_stages):
            transition = getattr(self, f"transition{i}")
            x_list = []
            for j in range(self.num_branches[i]):
                t = transition[j]
                if t is None:
                    x_list.append(y_list[j])
                else:
                    x_list.append(t(y_list[j] if j < len(y_list) else y_list[-1]))
            y_list = getattr(self, f"stage{i}")(x_list)
        return self.head_layer(y_list) if self.with_head else y_list

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The official backbone output: a one-element list with the highest-resolution map."""
        return [self.forward_features(x)[0]]


class PoseLiteHRNet(LiteHRNet):
    """Lite-HRNet with the official configs' keypoint head: one 1x1 convolution (``final_layer``).

    ``(N, 3, H, W)`` normalised RGB -> heatmaps ``(N, K, H/4, W/4)``.
    """

    def __init__(self, spec: LiteHRNetSpec, *, num_joints: int):
        super().__init__(spec)
        self.num_joints = num_joints
        self.final_layer = nn.Conv2d(self.out_channels_list[0], num_joints, kernel_size=1)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.final_layer(self.forward_features(x)[0])
