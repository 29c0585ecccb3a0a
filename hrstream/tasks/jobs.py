"""Assemble a task's pipeline for one source: what the CLI and library users call.

``prepare(task, recipe)`` loads the network(s) once; ``PreparedTask.build(source, progress)`` wires the
stages of one input. Stage order for pose: decode -> detect -> batch -> infer -> track -> draw -> write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrstream.io.base import Source
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
)
from hrstream.tasks.seg_task import SegDrawStage, SegInferStage, SegOutputs, build_seg_estimator

__all__ = ["PreparedTask", "prepare"]

log = logging.getLogger(__name__)


@dataclass
class PreparedTask:
    """A task ready to run: the network on its engine and everything that lasts across inputs."""

    task: str
    recipe: dict[str, Any]
    out_dir: Path
    bundle: ModelBundle
    engine: InferenceEngine
    detector: Any = None

    def build(self, source: Source, progress: Any = None) -> tuple[Pipeline, JobOutputs]:
        info = source.info
        rt = self.recipe["runtime"]
        sinks = self.recipe["sinks"]
        live = info.is_live
        common: dict[str, Any] = {
            "model": self.bundle.describe(),
            "meta": self.bundle.meta,
            "video": bool(sinks["video"]),
            "jsonl": bool(sinks["jsonl"]),
            "preset": str(sinks["preset"]),
            "audio_source": info.path if (info.has_audio and not live) else None,
            "progress": progress,
        }
        outputs: JobOutputs
        if self.task == "seg":
            seg = self.recipe["seg"]
            outputs = SegOutputs(
                self.out_dir,
                info,
                label_maps=bool(seg["label_maps"]),
                rle=bool(seg["rle"]),
                classes=self.bundle.meta["classes"],
                **common,
            )
        else:
            outputs = JobOutputs(
                self.out_dir,
                info,
                task=self.task,
                tracks=bool(sinks.get("tracks", False)),
                savgol_window_s=None if live else self.recipe["smoother"].get("tracks_savgol_window_s"),
                **common,
            )
        p = Pipeline(f"{self.task}:{info.name}")
        p.source(
            "decode",
            source,
            queue_size=int(rt["live_buffer"] if live else rt["queue_size"]),
            leaky=live,
            on_stop=getattr(source, "interrupt", None),
        )
        if self.task == "pose":
            det = self.recipe["detector"]
            estimator = build_pose_estimator(self.engine, self.bundle.spec, self.bundle.meta, self.recipe)
            p.map("detect", DetectStage(self.detector, every_n=int(det["every_n"])))
            p.batch(
                "batch",
                max_batch=int(rt["batch_size"]),
                max_wait_s=float(rt["max_wait_s"]),
                weight=lambda w: max(1, len(w.boxes)),
            )
            p.map("infer", PoseInferStage(estimator))
            p.map("track", TrackStage.from_recipe(self.recipe, live=live))
            pose = self.recipe["pose"]
            p.map(
                "draw",
                DrawStage(
                    self.bundle.meta.get("skeleton", []),
                    kpt_thr=float(pose["kpt_thr"]),
                    draw_boxes=bool(sinks.get("draw_boxes", False)),
                ),
            )
        else:
            seg = self.recipe["seg"]
            classes, palette = self.bundle.meta["classes"], self.bundle.meta["palette"]
            estimator = build_seg_estimator(self.engine, self.bundle.spec, self.bundle.meta, self.recipe)
            p.batch("batch", max_batch=int(rt["batch_size"]), max_wait_s=float(rt["max_wait_s"]))
            p.map("infer", SegInferStage(estimator, classes, tau_s=seg.get("smoothing_tau_s")))
            p.map("draw", SegDrawStage(palette, classes, opacity=float(seg["opacity"])))
        p.sink("write", outputs)
        return p, outputs


def prepare(task: str, recipe: dict[str, Any], out_dir: str | Path, *, progress: bool = True) -> PreparedTask:
    """Load the recipe's network (downloading default weights if needed) and build its engine."""
    rt = recipe["runtime"]
    bundle = load_model_bundle(str(recipe["model"]), recipe.get("weights"), task=task, progress=progress)
    engine = InferenceEngine(
        bundle.model,
        device=str(rt["device"]),
        amp=str(rt["amp"]),
        channels_last=True,
        compile=bool(rt.get("compile", False)),
        mean=bundle.meta["mean"],
        std=bundle.meta["std"],
    )
    detector = None
    if task == "pose":
        detector = build_pose_detector(recipe, str(engine.device))
    return PreparedTask(task, recipe, Path(out_dir), bundle, engine, detector)
