"""The ``hrstream train pose|bottomup|seg|det`` command group (attach with ``main.add_command(train_group, "train")``)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from hrstream.errors import HrstreamError

__all__ = ["train_group"]


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--model", "config", required=True, help="A registered config name or a config YAML."),
        click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run folder."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: TRAIN.END_EPOCH."),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=None,
            help="Default: TRAIN.BATCH_SIZE_PER_GPU.",
        ),
        click.option(
            "--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Default: TRAIN.LR."
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--amp", type=click.Choice(["off", "bf16", "fp16", "auto"]), default="off", show_default=True
        ),
        click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N"),
        click.option(
            "--init", default=None, type=click.Path(dir_okay=False), help="Checkpoint to start from."
        ),
        click.option(
            "--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps."
        ),
        click.option("--no-augment", is_flag=True, help="Train on the plain crops."),
        click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--log-every", type=click.IntRange(min=0), default=20, show_default=True),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _report(result: Any) -> None:
    """One JSON line on stdout: the weights written, steps, speed, last epoch loss and validation metrics."""
    click.echo(
        json.dumps(
            {
                "last": str(result.last_path),
                "best": str(result.best_path),
                "steps": result.steps,
                "steps_per_s": round(result.steps_per_s, 4),
                "final_loss": result.epoch_losses[-1] if result.epoch_losses else None,
                "metrics": result.metrics,
            }
        )
    )


def _run(fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
    try:
        _report(fn(*args, **kw))
    except HrstreamError as e:  # unreadable training data is a usage error here: exit 2
        click.echo(f"hrstream: error: {e}", err=True)
        sys.exit(max(e.exit_code, 2))


@click.group("train")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def train_group(quiet: bool) -> None:
    """Train pose_hrnet or pose_higher_hrnet (COCO keypoints), seg_hrnet (images + label masks) or det_hrnet (COCO
    person boxes)."""
    if not logging.getLogger().handlers:  # per-step losses on stderr, like `hrstream run`'s log lines
        logging.basicConfig(
            level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(message)s"
        )


@train_group.command("pose")
@click.option("--images", "images_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--ann", "ann_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--val-ann", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--val-images", default=None, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--flip-test/--no-flip-test", default=None, help="Validation flip test (default: TEST.FLIP_TEST)."
)
@_common
def train_pose_cmd(
    config: str, images_dir: str, ann_file: str, out_dir: str, no_augment: bool, **kw: Any
) -> None:
    """Train a pose_hrnet on a COCO keypoints dataset (images folder + annotation JSON)."""
    from hrstream.train.pose import train_pose

    _run(train_pose, config, images_dir, ann_file, out_dir, augment=not no_augment, **kw)


@train_group.command("bottomup")
@click.option("--images", "images_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--ann", "ann_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--init-backbone",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="A top-down pose_hrnet checkpoint of the same HRNet layout whose backbone starts the network.",
)
@_common
def train_bottomup_cmd(
    config: str, images_dir: str, ann_file: str, out_dir: str, no_augment: bool, **kw: Any
) -> None:
    """Train a bottom-up pose_higher_hrnet on a COCO keypoints dataset (whole images, every person at once;
    ``hrstream synth --coco --people 20-30`` makes crowds). ``--batch-size`` defaults to TRAIN.IMAGES_PER_GPU."""
    from hrstream.train.bottomup import train_bottomup

    _run(train_bottomup, config, images_dir, ann_file, out_dir, augment=not no_augment, **kw)


@train_group.command("seg")
@click.option("--images", "images_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--masks", "masks_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--val-images", default=None, type=click.Path(exists=True, file_okay=False))
@click.option("--val-masks", default=None, type=click.Path(exists=True, file_okay=False))
@_common
def train_seg_cmd(
    config: str, images_dir: str, masks_dir: str, out_dir: str, no_augment: bool, **kw: Any
) -> None:
    """Train a seg_hrnet on images and label PNGs with the same names (0/1 person masks, 255 ignored)."""
    from hrstream.train.seg import train_seg

    _run(train_seg, config, images_dir, masks_dir, out_dir, augment=not no_augment, **kw)


@train_group.command("det")
@click.option("--images", "images_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--ann", "ann_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--val-ann", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--val-images", default=None, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--init-backbone",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="A seg/pose HRNet checkpoint of the same layout whose backbone starts the detector.",
)
@_common
def train_det_cmd(
    config: str, images_dir: str, ann_file: str, out_dir: str, no_augment: bool, amp: str, **kw: Any
) -> None:
    """Train a det_hrnet person detector (FCOS on HRNetV2p) on a COCO dataset (images + annotation JSON)."""
    from hrstream.train.det import train_det

    if amp != "off":
        click.echo("hrstream: error: --amp: detector training runs in fp32; leave --amp off", err=True)
        sys.exit(2)
    _run(train_det, config, images_dir, ann_file, out_dir, augment=not no_augment, **kw)
