"""``hrstream run`` and ``hrstream status``.

Every flag that sets a recipe field is checked by the recipe (types, ranges, NaN and infinities refused) and a
bad value is reported against the flag; the choices offered here are the recipe's own ``Literal`` lists.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, get_args

import click

from hrstream.cli.common import fail, progress_factory, setup_logging
from hrstream.errors import ConfigError, HrstreamError
from hrstream.pipeline.recipe import Decoder, Preset
from hrstream.pipeline.recipe_load import TASKS
from hrstream.runtime.backend_choice import BackendRequest
from hrstream.runtime.precision import AmpMode

__all__ = ["COMMANDS"]


def _seconds(flag: str, value: float | None, *, positive: bool = False) -> None:
    """A duration flag that is no recipe field: a finite number >= 0 (> 0 with ``positive``)."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ConfigError(f"{flag} must be a finite number {'> 0' if positive else '>= 0'}, got {value}")


@click.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A text file of sources, one a line: URL, NAME URL, or NAME URL detect_every=N (# comments). "
    "Adds to SOURCES.",
)
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default=None,
    help="pose, seg, or pose,seg (both networks on the same frames, one annotated video). "
    "Default: the --pipeline recipe's task, else pose.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/out",
    show_default=True,
    help="Output folder; every file lands inside it.",
)
@click.option(
    "--pipeline",
    "pipeline_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A pipeline recipe YAML (default: pipelines/<task>.yaml); flags override its fields.",
)
@click.option(
    "--model", default=None, help="A registered config name or a config YAML in the official schema."
)
@click.option(
    "--seg-model", default=None, help="The segmentation network of --task pose,seg / --detector seg."
)
@click.option("--seg-weights", default=None, help="Weights of --seg-model (a registered name or a path).")
@click.option(
    "--seg-smoothing",
    type=float,
    default=None,
    help="Time constant (s) of the EMA of class probabilities; resets at scene cuts. Off by default.",
)
@click.option("--opacity", type=float, default=None, help="Opacity of the class overlay, 0 to 1.")
@click.option("--rle", is_flag=True, default=None, help="Per-class COCO RLE masks in the JSONL records.")
@click.option("--weights", default=None, help="A registered weights name or a checkpoint path.")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N")
@click.option("--amp", type=click.Choice(get_args(AmpMode)), default=None)
@click.option(
    "--calibration",
    default=None,
    help="--amp int8: calibrate on these frames (a video, image or folder; default: synthetic clips).",
)
@click.option(
    "--backend",
    type=click.Choice(get_args(BackendRequest)),
    default=None,
    help="What runs the pose network: torch, or on a CPU its exported ONNX graph in ONNX Runtime or OpenVINO; "
    "auto picks by model and CPU.",
)
@click.option(
    "--batch-size", type=int, default=None, help="Person crops (pose) or frames (seg) per network call."
)
@click.option(
    "--streams",
    type=int,
    default=None,
    help="Files decoded at a time through the one network (default 1 on a CPU, 4 on CUDA); "
    "live sources always all run.",
)
@click.option(
    "--detector",
    default=None,
    help="fast | accurate | full-frame | file:PATH | seg | a det_hrnet config (name or YAML).",
)
@click.option("--detector-weights", default=None, help="Weights of a det_hrnet --detector (name or path).")
@click.option("--detect-every", type=int, default=None, help="Run the detector every N frames.")
@click.option("--det-thr", type=float, default=None, help="Smallest person box score kept, 0 to 1.")
@click.option("--max-people", type=int, default=None, help="Most people per frame (best scores).")
@click.option("--kpt-thr", type=float, default=None, help="Keypoints drawn only above this score, 0 to 1.")
@click.option("--flip-test/--no-flip-test", default=None, help="Override the config's TEST.FLIP_TEST.")
@click.option("--decoder", type=click.Choice(get_args(Decoder)), default=None)
@click.option(
    "--preset", type=click.Choice(get_args(Preset)), default=None, help="libx264 preset of the video."
)
@click.option("--no-video", is_flag=True, help="Do not write the annotated video.")
@click.option(
    "--open-timeout", type=float, default=None, help="Seconds to open a network source (default 10)."
)
@click.option(
    "--read-timeout",
    type=float,
    default=None,
    help="Seconds without data before a network source fails (default 10).",
)
@click.option(
    "--max-reconnects",
    type=int,
    default=None,
    help="A live source gives up after N consecutive failed attempts to (re)connect (default: never; "
    "exit code 3 when every source of the run gave up).",
)
@click.option(
    "--segment-s",
    type=float,
    default=None,
    help="Cut each source's files into segments of this many seconds (default: 600 for live sources, "
    "files not cut).",
)
@click.option("--keep-segments", type=int, default=None, help="Delete older segments beyond N.")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics while the run lasts (with workers: every "
    "worker's numbers, from this process).",
)
@click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds to drain after SIGINT/SIGTERM; then the outputs are closed with what they have.",
)
@click.option(
    "--workers",
    default=None,
    metavar="N|auto",
    help="Run N worker processes, one input each at a time (auto: one per CUDA device, else one per 2 cores); "
    "a crashed worker costs only its input (tried once more).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: Ray Core actors (pip install 'hrstream[ray]'), one per GPU or per --cpus-per-worker CPUs.",
)
@click.option(
    "--ray-address", default=None, help="The Ray cluster (default: $RAY_ADDRESS, else a local one)."
)
@click.option(
    "--cpus-per-worker", type=click.IntRange(min=1), default=None, help="CPU threads of each worker or actor."
)
@click.option(
    "--input-timeout",
    type=float,
    default=None,
    help="Seconds an input may take with --workers / --executor ray; past it its worker is killed and it fails.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Run again every input OUT/manifest.json holds as failed or unfinished (name no SOURCES).",
)
@click.option("--force", is_flag=True, help="Process every input, also those done already.")
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def run(
    sources: tuple[str, ...],
    sources_file: str | None,
    task: str | None,
    out_dir: str,
    pipeline_path: str | None,
    **opts: Any,
) -> None:
    """Run a task over files, folders, globs, URLs or cameras: every live source at once, files --streams at a
    time, all through one network."""
    quiet, verbose, grace = opts.pop("quiet"), opts.pop("verbose"), opts.pop("grace")
    setup_logging(quiet, verbose)
    started = time.monotonic()
    try:
        from hrstream.io import read_sources_file
        from hrstream.pipeline.recipe import flag_overrides
        from hrstream.pipeline.recipe_load import load_recipe
        from hrstream.runs import ParallelOptions, exit_code, format_summary, retry_specs, start_run
        from hrstream.runtime.stages import left_running

        opts["video"] = False if opts.pop("no_video") else None
        retry_failed, force = opts.pop("retry_failed"), opts.pop("force")
        _seconds("--grace", grace)
        parallel = ParallelOptions.pop_from(opts)
        _seconds("--input-timeout", parallel.input_timeout, positive=True)
        parallel.check()
        specs: list[str] = list(sources)
        names: list[str | None] = [None] * len(specs)
        options: list[dict[str, Any] | None] = [None] * len(specs)
        if sources_file is not None:
            for line in read_sources_file(sources_file):
                specs.append(line.spec)
                names.append(line.name)
                options.append(line.options)
        if retry_failed:
            if specs:
                raise click.UsageError(
                    "--retry-failed takes its inputs from OUT/manifest.json; name no SOURCES"
                )
            specs = retry_specs(out_dir)
            names = [None] * len(specs)
            options = [None] * len(specs)
            if not specs:
                click.echo(f"hrstream: nothing to retry in {out_dir}", err=True)
                sys.exit(0)
        if not specs:
            raise click.UsageError("give at least one SOURCE or --sources FILE")
        recipe = load_recipe(task, pipeline_path, flag_overrides(opts))
        outcome = start_run(
            recipe,
            specs,
            out_dir=out_dir,
            names=names,
            options=options,
            parallel=parallel,
            grace_s=grace,
            force=force,
            progress=not quiet,
            make_progress=progress_factory(quiet),
            flags={k for k, v in opts.items() if v is not None},
        )
    except HrstreamError as e:
        e.exit_code = max(e.exit_code, 2)  # raised while setting up: a usage error, not a failed input
        fail(e)
        return
    results = outcome.results
    failed = [r for r in results if r.status == "failed"]
    done = [r for r in results if r.status in ("ok", "skipped")]
    if not quiet:
        if parallel.requested:
            click.echo(format_summary(results), err=True)
        skipped = sum(r.status == "skipped" for r in results)
        took = time.monotonic() - started
        click.echo(
            f"hrstream: {len(done)} done ({skipped} skipped), {len(failed)} failed in {took:.1f} s -> {out_dir}",
            err=True,
        )
    code = exit_code(results, outcome.signum)
    if left_running() or outcome.signum is not None:
        # A run stopped by a signal has every output closed and the manifest written (and its Ray cluster or
        # worker processes shut down): exit now. An abort (past --grace, or a second signal) may have left a stage
        # in a network call, which the interpreter's shutdown would wait for; and that shutdown alone (torch's
        # thread pools, modules torn down) took 1-2 s on a loaded machine, past what --grace promises.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
def status(out_dir: str) -> None:
    """Summarise OUT/manifest.json: inputs done, failed (with their errors), running and remaining. Exits 1
    if any input failed."""
    from pathlib import Path

    from hrstream.runs import MANIFEST_NAME, Manifest, format_status

    try:
        if not (Path(out_dir) / MANIFEST_NAME).is_file():
            raise ConfigError(f"{out_dir}: no {MANIFEST_NAME}; give the --out folder of an hrstream run")
        text, code = format_status(Manifest.load(out_dir))
    except HrstreamError as e:
        fail(e)
        return
    click.echo(text)
    sys.exit(code)


COMMANDS = (run, status)
