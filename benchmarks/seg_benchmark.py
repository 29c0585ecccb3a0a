"""Runtime benchmark of ``hrstream run --task seg``: each stage alone, the whole pipeline, a naive loop.

In ONE run on ONE clip it measures decode alone, encode alone, the network alone at the pipeline's batch
size (``SegmentationEstimator.predict`` through ``InferenceEngine.infer(normalized=True)``, the pipeline's
own call: resize, network, bilinear upsampling, argmax), the whole pipeline (the real ``load_networks()`` +
``Networks.build()`` + ``run_inputs()`` path, label maps and JSONL included as the recipe asks), and a naive
loop with the structure of the official HRNet segmentation test (one frame at a time, fp32, NCHW,
synchronous; numpy preprocessing; overlay and encode inline). It prints a markdown table and the ratios
pipeline / slowest stage and pipeline / naive loop (and writes JSON with ``--json``).

Frames are resized to the config's ``TEST.IMAGE_SIZE`` (2048x1024 for the Cityscapes models) keeping the
aspect ratio, or to ``--test-size WxH``. Weights are random (speed does not depend on them), saved to a
temporary safetensors file; it measures speed, not accuracy. Timing conventions as in
``pipeline_benchmark.py``: the pipeline and the network alone use all cores but ``--reserved-threads``,
the naive loop all cores (``--naive-threads`` to change: on a loaded machine more threads than free
cores slow torch down several times over, so compare at equal threads there); one untimed warm-up call precedes the network and naive measurements.

Usage::

    python benchmarks/seg_benchmark.py                                   # W18, 2048x1024, 4 frames
    python benchmarks/seg_benchmark.py --model seg_hrnet_w48_cityscapes --json runs/seg_w48.json
    python benchmarks/seg_benchmark.py --frames 2 --test-size 512x256    # quick check
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from bench_fixtures import cpu_description, trim_clip, write_random_weights
from bench_stages import Row, in_worker_thread, measure_decode, measure_encode, measure_pipeline
from torch import nn

from hrstream.io import VideoWriter, open_source
from hrstream.models import from_config, load_weights
from hrstream.models.meta import WeightsMeta
from hrstream.pipeline.builder import load_networks
from hrstream.pipeline.recipe_load import load_recipe
from hrstream.runtime import PipelineStats, usable_cpu_count
from hrstream.seg import SegmentationEstimator, overlay
from hrstream.types import Frame

log = logging.getLogger("seg_benchmark")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO / "tests" / "data" / "videos" / "street_960x540_5fps.mp4"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WxH such as 1024x512, got {text!r}") from exc
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"sides must be positive, got {text!r}")
    return w, h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default=str(DEFAULT_CLIP), help="video file (default: the 960x540 street clip)")
    p.add_argument("--frames", type=int, default=4, help="frames of the clip to use (default 4)")
    p.add_argument("--model", default="seg_hrnet_w18_cityscapes", help="registered segmentation config")
    p.add_argument(
        "--test-size",
        type=_size,
        default=None,
        help="network input WxH, aspect kept (default: the config's TEST.IMAGE_SIZE)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="frames per network call (default: recipe)")
    p.add_argument("--amp", choices=["off", "bf16"], default="off", help="precision of the pipeline")
    p.add_argument("--preset", default=None, help="libx264 preset (default: the recipe's)")
    p.add_argument("--queue-size", type=int, default=None, help="pipeline queue size (default: the recipe's)")
    p.add_argument(
        "--reserved-threads",
        type=int,
        default=1,
        help="cores kept from torch in the pipeline, as the runner does (default 1)",
    )
    p.add_argument(
        "--naive-threads",
        type=int,
        default=None,
        help="torch threads of the naive loop (default: all usable cores)",
    )
    p.add_argument("--json", dest="json_out", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error("--frames must be >= 1")
    return args


def measure_seg_network(
    estimator: SegmentationEstimator, frames: list[Frame], *, batch_size: int, threads: int, amp: str
) -> Row:
    """``estimator.predict`` over ``frames`` in calls of ``batch_size`` frames (the last one partial, as
    in the pipeline); one untimed warm-up call on the first batch."""
    torch.set_num_threads(threads)
    images = [f.image for f in frames]
    estimator.predict(images[:batch_size])
    t0 = time.perf_counter()
    for start in range(0, len(images), batch_size):
        estimator.predict(images[start : start + batch_size])
    dt = time.perf_counter() - t0
    w, h = estimator.input_size(frames[0].width, frames[0].height)
    settings = {
        "input": f"{w}x{h}",
        "amp": amp,
        "channels_last": True,
        "batch": batch_size,
        "threads": threads,
    }
    return Row(
        "network alone (predict, as in the pipeline)",
        "stage",
        len(images) / dt,
        dt,
        len(images),
        settings=settings,
    )


def measure_seg_naive(
    clip: str,
    model: nn.Module,
    out: Path,
    *,
    input_size: tuple[int, int],
    meta: WeightsMeta,
    align_corners: bool,
    opacity: float,
    preset: str,
    threads: int,
) -> Row:
    """The official test structure: one frame at a time, fp32, NCHW, synchronous.

    Per frame: decode (PyAV), ``cv2.resize`` (bilinear) to ``input_size`` ``(w, h)``, ``/ 255``, mean/std
    in numpy, HWC -> CHW, network, bilinear upsampling of the logits to the frame size, argmax, overlay
    and encode inline. One untimed warm-up call of the network at batch 1 comes first.
    """
    torch.set_num_threads(threads)
    model = model.eval()
    mean = np.asarray(meta.mean, np.float32)
    std = np.asarray(meta.std, np.float32)
    palette = np.asarray(meta.palette, np.uint8).reshape(-1, 3)
    classes = list(meta.classes)

    def forward(x: torch.Tensor) -> torch.Tensor:
        y = model(x)
        return y[-1] if isinstance(y, (list, tuple)) else y

    n_frames = 0
    with torch.no_grad():
        forward(torch.zeros((1, 3, input_size[1], input_size[0]), dtype=torch.float32))
        t0 = time.perf_counter()
        with open_source(clip) as src:
            info = src.info
            writer = VideoWriter(
                out,
                width=info.width,
                height=info.height,
                time_base=info.time_base,
                fps=info.fps,
                preset=preset,
            )
            with writer:
                for frame in src:
                    img = cv2.resize(frame.image, input_size, interpolation=cv2.INTER_LINEAR)
                    img = (img.astype(np.float32) / 255.0 - mean) / std
                    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).unsqueeze(0)
                    logits = F.interpolate(
                        forward(x),
                        size=(frame.height, frame.width),
                        mode="bilinear",
                        align_corners=align_corners,
                    )
                    labels = logits[0].argmax(dim=0).to(torch.uint8).numpy()
                    image = overlay(frame.image, labels, palette, opacity=opacity, classes=classes)
                    writer.write(image, pts=frame.pts, time_base=frame.time_base)
                    n_frames += 1
        dt = time.perf_counter() - t0
    settings = {
        "input": f"{input_size[0]}x{input_size[1]}",
        "amp": "off",
        "channels_last": False,
        "batch": 1,
        "threads": threads,
        "preset": preset,
    }
    return Row(
        "naive loop (official test structure)", "naive", n_frames / dt, dt, n_frames, settings=settings
    )


def _stage_table(stats: PipelineStats) -> list[dict[str, Any]]:
    rows = []
    for s in stats.stages:
        q = s.out_queue
        rows.append(
            {
                "stage": s.name,
                "items_in": s.items_in,
                "items_out": s.items_out,
                "busy_s": round(s.busy_s, 3),
                "busy_frac": round(s.busy_s / stats.elapsed_s, 3) if stats.elapsed_s > 0 else 0.0,
                "queue_max_depth": None if q is None else q.max_depth,
                "queue_size": None if q is None else q.maxsize,
            }
        )
    return rows


def render(
    rows: list[Row], stages: list[dict[str, Any]], ratios: dict[str, Any], machine: dict[str, Any]
) -> str:
    """The markdown report printed to stdout."""
    out = [
        f"machine: {machine['model_name']}, {machine['usable_cores']} usable cores, torch {torch.__version__}, "
        f"load avg (1 min) at start {machine['load_avg_1m']:.2f}, at end {machine['load_avg_1m_end']:.2f}",
        f"model: {ratios['model']}, clip: {ratios['clip']} ({ratios['frame_size']}), "
        f"network input {ratios['input_size']}",
        "",
        "| measurement | role | frames/s | frames | seconds | settings |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r.settings.items())
        out.append(
            f"| {r.name} | {r.role} | {r.frames_per_s:.3f} | {r.frames} | {r.seconds:.2f} | {settings} |"
        )
    out += [
        "",
        "pipeline stages (busy_s: time in the stage's own work; busy_frac: of the pipeline's wall time)",
        "",
        "| stage | in | out | busy_s | busy_frac | queue max / size |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in stages:
        q = "" if s["queue_size"] is None else f"{s['queue_max_depth']} / {s['queue_size']}"
        out.append(
            f"| {s['stage']} | {s['items_in']} | {s['items_out']} | {s['busy_s']:.2f} | {s['busy_frac']:.2f} | {q} |"
        )
    out += [
        "",
        f"slowest stage alone: {ratios['slowest_stage']} ({ratios['slowest_stage_fps']:.3f} frames/s)",
        f"pipeline / slowest stage = {ratios['pipeline_over_slowest']:.2f}",
        f"pipeline / naive loop    = {ratios['pipeline_over_naive']:.2f}",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("libav", "hrstream"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    machine = cpu_description()
    cores = usable_cpu_count()
    pipe_threads = (
        cores if cores <= 2 else max(1, cores - int(args.reserved_threads))
    )  # as configure_cpu_threads
    naive_threads = max(1, int(args.naive_threads or cores))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hrstream-segbench-") as tmp_s:
        tmp = Path(tmp_s)
        clip = str(trim_clip(args.clip, tmp / "clip.mp4", args.frames))
        weights = write_random_weights(args.model, tmp / f"{args.model}.random.safetensors")
        overrides = {
            "model": args.model,
            "weights": str(weights),
            "runtime.device": "cpu",
            "runtime.amp": args.amp,
            "runtime.batch_size": args.batch_size,
            "runtime.queue_size": args.queue_size,
            "seg.test_size": None if args.test_size is None else list(args.test_size),
            "sinks.preset": args.preset,
        }
        recipe = load_recipe("seg", None, overrides)
        preset = recipe.sinks.preset
        batch_size = recipe.seg.batch_size or recipe.runtime.batch_size

        log.info("decode alone")
        row, frames = measure_decode(clip)
        rows.append(row)
        log.info("encode alone")
        rows.append(measure_encode(frames, tmp / "encode.mp4", preset=preset, fps=None))

        networks = load_networks(recipe, progress=False)
        bundle = networks.main.bundle
        estimator = networks.main.estimator.estimator  # the pipeline's SegmentationEstimator
        input_size = estimator.input_size(frames[0].width, frames[0].height)
        log.info("network alone at %dx%d, batch %d, %d thread(s)", *input_size, batch_size, pipe_threads)
        rows.append(
            in_worker_thread(
                functools.partial(
                    measure_seg_network,
                    estimator,
                    frames,
                    batch_size=batch_size,
                    threads=pipe_threads,
                    amp=args.amp,
                )
            )
        )
        frame_size = f"{frames[0].width}x{frames[0].height}"
        del frames

        log.info("whole pipeline, torch on %d thread(s)", pipe_threads)
        row, stats = measure_pipeline(networks, clip, tmp / "out", threads=pipe_threads)
        row.settings["input"] = f"{input_size[0]}x{input_size[1]}"
        rows.append(row)

        log.info("naive loop, torch on %d thread(s)", naive_threads)
        naive_model = from_config(args.model)
        load_weights(naive_model, weights)
        naive = functools.partial(
            measure_seg_naive,
            clip,
            naive_model,
            tmp / "naive.mp4",
            input_size=input_size,
            meta=bundle.meta,
            align_corners=bool(bundle.spec.align_corners),
            opacity=recipe.seg.opacity,
            preset=preset,
            threads=naive_threads,
        )
        rows.append(in_worker_thread(naive))

    stage_rows = [r for r in rows if r.role == "stage"]
    slowest = min(stage_rows, key=lambda r: r.frames_per_s)
    pipe = next(r for r in rows if r.role == "pipeline")
    naive = next(r for r in rows if r.role == "naive")
    stages = _stage_table(stats)
    ratios = {
        "model": args.model,
        "clip": Path(args.clip).name,
        "frame_size": frame_size,
        "input_size": f"{input_size[0]}x{input_size[1]}",
        "slowest_stage": slowest.name,
        "slowest_stage_fps": slowest.frames_per_s,
        "pipeline_over_slowest": pipe.frames_per_s / slowest.frames_per_s,
        "pipeline_over_naive": pipe.frames_per_s / naive.frames_per_s,
    }
    machine["load_avg_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    sys.stdout.write(render(rows, stages, ratios, machine) + "\n")
    if args.json_out:
        doc = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": machine,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "args": vars(args),
            "rows": [r.to_json() for r in rows],
            "pipeline_stages": stages,
            "ratios": ratios,
        }
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
