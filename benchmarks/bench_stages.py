"""The timed measurements of the runtime benchmark: each stage alone, the pipeline, and a naive loop.

Every function returns a :class:`Row`: throughput in frames per second (and crops per second for the
network), the work done, the wall time and the settings that produced it. Times are wall clock
(``time.perf_counter``) around the work only; one-time costs (opening the model, the first network call)
are excluded everywhere the same way.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_fixtures import synthetic_boxes
from torch import nn

from hrstream.io import VideoWriter, open_source
from hrstream.models.meta import WeightsMeta
from hrstream.pipeline.builder import Networks
from hrstream.pose import box_to_center_scale, crop_cpu, decode_heatmaps, draw_poses, flip_test_merge
from hrstream.runs import LocalExecutor, run_inputs
from hrstream.runtime import InferenceEngine, PipelineStats
from hrstream.types import Frame, Poses

log = logging.getLogger(__name__)

__all__ = [
    "Row",
    "measure_decode",
    "measure_encode",
    "measure_naive",
    "measure_network",
    "measure_pipeline",
    "sample_crops",
]


@dataclass
class Row:
    """One line of the result table. ``role``: ``stage`` (counts for the slowest stage), ``pipeline``,
    ``naive`` or ``info`` (a comparison only)."""

    name: str
    role: str
    frames_per_s: float
    seconds: float
    frames: int
    crops_per_s: float | None = None
    crops: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure_decode(clip: str) -> tuple[Row, list[Frame]]:
    """PyAV decode to RGB through :func:`hrstream.io.open_source` (as the pipeline's source stage does).

    Returns the row and the decoded frames (kept for the encode measurement).
    """
    t0 = time.perf_counter()
    frames: list[Frame] = []
    with open_source(clip) as src:
        frames.extend(src)
    dt = time.perf_counter() - t0
    return Row("decode alone (PyAV, RGB)", "stage", len(frames) / dt, dt, len(frames)), frames


def measure_encode(frames: list[Frame], out: Path, *, preset: str, fps: float | None) -> Row:
    """libx264 through :class:`hrstream.io.VideoWriter` with the pipeline's preset, frames from memory."""
    h, w = frames[0].image.shape[:2]
    t0 = time.perf_counter()
    with VideoWriter(out, width=w, height=h, time_base=frames[0].time_base, fps=fps, preset=preset) as vw:
        for f in frames:
            vw.write(f.image, pts=f.pts, time_base=f.time_base)
    dt = time.perf_counter() - t0
    return Row(
        f"encode alone (libx264 {preset})",
        "stage",
        len(frames) / dt,
        dt,
        len(frames),
        settings={"preset": preset},
    )


def sample_crops(frame: Frame, people: int, input_size: tuple[int, int], mean: Any, std: Any) -> torch.Tensor:
    """Normalised ``float32 (people, 3, h, w)`` NCHW crops of the synthetic boxes of ``frame``."""
    boxes = synthetic_boxes(frame.index, people, frame.width, frame.height)
    center, scale = box_to_center_scale(boxes, aspect_ratio=input_size[0] / input_size[1], box_format="xyxy")
    crops = np.stack([crop_cpu(frame.image, center[j], scale[j], input_size) for j in range(people)])
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


def in_worker_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` run in a new thread, as the pipeline runs its network (in the ``infer`` stage's thread). On the
    shared 2-core machine torch on two OpenMP threads called from the main thread ran a Lite-HRNet at 3 crops/s
    while the same call from another thread of the same process ran at 140 (docs/performance.md), so every
    network timing here runs where the pipeline runs it."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()), name="bench-infer")
    thread.start()
    thread.join()
    if not result:
        raise RuntimeError("the timed call failed in its thread (see the traceback above)")
    return result[0]


def measure_network(
    engine: InferenceEngine,
    pool: torch.Tensor,
    *,
    batch_size: int,
    total_crops: int,
    crops_per_frame: int,
    name: str,
    role: str,
    threads: int,
) -> Row:
    """The network alone: ``total_crops`` crops in calls of ``batch_size`` (the last one partial, as in
    the pipeline) through ``engine.infer(normalized=True)``, the pipeline's own call, timed in a thread of its
    own (:func:`in_worker_thread`). One warm-up call of ``batch_size`` is not timed."""

    def timed() -> Row:
        torch.set_num_threads(threads)
        reps = math.ceil(batch_size / len(pool))
        batch = pool.repeat(reps, 1, 1, 1)[:batch_size].contiguous()
        engine.infer(batch, normalized=True)
        sizes = [batch_size] * (total_crops // batch_size)
        if total_crops % batch_size:
            sizes.append(total_crops % batch_size)
        t0 = time.perf_counter()
        for n in sizes:
            engine.infer(batch[:n], normalized=True)
        dt = time.perf_counter() - t0
        crops = sum(sizes)
        settings = {
            "amp": engine.amp,
            "channels_last": engine.channels_last,
            "batch": batch_size,
            "threads": threads,
        }
        return Row(
            name,
            role,
            crops / dt / crops_per_frame,
            dt,
            crops // crops_per_frame,
            crops / dt,
            crops,
            settings,
        )

    return in_worker_thread(timed)


def measure_pipeline(networks: Networks, clip: str, out: Path, *, threads: int) -> tuple[Row, PipelineStats]:
    """The whole ``hrstream run`` pipeline for one input into ``out`` (the real run lifecycle with a
    :class:`~hrstream.runs.LocalExecutor`: the source opened in its decode thread, the outputs closed and the
    encoder flushed)."""
    torch.set_num_threads(threads)
    rt = networks.recipe.runtime
    runner = LocalExecutor(networks, out_dir=out, grace_s=None, reserved_threads=0)
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    (result,) = run_inputs(
        [clip], runner, out_dir=out, recipe_digest=networks.recipe.digest(), force=True
    ).results
    dt = time.perf_counter() - t0
    assert runner.stats is not None and result.status == "ok", result.error
    settings = {
        "amp": networks.main.engine.amp,
        "batch": rt.batch_size,
        "threads": threads,
        "queue_size": rt.queue_size,
        "preset": networks.recipe.sinks.preset,
        "outcome": runner.stats.outcome,
    }
    return Row(
        "whole pipeline (hrstream run)",
        "pipeline",
        result.frames / dt,
        dt,
        result.frames,
        settings=settings,
    ), runner.stats


def measure_naive(
    clip: str,
    model: nn.Module,
    out: Path,
    *,
    people: int,
    input_size: tuple[int, int],
    meta: WeightsMeta,
    preset: str,
    flip_test: bool,
    threads: int,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    name: str = "naive loop (official demo structure)",
    settings: dict[str, Any] | None = None,
) -> Row:
    """The official demo's structure: one frame at a time, one person at a time, fp32, NCHW, synchronous.

    Per frame: decode (PyAV), per person ``cv2.warpAffine`` crop, normalise, network, heatmap decode on
    the CPU, then draw and encode inline. With ``flip_test`` each person also runs its flipped crop.
    ``forward`` replaces ``model`` as the network (normalised ``(1, 3, h, w)`` -> heatmaps), e.g. the
    pipeline's engine at its precision; ``settings`` then says what it runs.
    """
    net = forward or model
    torch.set_num_threads(threads)
    model = model.eval()
    mean = torch.tensor(meta.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(meta.std, dtype=torch.float32).view(3, 1, 1)
    flip_pairs = np.asarray(meta.flip_pairs, np.int64).reshape(-1, 2)
    skeleton = list(meta.skeleton)
    aspect = input_size[0] / input_size[1]
    n_frames = 0
    t0 = time.perf_counter()
    with open_source(clip) as src, torch.no_grad():
        info = src.info
        writer = VideoWriter(
            out, width=info.width, height=info.height, time_base=info.time_base, fps=info.fps, preset=preset
        )
        with writer:
            for frame in src:
                boxes = synthetic_boxes(frame.index, people, frame.width, frame.height)
                center, scale = box_to_center_scale(boxes, aspect_ratio=aspect, box_format="xyxy")
                kpts, kscores = [], []
                for j in range(people):
                    crop = crop_cpu(frame.image, center[j], scale[j], input_size)
                    x = ((torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0 - mean) / std).unsqueeze(0)
                    hm = net(x)
                    if flip_test:
                        hm = flip_test_merge(hm, net(x.flip(3).contiguous()), flip_pairs, shift=True)
                    coords, maxvals = decode_heatmaps(hm.numpy(), center[j : j + 1], scale[j : j + 1], "msra")
                    kpts.append(coords[0])
                    kscores.append(maxvals[0, :, 0])
                poses = Poses(boxes, np.full(people, 0.9, np.float32), np.stack(kpts), np.stack(kscores))
                image = draw_poses(frame.image, poses, skeleton=skeleton, kpt_thr=0.3)
                writer.write(image, pts=frame.pts, time_base=frame.time_base)
                n_frames += 1
    dt = time.perf_counter() - t0
    crops = n_frames * people * (2 if flip_test else 1)
    settings = {"amp": "off", "channels_last": False, **(settings or {}), "batch": 1, "threads": threads,
                "preset": preset}  # fmt: skip
    return Row(
        name,
        "naive",
        n_frames / dt,
        dt,
        n_frames,
        crops / dt,
        crops,
        settings,
    )
