"""Reading a recipe: the task's default file, a custom file merged over it, then the command line's flags.

:func:`load_recipe` reads the task's default recipe (``pipelines/<task>.yaml``), merges a custom recipe over it
(a custom file may give only the fields it changes; its ``task`` picks the default it is merged over unless the
caller names a task), applies overrides given as dotted keys (``{"runtime.batch_size": 8}``: how command-line
flags and :func:`hrstream.stream` options reach the recipe) and parses the result
(:func:`~hrstream.pipeline.recipe.parse_recipe`). An error names where the bad value came from: the custom
file, the default file, or the flag (``--open-timeout must be a number > 0.0, got -1.0``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import yaml

from hrstream import resources
from hrstream.errors import ConfigError
from hrstream.pipeline.recipe import Recipe, Task, flag_name, parse_recipe
from hrstream.pipeline.typed_config import apply_overrides

__all__ = ["PIPELINES_DIR", "TASKS", "load_recipe", "recipe_path"]

PIPELINES_DIR = resources.pipelines_dir()
TASKS: tuple[str, ...] = get_args(Task)
_DEFAULT_FILES = {"pose": "pose", "seg": "seg", "pose,seg": "pose_seg"}


def recipe_path(task: str, *, origin: str = "--task") -> Path:
    """The default recipe of a task (``pose`` -> ``pipelines/pose.yaml``); ``origin`` names where the task
    came from in the error for an unknown one (the flag, or ``FILE: task``)."""
    name = _DEFAULT_FILES.get(task)
    if name is None:
        raise ConfigError(f"{origin} must be one of {', '.join(TASKS)}, got {task!r}")
    return resources.pipeline_path(name)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline recipe not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a pipeline recipe must be a mapping")
    return data


def load_recipe(
    task: str | None = None, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Recipe:
    """The parsed recipe: the task's default file, ``path`` merged over it, then ``overrides``.

    Args:
        task: ``pose``, ``seg`` or ``pose,seg``; ``None``: the custom recipe's own ``task`` (else ``pose``).
            A task given here wins over the file's (a flag overrides a recipe field).
        path: a custom recipe; it may give only the fields it changes.
        overrides: dotted keys (``{"runtime.batch_size": 8}``) set by flags; ``None`` values are skipped. A bad
            value is reported against its flag (:func:`~hrstream.pipeline.recipe.flag_name`).
    """
    custom = _read(Path(path)) if path is not None else None
    if task is None:
        task = str(custom.get("task") or "pose") if custom is not None else "pose"
        default_path = recipe_path(task, origin=f"{path}: task")
    else:
        default_path = recipe_path(task)
    if custom is None or default_path.is_file():
        data, src = _with_defaults(Recipe, _read(default_path)), str(default_path)
        if custom is not None:
            src = str(path)
            flat = dict(_flatten(custom))
            flat.pop("task", None)
            data = apply_overrides(data, flat, src=src)
    else:  # no default recipe here (an unusual install): the custom one must be complete
        data, src = copy.deepcopy(custom), str(path)
    data["task"] = task
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    data = apply_overrides(data, given, src="override")
    origins = {k: flag for k in given if (flag := flag_name(k)) is not None}
    return parse_recipe(data, src=src, origins=origins)


def _with_defaults(cls: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the defaults of ``cls``'s fields that it leaves out (sections it has are completed too),
    so that an override may set a field the recipe file does not spell out."""
    out = dict(data)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        section = next((a for a in inner if dataclasses.is_dataclass(a)), None)
        if f.name in out:
            if section is not None and isinstance(out[f.name], Mapping):
                out[f.name] = _with_defaults(section, out[f.name])
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = json.loads(json.dumps(dataclasses.asdict(f.default_factory())))
        elif f.default is not dataclasses.MISSING and f.default is not None:
            out[f.name] = f.default
        elif f.default is None and section is None:
            out[f.name] = None
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            items.extend(_flatten(v, key + "."))
        else:
            items.append((key, v))
    return items
