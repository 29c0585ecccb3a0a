"""SegmentationEstimator against the official HRNet-Semantic-Segmentation test path."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrstream.errors import ConfigError
from hrstream.models import from_config, load_weights
from hrstream.seg import IMAGENET_MEAN, IMAGENET_STD, SegmentationEstimator, estimator_options_from_config

DATA = Path(__file__).parent / "data"
TINY = DATA / "hrnet_reference" / "official_seg_hrnet_w4_tiny.pt"
CITYSCAPES = DATA / "seg" / "cityscapes_frankfurt_000294_256x128.png"


def _stage(modules: int, branches: int, blocks: list[int], channels: list[int], block: str = "BASIC") -> dict:
    return {
        "NUM_MODULES": modules,
        "NUM_BRANCHES": branches,
        "BLOCK": block,
        "NUM_BLOCKS": blocks,
        "NUM_CHANNELS": channels,
        "FUSE_METHOD": "SUM",
    }


# The official seg_hrnet_w18 layout (module/block counts) with widths 4/8/16/32, as in the fixture.
TINY_CONFIG = {
    "MODEL": {
        "NAME": "seg_hrnet",
        "ALIGN_CORNERS": False,
        "NUM_OUTPUTS": 1,
        "EXTRA": {
            "FINAL_CONV_KERNEL": 1,
            "STAGE1": _stage(1, 1, [4], [64], "BOTTLENECK"),
            "STAGE2": _stage(1, 2, [4, 4], [4, 8]),
            "STAGE3": _stage(4, 3, [4, 4, 4], [4, 8, 16]),
            "STAGE4": _stage(3, 4, [4, 4, 4, 4], [4, 8, 16, 32]),
        },
    },
    "DATASET": {"NUM_CLASSES": 19},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, dict]:
    ref = torch.load(TINY, weights_only=True)
    model = from_config(TINY_CONFIG)
    load_weights(model, ref["state_dict"])
    return model.eval(), ref


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    bgr = cv2.imread(str(CITYSCAPES), cv2.IMREAD_COLOR)
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def official_input(image_rgb: np.ndarray) -> torch.Tensor:
    """``base_dataset.input_transform``: RGB / 255, minus mean, over std; as (1, 3, H, W)."""
    x = image_rgb.astype(np.float32) / 255.0
    x -= np.array(IMAGENET_MEAN, np.float32)
    x /= np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


def official_inference(model, x: torch.Tensor, *, flip: bool, align_corners: bool = False) -> torch.Tensor:
    """``base_dataset.inference`` (logits, before the exp): resize to the input size, flip averaged."""
    with torch.no_grad():
        pred = F.interpolate(model(x), size=x.shape[-2:], mode="bilinear", align_corners=align_corners)
        if flip:
            fl = model(torch.flip(x, dims=[3]))
            fl = F.interpolate(fl, size=x.shape[-2:], mode="bilinear", align_corners=align_corners)
            pred = (pred + torch.flip(fl, dims=[3])) * 0.5
    return pred


def official_sliding(model, x: torch.Tensor, crop_hw: tuple[int, int], *, flip: bool) -> torch.Tensor:
    """``base_dataset.multi_scale_inference`` at one scale > 1 branch: windows, stride 2/3 crop, mean."""
    _, _, h, w = x.shape
    ch, cw = crop_hw
    sh, sw = int(ch * 2.0 / 3.0), int(cw * 2.0 / 3.0)
    rows = max(math.ceil((h - ch) / sh), 0) + 1
    cols = max(math.ceil((w - cw) / sw), 0) + 1
    preds = None
    count = torch.zeros(1, 1, h, w)
    for r in range(rows):
        for c in range(cols):
            h1, w1 = min(r * sh + ch, h), min(c * sw + cw, w)
            h0, w0 = max(h1 - ch, 0), max(w1 - cw, 0)
            p = official_inference(model, x[:, :, h0:h1, w0:w1], flip=flip)
            if preds is None:
                preds = torch.zeros(1, p.shape[1], h, w)
            preds[:, :, h0:h1, w0:w1] += p
            count[:, :, h0:h1, w0:w1] += 1
    return preds / count


class StrideFourNet(nn.Module):
    """A small real convnet with the HRNet seg output contract: (N,3,h,w) -> (N,C,ceil(h/4),ceil(w/4))."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, num_classes, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_tiny_model_reproduces_official_output(tiny):
    model, ref = tiny
    with torch.no_grad():
        out = model(ref["input"])
    err = (out - ref["output"]).norm() / ref["output"].norm()
    assert err < 1e-5


def test_predict_equals_official_pipeline_on_cityscapes(tiny, frame):
    model, ref = tiny
    h, w = frame.shape[:2]
    with torch.no_grad():
        logits = model(official_input(frame))
        up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=bool(ref["align_corners"]))
    expected = up.argmax(dim=1)[0].numpy().astype(np.uint8)
    assert len(np.unique(expected)) > 1  # the random model separates several classes on this frame

    est = SegmentationEstimator(
        model, num_classes=int(ref["num_classes"]), align_corners=bool(ref["align_corners"])
    )
    (labels,) = est.predict([frame])
    assert labels.dtype == np.uint8 and labels.shape == (h, w)
    np.testing.assert_array_equal(labels, expected)

    probs = est.predict_probs([frame])[0]
    assert probs.shape == (19, h, w) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(0), torch.ones(h, w))
    torch.testing.assert_close(probs, torch.softmax(up[0], dim=0), rtol=1e-5, atol=1e-6)


def test_batched_frames_match_single_frame_calls(tiny, frame):
    model, _ = tiny
    est = SegmentationEstimator(model, num_classes=19, max_batch=2)
    mirrored = np.ascontiguousarray(frame[:, ::-1])
    small = np.ascontiguousarray(frame[:96, :160])
    batch = est.predict_logits([frame, mirrored, small, frame])
    singles = [est.predict_logits([img])[0] for img in (frame, mirrored, small)]
    for got, want in zip(batch, [*singles, singles[0]], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    calls = []
    counting = SegmentationEstimator(lambda x: calls.append(len(x)) or model(x), num_classes=19, max_batch=2)
    counting.predict([frame, mirrored, small, frame])
    assert sorted(calls) == [1, 1, 2]  # three 128x256 frames in 2 + 1, the 96x160 frame alone


def test_flip_matches_official_flip_test(tiny, frame):
    model, _ = tiny
    want = official_inference(model, official_input(frame), flip=True)[0]
    got = SegmentationEstimator(model, num_classes=19, flip=True).predict_logits([frame])[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_sliding_windows_match_official_multi_scale_inference(frame):
    model = StrideFourNet().eval()
    want = official_sliding(model, official_input(frame), (64, 96), flip=True)[0]
    est = SegmentationEstimator(model, num_classes=5, window=(96, 64), overlap=1 / 3, flip=True, max_batch=3)
    got = est.predict_logits([frame])[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # A window at least as large as the frame is the whole-frame path.
    whole = SegmentationEstimator(model, num_classes=5, window=(256, 128)).predict_logits([frame])[0]
    torch.testing.assert_close(whole, official_inference(model, official_input(frame), flip=False)[0])


def test_test_size_and_scales_resize_then_return_frame_resolution(frame):
    model = StrideFourNet().eval()
    seen = []
    est = SegmentationEstimator(
        lambda x: seen.append(tuple(x.shape[-2:])) or model(x),
        num_classes=5,
        test_size=(128, 128),
        scales=(0.5, 1.0),
    )
    (labels,) = est.predict([frame])
    assert labels.shape == frame.shape[:2]
    assert seen == [(32, 64), (64, 128)]  # 256x128 fitted inside 128x128 keeps 2:1, then x0.5 and x1
    # Reference: each scale resized like cv2.resize INTER_LINEAR, logits to the frame size, averaged.
    x = official_input(frame)
    total = torch.zeros(5, *frame.shape[:2])
    for size in seen:
        xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            total += F.interpolate(model(xs), size=frame.shape[:2], mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(est.predict_logits([frame])[0], total / 2, rtol=1e-4, atol=1e-4)
    stretched = SegmentationEstimator(model, num_classes=5, test_size=(100, 100), keep_aspect=False)
    assert stretched.input_size(256, 128) == (100, 100)


def test_wrong_class_count_and_bad_inputs_raise(frame):
    model = StrideFourNet(num_classes=5).eval()
    with pytest.raises(ConfigError, match="num_classes"):
        SegmentationEstimator(model, num_classes=19).predict([frame])
    with pytest.raises(ValueError, match="uint8"):
        SegmentationEstimator(model, num_classes=5).predict([frame.astype(np.float32)])
    with pytest.raises(ConfigError, match="overlap"):
        SegmentationEstimator(model, num_classes=5, overlap=1.0)
    assert SegmentationEstimator(model, num_classes=5).predict([]) == []


def test_options_from_official_config():
    cfg = {**TINY_CONFIG, "TEST": {"FLIP_TEST": True, "MULTI_SCALE": True, "SCALE_LIST": [0.75, 1, 1.25]}}
    opts = estimator_options_from_config(cfg)
    assert opts == {
        "num_classes": 19,
        "align_corners": False,
        "flip": True,
        "output_index": -1,
        "scales": (0.75, 1.0, 1.25),
    }
    assert estimator_options_from_config({"DATASET": {"NUM_CLASSES": 20}})["align_corners"] is True
    with pytest.raises(ConfigError, match="NUM_CLASSES"):
        estimator_options_from_config({"MODEL": {}})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(frame):
    model = StrideFourNet().eval()
    want = SegmentationEstimator(model, num_classes=5, flip=True, window=(96, 64)).predict_probs([frame])[0]
    gpu = SegmentationEstimator(model.cuda(), num_classes=5, flip=True, window=(96, 64), device="cuda")
    probs = gpu.predict_probs([frame, frame])
    assert probs[0].device.type == "cuda"
    torch.testing.assert_close(probs[1].cpu(), want, rtol=1e-2, atol=2e-3)  # TF32 convolutions on the GPU
