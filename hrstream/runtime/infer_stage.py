"""A pipeline stage that keeps batches in flight on an :class:`InferenceEngine`.

On CUDA, :meth:`InferenceEngine.submit` returns before the GPU is done; this stage submits the next
batch before it waits for the previous result, so the host-to-device copy, the model and the copy back
of consecutive batches overlap with the host-side work of the stages around it. On CPU it simply runs
batches one after another with the same code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from hrstream.runtime.engine import BatchInput, InferenceEngine, InferenceHandle, Output

__all__ = ["PipelinedInfer"]


class PipelinedInfer:
    """A map stage (``process``/``finish``) that emits ``(item, output)`` pairs in input order.

    Args:
        engine: the engine to run; used from this stage's thread only.
        to_batch: turns an item (for example a list of frames with their crops) into the engine's
            input: ``uint8 (N, H, W, C)`` or a list of ``(H, W, C)`` arrays. ``None`` means nothing to
            infer for this item (a frame without people); it is emitted with output ``None``.
        depth: items kept in flight beyond the one being submitted (the engine allows 2 in flight,
            so 1 is the useful value).
        normalized: pass-through to :meth:`InferenceEngine.submit`.
    """

    def __init__(
        self,
        engine: InferenceEngine,
        to_batch: Callable[[Any], BatchInput | None],
        *,
        depth: int = 1,
        normalized: bool = False,
    ) -> None:
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.engine = engine
        self.to_batch = to_batch
        self.depth = depth
        self.normalized = normalized
        self._pending: deque[tuple[Any, InferenceHandle | None]] = deque()

    def process(self, item: Any) -> Iterator[tuple[Any, Output | None]]:
        """Submit ``item``'s batch; yield the oldest results once more than ``depth`` are pending."""
        batch = self.to_batch(item)
        handle = None if batch is None else self.engine.submit(batch, normalized=self.normalized)
        self._pending.append((item, handle))
        while len(self._pending) > self.depth:
            yield self._pop()

    def finish(self) -> Iterator[tuple[Any, Output | None]]:
        """At end of stream: the results still in flight, in order."""
        while self._pending:
            yield self._pop()

    def _pop(self) -> tuple[Any, Output | None]:
        item, handle = self._pending.popleft()
        return item, None if handle is None else handle.result()
