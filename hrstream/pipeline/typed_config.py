"""Recipe mappings (parsed YAML, dotted overrides) checked into frozen dataclasses, field by field.

:func:`parse_dataclass` builds a dataclass from a mapping, checking every value against the field's annotation
(``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``, nested dataclasses)
and its metadata: ``range`` ``(lo, hi, lo_open)`` for numbers and ``pattern`` (a regular expression the whole
string must match, ``pattern_doc`` in words). Numbers must be finite: NaN and infinities are refused wherever
a number is allowed. Every error is one :class:`~hrstream.errors.ConfigError` line naming where the value came
from and what is allowed: ``"SRC: runtime.batch_size must be an integer >= 1, got 0"``, or, for a value that
came from a command-line flag (``origins``), ``"--batch-size must be an integer >= 1, got 0"``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from hrstream.errors import ConfigError

__all__ = ["apply_overrides", "describe", "parse_dataclass"]

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _Where:
    """Names a field in error messages: ``SRC: path`` or, when an origin (a flag) set it, the flag."""

    def __init__(self, src: str, origins: Mapping[str, str]) -> None:
        self.src = src
        self.origins = origins

    def bad(self, path: str, what: str, value: Any) -> ConfigError:
        flag = self.origins.get(path.split("[")[0])
        if flag is not None:
            return ConfigError(f"{flag} must be {what}, got {value!r}")
        return ConfigError(f"{self.src}: {path} must be {what}, got {value!r}")


def describe(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a field of annotation ``tp`` (and ``meta``) accepts, in words."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(describe(a, meta) for a in inner) + " or null"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        return f"a non-empty list, each {describe(args[0], meta)}"
    if dataclasses.is_dataclass(tp):
        return "a section (mapping)"
    if tp is str and "pattern_doc" in meta:
        return str(meta["pattern_doc"])
    name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]
    lo, hi, lo_open = meta.get("range", (None, None, False))
    if lo is not None and hi is not None:
        name += f" in {'(' if lo_open else '['}{lo}, {hi}]"
    elif lo is not None:
        name += f" {'>' if lo_open else '>='} {lo}"
    return name


def _in_range(v: float, meta: Mapping[str, Any]) -> bool:
    if not math.isfinite(v):
        return False
    lo, hi, lo_open = meta.get("range", (None, None, False))
    if lo is not None and (v < lo or (lo_open and v == lo)):
        return False
    return hi is None or v <= hi


def _convert(tp: Any, value: Any, meta: Mapping[str, Any], where: _Where, path: str) -> Any:
    """``value`` checked against the annotation ``tp`` (and its metadata); raises ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def bad() -> ConfigError:
        return where.bad(path, describe(tp, meta), value)

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:  # Optional[X]: X's own message (a nested section names the inner field)
            return _convert(inner[0], value, meta, where, path)
        for a in inner:
            try:
                return _convert(a, value, meta, where, path)
            except ConfigError:
                continue
        raise bad()
    if origin is Literal:
        if value in args:
            return value
        raise bad()
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise bad()
        return tuple(_convert(args[0], v, meta, where, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise bad()
        return parse_dataclass(tp, value, src=where.src, origins=where.origins, prefix=f"{path}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool) and _in_range(value, meta):
            return int(value)
        raise bad()
    if tp is float:
        v = value
        if isinstance(v, str) and _FLOAT.match(v.strip()):  # YAML 1.1 reads 1e-3 as a string
            v = float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and _in_range(float(v), meta):
            return float(v)
        raise bad()
    if tp is str:
        pattern = meta.get("pattern")
        if isinstance(value, str) and value and (pattern is None or re.fullmatch(pattern, value)):
            return value
        raise bad()
    raise TypeError(f"recipe field {path}: unsupported annotation {tp!r}")  # pragma: no cover


def parse_dataclass(
    cls: Any, data: Mapping[str, Any], *, src: str, origins: Mapping[str, str] | None = None, prefix: str = ""
) -> Any:
    """``cls(**values)`` with every value of ``data`` checked (see the module docstring).

    Args:
        cls: a dataclass whose fields are annotated with the supported types.
        data: the values; a field left out takes its default (a field without one is an error).
        src: what the values came from (a file name), named in errors.
        origins: dotted field -> the flag that set it, named in errors instead of ``src``.
        prefix: the dotted path of ``cls`` within the whole mapping (nested sections).

    Raises:
        ConfigError: one line: an unknown field (with close names), a missing one, or a bad value.
    """
    where = _Where(src, origins or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = str(unknown[0])
        close = difflib.get_close_matches(key, list(fields), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"fields: {', '.join(fields)}"
        raise ConfigError(f"{src}: unknown recipe field {prefix}{key} ({hint})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        path = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(
                    f"{src}: recipe field {path} is missing ({describe(hints[name], f.metadata)})"
                )
            continue
        values[name] = _convert(hints[name], data[name], f.metadata, where, path)
    try:
        return cls(**values)
    except ConfigError as e:  # a check across fields (__post_init__)
        raise ConfigError(f"{src}: {e}") from None


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any], *, src: str) -> dict[str, Any]:
    """A copy of ``data`` with dotted-key ``overrides`` applied (``None`` values are skipped: not given).

    Raises :class:`ConfigError` for a key ``data`` does not have, listing close ones.
    """
    out = copy.deepcopy(dict(data))
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
