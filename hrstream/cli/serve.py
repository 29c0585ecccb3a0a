"""``hrstream serve``: the pipeline as a service (:mod:`hrstream.serve`)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from hrstream.cli.common import fail, setup_logging
from hrstream.errors import ConfigError, HrstreamError
from hrstream.pipeline.recipe_load import TASKS

__all__ = ["COMMANDS"]


@click.command()
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(dir_okay=False),
    required=True,
    help="The sources file: NAME URL [detect_every=N] a line (# comments). Created if missing; changes made "
    "through the API are written back to it, and SIGHUP applies an edit made by hand.",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/serve", show_default=True)
@click.option("--task", type=click.Choice(TASKS), default=None, help="Default: the recipe's, else pose.")
@click.option("--pipeline", "pipeline_path", type=click.Path(dir_okay=False), default=None)
@click.option("--model", default=None)
@click.option("--weights", default=None)
@click.option("--detector", default=None)
@click.option("--device", default=None)
@click.option(
    "--no-video", is_flag=True, help="Do not write annotated videos (the live view still shows them)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Any other address needs --token.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--token", default=None, help="Required of every request (default: $HRSTREAM_TOKEN).")
@click.option(
    "--mqtt", "mqtt_url", default=None, help="mqtt://[user:password@]host[:port][/prefix]: events out."
)
@click.option(
    "--mqtt-buffer",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Events held while the broker is away (then the oldest are dropped, and counted).",
)
@click.option(
    "--people-every",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between two people messages of a camera.",
)
@click.option(
    "--left-after",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    help="A person not seen for this many seconds has left.",
)
@click.option("--grace", type=float, default=10.0, show_default=True, help="Seconds to drain on SIGTERM.")
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def serve(
    sources_file: str,
    out_dir: str,
    task: str | None,
    pipeline_path: str | None,
    host: str,
    port: int,
    token: str | None,
    mqtt_url: str | None,
    mqtt_buffer: int,
    people_every: float,
    left_after: float,
    grace: float,
    quiet: bool,
    verbose: int,
    **opts: Any,
) -> None:
    """Run the pipeline as a service over the cameras of a sources file: cameras are added and removed while
    it runs (HTTP API), a page shows them live, events go out (server-sent events, MQTT)."""
    setup_logging(quiet, verbose)
    token = token or os.environ.get("HRSTREAM_TOKEN") or None
    try:
        try:
            from hrstream.serve.service import Service, is_loopback
        except ImportError as e:
            raise ConfigError(
                f"hrstream serve needs its extra: pip install 'hrstream[serve]' ({e.name} missing)"
            ) from None
        if not is_loopback(host) and not token:  # before anything is loaded
            raise ConfigError(
                f"--host {host}: serving beyond this machine needs a token (--token or HRSTREAM_TOKEN)"
            )
        if mqtt_url is not None:
            from hrstream.serve.mqtt import parse_mqtt_url

            parse_mqtt_url(mqtt_url)
        from hrstream.pipeline.recipe import flag_overrides
        from hrstream.pipeline.recipe_load import load_recipe

        opts["video"] = False if opts.pop("no_video") else None
        recipe = load_recipe(task, pipeline_path, flag_overrides(opts))
        service = Service(
            recipe,
            out_dir=out_dir,
            sources=sources_file,
            host=host,
            port=port,
            token=token,
            mqtt_url=mqtt_url,
            mqtt_buffer=mqtt_buffer,
            people_every_s=people_every,
            left_after_s=left_after,
            grace_s=grace,
        )
        signum = service.run()
    except HrstreamError as e:
        e.exit_code = max(e.exit_code, 2)
        fail(e)
        return
    except OSError as e:  # the port is taken
        click.echo(f"hrstream: error: serving on {host}:{port}: {e.strerror or e}", err=True)
        sys.exit(2)
    sys.exit(0 if signum is None else 128 + signum)


COMMANDS = (serve,)
