"""Real time on a CPU: the whole ``hrstream run --task pose`` pipeline on a 1080p clip of 4 people, per backend.

For each backend (torch fp32 / bf16, ONNX Runtime, OpenVINO fp32 / bf16; bf16 only on CPUs with native bf16)
it builds the pipeline as ``hrstream run`` does (``load_networks()`` with ``runtime.backend``; the ONNX graph is
exported once into a temporary cache and checked against torch) and measures, in one run:

1. **network alone**: ``InferenceEngine.infer(normalized=True)`` (the pipeline's own call) on the clip's crops
   at the pipeline's batch size (crops/s, and frames/s = crops/s / people per frame), in a thread of its own
   as in the pipeline;
2. **infer stage alone**: what the pipeline's ``infer`` stage does, on decoded frames held in memory, one thread
   of Python: the affine crops from the 1080p frames, the network, the heatmap decoding
   (:meth:`~hrstream.pose.TopDownEstimator.estimate` of the pipeline's estimator, 4 frames a call);
3. **whole pipeline**, the real run lifecycle (:class:`~hrstream.runs.LocalExecutor`) over the clip, once with the annotated
   video (``hrstream run``'s default outputs: H.264 video, JSONL, tracks) and once without it (``--no-video``),
   with the busy fraction of every stage (``PipelineStats``): the busiest stage is what limits the run.

Decode alone and encode alone (1080p, libx264 ``veryfast``) are measured once: no backend makes a pipeline
faster than those.

The clip is ``tests/data/videos/two_people_1080p30.mp4`` (1920x1080 H.264, 72 frames) with ``--people`` (4)
person boxes a frame (``bench_fixtures.synthetic_boxes``, as in ``pipeline_benchmark.py``) through the ``file:``
detector, so that the pose pipeline is measured, not a detector; ``--synthetic`` renders the synthetic world
at 1080p instead (``hrstream synth``, ``--people`` in view, nobody walking in or out; boxes from its truth, so
people hidden behind others have none; its noisy, high-quality H.264 decodes several times slower than the
camera clip). ``--detector NAME`` runs a real detector (e.g. ``synthetic_det_hrnet_w18_small_fcos``). Flip test
off.

Usage::

    python benchmarks/realtime_benchmark.py                           # shipped synthetic Lite-HRNet-18, 128x96
    python benchmarks/realtime_benchmark.py --model litehrnet_18_coco_256x192 --random-weights
    python benchmarks/realtime_benchmark.py --backends "ORT fp32" --frames 50 --json runs/rt.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from bench_backends import randomize
from bench_fixtures import cpu_description, trim_clip, write_detections
from bench_stages import (
    in_worker_thread,
    measure_decode,
    measure_encode,
    measure_network,
    measure_pipeline,
    sample_crops,
)

from hrstream.pipeline.builder import load_networks
from hrstream.pipeline.recipe_load import load_recipe
from hrstream.runtime import cpu_has_native_bf16, usable_cpu_count
from hrstream.runtime.backend_choice import choose_backend
from hrstream.synth import SynthConfig, write_clip

log = logging.getLogger("realtime_benchmark")

#: (label, runtime.backend, runtime.amp)
CONFIGS = (
    ("torch fp32", "torch", "off"),
    ("torch bf16", "torch", "bf16"),
    ("ORT fp32", "onnxruntime", "off"),
    ("OpenVINO fp32", "openvino", "off"),
    ("OpenVINO bf16", "openvino", "bf16"),
)
CLIP = Path(__file__).resolve().parents[1] / "tests" / "data" / "videos" / "two_people_1080p30.mp4"
STAGES = ("detect_batch", "detect", "batch", "infer", "track", "draw", "write")


def camera_clip(folder: Path, clip: Path, *, frames: int, people: int) -> tuple[Path, Path]:
    """The first ``frames`` frames of ``clip`` and ``people`` synthetic person boxes a frame (COCO results)."""
    trimmed = trim_clip(clip, folder / "clip.mp4", frames)
    with av.open(str(trimmed)) as c:
        stream = c.streams.video[0]
        width, height, n = stream.codec_context.width, stream.codec_context.height, stream.frames
    return trimmed, write_detections(folder / "detections.json", n or frames, people, width, height)


def make_clip(
    folder: Path, *, frames: int, people: int, width: int, height: int, seed: int
) -> tuple[Path, Path]:
    """The synthetic clip and a COCO-results detections file of its truth boxes (``image_id`` = frame)."""
    cfg = SynthConfig(
        width=width,
        height=height,
        fps=25.0,
        num_frames=frames,
        num_people=people,
        seed=seed,
        enter_leave=False,
    )
    truth = write_clip(cfg, folder, "realtime", masks=False)
    doc = json.loads(Path(truth["tracks"]).read_text())
    records = []
    for track in doc["tracks"]:
        for frame, box in zip(track["frames"], track["boxes"], strict=True):
            x0, y0, x1, y1 = box
            records.append(
                {"image_id": frame, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 1.0}
            )
    dets = folder / "detections.json"
    dets.write_text(json.dumps(records))
    return Path(truth["video"]), dets


def infer_stage_alone(estimator: Any, images: list[np.ndarray], boxes: list[np.ndarray]) -> float:
    """Frames/s of the ``infer`` stage's work (crops, network, decoding) on frames in memory, 4 frames a call."""
    estimator.estimate(images[:4], boxes[:4])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(images), 4):
        estimator.estimate(images[i : i + 4], boxes[i : i + 4])
    return len(images) / (time.perf_counter() - t0)


def stage_busy(stats: Any) -> dict[str, float]:
    """Busy fraction of the wall time per stage name."""
    return {s.name: s.busy_s / stats.elapsed_s for s in stats.stages if stats.elapsed_s > 0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = usable_cpu_count()
    torch.set_num_threads(threads)
    out: dict[str, Any] = {"threads": threads, "rows": [], "stages": []}
    with tempfile.TemporaryDirectory(prefix="hrstream-realtime-") as tmp_s:
        tmp = Path(tmp_s)
        os.environ["HRSTREAM_HOME"] = str(tmp / "home")  # exported graphs: not the user's cache
        if args.synthetic:
            clip, dets = make_clip(
                tmp,
                frames=args.frames,
                people=args.people,
                width=args.width,
                height=args.height,
                seed=args.seed,
            )
        else:
            clip, dets = camera_clip(tmp, args.clip, frames=args.frames, people=args.people)
        row, frames = measure_decode(str(clip))
        out["decode_fps"] = row.frames_per_s
        out["encode_fps"] = measure_encode(
            frames, tmp / "encode.mp4", preset="veryfast", fps=25.0
        ).frames_per_s
        n_frames, first = len(frames), frames[0]
        out["frames"] = n_frames
        held = [f.image for f in frames[: args.held_frames]]
        del frames
        weights = args.weights
        if (
            args.random_weights
        ):  # at a trained network's scale (bench_backends.randomize), not the official init
            from safetensors.torch import save_file

            from hrstream.models import from_config

            net = from_config(args.model)
            w, h = net.spec.image_size
            state = randomize(net, size=(h, w)).state_dict()
            weights = str(tmp / "random.safetensors")
            save_file({k: v.contiguous() for k, v in state.items()}, weights)
        records = json.loads(dets.read_text())
        crops_total = sum(1 for r in records if r["image_id"] < n_frames)
        boxes = [
            np.array(
                [[x, y, x + w, y + h] for r in records if r["image_id"] == i for x, y, w, h in [r["bbox"]]]
            )
            for i in range(len(held))
        ]
        out["crops_per_frame"] = crops_total / n_frames
        for label, backend, amp in CONFIGS:
            if label not in args.backends:
                continue
            if amp == "bf16" and not cpu_has_native_bf16():
                log.info("%s skipped: no native bf16", label)
                continue
            overrides = {
                "model": args.model,
                "weights": weights,
                "runtime.device": "cpu",
                "runtime.amp": amp,
                "runtime.backend": backend,
                "runtime.batch_size": args.batch_size,
                "detector.name": args.detector or f"file:{dets}",
                "pose.flip_test": False,
            }
            recipe = load_recipe("pose", None, overrides)
            started = time.perf_counter()
            networks = load_networks(recipe, progress=False)
            build_s = time.perf_counter() - started
            pose = networks.main
            engine, meta = pose.engine, pose.bundle.meta
            w, h = pose.bundle.spec.image_size
            pool = sample_crops(first, args.people, (w, h), meta.mean, meta.std)
            bs = recipe.runtime.batch_size
            net = measure_network(
                engine,
                pool,
                batch_size=bs,
                total_crops=max(crops_total, 4 * bs),
                crops_per_frame=out["crops_per_frame"],
                name="network alone",
                role="stage",
                threads=threads,
            )
            estimator = pose.estimator.estimator  # the pipeline's TopDownEstimator
            stage_fps = in_worker_thread(functools.partial(infer_stage_alone, estimator, held, boxes))
            engine.warmup((bs, h, w, 3), iters=1)
            for video in (True, False):
                run_recipe = recipe.replace(**{"sinks.video": video})
                nets = dataclasses.replace(networks, recipe=run_recipe)
                pipe, stats = measure_pipeline(
                    nets, str(clip), tmp / f"out_{len(out['rows'])}", threads=threads
                )
                busy = stage_busy(stats)
                entry = {
                    "config": label,
                    "backend": engine.backend,
                    "precision": engine.precision,
                    "video": video,
                    "build_s": build_s,
                    "network_crops_per_s": net.crops_per_s,
                    "network_fps": net.frames_per_s,
                    "infer_stage_fps": stage_fps,
                    "pipeline_fps": pipe.frames_per_s,
                    "pipeline_crops_per_s": pipe.frames_per_s * out["crops_per_frame"],
                    "ratio": pipe.frames_per_s / net.frames_per_s,
                    "busy": busy,
                    "busiest": max(busy, key=busy.get),
                }
                out["rows"].append(entry)
                log.info(
                    "%s video=%s: pipeline %.1f frames/s, network alone %.1f frames/s, busiest %s",
                    label, video, pipe.frames_per_s, net.frames_per_s, entry["busiest"],
                )  # fmt: skip
            del networks, pose, engine
    return out


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    m = result["machine"]
    lines = [
        f"{result['started']} - {result['ended']}; CPU: {m['model_name']}, {m['usable_cores']} cores "
        f"({result['threads']} threads per library); native bf16: {'yes' if m['native_bf16'] else 'no'} "
        f"({', '.join(m['bf16_flags']) or 'no bf16 flags'}); load avg (1 min) at start {m['load_avg_1m']:.2f}, "
        f"at end {result['load_end']:.2f}; runtime.backend auto picks {result['auto']}",
        f"model {args.model} ({'random weights' if args.random_weights else 'its weights'}), clip: "
        f"{'synthetic ' + str(args.width) + 'x' + str(args.height) if args.synthetic else args.clip.name}, "
        f"{result['frames']} frames, {result['crops_per_frame']:.2f} people per frame "
        f"({'truth' if args.synthetic else 'synthetic'} boxes, file detector), batch {args.batch_size or 'recipe'}, "
        "flip test off",
        f"decode alone {result['decode_fps']:.1f} frames/s, encode alone (libx264 veryfast) "
        f"{result['encode_fps']:.1f} frames/s",
        "",
        "| backend | video | pipeline frames/s | crops/s | network alone frames/s (crops/s) | infer stage alone "
        "frames/s | pipeline / network | " + " | ".join(STAGES) + " | busiest |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in STAGES) + " | --- |",
    ]
    for r in result["rows"]:
        busy = " | ".join(f"{r['busy'].get(s, 0.0):.2f}" for s in STAGES)
        lines.append(
            f"| {r['config']} | {'yes' if r['video'] else 'no'} | {r['pipeline_fps']:.1f} | "
            f"{r['pipeline_crops_per_s']:.0f} | {r['network_fps']:.1f} ({r['network_crops_per_s']:.0f}) | "
            f"{r['infer_stage_fps']:.1f} | {r['ratio']:.2f} | {busy} | {r['busiest']} |"
        )
    lines.append("")
    lines.append("stage columns: busy fraction of the pipeline's wall time (own work of the stage's thread)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="synthetic_litehrnet_18_128x96")
    ap.add_argument("--weights", default=None, help="default: the config's registered weights")
    ap.add_argument(
        "--random-weights", action="store_true", help="random weights (speed does not depend on them)"
    )
    ap.add_argument("--backends", nargs="+", default=[c[0] for c in CONFIGS], help="labels of CONFIGS")
    ap.add_argument("--clip", type=Path, default=CLIP, help="a 1080p video (default: the two-people clip)")
    ap.add_argument("--synthetic", action="store_true", help="render the synthetic world instead of --clip")
    ap.add_argument("--frames", type=int, default=100, help="frames of the clip (at most its length)")
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--seed", type=int, default=424242)
    ap.add_argument(
        "--held-frames", type=int, default=40, help="decoded frames for the infer-stage-alone row"
    )
    ap.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (16)")
    ap.add_argument("--detector", default=None, help="default: the truth boxes (file: detector)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("hrstream", "onnxscript", "onnx_ir", "libav"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    machine = cpu_description()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    result = run(args)
    from hrstream.models import from_config

    choice = choose_backend("auto", from_config(args.model), torch.device("cpu"), "auto")
    result.update(
        machine=machine,
        started=started,
        ended=time.strftime("%H:%M"),
        load_end=os.getloadavg()[0],
        auto=f"{choice.name} {choice.precision} ({choice.reason})",
    )
    print(render(result, args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
