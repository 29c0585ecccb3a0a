"""hrstream: HRNet pose estimation and semantic segmentation over video."""

from __future__ import annotations

from hrstream.api import stream
from hrstream.errors import (
    ConfigError,
    HrstreamError,
    InputError,
    OutputError,
    StageError,
    WeightsError,
    WeightsUnavailableError,
)
from hrstream.types import Detections, Frame, FrameResult, Poses, SegMap

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Detections",
    "Frame",
    "FrameResult",
    "HrstreamError",
    "InputError",
    "OutputError",
    "Poses",
    "SegMap",
    "StageError",
    "WeightsError",
    "WeightsUnavailableError",
    "__version__",
    "stream",
]
