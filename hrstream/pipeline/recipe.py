"""Pipeline recipes, typed: the YAML files in ``pipelines/`` that say how frames flow, as frozen sections.

A recipe is read once (:func:`hrstream.pipeline.recipe_load.load_recipe`) into :class:`Recipe`: one frozen
dataclass per concern (``detector``, ``pose``, ``tracker``, ``smoother``, ``seg``, ``sources``, ``runtime``,
``sinks``), every value type- and range-checked (NaN and infinities are never a valid number). Each stage
factory takes its own section. The sections only a pose task has are ``None`` for ``task: seg``; the builder
asks :attr:`Recipe.pose_sections` once and hands their typed values on.

The ``Literal`` types below are the one list of each choice: the parser checks against them and the command
line offers them (``typing.get_args``). :data:`FLAG_FIELDS` is the one table that maps each ``hrstream run``
flag (and keyword option of :func:`hrstream.stream`) to its recipe field.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hrstream.errors import ConfigError
from hrstream.models.meta import Decoder
from hrstream.pipeline.typed_config import apply_overrides, parse_dataclass
from hrstream.runtime.backend_choice import BackendRequest
from hrstream.runtime.precision import AmpMode
from hrstream.track.smoothers import SmootherName

__all__ = [
    "FLAG_FIELDS",
    "TASK_NETWORKS",
    "Decoder",
    "DetectorSection",
    "PoseMethod",
    "PoseSection",
    "PoseSections",
    "Preset",
    "Recipe",
    "RepairSection",
    "RuntimeSection",
    "SegSection",
    "SinksSection",
    "SmootherSection",
    "SourcesSection",
    "Task",
    "TrackerSection",
    "flag_name",
    "flag_overrides",
    "parse_recipe",
]

#: What a run computes: pose, segmentation, or both on the same frames.
Task = Literal["pose", "seg", "pose,seg"]
#: The networks each task loads (the only place a task name is read).
TASK_NETWORKS: dict[str, tuple[str, ...]] = {"pose": ("pose",), "seg": ("seg",), "pose,seg": ("pose", "seg")}
PoseMethod = Literal["auto", "topdown", "bottomup"]
RtspTransport = Literal["tcp", "udp"]
Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]


def _f(
    default: Any = dataclasses.MISSING, *, lo: float | None = None, hi: float | None = None, **kw: Any
) -> Any:
    """A field with an allowed closed range ``[lo, hi]`` (``lo_open=True``: ``lo`` itself excluded) and, with
    ``pattern``, a regular expression a string must match (``pattern_doc`` says it in words)."""
    meta: dict[str, Any] = {"range": (lo, hi, bool(kw.pop("lo_open", False)))}
    meta.update(kw)
    if isinstance(default, (list, tuple, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DetectorSection:
    """Person boxes: ``name`` is ``fast | accurate | full-frame | file:PATH | seg`` or a ``det_hrnet`` config.
        ``score_thr: None``: the detector's own (0.5 for networks; for ``file:`` the official selection of the pose
        config's ``TEST`` section, without box NMS or cap). ``every_n``: the detector runs on every n-th frame of a
        source; boxes are carried through the frames between by the source's tracker. ``batch_size``: frames per call
    of a network detector."""

    name: str
    weights: str | None
    seg_classes: tuple[str, ...]
    min_area: int = _f(lo=0)
    score_thr: float | None = _f(lo=0.0, hi=1.0)
    nms_iou: float | None = _f(lo=0.0, hi=1.0)
    max_people: int | None = _f(lo=1)
    every_n: int = _f(lo=1)
    flip_test: bool = False
    batch_size: int = _f(4, lo=1)


@dataclass(frozen=True)
class PoseSection:
    """Keypoints: ``None`` values defer to the model config (``TEST.FLIP_TEST``, ``HRSTREAM.DECODER``).
    ``method``: ``auto`` is the model's (a HigherHRNet config is bottom-up: no detector, no crops; every other
    pose network top-down); naming one checks that the model is one."""

    flip_test: bool | None
    decoder: Decoder | None
    oks_nms: bool
    kpt_thr: float = _f(lo=0.0, hi=1.0)
    method: PoseMethod = "auto"


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

    file: SmootherName
    live: SmootherName
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
    ``127.0.0.1:PORT/metrics`` (:mod:`hrstream.runs.metrics`); ``calibration``: the frames ``amp: int8``
    calibrates on (``None``: the synthetic world's clips; :mod:`hrstream.runtime.quantize`)."""

    device: str = _f(pattern=r"auto|cpu|cuda|cuda:\d+", pattern_doc="auto, cpu, cuda or cuda:N")
    amp: AmpMode
    compile: bool
    batch_size: int = _f(lo=1)
    max_wait_s: float = _f(lo=0.0)
    queue_size: int = _f(lo=1)
    live_buffer: int = _f(lo=1)
    streams: int | None = _f(None, lo=1)
    backend: BackendRequest = "torch"
    pad_batches: bool = False
    metrics_port: int | None = _f(None, lo=1, hi=65535)
    calibration: str | None = None


@dataclass(frozen=True)
class SourcesSection:
    """How inputs are opened: network deadlines (seconds), the RTSP transport, and how live sources reconnect:
    ``max_reconnects`` consecutive failed attempts before a source gives up (``None``: never), the backoff
    between attempts growing to ``backoff_max_s``."""

    rtsp_transport: RtspTransport = "tcp"
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
class PoseSections:
    """The sections every pose task has (:attr:`Recipe.pose_sections`), none of them optional."""

    detector: DetectorSection
    pose: PoseSection
    tracker: TrackerSection
    smoother: SmootherSection


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``detector``, ``pose``, ``tracker`` and ``smoother`` are ``None`` for ``task: seg``
    (read them through :attr:`pose_sections`); ``seg`` configures the segmentation network of ``seg``,
    ``pose,seg`` and ``--detector seg``."""

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

    @property
    def networks(self) -> tuple[str, ...]:
        """The networks the task runs: ``("pose",)``, ``("seg",)`` or ``("pose", "seg")``."""
        return TASK_NETWORKS[self.task]

    @property
    def pose_sections(self) -> PoseSections | None:
        """The pose task's sections (all present: the parser made sure), or ``None`` for ``task: seg``."""
        if "pose" not in self.networks:
            return None
        sections = (self.detector, self.pose, self.tracker, self.smoother)
        if any(s is None for s in sections):  # pragma: no cover - parse_recipe refuses such a recipe
            raise ConfigError(f"task {self.task} needs detector, pose, tracker and smoother sections")
        return PoseSections(*sections)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (lists for tuples), e.g. to record it or to hash it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self) -> str:
        """A short hash of every value (the manifest reprocesses an input when it changes)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with dotted-key ``overrides`` applied and checked (``{"runtime.device": "cpu"}``)."""
        return parse_recipe(apply_overrides(self.to_dict(), overrides, src="override"), src="override")


def parse_recipe(
    data: Mapping[str, Any], *, src: str = "recipe", origins: Mapping[str, str] | None = None
) -> Recipe:
    """Check every value of a merged recipe mapping and build the frozen :class:`Recipe`.

    ``origins``: dotted field -> the flag that set it (errors name the flag instead of ``src``).

    Raises:
        ConfigError: one line, ``"SRC: FIELD must be ..., got VALUE"`` (``"--FLAG must be ..."``), an unknown
            field with close names, or a pose task without one of its sections.
    """
    recipe: Recipe = parse_dataclass(Recipe, data, src=src, origins=origins)
    if "pose" in recipe.networks:
        for name in ("detector", "pose", "tracker", "smoother"):
            if getattr(recipe, name) is None:
                raise ConfigError(f"{src}: task {recipe.task} needs a '{name}' section")
    return recipe


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


def flag_name(dotted: str) -> str | None:
    """The ``hrstream run`` flag that sets recipe field ``dotted`` (``sources.open_timeout_s`` ->
    ``--open-timeout``), or ``None``."""
    for flag, path in FLAG_FIELDS.items():
        if path == dotted:
            return "--" + flag.replace("_", "-")
    return None
