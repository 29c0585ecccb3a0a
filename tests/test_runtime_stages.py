"""Queues, batcher and the threaded pipeline: lossless order, errors, stop, abort, signals (live frames are dropped
earlier, in their sources' lanes: tests/test_many_sources.py)."""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hrstream.errors import StageError
from hrstream.runtime import Batcher, BoundedQueue, Pipeline, QueueAborted, QueueClosed

REPO = Path(__file__).resolve().parents[1]


class RecordingSink:
    """Keeps what it receives (with the time it arrived) and whether ``close`` ran."""

    def __init__(self, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.items: list = []
        self.times: list[float] = []
        self.closed = False
        self.delay_s = delay_s
        self.fail_at = fail_at

    def write(self, item) -> None:
        if self.fail_at is not None and len(self.items) == self.fail_at:
            raise OSError("disk full")
        if self.delay_s:
            time.sleep(self.delay_s)
        self.items.append(item)
        self.times.append(time.monotonic())

    def close(self) -> None:
        self.closed = True


def pipeline_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}:")]


# -- queues ------------------------------------------------------------------------------------------
def test_bounded_queue_blocks_when_full_and_drains_after_close():
    q = BoundedQueue(2, name="q")
    q.put(1)
    q.put(2)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    q.close()
    with pytest.raises(QueueClosed):
        q.put(3)
    assert [q.get(), q.get()] == [1, 2]
    with pytest.raises(QueueClosed):
        q.get()
    assert q.stats().max_depth == 2


def test_abort_wakes_blocked_producer_and_consumer_promptly():
    full, empty = BoundedQueue(1), BoundedQueue(1)
    full.put("x")
    raised: list[str] = []

    def put() -> None:
        try:
            full.put("y")
        except QueueAborted:
            raised.append("put")

    def get() -> None:
        try:
            empty.get()
        except QueueAborted:
            raised.append("get")

    threads = [threading.Thread(target=put), threading.Thread(target=get)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    assert raised == []  # both blocked: the put on a full queue, the get on an empty one
    full.abort()
    empty.abort()
    for t in threads:
        t.join(30.0)  # a safety net only: without the abort they would block for ever
    assert sorted(raised) == ["get", "put"]


# -- batcher -----------------------------------------------------------------------------------------
def test_batcher_groups_by_weight_in_order():
    b = Batcher(max_batch=4, max_wait_s=10.0, weight=lambda item: item[1])
    out = []
    for item in [("a", 1), ("b", 2), ("c", 2), ("d", 0), ("e", 9), ("f", 1), ("g", 3), ("h", 1)]:
        out += b.add(item)
    rest = b.flush()
    names = [[n for n, _ in batch] for batch in [*out, rest]]
    # a+b=3, +c would be 5 -> flush; c+d=2, e (9 > 4) alone; f+g=4 is full; h is the remainder.
    assert names == [["a", "b"], ["c", "d"], ["e"], ["f", "g"], ["h"]]
    assert b.flush() is None and b.deadline is None


def test_batcher_deadline_counts_from_first_item():
    now = [100.0]
    b = Batcher(max_batch=8, max_wait_s=0.5, clock=lambda: now[0])
    b.add(1)
    now[0] = 100.4
    b.add(2)
    assert b.deadline == pytest.approx(100.5)
    assert b.poll() is None
    now[0] = 100.5
    assert b.poll() == [1, 2]
    assert b.poll() is None


# -- pipeline: lossless ---------------------------------------------------------------------------
def test_file_mode_is_lossless_and_ordered_with_slow_consumer():
    n = 150
    sink = RecordingSink(delay_s=0.002)
    stats = (
        Pipeline("lossless")
        .source("src", range(n), queue_size=2)
        .map("double", lambda x: 2 * x, queue_size=2)
        .sink("sink", sink)
        .run()
    )
    assert sink.items == [2 * i for i in range(n)]
    assert sink.closed
    assert stats.outcome == "completed"
    assert stats.stage("src").items_in == n and stats.stage("sink").items_in == n
    for s in stats.stages[:-1]:
        assert s.out_queue is not None and s.out_queue.max_depth <= s.out_queue.maxsize
    assert stats.stage("sink").busy_s > 0
    assert not pipeline_threads("lossless")


def test_then_runs_on_the_stage_before_without_a_thread_or_queue_of_its_own():
    seen: list[str] = []

    def tag(x: int) -> int:
        seen.append(threading.current_thread().name)
        return x + 1

    sink = RecordingSink()
    stats = (
        Pipeline("fused")
        .source("src", range(20))
        .map("double", lambda x: 2 * x)
        .then(tag)
        .sink("out", sink)
        .run()
    )
    assert sink.items == [2 * i + 1 for i in range(20)]
    assert set(seen) == {"fused:double"}
    assert [s.name for s in stats.stages] == ["src", "double", "out"]
    with pytest.raises(ValueError, match="then"):
        Pipeline("bad").source("src", range(3)).then(tag)


# -- pipeline: failures, stop, abort ---------------------------------------------------------------
def test_exception_in_middle_stage_raises_stage_error_and_stops_all_threads():
    def boom(x: int) -> int:
        if x == 30:
            raise ZeroDivisionError("bad frame")
        return x

    sink = RecordingSink(delay_s=0.001)
    p = (
        Pipeline("failing")
        .source("src", itertools.count(), queue_size=2)
        .map("boom", boom)
        .sink("sink", sink)
    )
    with pytest.raises(StageError) as info:
        p.run()
    # the error stopped the endless source at once: it read at most what the queues hold past item 30
    assert 31 <= p.stats()[0].items_in <= 31 + 2 + 4 + 1 + 1
    assert info.value.stage == "boom"
    assert isinstance(info.value.cause, ZeroDivisionError)
    assert "boom" in str(info.value)
    assert sink.closed and sink.items == list(range(len(sink.items)))
    assert not pipeline_threads("failing")


@pytest.mark.parametrize("where", ["source", "sink"])
def test_errors_at_the_ends_are_named(where: str):
    def bad_source():
        yield from range(5)
        raise ValueError("corrupt packet")

    source = bad_source() if where == "source" else itertools.count()
    sink = RecordingSink(fail_at=3 if where == "sink" else None)
    p = Pipeline(f"end-{where}").source("src", source).map("id", lambda x: x).sink("out", sink)
    with pytest.raises(StageError) as info:
        p.run()
    assert info.value.stage == ("src" if where == "source" else "out")
    assert sink.closed
    assert not pipeline_threads(f"end-{where}")


class Tagger:
    """A stateful stage: numbers items, emits a summary at end of stream, records close."""

    def __init__(self) -> None:
        self.seen = 0
        self.closed = False

    def process(self, item):
        self.seen += 1
        yield item

    def finish(self):
        yield ("summary", self.seen)

    def close(self) -> None:
        self.closed = True


def test_request_stop_drains_in_flight_items_and_closes_everything():
    tagger = Tagger()
    sink = RecordingSink(delay_s=0.005)
    p = Pipeline("drain").source("src", itertools.count(), queue_size=4).map("tag", tagger).sink("sink", sink)

    def stopper() -> None:
        while len(sink.items) < 20:
            time.sleep(0.005)
        p.request_stop()

    threading.Thread(target=stopper).start()
    stats = p.run(grace_s=5.0)
    assert stats.outcome == "stopped"
    produced = stats.stage("src").items_in
    assert sink.items[:-1] == list(range(produced))  # nothing read was lost
    assert sink.items[-1] == ("summary", produced)  # finish() ran
    assert tagger.closed and sink.closed
    assert not pipeline_threads("drain")


def test_grace_period_turns_a_slow_drain_into_an_abort():
    sink = RecordingSink(delay_s=0.2)
    p = Pipeline("grace").source("src", itertools.count(), queue_size=8).sink("sink", sink)
    threading.Timer(0.3, p.request_stop).start()
    stats = p.run(grace_s=0.2)
    assert stats.outcome == "aborted"
    # the items read but not written were dropped, not drained (8 queued at 0.2 s each: 1.6 s > grace)
    assert stats.stage("sink").items_in < stats.stage("src").items_in
    assert sink.closed
    assert not pipeline_threads("grace")


def test_abort_stops_a_blocked_pipeline_at_once():
    gate = threading.Event()
    p = (
        Pipeline("abort")
        .source("src", itertools.count(), queue_size=2)
        .map("stuck", lambda x: gate.wait(0.05) or x)
        .sink("sink", RecordingSink())
    )
    threading.Timer(0.2, p.abort).start()
    stats = p.run()
    assert stats.outcome == "aborted"
    assert not pipeline_threads("abort")


class StuckSource:
    """A live source stuck in a read (a camera reconnecting) that only its ``on_stop`` hook interrupts. The
    read gives up by itself after ``patience_s`` (so a test fails instead of hanging)."""

    def __init__(self, items: int, patience_s: float = 10.0) -> None:
        self.items = items
        self.patience_s = patience_s
        self.stop = threading.Event()
        self.interrupted = False
        self.stuck = threading.Event()

    def __iter__(self):
        yield from range(self.items)
        self.stuck.set()
        self.interrupted = self.stop.wait(self.patience_s)

    def on_stop(self) -> None:
        self.stop.set()


def test_abort_interrupts_a_source_stuck_in_a_read():
    src = StuckSource(3)
    sink = RecordingSink()
    p = (
        Pipeline("stuck-abort")
        .source("cam", src, on_stop=src.on_stop)
        .map("id", lambda x: x)
        .sink("out", sink)
    )

    def abort_when_stuck() -> None:
        src.stuck.wait()
        p.abort()

    threading.Thread(target=abort_when_stuck).start()
    stats = p.run()
    assert stats.outcome == "aborted"
    assert src.interrupted  # woken by the hook, not by its own patience running out
    assert sink.closed and not pipeline_threads("stuck-abort")


def test_a_stage_error_interrupts_a_source_stuck_in_a_read():
    src = StuckSource(3)

    def fail_on_last(x: int) -> int:
        if x == 2:
            src.stuck.wait()  # the source is in its read when the error comes
            raise ValueError("bad frame")
        return x

    sink = RecordingSink()
    p = (
        Pipeline("stuck-error")
        .source("cam", src, on_stop=src.on_stop)
        .map("f", fail_on_last)
        .sink("out", sink)
    )
    with pytest.raises(StageError) as info:
        p.run()
    assert info.value.stage == "f" and isinstance(info.value.cause, ValueError)
    assert src.interrupted
    assert sink.closed and sink.items == [0, 1][: len(sink.items)]  # queued items are dropped
    assert not pipeline_threads("stuck-error")


# -- batch stage -------------------------------------------------------------------------------------
def test_batch_stage_emits_partial_batch_at_deadline_and_keeps_order():
    max_wait = 0.1
    born: dict[int, float] = {}

    def slow_source():
        for i in range(7):
            if i in (3, 5):
                time.sleep(0.6)  # much longer than max_wait: the pending batch must go out alone
            born[i] = time.monotonic()
            yield i

    sink = RecordingSink()
    stats = (
        Pipeline("batching")
        .source("src", slow_source())
        .batch("batch", max_batch=4, max_wait_s=max_wait)
        .sink("sink", sink)
        .run()
    )
    assert sink.items == [[0, 1, 2], [3, 4], [5, 6]]
    for batch, emitted, nxt in zip(sink.items[:2], sink.times[:2], (3, 5), strict=True):
        assert emitted - born[batch[0]] >= max_wait - 0.01  # held until its deadline
        assert emitted < born[nxt]  # then sent alone, before the next item came
    assert stats.stage("batch").items_in == 7 and stats.stage("batch").items_out == 3


def test_batch_stage_batches_by_weight_at_full_speed():
    weights = [3, 1, 2, 2, 5, 0, 4, 1, 1, 1]
    sink = RecordingSink()
    Pipeline("weights").source("src", list(enumerate(weights))).batch(
        "batch", max_batch=4, max_wait_s=5.0, weight=lambda item: item[1]
    ).sink("sink", sink).run()
    flat = [i for batch in sink.items for i, _ in batch]
    assert flat == list(range(len(weights)))
    for batch in sink.items:
        total = sum(w for _, w in batch)
        assert total <= 4 or len(batch) == 1


# -- signals -----------------------------------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hrstream.runtime import Pipeline, StopOnSignals

    out = Path(sys.argv[1])
    delay = float(sys.argv[2])

    class Sink:
        def __init__(self):
            self.f = open(out / "items.txt", "w")
        def write(self, i):
            time.sleep(delay)
            self.f.write(f"{i}\\n")
            self.f.flush()
            if i == 3:
                print("ready", flush=True)
        def close(self):
            self.f.close()
            (out / "closed").write_text("ok")

    def frames():
        i = 0
        while True:
            time.sleep(0.005)
            yield i
            i += 1

    p = Pipeline("sig").source("src", frames()).map("id", lambda x: x).sink("sink", Sink())
    with StopOnSignals(p) as sig:
        stats = p.run(grace_s=30)
    print(f"{stats.outcome} {stats.stage('src').items_in} {stats.stage('sink').items_in}", flush=True)
    sys.exit(sig.exit_code or 0)
    """
)


def run_and_signal(tmp_path: Path, signals: list[int], delay: float) -> tuple[int, str, str, float]:
    """Runs SCRIPT, sends ``signals`` once it has written a few items; returns rc, stdout, stderr, seconds."""
    script = tmp_path / "run_pipeline.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        for sig in signals:
            os.kill(proc.pid, sig)
            time.sleep(0.1)
        out, err = proc.communicate(timeout=20)
        return proc.returncode, out.strip(), err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_stops_cleanly_drains_and_closes_sink(tmp_path: Path, sig: int, code: int):
    rc, out, err, _ = run_and_signal(tmp_path, [sig], delay=0.01)
    assert rc == code, err
    outcome, produced, written = out.split()
    assert outcome == "stopped" and produced == written
    assert (tmp_path / "closed").read_text() == "ok"
    lines = (tmp_path / "items.txt").read_text().split()
    assert lines == [str(i) for i in range(int(produced))]


def test_second_sigint_aborts_a_slow_drain(tmp_path: Path):
    rc, out, err, _ = run_and_signal(tmp_path, [signal.SIGINT, signal.SIGINT], delay=0.5)
    assert rc == 130, err
    outcome, produced, written = out.split()
    assert outcome == "aborted"
    assert int(written) <= int(produced) - 5  # the queued items were dropped, not drained
    assert (tmp_path / "closed").read_text() == "ok"
