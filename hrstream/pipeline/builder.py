"""The pipeline of a run, built from its networks' estimators: what the CLI, :func:`hrstream.stream`, worker
processes and Ray actors all run.

:func:`load_networks` loads the recipe's networks once, each on its engine with the estimator its config and
weights call for (:data:`~hrstream.models.meta.EstimatorKind`: top-down pose, segmentation); the person
detector when an estimator needs boxes. :meth:`Networks.build` wires one pipeline for every source of a run
(each stage a thread, joined by bounded queues; per-source state inside the stages, keyed by ``source_id``),
reading the estimators, never a task name::

    sources -> [seg_batch -> segment] -> [detect_batch -> detect] -> batch -> infer -> track -> [draw] -> write

A segmentation network runs first (its maps feed ``--detector seg`` and the overlay); an estimator that needs
boxes gets the detect stage and a batcher weighing frames by their people; the pose estimator's people go to
the track stage. ``sources`` is the :class:`~hrstream.runtime.mux.SourceMux` the decode threads feed
(:meth:`Networks.source_feeder`); ``write`` is whatever sink the caller gives (the run's
:class:`~hrstream.outputs.router.SinkRouter`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from hrstream.errors import ConfigError
from hrstream.io import InputSpec, Source, open_source
from hrstream.io.reconnect import open_live_source
from hrstream.models.builder import resolve_config
from hrstream.models.bundle import ModelBundle, load_model_bundle
from hrstream.models.config import parse_config
from hrstream.models.meta import estimator_kind
from hrstream.pipeline.detection import DetectStage, SegPersonDetector, build_detector
from hrstream.pipeline.drawing import DrawStage, SegOverlay
from hrstream.pipeline.estimators import ESTIMATORS, Estimator, InferStage
from hrstream.pipeline.recipe import PoseSections, Recipe
from hrstream.pipeline.tracking import SourceTracking, TrackStage, source_trackers
from hrstream.pose.detectors import Detector
from hrstream.runtime import InferenceEngine, Pipeline
from hrstream.runtime.counters import RunCounters
from hrstream.runtime.feeder import SourceFeeder
from hrstream.runtime.markers import SharedPerSource
from hrstream.runtime.mux import SourceMux

__all__ = ["LoadedNetwork", "Networks", "default_streams", "load_networks", "pose_method"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedNetwork:
    """A network with its weights (``bundle``), the engine that runs it and the estimator that feeds it."""

    bundle: ModelBundle
    engine: InferenceEngine
    estimator: Estimator


@dataclass
class Networks:
    """What lasts across the sources of a run: the recipe's networks on their engines, and the detector.

    ``pose``: the pose network (``None`` for ``task: seg``); ``seg``: the segmentation network (``task: seg``,
    ``pose,seg``, ``--detector seg``); ``detector``: person boxes for an estimator that needs them.
    """

    recipe: Recipe
    pose: LoadedNetwork | None = None
    seg: LoadedNetwork | None = None
    detector: Detector | SegPersonDetector | None = None

    @property
    def main(self) -> LoadedNetwork:
        """The network a run is about: the pose network where there is one."""
        net = self.pose or self.seg
        if net is None:  # pragma: no cover - load_networks always loads one
            raise ConfigError("the recipe names no network")
        return net

    @property
    def device(self) -> torch.device:
        return self.main.engine.device

    @property
    def writes_seg(self) -> bool:
        """The segmentation is an output of the run (not only the source of ``--detector seg``'s boxes)."""
        return self.seg is not None and "seg" in self.recipe.networks

    def describe(self) -> dict[str, Any]:
        """What output documents record about the networks."""
        model = self.main.bundle.describe()
        if self.pose is not None and self.seg is not None:
            model = {**model, "segmentation": self.seg.bundle.describe()}
        return model

    def open_input(self, job: InputSpec, name: str, stop: threading.Event) -> Source:
        """Open one input as the recipe's ``sources`` section says (deadlines; a URL or camera as a
        :class:`~hrstream.io.reconnect.LiveSource` that reconnects until ``stop`` is set or it gives up)."""
        src = self.recipe.sources
        options: dict[str, Any] = {
            "name": name,
            "open_timeout_s": src.open_timeout_s,
            "read_timeout_s": src.read_timeout_s,
        }
        if job.kind in ("url", "camera"):
            return open_live_source(
                job,
                stop=stop,
                rtsp_transport=src.rtsp_transport,
                max_reconnects=src.max_reconnects,
                backoff_max_s=src.backoff_max_s,
                **options,
            )
        return open_source(job, **options)

    def source_feeder(self, counters: RunCounters) -> tuple[SourceMux, SourceFeeder]:
        """The input of a run's pipeline and the decode threads that feed it (``runtime.streams`` files at a
        time, :func:`default_streams` when the recipe does not say)."""
        rt = self.recipe.runtime
        mux = SourceMux()
        streams = rt.streams or default_streams(self.device)
        feeder = SourceFeeder(
            mux, counters, streams=streams, file_buffer=rt.queue_size, live_buffer=rt.live_buffer
        )
        return mux, feeder

    def build(
        self,
        sources: Iterable[Any],
        sink: Any,
        *,
        live: bool,
        draw_now: bool,
        on_stop: Callable[[], None] | None = None,
        name: str = "hrstream",
    ) -> Pipeline:
        """The pipeline of a run reading ``sources`` (a :class:`~hrstream.runtime.mux.SourceMux`) and writing
        into ``sink`` (``write(result)``, ``on_marker(marker)``, ``close()``).

        Args:
            live: some source is live: queues after the inputs hold one item each, so a frame waits behind as
                few others as possible and latency stays about one batch.
            draw_now: draw every frame in the draw stage (a video is written); else on ``FrameResult.plot()``.
            on_stop: stops the sources' intake (:meth:`~hrstream.runtime.feeder.SourceFeeder.stop`).
        """
        rt = self.recipe.runtime
        q = 1 if live else 4
        idle_s = max(0.1, 2 * rt.max_wait_s)
        p = Pipeline(f"{self.recipe.task}:{name}")
        p.source_queue("sources", sources, on_stop=on_stop)
        overlay = None
        trackers = self._trackers() if self.pose is not None else None
        for net in (self.seg, self.pose):
            if net is None:
                continue
            est = net.estimator
            poses = est.fills == "poses"
            if est.needs_boxes:
                self._add_detect(p, q, trackers)
            p.batch(
                "batch" if poses else "seg_batch",
                max_batch=rt.batch_size if poses else (self.recipe.seg.batch_size or rt.batch_size),
                max_wait_s=rt.max_wait_s,
                weight=est.weight if poses else None,
                queue_size=min(q, 2) if poses else q,
            )
            stage = "infer" if poses else "segment"
            numbers = poses or self.pose is None
            p.map(
                stage,
                InferStage(est, net.engine, timing=stage, numbers_batches=numbers),
                queue_size=q,
                idle_s=idle_s,
            )
            if poses and trackers is not None:
                p.map("track", TrackStage(trackers), queue_size=q)
            elif self.writes_seg:
                meta = net.bundle.meta
                overlay = SegOverlay(meta.palette, meta.classes, opacity=self.recipe.seg.opacity)
        draw = self._draw_stage(overlay, draw_now)
        if draw_now:
            p.map("draw", draw, queue_size=q)
        else:  # nothing painted now: no thread, no queue hop
            p.then(draw.attach)
        p.sink("write", sink)
        return p

    # -- the stages ---------------------------------------------------------------------------------------
    def _sections(self) -> PoseSections:
        sections = self.recipe.pose_sections
        if sections is None:  # pragma: no cover - a pose network is only loaded for a pose task
            raise ConfigError(f"task {self.recipe.task} has no pose sections")
        return sections

    def _trackers(self) -> SharedPerSource[SourceTracking]:
        """The per-source tracking state of one pipeline (its detect and track stages share it)."""
        sections = self._sections()
        sigmas = self.pose.bundle.meta.oks_sigmas if self.pose is not None else None
        return source_trackers(sections.tracker, sections.smoother, oks_sigmas=sigmas)

    def _add_detect(self, p: Pipeline, q: int, trackers: SharedPerSource[SourceTracking] | None) -> None:
        if self.detector is None:  # pragma: no cover - load_networks makes one for such an estimator
            raise ConfigError("an estimator that needs person boxes needs a detector")
        det = self._sections().detector
        if getattr(self.detector, "batched", False):  # a network: frames of a batch in one call
            p.batch(
                "detect_batch",
                max_batch=det.batch_size,
                max_wait_s=self.recipe.runtime.max_wait_s,
                queue_size=q,
            )
        p.map("detect", DetectStage(self.detector, every_n=det.every_n, trackers=trackers), queue_size=q)

    def _draw_stage(self, overlay: SegOverlay | None, draw_now: bool) -> DrawStage:
        if self.pose is None:
            return DrawStage([], kpt_thr=1.0, draw_boxes=False, seg_overlay=overlay, eager=draw_now)
        return DrawStage(
            self.pose.bundle.meta.skeleton,
            kpt_thr=self._sections().pose.kpt_thr,
            draw_boxes=self.recipe.sinks.draw_boxes,
            seg_overlay=overlay,
            eager=draw_now,
        )


def default_streams(device: Any) -> int:
    """Files decoded at a time when the recipe does not say: 1 on a CPU (the network is the bottleneck and
    one stream already fills its batches), 4 on CUDA (more streams fill the GPU's bigger batches)."""
    return 4 if str(device).startswith("cuda") else 1


def _engine(bundle: ModelBundle, recipe: Recipe, *, backend: str) -> InferenceEngine:
    rt = recipe.runtime
    return InferenceEngine(
        bundle.model,
        device=rt.device,
        amp=rt.amp,
        channels_last=True,
        compile=rt.compile,
        mean=bundle.meta.mean,
        std=bundle.meta.std,
        backend=backend,
        pad_batches=rt.pad_batches,
        calibration=rt.calibration,
    )


def _network(recipe: Recipe, bundle: ModelBundle, *, backend: str) -> LoadedNetwork:
    engine = _engine(bundle, recipe, backend=backend)
    make = ESTIMATORS.get(bundle.meta.estimator)
    if make is None:
        raise ConfigError(f"{bundle.name}: a {bundle.meta.estimator} network has no estimator in a pipeline")
    return LoadedNetwork(bundle, engine, make(engine, bundle, recipe))


def pose_method(recipe: Recipe, *, flags: Collection[str] = ()) -> str | None:
    """How the recipe's pose network finds people: ``topdown`` or ``bottomup`` (``None`` without one), from its
    config alone (nothing is loaded), checked against the recipe's ``pose.method`` and the options given
    (``flags``: the names of the ``hrstream run`` flags / :func:`hrstream.stream` options set).

    Raises:
        ConfigError: ``pose.method`` names the other method, or ``--detector`` is given for a bottom-up network
            (it finds people itself).
    """
    sections = recipe.pose_sections
    if sections is None:
        return None
    data, src = resolve_config(recipe.model)
    kind = estimator_kind(parse_config(data, source=src))
    wanted = sections.pose.method
    if wanted != "auto" and wanted != kind:
        raise ConfigError(
            f"pose.method is {wanted} but --model {recipe.model} is a {kind} network; "
            f"use a {wanted} model (e.g. {_EXAMPLE[wanted]}) or pose.method: auto"
        )
    if kind == "bottomup":
        for flag in ("detector", "detector_weights", "detect_every"):
            if flag in flags:
                raise ConfigError(
                    f"--{flag.replace('_', '-')}: --model {recipe.model} is a bottom-up network (HigherHRNet): it "
                    "finds every person of the frame itself, without person boxes; leave the option out"
                )
    return kind


_EXAMPLE = {"topdown": "pose_hrnet_w32_256x192", "bottomup": "pose_higher_hrnet_w32_512"}


def load_networks(recipe: Recipe, *, progress: bool = True, flags: Collection[str] = ()) -> Networks:
    """Load the recipe's network(s) (downloading default weights if needed), each on its engine with its
    estimator, and the person detector when an estimator needs boxes (:func:`pose_method` checks first).

    ``runtime.backend`` runs the pose network; segmentation networks run on torch (their input size follows
    each video, an exported graph has one), so ``--task seg`` with a CPU backend named is a
    :class:`ConfigError`.
    """
    rt = recipe.runtime
    nets = Networks(recipe)
    sections = recipe.pose_sections
    pose_method(recipe, flags=flags)
    wants_seg = "seg" in recipe.networks or (sections is not None and sections.detector.name == "seg")
    if wants_seg:
        if rt.backend not in ("torch", "auto") and sections is None:
            raise ConfigError(
                f"--backend {rt.backend} runs pose networks; --task seg runs on torch (use --backend torch or auto)"
            )
        model, weights = (
            (recipe.model, recipe.weights) if sections is None else (recipe.seg_model, recipe.seg_weights)
        )
        if model is None:
            raise ConfigError(f"task {recipe.task} with detector seg needs seg_model in the recipe")
        bundle = load_model_bundle(model, weights, task="seg", progress=progress)
        if rt.backend not in ("torch", "auto"):
            log.info(
                "segmentation network %s runs on torch (--backend %s runs the pose network)",
                bundle.name,
                rt.backend,
            )
        nets.seg = _network(recipe, bundle, backend="torch")
    if sections is not None:
        bundle = load_model_bundle(recipe.model, recipe.weights, task="pose", progress=progress)
        nets.pose = pose = _network(recipe, bundle, backend=rt.backend)
        if pose.estimator.needs_boxes:
            seg_classes = nets.seg.bundle.meta.classes if nets.seg is not None else None
            nets.detector = build_detector(
                sections.detector,
                str(pose.engine.device),
                test=bundle.spec.test,
                seg_classes=seg_classes,
                progress=progress,
            )
    return nets
