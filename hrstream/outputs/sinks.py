"""Sinks: what receives a source's results, one class each, registered in one place.

A :class:`Sink` has ``write(result)`` and ``close()`` and is a context manager. Each source's outputs are cut
into segments (:mod:`hrstream.outputs.segments`); for every segment, every registered :data:`SinkFactory` is
asked for its sink with a :class:`SegmentContext` (where files go, the segment's name and frame size, what the
results mean, the recipe's ``sinks`` section) and returns one, or ``None`` when it has nothing to write there.
:func:`register_sink` adds a kind (the built-in ones are in :mod:`hrstream.outputs.files`); the router and the
segment logic never change to add one. :class:`~hrstream.outputs.segments.FanOut` writes a result to all of a segment's sinks and closes
them all (the first error is raised after every sink was closed).
"""

from __future__ import annotations

import dataclasses
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from hrstream.io import SourceInfo, output_path
from hrstream.pipeline.builder import Networks
from hrstream.pipeline.recipe import SinksSection
from hrstream.pipeline.tracking import repair_params
from hrstream.track.repair import RepairParams
from hrstream.types import FrameResult

__all__ = [
    "OutputsSpec",
    "outputs_spec",
    "SegmentContext",
    "Sink",
    "SinkFactory",
    "register_sink",
    "sink_factories",
    "unregister_sink",
]


class Sink(ABC):
    """Receives the results of one segment of one source, in order: ``write(result)`` per frame, ``event(kind,
    fields)`` per live event (a gap, a reconnect; only sinks that record events override it), ``close()`` once.
    ``path``: the file or folder it writes (``None``: nothing on disk), recorded in the manifest."""

    path: Path | None = None

    @abstractmethod
    def write(self, result: FrameResult) -> None: ...

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        """A live source's event, in order with its frames; ignored unless a sink records events."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class OutputsSpec:
    """What a run's outputs need to know, the same for every source.

    Attributes:
        out_dir: where files go; ``None``: no file is written (``hrstream.stream`` without ``out=``).
        sinks: the recipe's ``sinks`` section (which files, the video preset, segments).
        model: what output documents record about the networks (name, weights, sha256...).
        keypoint_names, skeleton: the pose network's keypoints (empty without one).
        classes: the segmentation network's classes (empty without one).
        seg_rle, label_maps: the recipe's ``seg.rle`` and ``seg.label_maps`` (with a segmentation).
        repair: identity repair of files' tracks documents (``tracker.repair.offline``), or ``None``.
        savgol_window_s: the offline smoothing of files' tracks documents, or ``None``.
    """

    out_dir: Path | None
    sinks: SinksSection
    model: dict[str, Any] = field(default_factory=dict)
    keypoint_names: tuple[str, ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    classes: tuple[str, ...] = ()
    seg_rle: bool = False
    label_maps: bool = False
    repair: RepairParams | None = None
    savgol_window_s: float | None = None

    @property
    def writes_poses(self) -> bool:
        return bool(self.keypoint_names)

    @property
    def writes_seg(self) -> bool:
        return bool(self.classes)


def outputs_spec(networks: Networks, out_dir: str | Path | None) -> OutputsSpec:
    """What the outputs of a run of ``networks`` need to know, files going to ``out_dir`` (``None``: none)."""
    recipe = networks.recipe
    spec = OutputsSpec(
        Path(out_dir) if out_dir is not None else None, recipe.sinks, model=networks.describe()
    )
    changes: dict[str, Any] = {}
    if networks.pose is not None:
        meta = networks.pose.bundle.meta
        changes.update(keypoint_names=meta.keypoint_names, skeleton=meta.skeleton)
        sections = recipe.pose_sections
        if sections is not None:
            changes.update(
                repair=repair_params(sections.tracker),
                savgol_window_s=sections.smoother.tracks_savgol_window_s,
            )
    if networks.writes_seg and networks.seg is not None:
        changes.update(
            classes=networks.seg.bundle.meta.classes, seg_rle=recipe.seg.rle, label_maps=recipe.seg.label_maps
        )
    return dataclasses.replace(spec, **changes)


@dataclass(frozen=True)
class SegmentContext:
    """One segment of one source, as a sink factory sees it.

    Attributes:
        spec: the run's :class:`OutputsSpec`.
        source: the source, with this segment's frame size (``width`` x ``height``).
        name: the files' name: ``NAME`` or ``NAME_<label>`` for a labelled segment.
        label: the segment's label (its UTC start for live sources), ``None`` for a source's only files.
    """

    spec: OutputsSpec
    source: SourceInfo
    name: str
    label: str | None

    @property
    def writes_files(self) -> bool:
        return self.spec.out_dir is not None

    def path(self, suffix: str) -> Path:
        """``OUT/NAME<suffix>``, kept inside the output folder."""
        if self.spec.out_dir is None:
            raise ValueError("this run writes no files (no output folder)")
        return output_path(self.spec.out_dir, self.name, suffix)


#: ``factory(context) -> Sink | None``: the sink of one kind for a segment, or ``None`` (nothing to write).
SinkFactory = Callable[[SegmentContext], Sink | None]

_lock = threading.Lock()
_FACTORIES: dict[str, SinkFactory] = {}


def register_sink(kind: str, factory: SinkFactory) -> None:
    """Add a sink kind (its outputs are recorded under ``kind`` in the manifest); replaces one of that name."""
    with _lock:
        _FACTORIES[kind] = factory


def unregister_sink(kind: str) -> None:
    with _lock:
        _FACTORIES.pop(kind, None)


def sink_factories() -> dict[str, SinkFactory]:
    """Every registered kind, in the order they were registered (the built-in ones, which
    :mod:`hrstream.outputs` registers when it is imported, first)."""
    with _lock:
        return dict(_FACTORIES)
