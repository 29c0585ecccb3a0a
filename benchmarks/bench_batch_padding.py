"""Padding batches to a power of two against running them at their exact sizes, on the CPU.

A pose pipeline's batches vary in size: the batcher packs the people of consecutive frames up to
``runtime.batch_size`` crops, and the number of people changes from frame to frame. A network that meets a new
batch size may rebuild work (oneDNN primitives in torch, shape inference and kernels in ONNX Runtime and
OpenVINO); ``runtime.pad_batches`` appends zero rows up to the next power of two so that only a few sizes occur,
at the price of computing the padding.

The batch sizes are those the pipeline's batcher (:class:`hrstream.runtime.Batcher`, ``max_batch`` 16) makes
from the people per frame of generated clips (``hrstream synth``, 2-5 people in view, every person with a
visible pixel counted), without and with the flip test (which doubles every batch). Each measurement runs in a
fresh process (caches of primitives are per process): the sequence once from cold (every new size is met for
the first time) and then ``--passes`` more times warm; exact and padded alternate ``--repeats`` times so that a
change of load on a shared machine hits both alike. The table gives the best (shortest) time of each condition:
on a shared machine the other processes only ever add time, so the minimum is the closest to the work's own
cost; the JSON keeps every time.

Usage::

    python benchmarks/bench_batch_padding.py                     # Lite-HRNet-18, W18-small, W32 on their backends
    python benchmarks/bench_batch_padding.py --cases lite18:onnxruntime --repeats 3 --json runs/pad.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hrstream.runtime.engine import bucket_size

#: case -> (config, input (H, W), backend, amp, batches per pass)
CASES: dict[str, tuple[str, tuple[int, int], str, str, int]] = {
    "lite18:torch": ("synthetic_litehrnet_18_128x96", (128, 96), "torch", "off", 48),
    "lite18:onnxruntime": ("synthetic_litehrnet_18_128x96", (128, 96), "onnxruntime", "off", 48),
    "lite18:openvino-bf16": ("synthetic_litehrnet_18_128x96", (128, 96), "openvino", "bf16", 48),
    "w18small:torch": ("synthetic_pose_hrnet_w18_small_128x96", (128, 96), "torch", "off", 48),
    "w32:torch": ("pose_hrnet_w32_256x192", (256, 192), "torch", "off", 6),
    "w32:torch-bf16": ("pose_hrnet_w32_256x192", (256, 192), "torch", "bf16", 6),
}


def pipeline_batch_sizes(*, batches: int, flip: bool, max_batch: int = 16, seed: int = 5000) -> list[int]:
    """Crops per network call the pipeline's batcher makes from the people per frame of generated clips."""
    from hrstream.runtime import Batcher
    from hrstream.synth import SynthConfig, generate

    people: list[int] = []
    clip = 0
    while len(people) < batches * max_batch:
        cfg = SynthConfig(width=64, height=36, num_frames=200, num_people=(2, 5), seed=seed + clip)
        people.extend(len(f.boxes) for f in generate(cfg))
        clip += 1
    batcher = Batcher(max_batch, 0.0, weight=lambda n: n)
    sizes: list[int] = []
    for n in people:
        sizes.extend(sum(b) for b in batcher.add(n))
    sizes = [s for s in sizes if s > 0][:batches]
    return [2 * s for s in sizes] if flip else sizes


def _network(config: str, size: tuple[int, int]) -> torch.nn.Module:
    """The config's network with random weights at a trained network's scale (speed does not depend on them)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_backends import randomize

    from hrstream.models import from_config

    return randomize(from_config(config), size=size)


def one(case: str, pad: bool, flip: bool, passes: int, threads: int) -> dict[str, Any]:
    """One measurement in this process: seconds of the cold pass and of each warm pass."""
    from hrstream.runtime import InferenceEngine

    config, (h, w), backend, amp, batches = CASES[case]
    torch.set_num_threads(threads)
    sizes = pipeline_batch_sizes(batches=batches, flip=flip)
    engine = InferenceEngine(
        _network(config, (h, w)), device="cpu", amp=amp, backend=backend, pad_batches=pad
    )
    pool = torch.randn(max(sizes), 3, h, w, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(1 + passes):
        t0 = time.perf_counter()
        for n in sizes:
            engine.infer(pool[:n], normalized=True)
        times.append(time.perf_counter() - t0)
    return {"case": case, "pad": pad, "flip": flip, "crops": sum(sizes), "sizes": sizes, "seconds": times}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--flip", choices=["off", "on", "both"], default="both")
    ap.add_argument("--repeats", type=int, default=2, help="exact / padded alternations per case")
    ap.add_argument("--passes", type=int, default=2, help="warm passes after the cold one")
    ap.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads (all cores)"
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--one", nargs=3, metavar=("CASE", "PAD", "FLIP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        case, pad, flip = args.one
        print(json.dumps(one(case, pad == "1", flip == "1", args.passes, args.threads)))
        return 0
    from bench_fixtures import cpu_description

    machine = cpu_description()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    flips = {"off": [False], "on": [True], "both": [False, True]}[args.flip]
    env = {**os.environ, "HRSTREAM_HOME": os.environ.get("HRSTREAM_HOME_BENCH", "/tmp/hrstream-bench-home")}
    results: list[dict[str, Any]] = []
    for case in args.cases:
        for flip in flips:
            for _ in range(args.repeats):
                for pad in (False, True):
                    cmd = [sys.executable, __file__, "--one", case, str(int(pad)), str(int(flip))]
                    cmd += ["--passes", str(args.passes), "--threads", str(args.threads)]
                    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                    if done.returncode != 0:
                        raise SystemExit(f"{case}: {done.stderr.strip().splitlines()[-1]}")
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    results.append(r)
                    print(
                        f"{case} flip={flip} pad={pad}: {[round(s, 2) for s in r['seconds']]} s",
                        file=sys.stderr,
                    )
    print(
        f"{started} - {time.strftime('%H:%M')}; CPU: {machine['model_name']}, {machine['usable_cores']} cores, "
        f"native bf16: {'yes' if machine['native_bf16'] else 'no'}, torch kernels {machine['torch_cpu_capability']}, "
        f"{args.threads} torch thread(s); "
        f"load avg (1 min) at start {machine['load_avg_1m']:.2f}, at end {os.getloadavg()[0]:.2f}"
    )
    print()
    print("crops/s, the best time of each condition:")
    print()
    print("| case | flip | crops | distinct sizes exact / padded | exact, cold | padded, cold | exact, warm "
          "| padded, warm | padded / exact (warm) |")  # fmt: skip
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for case in args.cases:
        for flip in flips:
            rows = {pad: [r for r in results if r["case"] == case and r["flip"] == flip and r["pad"] == pad]
                    for pad in (False, True)}  # fmt: skip
            crops = rows[False][0]["crops"]
            sizes = rows[False][0]["sizes"]
            cold = {p: crops / min(r["seconds"][0] for r in rows[p]) for p in rows}
            warm = {p: crops / min(s for r in rows[p] for s in r["seconds"][1:]) for p in rows}
            print(
                f"| {case} | {'on' if flip else 'off'} | {crops} | {len(set(sizes))} / "
                f"{len({bucket_size(n) for n in sizes})} | {cold[False]:.1f} | {cold[True]:.1f} | {warm[False]:.1f} "
                f"| {warm[True]:.1f} | {warm[True] / warm[False]:.2f} |"
            )
    extra = sum(bucket_size(n) - n for n in results[0]["sizes"]) / max(1, results[0]["crops"])
    print(f"\npadding adds {extra:.0%} crops to the first case's batches")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
