"""Top-down against bottom-up pose on this CPU: frames/s against the number of people in the frame.

For each crowd size (``--people``, default 1 4 16 32) one synthetic clip is rendered (``hrstream synth``'s
figures, 640x360, people 0.12-0.5 of the frame height tall, seed ``--seed`` + people) and every model runs
on the same frames:

* top-down: the shipped ``synthetic_pose_hrnet_w18_small_128x96`` and ``pose_hrnet_w32_256x192`` with random
  weights, both with person boxes from the shipped detector (``synthetic_det_hrnet_w18_small_fcos``), as
  ``pipelines/synthetic.yaml``;
* bottom-up: ``pose_higher_hrnet_w32_512`` with random weights, through the same recipe (a bottom-up network
  needs no detector: the recipe's detector section is not used).

Two rows per model and crowd: the network alone (top-down: the frame's people as crops in calls of the recipe's
batch size; bottom-up: the frame resized as the official test does, one call per frame), and the whole
pipeline (``run_inputs`` with a :class:`~hrstream.runs.LocalExecutor`, as ``hrstream run``: decode, detector,
crops, network, grouping, tracking, identity repair, smoothing, drawing, video + JSONL + tracks). Flip test is
off everywhere unless ``--flip-test`` (it doubles the pose network's work of both methods alike; the
detector's flip test stays off). Each pipeline first runs a 2-frame clip untimed (first calls, encoder). The
random-weight networks cost what trained ones cost in the network, but a random HigherHRNet finds no people,
so its pipeline rows leave out the grouping of real people (no trained bottom-up model ships yet). Speed
only: accuracy is docs/accuracy.md's.

Usage::

    nice -n 10 python benchmarks/bottomup_benchmark.py                    # all models, 1 4 16 32 people
    python benchmarks/bottomup_benchmark.py --people 16 --frames 4 --models pose_higher_hrnet_w32_512
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import torch
from bench_fixtures import cpu_description, write_random_weights
from bench_stages import in_worker_thread, measure_pipeline

from hrstream.pipeline.builder import load_networks
from hrstream.pipeline.recipe_load import PIPELINES_DIR, load_recipe
from hrstream.pose.bottomup import get_multi_scale_size
from hrstream.runtime import cpu_flags, usable_cpu_count
from hrstream.synth import SynthConfig, write_clip

log = logging.getLogger("bottomup_benchmark")

#: ``(config, method, random weights)``: the shipped pair and the COCO-sized pair.
MODELS = (
    ("synthetic_pose_hrnet_w18_small_128x96", "topdown", False),
    ("pose_hrnet_w32_256x192", "topdown", True),
    ("pose_higher_hrnet_w32_512", "bottomup", True),
)
RECIPES = {"topdown": "synthetic.yaml", "bottomup": "synthetic.yaml"}
#: CPU flags that decide reduced-precision speed (the benchmark itself runs fp32).
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--people", type=int, nargs="+", default=[1, 4, 16, 32], help="crowd sizes")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (default 8; the first warms up)")
    p.add_argument("--models", nargs="+", default=[m[0] for m in MODELS], help="configs of MODELS to run")
    p.add_argument("--seed", type=int, default=9100, help="clip seeds: SEED + people")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the usable cores)")
    p.add_argument("--flip-test", action="store_true", help="flip test for both methods")
    p.add_argument("--json", dest="json_out", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    unknown = set(args.models) - {m[0] for m in MODELS}
    if unknown:
        p.error(f"unknown models {sorted(unknown)}; choose from {[m[0] for m in MODELS]}")
    if args.frames < 2 or min(args.people) < 1:
        p.error("--frames must be >= 2 and --people >= 1")
    return args


def _recipe(config: str, method: str, weights: Path | None, flip: bool) -> Any:
    overrides: dict[str, Any] = {
        "model": config,
        "weights": str(weights) if weights else None,
        "runtime.device": "cpu",
        "runtime.amp": "off",
        "pose.flip_test": flip,
    }
    if method == "topdown":
        overrides["detector.flip_test"] = False
    return load_recipe("pose", PIPELINES_DIR / RECIPES[method], overrides)


def _network_alone(networks: Any, frames: list[Any], truth_people: list[int], *, flip_test: bool,
                   threads: int) -> float:  # fmt: skip
    """Seconds per frame of the pose network alone on inputs of the pipeline's shapes (the first call is also
    made once untimed): top-down, each frame's true people as crops (and their mirror images with the flip
    test) in calls of ``runtime.batch_size``; bottom-up, the frame at the official test size (and its mirror
    image)."""
    net = networks.pose
    engine, spec = net.engine, net.bundle.spec
    flip = 2 if flip_test else 1

    def timed() -> float:
        torch.set_num_threads(threads)
        if spec.higher is not None:
            h, w = frames[0].shape[:2]
            (wr, hr), _, _ = get_multi_scale_size(h, w, spec.higher.input_size, 1.0, 1.0)
            calls = [torch.randn(flip, 3, hr, wr) for _ in frames]
        else:
            ih, iw = spec.image_size[1], spec.image_size[0]
            batch = int(networks.recipe.runtime.batch_size)
            calls = []
            for n in truth_people:
                crops = torch.randn(n * flip, 3, ih, iw)
                calls.extend(crops[i : i + batch] for i in range(0, len(crops), batch))
        engine.infer(calls[0], normalized=True)
        t0 = time.perf_counter()
        for x in calls:
            engine.infer(x, normalized=True)
        return (time.perf_counter() - t0) / len(frames)

    return in_worker_thread(timed)


def _people_found(jsonl: Path) -> float:
    counts = [len(r["people"]) for r in map(json.loads, jsonl.read_text().splitlines()) if "people" in r]
    return sum(counts) / max(1, len(counts))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("hrstream").setLevel(logging.WARNING)
    machine = cpu_description()
    threads = args.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    flags = sorted(set(FLAGS) & cpu_flags())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hrstream-bu-bench-") as tmp_s:
        tmp = Path(tmp_s)
        clips = {}
        warm = write_clip(
            SynthConfig(width=640, height=360, num_frames=2, num_people=2, seed=args.seed), tmp, "warm"
        )
        for n in args.people:
            cfg = SynthConfig(width=640, height=360, fps=25.0, num_frames=args.frames, num_people=n,
                              person_height=(0.12, 0.5), seed=args.seed + n)  # fmt: skip
            clips[n] = write_clip(cfg, tmp / f"clip{n}", f"crowd{n}", masks=False)
        for config, method, random_weights in MODELS:
            if config not in args.models:
                continue
            weights = write_random_weights(config, tmp / f"{config}.safetensors") if random_weights else None
            networks = load_networks(_recipe(config, method, weights, args.flip_test), progress=False)
            measure_pipeline(
                networks, str(warm["video"]), tmp / f"warm_{config}", threads=threads
            )  # first calls
            for n in args.people:
                truth = json.loads(Path(clips[n]["tracks"]).read_text())
                per_frame = [0] * args.frames
                for t in truth["tracks"]:
                    for f in t["frames"]:
                        per_frame[f] += 1
                with av.open(str(clips[n]["video"])) as c:
                    frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
                log.info("%s, %d people: network alone", config, n)
                net_s = _network_alone(networks, frames, per_frame, flip_test=args.flip_test, threads=threads)
                log.info("%s, %d people: whole pipeline", config, n)
                out = tmp / f"out_{config}_{n}"
                row, _ = measure_pipeline(networks, str(clips[n]["video"]), out, threads=threads)
                found = _people_found(next(out.glob("*.jsonl")))
                rows.append({
                    "model": config + (" (random weights)" if random_weights else ""),
                    "method": method, "people": n, "truth_people": sum(per_frame) / len(per_frame),
                    "found_people": round(found, 1), "network_fps": 1.0 / net_s,
                    "pipeline_fps": row.frames_per_s, "frames": row.frames,
                })  # fmt: skip
                log.info("%s", rows[-1])
    load_end = os.getloadavg()[0]
    print(
        f"machine: {machine['model_name']}, {machine['usable_cores']} usable cores, flags: "
        f"{' '.join(flags) or 'none of ' + ' '.join(FLAGS)}; torch {torch.__version__}, {threads} threads, fp32; "
        f"load avg (1 min) {machine['load_avg_1m']:.2f} at start, {load_end:.2f} at end; "
        f"flip test {'on' if args.flip_test else 'off'}; {args.frames} frames per clip"
    )
    print()
    print("| model | method | people (truth / found) | network alone, frames/s | whole pipeline, frames/s |")
    print("| --- | --- | --- | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['model']} | {r['method']} | {r['people']} ({r['truth_people']:.1f} / {r['found_people']:.1f}) "
            f"| {r['network_fps']:.2f} | {r['pipeline_fps']:.2f} |"
        )
    print()
    for a, b in (("synthetic_pose_hrnet_w18_small_128x96", "pose_higher_hrnet_w32_512"),
                 ("pose_hrnet_w32_256x192", "pose_higher_hrnet_w32_512")):  # fmt: skip
        for column, what in (("network_fps", "network alone"), ("pipeline_fps", "whole pipeline")):
            td = {r["people"]: r[column] for r in rows if r["model"].split(" ")[0] == a}
            bu = {r["people"]: r[column] for r in rows if r["model"].split(" ")[0] == b}
            both = sorted(set(td) & set(bu))
            if both:
                faster = [n for n in both if bu[n] > td[n]]
                verdict = (
                    f"bottom-up faster from {faster[0]} people" if faster else "top-down faster at every size"
                )
                print(f"{a} vs {b} ({what}): {verdict}")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"machine": machine, "flags": flags, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
