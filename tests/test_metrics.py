"""hrstream.metrics against synthetic ground truth: perfect, corrupted and smoothed predictions."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from hrstream.errors import InputError
from hrstream.metrics import box_iou, evaluate_dir, evaluate_tracks, format_report, match_boxes
from hrstream.synth import SynthConfig, generate, write_clip

CFG = SynthConfig(width=320, height=240, fps=25.0, num_frames=30, num_people=3, seed=2, enter_leave=False)


def _doc_from_generate(cfg: SynthConfig) -> dict:
    """A truth tracks document built directly from the generator's frames (no video)."""
    tracks: dict[int, dict[str, list]] = {}
    vis: dict[str, list] = {}
    for fr in generate(cfg):
        for i, tid in enumerate(fr.track_ids.tolist()):
            tr = tracks.setdefault(
                tid, {k: [] for k in ("frames", "times", "boxes", "box_scores", "keypoints", "scores")}
            )
            tr["frames"].append(fr.index)
            tr["times"].append(fr.t)
            tr["boxes"].append(fr.boxes[i].astype(float).tolist())
            tr["box_scores"].append(1.0)
            tr["keypoints"].append(fr.keypoints[i].astype(float).tolist())
            tr["scores"].append((fr.visibility[i] > 0).astype(float).tolist())
            vis.setdefault(str(tid), []).append(fr.visibility[i].astype(int).tolist())
    return {
        "format": "hrstream.tracks",
        "version": 1,
        "keypoint_names": [f"k{i}" for i in range(17)],
        "num_frames": cfg.total_frames,
        "tracks": [
            {"track_id": t, **tr, "smoothed": copy.deepcopy(tr["keypoints"])}
            for t, tr in sorted(tracks.items())
        ],
        "visibility": vis,
    }


@pytest.fixture(scope="module")
def truth() -> dict:
    doc = _doc_from_generate(CFG)
    assert len(doc["tracks"]) == 3 and all(len(t["frames"]) >= 20 for t in doc["tracks"])
    return doc


def _pred(truth: dict) -> dict:
    """A prediction document: the truth without its visibility, keypoints deep-copied."""
    doc = copy.deepcopy(truth)
    doc.pop("visibility")
    return doc


def _add_noise(doc: dict, sigma: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    for tr in doc["tracks"]:
        kp = np.asarray(tr["keypoints"], float)
        noisy = (kp + rng.normal(0.0, sigma, kp.shape)).tolist()
        tr["keypoints"] = noisy
        tr["smoothed"] = copy.deepcopy(noisy)
    return doc


def test_box_iou_and_matching_agree_with_hand_computed_values() -> None:
    t = np.array([[0, 0, 10, 10], [20, 20, 30, 40]], float)
    p = np.array([[20, 20, 30, 30], [0, 0, 10, 5], [100, 100, 110, 110]], float)
    iou = box_iou(t, p)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou, [[0.0, 0.5, 0.0], [0.5, 0.0, 0.0]], atol=1e-9)
    assert sorted(match_boxes(iou, 0.5)) == [(0, 1), (1, 0)]
    assert match_boxes(iou, 0.51) == []


def test_truth_against_itself_is_perfect(truth: dict) -> None:
    r = evaluate_tracks(_pred(truth), truth)
    for subset in ("visible", "in_frame"):
        assert r["pck"][subset] == {"0.05": 1.0, "0.1": 1.0}
    mot = r["mot"]
    assert mot["mota"] == 1.0 and mot["idf1"] == 1.0 and mot["id_switches"] == 0
    assert mot["precision"] == 1.0 and mot["recall"] == 1.0
    assert r["keypoint_error_px"]["raw"] == 0.0 and r["keypoint_error_px"]["smoothed"] == 0.0
    j = r["jitter"]
    assert j["samples"] > 100 and j["truth"] > 0 and j["raw"] == pytest.approx(j["truth"])
    assert j["error_raw"] == 0.0


def test_identity_swap_halfway_gives_switches(truth: dict) -> None:
    pred = _pred(truth)
    a, b = pred["tracks"][0], pred["tracks"][1]
    common = sorted(set(a["frames"]) & set(b["frames"]))
    assert len(common) >= 10
    half = common[len(common) // 2]
    # from frame `half` on, the predicted ids of the two people are exchanged
    a["track_id"], b["track_id"] = 900, 901
    new = {900: {k: [] for k in a if k != "track_id"}, 901: {k: [] for k in a if k != "track_id"}}
    for tr, own, other in ((a, 900, 901), (b, 901, 900)):
        for j, f in enumerate(tr["frames"]):
            dst = new[own if f < half else other]
            for k in dst:
                dst[k].append(tr[k][j])
    order = lambda d: np.argsort(d["frames"])  # noqa: E731
    pred["tracks"][0] = {"track_id": 900, **{k: [v[i] for i in order(new[900])] for k, v in new[900].items()}}
    pred["tracks"][1] = {"track_id": 901, **{k: [v[i] for i in order(new[901])] for k, v in new[901].items()}}
    r = evaluate_tracks(pred, truth)
    assert r["mot"]["id_switches"] >= 2
    assert r["mot"]["idf1"] < 1.0
    assert r["pck"]["visible"]["0.05"] == 1.0  # keypoints are still exact


def test_noise_lowers_pck_and_raises_jitter(truth: dict) -> None:
    clean = evaluate_tracks(_pred(truth), truth)
    noisy = evaluate_tracks(_add_noise(_pred(truth), 5.0), truth)
    assert noisy["pck"]["visible"]["0.05"] < clean["pck"]["visible"]["0.05"] - 0.05
    assert noisy["pck"]["visible"]["0.1"] <= clean["pck"]["visible"]["0.1"]
    assert noisy["jitter"]["raw"] > 2 * clean["jitter"]["raw"]
    # second difference of white noise: std sqrt(6) * sigma per axis
    assert noisy["jitter"]["error_raw"] == pytest.approx(np.sqrt(12) * 5.0, rel=0.15)
    assert noisy["keypoint_error_px"]["raw"] == pytest.approx(5.0 * np.sqrt(np.pi / 2), rel=0.15)
    assert noisy["mot"]["mota"] == 1.0  # boxes untouched


def _moving_average(doc: dict) -> dict:
    """Replace ``smoothed`` with a centred 3-frame moving average of the raw keypoints (ends kept)."""
    for tr in doc["tracks"]:
        kp = np.asarray(tr["keypoints"], float)
        sm = kp.copy()
        if len(kp) >= 3:
            sm[1:-1] = (kp[:-2] + kp[1:-1] + kp[2:]) / 3.0
        tr["smoothed"] = sm.tolist()
    return doc


def test_moving_average_lowers_jitter_without_raising_error(truth: dict) -> None:
    r = evaluate_tracks(_moving_average(_add_noise(_pred(truth), 3.0, seed=4)), truth)
    j = r["jitter"]
    assert j["smoothed"] < j["raw"]
    # on white noise a 3-tap mean leaves sqrt(4/54) ~ 0.27 of the second difference's RMS
    assert j["reduction"] > 0.5
    assert j["error_reduction"] > 0.5
    err = r["keypoint_error_px"]
    assert err["smoothed"] < err["raw"]
    # PCK is scored on the chosen source
    raw = evaluate_tracks(_moving_average(_add_noise(_pred(truth), 3.0, seed=4)), truth, use="raw")
    assert r["pck_matched"]["visible"]["0.05"] > raw["pck_matched"]["visible"]["0.05"]


def test_removing_a_person_lowers_recall_and_mota(truth: dict) -> None:
    pred = _pred(truth)
    removed = pred["tracks"].pop(0)
    r = evaluate_tracks(pred, truth)
    mot = r["mot"]
    assert mot["recall"] < 1.0 and mot["mota"] < 1.0 and mot["precision"] == 1.0
    assert mot["misses"] == len(removed["frames"])
    # unmatched true people count as wrong in pck, not in pck_matched
    assert r["pck"]["visible"]["0.1"] < 1.0
    assert r["pck_matched"]["visible"]["0.1"] == 1.0


def test_offline_source_must_exist(truth: dict) -> None:
    with pytest.raises(InputError, match="smoothed_offline"):
        evaluate_tracks(_pred(truth), truth, use="offline")
    pred = _pred(truth)
    for tr in pred["tracks"]:
        tr["smoothed_offline"] = copy.deepcopy(tr["keypoints"])
    r = evaluate_tracks(pred, truth, use="offline")
    assert r["pck"]["visible"]["0.05"] == 1.0 and r["jitter"]["offline_reduction"] == 0.0


def test_evaluate_dir_on_written_clips(tmp_path: Path) -> None:
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    pred_dir.mkdir()
    for i in range(2):
        cfg = SynthConfig(width=320, height=240, num_frames=20, num_people=2, seed=10 + i)
        paths = write_clip(cfg, truth_dir, f"clip_{i}", masks=False)
        doc = json.loads(paths["tracks"].read_text())
        doc.pop("visibility")
        if i == 1:
            _add_noise(doc, 2.0)
        (pred_dir / paths["tracks"].name).write_text(json.dumps(doc))
    write_clip(SynthConfig(width=64, height=48, num_frames=3, seed=3), truth_dir, "clip_x", masks=False)
    res = evaluate_dir(pred_dir, truth_dir)
    assert set(res["clips"]) == {"clip_0", "clip_1"} and res["missing"] == ["clip_x"]
    c0, c1, ov = res["clips"]["clip_0"], res["clips"]["clip_1"], res["overall"]
    assert c0["pck"]["visible"]["0.05"] == 1.0 and c1["pck"]["visible"]["0.05"] < 1.0
    lo, hi = sorted([c0["pck"]["visible"]["0.05"], c1["pck"]["visible"]["0.05"]])
    assert lo <= ov["pck"]["visible"]["0.05"] <= hi
    assert ov["mot"]["num_objects"] == c0["mot"]["num_objects"] + c1["mot"]["num_objects"]
    assert ov["frames"] == 40
    text = format_report(res)
    assert "OVERALL" in text and "clip_0" in text and "clip_x" in text
    with pytest.raises(InputError):
        evaluate_dir(tmp_path / "nothing", truth_dir)


def test_eval_command_scores_files_and_rejects_mixed_inputs(tmp_path: Path, truth: dict) -> None:
    from click.testing import CliRunner

    from hrstream.metrics.command import eval_command

    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    tpath, ppath = tmp_path / "t" / "a.tracks.json", tmp_path / "p" / "a.tracks.json"
    tpath.write_text(json.dumps(truth))
    pred = _pred(truth)
    pred["tracks"].pop()
    ppath.write_text(json.dumps(pred))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(eval_command, [str(ppath), str(tpath), "--use", "raw", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "MOTA" in res.output
    saved = json.loads(out.read_text())
    assert saved["use"] == "raw" and saved["mot"]["recall"] < 1.0
    res = CliRunner().invoke(eval_command, [str(tmp_path / "p"), str(tpath)])
    assert res.exit_code == 1 and "two folders" in res.output
    res = CliRunner().invoke(eval_command, [str(tmp_path / "p"), str(tmp_path / "t")])
    assert res.exit_code == 0 and "OVERALL" in res.output


def test_online_identities_of_repaired_tracks_are_scored_on_request(tmp_path: Path, truth: dict) -> None:
    """A repaired tracks document carries the online tracker's per-frame IDs (`online_ids`): `identities=
    "online"` scores those (what the JSONL and video showed), the default the repaired track IDs."""
    from click.testing import CliRunner

    from hrstream.metrics.command import eval_command

    pred = _pred(truth)
    a, b = pred["tracks"][0], pred["tracks"][1]
    half = sorted(set(a["frames"]) & set(b["frames"]))[len(set(a["frames"]) & set(b["frames"])) // 2]
    ida, idb = a["track_id"], b["track_id"]
    a["online_ids"] = [ida if f < half else idb for f in a["frames"]]  # online: exchanged from `half` on
    b["online_ids"] = [idb if f < half else ida for f in b["frames"]]
    repaired = evaluate_tracks(pred, truth)
    online = evaluate_tracks(pred, truth, identities="online")
    assert repaired["mot"]["idf1"] == 1.0 and repaired["mot"]["id_switches"] == 0
    assert online["mot"]["idf1"] < 1.0 and online["mot"]["id_switches"] >= 2
    assert online["identities"] == "online" and online["pck"] == repaired["pck"]
    with pytest.raises(InputError, match="identities"):
        evaluate_tracks(pred, truth, identities="both")
    tpath, ppath, out = tmp_path / "t.tracks.json", tmp_path / "p.tracks.json", tmp_path / "r.json"
    tpath.write_text(json.dumps(truth))
    ppath.write_text(json.dumps(pred))
    res = CliRunner().invoke(
        eval_command, [str(ppath), str(tpath), "--identities", "online", "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["mot"]["idf1"] == online["mot"]["idf1"]
