"""What a synthetic clip is made of (:class:`SynthConfig`) and what each rendered frame holds (:class:`SynthFrame`).

Pixel convention (as everywhere in hrstream): x right, y down, the centre of the top-left pixel at (0, 0),
so pixel ``(col, row)`` covers ``[col - 0.5, col + 0.5] x [row - 0.5, row + 0.5]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from hrstream.errors import ConfigError

__all__ = ["MOTIONS", "SynthConfig", "SynthFrame"]

#: Motions a person may perform besides walking straight: ``walk`` (gait), ``turn`` (change heading, which
#: shows the figure from the side and back), ``wave`` (stop, face the camera and wave one arm).
MOTIONS: tuple[str, ...] = ("walk", "turn", "wave")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic clip; the same config always renders the same frames.

    Attributes:
        width, height: frame size in pixels.
        fps: frames per second (the clip's time of frame ``i`` is ``i / fps``).
        num_frames: clip length in frames; ignored when ``duration_s`` is set.
        duration_s: clip length in seconds (``round(duration_s * fps)`` frames), or ``None``.
        num_people: people in view at a time: an int, or an inclusive ``(min, max)`` range drawn per clip.
        seed: the random seed; everything (background, people, motion, noise) derives from it.
        person_height: ``(min, max)`` standing height of a person (head top to soles) as a fraction of
            ``height``; near people are tall and their feet low in the frame (a ground plane).
        motions: which of :data:`MOTIONS` people perform.
        enter_leave: people walk in from and out of the frame edges (new identities replace those leaving).
        noise_sigma: standard deviation of the per-frame Gaussian camera noise, in 0-255 grey levels.
        blur_sigma: Gaussian blur of the rendered frame in pixels (0 for none).
        include_hidden: also list people with no visible pixel (fully outside or fully occluded) in
            :class:`SynthFrame` (their ``areas`` are 0); otherwise only people with at least one pixel.
    """

    width: int = 320
    height: int = 240
    fps: float = 25.0
    num_frames: int = 100
    duration_s: float | None = None
    num_people: int | tuple[int, int] = 3
    seed: int = 0
    person_height: tuple[float, float] = (0.22, 1.1)
    motions: tuple[str, ...] = MOTIONS
    enter_leave: bool = True
    noise_sigma: float = 3.0
    blur_sigma: float = 0.6
    include_hidden: bool = False

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ConfigError(f"SynthConfig: width/height must be >= 16, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ConfigError(f"SynthConfig: fps must be > 0, got {self.fps}")
        if self.total_frames < 1:
            raise ConfigError(
                "SynthConfig: the clip must have at least one frame; raise num_frames/duration_s"
            )
        lo, hi = self.people_range
        if lo < 0 or hi < lo:
            raise ConfigError(
                f"SynthConfig: num_people must be >= 0 or a (min, max) range, got {self.num_people}"
            )
        hmin, hmax = self.person_height
        if not 0.02 <= hmin <= hmax <= 3.0:
            raise ConfigError(
                f"SynthConfig: person_height must be (min, max) fractions of the frame height with "
                f"0.02 <= min <= max <= 3, got {self.person_height}"
            )
        bad = [m for m in self.motions if m not in MOTIONS]
        if bad or "walk" not in self.motions:
            raise ConfigError(
                f"SynthConfig: motions must include 'walk' and be among {MOTIONS}, got {self.motions}"
            )
        if self.noise_sigma < 0 or self.blur_sigma < 0:
            raise ConfigError("SynthConfig: noise_sigma and blur_sigma must be >= 0")

    @property
    def total_frames(self) -> int:
        """The number of frames the clip has."""
        if self.duration_s is not None:
            return int(round(self.duration_s * self.fps))
        return int(self.num_frames)

    @property
    def people_range(self) -> tuple[int, int]:
        """``num_people`` as an inclusive ``(min, max)`` range."""
        n = self.num_people
        if isinstance(n, (tuple, list)):
            return int(n[0]), int(n[1])
        return int(n), int(n)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthConfig:
        """The inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"SynthConfig: unknown fields {unknown}; known: {sorted(names)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**kw)


@dataclass(eq=False)
class SynthFrame:
    """One rendered frame and its exact ground truth.

    Attributes:
        index: 0-based frame index; ``t = index / fps`` seconds.
        t: the frame's time in seconds.
        image: ``uint8 (H, W, 3)`` RGB.
        keypoints: ``float32 (n, 17, 2)`` (x, y) of the COCO joints (order of
            ``hrstream.models.datasets_meta.COCO_KEYPOINT_NAMES``), also where not visible.
        visibility: ``uint8 (n, 17)`` in COCO's convention: 0 outside the frame, 1 inside but hidden (by another
            person or by the person's own body), 2 visible.
        boxes: ``float32 (n, 4)`` xyxy around the person's visible pixels (pixel edges, so a single pixel at
            ``(c, r)`` gives ``[c - 0.5, r - 0.5, c + 0.5, r + 0.5]``); for people with no visible pixel the
            box of their keypoints.
        track_ids: ``int64 (n,)`` identity of each person, stable over the clip, from 1.
        areas: ``int64 (n,)`` number of visible pixels of each person (equal to its count in the mask).
        instance_mask: ``uint16 (H, W)``: 0 background, else the ``track_id`` of the person seen there.
    """

    index: int
    t: float
    image: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray
    boxes: np.ndarray
    track_ids: np.ndarray
    areas: np.ndarray
    instance_mask: np.ndarray

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])
