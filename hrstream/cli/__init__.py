"""The ``hrstream`` command: parse, build, run. No logic lives here: each command parses its options and calls
the package that does the work.

Exit codes: 0 all done, 1 some inputs failed, 2 usage or configuration error (bad option, unknown model,
weights unavailable, an output folder that cannot be written), 3 live sources gave up, 130 interrupted by SIGINT
(143 by SIGTERM). A usage error is one line, as every other error; Ctrl-C at any moment, also while the
subcommands and the models load, ends with ``hrstream: interrupted`` and 130, never a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

__all__ = ["main"]

#: Exit code of a run interrupted by SIGINT (128 + 2, the shell's convention).
INTERRUPTED = 130


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while a command starts. A subclass, so that code cleaning up after ``KeyboardInterrupt`` still
    does; raised instead of the plain one because CPython remembers a plain ``KeyboardInterrupt`` that passes
    through C code evaluating Python (as some extension modules do while they are imported) and then ends the
    process by SIGINT whatever exit code it was given."""


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


@contextlib.contextmanager
def _ctrl_c_raises_interrupted() -> Iterator[None]:
    """SIGINT raises :class:`Interrupted` while the command runs (where Python's own handler is installed, in
    the main thread); a command installs its own handlers on top of it (a run: drain, then abort)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class HrstreamGroup(click.Group):
    """The top command. Its subcommands are imported when first asked for (they import torch: seconds on a busy
    machine), inside :meth:`invoke`, so that Ctrl-C while they load is handled as Ctrl-C anywhere else."""

    def _load(self) -> None:
        if not getattr(self, "_loaded", False):
            self._loaded = True
            _add_subcommands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            _one_line(e, ctx)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _ctrl_c_raises_interrupted():
                return super().invoke(ctx)
        except KeyboardInterrupt:  # before a command installed its own handlers (or after they were removed)
            click.echo("hrstream: interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        except click.UsageError as e:
            _one_line(e, ctx)
            raise


def _one_line(e: click.UsageError, ctx: click.Context) -> None:
    """Show a usage error as one line, as every error of hrstream (the help a command shows when it is given
    no arguments stays as it is), and exit with its code; returns for the help."""
    if isinstance(e, click.exceptions.NoArgsIsHelpError):
        return
    sub = e.ctx.command_path if e.ctx is not None else ctx.command_path
    click.echo(f"hrstream: error: {e.format_message().rstrip('.')}; see '{sub} --help'", err=True)
    raise click.exceptions.Exit(e.exit_code) from None


@click.group(cls=HrstreamGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hrstream")
def main() -> None:
    """HRNet pose estimation and segmentation over video."""


def _add_subcommands(group: click.Group) -> None:
    from hrstream.cli import models, results, run, serve
    from hrstream.metrics.command import eval_command
    from hrstream.synth.command import synth_command
    from hrstream.train.commands import train_group

    for module in (run, serve, models, results):
        for command in module.COMMANDS:
            group.add_command(command)
    group.add_command(synth_command)
    group.add_command(train_group, "train")
    results.eval_group.add_command(eval_command, name="tracks")
