"""Bottom-up inference equals the official HigherHRNet test (tools/valid.py) on a real COCO image, and its
pieces (resize, assignment, refinement search, batching) behave as the official code does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml
from scipy.optimize import linear_sum_assignment

from hrstream.models import from_config, load_weights
from hrstream.pose.bottomup import bottomup_infer, bottomup_infer_batch, get_multi_scale_size
from hrstream.pose.bottomup_group import _best_pixels, _tag_score
from hrstream.pose.munkres import munkres_pairs

DATA = Path(__file__).parent / "data"
REF = DATA / "higherhrnet_reference"


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return torch.load(REF / "official_higherhrnet_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def model(tiny: dict[str, Any]) -> torch.nn.Module:
    m = from_config(yaml.safe_load((REF / "higherhrnet_tiny.yaml").read_text()))
    load_weights(m, tiny["state_dict"])
    return m


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """The COCO image as the official dataset reads it: cv2, EXIF orientation ignored, BGR -> RGB."""
    bgr = cv2.imread(
        str(DATA / "coco" / "000000000785.jpg"), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def result(model: torch.nn.Module, image: np.ndarray) -> Any:
    return bottomup_infer(model, image, model.spec.higher.test, "cpu")


def test_official_inference_on_a_coco_image_is_reproduced(tiny: dict[str, Any], result: Any) -> None:
    people, ref = result.people, tiny["image_people"].numpy()
    assert people.shape == ref.shape == (400, 17, 5)  # x, y, score, tag, tag of the mirror image
    np.testing.assert_array_equal(
        people[..., :2], ref[..., :2].astype(np.float32)
    )  # every joint, every person
    np.testing.assert_allclose(people[..., 2:], ref[..., 2:], rtol=0, atol=1e-4)
    np.testing.assert_allclose(result.scores, tiny["image_scores"].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(result.center, tiny["center"].numpy())
    np.testing.assert_allclose(result.scale, tiny["scale"].numpy(), rtol=1e-12)
    assert list(result.heatmap_shape) == tiny["image_heatmaps_shape"][1:]
    assert result.heatmap_sum == pytest.approx(tiny["image_heatmaps_sum"], rel=1e-6)


def test_a_batch_of_frames_equals_single_frames(
    model: torch.nn.Module, image: np.ndarray, result: Any
) -> None:
    """Frames of one size run unpadded; a smaller frame beside them is padded and cut back to its region."""
    small = np.ascontiguousarray(image[:200, :300])
    batch = bottomup_infer_batch(model, [image, small, image], model.spec.higher.test, "cpu")
    single_small = bottomup_infer(model, small, model.spec.higher.test, "cpu")
    np.testing.assert_array_equal(batch[0].people, batch[2].people)
    assert batch[0].heatmap_sum == pytest.approx(result.heatmap_sum, rel=1e-5)
    # A batch runs other convolution kernels than a single image: float differences of 1e-6 may regroup a few
    # of the 400 tied people of this random-weights model (a trained one has far fewer ties).
    n = min(len(batch[0].people), len(result.people))
    same = np.isclose(batch[0].people[:n], result.people[:n], rtol=0, atol=1e-3).all(axis=(1, 2))
    assert same.mean() > 0.6 and same[:100].all()
    assert batch[1].heatmap_shape == single_small.heatmap_shape == (17, 256, 384)
    assert np.isfinite(batch[1].people).all() and len(batch[1].people) > 0
    np.testing.assert_array_equal(batch[1].center, single_small.center)


@pytest.mark.parametrize(
    "hw, scale, size, center",
    [
        ((425, 640), 1.0, (448, 256), (320, 213)),  # landscape: the short side becomes the input size
        ((640, 425), 1.0, (256, 448), (213, 320)),  # portrait
        ((480, 640), 2.0, (768, 512), (320, 240)),  # 2x of a multiple of 64 at the smallest scale
    ],
)
def test_multi_scale_size_keeps_the_aspect_at_multiples_of_64(
    hw: tuple[int, int], scale: float, size: tuple[int, int], center: tuple[int, int]
) -> None:
    got, c, s = get_multi_scale_size(hw[0], hw[1], 256, scale, 1.0)
    assert got == size and tuple(c) == center
    short = min(hw)
    assert s[int(hw[0] < hw[1])] == pytest.approx(short / 200.0)  # the short side's scale is the image's


# Tie-heavy cost matrices of the grouping (round(distance) * 100 - score) and the pairs munkres 1.1.4 returns.
MUNKRES_CASES = [
    (
        [
            [99.45, 99.45, 99.45, -0.55, -0.55],
            [99.0, -1.0, 99.0, 99.0, 99.0],
            [-0.79, -0.79, -0.79, 99.21, 99.21],
        ],
        [(0, 3), (1, 1), (2, 0)],
    ),
    (
        [
            [99.31, 199.31, -0.69, -0.69],
            [99.8, -0.2, -0.2, 99.8],
            [99.63, 99.63, 99.63, 99.63],
            [100.0, 0.0, 0.0, 0.0],
        ],
        [(0, 2), (1, 1), (2, 0), (3, 3)],
    ),
    (
        [
            [99.87, -0.13, -0.13, 99.87, 99.87, 99.87],
            [99.15, 99.15, -0.85, 99.15, 99.15, 99.15],
            [99.06, 99.06, -0.94, 99.06, 99.06, -0.94],
            [99.1, 99.1, 199.1, 99.1, 99.1, 99.1],
            [99.43, -0.57, 99.43, -0.57, 99.43, -0.57],
            [199.85, -0.15, 99.85, -0.15, 99.85, 99.85],
        ],
        [(0, 4), (1, 2), (2, 5), (3, 0), (4, 3), (5, 1)],
    ),
    (
        [
            [-0.01, 99.99, 99.99, -0.01, 99.99, 99.99, 99.99, 99.99],
            [99.37, -0.63, -0.63, 99.37, 99.37, 99.37, 99.37, 99.37],
            [-0.79, 99.21, -0.79, -0.79, 199.21, 99.21, 99.21, 99.21],
            [99.49, 99.49, 99.49, 99.49, 99.49, 99.49, 99.49, 99.49],
            [-0.73, 99.27, -0.73, 99.27, 99.27, -0.73, 99.27, 99.27],
        ],
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5)],
    ),
]


@pytest.mark.parametrize("cost, expected", MUNKRES_CASES)
def test_assignment_breaks_ties_as_munkres_does(
    cost: list[list[float]], expected: list[tuple[int, int]]
) -> None:
    pairs = munkres_pairs(np.array(cost))
    assert pairs == expected
    c = np.array(cost)
    rows, cols = linear_sum_assignment(c)
    assert sum(c[r, k] for r, k in pairs) == pytest.approx(c[rows, cols].sum())  # optimal, like scipy's


def test_scipy_would_group_differently_on_ties() -> None:
    """Why the assignment is not scipy's: on tied costs it picks another optimum than munkres."""
    differ = 0
    for cost, expected in MUNKRES_CASES:
        rows, cols = linear_sum_assignment(np.array(cost))
        differ += list(zip(rows.tolist(), cols.tolist(), strict=True)) != expected
    assert differ > 0


def test_refinement_search_equals_a_whole_map_argmax() -> None:
    gen = torch.Generator().manual_seed(0)
    for h, w, levels in ((37, 53, 4), (64, 96, 0), (16, 8, 2)):
        det = torch.randn(h, w, generator=gen) * 3
        if levels:  # few distinct values: many ties, which argmax breaks by the lowest index
            det = torch.round(det / levels)
        tag = torch.cumsum(torch.randn(h, w, 2, generator=gen) * 0.3, dim=1)
        means = torch.randn(25, 2, generator=gen) * 2
        brute = _tag_score(det.reshape(1, -1), tag.reshape(1, -1, 2), means[:, None, :]).argmax(dim=1)
        assert torch.equal(_best_pixels(det, tag, means, block=8), brute)


def test_single_scale_without_flip_and_multi_scale_run(model: torch.nn.Module, image: np.ndarray) -> None:
    from dataclasses import replace

    test = model.spec.higher.test
    plain = bottomup_infer(model, image, replace(test, flip_test=False), "cpu")
    assert plain.people.shape[1:] == (17, 4)  # one tag map: x, y, score, tag
    multi = bottomup_infer(model, image, replace(test, scale_factor=(0.5, 1.0), refine=False), "cpu")
    assert multi.people.shape[1:] == (17, 5) and multi.heatmap_shape == (17, 256, 384)
    assert (multi.scores >= 0).all() or len(multi.scores) == 0


def test_people_become_poses_best_first(result: Any) -> None:
    from hrstream.pose.bottomup import to_poses

    poses = to_poses(result, score_threshold=0.1, max_people=50)
    assert 0 < len(poses) <= 50 and poses.num_keypoints == 17
    assert (np.diff(poses.box_scores) <= 0).all() and (poses.box_scores >= 0.1).all()
    best = int(np.argmax(result.scores))
    np.testing.assert_array_equal(poses.keypoints[0], result.people[best, :, :2])
    found = poses.keypoint_scores[0] > 0
    x, y = poses.keypoints[0][found].T
    np.testing.assert_allclose(poses.boxes[0], [x.min(), y.min(), x.max(), y.max()])
    assert len(to_poses(result, score_threshold=1e9)) == 0
