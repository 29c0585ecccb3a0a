"""A run as ``hrstream run`` asks for it: the recipe's networks on the executor the options choose, over the
inputs, through the one lifecycle (:func:`~hrstream.runs.lifecycle.run_inputs`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from hrstream.pipeline.builder import load_networks, pose_method
from hrstream.pipeline.recipe import Recipe
from hrstream.runs.executors import ParallelOptions, make_executor
from hrstream.runs.folder import prepare_output_folder
from hrstream.runs.lifecycle import Executor, RunOutcome, run_inputs
from hrstream.runs.local import LocalExecutor, ProgressFactory

__all__ = ["start_run"]


def start_run(
    recipe: Recipe,
    specs: Sequence[str],
    *,
    out_dir: str | Path,
    names: Sequence[str | None] | None = None,
    options: Sequence[dict[str, Any] | None] | None = None,
    parallel: ParallelOptions | None = None,
    grace_s: float = 10.0,
    force: bool = False,
    progress: bool = True,
    make_progress: ProgressFactory | None = None,
    flags: Collection[str] = (),
) -> RunOutcome:
    """Process ``specs`` into ``out_dir`` as ``recipe`` says: in this process, or on worker processes or Ray
    actors (``parallel``). ``progress``: progress displays (per file here; one overall bar with workers);
    ``flags``: the names of the flags given (checked against the network: :func:`pose_method`)."""
    parallel = parallel or ParallelOptions()
    executor: Executor
    info = {}
    pose_method(recipe, flags=flags)
    prepare_output_folder(out_dir)  # a folder that cannot be written ends the run before models load
    if parallel.requested:
        executor = make_executor(recipe, out_dir, parallel, grace_s=grace_s)
        info = {"workers_requested": parallel.workers, "input_timeout": parallel.input_timeout}
    else:
        networks = load_networks(recipe, progress=progress)
        executor = LocalExecutor(networks, out_dir=out_dir, grace_s=grace_s, make_progress=make_progress)
    return run_inputs(
        specs,
        executor,
        out_dir=out_dir,
        recipe_digest=recipe.digest(),
        names=names,
        options=options,
        force=force,
        progress=progress and parallel.requested,
        metrics_port=recipe.runtime.metrics_port,
        run_info={k: v for k, v in info.items() if v is not None},
    )
