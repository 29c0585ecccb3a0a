"""Turn ``--model`` / ``--weights`` into a loaded network and the metadata its outputs need.

Weights carry their meaning: a registered checkpoint's decoder, input and heatmap size, keypoints, flip pairs
and OKS sigmas (its registry ``meta``) are what :attr:`ModelBundle.meta` holds, and a ``--model`` config that
says otherwise (its ``HRSTREAM.DECODER``, ``MODEL.IMAGE_SIZE``, ``MODEL.NUM_JOINTS``, or its task) is a
:class:`~hrstream.errors.ConfigError` naming both, raised before anything is downloaded.
"""

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
    COCO_OKS_SIGMAS,
    COCO_SKELETON,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from hrstream.models.hub import resolve_weights, sha256_file
from hrstream.models.registry import WeightsEntry, default_weights, get_weights, list_weights

__all__ = ["ModelBundle", "load_model_bundle", "resolve_meta"]

log = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """A network with weights loaded, and what its outputs mean.

    ``meta`` holds ``mean``/``std`` (RGB, 0-1 units) and, for pose, what the pipeline must use (the weights'
    values where the registry knows the weights, else the config's):

    * ``decoder``: ``"msra"``, ``"dark"`` or ``"udp"``;
    * ``input_size`` / ``heatmap_size``: ``(height, width)`` pixels (the reverse of the YAML's ``[W, H]``);
    * ``keypoint_names``, ``skeleton``, ``flip_pairs`` (0-based ``[left, right]``), ``oks_sigmas`` (``K``
      floats: the OKS of tracking and NMS);

    for segmentation ``classes`` and ``palette``.
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
                "oks_sigmas": list(COCO_OKS_SIGMAS),
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
            }
        return {
            "keypoint_names": [f"kp{i}" for i in range(k)],
            "flip_pairs": [],
            "skeleton": [],
            "oks_sigmas": [0.1] * k,  # no dataset's sigmas: one value for every keypoint
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


def _named_entry(weights: str) -> WeightsEntry | None:
    """The registry entry ``--weights`` names, without downloading: a registered (or config) name, or an
    existing file whose name is a registered download's; ``None`` for other files."""
    candidate = Path(weights).expanduser()
    if candidate.is_file():
        return next((e for e in list_weights() if e.filename == candidate.name), None)
    if "/" in weights or "\\" in weights or candidate.suffix in (".pth", ".pt", ".safetensors", ".bin"):
        return None  # a path that does not exist: resolve_weights says so
    return get_weights(weights)


def _size_hw(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


def resolve_meta(spec: ModelSpec, entry: WeightsEntry | None, *, model: str, weights: str) -> dict[str, Any]:
    """What the network's outputs mean: the weights' registry ``meta`` over the config's defaults.

    Raises :class:`ConfigError` naming ``--weights`` and ``--model`` when the config contradicts the weights:
    another task, decoder (``HRSTREAM.DECODER``), input size (``MODEL.IMAGE_SIZE``) or number of keypoints.
    """
    meta = _default_meta(spec)
    if spec.task == "pose":
        meta["decoder"] = str(spec.extra.get("DECODER") or "msra").lower()
        if spec.image_size is not None:
            meta["input_size"] = (spec.image_size[1], spec.image_size[0])
        if spec.heatmap_size is not None:
            meta["heatmap_size"] = (spec.heatmap_size[1], spec.heatmap_size[0])
    if entry is None:
        return meta
    both = f"--weights {weights} ({entry.name}, for config {entry.config}) and --model {model}"
    fix = f"; use --model {entry.config}, or weights made for this config"
    if entry.task != spec.task:
        raise ConfigError(
            f"{both} disagree: the weights are {entry.task} weights, the config a {spec.task} network{fix}"
        )
    w = entry.meta
    if spec.task == "pose":
        config_decoder = spec.extra.get("DECODER")
        if w.get("decoder") and config_decoder and str(config_decoder).lower() != w["decoder"]:
            raise ConfigError(
                f"{both} disagree: the weights decode with {w['decoder']}, the config's HRSTREAM.DECODER says "
                f"{str(config_decoder).lower()}{fix}"
            )
        size = _size_hw(w.get("input_size"))
        if (
            size is not None
            and spec.image_size is not None
            and size != (spec.image_size[1], spec.image_size[0])
        ):
            raise ConfigError(
                f"{both} disagree: the weights take {size[0]}x{size[1]} (HxW) crops, the config's MODEL.IMAGE_SIZE "
                f"is {spec.image_size[1]}x{spec.image_size[0]}{fix}"
            )
        names = w.get("keypoint_names")
        if names is not None and len(names) != spec.num_outputs:
            raise ConfigError(
                f"{both} disagree: the weights have {len(names)} keypoints, the config's MODEL.NUM_JOINTS is "
                f"{spec.num_outputs}{fix}"
            )
    meta.update({k: v for k, v in w.items() if v is not None})
    for key in ("input_size", "heatmap_size"):
        if key in meta:
            meta[key] = _size_hw(meta[key])
    return meta


def load_model_bundle(
    model: str | None, weights: str | None, *, task: str, progress: bool = True
) -> ModelBundle:
    """Build ``model`` (config name, YAML path) and load ``weights`` (registry name or path).

    ``weights=None`` uses the config's default weights (``HRSTREAM.WEIGHTS`` or the registry's first entry
    for that config); offline this raises :class:`~hrstream.errors.WeightsUnavailableError` with the URL,
    the cache path and the ``--weights PATH`` alternative. ``model=None`` uses the config the registered
    ``weights`` were made for. The bundle's ``meta`` is :func:`resolve_meta`'s: the weights' meaning, checked
    against the config before anything is downloaded.
    """
    if model is None:
        named = _named_entry(weights) if weights is not None else None
        if named is None:
            raise ConfigError(
                "no --model given and --weights names no registered checkpoint; pass --model CONFIG"
            )
        model = named.config
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
    else:
        entry = _named_entry(weights)
    meta = resolve_meta(spec, entry, model=model, weights=weights)  # before any download
    path, found = resolve_weights(weights, progress=progress)
    if found is not None and found is not entry:
        entry = found
        meta = resolve_meta(spec, entry, model=model, weights=weights)
    net = from_config(data)
    report = load_weights(net, path)
    log.info("loaded %s into %s (%s layout, %d tensors)", path, spec.name, report.layout, report.loaded)
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
