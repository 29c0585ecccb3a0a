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

Estimators today, each beside the code it drives: top-down pose (:class:`hrstream.pose.topdown.TopDownPose`),
bottom-up pose (:class:`hrstream.pose.bottomup.BottomUpPose`) and segmentation
(:class:`hrstream.seg.inference.Segmentation`). :data:`ESTIMATORS` makes the one a network gets from its
weights' meaning (:data:`~hrstream.models.meta.EstimatorKind`, read from its config and weights, never from a
task name) and the recipe's section for it; the builder (:mod:`hrstream.pipeline.builder`) reads the estimator.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from hrstream.errors import ConfigError
from hrstream.models.bundle import ModelBundle
from hrstream.pipeline.recipe import PoseSections, Recipe, SegSection
from hrstream.pose.bottomup import BottomUpPose
from hrstream.pose.detectors import FileSelection
from hrstream.pose.topdown import TopDownEstimator, TopDownPose
from hrstream.runtime import InferenceEngine
from hrstream.runtime.engine import Chunk, Output
from hrstream.runtime.markers import Marker
from hrstream.seg.inference import Segmentation, SegmentationEstimator
from hrstream.types import FrameResult

log = logging.getLogger(__name__)

__all__ = [
    "ESTIMATORS",
    "Chunk",
    "Estimator",
    "InferStage",
    "bottomup_estimator",
    "segmentation_estimator",
    "topdown_estimator",
]


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


# -- the estimator of each kind of network --------------------------------------------------------------
def topdown_estimator(
    engine: InferenceEngine, bundle: ModelBundle, sections: PoseSections, *, batch_size: int
) -> TopDownPose:
    """The top-down estimator of ``bundle``'s network on ``engine`` (crops made on its device).

    The weights' meaning comes from the bundle's metadata (decoder, input and heatmap size, flip pairs, OKS
    sigmas); the flip test from the config's ``TEST`` section (``FLIP_TEST``, ``SHIFT_HEATMAP``). The recipe's
    ``pose`` section overrides the flip test and the decoder when set. Poses go through OKS NMS as the official
    evaluation does with ``pose.oks_nms`` (0.9) or with file detections (``TEST.OKS_THRE``).
    """
    spec, meta, pose = bundle.spec, bundle.meta, sections.pose
    test = spec.test
    flip = bool(test.get("FLIP_TEST", False)) if pose.flip_test is None else pose.flip_test
    decoder = pose.decoder or meta.decoder
    if not bool(test.get("POST_PROCESS", True)) and decoder == "msra":
        log.info("config TEST.POST_PROCESS is false: the quarter-pixel shift is still applied (msra decoder)")
    sel = file_selection(sections, test)
    nms_thr = sel.oks_thr if sel is not None else (0.9 if pose.oks_nms else None)
    input_hw = meta.input_size or (256, 192)
    heat_hw = meta.heatmap_size
    estimator = TopDownEstimator(
        lambda x: engine.infer(x, normalized=True),
        input_size=(int(input_hw[1]), int(input_hw[0])),
        heatmap_size=(int(heat_hw[1]), int(heat_hw[0])) if heat_hw else None,
        mean=meta.mean,
        std=meta.std,
        flip_pairs=meta.flip_pairs,
        flip_test=flip,
        shift_heatmap=bool(test.get("SHIFT_HEATMAP", True)),
        decoder=decoder,
        device=engine.device,
        max_batch=batch_size * (2 if flip else 1),
        oks_nms_thr=nms_thr,
        oks_in_vis_thr=sel.in_vis_thr if sel is not None else 0.2,
        oks_sigmas=meta.oks_sigmas,
        num_keypoints=spec.num_outputs,
    )
    return TopDownPose(estimator)


def file_selection(sections: PoseSections, test: dict) -> FileSelection | None:
    """The official selection of people from a detections file (``--detector file:`` with no threshold set),
    from the pose config's ``TEST`` section, else ``None``."""
    det = sections.detector
    if not det.name.startswith("file:") or det.score_thr is not None:
        return None
    return FileSelection.from_test(test)


def bottomup_estimator(
    engine: InferenceEngine, bundle: ModelBundle, sections: PoseSections, *, batch_size: int
) -> BottomUpPose:
    """The bottom-up estimator of ``bundle``'s HigherHRNet on ``engine``: the config's ``TEST`` settings (the
    recipe's ``pose.flip_test`` overrides ``FLIP_TEST``), ``detector.score_thr`` (``None``: 0) and
    ``detector.max_people`` as the person threshold and cap. ``batch_size`` frames go through one call."""
    higher = bundle.spec.higher
    if higher is None:  # pragma: no cover - the bottomup estimator kind comes from a HigherHRNet config
        raise ConfigError(f"{bundle.name} is not a bottom-up network")
    test = higher.test
    if sections.pose.flip_test is not None and sections.pose.flip_test != test.flip_test:
        test = dataclasses.replace(test, flip_test=sections.pose.flip_test)
    det = sections.detector
    return BottomUpPose(test, engine.device, score_thr=det.score_thr or 0.0, max_people=det.max_people)


def segmentation_estimator(
    engine: InferenceEngine, bundle: ModelBundle, seg: SegSection, *, batch_size: int
) -> Segmentation:
    """Whole-frame inference at the config's test size (``TEST.IMAGE_SIZE``, aspect kept) unless the recipe
    gives ``seg.test_size``; ``seg.batch_size`` (else ``batch_size``) frames per call (twice the inputs with the
    flip); the recipe's flip, scales and EMA time constant."""
    spec = bundle.spec
    size = seg.test_size or spec.image_size
    calls = seg.batch_size or batch_size
    estimator = SegmentationEstimator(
        lambda x: engine.infer(x, normalized=True),
        num_classes=spec.num_outputs,
        test_size=tuple(size) if size else None,  # type: ignore[arg-type]
        align_corners=spec.align_corners,
        mean=bundle.meta.mean,
        std=bundle.meta.std,
        device=engine.device,
        flip=seg.flip,
        scales=seg.scales,
        max_batch=calls * (2 if seg.flip else 1),
    )
    return Segmentation(estimator, bundle.meta.classes, tau_s=seg.smoothing_tau_s)


#: The estimator each kind of network gets (:data:`~hrstream.models.meta.EstimatorKind`).
ESTIMATORS: dict[str, Callable[[InferenceEngine, ModelBundle, Recipe], Estimator]] = {
    "topdown": lambda engine, bundle, recipe: topdown_estimator(
        engine,
        bundle,
        recipe.pose_sections,
        batch_size=recipe.runtime.batch_size,  # type: ignore[arg-type]
    ),
    "bottomup": lambda engine, bundle, recipe: bottomup_estimator(
        engine,
        bundle,
        recipe.pose_sections,
        batch_size=recipe.runtime.batch_size,  # type: ignore[arg-type]
    ),
    "segmentation": lambda engine, bundle, recipe: segmentation_estimator(
        engine, bundle, recipe.seg, batch_size=recipe.runtime.batch_size
    ),
}
