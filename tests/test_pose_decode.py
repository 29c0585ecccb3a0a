"""Heatmap decoding and flip test against the official outputs; the top-down estimator end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hrstream.pose import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TopDownEstimator,
    decode_heatmaps,
    flip_back,
    flip_test_merge,
    oks_iou,
    oks_nms,
)
from hrstream.types import Poses

FIXTURE = Path(__file__).parent / "data" / "hrnet_reference" / "official_decode_64x48.npz"


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_msra_matches_official(ref, kind):
    hm = ref["heatmaps"] if kind == "numpy" else torch.from_numpy(ref["heatmaps"])
    coords, scores = decode_heatmaps(hm, ref["center"], ref["scale"], "msra")
    if kind == "torch":
        assert isinstance(coords, torch.Tensor) and isinstance(scores, torch.Tensor)
        coords, scores = coords.numpy(), scores.numpy()
    assert coords.shape == ref["preds"].shape and coords.dtype == np.float32
    assert scores.shape == ref["maxvals"].shape
    np.testing.assert_array_equal(scores, ref["maxvals"])
    positive = ref["maxvals"][..., 0] > 0
    assert not positive.all()  # the fixture has a joint without response
    err = np.abs(coords - ref["preds"])
    assert err[positive].max() < 1e-4
    # A joint without positive response: the heatmap origin mapped into the image, as the official code.
    assert err[~positive].max() < 1e-3


def test_msra_without_post_process_is_integer_argmax(ref):
    coords, _ = decode_heatmaps(ref["heatmaps"], ref["center"], ref["scale"], post_process=False)
    coords_t, _ = decode_heatmaps(
        torch.from_numpy(ref["heatmaps"]), ref["center"], ref["scale"], post_process=False
    )
    np.testing.assert_allclose(coords_t.numpy(), coords, atol=1e-4)
    # Differs from the official post-processed output by quarter-pixel heatmap steps, never more.
    step = ref["scale"][:, 0] * 200 / ref["heatmaps"].shape[3]
    diff = np.abs(coords - ref["preds"]) / step[:, None, None]
    assert diff.max() <= 0.25 + 1e-3 and diff.max() > 0.2


def test_flip_back_matches_official(ref):
    np.testing.assert_array_equal(flip_back(ref["heatmaps"], ref["flip_pairs"]), ref["flip_back"])
    got = flip_back(torch.from_numpy(ref["heatmaps"]), ref["flip_pairs"])
    np.testing.assert_array_equal(got.numpy(), ref["flip_back"])


@pytest.mark.parametrize("shift", [True, False])
def test_flip_test_merge_official_shift(ref, shift):
    hm, flipped = ref["heatmaps"][:3], ref["heatmaps"][3:]
    back = ref["flip_back"][3:].copy()
    if shift:
        back[:, :, :, 1:] = back.copy()[:, :, :, 0:-1]
    expected = (hm + back) * 0.5
    np.testing.assert_allclose(flip_test_merge(hm, flipped, ref["flip_pairs"], shift=shift), expected, atol=0)
    got_t = flip_test_merge(torch.from_numpy(hm), torch.from_numpy(flipped), ref["flip_pairs"], shift=shift)
    np.testing.assert_allclose(got_t.numpy(), expected, atol=1e-7)


def _gaussian_maps(centers: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = [np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in centers.reshape(-1, 2)]
    return np.asarray(maps, np.float32).reshape(*centers.shape[:-1], h, w)


@pytest.mark.parametrize("method", ["dark", "udp"])
def test_subpixel_decoders_recover_gaussian_peaks(method):
    h, w = 64, 48
    rng = np.random.default_rng(0)
    true = rng.uniform([8, 8], [w - 8, h - 8], size=(2, 5, 2))
    hm = _gaussian_maps(true, h, w, sigma=2.0)
    if method == "udp":  # identity transform: [c - S/2, c + S/2] -> [0, size - 1]
        center = np.tile([(w - 1) / 2, (h - 1) / 2], (2, 1))
        scale = np.tile([(w - 1) / 200, (h - 1) / 200], (2, 1))
    else:  # identity for the official transform
        center = np.tile([w / 2, h / 2], (2, 1))
        scale = np.tile([w / 200, h / 200], (2, 1))
    coords, scores = decode_heatmaps(hm, center, scale, method)
    msra, _ = decode_heatmaps(hm, np.tile([w / 2, h / 2], (2, 1)), np.tile([w / 200, h / 200], (2, 1)))
    assert np.abs(coords - true).max() < 0.05
    assert np.abs(msra - true).max() > 0.1  # the subpixel step is what makes the difference
    np.testing.assert_allclose(scores[..., 0], hm.reshape(2, 5, -1).max(2))
    coords_t, _ = decode_heatmaps(torch.from_numpy(hm), torch.tensor(center), torch.tensor(scale), method)
    np.testing.assert_allclose(coords_t.numpy(), coords, atol=2e-3)


@pytest.mark.parametrize("method", ["dark", "udp"])
def test_subpixel_decoders_stay_finite_on_a_negative_background(method):
    """Networks output slightly negative heatmaps away from a joint; a sharp peak over such a background leaves
    no positive value around it after the blur, and the log of the blurred map (clipped as the official code
    clips it) must still give the peak, not NaN."""
    h, w = 64, 48
    true = np.array([[[20.3, 30.6], [10.7, 12.2]]])
    hm = _gaussian_maps(true, h, w, sigma=0.8) - 0.3
    center, scale = _identity(method, h, w, 1)
    for maps in (hm, torch.from_numpy(hm)):
        coords, _ = decode_heatmaps(maps, center, scale, method)
        coords = np.asarray(coords)
        assert np.isfinite(coords).all()
        assert np.abs(coords - true).max() < 1.0


def _identity(method: str, h: int, w: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``center``, ``scale`` that map heatmap pixels onto themselves for ``method``'s inverse transform."""
    if method == "udp":  # [c - S/2, c + S/2] -> [0, size - 1]
        return np.tile([(w - 1) / 2, (h - 1) / 2], (n, 1)), np.tile([(w - 1) / 200, (h - 1) / 200], (n, 1))
    return np.tile([w / 2, h / 2], (n, 1)), np.tile([w / 200, h / 200], (n, 1))


@pytest.mark.parametrize("method", ["dark", "udp"])
def test_subpixel_decoders_torch_agree_on_official_maps(ref, method):
    a, sa = decode_heatmaps(ref["heatmaps"], ref["center"], ref["scale"], method)
    b, sb = decode_heatmaps(torch.from_numpy(ref["heatmaps"]), ref["center"], ref["scale"], method)
    positive = ref["maxvals"][..., 0] > 0
    assert np.abs(a - b.numpy())[positive].max() < 1e-3
    np.testing.assert_array_equal(sa, sb.numpy())


def test_decode_rejects_unknown_method(ref):
    with pytest.raises(ValueError, match="msra"):
        decode_heatmaps(ref["heatmaps"], ref["center"], ref["scale"], "argmax")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- top-down estimator


def _blob_image(h: int, w: int, centers: list[tuple[float, float]], sigma: float = 8.0) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    v = np.zeros((h, w))
    for x, y in centers:
        v = np.maximum(v, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)))
    img = np.round(v * 255).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2)


class BlobModel:
    """A stand-in network: heatmap pixel (u, v) is the crop's brightness at crop pixel (4u, 4v), which
    is the official heatmap/crop correspondence, for all 17 joints. With ``udp`` it samples at
    ``u * (w_in - 1) / (w_hm - 1)``, the UDP correspondence."""

    def __init__(self, udp: bool = False) -> None:
        self.batches: list[int] = []
        self.udp = udp

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        pixels = (x * std + mean)[:, :1]
        if self.udp:
            size = (x.shape[2] // 4, x.shape[3] // 4)
            pixels = torch.nn.functional.interpolate(pixels, size=size, mode="bilinear", align_corners=True)
        else:
            pixels = pixels[:, :, ::4, ::4]
        return pixels.repeat(1, 17, 1, 1)


FRAMES = [
    ([(250.4, 180.7), (480.2, 300.9)], np.array([[150, 60, 350, 320], [400, 200, 560, 420]], np.float32)),
    ([], np.zeros((0, 4), np.float32)),
    ([(100.6, 90.3)], np.array([[40, 20, 170, 170]], np.float32)),
]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [_blob_image(480, 640, c) for c, _ in FRAMES]


@pytest.mark.parametrize(("decoder", "tol"), [("msra", 3.0), ("dark", 0.6), ("udp", 0.6)])
def test_estimator_finds_blobs_in_one_batch(frames, decoder, tol):
    model = BlobModel(udp=decoder == "udp")
    est = TopDownEstimator(model, input_size=(192, 256), heatmap_size=(48, 64), decoder=decoder)
    boxes = [b for _, b in FRAMES]
    scores = [np.linspace(0.9, 0.8, len(b)).astype(np.float32) for b in boxes]
    out = est.estimate(frames, boxes, scores)
    assert model.batches == [3]  # every person of every frame in one call
    assert [len(p) for p in out] == [2, 0, 1]
    for (centers, b), poses, s in zip(FRAMES, out, scores, strict=True):
        assert isinstance(poses, Poses) and poses.keypoints.shape == (len(b), 17, 2)
        np.testing.assert_array_equal(poses.boxes, b)
        np.testing.assert_array_equal(poses.box_scores, s)
        for i, (x, y) in enumerate(centers):
            err = np.abs(poses.keypoints[i] - np.array([x, y], np.float32)).max()
            assert err < tol, (decoder, err)
            assert poses.keypoint_scores[i].min() > 0.9


def test_estimator_chunks_and_flip_test(frames):
    boxes = [b for _, b in FRAMES]
    whole = TopDownEstimator(BlobModel()).estimate(frames, boxes, None)
    model = BlobModel()
    chunked = TopDownEstimator(model, max_batch=2).estimate(frames, boxes, None)
    assert model.batches == [2, 1]
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    model = BlobModel()
    flipped = TopDownEstimator(model, flip_test=True).estimate(frames, boxes, None)
    assert model.batches == [6]  # flipped crops appended to the same batch
    for (centers, _), poses in zip(FRAMES, flipped, strict=True):
        for i, (x, y) in enumerate(centers):
            assert np.abs(poses.keypoints[i] - np.array([x, y])).max() < 4.0


def test_estimator_no_people(frames):
    model = BlobModel()
    out = TopDownEstimator(model).estimate(frames[:2], [np.zeros((0, 4))] * 2, None)
    assert model.batches == [] and [len(p) for p in out] == [0, 0]
    assert out[0].keypoints.shape == (0, 17, 2)


def test_oks_nms_drops_duplicates():
    rng = np.random.default_rng(1)
    kp = rng.uniform(100, 200, size=(17, 2))
    keypoints = np.stack([kp, kp + 0.5, kp + 60.0])
    poses = Poses(
        boxes=np.array([[100, 100, 200, 200], [100, 100, 200, 200], [160, 160, 260, 260]], np.float32),
        box_scores=np.array([0.8, 0.9, 0.7], np.float32),
        keypoints=keypoints,
        keypoint_scores=np.full((3, 17), 0.9, np.float32),
    )
    kept = oks_nms(poses, 0.9)
    # The near-duplicate with the lower score goes; the distant person stays.
    np.testing.assert_array_equal(kept.box_scores, np.array([0.9, 0.7], np.float32))
    np.testing.assert_array_equal(kept.keypoints, keypoints[1:].astype(np.float32))
    assert len(oks_nms(poses, 1.0)) == 3
    # OKS of a person with itself is 1, and it falls with distance.
    g = np.concatenate([kp, np.ones((17, 1))], 1)
    d = np.stack([g, g + [3.0, 0.0, 0.0], g + [30.0, 0.0, 0.0]])
    ious = oks_iou(g, d, 1e4, np.full(3, 1e4))
    assert ious[0] == pytest.approx(1.0) and 1.0 > ious[1] > ious[2] > 0.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_paths_match_official(ref):
    hm = torch.from_numpy(ref["heatmaps"]).cuda()
    coords, scores = decode_heatmaps(hm, ref["center"], ref["scale"])
    assert coords.device.type == "cuda"
    positive = ref["maxvals"][..., 0] > 0
    assert np.abs(coords.cpu().numpy() - ref["preds"])[positive].max() < 1e-4
    merged = flip_test_merge(hm, hm.flip(0), ref["flip_pairs"])
    expected = flip_test_merge(ref["heatmaps"], ref["heatmaps"][::-1], ref["flip_pairs"])
    np.testing.assert_allclose(merged.cpu().numpy(), expected, atol=1e-6)
    for method in ("dark", "udp"):
        a, _ = decode_heatmaps(ref["heatmaps"], ref["center"], ref["scale"], method)
        b, _ = decode_heatmaps(hm, ref["center"], ref["scale"], method)
        assert np.abs(a - b.cpu().numpy())[positive].max() < 1e-3


def test_estimator_flip_test_equals_the_official_flip_test():
    """The estimator with the flip test on a real image: the official test path (crops, the official network on
    the crops and their mirror images, ``flip_back``, the one-pixel ``SHIFT_HEATMAP``, ``get_final_preds``),
    made by ``tests/support/make_flip_reference.py`` from the official code."""
    import cv2

    from hrstream.models import from_config, load_weights

    data = Path(__file__).parent / "data"
    ref = np.load(data / "hrnet_reference" / "official_flip_test_256x192.npz")
    crops = np.load(data / "hrnet_reference" / "official_crops_256x192.npz")
    tiny = torch.load(data / "hrnet_reference" / "official_pose_hrnet_w4_tiny.pt", weights_only=True)
    model = from_config(
        {
            "MODEL": {
                "NAME": "pose_hrnet",
                "NUM_JOINTS": 17,
                "IMAGE_SIZE": [192, 256],
                "HEATMAP_SIZE": [48, 64],
                "EXTRA": tiny["config"]["MODEL"]["EXTRA"],
            }
        }
    )
    load_weights(model, tiny["state_dict"])
    model.eval()
    image = cv2.cvtColor(cv2.imread(str(data / "coco" / "000000000785.jpg")), cv2.COLOR_BGR2RGB)
    x, y, w, h = crops["boxes_xywh"].T
    boxes = np.stack([x, y, x + w, y + h], 1)
    # the shift matters on this input: without it a third of the joints land elsewhere
    moved = np.abs(ref["preds"] - ref["preds_no_shift"]).max(-1)
    assert (moved > 1.0).sum() >= 10
    est = TopDownEstimator(model, input_size=(192, 256), heatmap_size=(48, 64), flip_test=True)
    with torch.no_grad():
        (poses,) = est.estimate([image], [boxes])
    np.testing.assert_allclose(poses.keypoints, ref["preds"], atol=2e-3)
    np.testing.assert_allclose(poses.keypoint_scores, ref["maxvals"][..., 0], atol=1e-5)
    no_shift = TopDownEstimator(model, input_size=(192, 256), flip_test=True, shift_heatmap=False)
    with torch.no_grad():
        (poses,) = no_shift.estimate([image], [boxes])
    np.testing.assert_allclose(poses.keypoints, ref["preds_no_shift"], atol=2e-3)
