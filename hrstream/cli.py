"""The ``hrstream`` command: parse, build, run. No logic lives here.

Exit codes: 0 all done, 1 some inputs failed, 2 usage or configuration error (bad option, unknown model,
weights unavailable), 130 interrupted by SIGINT (143 by SIGTERM).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from hrstream.errors import HrstreamError

log = logging.getLogger("hrstream")


def _setup_logging(quiet: bool, verbose: int) -> None:
    from hrstream.io import install_redaction

    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install_redaction()  # credentials in URLs never reach a log line
    for noisy in ("libav", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _fail(e: HrstreamError) -> None:
    click.echo(f"hrstream: error: {e}", err=True)
    sys.exit(e.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hrstream")
def main() -> None:
    """HRNet pose estimation and segmentation over video."""


def _progress_factory(quiet: bool) -> Callable[[Any], tuple[Any, Callable[[], None]]]:
    def make(info: Any) -> tuple[Any, Callable[[], None]]:
        if quiet or info.is_live:  # live sources get status lines (hrstream.tasks.monitor)
            return None, lambda: None
        from tqdm import tqdm

        bar = tqdm(total=info.num_frames, desc=info.name, unit="frame", file=sys.stderr, dynamic_ncols=True)

        def update(n: int) -> None:
            bar.update(n - bar.n)

        return update, bar.close

    return make


@main.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A text file of sources, one a line: URL, or NAME URL (# comments). Adds to SOURCES.",
)
@click.option(
    "--task",
    type=click.Choice(["pose", "seg", "pose,seg"]),
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
@click.option("--opacity", type=click.FloatRange(0, 1), default=None, help="Opacity of the class overlay.")
@click.option("--rle", is_flag=True, default=None, help="Per-class COCO RLE masks in the JSONL records.")
@click.option("--weights", default=None, help="A registered weights name or a checkpoint path.")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N")
@click.option("--amp", type=click.Choice(["auto", "off", "fp16", "bf16", "int8"]), default=None)
@click.option(
    "--calibration",
    default=None,
    help="--amp int8: calibrate on these frames (a video, image or folder; default: synthetic clips).",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnxruntime", "openvino", "auto"]),
    default=None,
    help="What runs the pose network: torch, or on a CPU its exported ONNX graph in ONNX Runtime or OpenVINO; "
    "auto picks by model and CPU.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Person crops (pose) or frames (seg) per network call.",
)
@click.option(
    "--streams",
    type=click.IntRange(min=1),
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
@click.option(
    "--detect-every", type=click.IntRange(min=1), default=None, help="Run the detector every N frames."
)
@click.option("--det-thr", type=click.FloatRange(0, 1), default=None, help="Smallest person box score kept.")
@click.option(
    "--max-people", type=click.IntRange(min=1), default=None, help="Most people per frame (best scores)."
)
@click.option(
    "--kpt-thr", type=click.FloatRange(0, 1), default=None, help="Keypoints drawn only above this score."
)
@click.option("--flip-test/--no-flip-test", default=None, help="Override the config's TEST.FLIP_TEST.")
@click.option("--decoder", type=click.Choice(["msra", "dark", "udp"]), default=None)
@click.option("--preset", default=None, help="libx264 preset of the annotated video (ultrafast ... medium).")
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
    type=click.IntRange(min=1),
    default=None,
    help="A live source gives up after N consecutive failed attempts to (re)connect (default: never; "
    "exit code 3 when every source of the run gave up).",
)
@click.option(
    "--segment-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Cut each source's files into segments of this many seconds (default: 600 for live sources, "
    "files not cut).",
)
@click.option(
    "--keep-segments", type=click.IntRange(min=1), default=None, help="Delete older segments beyond N."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics while the run lasts.",
)
@click.option(
    "--grace", type=float, default=10.0, show_default=True, help="Seconds to drain after SIGINT/SIGTERM."
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
    "--ray-address",
    default=None,
    help="The Ray cluster (default: $RAY_ADDRESS, else a local one for the run).",
)
@click.option(
    "--cpus-per-worker", type=click.IntRange(min=1), default=None, help="CPU threads of each worker or actor."
)
@click.option(
    "--input-timeout",
    type=click.FloatRange(min=0, min_open=True),
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
    _setup_logging(quiet, verbose)
    from hrstream.io import read_sources_file
    from hrstream.tasks.jobs import prepare
    from hrstream.tasks.parallel import ParallelOptions, retry_specs, run_parallel
    from hrstream.tasks.recipe import flag_overrides, load_recipe
    from hrstream.tasks.runner import Runner, exit_code

    opts["video"] = False if opts.pop("no_video") else None
    retry_failed, force = opts.pop("retry_failed"), opts.pop("force")
    runner = None
    started = time.monotonic()
    try:
        parallel = ParallelOptions.pop_from(opts)
        parallel.check()
        specs: list[str] = list(sources)
        names: list[str | None] = [None] * len(specs)
        if sources_file is not None:
            for name, spec in read_sources_file(sources_file):
                specs.append(spec)
                names.append(name)
        if retry_failed:
            if specs:
                raise click.UsageError(
                    "--retry-failed takes its inputs from OUT/manifest.json; name no SOURCES"
                )
            specs = retry_specs(out_dir)
            names = [None] * len(specs)
            if not specs:
                click.echo(f"hrstream: nothing to retry in {out_dir}", err=True)
                sys.exit(0)
        if not specs:
            raise click.UsageError("give at least one SOURCE or --sources FILE")
        recipe = load_recipe(task, pipeline_path, flag_overrides(opts))
        if parallel.requested:
            results, signum = run_parallel(
                recipe, out_dir, specs, parallel, names=names, grace_s=grace, force=force, progress=not quiet
            )
        else:
            prepared = prepare(recipe, out_dir, progress=not quiet)
            runner = Runner(prepared, grace_s=grace, make_progress=_progress_factory(quiet))
            results, signum = runner.run(specs, names=names, force=force)
    except HrstreamError as e:
        if runner is None and e.exit_code < 2:  # raised while setting up (an unreadable --detector file:PATH)
            e.exit_code = 2  # so a usage error, not a failed input
        _fail(e)
        return
    except KeyboardInterrupt:  # SIGINT before the run's own handlers were installed (loading the model)
        click.echo("hrstream: interrupted", err=True)
        sys.exit(130)
    failed = [r for r in results if r.status == "failed"]
    done = [r for r in results if r.status in ("ok", "skipped")]
    if not quiet:
        if parallel.requested:
            from hrstream.tasks.batch import format_summary

            click.echo(format_summary(results), err=True)
        skipped = sum(r.status == "skipped" for r in results)
        took = time.monotonic() - started
        click.echo(
            f"hrstream: {len(done)} done ({skipped} skipped), {len(failed)} failed in {took:.1f} s -> {out_dir}",
            err=True,
        )
    sys.exit(exit_code(results, signum))


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
def status(out_dir: str) -> None:
    """Summarise OUT/manifest.json: inputs done, failed (with their errors), running and remaining. Exits 1
    if any input failed."""
    from pathlib import Path

    from hrstream.errors import ConfigError
    from hrstream.tasks.batch import format_status
    from hrstream.tasks.manifest import MANIFEST_NAME, Manifest

    try:
        if not (Path(out_dir) / MANIFEST_NAME).is_file():
            raise ConfigError(f"{out_dir}: no {MANIFEST_NAME}; give the --out folder of an hrstream run")
        text, code = format_status(Manifest.load(out_dir))
    except HrstreamError as e:
        _fail(e)
        return
    click.echo(text)
    sys.exit(code)


@main.command()
def models() -> None:
    """List the registered weights and whether each is cached."""
    from hrstream.models.hub import models_table

    rows = models_table()
    cols = ["name", "task", "config", "metric", "cached"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


@main.group()
def weights() -> None:
    """Download or add checkpoints to the cache."""


@weights.command("fetch")
@click.argument("name")
def weights_fetch(name: str) -> None:
    """Download the registered weights NAME into the cache (verified, then moved into place)."""
    _setup_logging(False, 0)
    from hrstream.models.hub import fetch
    from hrstream.models.registry import get_weights

    try:
        path = fetch(get_weights(name))
    except HrstreamError as e:
        _fail(e)
        return
    click.echo(str(path))


@weights.command("add")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The registry name the file belongs to.")
def weights_add(path: str, name: str) -> None:
    """Check a local checkpoint against the registry and place it in the cache."""
    _setup_logging(False, 0)
    from hrstream.models.hub import add_local

    try:
        dest = add_local(path, name)
    except HrstreamError as e:
        _fail(e)
        return
    click.echo(str(dest))


@main.group("eval")
def eval_group() -> None:
    """Score results: `eval coco` (COCO keypoint AP) or `eval tracks` (tracks against ground truth)."""


@eval_group.command("coco")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option(
    "--gt",
    "gt_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="COCO keypoint ground truth (person_keypoints_*.json).",
)
def eval_cmd(results: str, gt_path: str) -> None:
    """COCO keypoint AP of a results file (COCO results format) with pycocotools."""
    from hrstream.pose import evaluate_coco_keypoints

    try:
        stats = evaluate_coco_keypoints(results, gt_path)
    except HrstreamError as e:
        _fail(e)
        return
    for k, v in stats.items():
        click.echo(f"{k:10s} {v:.4f}")


@main.command("export")
@click.argument("source", type=click.Path(exists=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["coco", "csv", "posetrack18", "openpose", "openpose-coco18", "coco-dataset"]),
    required=True,
    help="coco: keypoint results for pycocotools; csv: a line per person and frame; posetrack18: one JSON per "
    "video (poseval); openpose: OpenPose BODY_25 JSON per frame; openpose-coco18: OpenPose's 18-point COCO layout; "
    "coco-dataset: JPEG frames every --stride with a COCO keypoints file (CVAT's COCO Keypoints layout).",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the exported files."
)
@click.option(
    "--use",
    type=click.Choice(["smoothed", "raw", "offline"]),
    default="smoothed",
    show_default=True,
    help="Which keypoints: the online smoother's, the network's, or the offline Savitzky-Golay pass.",
)
@click.option(
    "--unconfirmed",
    is_flag=True,
    help="coco, csv, coco-dataset: also the people no confirmed track holds (read from NAME.jsonl beside the "
    "tracks).",
)
@click.option(
    "--stride",
    type=click.IntRange(min=1),
    default=None,
    help="coco-dataset: every K-th frame of each video becomes an image (default 1).",
)
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def export(
    source: str,
    fmt: str,
    out_dir: str,
    use: str,
    unconfirmed: bool,
    stride: int | None,
    quiet: bool,
    verbose: int,
) -> None:
    """Convert a NAME.tracks.json, or every pose job of a run folder (the --out of hrstream run), to COCO
    results, CSV, PoseTrack18, OpenPose JSON or a COCO keypoints dataset. A run folder, and coco-dataset, also
    get OUT/dataset.json describing what was exported; exits 1 if a video could not be exported."""
    _setup_logging(quiet, verbose)
    from hrstream.tasks.exports import export as export_source

    if unconfirmed and fmt not in ("coco", "csv", "coco-dataset"):
        raise click.UsageError(f"--unconfirmed applies to --format coco, csv and coco-dataset, not {fmt}")
    if stride is not None and fmt != "coco-dataset":
        raise click.UsageError(f"--stride applies to --format coco-dataset, not {fmt}")
    try:
        result = export_source(source, fmt, out_dir, use=use, unconfirmed=unconfirmed, stride=stride or 1)
    except HrstreamError as e:
        _fail(e)
        return
    if not quiet:
        extra = f" and {result.dataset.name}" if result.dataset is not None else ""
        click.echo(f"hrstream: wrote {len(result.paths)} file(s){extra} -> {out_dir}", err=True)
    if result.failed:
        click.echo(f"hrstream: {len(result.failed)} video(s) not exported", err=True)
        sys.exit(1)


def _hxw(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(f"expected HxW such as 256x192, got {value!r}")
    return int(parts[0]), int(parts[1])


@main.command("export-model")
@click.argument("model")
@click.option(
    "--weights", default=None, help="A registered weights name or a checkpoint path (default: the config's)."
)
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="The file to write.")
@click.option("--opset", type=click.IntRange(min=18), default=18, show_default=True, help="ONNX opset.")
@click.option("--input-size", callback=_hxw, default=None, help="HxW of the input (default: the config's).")
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def export_model(
    model: str,
    weights: str | None,
    fmt: str,
    out_path: str,
    opset: int,
    input_size: tuple[int, int] | None,
    quiet: bool,
    verbose: int,
) -> None:
    """Export MODEL (a registered config name or a YAML path) with its weights to ONNX (dynamic batch)."""
    _setup_logging(quiet, verbose)
    from hrstream.models.builder import resolve_config
    from hrstream.models.config import parse_config
    from hrstream.models.export import export_bundle
    from hrstream.tasks.model_loading import load_model_bundle

    try:
        data, src = resolve_config(model)
        task = parse_config(data, source=src).task
        bundle = load_model_bundle(model, weights, task=task, progress=not quiet)
        result = export_bundle(bundle, out_path, opset=opset, input_size=input_size)
    except HrstreamError as e:
        _fail(e)
        return
    h, w = result.input_size
    click.echo(
        f"{result.path}: {fmt}, opset {result.opset}, input {result.input_name} (N, 3, {h}, {w}), "
        f"outputs {', '.join(result.output_names)}"
    )


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--seed", type=int, default=424242, show_default=True, help="Seed of the generated clip.")
@click.option("--seconds", type=click.FloatRange(min=1), default=8.0, show_default=True)
@click.option("--people", type=click.IntRange(min=1, max=8), default=3, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option(
    "--fast", is_flag=True, help="Pose from the shipped Lite-HRNet-18 on the fastest backend for this CPU."
)
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def demo(
    out_dir: str, seed: int, seconds: float, people: int, device: str, fast: bool, quiet: bool, verbose: int
) -> None:
    """Offline demo: generate a clip of synthetic people, run the whole pipeline with the shipped small HRNets
    (trained on synthetic figures only), and print its accuracy against the known truth."""
    _setup_logging(quiet, verbose)
    from hrstream.metrics import format_report
    from hrstream.tasks.demo import run_demo

    try:
        result = run_demo(
            out_dir,
            seed=seed,
            seconds=seconds,
            people=people,
            device=device,
            fast=fast,
            progress=_progress_factory(quiet),
        )
    except HrstreamError as e:
        _fail(e)
        return
    click.echo(format_report(result.metrics))
    click.echo(f"annotated video: {result.video}\nper-frame JSONL: {result.jsonl}\ntracks: {result.tracks}")
    click.echo(f"ground truth: {result.truth}")


def _add_subcommands() -> None:
    from hrstream.metrics.command import eval_command
    from hrstream.synth.command import synth_command
    from hrstream.train.commands import train_group

    main.add_command(synth_command)
    main.add_command(train_group, "train")
    eval_group.add_command(eval_command, name="tracks")


_add_subcommands()

if __name__ == "__main__":  # pragma: no cover
    main()
