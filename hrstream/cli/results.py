"""``hrstream eval``, ``hrstream export`` and ``hrstream demo``: scoring and converting what runs wrote."""

from __future__ import annotations

import sys

import click

from hrstream.cli.common import fail, progress_factory, setup_logging
from hrstream.errors import HrstreamError

__all__ = ["COMMANDS", "eval_group"]


@click.group("eval")
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
        fail(e)
        return
    for k, v in stats.items():
        click.echo(f"{k:10s} {v:.4f}")


@click.command("export")
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
    setup_logging(quiet, verbose)
    from hrstream.exports import export as export_source

    if unconfirmed and fmt not in ("coco", "csv", "coco-dataset"):
        raise click.UsageError(f"--unconfirmed applies to --format coco, csv and coco-dataset, not {fmt}")
    if stride is not None and fmt != "coco-dataset":
        raise click.UsageError(f"--stride applies to --format coco-dataset, not {fmt}")
    try:
        result = export_source(source, fmt, out_dir, use=use, unconfirmed=unconfirmed, stride=stride or 1)
    except HrstreamError as e:
        fail(e)
        return
    if not quiet:
        extra = f" and {result.dataset.name}" if result.dataset is not None else ""
        click.echo(f"hrstream: wrote {len(result.paths)} file(s){extra} -> {out_dir}", err=True)
    if result.failed:
        click.echo(f"hrstream: {len(result.failed)} video(s) not exported", err=True)
        sys.exit(1)


@click.command()
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
    setup_logging(quiet, verbose)
    from hrstream.demo import run_demo
    from hrstream.metrics import format_report

    try:
        result = run_demo(
            out_dir,
            seed=seed,
            seconds=seconds,
            people=people,
            device=device,
            fast=fast,
            progress=progress_factory(quiet),
        )
    except HrstreamError as e:
        fail(e)
        return
    click.echo(format_report(result.metrics))
    click.echo(f"annotated video: {result.video}\nper-frame JSONL: {result.jsonl}\ntracks: {result.tracks}")
    click.echo(f"ground truth: {result.truth}")


COMMANDS = (eval_group, export, demo)
