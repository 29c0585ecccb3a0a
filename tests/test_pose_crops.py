"""Crops against the official HRNet outputs (center/scale, affine, cv2.warpAffine crops)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hrstream.pose import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    box_to_center_scale,
    crop_batch,
    crop_cpu,
    get_affine_transform,
    get_udp_warp_matrix,
)

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "hrnet_reference" / "official_crops_256x192.npz"


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    bgr = cv2.imread(str(DATA / "coco" / "000000000785.jpg"), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _aspect(ref: dict[str, np.ndarray]) -> float:
    w, h = ref["output_wh"].tolist()
    return w / h


def test_center_scale_match_official(ref):
    center, scale = box_to_center_scale(ref["boxes_xywh"], aspect_ratio=_aspect(ref))
    assert center.dtype == np.float32 and scale.dtype == np.float32
    np.testing.assert_allclose(center, ref["center"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(scale, ref["scale"], rtol=0, atol=1e-6)


def test_center_scale_xyxy_equals_xywh(ref):
    xywh = ref["boxes_xywh"].astype(np.float64)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    c1, s1 = box_to_center_scale(xywh, aspect_ratio=_aspect(ref))
    c2, s2 = box_to_center_scale(xyxy, aspect_ratio=_aspect(ref), box_format="xyxy")
    np.testing.assert_allclose(c1, c2, atol=1e-4)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    # Every scale has the model's aspect ratio after the fix.
    np.testing.assert_allclose(s1[:, 0] / s1[:, 1], _aspect(ref), rtol=1e-5)


def test_affine_matches_official(ref):
    for i in range(len(ref["center"])):
        trans = get_affine_transform(ref["center"][i], ref["scale"][i], 0, ref["output_wh"])
        np.testing.assert_allclose(trans, ref["affine"][i], rtol=0, atol=1e-9)
        inv = get_affine_transform(ref["center"][i], ref["scale"][i], 0, ref["output_wh"], inv=True)
        both = np.vstack([trans, [0, 0, 1]]) @ np.vstack([inv, [0, 0, 1]])
        np.testing.assert_allclose(both, np.eye(3), atol=1e-9)


def test_crop_cpu_matches_official(ref, image):
    for i in range(len(ref["center"])):
        crop = crop_cpu(image, ref["center"][i], ref["scale"][i], ref["output_wh"])
        assert crop.shape == ref["crops"][i].shape and crop.dtype == np.uint8
        diff = np.abs(crop.astype(np.float64) - ref["crops"][i])
        assert diff.mean() < 1.0


@pytest.mark.parametrize("as_list", [False, True])
def test_crop_batch_matches_official(ref, image, as_list):
    t = torch.from_numpy(image).permute(2, 0, 1)
    images = [t] if as_list else t[None]
    n = len(ref["center"])
    out = crop_batch(images, np.zeros(n, np.int64), ref["center"], ref["scale"], ref["output_wh"])
    w, h = ref["output_wh"].tolist()
    assert out.shape == (n, 3, h, w) and out.dtype == torch.float32
    mean = np.array(IMAGENET_MEAN)[:, None, None]
    std = np.array(IMAGENET_STD)[:, None, None]
    pixels = (out.numpy() * std + mean) * 255.0
    for i in range(n):
        diff = np.abs(pixels[i].transpose(1, 2, 0) - ref["crops"][i])
        # The fixture is rounded to uint8, so the float crop sits within half a grey level of it.
        assert diff.mean() < 1.0
        assert diff.max() < 1.0


def test_crop_batch_several_frames_and_sizes(image):
    small = np.ascontiguousarray(image[:200, :300])
    frames = [torch.from_numpy(small).permute(2, 0, 1), torch.from_numpy(image).permute(2, 0, 1)]
    center = np.array([[150.0, 100.0], [320.0, 200.0], [100.0, 80.0]], np.float32)
    scale = np.array([[0.6, 0.8], [1.2, 1.6], [0.3, 0.4]], np.float32)
    frame_idx = np.array([0, 1, 0])
    out = crop_batch(frames, frame_idx, center, scale, (48, 64), mean=(0, 0, 0), std=(1 / 255,) * 3)
    for i, f in enumerate(frame_idx):
        src = small if f == 0 else image
        ref_crop = crop_cpu(src, center[i], scale[i], (48, 64)).astype(np.float64)
        diff = np.abs(out[i].permute(1, 2, 0).numpy() - ref_crop)
        assert diff.mean() < 1.0


def test_udp_affine_maps_region_onto_crop_corners():
    center, scale, size = np.array([100.0, 50.0]), np.array([0.96, 1.28]), (192, 256)
    m = get_udp_warp_matrix(center, scale, 0.0, size)
    half = scale * 200 / 2
    tl = m @ np.array([center[0] - half[0], center[1] - half[1], 1.0])
    br = m @ np.array([center[0] + half[0], center[1] + half[1], 1.0])
    np.testing.assert_allclose(tl, [0, 0], atol=1e-9)
    np.testing.assert_allclose(br, [size[0] - 1, size[1] - 1], atol=1e-9)
    inv = get_udp_warp_matrix(center, scale, 0.0, size, inv=True)
    np.testing.assert_allclose(inv @ np.array([*br, 1.0]), center + half, atol=1e-9)


def test_udp_crop_batch_matches_udp_crop_cpu(image):
    center = np.array([[330.0, 200.0]], np.float32)
    scale = np.array([[1.2, 1.6]], np.float32)
    out = crop_batch(
        torch.from_numpy(image).permute(2, 0, 1)[None],
        [0],
        center,
        scale,
        (192, 256),
        mean=(0, 0, 0),
        std=(1 / 255,) * 3,
        udp=True,
    )
    ref_crop = crop_cpu(image, center[0], scale[0], (192, 256), udp=True).astype(np.float64)
    std_crop = crop_cpu(image, center[0], scale[0], (192, 256)).astype(np.float64)
    got = out[0].permute(1, 2, 0).numpy()
    assert np.abs(got - ref_crop).mean() < 1.0
    # The UDP crop is a different sampling from the official one.
    assert np.abs(got - std_crop).mean() > 1.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_crop_batch_on_cuda_matches_official(ref, image):
    t = torch.from_numpy(image).permute(2, 0, 1)[None].cuda()
    n = len(ref["center"])
    out = crop_batch(
        t,
        np.zeros(n, np.int64),
        ref["center"],
        ref["scale"],
        ref["output_wh"],
        mean=(0, 0, 0),
        std=(1 / 255,) * 3,
    )
    assert out.device.type == "cuda"
    diff = np.abs(out.permute(0, 2, 3, 1).cpu().numpy() - ref["crops"])
    assert diff.mean() < 1.0


def test_bad_inputs_are_named(ref, image):
    with pytest.raises(ValueError, match="box_format must be 'xywh' or 'xyxy', got 'cxcywh'"):
        box_to_center_scale(ref["boxes_xywh"], aspect_ratio=0.75, box_format="cxcywh")  # type: ignore[arg-type]
    hwc = torch.from_numpy(image)[None]  # (1, H, W, 3): channels last, not what crop_batch takes
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\), got \(1, 425, 640, 3\)"):
        crop_batch(hwc, [0], ref["center"][:1], ref["scale"][:1], (192, 256))
    with pytest.raises(ValueError, match="list of"):
        crop_batch([torch.from_numpy(image)], [0], ref["center"][:1], ref["scale"][:1], (192, 256))


def test_crop_batch_without_boxes_or_images_is_empty():
    none = np.zeros((0, 2), np.float32)
    out = crop_batch([], [], none, none, (192, 256))
    assert out.shape == (0, 3, 256, 192) and out.dtype == torch.float32 and out.device.type == "cpu"


@pytest.mark.parametrize("rot", [30.0, 90.0, -45.0])
def test_affine_rotation_turns_the_region_counter_clockwise(rot):
    """Training rotates crops: the region's centre goes to the crop centre, and the point half a region width
    from it in the direction (sin rot, -cos rot) (up, turned by ``rot``) goes to the middle of the crop's
    top half-width above the centre, as the official ``get_dir`` turns ``(0, -w/2)``."""
    center, scale, size = np.array([300.0, 200.0]), np.array([1.2, 1.6]), (192, 256)
    t = get_affine_transform(center, scale, rot, size)
    half = 1.2 * 200 / 2
    a = np.deg2rad(rot)
    up = center + half * np.array([np.sin(a), -np.cos(a)])
    mapped = t @ np.array([[*center, 1.0], [*up, 1.0]]).T
    np.testing.assert_allclose(mapped.T, [[96.0, 128.0], [96.0, 128.0 - 96.0]], atol=1e-3)
