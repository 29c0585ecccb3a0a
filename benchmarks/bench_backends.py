"""Crops per second of the pose network on each CPU backend: torch (fp32, bf16 autocast), ONNX Runtime (fp32)
and OpenVINO (fp32, bf16, int8), at batch 1 and 16.

Every backend is called the way the pipeline calls its network: ``InferenceEngine.infer(x, normalized=True)``
on the CPU with a normalised float32 batch (torch: channels_last, the precision as ``amp``; ONNX Runtime and
OpenVINO: :mod:`hrstream.runtime.backends`, the graph exported from the same torch network, ``amp="off"``).
Every library gets the same number of threads (all usable cores). One warm-up call is excluded; then each
cell runs for at least ``--seconds`` and ``--min-calls`` calls; ``--rounds N`` times every cell N times,
the columns taking turns, and keeps the best (on a shared machine). The export (and OpenVINO's compilation) is a
one-time cost and is reported apart.

Weights are random with a sane scale (Kaiming-normal convolutions, unit BatchNorm statistics; seeded):
speed does not depend on their values, but the official Lite-HRNet initialisation (N(0, 0.001)) would drive
activations towards denormal floats, which some kernels run far slower. bf16 is only meaningful where the CPU
has it natively (``avx512_bf16`` / ``amx_bf16``); the CPU flags, the precision ``--amp auto`` picks on this CPU
and ``torch.backends.cpu.get_cpu_capability()`` are printed with the table, and OpenVINO bf16 is skipped
without native bf16. OpenVINO int8 is ``--amp int8`` (:mod:`hrstream.runtime.quantize`: calibrated on the
default 300 synthetic person crops, its floating-point rest in bf16 where the CPU has it); the CPU line says
whether the CPU has int8 dot products (VNNI) and AMX. ``--columns`` picks columns by name.

Usage::

    python benchmarks/bench_backends.py                   # Lite-HRNet-18/30 and HRNet-W32 at 256x192
    python benchmarks/bench_backends.py --models litehrnet_18_coco_256x192 --batches 1 --json runs/b.json
    python benchmarks/bench_backends.py --models pose_hrnet_w32_256x192 --batches 16 --backends torch --rounds 5
    python benchmarks/bench_backends.py --batches 16 --rounds 3 --models pose_hrnet_w32_256x192 \
        litehrnet_18_coco_256x192 --columns "torch fp32" "torch bf16" "OpenVINO bf16" "OpenVINO int8"
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_fixtures import cpu_description, cpu_line
from bench_stages import in_worker_thread
from torch import nn

from hrstream.models import from_config
from hrstream.runtime import InferenceEngine, cpu_has_native_bf16
from hrstream.runtime.backends import make_backend

log = logging.getLogger("bench_backends")

MODELS = ("litehrnet_18_coco_256x192", "litehrnet_30_coco_256x192", "pose_hrnet_w32_256x192")
#: (column name, backend, precision)
COLUMNS = (
    ("torch fp32", "torch", "fp32"),
    ("torch bf16", "torch", "bf16"),
    ("ORT fp32", "onnxruntime", "fp32"),
    ("OpenVINO fp32", "openvino", "fp32"),
    ("OpenVINO bf16", "openvino", "bf16"),
    ("OpenVINO int8", "openvino", "int8"),
)


def randomize(model: nn.Module, *, size: tuple[int, int], seed: int = 0) -> nn.Module:
    """Random weights at the scale of a trained network: Kaiming-normal convolutions, zero biases, and
    BatchNorm statistics measured on a random batch (so every normalisation sees unit-scale activations;
    with unit statistics instead, activations grow to ~1e7 through the fusions and fp32 itself is ill
    conditioned)."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()
        for m in norms:
            m.reset_parameters()
            m.momentum = None  # cumulative: the statistics of the batch below
        model.train()
        model(torch.randn(4, 3, *size, generator=g))
        for m in norms:
            m.momentum = 0.1
    return model.eval()


def time_calls(engine: InferenceEngine, x: torch.Tensor, *, seconds: float, min_calls: int) -> float:
    """Crops per second of ``engine.infer(x, normalized=True)`` after one warm-up call, timed in a thread of its
    own as the pipeline calls its network (``bench_stages.in_worker_thread``)."""

    def run() -> float:
        engine.infer(x, normalized=True)
        calls, started = 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - started < seconds:
            engine.infer(x, normalized=True)
            calls += 1
        return calls * x.shape[0] / (time.perf_counter() - started)

    return float(in_worker_thread(run))


def versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for name in ("onnxruntime", "openvino"):
        with contextlib.suppress(ImportError):
            out[name] = str(importlib.import_module(name).__version__)
    return out


def run(
    models: list[str],
    batches: list[int],
    *,
    seconds: float,
    min_calls: int,
    backends: list[str],
    rounds: int = 1,
    columns: list[str] | None = None,
) -> dict[str, Any]:
    """Crops/s per model, batch and column; with ``rounds`` > 1 every cell is timed once per round, the
    columns taking turns, and the best round counts (on a shared machine the others' load then falls on
    every column alike instead of on whichever ran while it peaked)."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    setup: list[dict[str, Any]] = []
    for name in models:
        model = from_config(name)
        w, h = model.spec.image_size
        randomize(model, size=(h, w))
        params = sum(p.numel() for p in model.parameters())
        engines: list[tuple[str, InferenceEngine]] = []
        for column, backend, precision in COLUMNS:
            if backend not in backends or (columns and column not in columns):
                continue
            if precision == "bf16" and backend == "openvino" and not cpu_has_native_bf16():
                log.info("%s: skipping %s (no native bf16)", name, column)
                continue
            started = time.perf_counter()
            net = make_backend(backend, model, precision=precision if backend != "torch" else "fp32")
            amp = precision if backend == "torch" and precision == "bf16" else "off"
            engine = InferenceEngine(net, device="cpu", amp=amp, channels_last=backend == "torch")
            built = time.perf_counter() - started
            if backend != "torch":
                setup.append(
                    {"model": name, "column": column, "build_s": round(built, 1), "file": net.path.name}
                )
            engines.append((column, engine))
        best: dict[tuple[int, str], float] = {}
        for r in range(rounds):
            for batch in batches:
                x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch))
                for column, engine in engines:
                    rate = time_calls(engine, x, seconds=seconds, min_calls=min_calls)
                    best[batch, column] = max(rate, best.get((batch, column), 0.0))
                    log.info("%s batch %d %s round %d: %.1f crops/s", name, batch, column, r + 1, rate)
        rows += [
            {"model": name, "params": params, "batch": b, "column": c, "crops_per_s": v}
            for (b, c), v in best.items()
        ]
        del engines
    return {"rows": rows, "setup": setup, "threads": threads}


def table(result: dict[str, Any], models: list[str], batches: list[int]) -> str:
    """Crops/s per column, with the best against torch fp32 and int8 against the faster bf16 where measured."""
    cols = [c for c, _, _ in COLUMNS if any(r["column"] == c for r in result["rows"])]
    by = {(r["model"], r["batch"], r["column"]): r["crops_per_s"] for r in result["rows"]}
    ratios = []
    if "torch fp32" in cols:
        ratios.append("best / torch fp32")
    if "OpenVINO int8" in cols and any("bf16" in c for c in cols):
        ratios.append("int8 / best bf16")
    lines = [
        "| model | batch | " + " | ".join(cols + ratios) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in cols + ratios) + " |",
    ]
    for m in models:
        for b in batches:
            vals = {c: by.get((m, b, c)) for c in cols}
            cells = [f"{v:.1f}" if v is not None else "-" for v in vals.values()]
            got = [v for v in vals.values() if v is not None]
            if "best / torch fp32" in ratios:
                base = vals["torch fp32"]
                cells.append(f"{max(got) / base:.1f}x" if base and got else "-")
            if "int8 / best bf16" in ratios:
                bf16 = [v for c, v in vals.items() if "bf16" in c and v is not None]
                int8 = vals["OpenVINO int8"]
                cells.append(f"{int8 / max(bf16):.2f}x" if bf16 and int8 else "-")
            lines.append(f"| {m} | {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--seconds", type=float, default=1.5, help="least time per cell (after a warm-up call)")
    ap.add_argument("--min-calls", type=int, default=2, help="least calls per cell")
    ap.add_argument(
        "--backends", nargs="+", default=["torch", "onnxruntime", "openvino"], help="the columns' backends"
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="time every cell this often, columns in turn; best counts"
    )
    ap.add_argument("--columns", nargs="+", default=None, help="only these columns (names as in the table)")
    ap.add_argument(
        "--home",
        type=Path,
        default=None,
        help="keep exported and quantized graphs here (default: a temp dir)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("hrstream", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    machine = cpu_description()
    started = datetime.datetime.now().astimezone()
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        # exported graphs of random weights: not for the user's cache (--home keeps them for another run)
        os.environ["HRSTREAM_HOME"] = str(args.home or tmp)
        result = run(
            args.models,
            args.batches,
            seconds=args.seconds,
            min_calls=args.min_calls,
            backends=args.backends,
            rounds=args.rounds,
            columns=args.columns,
        )
    ended = datetime.datetime.now().astimezone()
    result.update(machine=machine, versions=versions(), started=started.isoformat(), ended=ended.isoformat())
    print(
        f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} {started:%Z}; {cpu_line(machine)}, at end "
        f"{os.getloadavg()[0]:.2f}; {result['threads']} threads per library"
    )
    print("; ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print()
    print(f"crops/s, 256x192 input unless the model name says otherwise (best of {args.rounds} round(s)):")
    print()
    print(table(result, args.models, args.batches))
    print()
    print("one-time build (export or cached graph, load, check against torch):")
    for s in result["setup"]:
        print(f"  {s['model']} {s['column']}: {s['build_s']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
