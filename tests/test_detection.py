"""The person detector on HRNetV2p (torchvision FCOS on HRFPN): config, backbone initialisation from a
segmentation HRNet, training, checkpoints, and its use as `hrstream run --detector CONFIG`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torchvision.models.detection import FCOS

from hrstream.errors import ConfigError, WeightsError
from hrstream.models import from_config, load_weights
from hrstream.models.checkpoints import detect_layout, read_checkpoint
from hrstream.synth import SynthConfig
from hrstream.synth.writers import write_coco_dataset
from hrstream.train.det import init_backbone_from, train_det, validate_det
from hrstream.train.det_data import DetDataset, load_coco_boxes

ROOT = Path(__file__).resolve().parents[1]
DET_CFG = ROOT / "configs" / "synthetic_det_hrnet_w18_small_fcos.yaml"
SEG_WEIGHTS = ROOT / "hrstream" / "weights" / "synthetic_seg_hrnet_w18_small.safetensors"
POSE_WEIGHTS = ROOT / "hrstream" / "weights" / "synthetic_pose_hrnet_w18_small_128x96.safetensors"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def coco_people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated COCO set (8 frames of 320x180 with 2-3 people each)."""
    out = tmp_path_factory.mktemp("det_coco")
    cfg = SynthConfig(width=320, height=180, num_frames=8, num_people=(2, 3), seed=4242)
    write_coco_dataset([cfg], out)
    return out


def test_config_builds_torchvision_fcos_on_hrnet_v2p() -> None:
    model = from_config(DET_CFG)
    assert isinstance(model, FCOS) and not model.training
    fpn = model.backbone
    assert fpn.out_channels == 64 and fpn.num_outs == 5
    assert model.transform.min_size == (192,) and model.transform.max_size == 320
    with torch.inference_mode():
        out = model([torch.rand(3, 180, 320), torch.rand(3, 360, 640)])
    assert len(out) == 2 and set(out[0]) == {"boxes", "scores", "labels"}
    assert out[1]["boxes"].shape[1] == 4


def test_bad_detector_options_are_named() -> None:
    data = yaml.safe_load(DET_CFG.read_text())
    data["HRSTREAM"]["DETECTOR"]["OUT_CHANNELS"] = 48
    with pytest.raises(ConfigError, match="OUT_CHANNELS must be a multiple of 32"):
        from_config(data)
    data["HRSTREAM"]["DETECTOR"] = {"OUT_CHANELS": 64}
    with pytest.raises(ConfigError, match="unknown HRSTREAM.DETECTOR fields"):
        from_config(data)


def test_backbone_initialises_from_the_segmentation_hrnet() -> None:
    model = from_config(DET_CFG)
    n = init_backbone_from(model, SEG_WEIGHTS)
    seg = read_checkpoint(SEG_WEIGHTS)
    assert n == len([k for k in seg if not k.startswith("last_layer.")])
    got = model.backbone.backbone.state_dict()
    for key in ("conv1.weight", "stage4.0.fuse_layers.3.0.0.0.weight", "layer1.0.bn3.running_var"):
        torch.testing.assert_close(got[key], seg[key])
    # The pose network has another stem (no 4-branch stage 4 of the same shapes): refused, keys named.
    with pytest.raises(WeightsError, match="does not fit the detector"):
        init_backbone_from(from_config(DET_CFG), POSE_WEIGHTS)


def test_dataset_flip_mirrors_boxes(coco_people: Path) -> None:
    items = load_coco_boxes(coco_people / "annotations.json", coco_people / "images")
    assert len(items) == 8 and all(len(it.boxes) >= 1 for it in items)
    plain = DetDataset(items, augment=False)
    aug = DetDataset(items, augment=True, seed=0)
    flips = 0
    for i in range(len(items)):
        x0, t0 = plain[i]
        x1, t1 = aug[i]
        w = x0.shape[2]
        flipped = not torch.allclose(t0["boxes"], t1["boxes"])
        if flipped:
            flips += 1
            mirrored = t0["boxes"].clone()
            mirrored[:, [0, 2]] = (w - 1) - t0["boxes"][:, [2, 0]]
            torch.testing.assert_close(t1["boxes"], mirrored)
            # the image is the mirror up to the per-channel gain
            ratio = (x1.flip(2) + 1e-3) / (x0 + 1e-3)
            assert float(ratio.std(dim=(1, 2)).max()) < 0.2
        assert (t1["labels"] == 1).all()
    assert 0 < flips < len(items)  # the seed flips some images and not others


def test_training_lowers_the_loss_and_saves_a_strict_checkpoint(coco_people: Path, tmp_path: Path) -> None:
    result = train_det(
        DET_CFG,
        coco_people / "images",
        coco_people / "annotations.json",
        tmp_path / "run",
        epochs=3,
        batch_size=4,
        lr=1e-3,
        init_backbone=SEG_WEIGHTS,
        augment=False,
        device="cpu",
        warmup_steps=1,
        log_every=0,
    )
    assert result.steps == 6 and result.last_path.is_file()
    assert result.losses[-1] < result.losses[0] * 0.9, result.losses
    sd = read_checkpoint(result.last_path)
    assert detect_layout(sd) == "fcos"
    model = from_config(DET_CFG)
    assert load_weights(model, result.last_path).layout == "fcos"
    side = json.loads(result.last_path.with_suffix(".json").read_text())
    assert side["task"] == "det" and side["init_backbone"] == str(SEG_WEIGHTS)
    metrics = validate_det(
        model, coco_people / "annotations.json", coco_people / "images", device=torch.device("cpu")
    )
    assert set(metrics) == {"AP", "AP .5", "AP .75", "AR 100"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())


def test_detector_checkpoint_of_another_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not fit"):
        load_weights(from_config(DET_CFG), SEG_WEIGHTS)


def test_run_with_a_det_hrnet_detector(tmp_path: Path) -> None:
    """`hrstream run --detector CONFIG`: the shipped detector finds the people of a generated clip."""
    from support.cli_checks import run_cli

    from hrstream.demo import DEMO_DET_MODEL
    from hrstream.synth import write_clip

    clip = write_clip(
        SynthConfig(width=640, height=360, num_frames=6, num_people=2, seed=9001), tmp_path, "c"
    )
    res = run_cli(
        [
            "run", str(clip["video"]), "--task", "pose", "--model", "synthetic_pose_hrnet_w18_small_128x96",
            "--detector", DEMO_DET_MODEL, "--no-video", "--out", str(tmp_path / "out"), "--device", "cpu",
        ]
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    recs = [json.loads(x) for x in (tmp_path / "out" / "c.jsonl").read_text().splitlines()]
    truth = json.loads(clip["tracks"].read_text())
    n_true = np.zeros(6, int)
    for tr in truth["tracks"]:
        for f in tr["frames"]:
            n_true[f] += 1
    found = [len(r["people"]) for r in recs]
    assert len(recs) == 6 and sum(found) >= 0.8 * n_true.sum(), (found, n_true)
    bad = run_cli(["run", str(clip["video"]), "--task", "pose", "--model", "synthetic_pose_hrnet_w18_small_128x96",
                   "--detector", "synthetic_seg_hrnet_w18_small", "--out", str(tmp_path / "bad")])  # fmt: skip
    assert bad.returncode == 2 and "a detector needs det_hrnet" in bad.stderr
