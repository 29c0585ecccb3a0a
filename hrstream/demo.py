"""``hrstream demo``: the whole pipeline offline, on a generated clip whose every answer is known.

It renders a synthetic clip (``hrstream.synth``), runs ``--task pose,seg`` with the small HRNets that ship
inside the package (person boxes from the HRNetV2p detector, top-down pose, tracking, smoothing, segmentation
overlay, annotated video, JSONL and tracks), then scores the tracks against the truth (``hrstream.metrics``).
``fast`` swaps the pose network for the shipped Lite-HRNet-18 on the backend ``runtime.backend: auto`` picks
for this CPU (:mod:`hrstream.runtime.backend_choice`). The shipped networks were trained on synthetic figures
only and are not meant for real footage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrstream.errors import HrstreamError
from hrstream.metrics import evaluate_tracks
from hrstream.pipeline.builder import load_networks
from hrstream.pipeline.recipe import Recipe
from hrstream.pipeline.recipe_load import PIPELINES_DIR, load_recipe
from hrstream.runs.lifecycle import run_inputs
from hrstream.runs.local import LocalExecutor
from hrstream.synth import SynthConfig, write_clip

__all__ = [
    "DEMO_DET_MODEL",
    "DEMO_FAST_POSE_MODEL",
    "DEMO_POSE_MODEL",
    "DEMO_SEG_MODEL",
    "DemoResult",
    "run_demo",
    "synthetic_recipe",
]

log = logging.getLogger(__name__)

DEMO_POSE_MODEL = "synthetic_pose_hrnet_w18_small_128x96"
DEMO_FAST_POSE_MODEL = "synthetic_litehrnet_18_128x96"  # hrstream demo --fast, on runtime.backend auto
DEMO_SEG_MODEL = "synthetic_seg_hrnet_w18_small"
DEMO_DET_MODEL = "synthetic_det_hrnet_w18_small_fcos"


@dataclass
class DemoResult:
    """Where the demo wrote its files, and the scores of its tracks against the truth."""

    video: Path
    jsonl: Path
    tracks: Path
    truth: Path
    metrics: dict[str, Any]


def synthetic_recipe(overrides: dict[str, Any] | None = None) -> Recipe:
    """``pipelines/synthetic.yaml``: ``pose,seg`` with the shipped synthetic networks, person boxes from the
    shipped detector."""
    return load_recipe(None, PIPELINES_DIR / "synthetic.yaml", overrides or {})


def run_demo(
    out_dir: str | Path,
    *,
    seed: int = 424242,
    seconds: float = 8.0,
    people: int | tuple[int, int] = 3,
    size: tuple[int, int] = (640, 360),
    device: str = "auto",
    fast: bool = False,
    progress: Any = None,
) -> DemoResult:
    """Generate a clip in ``out_dir/truth``, run the pipeline into ``out_dir``, score it. ``fast``: the pose
    network is :data:`DEMO_FAST_POSE_MODEL` (Lite-HRNet-18) on ``runtime.backend: auto``.

    Raises :class:`~hrstream.errors.HrstreamError` if the clip cannot be processed.
    """
    out = Path(out_dir)
    config = SynthConfig(
        width=size[0], height=size[1], fps=25.0, duration_s=seconds, num_people=people, seed=seed
    )
    truth = write_clip(config, out / "truth", f"demo_{seed}", masks=False)
    log.info("generated %s (seed %d, %.0f s, %s people)", truth["video"], seed, seconds, people)
    overrides: dict[str, Any] = {"runtime.device": device}
    if fast:
        overrides.update({"model": DEMO_FAST_POSE_MODEL, "runtime.backend": "auto"})
    recipe = synthetic_recipe(overrides)
    networks = load_networks(recipe, progress=False)
    executor = LocalExecutor(networks, out_dir=out, make_progress=progress)
    outcome = run_inputs([str(truth["video"])], executor, out_dir=out, recipe_digest=recipe.digest())
    job = outcome.results[0]
    if job.status not in ("ok", "skipped"):
        raise HrstreamError(f"demo: the pipeline did not finish ({job.status}: {job.error})")
    paths = {k: Path(v) for k, v in job.outputs.items()}
    metrics = evaluate_tracks(paths["tracks"], truth["tracks"], use="smoothed")
    return DemoResult(paths["video"], paths["jsonl"], paths["tracks"], truth["tracks"], metrics)
