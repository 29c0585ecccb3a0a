"""Choose tracker and smoother parameters on tuning clips (never on the evaluation clips).

Replays the detections and raw keypoints of `hrstream run` JSONL records (every detected person is recorded,
tracked or not) through :class:`hrstream.track.PoseTracker` and the keypoint smoother with each parameter set,
and scores the resulting tracks against the synthetic truth with :func:`hrstream.metrics.evaluate_tracks`.

    python benchmarks/tune_tracker.py PRED_DIR TRUTH_DIR \
        --grid '{"min_hits": [1, 2], "new_track_thr": [0.6, 0.7]}' --oks-nms 0.9 --min-score 0.5

PRED_DIR holds NAME.jsonl from `hrstream run`; TRUTH_DIR holds NAME.tracks.json (and NAME.mp4, whose frames feed
the appearance term) from `hrstream synth`. `--min-score` and `--oks-nms` apply the detector's score threshold
and the pose estimator's OKS NMS to the records before tracking, as the pipeline does (record with a lower
detector threshold and without OKS NMS to try them). Figures are means over the clips; switches are summed.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from hrstream.metrics import evaluate_tracks
from hrstream.pose.nms import oks_nms
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
    *,
    min_score: float = 0.0,
    oks_nms_thr: float | None = None,
) -> dict:
    """A tracks document built by running the tracker and smoother over the recorded detections
    (``frames``, indexed by the records' frame numbers, feed the tracker's appearance term). People scoring
    below ``min_score`` are dropped, then OKS NMS (``oks_nms_thr``) runs per frame, as in the pipeline."""
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
        poses = poses[poses.box_scores >= min_score]
        if oks_nms_thr is not None and len(poses):
            poses = oks_nms(poses, oks_nms_thr)
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
    ap.add_argument(
        "--grid",
        default='{"min_hits": [1, 2], "new_track_thr": [0.6, 0.7], "match_thr": [0.8, 0.9]}',
        help="JSON object: PoseTracker argument -> list of values; every combination is replayed",
    )
    ap.add_argument(
        "--smoother",
        action="append",
        default=None,
        help='JSON keyword arguments of make_smoother (repeatable); default: {"name": "kalman"}',
    )
    ap.add_argument("--min-score", type=float, default=0.0, help="drop people scoring below this first")
    ap.add_argument("--oks-nms", type=float, default=None, help="OKS NMS threshold per frame (0.9 official)")
    args = ap.parse_args(argv)
    grid = json.loads(args.grid)
    smoothers = [json.loads(s) for s in (args.smoother or ['{"name": "kalman"}'])]
    clips = sorted(p.stem for p in args.pred_dir.glob("*.jsonl"))
    data = {
        c: [json.loads(x) for x in (args.pred_dir / f"{c}.jsonl").read_text().splitlines()] for c in clips
    }
    frames = {
        c: read_frames(args.truth_dir / f"{c}.mp4") if (args.truth_dir / f"{c}.mp4").exists() else None
        for c in clips
    }
    print(
        "| params | smoother | IDF1 | switches | MOTA | precision | recall | PCK@0.1 | jitter reduction | error raw/smoothed |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for values in itertools.product(*grid.values()):
        kw = dict(zip(grid, values, strict=True))
        for sm in smoothers:
            res = [
                evaluate_tracks(
                    replay(data[c], kw, sm, frames[c], min_score=args.min_score, oks_nms_thr=args.oks_nms),
                    args.truth_dir / f"{c}.tracks.json",
                )
                for c in clips
            ]

            def mean(*path: str, res: list[dict] = res) -> float:
                vals = []
                for m in res:
                    for key in path:
                        m = m[key]
                    vals.append(m or 0.0)
                return float(np.mean(vals))

            sw = sum(m["mot"]["id_switches"] for m in res)
            name = ",".join(f"{k}={v}" for k, v in sm.items() if k != "name")
            print(
                f"| {kw} | {sm['name']} {name} | {mean('mot', 'idf1'):.3f} | {sw} | {mean('mot', 'mota'):.3f} "
                f"| {mean('mot', 'precision'):.3f} | {mean('mot', 'recall'):.3f} | {mean('pck', 'visible', '0.1'):.3f} "
                f"| {mean('jitter', 'reduction'):+.1%} | {mean('keypoint_error_px', 'raw'):.2f} / "
                f"{mean('keypoint_error_px', 'smoothed'):.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
