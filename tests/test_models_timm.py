"""ImageNet HRNet checkpoints in timm's layout (also the official classification layout): loaded strictly
into the shipped W18-Small configs and into the backbone of an official cls_hrnet YAML, with only what the
layout says ignored. timm builds the source networks (random weights; nothing is downloaded)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hrstream.errors import WeightsError
from hrstream.models import build_hrfpn, from_config, load_weights
from hrstream.models.hrnet import HRNetBackbone

timm = pytest.importorskip("timm")

CLASSIFIER = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


def _timm_state(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    for m in model.modules():  # BatchNorm statistics that are not the defaults, so that every tensor matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


@pytest.mark.parametrize(
    ("timm_name", "config", "last_module"),
    [
        ("hrnet_w18_small", "pose_hrnet_w18_small_256x192", 0),
        ("hrnet_w18_small_v2", "pose_hrnet_w18_small_v2_256x192", 1),
    ],
)
def test_timm_small_loads_strictly_into_the_shipped_configs(
    timm_name: str, config: str, last_module: int, caplog: pytest.LogCaptureFixture
) -> None:
    sd = _timm_state(timm_name)
    model = from_config(config)
    caplog.set_level(logging.WARNING)
    report = load_weights(model, sd)
    assert report.layout == "timm"
    # ignored: the classifier, and the last stage-4 module's fuse layers into branches a pose network drops
    fuse = re.compile(rf"^stage4\.{last_module}\.fuse_layers\.[123]\.")
    want_ignored = sorted(k for k in sd if k.startswith(CLASSIFIER) or fuse.match(k))
    assert sorted(report.ignored) == want_ignored
    assert report.left_at_init == ["final_layer.weight", "final_layer.bias"]  # the pose head
    state = model.state_dict()
    backbone = [k for k in state if not k.startswith("final_layer.")]
    assert report.loaded == len(backbone) == len(sd) - len(want_ignored)
    for k in backbone:  # every backbone tensor is timm's
        assert torch.equal(state[k], sd[k]), k
    msg = caplog.records[-1].getMessage()
    assert (
        f"stage4.{last_module}.fuse_layers.1" in msg
        and "classifier" in msg
        and "left at initialisation" in msg
    )


def test_timm_small_does_not_fit_a_narrower_network() -> None:
    """The shipped synthetic W18-Small has one block per branch: timm's two-block checkpoint no longer
    'loads' into it with tensors silently dropped."""
    with pytest.raises(
        WeightsError, match=r"timm layout\) does not fit PoseHRNet: unexpected keys: stage2\.0"
    ):
        load_weights(from_config("synthetic_pose_hrnet_w18_small_128x96"), _timm_state("hrnet_w18_small"))


def _stage(modules: int, branches: int, block: str, blocks: list[int], channels: list[int]) -> dict[str, Any]:
    return {
        "NUM_MODULES": modules,
        "NUM_RANCHES"
        if branches == 1
        else "NUM_BRANCHES": branches,  # the official files' spelling in STAGE1
        "BLOCK": block,
        "NUM_BLOCKS": blocks,
        "NUM_CHANNELS": channels,
        "FUSE_METHOD": "SUM",
    }


def test_official_classification_yaml_is_a_backbone(tmp_path: Path) -> None:
    """An official HRNet-Image-Classification YAML (cls_hrnet_w18_small_v2) builds the backbone it describes;
    the ImageNet checkpoint loads into it strictly (all four stage-4 outputs kept: only the classifier is
    ignored), and V2p (HRFPN) builds on it."""
    cfg = {
        "GPUS": "(0,1,2,3)",
        "MODEL": {
            "NAME": "cls_hrnet",
            "IMAGE_SIZE": [224, 224],
            "NUM_CLASSES": 1000,
            "EXTRA": {
                "STAGE1": _stage(1, 1, "BOTTLENECK", [2], [64]),
                "STAGE2": _stage(1, 2, "BASIC", [2, 2], [18, 36]),
                "STAGE3": _stage(3, 3, "BASIC", [2, 2, 2], [18, 36, 72]),
                "STAGE4": _stage(2, 4, "BASIC", [2, 2, 2, 2], [18, 36, 72, 144]),
            },
        },
        "TRAIN": {"BATCH_SIZE_PER_GPU": 32, "LR": 0.05},
    }
    path = tmp_path / "cls_hrnet_w18_small_v2_sgd_lr5e-2_wd1e-4_bs32_x100.yaml"
    path.write_text(yaml.safe_dump(cfg))
    backbone = from_config(path)
    assert isinstance(backbone, HRNetBackbone) and backbone.spec.task == "cls"
    sd = _timm_state("hrnet_w18_small_v2")
    report = load_weights(backbone, sd)
    assert sorted(report.ignored) == sorted(k for k in sd if k.startswith(CLASSIFIER))
    assert report.left_at_init == []
    with torch.inference_mode():
        feats = backbone.eval().forward_features(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [18, 36, 72, 144]
    fpn = build_hrfpn(path)
    assert sum(p.numel() for p in fpn.parameters()) > 0
