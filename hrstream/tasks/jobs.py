"""Assemble a task's pipeline: what the CLI, :func:`hrstream.stream` and library users call.

``prepare(recipe, out_dir)`` loads the network(s) once; ``PreparedTask.build(sources, router)`` wires one
pipeline for every source of a run (each stage a thread, joined by bounded queues; per-source state inside the
stages, keyed by ``source_id``):

* pose: sources -> detect -> batch -> infer -> track -> draw -> write
* seg: sources -> seg_batch -> segment -> draw -> write
* pose,seg (or pose with ``--detector seg``): sources -> seg_batch -> segment -> detect -> batch -> infer ->
  track -> draw -> write, both networks on the same decoded frames in one pass.

``sources`` is the :class:`~hrstream.runtime.mux.SourceMux` the decode threads feed; ``write`` is the
:class:`~hrstream.tasks.router.SinkRouter` that routes each result to its source's outputs
(:meth:`PreparedTask.open_outputs`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrstream.errors import ConfigError
from hrstream.io import InputSpec, Source, SourceInfo, open_source, output_path
from hrstream.io.reconnect import open_live_source
from hrstream.pose.detectors import check_flip_test
from hrstream.runtime import InferenceEngine, Pipeline
from hrstream.runtime.feeder import SourceFeeder
from hrstream.runtime.mux import SourceMux
from hrstream.tasks.model_loading import ModelBundle, load_model_bundle
from hrstream.tasks.outputs import DEFAULT_LIVE_SEGMENT_S, SourceOutputs
from hrstream.tasks.pose_task import (
    DetectStage,
    DrawStage,
    PoseInferStage,
    TrackStage,
    build_pose_detector,
    build_pose_estimator,
    repair_params,
)
from hrstream.tasks.recipe import Recipe
from hrstream.tasks.router import SinkRouter
from hrstream.tasks.seg_task import SegInferStage, SegOverlay, SegPersonDetector, build_seg_estimator
from hrstream.tasks.sinks import (
    ImagesSink,
    JsonlSink,
    LabelMapSink,
    Sink,
    TracksSink,
    VideoSink,
    is_image_source,
    seg_record,
)

__all__ = ["PreparedTask", "default_streams", "prepare"]

log = logging.getLogger(__name__)


@dataclass
class PreparedTask:
    """A task ready to run: the network(s) on their engines and everything that lasts across sources.

    ``bundle``/``engine`` are the pose network for pose tasks, the segmentation network for ``seg``;
    ``seg_bundle``/``seg_engine`` the segmentation network when a pose task also segments. ``out_dir``:
    where sources write their files (``None``: nowhere, :func:`hrstream.stream` without ``out``).
    """

    recipe: Recipe
    out_dir: Path | None
    bundle: ModelBundle
    engine: InferenceEngine
    detector: Any = None
    seg_bundle: ModelBundle | None = None
    seg_engine: InferenceEngine | None = None

    @property
    def task(self) -> str:
        return self.recipe.task

    @property
    def writes_seg(self) -> bool:
        return self.task in ("seg", "pose,seg")

    def _seg_meta(self) -> dict[str, Any]:
        bundle = self.bundle if self.task == "seg" else self.seg_bundle
        assert bundle is not None
        return bundle.meta

    def open_outputs(
        self,
        info: SourceInfo,
        *,
        progress: Callable[[int], None] | None = None,
        finish_progress: Callable[[], None] | None = None,
    ) -> SourceOutputs:
        """The outputs of one source (no file without ``out_dir``), as the recipe's ``sinks`` section says: cut
        into segments for live sources (``sinks.segment_s``, 600 s by default) or when asked."""
        cfg = self.recipe.sinks
        segment_s = cfg.segment_s
        if segment_s is None and info.is_live:
            segment_s = DEFAULT_LIVE_SEGMENT_S
        return SourceOutputs(
            lambda label, width, height: self.segment_sinks(info, label, width, height),
            live=info.is_live,
            segment_s=segment_s,
            keep_segments=cfg.keep_segments,
            progress=progress,
            finish_progress=finish_progress,
        )

    def segment_sinks(self, info: SourceInfo, label: str | None, width: int, height: int) -> dict[str, Sink]:
        """The files of one segment of a source (``NAME.*``, or ``NAME_LABEL.*`` for a labelled segment), for
        frames of ``width x height``."""
        sinks: dict[str, Sink] = {}
        out, cfg = self.out_dir, self.recipe.sinks
        if out is None:
            return sinks
        name = info.name if label is None else f"{info.name}_{label}"
        seg_info = dataclasses.replace(info, width=width, height=height)
        if cfg.video and is_image_source(info):
            sinks["images"] = ImagesSink(output_path(out, name, ".annotated"))
        elif cfg.video:
            audio = info.path if (info.has_audio and not info.is_live and label is None) else None
            sinks["video"] = VideoSink(
                output_path(out, name, ".mp4"), seg_info, preset=cfg.preset, audio_source=audio
            )
        if cfg.jsonl:
            extra = None
            if self.writes_seg:
                extra = seg_record(self._seg_meta()["classes"], rle=self.recipe.seg.rle)
            sinks["jsonl"] = JsonlSink(output_path(out, name, ".jsonl"), source=info.name, extra=extra)
        if self.writes_seg and self.recipe.seg.label_maps:
            sinks["labels"] = LabelMapSink(output_path(out, name, ".labels"))
        if "pose" in self.task and cfg.tracks:
            model = self.bundle.describe()
            if self.seg_bundle is not None:
                model = {**model, "segmentation": self.seg_bundle.describe()}
            tracker, smoother = self.recipe.tracker, self.recipe.smoother
            assert tracker is not None and smoother is not None
            sinks["tracks"] = TracksSink(
                output_path(out, name, ".tracks.json"),
                seg_info,
                model=model,
                meta=self.bundle.meta,
                repair=None if info.is_live else repair_params(tracker),
                savgol_window_s=None if info.is_live else smoother.tracks_savgol_window_s,
            )
        return sinks

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

    def source_feeder(self) -> tuple[SourceMux, SourceFeeder]:
        """The input of a run's pipeline and the decode threads that feed it (``runtime.streams`` files at a
        time, :func:`default_streams` when the recipe does not say)."""
        rt = self.recipe.runtime
        mux = SourceMux()
        streams = rt.streams or default_streams(self.engine.device)
        return mux, SourceFeeder(mux, streams=streams, file_buffer=rt.queue_size, live_buffer=rt.live_buffer)

    def _add_seg(self, p: Pipeline, bundle: ModelBundle, engine: InferenceEngine, q: int) -> SegOverlay:
        rt, seg = self.recipe.runtime, self.recipe.seg
        classes, palette = bundle.meta["classes"], bundle.meta["palette"]
        estimator = build_seg_estimator(engine, bundle.spec, bundle.meta, self.recipe)
        p.batch(
            "seg_batch", max_batch=seg.batch_size or rt.batch_size, max_wait_s=rt.max_wait_s, queue_size=q
        )
        p.map("segment", SegInferStage(estimator, classes, tau_s=seg.smoothing_tau_s), queue_size=q)
        return SegOverlay(palette, classes, opacity=seg.opacity)

    def build(
        self,
        sources: Iterable[Any],
        router: SinkRouter,
        *,
        live: bool,
        on_stop: Callable[[], None] | None = None,
        name: str = "hrstream",
    ) -> Pipeline:
        """The pipeline of a run reading ``sources`` (a :class:`~hrstream.runtime.mux.SourceMux`) and writing
        through ``router``. ``live``: some source is live (queues after the inputs then hold one item each, so
        a frame waits behind as few others as possible and latency stays about one batch); ``on_stop`` stops
        the sources' intake (:meth:`~hrstream.runtime.feeder.SourceFeeder.stop`)."""
        rt, sinks = self.recipe.runtime, self.recipe.sinks
        q = 1 if live else 4
        eager = self.out_dir is not None and sinks.video
        p = Pipeline(f"{self.task}:{name}")
        p.source("sources", sources, queue_size=q, on_stop=on_stop, drain=True)
        if self.task == "seg":
            seg_overlay = self._add_seg(p, self.bundle, self.engine, q)
            p.map("draw", DrawStage([], kpt_thr=1.0, draw_boxes=False, seg_overlay=seg_overlay, eager=eager))
            p.sink("write", router)
            return p
        overlay = None
        if self.seg_bundle is not None and self.seg_engine is not None:
            seg_draw = self._add_seg(p, self.seg_bundle, self.seg_engine, q)
            overlay = seg_draw if self.writes_seg else None
        det, pose = self.recipe.detector, self.recipe.pose
        assert det is not None and pose is not None
        estimator = build_pose_estimator(self.engine, self.bundle.spec, self.bundle.meta, self.recipe)
        p.map("detect", DetectStage(self.detector, every_n=det.every_n), queue_size=q)
        p.batch(
            "batch",
            max_batch=rt.batch_size,
            max_wait_s=rt.max_wait_s,
            weight=lambda r: max(1, len(r.detections)),
            queue_size=min(q, 2),
        )
        p.map("infer", PoseInferStage(estimator, self.engine), queue_size=q)
        p.map("track", TrackStage(self.recipe, oks_sigmas=self.bundle.meta.get("oks_sigmas")), queue_size=q)
        p.map(
            "draw",
            DrawStage(
                self.bundle.meta.get("skeleton", []),
                kpt_thr=pose.kpt_thr,
                draw_boxes=sinks.draw_boxes,
                seg_overlay=overlay,
                eager=eager,
            ),
            queue_size=q,
        )
        p.sink("write", router)
        return p


def default_streams(device: Any) -> int:
    """Files decoded at a time when the recipe does not say: 1 on a CPU (the network is the bottleneck and
    one stream already fills its batches), 4 on CUDA (more streams fill the GPU's bigger batches)."""
    return 4 if str(device).startswith("cuda") else 1


def _engine(bundle: ModelBundle, recipe: Recipe) -> InferenceEngine:
    """The engine of a loaded network. ``runtime.backend`` runs the pose network; segmentation networks run on
    torch (their input size follows each video, an exported graph has one), so ``--task seg`` with a CPU backend
    named is a :class:`ConfigError`."""
    rt = recipe.runtime
    backend = rt.backend
    if bundle.spec.task == "seg" and backend not in ("torch", "auto"):
        if recipe.task == "seg":
            raise ConfigError(
                f"--backend {backend} runs pose networks; --task seg runs on torch (use --backend torch or auto)"
            )
        log.info(
            "segmentation network %s runs on torch (--backend %s runs the pose network)", bundle.name, backend
        )
    return InferenceEngine(
        bundle.model,
        device=rt.device,
        amp=rt.amp,
        channels_last=True,
        compile=rt.compile,
        mean=bundle.meta["mean"],
        std=bundle.meta["std"],
        backend=backend if bundle.spec.task == "pose" else "torch",
        pad_batches=rt.pad_batches,
        calibration=rt.calibration,
    )


def prepare(recipe: Recipe, out_dir: str | Path | None = None, *, progress: bool = True) -> PreparedTask:
    """Load the recipe's network(s) (downloading default weights if needed) and build their engines."""
    out = None if out_dir is None else Path(out_dir)
    if recipe.task == "seg":
        bundle = load_model_bundle(recipe.model, recipe.weights, task="seg", progress=progress)
        return PreparedTask(recipe, out, bundle, _engine(bundle, recipe))
    bundle = load_model_bundle(recipe.model, recipe.weights, task="pose", progress=progress)
    engine = _engine(bundle, recipe)
    det = recipe.detector
    assert det is not None
    seg_bundle = seg_engine = None
    if recipe.task == "pose,seg" or det.name == "seg":
        if recipe.seg_model is None:
            raise ConfigError(f"task {recipe.task} with detector {det.name} needs seg_model in the recipe")
        seg_bundle = load_model_bundle(recipe.seg_model, recipe.seg_weights, task="seg", progress=progress)
        seg_engine = _engine(seg_bundle, recipe)
    if det.name == "seg":
        assert seg_bundle is not None
        check_flip_test("seg", det.flip_test)
        detector: Any = SegPersonDetector(seg_bundle.meta["classes"], det.seg_classes, min_area=det.min_area)
    else:
        detector = build_pose_detector(recipe, str(engine.device), test=bundle.spec.test, progress=progress)
    return PreparedTask(recipe, out, bundle, engine, detector, seg_bundle, seg_engine)
