"""Choose tracker and smoother parameters on tuning clips (never on the evaluation clips).

Replays the detections and raw keypoints of `hrstream run` JSONL records (every detected person is recorded,
tracked or not) through :class:`hrstream.track.PoseTracker` and the keypoint smoother with each parameter set,
and scores the resulting tracks against the synthetic truth with :func:`hrstream.metrics.evaluate_tracks`.

    python benchmarks/tune_tracker.py PRED_DIR TRUTH_DIR

PRED_DIR holds NAME.jsonl from `hrstream run`; TRUTH_DIR holds NAME.tracks.json from `hrstream synth`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from hrstream.metrics import evaluate_tracks
from hrstream.track import PoseTracker, make_smoother
from hrstream.types import Poses


def read_frames(video: Path) -> list[np.ndarray]:
    """Every frame of ``video`` as ``uint8 (H, W, 3)`` RGB (the appearance term needs the pixels)."""
    import av

    with av.open(str(video)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def replay(
    records: list[dict[str, Any]],
    tracker_kw: dict[str, Any],
    smoother_kw: dict[str, Any],
    frames: list[np.ndarray] | None = None,
) -> dict:
    """A tracks document built by running the tracker and smoother over the recorded detections
    (``frames``, indexed by the records' frame numbers, feed the tracker's appearance term)."""
    tracker = PoseTracker(**tracker_kw)
    smoother = make_smoother(**smoother_kw)
    tracks: dict[int, dict[str, list]] = {}
    for rec in records:
        people = rec["people"]
        n = len(people)
        kps = np.array(
            [p.get("raw_keypoints") or [k[:2] for k in p["keypoints"]] for p in people], np.float32
        )
        poses = Poses(
            boxes=np.array([p["box"] for p in people], np.float32).reshape(n, 4),
            box_scores=np.array([p["box_score"] for p in people], np.float32),
            keypoints=kps.reshape(n, 17, 2),
            keypoint_scores=np.array([[k[2] for k in p["keypoints"]] for p in people], np.float32).reshape(
                n, 17
            ),
        )
        t = rec["pts_s"]
        image = frames[rec["frame"]] if frames is not None else None
        out = smoother.update(tracker.update(poses, t=t, image=image), t=t)
        raw = out.raw_keypoints if out.raw_keypoints is not None else out.keypoints
        for i, tid in enumerate(out.track_ids.tolist()):
            tr = tracks.setdefault(
                tid,
                {
                    k: []
                    for k in ("frames", "times", "boxes", "box_scores", "keypoints", "scores", "smoothed")
                },
            )
            tr["frames"].append(rec["frame"])
            tr["times"].append(t)
            tr["boxes"].append(out.boxes[i].tolist())
            tr["box_scores"].append(float(out.box_scores[i]))
            tr["keypoints"].append(raw[i].tolist())
            tr["scores"].append(out.keypoint_scores[i].tolist())
            tr["smoothed"].append(out.keypoints[i].tolist())
    return {
        "format": "hrstream.tracks",
        "keypoint_names": [],
        "tracks": [{"track_id": k, **v} for k, v in sorted(tracks.items())],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pred_dir", type=Path)
    ap.add_argument("truth_dir", type=Path)
    args = ap.parse_args(argv)
    clips = sorted(p.stem for p in args.pred_dir.glob("*.jsonl"))
    data = {
        c: [json.loads(x) for x in (args.pred_dir / f"{c}.jsonl").read_text().splitlines()] for c in clips
    }
    grid = {
        "iou_weight": [0.5, 0.8, 1.0],
        "match_thr": [0.8, 0.9],
        "max_age_s": [1.0, 2.0],
    }
    smoothers = [
        {"name": "one_euro", "min_cutoff": 1.0, "beta": 0.05},
        {"name": "one_euro", "min_cutoff": 0.5, "beta": 0.02},
        {"name": "kalman"},
    ]
    print(
        "| params | smoother | IDF1 | switches | MOTA | PCK@0.1 smoothed | jitter reduction | error raw/smoothed |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for values in itertools.product(*grid.values()):
        kw = dict(zip(grid, values, strict=True))
        for sm in smoothers:
            idf1, sw, mota, pck, red, er, es = [], 0, [], [], [], [], []
            for c in clips:
                doc = replay(data[c], kw, sm)
                m = evaluate_tracks(doc, args.truth_dir / f"{c}.tracks.json")
                idf1.append(m["mot"]["idf1"] or 0.0)
                sw += m["mot"]["id_switches"]
                mota.append(m["mot"]["mota"] or 0.0)
                pck.append(m["pck"]["visible"]["0.1"] or 0.0)
                red.append(m["jitter"].get("reduction") or 0.0)
                er.append(m["keypoint_error_px"]["raw"] or 0.0)
                es.append(m["keypoint_error_px"]["smoothed"] or 0.0)
            name = ",".join(f"{k}={v}" for k, v in sm.items() if k != "name")
            print(
                f"| {kw} | {sm['name']} {name} | {np.mean(idf1):.3f} | {sw} | {np.mean(mota):.3f} | {np.mean(pck):.3f} "
                f"| {np.mean(red):+.1%} | {np.mean(er):.2f} / {np.mean(es):.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
