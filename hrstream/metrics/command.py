"""``hrstream eval tracks``: score pose tracks against ground truth (e.g. the output of ``hrstream synth``).

Attached to the ``eval`` group of the CLI as ``tracks``. Exit codes: 0 done, 2 bad options,
1 unreadable or unmatched inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from hrstream.errors import HrstreamError, InputError

__all__ = ["eval_command"]


@click.command("eval")
@click.argument("pred", type=click.Path(exists=True))
@click.argument("truth", type=click.Path(exists=True))
@click.option(
    "--use",
    type=click.Choice(["smoothed", "raw", "offline"]),
    default="smoothed",
    show_default=True,
    help="Which predicted keypoints PCK is scored on.",
)
@click.option(
    "--iou",
    "iou_threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.5,
    show_default=True,
    help="Box IoU a prediction needs to match a true person.",
)
@click.option(
    "--min-visible",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="True people with fewer visible keypoints are ignored (neither missed nor false positives).",
)
@click.option(
    "--identities",
    type=click.Choice(["tracks", "online"]),
    default="tracks",
    show_default=True,
    help="tracks: the tracks' IDs (repaired when the run repaired them); online: the per-frame online_ids of "
    "repaired tracks (the IDs of the JSONL and the video).",
)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the results here."
)
def eval_command(
    pred: str,
    truth: str,
    use: str,
    iou_threshold: float,
    min_visible: int,
    identities: str,
    json_out: str | None,
) -> None:
    """Score PRED against TRUTH: two NAME.tracks.json files, or two folders of them (matched by name)."""
    from hrstream.metrics.evaluate import evaluate_dir, evaluate_tracks
    from hrstream.metrics.report import format_report

    kw = {
        "use": use,
        "iou_threshold": iou_threshold,
        "min_visible_keypoints": min_visible,
        "identities": identities,
    }
    try:
        p, t = Path(pred), Path(truth)
        if p.is_dir() != t.is_dir():
            raise InputError(f"{pred} and {truth}: pass two tracks files or two folders, not one of each")
        results = evaluate_dir(p, t, **kw) if p.is_dir() else evaluate_tracks(p, t, **kw)
        click.echo(format_report(results))
        if json_out:
            Path(json_out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    except HrstreamError as e:
        click.echo(f"hrstream: error: {e}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:
        click.echo(f"hrstream: error: cannot write {json_out} ({e}); pick a writable --json path", err=True)
        sys.exit(1)
