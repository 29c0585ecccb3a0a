"""``hrstream.stream``: the pipeline as a Python generator of per-frame results.

::

    import hrstream

    for r in hrstream.stream(["clip.mp4", "rtsp://cam/1"], task="pose", model="pose_hrnet_w32_256x192"):
        print(r.source_id, r.frame.index, r.frame.pts_s, r.poses.track_ids)
        image = r.plot()  # uint8 (H, W, 3) RGB with skeletons and track IDs

The same pipeline as ``hrstream run`` (one network for every source, bounded queues, per-source tracking),
running in background threads; results come in the order they are ready, sources interleaved. Leaving the loop
(``break``), ``close()`` or the end of every source stops the threads and closes every file.
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
        out: also write each source's files (annotated video, JSONL, tracks) into this folder; ``None``: no file.
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
    from hrstream.io import expand_inputs
    from hrstream.pipeline.builder import prepare
    from hrstream.pipeline.recipe import flag_overrides, load_recipe

    specs = [sources] if isinstance(sources, (str, Path)) else list(sources)
    recipe = load_recipe(task, pipeline, flag_overrides(options))
    prepared = prepare(recipe, out, progress=False)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    jobs, given = [], []
    for i, spec in enumerate(specs):
        expanded = expand_inputs([str(spec)])
        jobs.extend(expanded)
        name = names[i] if names is not None and i < len(names) else None
        given.extend([name] if len(expanded) == 1 else [None] * len(expanded))
    return _results(prepared, jobs, given, buffer)


def _results(prepared: Any, jobs: list[Any], given: list[str | None], buffer: int) -> Generator[FrameResult]:
    from hrstream.outputs.router import SinkRouter
    from hrstream.runs.local import unique_names
    from hrstream.runtime.feeder import SourceJob
    from hrstream.runtime.queues import BoundedQueue, QueueAborted, QueueClosed

    todo = [
        SourceJob(
            name,
            job.display,
            job.kind in ("url", "camera"),
            lambda stop, job=job, name=name: prepared.open_input(job, name, stop),
        )
        for job, name in zip(jobs, unique_names(jobs, given), strict=True)
    ]
    results: BoundedQueue = BoundedQueue(max(1, int(buffer)), name="results")
    mux, feeder = prepared.source_feeder()
    router = SinkRouter(prepared.open_outputs, on_done=lambda report: None, forward=results.put)
    pipe = prepared.build(mux, router, live=any(j.live for j in todo), on_stop=feeder.stop, name="stream")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            pipe.run()
        except BaseException as e:  # raised in the loop
            failure.append(e)
        finally:
            results.close()

    thread = threading.Thread(target=run, name="hrstream-stream", daemon=True)
    feeder.start(todo)
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
    finally:
        if thread.is_alive():  # the loop was left early: stop at once, close every file
            pipe.abort()
            results.abort()
            thread.join(timeout=30.0)
        feeder.stop()
        mux.close()
        feeder.join(timeout=5.0)
