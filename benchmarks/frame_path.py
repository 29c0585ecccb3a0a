"""Which package files one frame's code passes through, from decode to its written record, measured.

Runs ``hrstream run`` in-process (pose with the shipped synthetic networks, JSONL and tracks, no video) on a clip
and, with a profile hook on every thread, counts the calls into each ``hrstream/`` file while the pipeline is in
its steady state (the frames between ``--skip`` and ``--skip + --window``; start-up, model loading and the end
of the run are left out). A file with calls in that window is on the path of the frames going through it.

    python benchmarks/frame_path.py [--clip VIDEO] [--skip 30] [--window 60]

Prints one line per file, in the order its first call came, with the number of calls; and the count.
docs/architecture.md lists the same path, each file with what it does to the frame.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = str(ROOT / "hrstream")


class Window:
    """Counts calls per package file between two decoded-frame counts."""

    def __init__(self, skip: int, window: int) -> None:
        self.skip, self.end = skip, skip + window
        self.decoded = 0
        self.calls: Counter[str] = Counter()
        self.first: dict[str, int] = {}
        self.threads: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        path = frame.f_code.co_filename
        if not path.startswith(PACKAGE) or not (self.skip <= self.decoded < self.end):
            return
        thread = threading.current_thread()
        if thread is threading.main_thread() or thread.name == "hrstream-status":
            return  # the run's own loop and its status lines, not a frame's path
        rel = str(Path(path).relative_to(ROOT))
        with self.lock:
            self.calls[rel] += 1
            self.threads.setdefault(rel, set()).add(thread.name.rpartition(":")[2])
            self.first.setdefault(rel, len(self.first))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(ROOT / "tests/data/videos/basketball_426x240_2997.mp4"))
    ap.add_argument("--skip", type=int, default=30, help="frames decoded before counting starts")
    ap.add_argument("--window", type=int, default=60, help="frames decoded while counting")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from hrstream.cli import main as cli
    from hrstream.io import sources

    win = Window(args.skip, args.window)
    decode = sources.VideoSource.__next__

    def counted(self: Any) -> Any:
        frame = decode(self)
        win.decoded += 1
        return frame

    sources.VideoSource.__next__ = counted  # type: ignore[method-assign]
    threading.setprofile(win.hook)
    sys.setprofile(win.hook)
    with tempfile.TemporaryDirectory() as out:
        try:
            cli.main(
                [
                    "run",
                    args.clip,
                    "--task",
                    "pose",
                    "--model",
                    "synthetic_pose_hrnet_w18_small_128x96",
                    "--detector",
                    "synthetic_det_hrnet_w18_small_fcos",
                    "--no-video",
                    "--out",
                    out,
                    "--quiet",
                ],
                standalone_mode=False,
            )
        except SystemExit as e:  # the command's exit code
            if e.code:
                raise
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
    order = sorted(win.calls, key=win.first.__getitem__)
    for rel in order:
        print(f"{win.calls[rel]:8d}  {rel:36s} {' '.join(sorted(win.threads[rel]))}")
    print(
        f"{len(order)} package files called while frames {args.skip}..{args.skip + args.window} went through"
    )


if __name__ == "__main__":
    main()
