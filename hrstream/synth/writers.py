"""Files made from synthetic clips: a video with its ground-truth tracks and masks, and COCO datasets.

* :func:`write_clip`: ``NAME.mp4`` (H.264, near-lossless), ``NAME.tracks.json`` (the ground truth in the
  shape of hrstream's pose output, so predictions and truth compare directly) and ``NAME_masks/`` (16-bit
  PNG instance masks, ``000000.png`` per frame: 0 background, else the ``track_id``).
* :func:`write_coco_dataset`: ``images/*.jpg``, ``masks/*.png`` (0/1 person masks named as the images) and
  ``annotations.json`` in the COCO keypoints format.

Coordinates in every file: pixel centres at integers, the top-left pixel's centre at (0, 0).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from hrstream.errors import InputError
from hrstream.io import output_path, write_json_atomic
from hrstream.io.video_writer import VideoWriter
from hrstream.models.datasets_meta import COCO_KEYPOINT_NAMES, COCO_SKELETON
from hrstream.synth.config import SynthConfig
from hrstream.synth.generate import generate

__all__ = ["read_truth_tracks", "write_clip", "write_coco_dataset"]

log = logging.getLogger(__name__)

TRUTH_MODEL = {
    "name": "synthetic-ground-truth",
    "architecture": "synth",
    "width": None,
    "weights": None,
    "weights_sha256": None,
    "trained_on": None,
}


def _r(x: Any, nd: int = 3) -> list:
    return np.round(np.asarray(x, dtype=np.float64), nd).tolist()


def _time_base(fps: float) -> Fraction:
    return 1 / Fraction(fps).limit_denominator(1001)


def write_clip(config: SynthConfig, out_dir: str | Path, name: str, *, crf: int = 12,
               masks: bool = True) -> dict[str, Path]:  # fmt: skip
    """Render ``config`` to ``out_dir/NAME.mp4`` with its ground truth; returns ``{"video", "tracks", "masks"}``.

    The tracks document (``NAME.tracks.json``) validates against hrstream's ``tracks`` schema: per track
    ``frames``, ``times`` (``frame / fps``), ``boxes`` (xyxy of the visible pixels), ``box_scores`` (1.0),
    ``keypoints`` = ``smoothed`` (the exact joints) and ``scores`` (1.0 where the joint is inside the
    frame, visibility > 0, else 0.0). COCO visibility (0/1/2) per track and frame is in the top-level
    ``"visibility"`` object keyed by the track id as a string (the schema allows no extra keys in a track),
    and the config in ``"synth"``. Frame ``i`` of the video has PTS ``i`` in time base ``1 / fps``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"video": output_path(out, name, ".mp4"), "tracks": output_path(out, name, ".tracks.json")}
    if masks:
        paths["masks"] = output_path(out, name, "_masks")
        paths["masks"].mkdir(exist_ok=True)
    tb = _time_base(config.fps)
    tracks: dict[int, dict[str, list]] = {}
    vis_doc: dict[str, list] = {}
    n = 0
    with VideoWriter(paths["video"], width=config.width, height=config.height, time_base=tb,
                     fps=float(config.fps), preset="veryfast", crf=crf) as writer:  # fmt: skip
        for fr in generate(config):
            writer.write(fr.image, pts=fr.index, time_base=tb)
            if masks and not cv2.imwrite(str(paths["masks"] / f"{fr.index:06d}.png"), fr.instance_mask):
                raise InputError(f"{paths['masks']}: cannot write mask PNGs; check the folder is writable")
            t = float(fr.index * tb)
            for i, tid in enumerate(fr.track_ids.tolist()):
                tr = tracks.setdefault(
                    tid, {k: [] for k in ("frames", "times", "boxes", "box_scores", "keypoints", "scores")}
                )
                tr["frames"].append(fr.index)
                tr["times"].append(t)
                tr["boxes"].append(_r(fr.boxes[i]))
                tr["box_scores"].append(1.0)
                tr["keypoints"].append(_r(fr.keypoints[i]))
                tr["scores"].append((fr.visibility[i] > 0).astype(np.float64).tolist())
                vis_doc.setdefault(str(tid), []).append(fr.visibility[i].astype(int).tolist())
            n += 1
    doc = {
        "format": "hrstream.tracks",
        "version": 1,
        "video": {
            "name": name,
            "input": str(paths["video"]),
            "width": config.width,
            "height": config.height,
            "fps": float(config.fps),
            "time_base": str(tb),
            "duration_s": n / float(config.fps),
            "num_frames": n,
            "rotation": 0,
            "is_live": False,
            "codec": "h264",
        },
        "model": dict(TRUTH_MODEL),
        "keypoint_names": list(COCO_KEYPOINT_NAMES),
        "skeleton": [list(p) for p in COCO_SKELETON],
        "num_frames": n,
        "dropped_frames": 0,
        "tracks": [
            {"track_id": tid, **tr, "smoothed": tr["keypoints"]} for tid, tr in sorted(tracks.items())
        ],
        "visibility": vis_doc,
        "synth": config.to_dict(),
    }
    write_json_atomic(paths["tracks"], doc, indent=None)
    log.info("synthetic clip %s: %d frames, %d identities", paths["video"], n, len(tracks))
    return paths


def read_truth_tracks(path: str | Path) -> dict[int, dict[str, np.ndarray]]:
    """Load a tracks document (truth or prediction) as ``{track_id: arrays}``.

    Arrays: ``frames`` int64 (T,), ``times`` float64 (T,), ``boxes`` float32 (T, 4), ``keypoints`` float32
    (T, 17, 2), ``scores`` float32 (T, 17) and, when the document has it, ``visibility`` uint8 (T, 17).
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read a tracks document ({e}); pass a NAME.tracks.json") from None
    if doc.get("format") != "hrstream.tracks":
        raise InputError(f"{path}: not an hrstream tracks document (format {doc.get('format')!r})")
    vis = doc.get("visibility", {})
    out: dict[int, dict[str, np.ndarray]] = {}
    for tr in doc["tracks"]:
        tid = int(tr["track_id"])
        k = len(doc["keypoint_names"])
        arr = {
            "frames": np.asarray(tr["frames"], np.int64),
            "times": np.asarray([np.nan if t is None else t for t in tr["times"]], np.float64),
            "boxes": np.asarray(tr["boxes"], np.float32).reshape(-1, 4),
            "keypoints": np.asarray(tr["keypoints"], np.float32).reshape(-1, k, 2),
            "scores": np.asarray(tr["scores"], np.float32).reshape(-1, k),
        }
        if str(tid) in vis:
            arr["visibility"] = np.asarray(vis[str(tid)], np.uint8).reshape(-1, k)
        out[tid] = arr
    return out


def _configs(spec: Sequence[SynthConfig] | tuple[SynthConfig, int]) -> list[SynthConfig]:
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], SynthConfig):
        base, count = spec
        from dataclasses import replace

        return [replace(base, seed=int(base.seed) + i) for i in range(int(count))]
    configs = list(spec)
    if not all(isinstance(c, SynthConfig) for c in configs):
        raise InputError("write_coco_dataset: pass a list of SynthConfig or a (SynthConfig, num_clips) tuple")
    return configs


def write_coco_dataset(configs: Sequence[SynthConfig] | tuple[SynthConfig, int], out_dir: str | Path, *,
                       every_n: int = 1, min_area: int = 1, jpeg_quality: int = 95) -> Path:  # fmt: skip
    """Render clips into a COCO keypoints dataset in ``out_dir``; returns the ``annotations.json`` path.

    ``configs``: a list of configs, or ``(config, num_clips)`` for clips with seeds ``seed, seed+1, ...``.
    Every ``every_n``-th frame becomes an image ``images/CCCC_FFFFFF.jpg`` (clip and frame index) with a
    0/1 ``uint8`` person mask ``masks/CCCC_FFFFFF.png``. People with at least ``min_area`` visible pixels
    get an annotation: ``keypoints`` ``[x, y, v] * 17`` (v as COCO; x = y = 0 where v = 0, as COCO does),
    ``num_keypoints`` (v > 0), ``bbox`` xywh of the visible pixels, ``area`` (visible pixels),
    ``segmentation`` (RLE of the visible pixels), ``iscrowd`` 0 and ``track_id``.
    """
    if every_n < 1:
        raise InputError(f"write_coco_dataset: every_n must be >= 1, got {every_n}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    anns: list[dict] = []
    for ci, cfg in enumerate(_configs(configs)):
        for fr in generate(cfg):
            if fr.index % every_n:
                continue
            stem = f"{ci:04d}_{fr.index:06d}"
            image_id = len(images) + 1
            ok = cv2.imwrite(str(out / "images" / f"{stem}.jpg"), cv2.cvtColor(fr.image, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])  # fmt: skip
            ok &= cv2.imwrite(str(out / "masks" / f"{stem}.png"), (fr.instance_mask > 0).astype(np.uint8))
            if not ok:
                raise InputError(f"{out}: cannot write images; check the folder is writable and has space")
            images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": cfg.width, "height": cfg.height,
                           "clip": ci, "frame_index": fr.index, "seed": cfg.seed})  # fmt: skip
            for i, tid in enumerate(fr.track_ids.tolist()):
                area = int(fr.areas[i])
                if area < min_area:
                    continue
                v = fr.visibility[i].astype(np.float64)
                xy = np.where(v[:, None] > 0, fr.keypoints[i].astype(np.float64), 0.0)
                kp = np.concatenate([np.round(xy, 2), v[:, None]], axis=1).reshape(-1)
                x0, y0, x1, y1 = (float(b) for b in fr.boxes[i])
                rle = mask_utils.encode(np.asfortranarray((fr.instance_mask == tid).astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                anns.append({
                    "id": len(anns) + 1, "image_id": image_id, "category_id": 1,
                    "keypoints": kp.tolist(), "num_keypoints": int((v > 0).sum()),
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "area": area, "segmentation": rle, "iscrowd": 0, "track_id": int(tid),
                })  # fmt: skip
    doc = {
        "info": {"description": "hrstream synthetic people", "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "supercategory": "person",
                "keypoints": list(COCO_KEYPOINT_NAMES),
                "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON],
            }
        ],  # fmt: skip
    }
    path = out / "annotations.json"
    write_json_atomic(path, doc, indent=None)
    log.info("synthetic COCO dataset %s: %d images, %d people", out, len(images), len(anns))
    return path
