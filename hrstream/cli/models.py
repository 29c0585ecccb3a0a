"""``hrstream models``, ``hrstream weights fetch|add`` and ``hrstream export-model``: the registered networks."""

from __future__ import annotations

import click

from hrstream.cli.common import fail, setup_logging
from hrstream.errors import HrstreamError

__all__ = ["COMMANDS"]


@click.command()
def models() -> None:
    """List the registered weights and whether each is cached."""
    from hrstream.models.hub import models_table

    rows = models_table()
    cols = ["name", "task", "config", "metric", "cached"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


@click.group()
def weights() -> None:
    """Download or add checkpoints to the cache."""


@weights.command("fetch")
@click.argument("name")
def weights_fetch(name: str) -> None:
    """Download the registered weights NAME into the cache (verified, then moved into place)."""
    setup_logging(False, 0)
    from hrstream.models.hub import fetch
    from hrstream.models.registry import get_weights

    try:
        path = fetch(get_weights(name))
    except HrstreamError as e:
        fail(e)
        return
    click.echo(str(path))


@weights.command("add")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The registry name the file belongs to.")
def weights_add(path: str, name: str) -> None:
    """Check a local checkpoint against the registry and place it in the cache."""
    setup_logging(False, 0)
    from hrstream.models.hub import add_local

    try:
        dest = add_local(path, name)
    except HrstreamError as e:
        fail(e)
        return
    click.echo(str(dest))


def _hxw(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(f"expected HxW such as 256x192, got {value!r}")
    return int(parts[0]), int(parts[1])


@click.command("export-model")
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
    setup_logging(quiet, verbose)
    from hrstream.models.builder import resolve_config
    from hrstream.models.bundle import load_model_bundle
    from hrstream.models.config import parse_config
    from hrstream.models.export import export_bundle

    try:
        data, src = resolve_config(model)
        task = parse_config(data, source=src).task
        bundle = load_model_bundle(model, weights, task=task, progress=not quiet)
        result = export_bundle(bundle, out_path, opset=opset, input_size=input_size)
    except HrstreamError as e:
        fail(e)
        return
    h, w = result.input_size
    click.echo(
        f"{result.path}: {fmt}, opset {result.opset}, input {result.input_name} (N, 3, {h}, {w}), "
        f"outputs {', '.join(result.output_names)}"
    )


COMMANDS = (models, weights, export_model)
