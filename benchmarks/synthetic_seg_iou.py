"""Person IoU of a person/background segmentation network on synthetic clips with their instance masks.

    python benchmarks/synthetic_seg_iou.py TRUTH_DIR [--seg-model NAME|CONFIG] [--seg-weights W]

TRUTH_DIR holds NAME.mp4 and NAME_masks/{index:06d}.png (16-bit instance ids, 0 = background) from
`hrstream synth`. Prints per-clip and overall person IoU, background IoU and mIoU over the two classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from hrstream.io import open_source
from hrstream.models.bundle import load_model_bundle
from hrstream.pipeline.estimators import segmentation_estimator
from hrstream.pipeline.recipe_load import load_recipe
from hrstream.runtime import InferenceEngine


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
    estimator = segmentation_estimator(engine, bundle, load_recipe("seg").seg, batch_size=4).estimator
    person = bundle.meta.classes.index("person")
    total = np.zeros((2, 2), np.int64)  # [class][intersection, union]
    print("| clip | frames | person IoU | background IoU |")
    print("| --- | ---: | ---: | ---: |")
    for video in sorted(args.truth_dir.glob("*.mp4")):
        masks = video.with_name(video.stem + "_masks")
        with open_source(str(video)) as src:
            frames = list(src)
        clip = np.zeros((2, 2), np.int64)
        for i in range(0, len(frames), 8):
            batch = frames[i : i + 8]
            for f, lab in zip(batch, estimator.predict([f.image for f in batch]), strict=True):
                truth = cv2.imread(str(masks / f"{f.index:06d}.png"), cv2.IMREAD_UNCHANGED) > 0
                pred = lab == person
                for c, (t, p) in enumerate(((~truth, ~pred), (truth, pred))):
                    clip[c] += (int(np.sum(t & p)), int(np.sum(t | p)))
        total += clip
        print(
            f"| {video.stem} | {len(frames)} | {clip[1, 0] / clip[1, 1]:.3f} | {clip[0, 0] / clip[0, 1]:.3f} |"
        )
    iou = total[:, 0] / total[:, 1]
    print(f"| all | | {iou[1]:.3f} | {iou[0]:.3f} |")
    print(f"mIoU (background, person): {iou.mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
