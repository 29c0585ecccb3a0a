"""COCO box AP of a det_hrnet person detector on a COCO dataset (for example `hrstream synth DIR --coco`).

    python benchmarks/synthetic_det_ap.py DATA_DIR [--model NAME|CONFIG] [--weights NAME|PATH] [--flip-test]
        [--nms-iou IOU]

DATA_DIR holds images/ and annotations.json. Prints pycocotools' person-box AP, AP .5, AP .75 and AR 100
(every visible-pixel box is a target, slivers included); `--flip-test` fuses each image's boxes with its
mirror image's, as `detector.flip_test` does in the pipeline; `--nms-iou` replaces the config's NMS_THRESH, as
a recipe's `detector.nms_iou` does (pipelines/synthetic.yaml: 0.8).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hrstream.models.bundle import load_model_bundle
from hrstream.train.det import validate_det


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--model", default="synthetic_det_hrnet_w18_small_fcos")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--flip-test", action="store_true", help="fuse with the mirror image's boxes")
    ap.add_argument(
        "--nms-iou", type=float, default=None, help="the network's NMS IoU (default: the config's)"
    )
    args = ap.parse_args(argv)
    bundle = load_model_bundle(args.model, args.weights, task="det", progress=False)
    if args.nms_iou is not None:
        bundle.model.nms_thresh = args.nms_iou
    metrics = validate_det(
        bundle.model,
        args.data_dir / "annotations.json",
        args.data_dir / "images",
        device=torch.device("cpu"),
        flip_test=args.flip_test,
    )
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
