"""The ``hrstream`` command: parse, build, run. No logic lives here: each command parses its options and calls
the package that does the work.

Exit codes: 0 all done, 1 some inputs failed, 2 usage or configuration error (bad option, unknown model,
weights unavailable), 3 live sources gave up, 130 interrupted by SIGINT (143 by SIGTERM).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from hrstream.errors import HrstreamError

__all__ = ["fail", "main", "progress_factory", "setup_logging"]


def setup_logging(quiet: bool, verbose: int) -> None:
    """Log lines to stderr (``--quiet``: warnings only; ``-v``: debug), credentials in URLs redacted."""
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


def fail(e: HrstreamError) -> None:
    """One line on stderr and the error's exit code."""
    click.echo(f"hrstream: error: {e}", err=True)
    sys.exit(e.exit_code)


def progress_factory(quiet: bool) -> Callable[[Any], tuple[Any, Callable[[], None]]]:
    """A progress bar per file source (none with ``quiet``; live sources have status lines)."""

    def make(info: Any) -> tuple[Any, Callable[[], None]]:
        if quiet or info.is_live:  # live sources get status lines (hrstream.runs.monitor)
            return None, lambda: None
        from tqdm import tqdm

        bar = tqdm(total=info.num_frames, desc=info.name, unit="frame", file=sys.stderr, dynamic_ncols=True)

        def update(n: int) -> None:
            bar.update(n - bar.n)

        return update, bar.close

    return make


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hrstream")
def main() -> None:
    """HRNet pose estimation and segmentation over video."""


def _add_subcommands() -> None:
    from hrstream.cli import models, results, run, serve
    from hrstream.metrics.command import eval_command
    from hrstream.synth.command import synth_command
    from hrstream.train.commands import train_group

    for group in (run, serve, models, results):
        for command in group.COMMANDS:
            main.add_command(command)
    main.add_command(synth_command)
    main.add_command(train_group, "train")
    results.eval_group.add_command(eval_command, name="tracks")


_add_subcommands()
