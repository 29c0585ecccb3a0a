"""Choose the `--detector seg` parameters (min_area, merge_px) on tuning clips (never on evaluation clips).

Runs the segmentation network over synthetic clips, turns each label map into person boxes with
:func:`hrstream.seg.boxes_from_segmentation` for every parameter pair, and matches the boxes to the true boxes
(Hungarian on IoU >= 0.5, as the tracking metrics do): precision and recall of the detector alone.

    python benchmarks/tune_seg_boxes.py TRUTH_DIR --seg-weights W.safetensors
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from hrstream.io import open_source
from hrstream.metrics import box_iou, match_boxes
from hrstream.models.bundle import load_model_bundle
from hrstream.pipeline.estimators import segmentation_estimator
from hrstream.pipeline.recipe_load import load_recipe
from hrstream.runtime import InferenceEngine
from hrstream.seg import boxes_from_segmentation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("truth_dir", type=Path)
    ap.add_argument("--seg-model", default="synthetic_seg_hrnet_w18_small")
    ap.add_argument("--seg-weights", default=None)
    args = ap.parse_args(argv)
    bundle = load_model_bundle(args.seg_model, args.seg_weights, task="seg", progress=False)
    engine = InferenceEngine(
        bundle.model, device="cpu", amp="off", mean=bundle.meta.mean, std=bundle.meta.std
    )
    recipe = load_recipe("seg")
    estimator = segmentation_estimator(
        engine, bundle, recipe.seg, batch_size=recipe.runtime.batch_size
    ).estimator
    person = [bundle.meta.classes.index("person")]
    grid = list(itertools.product([50, 150, 400], [0, 2, 4, 8]))
    counts = {g: [0, 0, 0] for g in grid}  # matched, predicted, true
    for truth_path in sorted(args.truth_dir.glob("*.tracks.json")):
        truth = json.loads(truth_path.read_text())
        vis = truth.get("visibility", {})
        per_frame: dict[int, list[list[float]]] = {}
        for tr in truth["tracks"]:
            v = vis.get(str(tr["track_id"]))
            for j, f in enumerate(tr["frames"]):
                if v is None or any(x == 2 for x in v[j]):
                    per_frame.setdefault(f, []).append(tr["boxes"][j])
        video = truth_path.with_name(truth_path.name.replace(".tracks.json", ".mp4"))
        with open_source(str(video)) as src:
            frames = list(src)
        labels = []
        for i in range(0, len(frames), 8):
            labels += estimator.predict([f.image for f in frames[i : i + 8]])
        for f, lab in zip(frames, labels, strict=True):
            true = np.asarray(per_frame.get(f.index, []), np.float64).reshape(-1, 4)
            for g in grid:
                boxes, _ = boxes_from_segmentation(lab, person, min_area=g[0], merge_px=g[1])
                m = match_boxes(box_iou(true, np.asarray(boxes, np.float64).reshape(-1, 4)), 0.5)
                c = counts[g]
                c[0] += len(m)
                c[1] += len(boxes)
                c[2] += len(true)
    print("| min_area | merge_px | precision | recall |")
    print("| ---: | ---: | ---: | ---: |")
    for g, (m, p, t) in counts.items():
        print(f"| {g[0]} | {g[1]} | {m / max(p, 1):.3f} | {m / max(t, 1):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
