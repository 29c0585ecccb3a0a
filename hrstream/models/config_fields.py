"""Checked readers of a model config's fields: each names the config (``src``) and the dotted field in its
error, so a bad YAML fails with one line that says where."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hrstream.errors import ConfigError


def _get(d: Mapping[str, Any], path: str, src: str, *, required: bool = True, default: Any = None) -> Any:
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            if required:
                raise ConfigError(f"{src}: missing field {path}")
            return default
        cur = cur[part]
    return cur


def _int_list(value: Any, path: str, src: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and v > 0 for v in value):
        raise ConfigError(f"{src}: field {path} must be a list of positive integers, got {value!r}")
    return tuple(int(v) for v in value)


def _positive_int(value: Any, path: str, src: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{src}: field {path} must be a positive integer, got {value!r}")
    return value
