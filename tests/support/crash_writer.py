"""Write frames and records until killed (used by the SIGKILL crash-safety test).

    python tests/support/crash_writer.py OUT_DIR

Writes OUT_DIR/video.mp4 (VideoWriter, 160x120, 30 fps, 1 s GOP), OUT_DIR/frames.jsonl (one line per frame)
and rewrites OUT_DIR/state.json atomically every frame, printing ``WROTE <n>`` after each frame. It never
finishes on its own within a test's time (10,000 frames), so the test kills it.
"""

import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from hrstream.io import JsonlWriter, VideoWriter, write_json_atomic


def main() -> None:
    out = Path(sys.argv[1])
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    tb = Fraction(1, 30)
    with (
        VideoWriter(out / "video.mp4", width=160, height=120, time_base=tb, fps=30, preset="ultrafast") as vw,
        JsonlWriter(out / "frames.jsonl") as jw,
    ):
        for i in range(10_000):
            img = np.roll(base, i, axis=1)
            vw.write(img, i, tb)
            jw.write({"index": i, "pts_s": float(i * tb), "values": np.arange(20, dtype=np.float32) * i})
            write_json_atomic(out / "state.json", {"frames": i + 1, "payload": list(range(2000))})
            print(f"WROTE {i + 1}", flush=True)
            time.sleep(0.002)


if __name__ == "__main__":
    main()
