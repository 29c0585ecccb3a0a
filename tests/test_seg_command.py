"""`hrstream run --task seg`: the command's label map equals the official computation, frames are all there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from hrstream.models import from_config, load_weights
from hrstream.seg import read_label_map

DATA = Path(__file__).parent / "data"
REF = DATA / "hrnet_reference"
CITY = DATA / "seg" / "cityscapes_frankfurt_000294_256x128.png"


@pytest.fixture(scope="module")
def tiny_seg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    d = torch.load(REF / "official_seg_hrnet_w4_tiny.pt", weights_only=True)

    def stage(n: int, m: int, ch: list[int]) -> dict:
        return {
            "NUM_MODULES": m,
            "NUM_BRANCHES": n,
            "BLOCK": "BASIC",
            "NUM_BLOCKS": [4] * n,
            "NUM_CHANNELS": ch[:n],
            "FUSE_METHOD": "SUM",
        }

    ch = [4, 8, 16, 32]
    cfg = {
        "MODEL": {
            "NAME": "seg_hrnet",
            "ALIGN_CORNERS": bool(d["align_corners"]),
            "EXTRA": {
                "FINAL_CONV_KERNEL": 1,
                "STAGE1": {
                    "NUM_MODULES": 1,
                    "NUM_RANCHES": 1,
                    "BLOCK": "BOTTLENECK",
                    "NUM_BLOCKS": [4],
                    "NUM_CHANNELS": [64],
                    "FUSE_METHOD": "SUM",
                },
                "STAGE2": stage(2, 1, ch),
                "STAGE3": stage(3, 4, ch),
                "STAGE4": stage(4, 3, ch),
            },
        },
        "DATASET": {"NUM_CLASSES": int(d["num_classes"])},
        "TEST": {"IMAGE_SIZE": [256, 128]},
    }
    tmp = tmp_path_factory.mktemp("tinyseg")
    (tmp / "tiny_seg.yaml").write_text(yaml.safe_dump(cfg))
    save_file({k: v.contiguous() for k, v in d["state_dict"].items()}, str(tmp / "tiny_seg.safetensors"))
    return tmp / "tiny_seg.yaml", tmp / "tiny_seg.safetensors", cfg


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hrstream.cli", "run", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def official_labels(cfg: dict, weights: Path, image_rgb: np.ndarray) -> np.ndarray:
    """The official testval path: RGB /255, ImageNet mean/std, network, bilinear upsampling, argmax."""
    model = from_config(cfg)
    load_weights(model, weights)
    x = image_rgb.astype(np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    t = torch.from_numpy(x.transpose(2, 0, 1)).unsqueeze(0)
    with torch.no_grad():
        logits = model(t)
        up = F.interpolate(
            logits, size=image_rgb.shape[:2], mode="bilinear", align_corners=cfg["MODEL"]["ALIGN_CORNERS"]
        )
    return up.argmax(1)[0].numpy().astype(np.uint8)


def test_command_label_map_equals_official(tiny_seg, tmp_path: Path) -> None:
    cfg_path, weights, cfg = tiny_seg
    out = tmp_path / "out"
    r = _run(
        str(CITY), "--task", "seg", "--model", str(cfg_path), "--weights", str(weights), "--out", str(out),
        "--amp", "off",  # the official code computes in fp32 (`--amp auto` is bf16 on a CPU with native bf16)
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    labels = read_label_map(out / f"{CITY.stem}.labels" / "000000.png")
    image = cv2.cvtColor(cv2.imread(str(CITY)), cv2.COLOR_BGR2RGB)
    expected = official_labels(cfg, weights, image)
    assert labels.shape == expected.shape == (128, 256)
    assert np.array_equal(labels, expected)
    rec = json.loads((out / f"{CITY.stem}.jsonl").read_text().splitlines()[0])
    assert abs(sum(rec["classes"].values()) - 1.0) < 1e-4
    assert rec["classes"][max(rec["classes"], key=rec["classes"].get)] == pytest.approx(
        np.bincount(expected.ravel()).max() / expected.size, abs=1e-5
    )


def test_seg_video_has_every_frame_and_exact_label_maps(tiny_seg, tmp_path: Path) -> None:
    cfg_path, weights, _ = tiny_seg
    clip = DATA / "videos" / "football_1280x720_mpeg4.mp4"
    out = tmp_path / "out"
    r = _run(
        str(clip), "--task", "seg", "--model", str(cfg_path), "--weights", str(weights), "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    with av.open(str(clip)) as c:
        src = [(f.pts, f.time_base) for f in c.decode(video=0)]
    with av.open(str(out / f"{clip.stem}.mp4")) as c:
        dst = [(f.pts, f.time_base) for f in c.decode(video=0)]
    assert len(dst) == len(src)
    assert [float(p * tb) for p, tb in dst] == pytest.approx([float(p * tb) for p, tb in src], abs=1e-6)
    maps = sorted((out / f"{clip.stem}.labels").glob("*.png"))
    assert len(maps) == len(src)
    lines = (out / f"{clip.stem}.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(len(src)))
    lab = read_label_map(maps[0])
    assert lab.shape == (720, 1280) and lab.max() < 19
