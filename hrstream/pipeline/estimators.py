"""The estimator seam: what a network needs from the pipeline, and the one inference stage that runs any of them.

An :class:`Estimator` turns a batch of frames (:class:`~hrstream.types.FrameResult`, of any sources) into
network inputs and the network's outputs back into results:

* ``needs_boxes``: whether it works on person boxes (the builder then puts a detect stage before it and
  batches frames by their number of people, :meth:`Estimator.weight`); an estimator that does not needs no
  detector and no crops;
* ``prepare(batch) -> prepared``: the inputs of the batch (crops, resized frames, windows...);
* ``chunks(prepared) -> [Chunk]``: the network calls that batch takes (each at most the engine's batch);
* ``decode(batch, prepared, outputs)``: fills each result (``poses``, ``seg``) from the calls' outputs;
* ``on_marker(marker)`` (optional): per-source state, made at a source's start and dropped at its end.

:class:`InferStage` runs an estimator on an :class:`~hrstream.runtime.engine.InferenceEngine`, overlapped:
batch ``k + 1`` is prepared and submitted before batch ``k``'s outputs are waited for and decoded (on CUDA the
copy to the device runs on the engine's copy stream; on a CPU the engine runs each call when it is submitted,
with the same results).

Estimators today: top-down pose (:mod:`hrstream.pipeline.topdown`) and segmentation
(:mod:`hrstream.pipeline.segmentation`); the builder (:mod:`hrstream.pipeline.builder`) reads which one a
network gets from the network's config and weights, never from a task name.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from hrstream.runtime import InferenceEngine
from hrstream.runtime.engine import Output
from hrstream.runtime.markers import Marker
from hrstream.types import FrameResult

__all__ = ["Chunk", "Estimator", "InferStage"]


@dataclass(frozen=True)
class Chunk:
    """One network call: ``inputs`` ``uint8 (N, H, W, 3)`` RGB on the host (the engine normalises them on its
    device) or, with ``normalized``, a normalised ``float32 (N, 3, H, W)`` tensor already on the device."""

    inputs: np.ndarray | torch.Tensor
    normalized: bool = False


@runtime_checkable
class Estimator(Protocol):
    """What :class:`InferStage` needs of an estimator (see the module docstring)."""

    #: Works on person boxes: a detect stage goes first and batches are weighed by people.
    needs_boxes: ClassVar[bool]
    #: What it fills in a result: ``"poses"`` or ``"seg"``.
    fills: ClassVar[str]
    #: Decodes the outputs where the network ran (the engine's device) instead of on the host: its calls run
    #: when submitted (:meth:`InferenceEngine.infer`), not overlapped with the next batch's preparation.
    device_outputs: ClassVar[bool]

    def weight(self, result: FrameResult) -> int:
        """How much of a batch this frame takes (people for crops, 1 for a whole frame)."""
        ...

    def prepare(self, batch: Sequence[FrameResult]) -> Any:
        """The network inputs of ``batch`` (and what decoding needs to map outputs back)."""
        ...

    def chunks(self, prepared: Any) -> Sequence[Chunk]:
        """The network calls of a prepared batch (none for a batch with nothing to run)."""
        ...

    def decode(self, batch: Sequence[FrameResult], prepared: Any, outputs: Sequence[Output]) -> None:
        """Fill each result of ``batch`` from the outputs of :meth:`chunks`' calls, in their order."""
        ...


class InferStage:
    """Batches of frames (of any sources) through one estimator and its engine, overlapped.

    Args:
        estimator: prepares inputs and decodes outputs.
        engine: runs the network.
        timing: the key of ``FrameResult.timings`` this stage fills (its stage name).
        numbers_batches: set ``FrameResult.batch`` to this stage's call number (the network whose calls a run's
            records count: the pose network where there is one).
        depth: batches kept in flight beyond the one being submitted (1 overlaps two batches).
    """

    def __init__(
        self,
        estimator: Estimator,
        engine: InferenceEngine,
        *,
        timing: str,
        numbers_batches: bool = True,
        depth: int = 1,
    ) -> None:
        self.estimator = estimator
        self.engine = engine
        self.timing = timing
        self.numbers_batches = numbers_batches
        self.depth = max(0, int(depth))
        self.calls = 0  # batches so far: the next batch's number
        self._pending: deque[tuple[list[FrameResult], Any, list[Any], float]] = deque()

    def process(self, batch: Sequence[FrameResult]) -> Iterator[FrameResult]:
        t0 = time.perf_counter()
        prepared = self.estimator.prepare(batch)
        chunks = self.estimator.chunks(prepared)
        if self.estimator.device_outputs:
            handles: list[Any] = [_Done(self.engine.infer(c.inputs, normalized=c.normalized)) for c in chunks]
        else:
            handles = [self.engine.submit(c.inputs, normalized=c.normalized) for c in chunks]
        if self.numbers_batches:
            for r in batch:
                r.batch = self.calls
        self.calls += 1
        self._pending.append((list(batch), prepared, handles, time.perf_counter() - t0))
        while len(self._pending) > self.depth:
            yield from self._complete()

    def _complete(self) -> Iterator[FrameResult]:
        batch, prepared, handles, spent = self._pending.popleft()
        t0 = time.perf_counter()
        self.estimator.decode(batch, prepared, [h.result() for h in handles])
        dt = (spent + time.perf_counter() - t0) / max(1, len(batch))
        for r in batch:
            r.timings[self.timing] = dt
            yield r

    def on_marker(self, marker: Marker) -> Iterator[FrameResult]:
        """A source started or ended: the batches in flight go out first (they may hold its frames)."""
        yield from self.finish()
        on_marker = getattr(self.estimator, "on_marker", None)
        if on_marker is not None:
            on_marker(marker)

    def idle(self) -> Iterator[FrameResult]:
        """Nothing came in for a while (a source stalled or ended): what is in flight goes out now, so its
        last frames are written at once instead of waiting for the next batch."""
        yield from self.finish()

    def finish(self) -> Iterator[FrameResult]:
        while self._pending:
            yield from self._complete()


class _Done:
    """A finished call's outputs, with :class:`~hrstream.runtime.engine.InferenceHandle`'s ``result()``."""

    def __init__(self, outputs: Output) -> None:
        self._outputs = outputs

    def result(self) -> Output:
        return self._outputs
