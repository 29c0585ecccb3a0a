"""What a run tells its user: the overall progress bar, the end-of-run table, ``hrstream status`` and the exit
code.

Exit codes of a run (:func:`exit_code`): 0 all inputs done, 1 some inputs failed, 3 (:data:`EXIT_GAVE_UP`) live
sources gave up after ``--max-reconnects`` and nothing else failed, 130/143 interrupted by SIGINT/SIGTERM.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence

from hrstream.runs.items import WorkItem
from hrstream.runs.manifest import Manifest
from hrstream.types import SourceResult

__all__ = ["EXIT_GAVE_UP", "OverallProgress", "exit_code", "format_status", "format_summary"]

#: Exit code of a run whose only failures are live sources that gave up (``--max-reconnects``).
EXIT_GAVE_UP = 3


def exit_code(results: Sequence[SourceResult], signum: int | None) -> int:
    """0 all done; 1 some input failed; 3 (:data:`EXIT_GAVE_UP`) live sources gave up and nothing else failed;
    130/143 interrupted by SIGINT/SIGTERM."""
    if signum is not None:
        return 128 + signum
    failed = [r for r in results if r.status == "failed"]
    if failed and all(r.gave_up for r in failed):
        return EXIT_GAVE_UP
    return 1 if failed else 0


class OverallProgress:
    """One progress bar for a whole run (videos done / total, frames/s, ETA), on stderr."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="video", desc="hrstream", file=sys.stderr, dynamic_ncols=True)
        self._frames: dict[str, int] = {}
        self._t0 = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def progress(self, item: WorkItem, frames: int) -> None:
        with self._lock:
            self._frames[item.key] = frames
            now = time.monotonic()
            if now - self._last >= 0.5:
                self._last = now
                self._postfix(now)

    def _postfix(self, now: float) -> None:
        fps = sum(self._frames.values()) / max(now - self._t0, 1e-6)
        self._bar.set_postfix_str(f"{fps:.1f} frames/s", refresh=True)

    def finished(self, item: WorkItem, result: SourceResult) -> None:
        with self._lock:
            self._frames[item.key] = result.frames
            self._postfix(time.monotonic())
            self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def format_summary(results: Sequence[SourceResult]) -> str:
    """A table of a run's outcome: inputs, frames and seconds per status, then every failed input's error."""
    rows: dict[str, list[float]] = {}
    for r in results:
        row = rows.setdefault(r.status, [0, 0, 0.0])
        row[0] += 1
        row[1] += r.frames
        row[2] += r.elapsed_s
    lines = [f"{'status':<12}{'inputs':>8}{'frames':>10}{'seconds':>10}{'frames/s':>10}"]
    for status in ("ok", "skipped", "failed", "interrupted"):
        if status in rows:
            n, frames, secs = rows[status]
            rate = f"{frames / secs:.1f}" if secs > 0 and status != "skipped" else "-"
            shown = f"{secs:.1f}" if status != "skipped" else "-"
            lines.append(f"{status:<12}{int(n):>8}{int(frames):>10}{shown:>10}{rate:>10}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines.append("failed:")
        lines.extend(f"  {r.error or r.input + ': failed'}" for r in failed)  # errors name their input
    return "\n".join(lines)


def format_status(manifest: Manifest) -> tuple[str, int]:
    """What ``hrstream status OUT`` prints for ``manifest``, and its exit code (1 if any input failed).

    Done: ``ok`` entries; failed: with their errors; running: only while the run holding them is alive;
    remaining: pending, interrupted, and entries left running by a run that stopped (the next run does them).
    """
    groups = manifest.by_status()
    live_run = manifest.run_in_progress()
    running = groups.get("running", []) if live_run is not None else []
    stale = [] if live_run is not None else groups.get("running", [])
    remaining = groups.get("pending", []) + groups.get("interrupted", []) + stale
    failed = groups.get("failed", [])
    done = groups.get("ok", [])
    total = sum(len(v) for v in groups.values())
    lines = [
        f"{manifest.out_dir}: {total} inputs: {len(done)} done, {len(failed)} failed, {len(running)} running, "
        f"{len(remaining)} remaining"
    ]
    if manifest.runs:
        run = manifest.runs[-1]
        if live_run is not None:
            lines.append(
                f"a run is in progress (pid {run.get('pid')} on {run.get('host')}, since {run.get('started')})"
            )
        else:
            lines.append(
                f"last run: {run.get('state')} (started {run.get('started')}, ended {run.get('ended')})"
            )
    if failed:
        lines.append("failed:")
        lines.extend(f"  {e.get('error') or e['input'] + ': failed'}" for e in failed)
    if running:
        lines.append("running:")
        lines.extend(
            f"  {e['input']} (attempt {e.get('attempts', 1)}, since {e.get('updated')})" for e in running
        )
    if remaining:
        lines.append("remaining:")
        for e in remaining:
            why = "left running by a run that stopped" if e["status"] == "running" else e["status"]
            lines.append(f"  {e['input']} ({why})")
    frames = sum(int(e.get("frames") or 0) for e in done)
    secs = sum(float(e.get("elapsed_s") or 0.0) for e in done)
    if done:
        lines.append(f"done: {frames} frames in {secs:.1f} s of processing")
    return "\n".join(lines), (1 if failed else 0)
