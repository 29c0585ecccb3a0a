"""The ``hrstream`` command: parse, build, run. No logic lives here: each command parses its options and calls
the package that does the work.

Exit codes: 0 all done, 1 some inputs failed, 2 usage or configuration error (bad option, unknown model,
weights unavailable), 3 live sources gave up, 130 interrupted by SIGINT (143 by SIGTERM).
"""

from __future__ import annotations

import click

__all__ = ["main"]


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
