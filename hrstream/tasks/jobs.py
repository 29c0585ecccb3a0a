"""Assemble a task's pipeline for one source: what the CLI and library users call.

``prepare(task, recipe, out_dir)`` loads the network(s) once; ``PreparedTask.build(source, progress)`` wires
the stages of one input (each stage a thread, joined by bounded queues):

* pose: decode -> detect -> batch -> infer -> track -> draw -> write
* seg: decode -> batch -> infer -> draw -> write
* pose,seg (or pose with ``--detector seg``): decode -> seg_batch -> segment -> detect -> batch -> infer ->
  track -> draw -> write, both networks on the same decoded frames in one pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrstream.io.base import Source
from hrstream.pose.detectors import check_flip_test
from hrstream.runtime import InferenceEngine, Pipeline
from hrstream.tasks.model_loading import ModelBundle, load_model_bundle
from hrstream.tasks.outputs import JobOutputs
from hrstream.tasks.pose_task import (
    DetectStage,
    DrawStage,
    PoseInferStage,
    TrackStage,
    build_pose_detector,
    build_pose_estimator,
    repair_params,
)
from hrstream.tasks.seg_task import (
    SegDrawStage,
    SegInferStage,
    SegOutputs,
    SegPersonDetector,
    build_seg_estimator,
)

__all__ = ["PreparedTask", "prepare"]

log = logging.getLogger(__name__)


@dataclass
class PreparedTask:
    """A task ready to run: the network(s) on their engines and everything that lasts across inputs.

    ``bundle``/``engine`` are the pose network for pose tasks, the segmentation network for ``seg``;
    ``seg_bundle``/``seg_engine`` the segmentation network when a pose task also segments.
    """

    task: str
    recipe: dict[str, Any]
    out_dir: Path
    bundle: ModelBundle
    engine: InferenceEngine
    detector: Any = None
    seg_bundle: ModelBundle | None = None
    seg_engine: InferenceEngine | None = None

    @property
    def writes_seg(self) -> bool:
        return self.task in ("seg", "pose,seg")

    def _outputs(self, info: Any, progress: Any) -> JobOutputs:
        sinks = self.recipe["sinks"]
        live = info.is_live
        common: dict[str, Any] = {
            "video": bool(sinks["video"]),
            "jsonl": bool(sinks["jsonl"]),
            "preset": str(sinks["preset"]),
            "audio_source": info.path if (info.has_audio and not live) else None,
            "progress": progress,
        }
        if self.task == "seg":
            seg = self.recipe["seg"]
            return SegOutputs(
                self.out_dir,
                info,
                label_maps=bool(seg["label_maps"]),
                rle=bool(seg["rle"]),
                classes=self.bundle.meta["classes"],
                model=self.bundle.describe(),
                meta=self.bundle.meta,
                **common,
            )
        model = self.bundle.describe()
        if self.seg_bundle is not None:
            model = {**model, "segmentation": self.seg_bundle.describe()}
        pose_kw: dict[str, Any] = {
            "tracks": bool(sinks.get("tracks", False)),
            "savgol_window_s": None if live else self.recipe["smoother"].get("tracks_savgol_window_s"),
            "track_repair": None if live else repair_params(self.recipe["tracker"]),
            "model": model,
            "meta": self.bundle.meta,
        }
        if self.task == "pose,seg":
            assert self.seg_bundle is not None
            seg = self.recipe["seg"]
            return SegOutputs(
                self.out_dir,
                info,
                label_maps=bool(seg["label_maps"]),
                rle=bool(seg["rle"]),
                classes=self.seg_bundle.meta["classes"],
                task="pose,seg",
                **pose_kw,
                **common,
            )
        return JobOutputs(self.out_dir, info, task="pose", **pose_kw, **common)

    def _add_seg(
        self, p: Pipeline, bundle: ModelBundle, engine: InferenceEngine, *, batch_name: str, name: str, q: int
    ) -> SegDrawStage:
        rt, seg = self.recipe["runtime"], self.recipe["seg"]
        classes, palette = bundle.meta["classes"], bundle.meta["palette"]
        estimator = build_seg_estimator(engine, bundle.spec, bundle.meta, self.recipe)
        p.batch(
            batch_name,
            max_batch=int(seg.get("batch_size") or rt["batch_size"]),
            max_wait_s=float(rt["max_wait_s"]),
            queue_size=q,
        )
        p.map(name, SegInferStage(estimator, classes, tau_s=seg.get("smoothing_tau_s")), queue_size=q)
        return SegDrawStage(palette, classes, opacity=float(seg["opacity"]))

    def build(self, source: Source, progress: Any = None) -> tuple[Pipeline, JobOutputs]:
        """The pipeline of one opened source and its outputs (the pipeline's sink)."""
        info = source.info
        rt, sinks = self.recipe["runtime"], self.recipe["sinks"]
        live = info.is_live
        # Live sources: only the first (leaky) queue buffers; every later queue holds one item, so a frame
        # waits behind as few others as possible and latency stays about one batch. Files: deeper queues.
        q = 1 if live else 4
        outputs = self._outputs(info, progress)
        p = Pipeline(f"{self.task}:{info.name}")
        p.source(
            "decode",
            source,
            queue_size=int(rt["live_buffer"] if live else rt["queue_size"]),
            leaky=live,
            on_stop=getattr(source, "interrupt", None),
        )
        if self.task == "seg":
            draw = self._add_seg(p, self.bundle, self.engine, batch_name="batch", name="infer", q=q)
            p.map("draw", draw, queue_size=q)
            p.sink("write", outputs)
            return p, outputs
        overlay = None
        if self.seg_bundle is not None and self.seg_engine is not None:
            seg_draw = self._add_seg(
                p, self.seg_bundle, self.seg_engine, batch_name="seg_batch", name="segment", q=q
            )
            overlay = seg_draw.render if self.writes_seg else None
        det = self.recipe["detector"]
        estimator = build_pose_estimator(self.engine, self.bundle.spec, self.bundle.meta, self.recipe)
        p.map("detect", DetectStage(self.detector, every_n=int(det["every_n"])), queue_size=q)
        p.batch(
            "batch",
            max_batch=int(rt["batch_size"]),
            max_wait_s=float(rt["max_wait_s"]),
            weight=lambda w: max(1, len(w.boxes)),
            queue_size=min(q, 2),
        )
        p.map("infer", PoseInferStage(estimator), queue_size=q)
        p.map("track", TrackStage.from_recipe(self.recipe, live=live), queue_size=q)
        p.map(
            "draw",
            DrawStage(
                self.bundle.meta.get("skeleton", []),
                kpt_thr=float(self.recipe["pose"]["kpt_thr"]),
                draw_boxes=bool(sinks.get("draw_boxes", False)),
                seg_overlay=overlay,
            ),
            queue_size=q,
        )
        p.sink("write", outputs)
        return p, outputs


def _engine(bundle: ModelBundle, rt: dict[str, Any]) -> InferenceEngine:
    return InferenceEngine(
        bundle.model,
        device=str(rt["device"]),
        amp=str(rt["amp"]),
        channels_last=True,
        compile=bool(rt.get("compile", False)),
        mean=bundle.meta["mean"],
        std=bundle.meta["std"],
    )


def prepare(task: str, recipe: dict[str, Any], out_dir: str | Path, *, progress: bool = True) -> PreparedTask:
    """Load the recipe's network(s) (downloading default weights if needed) and build their engines."""
    rt = recipe["runtime"]
    if task == "seg":
        bundle = load_model_bundle(str(recipe["model"]), recipe.get("weights"), task="seg", progress=progress)
        return PreparedTask(task, recipe, Path(out_dir), bundle, _engine(bundle, rt))
    bundle = load_model_bundle(str(recipe["model"]), recipe.get("weights"), task="pose", progress=progress)
    engine = _engine(bundle, rt)
    det = recipe["detector"]
    seg_bundle = seg_engine = None
    if task == "pose,seg" or det["name"] == "seg":
        seg_bundle = load_model_bundle(
            str(recipe["seg_model"]), recipe.get("seg_weights"), task="seg", progress=progress
        )
        seg_engine = _engine(seg_bundle, rt)
    if det["name"] == "seg":
        assert seg_bundle is not None
        check_flip_test("seg", bool(det.get("flip_test")))
        detector: Any = SegPersonDetector(
            seg_bundle.meta["classes"],
            det.get("seg_classes") or ["person", "rider"],
            min_area=int(det.get("min_area", 400)),
        )
    else:
        detector = build_pose_detector(recipe, str(engine.device), progress=progress)
    return PreparedTask(task, recipe, Path(out_dir), bundle, engine, detector, seg_bundle, seg_engine)
