"""HigherHRNet (Cheng et al., CVPR 2020), module for module as the official ``lib/models/pose_higher_hrnet.py``.

A bottom-up pose network: one call on the whole image predicts every person's keypoint heatmaps and
associative-embedding tags; people are formed afterwards by grouping keypoints by tag
(:mod:`hrstream.pose.bottomup`).

Structure and state-dict names (those of the official checkpoints, e.g. ``pose_higher_hrnet_w32_512.pth``):

* the HRNet backbone of the official pose network (:class:`~hrstream.models.hrnet.HRNetBackbone`, nearest
  upsampling in the fusions, only the highest-resolution branch leaves stage 4): ``conv1 .. stage4``; stage 1 is
  the official 4 x 64 bottlenecks unless the config gives ``MODEL.EXTRA.STAGE1`` (as hrstream's pose_hrnet);
* ``final_layers.0``: a conv on the 1/4 resolution features to ``K`` heatmaps followed, when
  ``LOSS.WITH_AE_LOSS[0]``, by the tags (``K`` channels with ``TAG_PER_JOINT``, else 1);
* for each of ``MODEL.EXTRA.DECONV.NUM_DECONVS`` deconvolution stages ``i``: ``deconv_layers.i.0`` (a stride-2
  transposed conv, BN, ReLU; its input is the features concatenated with the previous stage's output when
  ``CAT_OUTPUT[i]``) and ``deconv_layers.i.1 ..`` ``NUM_BASIC_BLOCKS`` basic blocks, then
  ``final_layers.{i+1}``: a conv to ``K`` heatmaps (and tags when ``WITH_AE_LOSS[i+1]``).

Shapes: input ``(N, 3, H, W)`` RGB normalised with ImageNet mean/std; output a list with one map per stage:
``(N, K + T, H/4, W/4)``, then ``(N, K (+ T), H/2, W/2)``, ... where ``T`` is the tag dimension of that stage
(0 without its AE loss). ``H`` and ``W`` must be multiples of 32 (the official test resizes to multiples of
64). Map pixel ``(i, j)`` at stride ``s`` sits at input pixel ``(s*j, s*i)`` up to the official half-pixel
conventions handled by the inference code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hrstream.models.hrnet import BN_MOMENTUM, BasicBlock, HRNetBackbone, StageSpec

__all__ = ["BottomUpTestSpec", "DeconvSpec", "HigherHRNetSpec", "PoseHigherHRNet", "deconv_padding"]


@dataclass(frozen=True)
class DeconvSpec:
    """``MODEL.EXTRA.DECONV`` of an official config: one entry per deconvolution stage."""

    num_deconvs: int
    num_channels: tuple[int, ...]
    kernel_size: tuple[int, ...]
    num_basic_blocks: int
    cat_output: tuple[bool, ...]


@dataclass(frozen=True)
class BottomUpTestSpec:
    """The official ``TEST`` settings of the bottom-up inference (defaults: ``lib/config/default.py``).

    ``with_heatmaps``/``with_ae`` and ``with_heatmaps_loss``/``with_ae_loss`` have one entry per output stage;
    ``flip_index`` is the joint permutation of a mirrored image (``FLIP_CONFIG`` of the dataset) and
    ``joint_order`` the order in which the grouping visits the joints.
    """

    scale_factor: tuple[float, ...] = (1.0,)
    flip_test: bool = False
    project2image: bool = False
    nms_kernel: int = 3
    nms_padding: int = 1
    tag_threshold: float = 1.0
    detection_threshold: float = 0.2
    max_num_people: int = 30
    use_detection_val: bool = True
    ignore_too_much: bool = False
    adjust: bool = True
    refine: bool = True
    with_heatmaps: tuple[bool, ...] = (True,)
    with_ae: tuple[bool, ...] = (True,)
    with_heatmaps_loss: tuple[bool, ...] = (True,)
    with_ae_loss: tuple[bool, ...] = (True,)
    tag_per_joint: bool = True
    num_joints: int = 17
    with_center: bool = False
    ignore_center: bool = True
    flip_index: tuple[int, ...] = ()
    joint_order: tuple[int, ...] = ()
    input_size: int = 512


@dataclass(frozen=True)
class HigherHRNetSpec:
    """What a ``pose_higher_hrnet`` config says beyond the HRNet stages.

    ``num_joints`` includes the centre joint when ``DATASET.WITH_CENTER``; ``with_ae_loss`` has one entry per
    output stage (``1 + deconv.num_deconvs``); ``input_size`` is ``DATASET.INPUT_SIZE`` (square training crop
    and base test size); ``output_size`` is ``DATASET.OUTPUT_SIZE`` (one per stage).
    """

    num_joints: int
    tag_per_joint: bool
    with_ae_loss: tuple[bool, ...]
    deconv: DeconvSpec
    final_conv_kernel: int
    input_size: int
    output_size: tuple[int, ...]
    test: BottomUpTestSpec

    @property
    def tag_dim(self) -> int:
        """Channels of a tag map: ``num_joints`` with ``TAG_PER_JOINT``, else 1."""
        return self.num_joints if self.tag_per_joint else 1

    def stage_channels(self, stage: int) -> int:
        """Output channels of ``final_layers[stage]``: heatmaps, plus tags where that stage has the AE loss."""
        return self.num_joints + (self.tag_dim if self.with_ae_loss[stage] else 0)


def deconv_padding(kernel: int) -> tuple[int, int]:
    """``(padding, output_padding)`` the official code pairs with a stride-2 deconvolution of ``kernel``."""
    table = {4: (1, 0), 3: (1, 1), 2: (0, 0)}
    if kernel not in table:
        raise ValueError(f"deconvolution kernel must be 2, 3 or 4, got {kernel}")
    return table[kernel]


class PoseHigherHRNet(HRNetBackbone):
    """Official ``PoseHigherResolutionNet``: HRNet (V1) + ``final_layers`` + ``deconv_layers``.

    ``forward(x)`` maps ``(N, 3, H, W)`` to a list of ``1 + num_deconvs`` maps (see the module docstring).
    """

    def __init__(
        self,
        stages: Sequence[StageSpec],
        spec: HigherHRNetSpec,
        *,
        stage1_blocks: int = 4,
        stage1_channels: int = 64,
        stage1_block: str = "BOTTLENECK",
    ) -> None:
        super().__init__(
            stages,
            stage1_blocks=stage1_blocks,
            stage1_channels=stage1_channels,
            stage1_block=stage1_block,
            upsample="nearest",
            last_multi_scale=False,
        )
        self.higher = spec
        self.num_joints = spec.num_joints
        width = self.out_channels_list[0]
        k = spec.final_conv_kernel
        pad = 1 if k == 3 else 0
        d = spec.deconv
        finals = [nn.Conv2d(width, spec.stage_channels(0), kernel_size=k, stride=1, padding=pad)]
        finals += [
            nn.Conv2d(d.num_channels[i], spec.stage_channels(i + 1), kernel_size=k, stride=1, padding=pad)
            for i in range(d.num_deconvs)
        ]
        self.final_layers = nn.ModuleList(finals)
        deconvs = []
        in_ch = width
        for i in range(d.num_deconvs):
            if d.cat_output[i]:
                in_ch += spec.stage_channels(i)
            out_ch = d.num_channels[i]
            padding, output_padding = deconv_padding(d.kernel_size[i])
            layers: list[nn.Module] = [
                nn.Sequential(
                    nn.ConvTranspose2d(
                        in_ch,
                        out_ch,
                        kernel_size=d.kernel_size[i],
                        stride=2,
                        padding=padding,
                        output_padding=output_padding,
                        bias=False,
                    ),
                    nn.BatchNorm2d(out_ch, momentum=BN_MOMENTUM),
                    nn.ReLU(inplace=True),
                )
            ]
            layers += [nn.Sequential(BasicBlock(out_ch, out_ch)) for _ in range(d.num_basic_blocks)]
            deconvs.append(nn.Sequential(*layers))
            in_ch = out_ch
        self.deconv_layers = nn.ModuleList(deconvs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """``(N, 3, H, W)`` normalised RGB -> ``[(N, K+T, H/4, W/4), (N, K, H/2, W/2), ...]``."""
        feat = self.forward_features(x)[0]
        y = self.final_layers[0](feat)
        outputs = [y]
        for i, deconv in enumerate(self.deconv_layers):
            if self.higher.deconv.cat_output[i]:
                feat = torch.cat((feat, y), 1)
            feat = deconv(feat)
            y = self.final_layers[i + 1](feat)
            outputs.append(y)
        return outputs


def explain_mismatch(target: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str | None:
    """Say in words why a checkpoint does not fit, where the top-down / bottom-up heads tell: ``target`` is the
    model's state dict, ``given`` the checkpoint's under official names. ``None`` when nothing specific shows."""
    bottomup_model = "final_layers.0.weight" in target
    bottomup_ckpt = "final_layers.0.weight" in given or any(k.startswith("deconv_layers.") for k in given)
    if bottomup_model and "final_layer.weight" in given and not bottomup_ckpt:
        return (
            "it is a top-down pose checkpoint (final_layer.*) and the config builds a bottom-up HigherHRNet "
            "(final_layers.*, deconv_layers.*): pass HigherHRNet weights, or a pose_hrnet config for these"
        )
    if not bottomup_model and "final_layer.weight" in target and bottomup_ckpt:
        return (
            "it is a bottom-up HigherHRNet checkpoint (final_layers.*, deconv_layers.*) and the config builds a "
            "top-down pose network (final_layer.*): pass a pose_higher_hrnet config for these weights"
        )
    for i in range(8):
        key = f"final_layers.{i}.weight"
        if key not in target or key not in given:
            continue
        want, got = int(target[key].shape[0]), int(given[key].shape[0])
        if got < want:
            return (
                f"its {key[:-7]} has {got} output channels where the config expects {want} (heatmaps + tags): "
                "the checkpoint has no tag outputs there (LOSS.WITH_AE_LOSS / MODEL.TAG_PER_JOINT differ)"
            )
        if got > want:
            return (
                f"its {key[:-7]} has {got} output channels where the config expects {want}: the checkpoint "
                "has tag outputs the config does not ask for (LOSS.WITH_AE_LOSS / MODEL.TAG_PER_JOINT differ)"
            )
    return None
