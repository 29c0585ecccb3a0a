"""``hrstream synth``: render synthetic clips (video + ground truth) or a COCO keypoints dataset.

Attach to the main group with ``main.add_command(synth_command)``. Exit codes: 0 done, 2 bad options,
1 the output could not be written.
"""

from __future__ import annotations

import dataclasses
import sys

import click

from hrstream.errors import ConfigError, HrstreamError
from hrstream.synth.config import MOTIONS, SynthConfig

__all__ = ["parse_people", "parse_person_height", "synth_command"]


def parse_people(text: str) -> int | tuple[int, int]:
    """``"3"`` -> 3, ``"2-5"`` -> (2, 5), ``"20-30"`` (a crowd) -> (20, 30); raises :class:`ConfigError`
    otherwise."""
    try:
        if "-" in text:
            lo, hi = (int(p) for p in text.split("-", 1))
            return lo, hi
        return int(text)
    except ValueError:
        raise ConfigError(f"--people: expected N or MIN-MAX (e.g. 3 or 20-30), got {text!r}") from None


def parse_person_height(text: str) -> tuple[float, float]:
    """``"0.15-0.5"`` -> (0.15, 0.5): the range of standing heights as fractions of the frame height."""
    try:
        lo, hi = (float(p) for p in text.split("-", 1))
        return lo, hi
    except ValueError:
        raise ConfigError(
            f"--person-height: expected MIN-MAX fractions of the frame height (e.g. 0.15-0.5), got {text!r}"
        ) from None


@click.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--coco", is_flag=True, help="Write a COCO keypoints dataset instead of videos with ground truth."
)
@click.option(
    "--clips",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Clips (seeds SEED, SEED+1, ...).",
)
@click.option("--name", default="synth", show_default=True, help="Clip name prefix (NAME_0000.mp4 ...).")
@click.option("--width", type=click.IntRange(min=16), default=640, show_default=True)
@click.option("--height", type=click.IntRange(min=16), default=360, show_default=True)
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option(
    "--people",
    default="3",
    show_default=True,
    help="People in view: N or MIN-MAX, drawn per clip (crowds: e.g. 20-30; they overlap and hide each other).",
)
@click.option(
    "--person-height",
    default="0.22-1.1",
    show_default=True,
    help="Standing heights as fractions of the frame height, far-near (crowds of small people: e.g. 0.12-0.5).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--motions", default=",".join(MOTIONS), show_default=True, help="Comma list of walk,turn,wave.")
@click.option(
    "--noise",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Camera noise sigma (0-255).",
)
@click.option(
    "--blur", type=click.FloatRange(min=0), default=0.6, show_default=True, help="Gaussian blur sigma (px)."
)
@click.option(
    "--every-n", type=click.IntRange(min=1), default=1, show_default=True, help="COCO: keep every N-th frame."
)
@click.option(
    "--crf",
    type=click.IntRange(0, 51),
    default=12,
    show_default=True,
    help="Video quality (lower is better).",
)
def synth_command(out_dir: str, coco: bool, clips: int, name: str, width: int, height: int, fps: float,
                  seconds: float, people: str, person_height: str, seed: int, motions: str, noise: float,
                  blur: float, every_n: int, crf: int) -> None:  # fmt: skip
    """Render synthetic walking people with exact ground truth into OUT_DIR."""
    from hrstream.synth.writers import write_clip, write_coco_dataset

    try:
        base = SynthConfig(
            width=width, height=height, fps=fps, duration_s=seconds, num_people=parse_people(people),
            person_height=parse_person_height(person_height), seed=seed,
            motions=tuple(m.strip() for m in motions.split(",") if m.strip()), noise_sigma=noise, blur_sigma=blur,
        )  # fmt: skip
        if coco:
            path = write_coco_dataset((base, clips), out_dir, every_n=every_n)
            click.echo(f"hrstream: COCO dataset -> {path}", err=True)
            return
        for i in range(clips):
            cfg = dataclasses.replace(base, seed=seed + i)
            paths = write_clip(cfg, out_dir, f"{name}_{i:04d}", crf=crf)
            click.echo(f"hrstream: {paths['video']} + {paths['tracks'].name}", err=True)
    except HrstreamError as e:
        click.echo(f"hrstream: error: {e}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:
        click.echo(
            f"hrstream: error: cannot write to {out_dir} ({e}); pick a writable --out folder", err=True
        )
        sys.exit(1)
