"""``hrstream.stream``: the pipeline as a Python generator of per-frame results.

::

    import hrstream

    for r in hrstream.stream(["clip.mp4", "rtsp://cam/1"], task="pose", model="pose_hrnet_w32_256x192"):
        print(r.source_id, r.frame.index, r.frame.pts_s, r.poses.track_ids)
        image = r.plot()  # uint8 (H, W, 3) RGB with skeletons and track IDs

The same run as ``hrstream run`` (:func:`hrstream.runs.run_inputs` with a
:class:`~hrstream.runs.local.LocalExecutor`: one network for every source, bounded queues, per-source tracking,
CPU threads set, status lines for live sources, output names through the folder's manifest), running in a
background thread; results come in the order they are ready, sources interleaved. Leaving the loop (``break``),
``close()`` or the end of every source stops the threads and closes every file.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from hrstream.types import FrameResult

__all__ = ["stream"]


def stream(
    sources: str | Sequence[str],
    task: str | None = None,
    *,
    pipeline: str | Path | None = None,
    out: str | Path | None = None,
    names: Sequence[str | None] | None = None,
    buffer: int = 4,
    **options: Any,
) -> Generator[FrameResult, None, None]:
    """Per-frame results of ``sources`` through one pipeline.

    Args:
        sources: a file, folder, glob, URL or camera, or a list of them (folders and globs expand to their
            videos); live sources all run at once, files ``streams`` at a time.
        task: ``"pose"``, ``"seg"`` or ``"pose,seg"``; ``None``: the ``pipeline`` recipe's, else pose.
        pipeline: a recipe YAML (``pipelines/``); ``options`` override its fields.
        out: also write each source's files (annotated video, JSONL, tracks) into this folder, named through its
            ``manifest.json`` as ``hrstream run`` names them (two calls never overwrite each other's files; every
            input is processed, also one the folder holds as done); ``None``: no file.
        names: ``names[i]`` names the source ``sources[i]`` (its ``source_id``).
        buffer: results held ready for the loop (the pipeline waits while they are not taken).
        **options: named like ``hrstream run``'s flags (``model=``, ``weights=``, ``detector=``, ``device=``,
            ``amp=``, ``batch_size=``, ``streams=``, ``det_thr=``, ``kpt_thr=``, ``max_people=``, ...; see
            :data:`hrstream.pipeline.recipe.FLAG_FIELDS`).

    Yields:
        :class:`~hrstream.types.FrameResult`: ``frame`` (``source_id``, ``index``, ``pts_s``, ``captured_at``,
        ``image``), ``poses`` (boxes, keypoints, scores, ``track_ids``; -1: no confirmed track yet), ``seg``,
        ``dropped_before``; ``plot()`` draws the annotated image.

    Raises:
        ConfigError: a bad option or recipe value, raised by this call (before the first result).
        StageError: a stage failed while running (raised from the loop).

    The models are loaded by this call; the sources are opened when the loop starts. A source that cannot be
    opened or fails is logged and ends alone (as in ``hrstream run``).
    """
    from hrstream.pipeline.builder import load_networks
    from hrstream.pipeline.recipe import flag_overrides
    from hrstream.pipeline.recipe_load import load_recipe

    specs = [str(sources)] if isinstance(sources, (str, Path)) else [str(s) for s in sources]
    recipe = load_recipe(task, pipeline, flag_overrides(options))
    networks = load_networks(recipe, progress=False, flags={k for k, v in options.items() if v is not None})
    return _results(networks, specs, names, out, buffer)


def _results(
    networks: Any, specs: list[str], names: Sequence[str | None] | None, out: str | Path | None, buffer: int
) -> Generator[FrameResult]:
    from hrstream.runs.lifecycle import run_inputs
    from hrstream.runs.local import LocalExecutor
    from hrstream.runtime.queues import BoundedQueue, QueueAborted, QueueClosed

    results: BoundedQueue = BoundedQueue(max(1, int(buffer)), name="results")
    executor = LocalExecutor(networks, out_dir=out, forward=results.put)
    recipe = networks.recipe
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_inputs(
                specs,
                executor,
                out_dir=out,
                recipe_digest=recipe.digest(),
                names=names,
                force=True,
                metrics_port=recipe.runtime.metrics_port,
            )
        except BaseException as e:  # raised in the loop
            failure.append(e)
        finally:
            results.close()

    thread = threading.Thread(target=run, name="hrstream-stream", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = results.get()
            except (QueueClosed, QueueAborted):
                break
            yield item
        thread.join()
        if failure:
            raise failure[0]
        if executor.stage_error is not None:
            raise executor.stage_error
    finally:
        if thread.is_alive():  # the loop was left early: stop at once, close every file
            executor.abort()
            results.abort()
            thread.join(timeout=30.0)
