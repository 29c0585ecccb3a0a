"""Person detectors: full frame, COCO detections files, torchvision models and their offline error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from support.servers import downloads_refused

from hrstream.errors import ConfigError, InputError, WeightsUnavailableError
from hrstream.pose import FileSelection, TorchvisionDetector, make_detector
from hrstream.pose.detectors import mirror_boxes, torch_cache_path
from hrstream.types import Frame

COCO = Path(__file__).parent / "data" / "coco"


def _frames(n: int, h: int = 120, w: int = 160, source: str = "s") -> list[Frame]:
    return [Frame(source, i, i / 25, np.zeros((h, w, 3), np.uint8)) for i in range(n)]


@pytest.fixture()
def det_file(tmp_path: Path) -> tuple[Path, list[dict]]:
    """The COCO detections with image ids remapped to frame indices 0..3, plus a non-person entry."""
    dets = json.loads((COCO / "test_coco_det_AP_H_56.json").read_text())
    ids = sorted({d["image_id"] for d in dets})
    remapped = [{**d, "image_id": ids.index(d["image_id"])} for d in dets]
    remapped.append({"image_id": 0, "category_id": 2, "bbox": [1, 2, 30, 40], "score": 0.99})
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(remapped))
    return path, remapped


def test_full_frame():
    frames = _frames(2, 90, 70)
    out = make_detector("full-frame").detect(frames)
    assert len(out) == 2
    boxes, scores = out[0].boxes, out[0].scores
    np.testing.assert_array_equal(boxes, [[0, 0, 70, 90]])
    np.testing.assert_array_equal(scores, [1.0])


@pytest.mark.parametrize("score_thr", [0.0, 0.5, 0.9])
def test_file_detector_thresholds(det_file, score_thr):
    path, raw = det_file
    det = make_detector(f"file:{path}", score_thr=score_thr, nms_iou=None)
    out = det.detect(_frames(5))
    assert len(out) == 5
    for idx, det in enumerate(out):
        boxes, scores = det.boxes, det.scores
        mine = [d for d in raw if d["image_id"] == idx and d["category_id"] == 1 and d["score"] >= score_thr]
        mine.sort(key=lambda d: -d["score"])
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)], np.float32)
        assert boxes.shape == (len(mine), 4) and scores.shape == (len(mine),)
        np.testing.assert_allclose(boxes, expected.reshape(-1, 4), rtol=1e-6)
        np.testing.assert_allclose(scores, [d["score"] for d in mine], rtol=1e-6)
    assert len(out[4]) == 0  # no detections for that frame
    if score_thr == 0.0:
        assert sum(len(d) for d in out) == sum(d["category_id"] == 1 for d in raw)


def test_file_detector_nms_and_max_people(det_file):
    path, raw = det_file
    out = make_detector(f"file:{path}", score_thr=0.0, nms_iou=0.5).detect(_frames(4))
    capped = make_detector(f"file:{path}", score_thr=0.0, nms_iou=0.5, max_people=2).detect(_frames(4))
    total_suppressed = 0
    for idx, det in enumerate(out):
        boxes, scores = det.boxes, det.scores
        mine = [d for d in raw if d["image_id"] == idx and d["category_id"] == 1]
        b = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)], dtype=torch.float32
        )
        s = torch.tensor([d["score"] for d in mine], dtype=torch.float32)
        keep = torchvision.ops.nms(b, s, 0.5)
        np.testing.assert_allclose(boxes, b[keep].numpy())
        assert np.all(np.diff(scores) <= 0)
        total_suppressed += len(mine) - len(keep)
        np.testing.assert_array_equal(capped[idx].boxes, boxes[:2])
    assert total_suppressed > 0  # the file has overlapping boxes, so NMS did something


def test_offline_weights_error(tmp_path, monkeypatch):
    downloads_refused(monkeypatch)  # the download fails on any machine, with a network or without
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path))
    url = torchvision.models.detection.SSDLite320_MobileNet_V3_Large_Weights.DEFAULT.url
    expected_path = tmp_path / "torch" / "hub" / "checkpoints" / Path(url).name
    assert torch_cache_path(url) == expected_path
    with pytest.raises(WeightsUnavailableError) as info:
        make_detector("fast", download_timeout_s=10)
    msg = str(info.value)
    assert "\n" not in msg
    assert "'fast'" in msg and url in msg and str(expected_path) in msg
    assert "full-frame" in msg and "file:" in msg
    assert info.value.exit_code == 2
    assert not expected_path.exists()


def test_torchvision_detector_runs_a_real_model():
    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=2
    )  # background and person (label 1): random weights then find people, which 91 classes rarely do
    det = TorchvisionDetector(model, score_thr=0.0, nms_iou=0.5, max_people=3)
    rng = np.random.default_rng(0)
    frames = [Frame("s", i, None, rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for i in range(2)]
    out = det.detect(frames)
    assert len(out) == 2 and all(len(d) > 0 for d in out)  # score_thr 0: something is found
    for boxes, scores in ((d.boxes, d.scores) for d in out):
        assert boxes.dtype == np.float32 and boxes.shape[1] == 4 and len(boxes) <= 3
        assert len(scores) == len(boxes) and np.all(np.diff(scores) <= 0)
        assert np.all(boxes[:, 2] >= boxes[:, 0]) and boxes[:, 2].max() <= 160 + 1e-3


def test_bad_specs(tmp_path):
    with pytest.raises(ConfigError, match="full-frame"):
        make_detector("yolo")
    with pytest.raises(InputError, match="missing.json"):
        make_detector(f"file:{tmp_path / 'missing.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 0, "score": 0.5}]))
    with pytest.raises(InputError, match="entry 0"):
        make_detector(f"file:{bad}")


def test_fuse_flipped_pairs_the_views_one_to_one_and_halves_lone_boxes():
    from hrstream.pose import fuse_flipped

    a = torch.tensor([[10.0, 20.0, 50.0, 100.0], [200.0, 20.0, 240.0, 100.0]])
    sa = torch.tensor([0.8, 0.6])
    b = torch.tensor([[12.0, 22.0, 52.0, 102.0]])  # the first person again, 2 px off; the second unseen
    sb = torch.tensor([0.4])
    boxes, scores = fuse_flipped(a, sa, b, sb, iou_thr=0.6)
    assert boxes.shape == (2, 4) and scores.tolist() == pytest.approx([0.6, 0.3])
    # score-weighted mean of the two views' boxes: (0.8 * a + 0.4 * b) / 1.2
    assert boxes[0].tolist() == pytest.approx([10 + 2 / 3, 20 + 2 / 3, 50 + 2 / 3, 100 + 2 / 3])
    assert boxes[1].tolist() == pytest.approx(a[1].tolist())
    # two people who overlap (IoU 0.74), seen in both views: two boxes, each fused with its own partner
    p, q = torch.tensor([10.0, 20.0, 50.0, 100.0]), torch.tensor([16.0, 20.0, 56.0, 100.0])
    shift = torch.tensor([1.0, 0.0, 1.0, 0.0])
    boxes2, scores2 = fuse_flipped(
        torch.stack([p, q]),
        torch.tensor([0.9, 0.5]),
        torch.stack([q + shift, p + shift]),
        torch.tensor([0.7, 0.9]),
        iou_thr=0.6,
    )
    assert scores2.tolist() == pytest.approx([0.9, 0.6])
    assert boxes2[0].tolist() == pytest.approx((p + shift / 2).tolist())
    assert boxes2[1].tolist() == pytest.approx((q + shift * 0.7 / 1.2).tolist())
    dot = torch.tensor([[5.0, 5.0, 5.0, 5.0]])  # an empty box in both views is not a pair (IoU 0 / 0)
    lone, halves = fuse_flipped(dot, torch.tensor([0.8]), dot, torch.tensor([0.6]), iou_thr=0.6)
    assert len(lone) == 2 and halves.tolist() == pytest.approx([0.4, 0.3])
    empty, none = fuse_flipped(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 4), torch.zeros(0))
    assert empty.shape == (0, 4) and none.shape == (0,)


def test_flip_test_detector_sees_a_mirrored_frame_as_the_mirror_image():
    """The shipped synthetic detector with flip_test on a generated frame and on its mirror image: the two
    fused sets of boxes are mirror images of each other (x -> W - 1 - x, pixel centres at integers), and the
    confident fused boxes lie on the single-view boxes."""
    from hrstream.models.bundle import load_model_bundle
    from hrstream.synth import SynthConfig, generate

    frame = next(iter(generate(SynthConfig(width=320, height=180, num_frames=1, num_people=(3, 3), seed=11))))
    model = load_model_bundle("synthetic_det_hrnet_w18_small_fcos", None, task="det", progress=False).model
    kw = {"score_thr": 0.5, "nms_iou": 0.8, "pixel_edges_at_integers": False}
    flip = TorchvisionDetector(model, flip_test=True, **kw)
    plain = TorchvisionDetector(model, **kw)
    image = frame.image
    d0, d1 = flip.detect([Frame("s", 0, 0.0, image), Frame("s", 1, 0.0, image[:, ::-1].copy())])
    (b, s), (bm, sm) = (d0.boxes, d0.scores), (d1.boxes, d1.scores)
    assert len(b) >= 2
    back = mirror_boxes(torch.from_numpy(bm), image.shape[1] - 1)
    assert back[:, 0].tolist() == pytest.approx((image.shape[1] - 1 - bm[:, 2]).tolist())
    iou = torchvision.ops.box_iou(torch.from_numpy(b), back).numpy()
    assert len(bm) == len(b) and np.all(iou.max(1) > 0.99)
    assert s == pytest.approx(sm[iou.argmax(1)], abs=1e-4)
    bp = plain.detect([Frame("s", 0, 0.0, image)])[0].boxes
    near = torchvision.ops.box_iou(torch.from_numpy(b), torch.from_numpy(bp)).numpy().max(1)
    assert np.all(near > 0.8)


def test_flip_test_is_for_network_detectors():
    with pytest.raises(ConfigError, match="flip_test"):
        make_detector("full-frame", flip_test=True)
    with pytest.raises(ConfigError, match="flip_iou"):
        TorchvisionDetector(torch.nn.Identity(), flip_iou=0.0)


def test_recipe_nms_iou_replaces_the_det_networks_own_nms() -> None:
    """FCOS runs its own NMS (config NMS_THRESH 0.6) before the recipe's: a looser recipe value must reach it."""
    from hrstream.demo import synthetic_recipe
    from hrstream.pipeline.detection import build_detector

    recipe = synthetic_recipe()
    assert recipe.detector.nms_iou == 0.8
    assert build_detector(recipe.detector, "cpu", progress=False).model.nms_thresh == pytest.approx(0.8)
    recipe = recipe.replace(**{"detector.nms_iou": 0.5})
    assert build_detector(recipe.detector, "cpu", progress=False).model.nms_thresh == pytest.approx(0.5)


def _official_keep(
    kpts: np.ndarray, box_scores: np.ndarray, areas: np.ndarray, sel: FileSelection
) -> list[int]:
    """The official evaluation's selection of one image's poses (``lib/dataset/coco.py`` ``evaluate`` and
    ``lib/nms/nms.py`` ``oks_nms``), written out here from the official code's steps: rescore by the box
    score times the mean keypoint score above IN_VIS_THRE (0 when none is), then greedy OKS NMS in order of
    that score, dropping a pose whose OKS with a kept one exceeds OKS_THRE."""
    from hrstream.pose.keypoints import COCO_SIGMAS

    scores = []
    for kp, box_score in zip(kpts, box_scores, strict=True):
        vis = kp[:, 2][kp[:, 2] > sel.in_vis_thr]
        scores.append(box_score * (vis.mean() if len(vis) else 0.0))
    order = list(np.argsort(scores)[::-1])
    var = (COCO_SIGMAS * 2) ** 2
    keep: list[int] = []
    while order:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        kept = []
        for j in rest:
            d2 = ((kpts[j, :, :2] - kpts[i, :, :2]) ** 2).sum(1)
            e = d2 / var / ((areas[i] + areas[j]) / 2 + np.spacing(1)) / 2
            if np.exp(-e).mean() <= sel.oks_thr:
                kept.append(j)
        order = kept
    return keep


def test_file_detections_follow_the_official_selection(tmp_path: Path) -> None:
    """``--detector file:`` without a threshold keeps what the official top-down evaluation keeps from the
    official COCO person detections (TEST.IMAGE_THRE 0.0: all 118 boxes, no box NMS, no cap), and the
    poses are then selected with TEST.IN_VIS_THRE / OKS_THRE as the official evaluation selects them."""
    import cv2
    import yaml
    from support.tiny_models import tiny_pose_model

    from hrstream.models import from_config, load_weights
    from hrstream.pose import TopDownEstimator, oks_nms
    from hrstream.pose.crops import PIXEL_STD, box_to_center_scale

    config = yaml.safe_load(
        (Path(__file__).parents[1] / "configs" / "pose_hrnet_w32_256x192.yaml").read_text()
    )
    sel = FileSelection.from_test(config["TEST"])
    assert (sel.image_thr, sel.in_vis_thr, sel.oks_thr) == (0.0, 0.2, 0.9)
    assert FileSelection.from_test({}) == FileSelection(0.1, 0.0, 0.5)  # the official code's defaults
    path = COCO / "test_coco_det_AP_H_56.json"
    dets = json.loads(path.read_text())
    ids = sorted({d["image_id"] for d in dets})
    frames = [
        Frame("coco", i, None, cv2.cvtColor(cv2.imread(str(COCO / f"{i:012d}.jpg")), cv2.COLOR_BGR2RGB))
        for i in ids
    ]
    det = make_detector(f"file:{path}", score_thr=None, nms_iou=None, max_people=None, test=config["TEST"])
    out = det.detect(frames)
    for frame, det in zip(frames, out, strict=True):
        boxes, scores = det.boxes, det.scores
        official = [
            d for d in dets if d["image_id"] == frame.index and d["category_id"] == 1 and d["score"] >= 0.0
        ]
        want = sorted((-d["score"], tuple(d["bbox"])) for d in official)
        got = sorted(
            (-float(s), (float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])))
            for b, s in zip(boxes, scores, strict=True)
        )
        assert len(got) == len(want)
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-5, atol=1e-3)
    assert sum(len(d) for d in out) == len(dets) == 118
    # what the recipe's network-detector threshold would have kept
    assert sum(len(d) for d in make_detector(f"file:{path}", score_thr=0.5).detect(frames)) <= 18
    # a threshold the user sets replaces IMAGE_THRE
    user = make_detector(f"file:{path}", score_thr=0.3, nms_iou=None, test=config["TEST"]).detect(frames)
    assert sum(len(d) for d in user) == sum(d["score"] >= 0.3 for d in dets)

    tiny = tiny_pose_model(tmp_path)
    model = from_config(tiny.config).eval()
    load_weights(model, tiny.weights)
    est = TopDownEstimator(model, input_size=(96, 128))
    poses = est.estimate([f.image for f in frames], [d.boxes for d in out], [d.scores for d in out])
    total = 0
    for p in poses:
        kept = oks_nms(p, sel.oks_thr, in_vis_thr=sel.in_vis_thr, aspect_ratio=96 / 128)
        _, scale = box_to_center_scale(p.boxes, aspect_ratio=96 / 128, box_format="xyxy", padding=1.25)
        areas = np.prod(scale.astype(np.float64) * PIXEL_STD, axis=1)
        kpts = np.concatenate([p.keypoints, p.keypoint_scores[..., None]], axis=2).astype(np.float64)
        want = sorted(_official_keep(kpts, p.box_scores.astype(np.float64), areas, sel))
        np.testing.assert_array_equal(kept.boxes, p.boxes[want])
        total += len(want)
    assert 0 < total < 118  # the OKS NMS drops duplicates, and keeps people


# A detections file is untrusted input: each bad box is refused with one line naming the file, the entry and
# the fix, before anything runs (the CLI: exit 2).
_BAD_BOXES = {
    "nan": ("[12.0, NaN, 30.0, 40.0]", "not a finite number"),
    "infinity": ("[12.0, 20.0, Infinity, 40.0]", "not a finite number"),
    "huge": ("[1e30, 20.0, 30.0, 40.0]", "outside"),
    "negative_width": ("[12.0, 20.0, -30.0, 40.0]", "negative width"),
    "negative_height": ("[12.0, 20.0, 30.0, -0.5]", "negative height"),
}


def _det_file_with(tmp_path: Path, bbox_json: str) -> Path:
    """Two good entries and, as entry 2, one whose bbox is ``bbox_json`` (written as JSON text, so that NaN
    and Infinity appear as Python's json module and other tools write them)."""
    good = '{"image_id": 0, "category_id": 1, "bbox": [1.0, 2.0, 30.0, 40.0], "score": 0.9}'
    bad = f'{{"image_id": 1, "category_id": 1, "bbox": {bbox_json}, "score": 0.8}}'
    path = tmp_path / "dets.json"
    path.write_text(f"[{good}, {good}, {bad}]")
    return path


@pytest.mark.parametrize("case", sorted(_BAD_BOXES))
def test_file_detector_refuses_bad_boxes(tmp_path: Path, case: str) -> None:
    bbox, why = _BAD_BOXES[case]
    path = _det_file_with(tmp_path, bbox)
    with pytest.raises(InputError) as err:
        make_detector(f"file:{path}")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "entry 2" in msg and why in msg, msg
    assert "fix" in msg or "remove" in msg, msg


@pytest.mark.parametrize("score", ["NaN", "-Infinity"])
def test_file_detector_refuses_a_score_that_is_not_a_number(tmp_path: Path, score: str) -> None:
    path = tmp_path / "dets.json"
    path.write_text(f'[{{"image_id": 0, "category_id": 1, "bbox": [1, 2, 3, 4], "score": {score}}}]')
    with pytest.raises(InputError, match=r"entry 0 .*: score .* not a finite number"):
        make_detector(f"file:{path}")


@pytest.mark.parametrize("case", ["nan", "huge", "negative_width"])
def test_cli_refuses_a_bad_detections_file_in_one_line(tmp_path: Path, case: str) -> None:
    from support.cli_checks import VIDEOS, run_cli
    from support.tiny_models import tiny_pose_model

    tiny = tiny_pose_model(tmp_path / "tiny")
    path = _det_file_with(tmp_path, _BAD_BOXES[case][0])
    clip = VIDEOS / "gen_vfr_160x120.mp4"
    out = tmp_path / "out"
    res = run_cli(
        [
            "run",
            str(clip),
            "--task",
            "pose",
            *tiny.args(),
            "--detector",
            f"file:{path}",
            "--out",
            str(out),
            "-q",
        ]
    )
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hrstream: error:"), res.stderr[-3000:]
    assert str(path) in lines[0] and "entry 2" in lines[0] and _BAD_BOXES[case][1] in lines[0]
