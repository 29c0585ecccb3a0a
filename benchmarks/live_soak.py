"""Soak: live cameras through one ``hrstream run`` for minutes to hours, sampling memory, files, threads and
latency as it goes.

K real RTSP servers on 127.0.0.1 (the test suite's GStreamer server) serve a synthetic clip
(``hrstream synth``: 640x360, 25 fps, 3 people) at its frame rate; a server disconnects its client at the end
of the clip, so every ``--clip-seconds`` each camera has an outage and a reconnect, as a flaky camera would.
The run writes JSONL and tracks in segments of ``--segment-s`` (no video unless ``--video``), with the shipped
small pose network and the clip's true boxes as a ``file:`` detector (tiled over frame indices: a live source's
index keeps counting across reconnects). Every ``--sample-s`` the benchmark reads the run's resident memory,
open file descriptors and threads from ``/proc/PID`` and the capture-to-written latency (p50 / p95 of the frames
written since the previous sample, from the ``hrstream_source_latency_seconds`` histogram, worst camera) from
its Prometheus endpoint, and prints one row; at the end, the
memory slope over the second half of the run (least squares, kB per minute) and the first and last latencies.

Usage::

    python benchmarks/live_soak.py                                   # 2 cameras, 15 minutes
    python benchmarks/live_soak.py --cameras 4 --minutes 240 --json runs/soak.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_fixtures import cpu_description
from many_sources_benchmark import MODEL, REPO, make_clip

log = logging.getLogger("live_soak")


def tiled_detections(truth: Path, frames: int, out: Path) -> Path:
    """The clip's detections (COCO results, ``image_id`` = frame) repeated up to frame ``frames``."""
    dets = json.loads(truth.read_text())
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for d in dets:
        by_frame.setdefault(int(d["image_id"]), []).append(d)
    n = max(by_frame) + 1
    tiled = [{**d, "image_id": i} for i in range(frames) for d in by_frame.get(i % n, [])]
    out.write_text(json.dumps(tiled))
    return out


def proc_status(pid: int) -> dict[str, int]:
    """Resident memory (kB), threads and open file descriptors of process ``pid``."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {
        "rss_kb": fields["VmRSS"],
        "threads": fields["Threads"],
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """The ``q`` quantile of a Prometheus histogram's cumulative ``{upper bound: count}``, interpolated
    linearly inside its bucket as PromQL's ``histogram_quantile`` does; NaN without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return lower  # past the last finite bound: its bound, as PromQL
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


def scrape(port: int, previous: dict[str, dict[float, float]]) -> dict[str, Any]:
    """Worst camera's latency p50 / p95 (s) over the frames written since the ``previous`` scrape (from the
    ``hrstream_source_latency_seconds`` histogram; ``previous`` is updated), and totals of frames written,
    drops and reconnects."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    buckets: dict[str, dict[float, float]] = {}
    totals = {"frames_out": 0.0, "dropped_frames": 0.0, "reconnects": 0.0}
    for fam in text_string_to_metric_families(text):
        if fam.name == "hrstream_source_latency_seconds":
            for s in fam.samples:
                if s.name.endswith("_bucket"):
                    buckets.setdefault(s.labels["source"], {})[float(s.labels["le"])] = s.value
        for key in totals:
            if fam.name == f"hrstream_source_{key}":
                totals[key] += sum(s.value for s in fam.samples if s.name.endswith("_total"))
    window = {
        src: {le: n - previous.get(src, {}).get(le, 0.0) for le, n in b.items()} for src, b in buckets.items()
    }
    previous.clear()
    previous.update(buckets)
    return {
        "p50_s": max((histogram_quantile(0.5, b) for b in window.values()), default=float("nan")),
        "p95_s": max((histogram_quantile(0.95, b) for b in window.values()), default=float("nan")),
        **{k: int(v) for k, v in totals.items()},
    }


def slope_per_minute(t_s: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` against time, per minute."""
    if len(t_s) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(t_s) / 60.0, np.asarray(values, dtype=np.float64), 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples")
    ap.add_argument(
        "--clip-seconds", type=float, default=60.0, help="clip length: one outage per camera each"
    )
    ap.add_argument("--segment-s", type=float, default=120.0, help="the run's --segment-s")
    ap.add_argument("--video", action="store_true", help="also write the annotated video")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    sys.path.insert(0, str(REPO / "tests"))
    from support.rtsp import RtspServer, free_port

    machine = cpu_description()
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hrstream-soak-") as tmp_s:
        tmp = Path(tmp_s)
        clip, truth = make_clip(tmp / "clip", args.clip_seconds, seed=4242)
        det = tiled_detections(truth, int(args.minutes * 60 * 25 * 1.2) + 1000, tmp / "detections.json")
        servers = [RtspServer(clip=clip).start() for _ in range(args.cameras)]
        listing = tmp / "cameras.txt"
        listing.write_text("".join(f"cam{i} {s.url}\n" for i, s in enumerate(servers)))
        port = free_port()
        cmd = [
            sys.executable, "-m", "hrstream.cli", "run", "--sources", str(listing), "--task", "pose",
            "--model", MODEL, "--detector", f"file:{det}", "--device", "cpu", "--out", str(tmp / "out"), "-q",
            "--metrics-port", str(port), "--segment-s", str(args.segment_s), "--keep-segments", "2",
            *([] if args.video else ["--no-video"]),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        seen: dict[str, dict[float, float]] = {}
        try:
            while (elapsed := time.monotonic() - t0) < args.minutes * 60:
                time.sleep(min(args.sample_s, max(0.0, args.minutes * 60 - elapsed)))
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"hrstream run ended ({proc.returncode}): {proc.stderr.read()[-2000:]}"
                    )
                try:
                    row = {"t_s": time.monotonic() - t0, **proc_status(proc.pid), **scrape(port, seen)}
                except OSError as e:  # the endpoint starts with the run
                    log.info("no sample at %.0f s: %s", time.monotonic() - t0, e)
                    continue
                samples.append(row)
                log.info(
                    "%6.0f s  rss %d kB  fds %d  threads %d  p50 %.3f s  p95 %.3f s  frames %d  drops %d  "
                    "reconnects %d", row["t_s"], row["rss_kb"], row["fds"], row["threads"], row["p50_s"],
                    row["p95_s"], row["frames_out"], row["dropped_frames"], row["reconnects"],
                )  # fmt: skip
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 130:
                raise RuntimeError(f"hrstream run exited {proc.returncode} after SIGINT: {err[-2000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
            for s in servers:
                s.kill()
    if len(samples) < 4:
        raise RuntimeError(f"only {len(samples)} samples: run for longer than {args.minutes} min")
    second_half = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2]
    rss_slope = slope_per_minute([s["t_s"] for s in second_half], [s["rss_kb"] for s in second_half])
    out = [
        f"machine: {machine['model_name']}, {machine['usable_cores']} usable cores, native bf16: "
        f"{'yes' if machine['native_bf16'] else 'no'}, load avg (1 min) at start {machine['load_avg_1m']:.2f}, "
        f"at end {os.getloadavg()[0]:.2f}",
        f"{args.cameras} RTSP cameras, 640x360 at 25 fps, 3 people, an outage every {args.clip_seconds:g} s per "
        f"camera; model {MODEL}; segments of {args.segment_s:g} s; video {'on' if args.video else 'off'}; "
        f"{args.minutes:g} min",
        "",
        "| minute | RSS MB | fds | threads | latency p50 s | latency p95 s | frames written | dropped | reconnects |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in samples:
        out.append(
            f"| {s['t_s'] / 60:.1f} | {s['rss_kb'] / 1024:.1f} | {s['fds']} | {s['threads']} | {s['p50_s']:.3f} "
            f"| {s['p95_s']:.3f} | {s['frames_out']} | {s['dropped_frames']} | {s['reconnects']} |"
        )
    first, last = samples[0], samples[-1]
    out += [
        "",
        f"RSS over the second half: {rss_slope:+.1f} kB per minute (least squares over {len(second_half)} samples); "
        f"first / last sample {first['rss_kb'] / 1024:.1f} / {last['rss_kb'] / 1024:.1f} MB",
        f"fds first / most / last: {first['fds']} / {max(s['fds'] for s in samples)} / {last['fds']}; "
        f"threads {first['threads']} / {max(s['threads'] for s in samples)} / {last['threads']}",
        f"latency p95 first / last sample: {first['p95_s']:.3f} / {last['p95_s']:.3f} s",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(
            json.dumps({"machine": machine, "args": vars(args), "samples": samples})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
