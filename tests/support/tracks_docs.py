"""A small pose job's outputs written from known poses: a tracks document and its JSONL records.

Three tracks over 8 frames at 25 fps: track 3 is on every frame (long enough for the offline
Savitzky-Golay pass, so it has ``smoothed_offline``), tracks 7 and 12 on two frames and one frame (too short
for it, so they have none). Raw, online-smoothed and offline keypoints all differ, so a test can tell which
one a format wrote. Every frame record also holds one person no confirmed track holds (``track_id`` null).
Some keypoint scores exceed 1 (heatmap maxima do). The poses are a standing figure in COCO-17 order placed
in each box; the offline keypoints come from hrstream's own Savitzky-Golay pass, as ``hrstream run``
writes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hrstream.models.datasets_meta import COCO_KEYPOINT_NAMES, COCO_SKELETON
from hrstream.track import savgol_smooth_track

__all__ = ["FPS", "NUM_FRAMES", "TRACK_FRAMES", "write_job"]

FPS = 25.0
NUM_FRAMES = 8
#: track id -> the frames it covers
TRACK_FRAMES = {3: list(range(NUM_FRAMES)), 7: [2, 3], 12: [5]}
# A standing person in a unit box (x right, y down), COCO-17 order.
_FIGURE = np.array(
    [
        [0.50, 0.08], [0.54, 0.06], [0.46, 0.06], [0.58, 0.08], [0.42, 0.08],  # nose, eyes, ears
        [0.68, 0.22], [0.32, 0.22], [0.74, 0.40], [0.26, 0.40], [0.76, 0.56], [0.24, 0.56],  # arms
        [0.62, 0.55], [0.38, 0.55], [0.63, 0.76], [0.37, 0.76], [0.64, 0.96], [0.36, 0.96],  # legs
    ]
)  # fmt: skip


def _pose(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.column_stack([x0 + _FIGURE[:, 0] * (x1 - x0), y0 + _FIGURE[:, 1] * (y1 - y0)])


def _box(track_id: int, frame: int) -> np.ndarray:
    x0 = 40.0 + 90.0 * (track_id % 5) + 3.0 * frame
    return np.array([x0, 30.0, x0 + 60.0, 190.0])


def _r(a: np.ndarray) -> list[Any]:
    return np.round(np.asarray(a, np.float64), 4).tolist()


def write_job(folder: Path, name: str = "street_clip", *, source: str | None = None) -> Path:
    """Write ``NAME.tracks.json`` and ``NAME.jsonl`` into ``folder``; returns the tracks document's path.

    ``source`` is what the document names as the input (``video.input``), e.g. a folder of images.
    """
    rng = np.random.default_rng(17)
    k = len(COCO_KEYPOINT_NAMES)
    times = [f / FPS for f in range(NUM_FRAMES)]
    tracks = []
    people: dict[int, list[dict[str, Any]]] = {f: [] for f in range(NUM_FRAMES)}
    for tid, frames in TRACK_FRAMES.items():
        boxes = np.array([_box(tid, f) for f in frames])
        raw = np.array([_pose(b) for b in boxes]) + rng.normal(0, 2.0, (len(frames), k, 2))
        smoothed = raw + np.array([1.5, -1.0])  # what an online filter lagging behind the motion gives
        scores = rng.uniform(0.35, 0.95, (len(frames), k))
        scores[:, 0] = 1.06  # a heatmap maximum above 1
        scores[:, 9] = 0.1  # a wrist the network barely sees
        box_scores = rng.uniform(0.6, 0.99, len(frames))
        track: dict[str, Any] = {
            "track_id": tid,
            "frames": frames,
            "times": [times[f] for f in frames],
            "boxes": _r(boxes),
            "box_scores": _r(box_scores),
            "keypoints": _r(raw),
            "scores": _r(scores),
            "smoothed": _r(smoothed),
        }
        if len(frames) >= 3:
            sg = savgol_smooth_track(np.asarray(track["times"]), raw, scores, window_s=0.3)
            track["smoothed_offline"] = _r(sg)
        tracks.append(track)
        for j, f in enumerate(frames):
            kp = np.column_stack([np.asarray(track["smoothed"][j]), np.asarray(track["scores"][j])])
            people[f].append(
                {
                    "track_id": tid,
                    "box": track["boxes"][j],
                    "box_score": track["box_scores"][j],
                    "keypoints": _r(kp),
                    "raw_keypoints": track["keypoints"][j],
                }
            )
    for f in range(NUM_FRAMES):  # a person the tracker has not confirmed (yet)
        box = np.array([500.0, 40.0, 550.0, 180.0]) + [2.0 * f, 0.0, 2.0 * f, 0.0]
        raw = _pose(box) + rng.normal(0, 1.0, (k, 2))
        kp = np.column_stack([raw, rng.uniform(0.3, 0.9, k)])
        people[f].append(
            {
                "track_id": None,
                "box": _r(box),
                "box_score": 0.55,
                "keypoints": _r(kp),
                "raw_keypoints": _r(raw),
            }
        )
    doc = {
        "format": "hrstream.tracks",
        "version": 1,
        "video": {
            "name": name,
            "input": source if source is not None else f"/data/{name}.mp4",
            "width": 640,
            "height": 240,
            "fps": FPS,
            "time_base": "1/25",
            "duration_s": NUM_FRAMES / FPS,
            "num_frames": NUM_FRAMES,
            "rotation": 0,
            "is_live": False,
            "codec": "h264",
        },
        "model": {
            "name": "pose_hrnet_w32_256x192",
            "architecture": "pose_hrnet",
            "width": 32,
            "weights": None,
            "weights_sha256": None,
            "trained_on": None,
        },
        "keypoint_names": list(COCO_KEYPOINT_NAMES),
        "skeleton": [list(p) for p in COCO_SKELETON],
        "num_frames": NUM_FRAMES,
        "dropped_frames": 0,
        "tracks": tracks,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.tracks.json"
    path.write_text(json.dumps(doc))
    with (folder / f"{name}.jsonl").open("w") as fh:
        for f in range(NUM_FRAMES):
            rec = {
                "source": name,
                "frame": f,
                "pts_s": times[f],
                "captured_at": None,
                "width": 640,
                "height": 240,
                "dropped_before": 0,
                "people": people[f],
            }
            fh.write(json.dumps(rec) + "\n")
    return path
