"""A folder of short clips with one process, with worker processes and with Ray actors: videos/min, start-up
cost per worker, overhead per video; and the per-stage costs the 16-core / 1-GPU projection starts from.

    .venv/bin/python benchmarks/bench_workers.py                      # 24 clips, every configuration
    .venv/bin/python benchmarks/bench_workers.py --clips 8 --configs plain,workers2

The clips are rendered by ``hrstream synth`` (320x240, 10 fps, 2 s, 2 people) and processed with the shipped
synthetic models (``pipelines/synthetic.yaml`` as ``--task pose``: HRNetV2p detector with flip test, pose
HRNet-W18-Small 128x96 with flip test, tracking with identity repair, annotated video, JSONL, tracks). Each
configuration is a fresh ``hrstream run`` child process into its own folder:

* ``plain``: one process, no workers (the reference);
* ``workers1`` / ``workers2``: ``--workers 1`` / ``--workers 2`` (spawned worker processes);
* ``ray2``: ``--executor ray --cpus-per-worker 1`` (2 actors on a local cluster the run starts and stops).

From the manifest each run leaves: ``videos/min`` = clips / wall time x 60 (wall: the whole command, start-up
included); ``start-up/worker`` = the mean time from starting a worker (process or actor) to its first
``ready`` (interpreter, imports, model load); ``overhead/video`` = (workers x (wall - start-up) - the sum of
the inputs' own pipeline times) / clips: what an input costs besides its own pipeline (dispatch, manifest
writes, building and tearing down its pipeline, idle workers at the end). ``stage costs``: one in-process run
over the first clips; each stage's busy seconds per frame (its thread's time in its work, which on 2 shared
cores includes waiting for the CPU).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_fixtures import cpu_description

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "plain": [],
    "workers1": ["--workers", "1"],
    "workers2": ["--workers", "2"],
    "ray2": ["--executor", "ray", "--cpus-per-worker", "1"],
}
RUN = ["--pipeline", str(ROOT / "pipelines" / "synthetic.yaml"), "--task", "pose", "-q"]


def make_clips(folder: Path, n: int) -> list[Path]:
    """``n`` synthetic clips (seeds 7000...) in ``folder`` (kept when already there)."""
    clips = sorted(folder.glob("bench_*.mp4"))
    if len(clips) >= n:
        return clips[:n]
    cmd = [sys.executable, "-m", "hrstream.cli", "synth", str(folder), "--clips", str(n), "--name", "bench"]
    cmd += [
        "--width",
        "320",
        "--height",
        "240",
        "--fps",
        "10",
        "--seconds",
        "2",
        "--people",
        "2",
        "--seed",
        "7000",
    ]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    return sorted(folder.glob("bench_*.mp4"))[:n]


def run_config(name: str, clips: list[Path], out: Path) -> dict[str, Any]:
    """One ``hrstream run`` of ``clips`` as configuration ``name``; the figures of the module's docstring."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    cmd = [
        sys.executable,
        "-m",
        "hrstream.cli",
        "run",
        *map(str, clips),
        *RUN,
        "--out",
        str(out),
        *CONFIGS[name],
    ]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()[0]
    if res.returncode != 0:
        raise RuntimeError(f"{name}: exit {res.returncode}\n{res.stderr[-3000:]}")
    doc = json.loads((out / "manifest.json").read_text())
    jobs = doc["jobs"]
    assert len(jobs) == len(clips) and all(j["status"] == "ok" for j in jobs), name
    workers = doc["runs"][-1].get("workers") or []
    n = max(1, len(workers))
    start = [w["start_s"] for w in workers]
    startup = max(start) if start else 0.0
    busy = sum(j["elapsed_s"] for j in jobs)
    frames = sum(j["frames"] for j in jobs)
    return {
        "config": name,
        "workers": len(workers),
        "wall_s": round(wall, 2),
        "videos_per_min": round(len(clips) / wall * 60, 1),
        "frames_per_s": round(frames / wall, 2),
        "pipeline_s": round(busy, 2),
        "startup_s": round(sum(start) / len(start), 2) if start else None,
        "setup_s": round(sum(w["setup_s"] for w in workers) / len(workers), 2) if workers else None,
        "overhead_per_video_s": round((n * (wall - startup) - busy) / len(clips), 3) if workers else None,
        "load_1m": [round(load_before, 1), round(load_after, 1)],
    }


def stage_costs(clips: list[Path], out: Path) -> dict[str, Any]:
    """One in-process run over ``clips``: each stage's busy seconds per frame and its share."""
    from hrstream.pipeline.builder import load_networks
    from hrstream.pipeline.recipe_load import load_recipe
    from hrstream.runs import LocalExecutor, run_inputs

    recipe = load_recipe("pose", ROOT / "pipelines" / "synthetic.yaml", {})
    networks = load_networks(recipe, progress=False)
    runner = LocalExecutor(networks, out_dir=out, grace_s=None)
    t0 = time.perf_counter()
    results = run_inputs(
        [str(c) for c in clips], runner, out_dir=out, recipe_digest=recipe.digest(), force=True
    ).results
    wall = time.perf_counter() - t0
    assert runner.stats is not None and all(r.status == "ok" for r in results)
    frames = sum(r.frames for r in results)
    stages = {s.name: round(s.busy_s / frames * 1000, 2) for s in runner.stats.stages}
    return {
        "frames": frames,
        "wall_s": round(wall, 2),
        "ms_per_frame": stages,
        "device": str(networks.device),
    }


def ray_cluster_start() -> float | None:
    """Seconds for ``ray.init(address="local")`` on this machine (what ``--executor ray`` pays first)."""
    try:
        import ray
    except ImportError:
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    took = time.perf_counter() - t0
    ray.shutdown()
    return round(took, 2)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| config | workers started | wall s | videos/min | frames/s | start-up/worker s | overhead/video s "
        "| load (1 min) before / after |"
    )
    lines = [head, "|" + " --- |" * 8]
    for r in rows:
        start = "-" if r["startup_s"] is None else f"{r['startup_s']:.2f} (load {r['setup_s']:.2f})"
        over = "-" if r["overhead_per_video_s"] is None else f"{r['overhead_per_video_s']:.3f}"
        lines.append(
            f"| {r['config']} | {r['workers'] or '-'} | {r['wall_s']:.1f} | {r['videos_per_min']:.1f} | "
            f"{r['frames_per_s']:.1f} | {start} | {over} | {r['load_1m'][0]} / {r['load_1m'][1]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--stage-clips", type=int, default=4, help="clips of the per-stage measurement (0: skip)")
    ap.add_argument(
        "--work", type=Path, default=None, help="keep clips and outputs here (default: a temp dir)"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    machine = cpu_description()
    started = datetime.datetime.now().astimezone()
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as tmp:
        work = args.work or Path(tmp)
        clips = make_clips(work / "clips", args.clips)
        rows = []
        for name in [c for c in args.configs.split(",") if c]:
            out = work / f"out_{name}"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            rows.append(run_config(name, clips, out))
            print(f"{name}: {rows[-1]}", file=sys.stderr)
        stages = stage_costs(clips[: args.stage_clips], work / "out_stages") if args.stage_clips else None
        ray_start = ray_cluster_start() if "ray2" in args.configs else None
    ended = datetime.datetime.now().astimezone()
    print(
        f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} {started:%Z}; CPU: {machine['model_name']}, "
        f"{machine['usable_cores']} cores; native bf16 flags: {', '.join(machine['bf16_flags']) or 'none'} "
        f"(--amp auto picks {machine['amp_auto']}); torch.backends.cpu.get_cpu_capability() = "
        f"{machine['torch_cpu_capability']}; load avg (1 min) at start {machine['load_avg_1m']:.2f}, "
        f"at end {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{len(clips)} clips of 20 frames (320x240, 10 fps, 2 people), shipped synthetic models, --task pose"
    )
    print()
    print(table(rows))
    if ray_start is not None:
        print(f"\nRay local cluster start (ray.init, before any actor): {ray_start:.2f} s")
    if stages is not None:
        print(f"\nper-stage busy ms per frame ({stages['frames']} frames, one process, {stages['device']}):")
        print("  " + ", ".join(f"{k} {v}" for k, v in stages["ms_per_frame"].items()))
    if args.json is not None:
        result = {"machine": machine, "started": started.isoformat(), "ended": ended.isoformat()}
        result.update(rows=rows, stages=stages, ray_cluster_start_s=ray_start)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
