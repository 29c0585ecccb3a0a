"""What a network's outputs mean, typed: :class:`WeightsMeta`, and the dataset fallbacks it starts from.

The registry's entry for a checkpoint says what its outputs mean (keypoint names, flip pairs, skeleton, OKS
sigmas, decoder, input and heatmap size; classes and palette; normalisation); a network whose weights the
registry does not know takes what its config implies (:func:`default_meta`: COCO's keypoints for 17 of them,
Cityscapes' classes for 19, ImageNet statistics). :func:`resolve_meta` puts the two together and refuses a
config that contradicts its weights. Sizes are ``(height, width)`` pixels, the reverse of the official YAML's
``[W, H]``; ``mean`` / ``std`` are RGB in 0-1 units (``x = (rgb / 255 - mean) / std``); indices are 0-based.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from hrstream.errors import ConfigError
from hrstream.models import datasets_meta as dm
from hrstream.models.config import ModelSpec

__all__ = [
    "ESTIMATOR_KINDS",
    "EstimatorKind",
    "WeightsMeta",
    "default_meta",
    "estimator_kind",
    "resolve_meta",
]

#: How a pipeline uses a network: top-down pose (crops of person boxes), bottom-up pose (HigherHRNet: every
#: person of a whole frame, grouped by tags), whole-frame segmentation, person detection, or a bare backbone
#: (classification configs; no pipeline estimator).
EstimatorKind = Literal["topdown", "bottomup", "segmentation", "detection", "backbone"]
ESTIMATOR_KINDS: tuple[str, ...] = get_args(EstimatorKind)
_BY_TASK: dict[str, EstimatorKind] = {
    "pose": "topdown",
    "seg": "segmentation",
    "det": "detection",
    "cls": "backbone",
}
Decoder = Literal["msra", "dark", "udp"]


@dataclass(frozen=True)
class WeightsMeta:
    """What a loaded network's outputs mean (see the module docstring).

    Attributes:
        estimator: how a pipeline uses the network (:data:`EstimatorKind`).
        mean, std: input normalisation, RGB in 0-1 units.
        keypoint_names, skeleton, flip_pairs, oks_sigmas: pose networks' ``K`` keypoints (0-based pairs).
        decoder: the heatmap decoder the weights were trained for.
        input_size, heatmap_size: ``(height, width)`` pixels, or ``None``.
        classes, palette: segmentation networks' class names and RGB colours.
        trained_on: what the weights were trained on, when a config says so (the shipped synthetic models).
        extra: the registry's other facts (``metrics``, ``licence``, ``dataset``...), as given.
    """

    estimator: EstimatorKind
    mean: tuple[float, ...] = dm.IMAGENET_MEAN
    std: tuple[float, ...] = dm.IMAGENET_STD
    keypoint_names: tuple[str, ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] = ()
    oks_sigmas: tuple[float, ...] | None = None
    decoder: Decoder = "msra"
    input_size: tuple[int, int] | None = None
    heatmap_size: tuple[int, int] | None = None
    classes: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    trained_on: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def replace(self, **changes: Any) -> WeightsMeta:
        return dataclasses.replace(self, **changes)

    def with_values(self, values: Mapping[str, Any]) -> WeightsMeta:
        """A copy with the (registry-style, JSON-like) ``values`` that are not ``None`` applied; keys that are
        no field go to ``extra``."""
        names = {f.name for f in dataclasses.fields(self)} - {"extra", "estimator"}
        known = {k: _typed(k, v) for k, v in values.items() if k in names and v is not None}
        extra = {**self.extra, **{k: v for k, v in values.items() if k not in names and k != "estimator"}}
        return dataclasses.replace(self, **known, extra=extra)


def _typed(key: str, value: Any) -> Any:
    if key in ("input_size", "heatmap_size"):
        return (int(value[0]), int(value[1]))
    if key in ("skeleton", "flip_pairs"):
        return tuple((int(a), int(b)) for a, b in value)
    if key == "palette":
        return tuple((int(r), int(g), int(b)) for r, g, b in value)
    if key in ("mean", "std", "oks_sigmas"):
        return tuple(float(v) for v in value)
    if key in ("keypoint_names", "classes"):
        return tuple(str(v) for v in value)
    if key == "decoder":
        return str(value).lower()
    return value


def estimator_kind(spec: ModelSpec) -> EstimatorKind:
    """How a pipeline uses the network a config describes (its ``MODEL.NAME``: ``pose_higher_hrnet`` is
    bottom-up, other pose networks top-down)."""
    if spec.task == "pose" and spec.method == "bottomup":
        return "bottomup"
    return _BY_TASK[spec.task]


def _colours(n: int) -> list[list[int]]:
    return [[(37 * i) % 256, (91 * i + 60) % 256, (173 * i + 120) % 256] for i in range(n)]


def default_meta(spec: ModelSpec) -> WeightsMeta:
    """What a config implies about its outputs without registered weights: COCO's keypoints for a 17-keypoint
    pose network (else numbered keypoints, no pairs, OKS sigma 0.1 each), the ``HRSTREAM.CLASSES`` of a
    segmentation config or Cityscapes' 19 classes (else numbered classes), the decoder and sizes the config
    names, ImageNet normalisation."""
    meta = WeightsMeta(estimator_kind(spec))
    if spec.task == "pose":
        k = spec.num_outputs
        values: dict[str, Any] = (
            {
                "keypoint_names": dm.COCO_KEYPOINT_NAMES,
                "flip_pairs": dm.COCO_FLIP_PAIRS,
                "skeleton": dm.COCO_SKELETON,
                "oks_sigmas": dm.COCO_OKS_SIGMAS,
            }
            if k == len(dm.COCO_KEYPOINT_NAMES)
            else {"keypoint_names": [f"kp{i}" for i in range(k)], "oks_sigmas": [0.1] * k}
        )
        values["decoder"] = spec.extra.get("DECODER") or "msra"
        if spec.image_size is not None:
            values["input_size"] = (spec.image_size[1], spec.image_size[0])
        if spec.heatmap_size is not None:
            values["heatmap_size"] = (spec.heatmap_size[1], spec.heatmap_size[0])
        return meta.with_values(values)
    if spec.task != "seg":
        return meta
    c = spec.num_outputs
    names = spec.extra.get("CLASSES")
    if names is not None:  # HRSTREAM.CLASSES / HRSTREAM.PALETTE in the config
        if len(names) != c:
            raise ConfigError(f"{spec.source}: HRSTREAM.CLASSES has {len(names)} names for {c} classes")
        return meta.with_values({"classes": names, "palette": spec.extra.get("PALETTE") or _colours(c)})
    if c == len(dm.CITYSCAPES_CLASSES):
        return meta.with_values({"classes": dm.CITYSCAPES_CLASSES, "palette": dm.CITYSCAPES_PALETTE})
    return meta.with_values({"classes": [f"class{i}" for i in range(c)], "palette": _colours(c)})


def resolve_meta(
    spec: ModelSpec,
    weights_meta: Mapping[str, Any] | None,
    *,
    task: str | None = None,
    describe: str = "the weights and the config",
    fix: str = "; use the config the weights were made for, or weights made for this config",
) -> WeightsMeta:
    """What the network's outputs mean: the registered weights' ``weights_meta`` over the config's defaults.

    Args:
        spec: the network's config.
        weights_meta: the registry entry's ``meta`` of the weights, or ``None`` (weights the registry does not
            know: the config's defaults stand).
        task: the entry's task, checked against the config's.
        describe: how errors name the two (``--weights X (...) and --model Y``); ``fix``: what they say to do.

    Raises:
        ConfigError: the config contradicts its weights: another task, decoder (``HRSTREAM.DECODER``), input
            size (``MODEL.IMAGE_SIZE``) or number of keypoints.
    """
    meta = default_meta(spec)
    if weights_meta is None:
        trained_on = spec.extra.get("TRAINED_ON")
        return meta.replace(trained_on=trained_on) if trained_on else meta
    if task is not None and task != spec.task:
        raise ConfigError(
            f"{describe} disagree: the weights are {task} weights, the config a {spec.task} network{fix}"
        )
    w = weights_meta
    if spec.task == "pose":
        config_decoder = spec.extra.get("DECODER")
        if w.get("decoder") and config_decoder and str(config_decoder).lower() != w["decoder"]:
            raise ConfigError(
                f"{describe} disagree: the weights decode with {w['decoder']}, the config's HRSTREAM.DECODER "
                f"says {str(config_decoder).lower()}{fix}"
            )
        size = w.get("input_size")
        if (
            size is not None
            and spec.image_size is not None
            and tuple(size) != (spec.image_size[1], spec.image_size[0])
        ):
            raise ConfigError(
                f"{describe} disagree: the weights take {size[0]}x{size[1]} (HxW) crops, the config's "
                f"MODEL.IMAGE_SIZE is {spec.image_size[1]}x{spec.image_size[0]}{fix}"
            )
        names = w.get("keypoint_names")
        if names is not None and len(names) != spec.num_outputs:
            raise ConfigError(
                f"{describe} disagree: the weights have {len(names)} keypoints, the config's MODEL.NUM_JOINTS "
                f"is {spec.num_outputs}{fix}"
            )
    meta = meta.with_values(w)
    trained_on = spec.extra.get("TRAINED_ON")
    return meta.replace(trained_on=trained_on) if trained_on else meta
