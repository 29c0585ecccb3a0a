"""The published HRNet and Lite-HRNet checkpoints hrstream knows, as values, and the model configs they belong to.

Each :class:`WeightsEntry` says where a checkpoint lives (``url``), how to check it (``sha256``, full or
the 8-hex prefix OpenMMLab file names carry), how its state dict is laid out (``layout``), which config
in the repository's ``configs/`` folder builds the matching network, and what its outputs mean
(``meta``: keypoint names, flip pairs, skeleton, classes, palette, input size, normalisation, metrics).

Names are ``<config>.<source>``, e.g. ``pose_hrnet_w32_256x192.mmpose``; a bare config name stands for
that config's default weights (its ``HRSTREAM.WEIGHTS`` key).

The table is :data:`hrstream.models.zoo_published.PUBLISHED` (downloads) followed by
:data:`hrstream.models.zoo_shipped.SHIPPED` (inside the package); an entry is a
:class:`~hrstream.models.weights_entry.WeightsEntry`. This module holds the look-ups.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path

import yaml

from hrstream import resources
from hrstream.errors import ConfigError
from hrstream.models.config import NetworkTask
from hrstream.models.weights_entry import HashKind, WeightsEntry
from hrstream.models.zoo_published import PUBLISHED
from hrstream.models.zoo_shipped import SHIPPED

__all__ = [
    "HashKind",
    "WeightsEntry",
    "config_path",
    "configs_dir",
    "default_weights",
    "get_weights",
    "list_configs",
    "list_weights",
]

_ENTRIES: tuple[WeightsEntry, ...] = PUBLISHED + SHIPPED
_BY_NAME: dict[str, WeightsEntry] = {e.name: e for e in _ENTRIES}
if len(_BY_NAME) != len(_ENTRIES):  # pragma: no cover - guards edits to the table above
    raise RuntimeError("duplicate weights names in the registry table")


def list_weights(task: NetworkTask | None = None) -> list[WeightsEntry]:
    """Every registered checkpoint (optionally of one ``task``), in table order."""
    return [e for e in _ENTRIES if task is None or e.task == task]


def configs_dir() -> Path:
    """The folder of model config YAMLs: ``$HRSTREAM_CONFIGS``, else the package's (:mod:`hrstream.resources`)."""
    return resources.configs_dir()


def list_configs() -> list[str]:
    """Names (file stems) of the config YAMLs in :func:`configs_dir`, sorted."""
    folder = configs_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _close(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    return f" (did you mean: {', '.join(near)}?)" if near else ""


def config_path(name: str) -> Path:
    """The YAML file of config ``name`` (a stem such as ``pose_hrnet_w32_256x192``, or an existing YAML path).

    Raises :class:`ConfigError` naming close matches when there is no such config.
    """
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    stem = candidate.name.removesuffix(".yaml").removesuffix(".yml")
    for suffix in (".yaml", ".yml"):
        path = configs_dir() / f"{stem}{suffix}"
        if path.is_file():
            return path
    known = list_configs()
    raise ConfigError(
        f"unknown model config '{name}' (looked in {configs_dir()}){_close(stem, known)}. "
        f"Run `hrstream models` for the list, or pass a YAML path."
    )


@functools.lru_cache(maxsize=64)
def _yaml_default(path: Path, mtime_ns: int) -> str | None:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    extra = data.get("HRSTREAM") if isinstance(data, dict) else None
    value = extra.get("WEIGHTS") if isinstance(extra, dict) else None
    return str(value) if value else None


def default_weights(config_name: str) -> WeightsEntry | None:
    """The checkpoint a config uses when none is named: its YAML's ``HRSTREAM.WEIGHTS``, if registered,
    else the first registered entry built by that config, else ``None``."""
    path = config_path(config_name)
    named = _yaml_default(path, path.stat().st_mtime_ns)
    if named is not None and named in _BY_NAME:
        return _BY_NAME[named]
    return next((e for e in _ENTRIES if e.config == path.stem), None)


def get_weights(name: str) -> WeightsEntry:
    """The entry called ``name``; a config name gives that config's default weights.

    Raises :class:`ConfigError` listing close names when ``name`` is neither.
    """
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name in list_configs():
        entry = default_weights(name)
        if entry is not None:
            return entry
        raise ConfigError(f"config '{name}' names no registered weights; pass --weights PATH")
    choices = list(_BY_NAME) + list_configs()
    raise ConfigError(f"unknown weights '{name}'{_close(name, choices)}. Run `hrstream models` for the list.")
