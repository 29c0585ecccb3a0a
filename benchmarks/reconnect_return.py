"""How soon a live source is back after its camera was away.

A real RTSP server (GStreamer, ``tests/support/rtsp.py``) serving a 60 s H.264 clip is read with
``open_live_source`` (default backoff: 0.5 s doubling to a 30 s cap; probes every second), stopped for each
outage and started again on the same port. For each outage it prints the time from the restarted server's
first answer to the first frame the source delivered, and the start-up of a fresh open on the same server
(what no reconnect can beat). ``--no-probe`` measures the backoff alone, as before probes:

    python benchmarks/reconnect_return.py [--outages 25 40] [--no-probe] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outages", type=float, nargs="+", default=[25.0, 40.0], help="seconds each")
    ap.add_argument(
        "--no-probe", action="store_true", help="the backoff alone (probe_s=None), for comparison"
    )
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO))
    from support.clips import h264_clip
    from support.outage import measure_return

    rows = []
    with tempfile.TemporaryDirectory(prefix="hrstream-return-") as tmp:
        clip = h264_clip(Path(tmp) / "long.mp4", fps=30, repeat=6)
        for outage in args.outages:
            r = measure_return(clip, outage, **({"probe_s": None} if args.no_probe else {}))
            row = {
                "probes": not args.no_probe,
                "outage_s": round(r.outage_s, 2),
                "return_s": round(r.return_s, 3),
                "startup_s": round(r.startup_s, 3),
                "over_startup_s": round(r.return_s - r.startup_s, 3),
                "gap_s": [g["duration_s"] for g in r.gaps],
                "attempts": r.attempts,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
