"""What int8 (and bf16) cost the shipped pose networks: PCK@0.1 and keypoints within one heatmap pixel of fp32.

For every shipped trained pose network (``hrstream/weights``: the synthetic_* pose entries), on the evaluation
clips of ``docs/accuracy.md`` (``hrstream synth EVAL --clips 10 --seed 5000 --seconds 8 --people 2-5 --width 640
--height 360``, rendered here in memory: the same frames before video encoding), the network runs on the
crops of every true person box (at least one visible keypoint) the way ``pipelines/synthetic.yaml`` runs it:
the official affine crop padded 1.25, flip test on, msra decoding. Each precision sees the same crops:

* ``fp32``: torch, the reference;
* ``bf16 torch``: torch bf16 autocast (what ``--amp auto`` runs on a CPU with native bf16 and ``--backend
  torch``);
* ``bf16 OpenVINO``: the OpenVINO backend in bf16 (what ``--backend auto`` runs for Lite-HRNet there);
* ``int8``: ``--amp int8`` (OpenVINO, NNCF-quantized on the default calibration: 300 crops of the synthetic
  training clips, :mod:`hrstream.runtime.quantize`; its float rest in bf16 where the CPU has it).

Per precision: **PCK@0.1** (a visible true keypoint is correct within 0.1 x the longer side of its true box,
as ``hrstream eval tracks`` counts it, here with every person's true box given) and the **share of visible
keypoints whose heatmap maximum lies within one heatmap pixel of fp32's** (Chebyshev distance of the argmax of
the flip-merged heatmaps the decoder reads; the rule ``tests/test_shipped_models.py`` applies to bf16). bf16
columns are skipped on CPUs without native bf16.

Usage::

    python benchmarks/int8_accuracy.py --every 2 --json runs/int8_accuracy.json   # docs/accuracy.md
    python benchmarks/int8_accuracy.py --clips 2 --every 4     # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_fixtures import cpu_description, cpu_line
from bench_stages import in_worker_thread

from hrstream.models.bundle import load_model_bundle
from hrstream.models.hub import is_shipped
from hrstream.models.registry import list_weights
from hrstream.pose import TopDownEstimator, flip_test_merge
from hrstream.runtime import InferenceEngine, cpu_has_native_bf16
from hrstream.synth import SynthConfig, generate

log = logging.getLogger("int8_accuracy")

PRECISIONS = ("fp32", "bf16 torch", "bf16 OpenVINO", "int8")
#: precision -> (backend, amp) of InferenceEngine
ENGINES = {
    "fp32": ("torch", "off"),
    "bf16 torch": ("torch", "bf16"),
    "bf16 OpenVINO": ("openvino", "bf16"),
    "int8": ("openvino", "int8"),
}


def shipped_pose_models() -> list[str]:
    return [e.config for e in list_weights() if is_shipped(e) and e.task == "pose"]


def eval_frames(clips: int, seed: int, every: int) -> list[Any]:
    """Every ``every``-th frame of the evaluation clips (``hrstream synth EVAL --clips N --seed S --seconds 8
    --people 2-5 --width 640 --height 360``), with its truth."""
    frames = []
    for i in range(clips):
        cfg = SynthConfig(width=640, height=360, fps=25.0, duration_s=8.0, num_people=(2, 5), seed=seed + i)
        frames += [f for f in generate(cfg) if f.index % every == 0]
    return frames


def measure(
    name: str, frames: list[Any], precisions: list[str], batch: int, threads: int
) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)  # in this thread; the backends take torch's thread count
    bundle = load_model_bundle(name, None, task="pose", progress=False)
    meta, spec = bundle.meta, bundle.spec
    h, w = meta.input_size or (spec.image_size[1], spec.image_size[0])
    est = TopDownEstimator(
        lambda x: x,
        input_size=(int(w), int(h)),
        mean=meta.mean,
        std=meta.std,
        flip_pairs=list(meta.flip_pairs),
        flip_test=True,
        decoder=meta.decoder,
    )
    people = [(f, (f.visibility == 2).any(1)) for f in frames]
    people = [(f, keep) for f, keep in people if keep.any()]
    truth_kpts = np.concatenate([f.keypoints[keep] for f, keep in people])
    truth_vis = np.concatenate([f.visibility[keep] for f, keep in people]) == 2
    truth_box = np.concatenate([f.boxes[keep] for f, keep in people])
    size = np.maximum(truth_box[:, 2] - truth_box[:, 0], truth_box[:, 3] - truth_box[:, 1])
    rows, ref_peaks = [], None
    for precision in precisions:
        backend, amp = ENGINES[precision]
        started = time.perf_counter()
        engine = InferenceEngine(
            bundle.model, device="cpu", amp=amp, backend=backend, mean=meta.mean, std=meta.std
        )
        built = time.perf_counter() - started
        kpts, peaks = [], []
        started = time.perf_counter()
        for i in range(0, len(people), batch):
            chunk = people[i : i + batch]
            crops = est.prepare([f.image for f, _ in chunk], [f.boxes[keep] for f, keep in chunk])
            hm = torch.cat([engine.infer(c) for c in crops.chunks(2 * batch)])
            n = crops.total
            merged = est.decode(crops, hm)
            kpts += [p.keypoints for p in merged]
            fused = flip_test_merge(hm[:n], hm[n:], est.flip_pairs, shift=True)
            k, hh, ww = fused.shape[1:]
            arg = fused.reshape(n, k, -1).argmax(-1)
            peaks.append(torch.stack([arg % ww, arg // ww], -1).numpy())
        took = time.perf_counter() - started
        pred = np.concatenate(kpts)
        peak = np.concatenate(peaks)
        dist = np.linalg.norm(pred - truth_kpts, axis=-1)
        pck = float((dist <= 0.1 * size[:, None])[truth_vis].mean())
        if ref_peaks is None:
            ref_peaks = peak
        within = float((np.abs(peak - ref_peaks).max(-1)[truth_vis] <= 1).mean())
        rows.append(
            {"model": name, "precision": precision, "backend": engine.backend, "pck_0.1": pck,
             "within_1px_of_fp32": within, "people": len(truth_kpts), "visible_keypoints": int(truth_vis.sum()),
             "build_s": round(built, 1), "run_s": round(took, 1)}
        )  # fmt: skip
        log.info("%s %s: PCK@0.1 %.4f, within 1 px of fp32 %.4f (%.0f s)", name, precision, pck, within, took)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | precision | PCK@0.1 | vs fp32 | visible keypoints within 1 heatmap px of fp32 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    ref = {r["model"]: r["pck_0.1"] for r in rows if r["precision"] == "fp32"}
    for r in rows:
        delta = r["pck_0.1"] - ref[r["model"]]
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['pck_0.1']:.4f} | {delta:+.4f} | "
            f"{100 * r['within_1px_of_fp32']:.2f}% |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=None, help="default: every shipped pose network")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--seed", type=int, default=5000, help="first clip's seed (evaluation clips: 5000)")
    ap.add_argument("--every", type=int, default=1, help="every N-th frame")
    ap.add_argument("--batch", type=int, default=16, help="frames per network call")
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch / OpenVINO threads (1: steady on a shared machine)"
    )
    ap.add_argument("--keep-cache", action="store_true", help="use $HRSTREAM_HOME, not a fresh cache")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("hrstream", "onnxscript", "onnx_ir", "nncf"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    precisions = [p for p in args.precisions if "bf16" not in p or cpu_has_native_bf16()]
    machine = cpu_description()
    started = datetime.datetime.now().astimezone()
    frames = eval_frames(args.clips, args.seed, args.every)
    with tempfile.TemporaryDirectory(prefix="int8_accuracy_") as home:
        if not args.keep_cache:
            os.environ["HRSTREAM_HOME"] = home
        rows = [  # in a thread of its own, as the pipeline runs its network (bench_stages.in_worker_thread)
            r
            for m in args.models or shipped_pose_models()
            for r in in_worker_thread(lambda m=m: measure(m, frames, precisions, args.batch, args.threads))
        ]
    ended = datetime.datetime.now().astimezone()
    print(f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} {started:%Z}; {cpu_line(machine)}")
    print(
        f"clips: seeds {args.seed}-{args.seed + args.clips - 1}, every {args.every} frame(s), {len(frames)} frames; "
        f"{rows[0]['people']} people, {rows[0]['visible_keypoints']} visible keypoints"
    )
    print()
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "args": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
