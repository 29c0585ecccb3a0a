"""What every ``hrstream`` command shares: log lines, the one-line error exit, per-file progress bars."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from hrstream.errors import HrstreamError


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
