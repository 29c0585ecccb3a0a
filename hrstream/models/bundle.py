"""Turn ``--model`` / ``--weights`` into a loaded network and the metadata its outputs need.

Weights carry their meaning: a registered checkpoint's decoder, input and heatmap size, keypoints, flip pairs
and OKS sigmas (its registry ``meta``) are what :attr:`ModelBundle.meta` holds, and a ``--model`` config that
says otherwise (its ``HRSTREAM.DECODER``, ``MODEL.IMAGE_SIZE``, ``MODEL.NUM_JOINTS``, or its task) is a
:class:`~hrstream.errors.ConfigError` naming both, raised before anything is downloaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hrstream.errors import ConfigError
from hrstream.models import from_config, load_weights
from hrstream.models.builder import resolve_config
from hrstream.models.config import ModelSpec, parse_config
from hrstream.models.hub import resolve_weights, sha256_file
from hrstream.models.meta import WeightsMeta, resolve_meta
from hrstream.models.registry import WeightsEntry, default_weights, get_weights, list_weights

__all__ = ["ModelBundle", "entry_meta", "load_model_bundle"]

log = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """A network with weights loaded, and what its outputs mean (``meta``: the weights' values where the
    registry knows the weights, else the config's; :class:`~hrstream.models.meta.WeightsMeta`)."""

    model: nn.Module
    spec: ModelSpec
    name: str
    weights_name: str | None
    weights_path: Path | None
    weights_sha256: str | None
    meta: WeightsMeta

    def describe(self) -> dict[str, Any]:
        """What output documents record about the model."""
        return {
            "name": self.name,
            "architecture": self.spec.name,
            "width": self.spec.width,
            "weights": self.weights_name or (str(self.weights_path) if self.weights_path else None),
            "weights_sha256": self.weights_sha256,
            "trained_on": self.meta.trained_on,
        }


def _named_entry(weights: str) -> WeightsEntry | None:
    """The registry entry ``--weights`` names, without downloading: a registered (or config) name, or an
    existing file whose name is a registered download's; ``None`` for other files."""
    candidate = Path(weights).expanduser()
    if candidate.is_file():
        return next((e for e in list_weights() if e.filename == candidate.name), None)
    if "/" in weights or "\\" in weights or candidate.suffix in (".pth", ".pt", ".safetensors", ".bin"):
        return None  # a path that does not exist: resolve_weights says so
    return get_weights(weights)


def entry_meta(spec: ModelSpec, entry: WeightsEntry | None, *, model: str, weights: str) -> WeightsMeta:
    """What the network's outputs mean with ``entry``'s weights (:func:`~hrstream.models.meta.resolve_meta`);
    errors name ``--weights`` and ``--model``."""
    if entry is None:
        return resolve_meta(spec, None)
    return resolve_meta(
        spec,
        entry.meta,
        task=entry.task,
        describe=f"--weights {weights} ({entry.name}, for config {entry.config}) and --model {model}",
        fix=f"; use --model {entry.config}, or weights made for this config",
    )


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
    meta = entry_meta(spec, entry, model=model, weights=weights)  # before any download
    path, found = resolve_weights(weights, progress=progress)
    if found is not None and found is not entry:
        entry = found
        meta = entry_meta(spec, entry, model=model, weights=weights)
    net = from_config(data)
    report = load_weights(net, path)
    log.info("loaded %s into %s (%s layout, %d tensors)", path, spec.name, report.layout, report.loaded)
    return ModelBundle(
        model=net,
        spec=spec,
        name=Path(src).stem if Path(src).suffix else src,
        weights_name=entry.name if entry else None,
        weights_path=path,
        weights_sha256=sha256_file(path),
        meta=meta,
    )
