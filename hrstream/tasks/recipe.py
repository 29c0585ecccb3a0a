"""Pipeline recipes: the YAML files in ``pipelines/`` that say how frames flow.

A recipe is a nested mapping (see ``pipelines/pose.yaml``). :func:`load_recipe` reads the task's default
recipe or a given file, then applies overrides given as dotted keys (``{"runtime.batch_size": 8}``), which
is how command-line flags override recipe fields. Unknown sections or fields are errors that name them.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hrstream.errors import ConfigError

__all__ = ["PIPELINES_DIR", "apply_overrides", "load_recipe", "recipe_path"]

PIPELINES_DIR = Path(__file__).resolve().parents[2] / "pipelines"
TASKS = ("pose", "seg", "pose,seg")


def recipe_path(task: str) -> Path:
    """The default recipe of a task (``pose`` -> ``pipelines/pose.yaml``)."""
    name = {"pose": "pose", "seg": "seg", "pose,seg": "pose_seg"}.get(task)
    if name is None:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    return PIPELINES_DIR / f"{name}.yaml"


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline recipe not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a pipeline recipe must be a mapping")
    return data


def apply_overrides(recipe: Mapping[str, Any], overrides: Mapping[str, Any], *, src: str) -> dict[str, Any]:
    """Return a copy of ``recipe`` with dotted-key ``overrides`` applied (``None`` values are skipped).

    Raises :class:`ConfigError` for a key the recipe does not have, listing close ones.
    """
    out = copy.deepcopy(dict(recipe))
    for dotted, value in overrides.items():
        if value is None:
            continue
        node: dict[str, Any] = out
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            if part not in node:
                close = difflib.get_close_matches(part, list(node), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else f" (fields: {', '.join(node)})"
                raise ConfigError(f"{src}: unknown recipe field {'.'.join(parts[: i + 1])}{hint}")
            if i == len(parts) - 1:
                node[part] = value
            else:
                if not isinstance(node[part], dict):
                    raise ConfigError(f"{src}: recipe field {'.'.join(parts[: i + 1])} is not a section")
                node = node[part]
    return out


def load_recipe(
    task: str, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The recipe for ``task`` (default file, or ``path``) with ``overrides`` applied.

    A custom recipe is merged over the task's default one, so it may give only the fields it changes.
    """
    default_path = recipe_path(task)
    recipe = _read(default_path)
    src = str(default_path)
    if path is not None:
        custom = _read(Path(path))
        src = str(path)
        flat = dict(_flatten(custom))
        flat.pop("task", None)
        recipe = apply_overrides(recipe, flat, src=src)
    return apply_overrides(recipe, overrides or {}, src=src)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            items.extend(_flatten(v, key + "."))
        else:
            items.append((key, v))
    return items
