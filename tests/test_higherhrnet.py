"""HigherHRNet equals the official network: every tensor name and shape of the published models, the tiny
official model's two outputs (tests/data/higherhrnet_reference, made with the official code), MMPose's layout,
and one-line errors for checkpoints that do not fit."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hrstream.errors import ConfigError, WeightsError
from hrstream.models import from_config, load_weights

REF = Path(__file__).parent / "data" / "higherhrnet_reference"
HRNET_REF = Path(__file__).parent / "data" / "hrnet_reference"


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return torch.load(REF / "official_higherhrnet_tiny.pt", weights_only=True)


def tiny_cfg() -> dict[str, Any]:
    return yaml.safe_load((REF / "higherhrnet_tiny.yaml").read_text())


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    "config, keys_file",
    [
        ("pose_higher_hrnet_w32_512", "official_higher_hrnet_w32_512_keys.json"),
        ("pose_higher_hrnet_w48_640", "official_higher_hrnet_w48_640_keys.json"),
        ("pose_higher_hrnet_w48_512", "official_higher_hrnet_w48_640_keys.json"),  # same network, other input
    ],
)
def test_registered_configs_build_the_official_networks(config: str, keys_file: str) -> None:
    ref = json.loads((REF / keys_file).read_text())
    with torch.device("meta"):
        model = from_config(config)
    sd = model.state_dict()
    ours = {k: list(v.shape) for k, v in sd.items()}
    assert list(ours) == list(ref["keys"])  # same names, same order
    assert ours == ref["keys"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_parameters"]
    spec = model.spec
    assert spec.method == "bottomup" and spec.task == "pose" and spec.higher is not None
    size = int(config.rsplit("_", 1)[1])
    assert spec.image_size == (size, size) and spec.heatmap_size == (size // 4, size // 4)
    test = spec.higher.test
    assert test.flip_test and test.project2image and test.adjust and test.refine
    assert (test.nms_kernel, test.nms_padding, test.detection_threshold, test.tag_threshold) == (
        5,
        2,
        0.1,
        1.0,
    )
    assert test.with_heatmaps == (True, True) and test.with_ae == (True, False)  # "(True, True)" strings


def test_tiny_official_model_reproduces_official_outputs(tiny: dict[str, Any]) -> None:
    model = from_config(tiny_cfg())
    report = load_weights(model, tiny["state_dict"])
    assert report.layout == "official" and report.loaded == len(model.state_dict()) == 316
    with torch.inference_mode():
        outs = model(tiny["input"])
    assert [tuple(o.shape) for o in outs] == [(1, 34, 64, 64), (1, 17, 128, 128)]
    for ours, ref in zip(outs, tiny["outputs"], strict=True):
        assert _rel_err(ours, ref) < 1e-6


def _as_mmpose0(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official names as MMPose 0.x saves an ``AssociativeEmbedding`` model with an
    ``AEHigherResolutionHead``: ``backbone.*`` and ``keypoint_head.{final_layers,deconv_layers}.*``."""
    head = ("final_layers.", "deconv_layers.")
    return {(f"keypoint_head.{k}" if k.startswith(head) else f"backbone.{k}"): v for k, v in sd.items()}


def test_mmpose_layout_loads_the_same_network(tiny: dict[str, Any]) -> None:
    ckpt = {"meta": {"mmpose_version": "0.29.0"}, "state_dict": _as_mmpose0(tiny["state_dict"])}
    assert any(k.startswith("keypoint_head.deconv_layers.0.1.0.conv1") for k in ckpt["state_dict"])
    model = from_config(tiny_cfg())
    report = load_weights(model, ckpt)
    assert report.layout == "mmpose0" and report.loaded == 316
    with torch.inference_mode():
        outs = model(tiny["input"])
    assert all(_rel_err(o, r) < 1e-6 for o, r in zip(outs, tiny["outputs"], strict=True))


def test_a_topdown_checkpoint_for_a_higherhrnet_config_is_one_line() -> None:
    topdown = torch.load(HRNET_REF / "official_pose_hrnet_w4_tiny.pt", weights_only=True)
    with pytest.raises(WeightsError) as err:
        load_weights(from_config(tiny_cfg()), topdown["state_dict"])
    msg = str(err.value)
    assert "\n" not in msg
    assert "top-down pose checkpoint (final_layer.*)" in msg and "bottom-up HigherHRNet" in msg
    assert "missing keys: final_layers.0.weight" in msg


def test_a_higherhrnet_checkpoint_for_a_topdown_config_is_one_line(tiny: dict[str, Any]) -> None:
    with torch.device("meta"):
        model = from_config("pose_hrnet_w32_256x192")
    with pytest.raises(WeightsError, match=r"bottom-up HigherHRNet checkpoint .* pose_higher_hrnet config"):
        load_weights(model, tiny["state_dict"])


def test_missing_tag_layers_are_named(tiny: dict[str, Any]) -> None:
    sd = dict(tiny["state_dict"])
    # tags cut off the first final layer: 17 heatmap channels where the config asks for 17 + 17
    sd["final_layers.0.weight"] = sd["final_layers.0.weight"][:17].clone()
    sd["final_layers.0.bias"] = sd["final_layers.0.bias"][:17].clone()
    with pytest.raises(WeightsError) as err:
        load_weights(from_config(tiny_cfg()), sd)
    msg = str(err.value)
    assert "\n" not in msg
    assert "final_layers.0 has 17 output channels where the config expects 34 (heatmaps + tags)" in msg
    assert "mis-shaped keys: final_layers.0.weight (17, 4, 1, 1) vs model (34, 4, 1, 1)" in msg
    # and a checkpoint without the layers at all names every missing tensor
    sd = {k: v for k, v in tiny["state_dict"].items() if not k.startswith("final_layers.0.")}
    with pytest.raises(WeightsError, match=r"missing keys: final_layers\.0\.weight, final_layers\.0\.bias$"):
        load_weights(from_config(tiny_cfg()), sd)


def test_tags_per_image_and_no_cat_output_change_the_head() -> None:
    cfg = tiny_cfg()
    cfg["MODEL"]["TAG_PER_JOINT"] = False
    cfg["MODEL"]["EXTRA"]["DECONV"]["CAT_OUTPUT"] = [False]
    model = from_config(cfg)
    sd = model.state_dict()
    assert tuple(sd["final_layers.0.weight"].shape) == (18, 4, 1, 1)  # 17 heatmaps + 1 tag
    assert tuple(sd["deconv_layers.0.0.0.weight"].shape) == (4, 4, 4, 4)  # features only
    outs = model.train()(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 18, 16, 24), (2, 17, 32, 48)]
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())


def _mutate(cfg: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    *parents, last = path.split(".")
    cur = cfg
    for p in parents:
        cur = cur[p]
    if value is None:
        del cur[last]
    else:
        cur[last] = value
    return cfg


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("MODEL.EXTRA.DECONV", None, "missing field MODEL.EXTRA.DECONV"),
        ("MODEL.EXTRA.DECONV.KERNEL_SIZE", [5], "KERNEL_SIZE entries must be 2, 3 or 4"),
        (
            "MODEL.EXTRA.DECONV.NUM_CHANNELS",
            [],
            r"NUM_CHANNELS needs an entry for each of the 1 deconvolutions",
        ),
        ("LOSS.WITH_AE_LOSS", [True], r"WITH_AE_LOSS must have 2 entries \(one per output stage\)"),
        ("LOSS.NUM_STAGES", 3, r"LOSS.NUM_STAGES \(3\) must be 1 \+ MODEL.EXTRA.DECONV.NUM_DECONVS"),
        ("TEST.WITH_AE", "(False, False)", "select no tags"),
        ("TEST.NMS_PADDING", 1, r"NMS_PADDING \(1\) must keep the map size"),
        ("DATASET.INPUT_SIZE", 500, "INPUT_SIZE must be a multiple of 64"),
        ("TEST.SCALE_FACTOR", [1, -0.5], "SCALE_FACTOR must be a list of positive numbers"),
        ("DATASET.DATASET", "mpii", "has no flip index"),
    ],
)
def test_config_errors_name_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_config(_mutate(tiny_cfg(), path, value))


def test_a_stage1_entry_sets_the_stem() -> None:
    """The official pose_higher_hrnet hard-codes stage 1 (4 x 64 bottlenecks); a config that gives
    MODEL.EXTRA.STAGE1 (the shipped synthetic model: one 32-channel bottleneck) gets that stem, as pose_hrnet."""
    cfg = tiny_cfg()
    official = from_config(cfg)
    assert len(official.layer1) == 4 and official.layer1[0].conv1.out_channels == 64
    cfg["MODEL"]["EXTRA"]["STAGE1"] = {"NUM_MODULES": 1, "NUM_BRANCHES": 1, "BLOCK": "BOTTLENECK",
                                       "NUM_BLOCKS": [1], "NUM_CHANNELS": [32], "FUSE_METHOD": "SUM"}  # fmt: skip
    small = from_config(cfg)
    assert len(small.layer1) == 1 and small.layer1[0].conv3.out_channels == 128
    assert small.transition1[0][0].in_channels == 128
    outs = small(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 34, 16, 24), (1, 17, 32, 48)]
    shipped = from_config("synthetic_higher_hrnet_w18_small_256")
    assert len(shipped.layer1) == 1 and shipped.spec.higher.input_size == 256
