"""`hrstream run --task pose` on a real COCO image with real detections equals the official top-down pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from hrstream.models import from_config, load_weights
from hrstream.pose import get_affine_transform
from hrstream.pose._decode_np import decode_msra_np

DATA = Path(__file__).parent / "data"
REF = DATA / "hrnet_reference"
IMAGE = DATA / "coco" / "000000000785.jpg"
IMAGE_ID = 785


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    d = torch.load(REF / "official_pose_hrnet_w4_tiny.pt", weights_only=True)
    cfg = {
        "MODEL": {
            "NAME": "pose_hrnet",
            "NUM_JOINTS": 17,
            "IMAGE_SIZE": [96, 128],
            "HEATMAP_SIZE": [24, 32],
            "EXTRA": d["config"]["MODEL"]["EXTRA"],
        },
        "TEST": {"FLIP_TEST": False, "POST_PROCESS": True, "SHIFT_HEATMAP": True},
    }
    tmp = tmp_path_factory.mktemp("tinypose")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    save_file({k: v.contiguous() for k, v in d["state_dict"].items()}, str(tmp / "tiny.safetensors"))
    return tmp / "tiny.yaml", tmp / "tiny.safetensors", cfg


def official_keypoints(cfg: dict, weights: Path, image_rgb: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """The official test path (lib/dataset/coco.py _box2cs, get_affine_transform + cv2.warpAffine, ToTensor +
    Normalize, the network, get_final_preds), flip test off."""
    model = from_config(cfg)
    load_weights(model, weights)
    w_in, h_in = cfg["MODEL"]["IMAGE_SIZE"]
    aspect = w_in / h_in
    out = []
    for x, y, w, h in boxes_xywh:
        center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
        if w > aspect * h:
            h = w / aspect
        elif w < aspect * h:
            w = h * aspect
        scale = np.array([w / 200.0, h / 200.0], np.float32) * 1.25
        trans = get_affine_transform(center, scale, 0, (w_in, h_in))
        crop = cv2.warpAffine(image_rgb, trans, (w_in, h_in), flags=cv2.INTER_LINEAR)
        t = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1)
        t = (t - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor(
            [0.229, 0.224, 0.225]
        ).view(3, 1, 1)
        with torch.no_grad():
            hm = model(t.unsqueeze(0)).numpy()
        coords, _ = decode_msra_np(hm, center[None], scale[None])
        out.append(coords[0])
    return np.stack(out)


def test_keypoints_equal_official_pipeline_on_real_detections(tiny_pose, tmp_path: Path) -> None:
    cfg_path, weights, cfg = tiny_pose
    dets = [
        d
        for d in json.loads((DATA / "coco" / "test_coco_det_AP_H_56.json").read_text())
        if d["image_id"] == IMAGE_ID
    ]
    dets = [d for d in dets if d["category_id"] == 1 and d["score"] >= 0.5]
    assert len(dets) >= 1
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps([{**d, "image_id": 0} for d in dets]))  # image_id = frame index
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hrstream.cli",
            "run",
            str(IMAGE),
            "--task",
            "pose",
            "--model",
            str(cfg_path),
            "--weights",
            str(weights),
            "--detector",
            f"file:{det_file}",
            "--no-flip-test",
            "--amp",
            "off",  # the official code computes in fp32 (`--amp auto` is bf16 on a CPU with native bf16)
            "--out",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / f"{IMAGE.stem}.jsonl").read_text().splitlines()[0])
    people = rec["people"]
    assert len(people) == len(dets)
    image = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    boxes = np.array([d["bbox"] for d in dets], np.float32)
    expected = official_keypoints(cfg, weights, image, boxes)
    # people come back in detection order; the box identifies each one
    for person in people:
        x1, y1, x2, y2 = person["box"]
        i = int(
            np.argmin(
                np.abs(boxes[:, 0] - x1) + np.abs(boxes[:, 1] - y1) + np.abs(boxes[:, 0] + boxes[:, 2] - x2)
            )
        )
        ours = np.array([kp[:2] for kp in person["keypoints"]], np.float64)
        np.testing.assert_allclose(ours, expected[i], atol=0.011)  # JSON keeps 2 decimals
