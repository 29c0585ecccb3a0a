"""Each counter is kept in one place: the status lines, the Prometheus endpoint, the manifest and the JSONL events
of a live run all read the same numbers.

Two real RTSP cameras (GStreamer on 127.0.0.1), one of them down for a few seconds; then both go down and the
run goes quiet (nothing moves while the cameras are away), and every report is read at that moment.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from support.cli_checks import ROOT, cli_env, manifest_jobs, read_jsonl
from support.clips import h264_clip
from support.rtsp import RtspServer, free_port, needs_rtsp
from support.tiny_models import tiny_pose_model

STATUS = re.compile(
    r"INFO (?P<name>\w+): (?P<state>\w+), (?P<frames_in>\d+) frames in, (?P<frames_out>\d+) out \([\d.]+ fps\), "
    r"(?P<drops>\d+) dropped, (?P<reconnects>\d+) reconnects, (?P<gaps>\d+) gaps"
)
KEYS = ("frames_in", "frames_out", "drops", "reconnects", "gaps")


def _scrape(port: int) -> dict[str, dict[str, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    names = {
        "hrstream_source_frames_in": "frames_in",
        "hrstream_source_frames_out": "frames_out",
        "hrstream_source_dropped_frames": "drops",
        "hrstream_source_reconnects": "reconnects",
        "hrstream_source_gaps": "gaps",
    }
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name in names:
            for s in fam.samples:
                if s.name.endswith("_total"):
                    out.setdefault(s.labels["source"], {})[names[fam.name]] = s.value
    return out


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@needs_rtsp
@pytest.mark.slow
def test_status_lines_prometheus_manifest_and_jsonl_agree_on_every_counter(tmp_path_factory, tmp_path):
    tiny = tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))
    clip = h264_clip(tmp_path / "long.mp4", fps=25, repeat=6)
    door, hall = RtspServer(clip=clip).start(), RtspServer(clip=clip).start()
    listing = tmp_path / "cams.txt"
    listing.write_text(f"door {door.url}\nhall {hall.url}\n")
    recipe = tmp_path / "live.yaml"
    recipe.write_text("sources:\n  backoff_max_s: 1\n  open_timeout_s: 2\n  read_timeout_s: 2\n")
    out, port, log = tmp_path / "out", free_port(), tmp_path / "stderr.txt"
    args = [
        "run",
        "--sources",
        str(listing),
        "--pipeline",
        str(recipe),
        *tiny.args(),
        "--detector",
        "full-frame",
    ]
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hrstream.cli",
                *args,
                "--no-video",
                "--metrics-port",
                str(port),
                "--out",
                str(out),
            ],
            env=cli_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        jsonl = {name: out / name for name in ("door", "hall")}

        def records(name: str) -> list[dict]:
            return [r for p in sorted(out.glob(f"{name}_*Z.jsonl")) for r in read_jsonl(p)]

        _wait(lambda: all(len(records(n)) >= 25 for n in jsonl), 120, "both cameras' first frames")
        door.kill()  # an outage of a few seconds
        time.sleep(4.0)
        door = RtspServer(port=door.port, clip=clip).start()
        _wait(lambda: any(r.get("event") == "gap" for r in records("door")), 60, "the door's gap record")
        time.sleep(2.0)
        door.kill()  # both cameras away: nothing moves any more
        hall.kill()

        stable: list[dict] = []

        def quiet() -> bool:  # nothing in flight (every decoded frame written or dropped), nothing moving
            stable.append(_scrape(port))
            time.sleep(2.0)
            now = stable[-1]
            drained = len(now) == 2 and all(
                c["frames_in"] == c["frames_out"] + c["drops"] for c in now.values()
            )
            return drained and _scrape(port) == now

        _wait(quiet, 180, "the counters settling")
        time.sleep(11.0)  # two status lines (every 5 s) and manifest writes after the last change
        prom = _scrape(port)
        assert prom == stable[-1]
        status: dict[str, dict[str, int]] = {}
        for m in STATUS.finditer(log.read_text()):
            status[m["name"]] = {k: int(m[k]) for k in KEYS}
        _, jobs = manifest_jobs(out)
        for name in ("door", "hall"):
            recs = records(name)
            frames = [r for r in recs if "event" not in r]
            events = [r["event"] for r in recs if "event" in r]
            from_jsonl = {
                "frames_out": len(frames),
                "drops": sum(r["dropped_before"] for r in frames),
                "reconnects": events.count("reconnect"),
                "gaps": events.count("gap"),
            }
            job = next(j for j in jobs.values() if j["name"] == name)
            from_manifest = {
                "frames_out": job["frames"],
                "drops": job["drops"],
                "reconnects": job["live"]["reconnects"],
                "gaps": job["live"]["gaps"],
            }
            from_prom = {k: int(v) for k, v in prom[name].items()}
            assert status[name] == from_prom, (name, status[name], from_prom)
            assert {k: from_prom[k] for k in from_jsonl} == from_jsonl, (name, from_prom, from_jsonl)
            assert from_manifest == from_jsonl, (name, from_manifest, from_jsonl)
        assert prom["door"]["gaps"] == 1 and prom["door"]["reconnects"] >= 1 and prom["hall"]["gaps"] == 0
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        door.kill()
        hall.kill()
    assert proc.returncode == 130, log.read_text()[-3000:]
