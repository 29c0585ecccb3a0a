"""Bottom-up training pieces: the official targets and losses against hand-computed values, the whole-image
samples of a synthetic crowd, and a few deterministic training steps of a tiny HigherHRNet."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from hrstream.errors import ConfigError
from hrstream.models import from_config
from hrstream.train.bottomup import bottomup_loss, bottomup_spec, train_bottomup
from hrstream.train.bottomup_data import BottomUpDataset, affine_matrix, load_coco_images
from hrstream.train.bottomup_targets import AELoss, BottomUpLoss, HeatmapLoss, heatmap_targets, joint_indices

REF = Path(__file__).parent / "data" / "higherhrnet_reference"


def tiny_cfg(input_size: int = 64) -> dict[str, Any]:
    cfg = yaml.safe_load((REF / "higherhrnet_tiny.yaml").read_text())
    cfg["DATASET"]["INPUT_SIZE"] = input_size
    cfg["DATASET"]["OUTPUT_SIZE"] = [input_size // 4, input_size // 2]
    return cfg


def test_heatmap_targets_are_the_official_gaussians() -> None:
    joints = np.array([[[5.7, 8.2, 2], [0, 0, 0]], [[6.2, 8.9, 1], [15.5, 15.5, 2]]])
    hm = heatmap_targets(joints, 2, 16, sigma=2)
    assert hm.shape == (2, 16, 16) and hm.dtype == np.float32
    # joint 0: both people at pixel (5, 8) and (6, 8): the maximum of two gaussians
    assert hm[0, 8, 5] == 1.0 and hm[0, 8, 6] == 1.0
    assert hm[0, 8, 7] == pytest.approx(math.exp(-1 / 8))
    assert hm[0, 8, 12] == pytest.approx(math.exp(-36 / 8))  # 6 px from (6, 8): inside the 15 px square
    assert hm[0, 8, 13] == pytest.approx(math.exp(-49 / 8))  # 7 px from (6, 8), 8 from (5, 8)
    assert hm[0, 8, 14] == 0.0  # outside both squares
    assert hm[0, 0, 0] == 0.0 and hm[0, 15, 5] == pytest.approx(math.exp(-49 / 8))  # 7 px below (5, 8)
    # joint 1: (15, 15) on the corner; the unlabelled joint of person 0 adds nothing
    assert (
        hm[1, 15, 15] == 1.0 and hm[1, 15, 14] == pytest.approx(math.exp(-1 / 8)) and hm[1, :8, :8].max() == 0
    )
    assert heatmap_targets(np.array([[[16.0, 3.0, 2]]]), 1, 16, sigma=2).max() == 0  # outside the map


def test_joint_indices_pack_visible_joints_per_person() -> None:
    joints = np.array([[[1.2, 2.9, 2], [0, 0, 0], [3, 3, 1]], [[9, 1, 2], [1, 1, 2], [2, 0, 2]]])
    idx = joint_indices(joints, max_people=3, output_res=4, tag_per_joint=True)
    assert idx.shape == (3, 3, 2) and idx.dtype == np.int64
    # person 0: joint 0 at (1, 2) -> 0*16 + 2*4 + 1; joint 2 at (3, 3) -> 2*16 + 15; packed first
    assert idx[0].tolist() == [[9, 1], [47, 1], [0, 0]]
    # person 1: joint 0 lies outside the 4 x 4 map
    assert idx[1].tolist() == [[16 + 5, 1], [32 + 2, 1], [0, 0]] and idx[2].sum() == 0
    shared = joint_indices(joints, max_people=3, output_res=4, tag_per_joint=False)
    assert shared[0, :2, 0].tolist() == [9, 15]


def test_ae_loss_of_the_official_example() -> None:
    """The example at the end of the official lib/core/loss.py, computed by hand."""
    tags = (torch.arange(32, dtype=torch.float64) * 0.1).view(1, -1, 1)
    joints = torch.zeros(1, 2, 2, 2, dtype=torch.int64)
    joints[0, 0, 0], joints[0, 0, 1] = torch.tensor([3, 1]), torch.tensor([22, 1])  # tags 0.3, 2.2
    joints[0, 1, 0], joints[0, 1, 1] = torch.tensor([10, 1]), torch.tensor([30, 1])  # tags 1.0, 3.0
    push, pull = AELoss("exp")(tags, joints)
    # means 1.25 and 2.0; pull = (0.95^2 + 1^2) / 2; push = 0.5 * exp(-0.75^2)
    assert pull.item() == pytest.approx((0.95**2 + 1.0) / 2)
    assert push.item() == pytest.approx(0.5 * math.exp(-0.5625))
    push_max, pull_max = AELoss("max")(tags, joints)
    assert push_max.item() == pytest.approx(0.5 * 0.25) and pull_max.item() == pytest.approx(pull.item())


def test_ae_loss_with_one_person_or_none() -> None:
    tags = torch.tensor([[[1.0], [3.0], [5.0], [7.0]]])
    one = torch.tensor([[[0, 1], [1, 1], [0, 0]], [[0, 0], [0, 0], [0, 0]]])[None]
    push, pull = AELoss()(tags, one)
    assert push.item() == 0 and pull.item() == pytest.approx(1.0)  # mean 2: (1 + 1) / 2
    push, pull = AELoss()(tags, torch.zeros_like(one))
    assert push.item() == 0 and pull.item() == 0
    tags.requires_grad_(True)
    two = torch.tensor([[[0, 1], [1, 1]], [[2, 1], [0, 0]]])[None]
    push, pull = AELoss()(tags, two)
    (push + pull).sum().backward()
    assert tags.grad is not None and tags.grad[0, 3, 0] == 0  # unused tag


def test_heatmap_loss_is_masked_per_image() -> None:
    pred = torch.zeros(2, 1, 2, 2)
    gt = torch.tensor([[[[1.0, 2.0], [0.0, 0.0]]], [[[3.0, 0.0], [0.0, 0.0]]]])
    mask = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    assert HeatmapLoss()(pred, gt, mask).tolist() == [0.25, 2.25]  # 1/4 (the 4 is masked), 9/4


def test_total_loss_sums_stages_as_do_train() -> None:
    loss = BottomUpLoss(1, with_heatmaps_loss=[True, True], with_ae_loss=[True, False], heatmaps_factor=[1.0, 2.0],
                        push_factor=[0.5, 0.5], pull_factor=[1.0, 1.0])  # fmt: skip
    out0 = torch.zeros(1, 2, 2, 2)  # 1 heatmap + 1 tag map
    out0[0, 1] = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    out1 = torch.ones(1, 1, 4, 4)
    targets = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 4)]
    masks = [torch.ones(1, 2, 2), torch.ones(1, 4, 4)]
    joints = [torch.tensor([[[[0, 1]], [[1, 1]]]]), torch.zeros(1, 2, 1, 2, dtype=torch.int64)]
    terms = loss([out0, out1], targets, masks, joints)
    assert terms.heatmaps[0].item() == 0 and terms.heatmaps[1].item() == 2.0
    assert terms.pull[0].item() == 0 and terms.push[0].item() == pytest.approx(
        0.5 * 0.5 * math.exp(-4), rel=1e-5
    )
    assert terms.push[1] is None and terms.pull[1] is None
    assert terms.total.item() == pytest.approx(2.0 + 0.25 * math.exp(-4), rel=1e-6)


def test_affine_matrix_centres_and_scales() -> None:
    m = affine_matrix((100.0, 50.0), 1.0, 64)  # a 200 px square around (100, 50) onto 64 px
    assert m @ np.array([100.0, 50.0, 1.0]) == pytest.approx([32, 32, 1])
    assert m @ np.array([0.0, -50.0, 1.0]) == pytest.approx([0, 0, 1])
    r = affine_matrix((100.0, 50.0), 1.0, 64, rot=90)
    assert r @ np.array([100.0, 50.0, 1.0]) == pytest.approx([32, 32, 1])


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hrstream.synth.config import SynthConfig
    from hrstream.synth.writers import write_coco_dataset

    out = tmp_path_factory.mktemp("crowd")
    cfg = SynthConfig(
        width=160, height=120, num_frames=6, num_people=(8, 10), seed=4, person_height=(0.2, 0.6)
    )
    return write_coco_dataset([cfg], out, every_n=2)


def test_samples_of_a_synthetic_crowd(crowd: Path) -> None:
    spec = bottomup_spec(tiny_cfg(64))
    records = load_coco_images(crowd, crowd.parent / "images", num_joints=17)
    assert len(records) == 3 and all(len(r.joints) >= 5 for r in records)
    ds = BottomUpDataset(records, spec.higher, sigma=2, seed=0)
    x, targets, masks, joints = ds[0]
    assert x.shape == (3, 64, 64) and [t.shape for t in targets] == [(17, 16, 16), (17, 32, 32)]
    assert [m.shape for m in masks] == [(16, 16), (32, 32)] and [j.shape for j in joints] == [(30, 17, 2)] * 2
    assert targets[1].max() == 1.0 and joints[1][..., 1].sum() > 10
    assert 0 < float(masks[0].mean()) <= 1  # the image's letterbox outside the crop is masked out
    # every labelled joint inside the map sits on a target peak of its joint
    idx = joints[1][joints[1][..., 1] > 0][:, 0]
    k, rest = idx // (32 * 32), idx % (32 * 32)
    assert torch.all(targets[1][k, rest // 32, rest % 32] == 1.0)


def test_training_steps_are_deterministic_and_saved(crowd: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(64)
    runs = []
    for name in ("a", "b"):
        runs.append(train_bottomup(cfg, crowd.parent / "images", crowd, tmp_path / name, epochs=1, batch_size=2,
                                   seed=3, device="cpu", max_steps=2, log_every=0))  # fmt: skip
    a, b = runs
    assert a.steps == 2 and len(a.losses) == 2 and all(math.isfinite(v) for v in a.losses)
    assert a.losses == b.losses
    side = json.loads(a.last_path.with_suffix(".json").read_text())
    assert side["method"] == "bottomup" and side["steps"] == 2
    from hrstream.models import load_weights

    load_weights(from_config(cfg), a.last_path)  # official names, loads strictly


def test_bad_training_configs_are_one_line() -> None:
    cfg = tiny_cfg(64)
    cfg["DATASET"]["OUTPUT_SIZE"] = [16, 16]
    with pytest.raises(ConfigError, match=r"OUTPUT_SIZE must be \[16, 32\]"):
        bottomup_spec(cfg)
    with pytest.raises(ConfigError, match="bottom-up training needs pose_higher_hrnet"):
        bottomup_spec("pose_hrnet_w32_256x192")
    bad = tiny_cfg(64)
    bad["LOSS"]["PUSH_LOSS_FACTOR"] = [0.001]
    with pytest.raises(ConfigError, match="PUSH_LOSS_FACTOR must have 2 entries"):
        bottomup_loss(bottomup_spec(bad))


def test_train_bottomup_command(crowd: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hrstream.train.commands import train_group

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_cfg(64)))
    args = ["bottomup", "--model", str(cfg), "--images", str(crowd.parent / "images"), "--ann", str(crowd),
            "--out", str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "2", "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(train_group, ["-q", *args])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["steps"] == 1 and Path(report["last"]).is_file()
    wrong = CliRunner().invoke(train_group, ["bottomup", "--model", "pose_hrnet_w32_256x192", "--images",
                                             str(crowd.parent / "images"), "--ann", str(crowd), "--out",
                                             str(tmp_path / "x")])  # fmt: skip
    assert wrong.exit_code == 2 and "bottom-up training needs pose_higher_hrnet" in wrong.output


def test_the_backbone_of_a_topdown_checkpoint_starts_the_network(tmp_path: Path) -> None:
    """`--init-backbone`: conv1 .. stage4 of a pose_hrnet of the same layout, the heads left at initialisation;
    a backbone of another width is one WeightsError naming the keys."""
    from safetensors.torch import save_file

    from hrstream.errors import WeightsError
    from hrstream.train.bottomup import init_backbone_from

    bottomup = tiny_cfg(64)
    topdown = {"MODEL": {"NAME": "pose_hrnet", "NUM_JOINTS": 17, "IMAGE_SIZE": [48, 64], "HEATMAP_SIZE": [12, 16],
                         "EXTRA": {k: v for k, v in bottomup["MODEL"]["EXTRA"].items() if k.startswith("STAGE")}}}  # fmt: skip
    torch.manual_seed(1)
    source = from_config(topdown)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "td.safetensors"))
    model = from_config(bottomup)
    heads = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("final_layers", "deconv"))}
    n = init_backbone_from(model, tmp_path / "td.safetensors")
    sd = model.state_dict()
    assert n == len(sd) - len(heads)
    assert all(
        torch.equal(sd[k], v) for k, v in source.state_dict().items() if not k.startswith("final_layer.")
    )
    assert all(torch.equal(sd[k], v) for k, v in heads.items())
    wide = copy.deepcopy(topdown)
    wide["MODEL"]["EXTRA"]["STAGE2"]["NUM_CHANNELS"] = [8, 16]
    save_file(
        {k: v.contiguous() for k, v in from_config(wide).state_dict().items()},
        str(tmp_path / "w.safetensors"),
    )
    with pytest.raises(WeightsError, match="does not fit the HigherHRNet's.*mis-shaped"):
        init_backbone_from(model, tmp_path / "w.safetensors")
