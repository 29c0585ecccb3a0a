"""Runtime benchmark of ``hrstream run --task pose``: each stage alone, the whole pipeline, a naive loop.

In ONE run on ONE clip it measures decode alone, encode alone, the network alone at the pipeline's batch
size and settings, the whole pipeline (the real ``load_networks()`` + ``Networks.build()`` + ``run_inputs()`` path
with a ``file:`` detector), and a naive loop with the structure of the official HRNet demo, in fp32 and at the
pipeline's precision (the same loop calling the pipeline's network: its backend and precision, one crop a
call); it prints a markdown table with the machine's CPU line and the ratios pipeline / slowest stage and
pipeline / naive loop (fp32 and same precision: what pipelining buys apart from what precision buys; and
writes JSON with ``--json``). Comparison rows (the network on all cores, the other precision) are labelled
``info``. ``--amp`` defaults to ``hrstream run``'s (``auto``: bf16 on CPUs with native bf16, else fp32).

Inputs are made locally because nothing can be downloaded: random weights (speed does not depend on
them) and synthetic, person-sized boxes (no detector weights offline). It measures speed, not accuracy.

Usage::

    python benchmarks/pipeline_benchmark.py                      # 1080p clip, 32 frames, --amp auto
    python benchmarks/pipeline_benchmark.py --amp off --frames 8 --json runs/bench_fp32.json
    python benchmarks/pipeline_benchmark.py --amp int8 --backend openvino --frames 16
    python benchmarks/pipeline_benchmark.py --clip tests/data/videos/basketball_426x240_2997.mp4 --frames 120
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

import torch
from bench_fixtures import cpu_description, cpu_line, trim_clip, write_detections, write_random_weights
from bench_stages import (
    Row,
    in_worker_thread,
    measure_decode,
    measure_encode,
    measure_naive,
    measure_network,
    measure_pipeline,
    sample_crops,
)

from hrstream.models import from_config, load_weights
from hrstream.pipeline.builder import load_networks
from hrstream.pipeline.recipe_load import load_recipe
from hrstream.runtime import InferenceEngine, PipelineStats, usable_cpu_count

log = logging.getLogger("pipeline_benchmark")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO / "tests" / "data" / "videos" / "two_people_1080p30.mp4"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--clip",
        default=str(DEFAULT_CLIP),
        help="video file (default: the 1080p two-people clip; the 426x240 basketball clip is faster)",
    )
    p.add_argument("--frames", type=int, default=32, help="frames of the clip to use (default 32)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="person crops per network call (default: recipe)"
    )
    p.add_argument(
        "--amp",
        choices=["auto", "off", "bf16", "int8"],
        default="auto",
        help="precision of the pipeline and network (default: hrstream run's, auto)",
    )
    p.add_argument(
        "--backend", default=None, help="what runs the pose network (default: the recipe's, torch)"
    )
    p.add_argument("--people", type=int, default=4, help="synthetic person boxes per frame (default 4)")
    p.add_argument("--model", default="pose_hrnet_w32_256x192", help="registered pose config name")
    p.add_argument(
        "--flip-test",
        action="store_true",
        help="run the flip test everywhere (off by default, like the official demo)",
    )
    p.add_argument("--preset", default=None, help="libx264 preset (default: the recipe's)")
    p.add_argument("--queue-size", type=int, default=None, help="pipeline queue size (default: the recipe's)")
    p.add_argument(
        "--reserved-threads",
        type=int,
        default=1,
        help="cores kept from torch in the pipeline, as the runner does (default 1)",
    )
    p.add_argument(
        "--compare-batches",
        type=int,
        default=1,
        help="network calls of each comparison row (other precision, all cores)",
    )
    p.add_argument(
        "--naive-frames",
        type=int,
        default=None,
        help="frames of the naive loop (default: --frames; it is slow, and its rate per frame steady)",
    )
    p.add_argument("--json", dest="json_out", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.frames < 1 or args.people < 1:
        p.error("--frames and --people must be >= 1")
    return args


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
                "busy_frac": round(s.busy_s / stats.elapsed_s, 3) if stats.elapsed_s > 0 else None,
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
        f"{cpu_line(machine)}, at end {machine['load_avg_1m_end']:.2f}; torch {torch.__version__}",
        "",
        "| measurement | role | frames/s | crops/s | frames | crops | seconds | settings |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        crops_s = "" if r.crops_per_s is None else f"{r.crops_per_s:.2f}"
        crops = "" if r.crops is None else str(r.crops)
        settings = ", ".join(f"{k}={v}" for k, v in r.settings.items())
        out.append(
            f"| {r.name} | {r.role} | {r.frames_per_s:.2f} | {crops_s} | {r.frames} | {crops} "
            f"| {r.seconds:.2f} | {settings} |"
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
        f"slowest stage alone: {ratios['slowest_stage']} ({ratios['slowest_stage_fps']:.2f} frames/s)",
        f"pipeline / slowest stage = {ratios['pipeline_over_slowest']:.2f}",
        f"pipeline / naive loop    = {ratios['pipeline_over_naive']:.2f} (fp32)",
        f"busiest pipeline stage: {ratios['busiest_stage']} (busy {ratios['busiest_busy_frac']:.0%} of wall time)",
    ]
    if "pipeline_over_naive_same_precision" in ratios:
        out.insert(
            -1,
            f"pipeline / naive loop    = {ratios['pipeline_over_naive_same_precision']:.2f} "
            f"(at the pipeline's precision: what pipelining buys)",
        )
        out.insert(
            -1,
            f"naive loop at the pipeline's precision / fp32 = {ratios['precision_gain_naive']:.2f} "
            f"(what precision buys)",
        )
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
    flip_factor = 2 if args.flip_test else 1
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hrstream-bench-") as tmp_s:
        tmp = Path(tmp_s)
        clip = str(trim_clip(args.clip, tmp / "clip.mp4", args.frames))
        weights = write_random_weights(args.model, tmp / f"{args.model}.random.safetensors")

        log.info("decode alone")
        row, frames = measure_decode(clip)
        rows.append(row)
        n_frames = len(frames)
        first = frames[0]
        width, height = first.width, first.height
        det_path = write_detections(tmp / "detections.json", n_frames, args.people, width, height)
        overrides = {
            "model": args.model,
            "weights": str(weights),
            "runtime.device": "cpu",
            "runtime.amp": args.amp,
            "runtime.backend": args.backend,
            "runtime.batch_size": args.batch_size,
            "runtime.queue_size": args.queue_size,
            "detector.name": f"file:{det_path}",
            "pose.flip_test": args.flip_test,
            "sinks.preset": args.preset,
        }
        recipe = load_recipe("pose", None, overrides)
        preset = recipe.sinks.preset
        batch_size = recipe.runtime.batch_size

        log.info("encode alone")
        rows.append(measure_encode(frames, tmp / "encode.mp4", preset=preset, fps=None))
        del frames

        networks = load_networks(recipe, progress=False)
        meta = networks.main.bundle.meta
        spec = networks.main.bundle.spec
        input_size = tuple(spec.image_size or (192, 256))
        pool = sample_crops(first, args.people, input_size, meta.mean, meta.std)
        if args.flip_test:
            pool = torch.cat([pool, pool.flip(3)], 0)
        per_frame = args.people * flip_factor
        net = {"pool": pool, "batch_size": batch_size, "crops_per_frame": per_frame}

        engine = networks.main.engine
        precision = engine.precision  # --amp auto resolved
        label = precision if engine.backend == "torch" else f"{engine.backend} {precision}"
        log.info("network alone, %s, %d thread(s)", label, pipe_threads)
        rows.append(
            measure_network(
                engine,
                total_crops=n_frames * per_frame,
                threads=pipe_threads,
                name=f"network alone ({label}, as in the pipeline)",
                role="stage",
                **net,
            )
        )
        compare = min(n_frames * per_frame, args.compare_batches * batch_size)
        if cores > pipe_threads:
            log.info("network alone on all %d cores", cores)
            rows.append(
                measure_network(
                    networks.main.engine,
                    total_crops=compare,
                    threads=cores,
                    role="info",
                    name=f"network alone ({label}, all {cores} cores)",
                    **net,
                )
            )
        other = "bf16" if precision == "fp32" else "off"
        log.info("network alone, amp=%s (comparison)", other)
        other_engine = InferenceEngine(
            networks.main.bundle.model,
            device="cpu",
            amp=other,
            channels_last=True,
            mean=meta.mean,
            std=meta.std,
        )
        rows.append(
            measure_network(
                other_engine,
                total_crops=compare,
                threads=pipe_threads,
                role="info",
                name=f"network alone ({'bf16 autocast' if other == 'bf16' else 'fp32'}, comparison)",
                **net,
            )
        )

        log.info("whole pipeline, torch on %d thread(s)", pipe_threads)
        torch.set_num_threads(pipe_threads)
        networks.main.engine.warmup((batch_size, input_size[1], input_size[0], 3), iters=1)
        row, stats = measure_pipeline(networks, clip, tmp / "out", threads=pipe_threads)
        rows.append(row)

        log.info("naive loop, torch on %d thread(s)", cores)
        naive_model = from_config(args.model)
        load_weights(naive_model, weights)
        naive_clip = clip
        if args.naive_frames is not None and args.naive_frames < n_frames:  # its rate per frame is steady
            naive_clip = str(trim_clip(clip, tmp / "naive_clip.mp4", args.naive_frames))
        naive = functools.partial(
            measure_naive,
            naive_clip,
            naive_model,
            tmp / "naive.mp4",
            people=args.people,
            input_size=input_size,
            meta=meta,
            preset=preset,
            flip_test=args.flip_test,
            threads=cores,
        )
        rows.append(in_worker_thread(naive))  # where the pipeline runs its network, as the network rows
        if precision != "fp32":
            log.info("naive loop at the pipeline's precision (%s)", label)
            same = functools.partial(
                naive,
                forward=lambda x: engine.infer(x, normalized=True),
                name=f"naive loop, the pipeline's network ({label})",
                settings={
                    "backend": engine.backend,
                    "precision": precision,
                    "amp": engine.amp,
                    "channels_last": engine.channels_last,
                },
            )
            rows.append(in_worker_thread(same))

    stage_rows = [r for r in rows if r.role == "stage"]
    slowest = min(stage_rows, key=lambda r: r.frames_per_s)
    pipe = next(r for r in rows if r.role == "pipeline")
    naive_rows = [r for r in rows if r.role == "naive"]
    naive = naive_rows[0]
    stages = _stage_table(stats)
    busiest = max(stages, key=lambda s: s["busy_s"])
    ratios = {
        "slowest_stage": slowest.name,
        "slowest_stage_fps": slowest.frames_per_s,
        "pipeline_over_slowest": pipe.frames_per_s / slowest.frames_per_s,
        "pipeline_over_naive": pipe.frames_per_s / naive.frames_per_s,
        **(
            {
                "pipeline_over_naive_same_precision": pipe.frames_per_s / naive_rows[1].frames_per_s,
                "precision_gain_naive": naive_rows[1].frames_per_s / naive.frames_per_s,
            }
            if len(naive_rows) > 1
            else {}
        ),
        "busiest_stage": busiest["stage"],
        "busiest_busy_frac": busiest["busy_frac"],
    }
    machine["load_avg_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    sys.stdout.write(render(rows, stages, ratios, machine) + "\n")
    if ratios["pipeline_over_slowest"] < 0.9 or ratios["pipeline_over_naive"] < 3.0:
        log.warning(
            "pipeline below 0.9x its slowest stage or 3x the naive loop: see the stage table "
            "(the busiest stage is the bottleneck)"
        )
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
