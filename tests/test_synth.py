"""The synthetic world: deterministic rendering, exact and self-consistent ground truth, and its files
(video + tracks document + masks, COCO dataset) read back by real decoders and pycocotools."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hrstream.errors import ConfigError
from hrstream.schemas import validate
from hrstream.synth import SynthConfig, generate, read_truth_tracks, write_clip, write_coco_dataset
from hrstream.synth.body import pose_body, walking_angles
from hrstream.synth.render import draw_person, keypoint_visibility, make_look

log = logging.getLogger(__name__)

CROWD = SynthConfig(width=320, height=240, num_frames=120, num_people=4, seed=7, include_hidden=True)


@pytest.fixture(scope="module")
def crowd_frames() -> list:
    return list(generate(CROWD))


def _render_one(yaw: float, anchor: tuple[float, float] = (160.0, 220.0), height: float = 180.0):
    body = pose_body(walking_angles(0.8, 1.0, 0.0), yaw, anchor, height)
    img = np.zeros((240, 320, 3), np.uint8)
    code = np.zeros((240, 320), np.uint16)
    draw_person(img, code, body, make_look(np.random.default_rng(0)), 1)
    return body, keypoint_visibility(code, body, 1), code


def test_same_seed_same_frames_and_other_seed_differs() -> None:
    cfg = SynthConfig(width=160, height=120, num_frames=12, num_people=(2, 3), seed=3)
    a, b = list(generate(cfg)), list(generate(cfg))
    c = list(generate(SynthConfig(width=160, height=120, num_frames=12, num_people=(2, 3), seed=4)))
    assert len(a) == len(b) == 12
    for fa, fb in zip(a, b, strict=True):
        assert np.array_equal(fa.image, fb.image)
        assert np.array_equal(fa.keypoints, fb.keypoints)
        assert np.array_equal(fa.visibility, fb.visibility)
        assert np.array_equal(fa.instance_mask, fb.instance_mask)
        assert np.array_equal(fa.track_ids, fb.track_ids)
    assert not np.array_equal(a[5].image, c[5].image)


def test_ground_truth_consistent_with_mask_and_boxes(crowd_frames: list) -> None:
    w, h = CROWD.width, CROWD.height
    visible_points = hidden_people = covered_points = 0
    for fr in crowd_frames:
        assert fr.image.shape == (h, w, 3) and fr.image.dtype == np.uint8
        assert fr.instance_mask.shape == (h, w) and fr.instance_mask.dtype == np.uint16
        assert fr.keypoints.shape == (len(fr), 17, 2) and fr.visibility.shape == (len(fr), 17)
        assert len(set(fr.track_ids.tolist())) == len(fr) and (fr.track_ids >= 1).all()
        assert set(np.unique(fr.instance_mask).tolist()) - {0} <= set(fr.track_ids.tolist())
        for i, tid in enumerate(fr.track_ids.tolist()):
            m = fr.instance_mask == tid
            assert int(m.sum()) == fr.areas[i]
            kp, v = fr.keypoints[i], fr.visibility[i]
            inside = (kp[:, 0] >= -0.5) & (kp[:, 0] < w - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] < h - 0.5)
            assert np.array_equal(v == 0, ~inside)
            if fr.areas[i] == 0:
                assert (v != 2).all()
                hidden_people += 1
                continue
            rows, cols = np.nonzero(m)
            assert np.allclose(
                fr.boxes[i], [cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5]
            )
            for k in np.flatnonzero(v == 2):
                x, y = kp[k]
                assert m[int(math.floor(y + 0.5)), int(math.floor(x + 0.5))], (fr.index, tid, k)
                b = fr.boxes[i]
                assert b[0] <= x <= b[2] and b[1] <= y <= b[3]
                visible_points += 1
            for k in np.flatnonzero(v > 0):  # a joint under someone else's pixel is never "visible"
                x, y = kp[k]
                owner = fr.instance_mask[int(math.floor(y + 0.5)), int(math.floor(x + 0.5))]
                if owner not in (0, tid):
                    assert v[k] == 1
                    covered_points += 1
    assert visible_points > 1000
    assert hidden_people > 0 and covered_points > 0  # both checks above ran


def test_overlapping_people_hide_keypoints(crowd_frames: list) -> None:
    hidden_by_other = 0
    overlaps = 0
    for fr in crowd_frames:
        for i in range(len(fr)):
            for j in range(len(fr)):
                if i == j or fr.areas[i] == 0 or fr.areas[j] == 0:
                    continue
                a, b = fr.boxes[i], fr.boxes[j]
                iw = min(a[2], b[2]) - max(a[0], b[0])
                ih = min(a[3], b[3]) - max(a[1], b[1])
                if iw > 0 and ih > 0 and iw * ih > 0.3 * (a[2] - a[0]) * (a[3] - a[1]):
                    overlaps += 1
                    for k in np.flatnonzero(fr.visibility[i] == 1):
                        x, y = fr.keypoints[i, k]
                        owner = fr.instance_mask[int(math.floor(y + 0.5)), int(math.floor(x + 0.5))]
                        hidden_by_other += int(owner == fr.track_ids[j])
    assert overlaps > 0, "the crowd clip should make people cross"
    assert hidden_by_other > 0


def test_people_outside_the_frame_have_no_visible_keypoints(crowd_frames: list) -> None:
    body, v, code = _render_one(0.3, anchor=(-200.0, 220.0))
    assert (v == 0).all() and not code.any()
    outside = [
        (fr.index, i)
        for fr in crowd_frames
        for i in range(len(fr))
        if fr.areas[i] == 0 and (fr.visibility[i] == 0).all()
    ]
    assert outside, "people entering from the edges start fully outside"


def test_turning_foreshortens_and_self_occludes() -> None:
    front, v_front, _ = _render_one(0.0)
    side, v_side, _ = _render_one(math.pi / 2)
    back, v_back, _ = _render_one(math.pi)
    # facing the camera the person's left is on screen right; facing away it swaps
    assert front.joints[5, 0] > front.joints[6, 0] and back.joints[5, 0] < back.joints[6, 0]
    # in profile the shoulders nearly coincide (foreshortening)
    assert abs(side.joints[5, 0] - side.joints[6, 0]) < 0.2 * abs(front.joints[5, 0] - front.joints[6, 0])
    assert (v_front[:3] == 2).all()  # nose and eyes seen from the front
    assert (v_back[:3] == 1).all()  # hidden by the head from behind
    # facing screen right the left side is the far side: its eye and ear are hidden, some far joints too
    assert v_side[1] == 1 and v_side[3] == 1 and v_side[2] == 2 and v_side[4] == 2
    assert (v_side[[5, 7, 11]] == 1).any()


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        SynthConfig(motions=("dance",))
    with pytest.raises(ConfigError):
        SynthConfig(person_height=(0.5, 0.1))
    cfg = SynthConfig(duration_s=2.0, fps=12.5, num_people=(1, 3))
    assert cfg.total_frames == 25
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg


def test_write_clip_round_trips(tmp_path: Path) -> None:
    cfg = SynthConfig(width=200, height=150, num_frames=30, fps=15, num_people=3, seed=11)
    paths = write_clip(cfg, tmp_path, "walkers")
    frames = list(generate(cfg))
    with av.open(str(paths["video"])) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == len(frames) == 30
    mse = np.mean((decoded[10][:150, :200].astype(np.float64) - frames[10].image) ** 2)
    assert 10 * math.log10(255**2 / max(mse, 1e-9)) > 32  # near-lossless
    doc = json.loads(paths["tracks"].read_text())
    validate(doc, "tracks", label=str(paths["tracks"]))
    truth = read_truth_tracks(paths["tracks"])
    assert sorted(truth) == sorted({t for fr in frames for t in fr.track_ids.tolist()})
    for fr in frames:
        for i, tid in enumerate(fr.track_ids.tolist()):
            tr = truth[tid]
            (row,) = np.flatnonzero(tr["frames"] == fr.index)
            assert np.allclose(tr["keypoints"][row], fr.keypoints[i], atol=1e-3)
            assert np.array_equal(tr["visibility"][row], fr.visibility[i])
            assert np.allclose(tr["boxes"][row], fr.boxes[i], atol=1e-3)
            assert tr["times"][row] == pytest.approx(fr.index / 15)
        mask = cv2.imread(str(paths["masks"] / f"{fr.index:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint16 and np.array_equal(mask, fr.instance_mask)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco_dataset_loads_and_scores_perfectly(tmp_path: Path) -> None:
    cfg = SynthConfig(width=192, height=144, num_frames=15, num_people=3, seed=5)
    ann_path = write_coco_dataset((cfg, 2), tmp_path, every_n=3)
    coco = COCO(str(ann_path))
    assert len(coco.getImgIds()) == 10
    cat = coco.loadCats(1)[0]
    assert len(cat["keypoints"]) == 17 and min(min(p) for p in cat["skeleton"]) == 1
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns
    for a in anns:
        kp = np.asarray(a["keypoints"]).reshape(17, 3)
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert coco.annToMask(a).sum() == a["area"]
    for img in coco.loadImgs(coco.getImgIds()):
        stem = Path(img["file_name"]).stem
        im = cv2.imread(str(tmp_path / "images" / img["file_name"]))
        mask = cv2.imread(str(tmp_path / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert im.shape == (144, 192, 3) and mask.shape == (144, 192) and set(np.unique(mask)) <= {0, 1}
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in anns
    ]
    ev = COCOeval(coco, coco.loadRes(results), "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_render_speed() -> None:
    cfg = SynthConfig(width=320, height=240, num_frames=100, num_people=3, seed=2)
    t0 = time.perf_counter()
    n = sum(1 for _ in generate(cfg))
    fps = n / (time.perf_counter() - t0)
    print(f"synthetic render: {fps:.1f} frames/s at 320x240 with 3 people")
    assert n == 100


def test_synth_command_writes_clips_and_rejects_bad_options(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hrstream.synth.command import synth_command

    runner = CliRunner()
    args = [
        str(tmp_path),
        "--clips",
        "2",
        "--width",
        "96",
        "--height",
        "64",
        "--seconds",
        "0.4",
        "--people",
        "1-2",
    ]
    res = runner.invoke(synth_command, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*.tracks.json")) == [
        "synth_0000.tracks.json",
        "synth_0001.tracks.json",
    ]
    assert len(list((tmp_path / "synth_0001_masks").glob("*.png"))) == 10
    bad = runner.invoke(synth_command, [str(tmp_path), "--motions", "walk,dance"])
    assert bad.exit_code == 2 and "motions" in bad.output


def _overlapping_pairs(boxes: np.ndarray) -> int:
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.all(hi > lo, axis=2)
    return int(np.triu(inter, 1).sum())


def test_crowds_of_20_to_30_people_overlap_and_repeat_per_seed() -> None:
    """`--people 20-30`: a crowd for bottom-up training, people crossing and hiding each other."""
    cfg = SynthConfig(
        width=320, height=180, num_frames=8, num_people=(20, 30), seed=21, person_height=(0.15, 0.6)
    )
    frames = list(generate(cfg))
    again = list(generate(cfg))
    for a, b in zip(frames, again, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.keypoints, b.keypoints)
        assert np.array_equal(a.track_ids, b.track_ids)
    other = next(iter(generate(SynthConfig(**{**cfg.to_dict(), "seed": 22, "person_height": (0.15, 0.6)}))))
    assert not np.array_equal(other.image, frames[0].image)
    assert all(len(f) >= 18 for f in frames)  # a few may be fully hidden behind others
    assert max(len(f) for f in frames) >= 20
    assert all(_overlapping_pairs(f.boxes) >= 10 for f in frames)
    hidden = sum(int((f.visibility == 1).sum()) for f in frames)
    assert hidden > 100  # keypoints inside the frame but covered by someone in front


def test_synth_command_makes_a_crowd_dataset(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hrstream.synth.command import synth_command

    runner = CliRunner()
    args = [str(tmp_path), "--coco", "--width", "160", "--height", "96", "--seconds", "0.16", "--people", "20-30",
            "--person-height", "0.15-0.5", "--seed", "5"]  # fmt: skip
    res = runner.invoke(synth_command, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "annotations.json").read_text())
    per_image: dict[int, int] = {}
    for ann in doc["annotations"]:
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    assert len(doc["images"]) == 4 and min(per_image.values()) >= 15
    bad = runner.invoke(synth_command, [str(tmp_path), "--person-height", "tall"])
    assert bad.exit_code == 2 and "--person-height" in bad.output and bad.output.count("\n") == 1
    bad = runner.invoke(synth_command, [str(tmp_path), "--person-height", "0.5-0.1"])
    assert bad.exit_code == 2 and "person_height" in bad.output
