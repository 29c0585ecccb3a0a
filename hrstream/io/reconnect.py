"""Live sources that survive outages: a stall watchdog and reconnection with capped, jittered backoff.

:func:`open_live_source` wraps :func:`hrstream.io.open_source` for URLs and cameras. Frames are decoded
in a reader thread (one per connection) and handed over through a small queue, so the consumer can
always be interrupted (:meth:`LiveSource.interrupt`) and can notice a stall even while the reader is
stuck inside FFmpeg. A read error, the end of the stream (a server that went away) or no frame for
``stall_s`` seconds closes the connection and reopens it. By default a live source reconnects for as long as
the run lasts (cameras reboot in 30-90 s), with exponential backoff, jittered and capped (30 s by default),
also for the very first open; ``max_reconnects`` sets a limit of consecutive failed attempts, after which the
source gives up.

Coming back quickly: between full opens the source probes the server cheaply every ``probe_s`` seconds (1 s
by default): a TCP connection to the URL's host and port, closed at once (nothing is sent), or, for a camera,
whether its device node exists. The backoff applies to full opens that fail; when a server that a probe saw
away (a refused connection, or two probes in a row without an answer) answers a probe again (the camera is
back), the full open runs at once and the backoff starts again from its first step, so a camera away for minutes is read again within about a second of its return (plus its own start-up),
while a dead one costs one refused connection a second. A failed probe is not an attempt: ``max_reconnects``
counts full opens, which go on on the backoff schedule whatever the probes say, so a limit gives up after as
many failed opens, and about as soon, as without probes.

Failures are told apart (:attr:`hrstream.errors.InputError.permanent`): timeouts, refused connections and
dropped streams are transient and retried with the backoff; a refused login, a 404, a server error or a format
FFmpeg cannot read is permanent: it is reported at once with what to fix, and then either ends the source (a
limit is set) or is retried slowly, at the backoff cap (unlimited reconnects), which the log says.

What happens is also recorded as :class:`SourceEvent` items (:meth:`LiveSource.take_events`): each outage as a
``gap`` (wall-clock times and stream times of the last frame before and the first frame after, and why), each
``reconnect``, a ``resolution`` change (a camera reconfigured: frames go on at the new size) and a ``give_up``.

Timestamps across reconnects (the choice made here): the first connection keeps the stream's own
``pts_s``; every later connection is shifted so that its first frame lands after the last frame
delivered by exactly the wall-clock time that passed between the two (``captured_at`` difference).
The timeline therefore keeps real time across a gap, ``pts_s`` and ``index`` stay strictly increasing,
and a gap shows up as a jump in ``pts_s``, never as invented frames. ``pts`` is rewritten in the first
connection's ``time_base`` so that ``pts_s == pts * time_base`` still holds.

While the first open is retried in the main thread, SIGINT/SIGTERM also end the retries (the handlers
already installed still run), so a run that waits for a dead server stops promptly.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from hrstream.errors import InputError, SourceGaveUp
from hrstream.io.base import Source, later
from hrstream.io.inputs import InputSpec, expand_inputs
from hrstream.io.opening import Attempt, Interrupted, Probe, backoff_delay, interrupt_on_signals, make_probe
from hrstream.io.sources import open_source
from hrstream.io.urls import redact_text
from hrstream.types import Frame

__all__ = ["LiveSource", "SourceEvent", "open_live_source"]

log = logging.getLogger(__name__)

_POLL_S = 0.05


EventKind = Literal["gap", "reconnect", "resolution", "give_up"]
SourceState = Literal["connecting", "connected", "reconnecting", "gave_up", "ended"]


@dataclass(frozen=True)
class SourceEvent:
    """Something that happened to a live source (``kind``) and its facts (``fields``), JSON-ready:

    * ``gap``: ``from`` / ``to`` wall-clock times (seconds since the epoch, like ``captured_at``) of the last
      frame before and the first frame after the outage, ``pts_before`` / ``pts_after`` their stream times,
      ``duration_s``, ``reason``;
    * ``reconnect``: ``at`` (wall clock), ``attempts`` it took;
    * ``resolution``: ``at``, ``from`` / ``to`` ``[width, height]``, ``frame`` (index of the first frame at the
      new size);
    * ``give_up``: ``at``, ``attempts``, ``reason``.
    """

    kind: EventKind
    fields: dict[str, Any] = field(default_factory=dict)


class _End:
    """Queue marker: the connection ended (``error`` is ``None`` at the end of the stream)."""

    def __init__(self, error: InputError | None) -> None:
        self.error = error


class _Reader(threading.Thread):
    """Reads one connection's frames into a small queue; owns the inner source and closes it at the end."""

    def __init__(self, source: Source, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.source = source
        self.frames: queue.Queue[Frame | _End] = queue.Queue(maxsize=2)
        self.cancel = threading.Event()
        self.last_activity = time.monotonic()

    def _put(self, item: Frame | _End) -> bool:
        while not self.cancel.is_set():
            try:
                self.frames.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        end = _End(None)
        try:
            for frame in self.source:
                self.last_activity = time.monotonic()
                if not self._put(frame):
                    return
                self.last_activity = time.monotonic()  # time blocked on a slow consumer is not a stall
        except InputError as exc:
            end = _End(exc)
        except Exception as exc:  # any decoder failure of a live stream is an outage, not a crash
            end = _End(InputError(redact_text(f"read failed ({type(exc).__name__}: {exc})")))
        finally:
            self.source.close()
        self._put(end)


class LiveSource(Source):
    """A URL or camera that reconnects on failure; see the module docstring and :func:`open_live_source`.

    Attributes:
        state: ``connecting``, ``connected``, ``reconnecting``, ``gave_up`` or ``ended`` (read from any thread).
        gaps: the latest outages (at most 64) as ``(t_lost, t_back)`` wall-clock pairs (``time.time()``
            seconds): the capture time of the last frame before and of the first frame after.
        reconnects: how many times the stream was reopened after a loss.
    """

    def __init__(
        self,
        job: InputSpec,
        *,
        stall_s: float | None,
        max_reconnects: int | None,
        backoff_s: float,
        backoff_max_s: float,
        reconnect_on_eof: bool,
        open_options: dict[str, Any],
        stop: threading.Event | None = None,
        wait: Callable[[float], bool] | None = None,
        probe_s: float | None = 1.0,
        probe: Probe | None = None,
    ) -> None:
        super().__init__()
        if max_reconnects is not None and max_reconnects < 1:
            raise ValueError(f"max_reconnects must be >= 1 or None (unlimited), got {max_reconnects}")
        self._job = job
        self._display = job.display
        self._stall_s = stall_s
        self._max = None if max_reconnects is None else int(max_reconnects)
        self._backoff = (float(backoff_s), float(backoff_max_s))
        self._reconnect_on_eof = reconnect_on_eof
        self._options = open_options
        self._stop = stop if stop is not None else threading.Event()
        self._wait = wait if wait is not None else self._stop.wait
        if probe_s is not None and not probe_s > 0:
            raise ValueError(f"probe_s must be > 0 or None (no probes), got {probe_s}")
        self._probe_s = probe_s
        self._probe = (probe if probe is not None else make_probe(job)) if probe_s is not None else None
        self._closed = False
        self.state: SourceState = "connecting"
        self.gaps: deque[tuple[float, float]] = deque(maxlen=64)
        self.reconnects = 0
        self._events: deque[SourceEvent] = deque(maxlen=1024)  # bounded when nobody takes them
        self._last_pts_s: float | None = None
        self._last_pts: int | None = None
        self._last_captured: float | None = None
        self._segment_start = True
        self._offset_ticks = 0
        self._offset_s = 0.0
        self._lost: tuple[float, str] | None = None
        self._attempts = 0  # attempts the last (re)connection took
        with interrupt_on_signals(self._stop):
            first = self._connect("open")
        self.state = "connected"
        self.info = first.info
        self._time_base: Fraction | None = first.info.time_base
        self._reader: _Reader | None = self._start_reader(first)

    def take_events(self) -> list[SourceEvent]:
        """The events recorded since the last call, oldest first (callable from another thread)."""
        out = []
        while self._events:
            out.append(self._events.popleft())
        return out

    # -- connecting ----------------------------------------------------------------------------------
    def _start_reader(self, src: Source) -> _Reader:
        reader = _Reader(src, name=f"hrstream-read:{src.info.name}")
        reader.start()
        return reader

    def _open_once(self) -> Source:
        attempt = Attempt(lambda: open_source(self._job, **self._options))
        while not attempt.done.wait(_POLL_S):
            if self._stop.is_set():
                attempt.abandon()
                raise Interrupted
        if attempt.error is not None:
            raise attempt.error
        assert attempt.source is not None
        return attempt.source

    def _connect(self, what: str) -> Source:
        """Open, retrying as the module docstring says; returns the new connection.

        Raises:
            InputError: the limit of attempts ran out, a permanent failure with a limit set (the source gives
                up), or a stop request ended the attempts.
        """
        t0 = time.monotonic()
        attempts = 0  # full opens that failed, in a row: what max_reconnects counts
        step = 0  # the backoff's step: failed opens since the server was last seen coming back
        told: str | None = None  # the permanent failure already reported
        while not self._stop.is_set():
            attempts += 1
            step += 1
            try:
                src = self._open_once()
                self._attempts = attempts
                return src
            except Interrupted:
                break
            except InputError as exc:
                last = redact_text(str(exc)).removeprefix(f"{self._display}: ")
                if self._max is not None and (exc.permanent or attempts >= self._max):
                    raise self._give_up(what, attempts, time.monotonic() - t0, last) from None
                if exc.permanent:
                    delay = self._backoff[1]
                    if last != told:
                        told = last
                        log.error(
                            "%s: %s; reconnects are unlimited, so it is retried every %g s "
                            "(--max-reconnects N gives up instead)",
                            self._display,
                            last,
                            delay,
                        )
                    else:
                        log.debug("%s: %s attempt %d failed again (%s)", self._display, what, attempts, last)
                else:
                    delay = backoff_delay(step, *self._backoff)
                    log.warning(
                        "%s: %s attempt %d%s failed (%s); retrying in %.2f s%s",
                        self._display,
                        what,
                        attempts,
                        "" if self._max is None else f" of {self._max}",
                        last,
                        delay,
                        " or as soon as the server answers again" if self._probe is not None else "",
                    )
            back = self._wait_to_reopen(delay)
            if back is None:
                break
            if back:
                step = 0
        elapsed = time.monotonic() - t0
        raise InputError(f"{self._display}: interrupted while connecting ({what}, {elapsed:.1f} s)")

    def _wait_to_reopen(self, delay: float) -> bool | None:
        """Wait ``delay`` seconds before the next full open, probing the server every ``probe_s`` meanwhile.

        Returns ``True`` when a probe answered after the server was seen away (a probe refused, or two in a
        row unanswered: the server is back, open now), ``False`` when the delay ran out, ``None`` when a stop
        request ended the wait. The delay is counted down by the waits (and the probes' own time), so an
        injected ``wait`` is the clock.
        """
        probe, every = self._probe, self._probe_s
        if probe is None or every is None:
            return None if self._wait(delay) else False
        timeout = min(every, 1.0)
        away, misses = False, 0
        remaining = delay
        while True:
            t = time.monotonic()
            answer = probe(timeout)  # the first one at once: a server back in a moment is noticed
            remaining -= time.monotonic() - t
            if answer is True:
                if away:
                    log.info("%s: the server answers again; reconnecting now", self._display)
                    return True
                misses = 0
            elif answer is False:
                away = True
            else:
                misses += 1
                away = away or misses >= 2
            if remaining <= 0:
                return False
            pause = min(every, remaining)
            if self._wait(pause):
                return None
            remaining -= pause
            if remaining <= 0:
                return False

    def _give_up(self, what: str, attempts: int, elapsed: float, last: str) -> SourceGaveUp:
        self.state = "gave_up"
        self._events.append(SourceEvent("give_up", {"at": time.time(), "attempts": attempts, "reason": last}))
        return SourceGaveUp(
            f"{self._display}: gave up after {attempts} {what} attempt(s) in {elapsed:.1f} s (last error: {last}); "
            "check that the server or camera is up and the URL is right"
        )

    def _lose(self, reader: _Reader, reason: str) -> None:
        self.warnings.extend(reader.source.warnings)
        del self.warnings[:-64]  # a source that lives for weeks keeps only its latest warnings
        reader.cancel.set()  # the reader closes its own connection once its read returns
        self._reader = None
        self.state = "reconnecting"
        t_lost = self._last_captured if self._last_captured is not None else time.time()
        self._lost = (t_lost, reason)
        log.warning("%s: stream lost (%s); reconnecting", self._display, redact_text(reason))

    def _close_outage(self) -> None:
        """The source stops during an outage: the outage is recorded as a gap ending at the stop (``open``)."""
        if self._lost is None:
            return
        (t_lost, reason), self._lost = self._lost, None
        now = time.time()
        pts_after = None if self._last_pts_s is None else self._last_pts_s + max(0.0, now - t_lost)
        self._events.append(
            SourceEvent(
                "gap",
                {
                    "from": t_lost,
                    "to": now,
                    "duration_s": round(now - t_lost, 3),
                    "pts_before": self._last_pts_s,
                    "pts_after": pts_after if pts_after is not None else 0.0,
                    "reason": redact_text(reason),
                    "open": True,
                },
            )
        )
        self.gaps.append((t_lost, now))

    def _reconnect(self) -> None:
        src = self._connect("reconnect")
        self.reconnects += 1
        self._events.append(SourceEvent("reconnect", {"at": time.time(), "attempts": self._attempts}))
        self.state = "connected"
        self._segment_start = True
        self._reader = self._start_reader(src)

    # -- reading -------------------------------------------------------------------------------------
    def __next__(self) -> Frame:
        while True:
            if self._stop.is_set() or self._closed:
                self._close_outage()
                raise StopIteration
            reader = self._reader
            if reader is None:
                try:
                    self._reconnect()
                except InputError:
                    if self._stop.is_set():
                        self._close_outage()
                        raise StopIteration from None
                    raise
                continue
            try:
                item = reader.frames.get(timeout=_POLL_S)
            except queue.Empty:
                idle = time.monotonic() - reader.last_activity
                if self._stall_s is not None and idle >= self._stall_s:
                    self._lose(reader, f"no frame for {idle:.1f} s")
                continue
            if isinstance(item, _End):
                if item.error is None and not self._reconnect_on_eof:
                    self.state = "ended"
                    raise StopIteration
                self._lose(reader, str(item.error) if item.error is not None else "the stream ended")
                continue
            return self._emit(item)

    def _emit(self, f: Frame) -> Frame:
        captured = f.captured_at if f.captured_at is not None else time.time()
        pts_s_in = float(f.pts_s) if f.pts_s is not None else 0.0
        if self._segment_start:
            self._segment_start = False
            if self._last_pts_s is not None and self._last_captured is not None:
                target = self._last_pts_s + max(1e-3, captured - self._last_captured)
                self._offset_s = target - pts_s_in
                tb = self._time_base
                self._offset_ticks = round(self._offset_s / tb) if tb else 0
        pts, tb = None, self._time_base
        if f.pts is not None and tb and f.time_base:
            pts = round(f.pts * Fraction(f.time_base) / tb) + self._offset_ticks
            if not later(self._last_pts, pts):
                pts = self._last_pts + 1  # type: ignore[operator]
            pts_s = float(pts * tb)
        else:
            pts_s = pts_s_in + self._offset_s
        if not later(self._last_pts_s, pts_s):
            pts_s = self._last_pts_s + 1e-6  # type: ignore[operator]
        if self._lost is not None:
            t_lost, reason = self._lost
            self._lost = None
            gap, why = captured - t_lost, redact_text(reason)
            self.gaps.append((t_lost, captured))
            self._events.append(
                SourceEvent(
                    "gap",
                    {
                        "from": t_lost,
                        "to": captured,
                        "duration_s": round(gap, 3),
                        "pts_before": self._last_pts_s,
                        "pts_after": pts_s,
                        "reason": why,
                    },
                )  # fmt: skip
            )
            log.warning("%s: gap in the stream: no frames for %.2f s (%s)", self._display, gap, why)
        self._check_size(f.image, captured)
        tb_out = tb if pts is not None else None
        out = Frame(self.info.name, self.frames_yielded, pts_s, f.image, captured, pts, tb_out)
        self.frames_yielded += 1
        self._last_pts_s, self._last_pts, self._last_captured = pts_s, pts, captured
        return out

    def _check_size(self, image: Any, at: float) -> None:
        """A camera reconfigured (after a reconnect, or mid-stream): frames go on at the new size."""
        old, new = (self.info.width, self.info.height), (int(image.shape[1]), int(image.shape[0]))
        if new == old:
            return
        log.warning(
            "%s: the frame size changed to %dx%d (was %dx%d); frames go on at it", self._display, *new, *old
        )
        self._events.append(
            SourceEvent(
                "resolution", {"at": at, "from": list(old), "to": list(new), "frame": self.frames_yielded}
            )
        )
        self.info = dataclasses.replace(self.info, width=new[0], height=new[1])

    # -- stopping ------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Make a blocked ``next()`` (waiting for a frame, a backoff or an open) return promptly."""
        self._stop.set()

    def close(self) -> None:
        """Stop reading and release the connection (the reader closes it when its current read returns)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self.state != "gave_up":
            self.state = "ended"
        reader, self._reader = self._reader, None
        if reader is not None:
            self.warnings.extend(reader.source.warnings)
            reader.cancel.set()
            reader.join(timeout=1.0)


def open_live_source(
    spec: str | InputSpec,
    *,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
    stall_s: float | None = None,
    max_reconnects: int | None = None,
    backoff_s: float = 0.5,
    backoff_max_s: float = 30.0,
    reconnect_on_eof: bool | None = None,
    stop: threading.Event | None = None,
    wait: Callable[[float], bool] | None = None,
    probe_s: float | None = 1.0,
    **open_source_options: Any,
) -> Source:
    """Open a URL or camera that reconnects after outages; the first frame is decoded before this returns.

    Args:
        spec: a URL or camera, or an :class:`InputSpec` of kind ``"url"``/``"camera"``.
        open_timeout_s, read_timeout_s: deadlines of each open and read (see :func:`open_source`).
        stall_s: reopen when no frame arrives for this many seconds; ``None``: ``2 * read_timeout_s``.
        max_reconnects: consecutive failed attempts to (re)open before the source gives up (the first open
            included; probes are not attempts); ``None``: never give up (a permanent failure is then retried
            every ``backoff_max_s``).
        backoff_s, backoff_max_s: the wait before retry ``k`` is ``min(backoff_max_s, backoff_s * 2**(k-1))``
            with jitter (half of it fixed, half random); the first attempt after a loss is immediate.
        probe_s: seconds between cheap probes of the server while waiting to reopen (see the module
            docstring): a server that answers again after a failed probe is reopened at once, with the backoff
            back at its first step. ``None``: no probes, the backoff alone.
        reconnect_on_eof: treat the end of the stream as an outage (a live server that went away ends the
            stream cleanly); ``False`` ends the iteration there instead. ``None``: true for RTSP/RTMP and
            cameras, false for HTTP(S), where the end of a stream is usually the end of a finite file.
        stop: an event that, once set, ends the retries (also of the first open, from any thread) and the
            iteration, as :meth:`LiveSource.interrupt` does.
        wait: ``wait(seconds) -> interrupted`` used for the backoff waits and between probes (default: waiting
            on ``stop``); tests inject a clock here.
        open_source_options: passed to :func:`open_source` (``rtsp_transport``, ``max_pixels``, ``name`` ...).

    Returns:
        For a URL or camera a :class:`LiveSource`: frames with strictly increasing ``index`` and ``pts_s``
        across reconnects, its ``state``, ``gaps`` and events, and ``interrupt()`` for the pipeline's stop.
        Files and images get plain :func:`open_source` (they end; there is nothing to reconnect to).

    Raises:
        InputError: the input is invalid, or the source gave up (the message names the input, credentials
            redacted, and the number of attempts), or the open was interrupted.
    """
    if isinstance(spec, InputSpec):
        job = spec
    else:
        jobs = expand_inputs([spec])
        if len(jobs) != 1:
            raise InputError(f"{redact_text(str(spec))}: names {len(jobs)} inputs; give one URL or camera")
        job = jobs[0]
    if job.error is not None:
        raise job.error
    options = dict(open_source_options, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    if job.kind not in ("url", "camera"):
        return open_source(job, **options)
    if reconnect_on_eof is None:
        reconnect_on_eof = not job.spec.lower().startswith(("http://", "https://"))
    return LiveSource(
        job,
        stall_s=2.0 * read_timeout_s if stall_s is None else stall_s,
        max_reconnects=max_reconnects,
        backoff_s=backoff_s,
        backoff_max_s=backoff_max_s,
        reconnect_on_eof=reconnect_on_eof,
        open_options=options,
        stop=stop,
        wait=wait,
        probe_s=probe_s,
    )
