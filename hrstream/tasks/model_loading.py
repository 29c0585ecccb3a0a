"""Turn ``--model`` / ``--weights`` into a loaded network and the metadata its outputs need."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from hrstream.errors import ConfigError
from hrstream.models import from_config, load_weights
from hrstream.models.builder import resolve_config
from hrstream.models.config import ModelSpec, parse_config
from hrstream.models.datasets_meta import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    COCO_FLIP_PAIRS,
    COCO_KEYPOINT_NAMES,
    COCO_SKELETON,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from hrstream.models.hub import resolve_weights, sha256_file
from hrstream.models.registry import WeightsEntry, default_weights

__all__ = ["ModelBundle", "load_model_bundle"]

log = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """A network with weights loaded, and what its outputs mean.

    ``meta`` holds ``keypoint_names``, ``flip_pairs``, ``skeleton`` (pose) or ``classes``, ``palette`` (seg),
    and ``mean``/``std`` (RGB, 0-1 units).
    """

    model: nn.Module
    spec: ModelSpec
    name: str
    weights_name: str | None
    weights_path: Path | None
    weights_sha256: str | None
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What output documents record about the model."""
        return {
            "name": self.name,
            "architecture": self.spec.name,
            "width": self.spec.width,
            "weights": self.weights_name or (str(self.weights_path) if self.weights_path else None),
            "weights_sha256": self.weights_sha256,
            "trained_on": self.meta.get("trained_on"),
        }


def _default_meta(spec: ModelSpec) -> dict[str, Any]:
    if spec.task == "pose":
        k = spec.num_outputs
        if k == len(COCO_KEYPOINT_NAMES):
            return {
                "keypoint_names": list(COCO_KEYPOINT_NAMES),
                "flip_pairs": [list(p) for p in COCO_FLIP_PAIRS],
                "skeleton": [list(p) for p in COCO_SKELETON],
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
            }
        return {
            "keypoint_names": [f"kp{i}" for i in range(k)],
            "flip_pairs": [],
            "skeleton": [],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }
    c = spec.num_outputs
    names = spec.extra.get("CLASSES")
    if names is not None:  # HRSTREAM.CLASSES / HRSTREAM.PALETTE in the config
        if len(names) != c:
            raise ConfigError(f"{spec.source}: HRSTREAM.CLASSES has {len(names)} names for {c} classes")
        palette = spec.extra.get("PALETTE") or [
            [(37 * i) % 256, (91 * i + 60) % 256, (173 * i + 120) % 256] for i in range(c)
        ]
        return {
            "classes": list(names),
            "palette": [list(p) for p in palette],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }
    if c == len(CITYSCAPES_CLASSES):
        classes, palette = list(CITYSCAPES_CLASSES), [list(p) for p in CITYSCAPES_PALETTE]
    else:
        classes = [f"class{i}" for i in range(c)]
        palette = [[(37 * i) % 256, (91 * i + 60) % 256, (173 * i + 120) % 256] for i in range(c)]
    return {"classes": classes, "palette": palette, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def load_model_bundle(model: str, weights: str | None, *, task: str, progress: bool = True) -> ModelBundle:
    """Build ``model`` (config name, YAML path) and load ``weights`` (registry name or path).

    ``weights=None`` uses the config's default weights (``HRSTREAM.WEIGHTS`` or the registry's first entry
    for that config); offline this raises :class:`~hrstream.errors.WeightsUnavailableError` with the URL,
    the cache path and the ``--weights PATH`` alternative.
    """
    data, src = resolve_config(model)
    spec = parse_config(data, source=src)
    if spec.task != task:
        raise ConfigError(
            f"--model {model} is a {spec.task} network ({spec.name}); --task {task} needs a {task} one"
        )
    entry: WeightsEntry | None = None
    if weights is None:
        config_name = Path(src).stem
        try:
            entry = default_weights(config_name)
        except ConfigError:
            entry = None
        default = (spec.extra.get("WEIGHTS") if entry is None else entry.name) or None
        if default is None:
            raise ConfigError(
                f"--model {model}: the config names no default weights; pass --weights NAME|PATH"
            )
        weights = str(default)
    path, found = resolve_weights(weights, progress=progress)
    entry = found or entry
    net = from_config(data)
    report = load_weights(net, path)
    log.info("loaded %s into %s (%s layout, %d tensors)", path, spec.name, report.layout, report.loaded)
    meta = _default_meta(spec)
    if entry is not None:
        meta.update({k: v for k, v in entry.meta.items() if v is not None})
    meta.update({k.lower(): v for k, v in spec.extra.items() if k in ("TRAINED_ON",)})
    return ModelBundle(
        model=net,
        spec=spec,
        name=Path(src).stem if Path(src).suffix else src,
        weights_name=entry.name if entry else None,
        weights_path=path,
        weights_sha256=sha256_file(path),
        meta=meta,
    )
