"""Pipeline recipes: the YAML files in ``pipelines/`` that say how frames flow, parsed once into typed sections.

A recipe file is a nested mapping (see ``pipelines/pose.yaml``). :func:`load_recipe` reads the task's default
recipe, merges a custom recipe over it (a custom file may give only the fields it changes; its ``task`` picks
the default it is merged over unless the caller names a task), applies overrides given as dotted keys
(``{"runtime.batch_size": 8}``: how command-line flags and :func:`hrstream.stream` options reach the recipe),
and parses the result into :class:`Recipe`: frozen dataclasses, one per section, every value type- and
range-checked. An unknown field, a wrong type or a value out of range is a :class:`~hrstream.errors.ConfigError`
of one line naming the file, the field and what is allowed (the CLI exits 2).

:data:`FLAG_FIELDS` is the one table that maps each ``hrstream run`` flag (and keyword option of
:func:`hrstream.stream`) to its recipe field.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hrstream import resources
from hrstream.errors import ConfigError

__all__ = [
    "FLAG_FIELDS",
    "PIPELINES_DIR",
    "TASKS",
    "DetectorSection",
    "PoseSection",
    "Recipe",
    "RepairSection",
    "RuntimeSection",
    "SegSection",
    "SinksSection",
    "SmootherSection",
    "SourcesSection",
    "TrackerSection",
    "flag_overrides",
    "load_recipe",
    "parse_recipe",
    "recipe_path",
]

PIPELINES_DIR = resources.pipelines_dir()
TASKS = ("pose", "seg", "pose,seg")
Task = Literal["pose", "seg", "pose,seg"]
AmpChoice = Literal["auto", "off", "fp16", "bf16", "int8"]
BackendChoice = Literal["torch", "onnxruntime", "openvino", "auto"]
Decoder = Literal["msra", "dark", "udp"]
SmootherMethod = Literal["one_euro", "kalman", "none"]
Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict[str, Any]:
    """Field metadata: the allowed closed range ``[lo, hi]`` (``lo_open``: ``lo`` itself excluded)."""
    return {"range": (lo, hi, lo_open)}


def _f(default: Any = dataclasses.MISSING, **rng: Any) -> Any:
    meta = _range(**rng) if rng else {}
    if isinstance(default, (list, tuple, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DetectorSection:
    """Person boxes: ``name`` is ``fast | accurate | full-frame | file:PATH | seg`` or a ``det_hrnet`` config.
    ``score_thr: None``: the detector's own (0.5 for networks; for ``file:`` the official selection of the pose
    config's ``TEST`` section, without box NMS or cap)."""

    name: str
    weights: str | None
    seg_classes: tuple[str, ...]
    min_area: int = _f(lo=0)
    score_thr: float | None = _f(lo=0.0, hi=1.0)
    nms_iou: float | None = _f(lo=0.0, hi=1.0)
    max_people: int | None = _f(lo=1)
    every_n: int = _f(lo=1)
    flip_test: bool = False


@dataclass(frozen=True)
class PoseSection:
    """Top-down keypoints: ``None`` values defer to the model config (``TEST.FLIP_TEST``, ``HRSTREAM.DECODER``)."""

    flip_test: bool | None
    decoder: Decoder | None
    oks_nms: bool
    kpt_thr: float = _f(lo=0.0, hi=1.0)


@dataclass(frozen=True)
class RepairSection:
    """Identity repair by clothing colour (``docs/architecture.md``)."""

    offline: bool
    online: bool
    cut_distance: float = _f(lo=0.0, hi=1.0, lo_open=True)
    join_distance: float = _f(lo=0.0, hi=1.0, lo_open=True)
    max_gap_s: float = _f(lo=0.0)


@dataclass(frozen=True)
class TrackerSection:
    """The multi-person tracker (:class:`hrstream.track.PoseTracker`)."""

    enabled: bool
    repair: RepairSection
    max_age_s: float = _f(lo=0.0, lo_open=True)
    min_hits: int = _f(lo=1)
    high_thr: float = _f(lo=0.0, hi=1.0)
    low_thr: float = _f(lo=0.0, hi=1.0)
    new_track_thr: float = _f(lo=0.0, hi=1.0)
    new_track_iou: float = _f(lo=0.0, hi=1.0)
    match_thr: float = _f(lo=0.0, hi=1.0)
    iou_weight: float = _f(lo=0.0, hi=1.0)
    appearance_weight: float = _f(lo=0.0, hi=1.0)


@dataclass(frozen=True)
class SmootherSection:
    """Online keypoint smoothing (files and live sources each choose), and the offline pass of the tracks
    document (Savitzky-Golay window, ``None``: off)."""

    file: SmootherMethod
    live: SmootherMethod
    min_cutoff_hz: float = _f(lo=0.0, lo_open=True)
    beta: float = _f(lo=0.0)
    tracks_savgol_window_s: float | None = _f(lo=0.0, lo_open=True)


@dataclass(frozen=True)
class SegSection:
    """Segmentation: test size ``(w, h)`` (``None``: the config's), flip and scales, temporal EMA, outputs."""

    test_size: tuple[int, ...] | None = _f(lo=1)
    flip: bool
    scales: tuple[float, ...] = _f(lo=0.0, lo_open=True)
    label_maps: bool
    rle: bool
    smoothing_tau_s: float | None = _f(lo=0.0, lo_open=True)
    opacity: float = _f(lo=0.0, hi=1.0)
    batch_size: int | None = _f(lo=1)

    def __post_init__(self) -> None:
        if self.test_size is not None and len(self.test_size) != 2:
            raise ConfigError(f"seg.test_size must be [width, height] or null, got {list(self.test_size)}")


@dataclass(frozen=True)
class RuntimeSection:
    """Device, precision, backend, batching and queues. ``streams``: files decoded at a time (``None``: 1 on a
    CPU, 4 on CUDA); live sources always all run. ``backend``: what runs the pose network (``auto``: by model
    family and CPU, :mod:`hrstream.runtime.backend_choice`); ``pad_batches``: batches padded to a power of two
    (:class:`~hrstream.runtime.engine.InferenceEngine`); ``metrics_port``: serve Prometheus metrics on
    ``127.0.0.1:PORT/metrics`` (:mod:`hrstream.tasks.monitor`); ``calibration``: the frames ``amp: int8``
    calibrates on (``None``: the synthetic world's clips; :mod:`hrstream.runtime.quantize`)."""

    device: str
    amp: AmpChoice
    compile: bool
    batch_size: int = _f(lo=1)
    max_wait_s: float = _f(lo=0.0)
    queue_size: int = _f(lo=1)
    live_buffer: int = _f(lo=1)
    streams: int | None = _f(None, lo=1)
    backend: BackendChoice = "torch"
    pad_batches: bool = False
    metrics_port: int | None = _f(None, lo=1, hi=65535)
    calibration: str | None = None


@dataclass(frozen=True)
class SourcesSection:
    """How inputs are opened: network deadlines (seconds), the RTSP transport, and how live sources reconnect:
    ``max_reconnects`` consecutive failed attempts before a source gives up (``None``: never), the backoff
    between attempts growing to ``backoff_max_s``."""

    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = _f(10.0, lo=0.0, lo_open=True)
    read_timeout_s: float = _f(10.0, lo=0.0, lo_open=True)
    max_reconnects: int | None = _f(None, lo=1)
    backoff_max_s: float = _f(30.0, lo=0.0, lo_open=True)


@dataclass(frozen=True)
class SinksSection:
    """What each source writes into ``--out``. ``segment_s``: cut the files into segments this long (``None``:
    600 s for live sources, files not cut); ``keep_segments``: delete older segments beyond this many."""

    video: bool
    jsonl: bool
    preset: Preset
    tracks: bool = False
    draw_boxes: bool = False
    segment_s: float | None = _f(None, lo=0.0, lo_open=True)
    keep_segments: int | None = _f(None, lo=1)


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``detector``, ``pose``, ``tracker`` and ``smoother`` are ``None`` for ``task: seg``;
    ``seg`` configures the segmentation network of ``seg``, ``pose,seg`` and ``--detector seg``."""

    task: Task
    model: str
    runtime: RuntimeSection
    sinks: SinksSection
    seg: SegSection
    weights: str | None = None
    seg_model: str | None = None
    seg_weights: str | None = None
    detector: DetectorSection | None = None
    pose: PoseSection | None = None
    tracker: TrackerSection | None = None
    smoother: SmootherSection | None = None
    sources: SourcesSection = field(default_factory=SourcesSection)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (lists for tuples), e.g. to record it or to hash it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self) -> str:
        """A short hash of every value (the manifest reprocesses an input when it changes)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with dotted-key ``overrides`` applied and checked (``{"runtime.device": "cpu"}``)."""
        return parse_recipe(apply_overrides(self.to_dict(), overrides, src="override"), src="override")


#: ``hrstream run`` flag (as its Python name) -> recipe field. ``hrstream.stream`` takes the same names.
FLAG_FIELDS: dict[str, str] = {
    "model": "model",
    "weights": "weights",
    "device": "runtime.device",
    "amp": "runtime.amp",
    "backend": "runtime.backend",
    "batch_size": "runtime.batch_size",
    "streams": "runtime.streams",
    "preset": "sinks.preset",
    "video": "sinks.video",
    "seg_model": "seg_model",
    "seg_weights": "seg_weights",
    "seg_smoothing": "seg.smoothing_tau_s",
    "opacity": "seg.opacity",
    "rle": "seg.rle",
    "detector": "detector.name",
    "detector_weights": "detector.weights",
    "detect_every": "detector.every_n",
    "det_thr": "detector.score_thr",
    "max_people": "detector.max_people",
    "flip_test": "pose.flip_test",
    "decoder": "pose.decoder",
    "kpt_thr": "pose.kpt_thr",
    "open_timeout": "sources.open_timeout_s",
    "read_timeout": "sources.read_timeout_s",
    "max_reconnects": "sources.max_reconnects",
    "segment_s": "sinks.segment_s",
    "keep_segments": "sinks.keep_segments",
    "metrics_port": "runtime.metrics_port",
    "calibration": "runtime.calibration",
}


def flag_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted recipe overrides from flag-named options (``None`` = not given). Raises :class:`ConfigError` for
    an option :data:`FLAG_FIELDS` does not know."""
    unknown = sorted(set(options) - set(FLAG_FIELDS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(FLAG_FIELDS), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"options: {', '.join(FLAG_FIELDS)}"
        raise ConfigError(f"unknown option {unknown[0]!r} ({hint})")
    return {FLAG_FIELDS[k]: v for k, v in options.items() if v is not None}


# -- files -------------------------------------------------------------------------------------------


def recipe_path(task: str) -> Path:
    """The default recipe of a task (``pose`` -> ``pipelines/pose.yaml``)."""
    name = {"pose": "pose", "seg": "seg", "pose,seg": "pose_seg"}.get(task)
    if name is None:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
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
    task: str | None = None, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Recipe:
    """The parsed recipe: the task's default file, ``path`` merged over it, then ``overrides``.

    Args:
        task: ``pose``, ``seg`` or ``pose,seg``; ``None``: the custom recipe's own ``task`` (else ``pose``).
            A task given here wins over the file's (a flag overrides a recipe field).
        path: a custom recipe; it may give only the fields it changes.
        overrides: dotted keys (``{"runtime.batch_size": 8}``); ``None`` values are skipped.
    """
    custom = _read(Path(path)) if path is not None else None
    if task is None:
        task = str(custom.get("task") or "pose") if custom is not None else "pose"
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
    data = apply_overrides(data, overrides or {}, src=src)
    return parse_recipe(data, src=src)


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


# -- typed parsing -------------------------------------------------------------------------------------


def parse_recipe(data: Mapping[str, Any], *, src: str = "recipe") -> Recipe:
    """Check every value of a merged recipe mapping and build the frozen :class:`Recipe`.

    Raises:
        ConfigError: one line, ``"SRC: FIELD must be ..., got VALUE"`` or an unknown field with close names.
    """
    recipe = _parse_dataclass(Recipe, data, src, "")
    if recipe.task != "seg":
        for name in ("detector", "pose", "tracker", "smoother"):
            if getattr(recipe, name) is None:
                raise ConfigError(f"{src}: task {recipe.task} needs a '{name}' section")
    return recipe


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _describe(tp: Any, meta: Mapping[str, Any]) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a, meta) for a in inner) + " or null"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        return f"a non-empty list, each {_describe(args[0], meta)}"
    if dataclasses.is_dataclass(tp):
        return "a section (mapping)"
    name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]
    lo, hi, lo_open = meta.get("range", (None, None, False))
    if lo is not None and hi is not None:
        name += f" in {'(' if lo_open else '['}{lo}, {hi}]"
    elif lo is not None:
        name += f" {'>' if lo_open else '>='} {lo}"
    return name


def _in_range(v: float, meta: Mapping[str, Any]) -> bool:
    lo, hi, lo_open = meta.get("range", (None, None, False))
    if lo is not None and (v < lo or (lo_open and v == lo)):
        return False
    return hi is None or v <= hi


def _convert(tp: Any, value: Any, meta: Mapping[str, Any], src: str, path: str) -> Any:
    """``value`` checked against the annotation ``tp`` (and range metadata); raises ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def bad() -> ConfigError:
        return ConfigError(f"{src}: {path} must be {_describe(tp, meta)}, got {value!r}")

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:  # Optional[X]: X's own message (a nested section names the inner field)
            return _convert(inner[0], value, meta, src, path)
        for a in inner:
            try:
                return _convert(a, value, meta, src, path)
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
        return tuple(_convert(args[0], v, meta, src, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise bad()
        return _parse_dataclass(tp, value, src, f"{path}.")
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
        if isinstance(value, str) and value:
            return value
        raise bad()
    raise TypeError(f"recipe field {path}: unsupported annotation {tp!r}")  # pragma: no cover


def _parse_dataclass(cls: Any, data: Mapping[str, Any], src: str, prefix: str) -> Any:
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
                    f"{src}: recipe field {path} is missing ({_describe(hints[name], f.metadata)})"
                )
            continue
        values[name] = _convert(hints[name], data[name], f.metadata, src, path)
    try:
        return cls(**values)
    except ConfigError as e:  # a check across fields (__post_init__)
        raise ConfigError(f"{src}: {e}") from None
