"""Checkpoints in every published layout, loaded safely and strictly.

Layouts recognised (by their key names), all mapped onto the official key names:

========== =================================================================================================
official   official pose (flat keys, ``final_layer.*``) or segmentation (``model.`` prefix, optional
           ``state_dict`` wrapper, ``loss.*`` ignored, ``last_layer.*``)
mmpose1    MMPose 1.x: ``state_dict`` with ``backbone.*``, ``head.final_layer.*``; ``data_preprocessor.*``
           ignored
mmpose0    MMPose 0.x: ``backbone.*``, ``keypoint_head.final_layer.*``; HigherHRNet (``AEHigherResolutionHead``):
           ``keypoint_head.final_layers.*``, ``keypoint_head.deconv_layers.*``
mmseg      MMSegmentation FCN-HRNet: ``backbone.*``, ``decode_head.convs.0.conv`` (no bias: loaded with a zero
           bias into ``last_layer.0``), ``decode_head.convs.0.bn`` -> ``last_layer.1``,
           ``decode_head.conv_seg`` -> ``last_layer.3``
timm       timm's ImageNet HRNet and the official classification checkpoints (``incre_modules``/``classifier``):
           the backbone loads strictly; the classifier head is ignored, and so are the fuse layers of the last
           stage-4 module into branches the target does not output (a pose network outputs only the
           highest resolution); the loader names both. The task head stays at initialisation
fcos       hrstream's person detector (:mod:`hrstream.models.detection`): torchvision FCOS names,
           ``backbone.backbone.*`` (HRNet), ``backbone.*`` (HRFPN), ``head.classification_head.*`` ...
========== =================================================================================================

The MMPose layouts serve HRNet and Lite-HRNet alike: :mod:`hrstream.models.litehrnet` keeps the official
backbone names (found under ``backbone.``) and the head's ``final_layer``. MMPose's published Lite-HRNet
checkpoints are in the 0.x layout.

Files are read with ``torch.load(..., weights_only=True)`` (no pickle code runs) or safetensors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from hrstream.errors import WeightsError
from hrstream.models.higherhrnet import explain_mismatch

__all__ = [
    "LoadReport",
    "convert_state_dict",
    "describe_ignored",
    "detect_layout",
    "load_weights",
    "read_checkpoint",
]

log = logging.getLogger(__name__)

Layout = Literal["official", "mmpose1", "mmpose0", "mmseg", "timm", "fcos"]
_WRAPPERS = ("state_dict", "model", "module")
_TASK_HEADS = ("final_layer.", "last_layer.")
#: The ImageNet classifier on top of an HRNet backbone (timm and the official cls_hrnet).
_CLASSIFIER = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
_FUSE = re.compile(r"^(stage4\.\d+\.fuse_layers\.\d+)\.")


@dataclass
class LoadReport:
    """What :func:`load_weights` did: the layout it recognised and what it left at initialisation."""

    layout: Layout
    loaded: int
    ignored: list[str] = field(default_factory=list)
    left_at_init: list[str] = field(default_factory=list)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt`` (``weights_only=True``) or ``.safetensors`` file into a flat tensor dict.

    Raises :class:`WeightsError` naming the file when it is missing, not a checkpoint, or holds anything but
    tensors and plain containers (a pickle with code is refused without running it).
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: checkpoint file not found")
    if p.stat().st_size == 0:
        raise WeightsError(f"{p}: checkpoint file is empty")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = dict(load_file(str(p)))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{p}: not a valid safetensors file ({e})") from e
        if not tensors:
            raise WeightsError(f"{p}: the safetensors file holds no tensors")
        return tensors
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"{p}: refused or unreadable as a weights-only checkpoint ({first}); "
            "hrstream never runs pickled code: convert it to safetensors or a plain state dict"
        ) from e
    return unwrap(obj, str(p))


def unwrap(obj: Any, src: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Find the state dict in a checkpoint object (``{'state_dict': ...}``, ``{'model': ...}`` or flat)."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in _WRAPPERS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise WeightsError(f"{src}: no state dict of tensors found (top-level keys: {_head(obj)})")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_state_dict(obj: Mapping[str, Any]) -> bool:
    tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
    return tensors > 0 and tensors >= len(obj) // 2


def _head(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)[:6]
        return ", ".join(map(str, keys)) + (" ..." if len(obj) > 6 else "")
    return type(obj).__name__


def detect_layout(sd: Mapping[str, Any]) -> Layout:
    """Recognise a checkpoint's layout from its key names (see the module docstring)."""
    keys = list(sd)
    if any(k.startswith("incre_modules.") or k.startswith("classifier.") for k in keys):
        return "timm"
    if any(k.startswith("decode_head.") for k in keys):
        return "mmseg"
    if any(k.startswith("head.classification_head.") for k in keys):
        return "fcos"
    if any(k.startswith("head.") for k in keys):
        return "mmpose1"
    if any(k.startswith("keypoint_head.") for k in keys):
        return "mmpose0"
    if any(k.startswith("backbone.") for k in keys):
        raise WeightsError(
            "checkpoint has backbone.* keys but no known head (head.*, keypoint_head.*, decode_head.*)"
        )
    return "official"


def _strip(k: str, prefix: str) -> str:
    return k[len(prefix) :] if k.startswith(prefix) else k


def convert_state_dict(
    sd: Mapping[str, torch.Tensor], layout: Layout, model: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a checkpoint's keys onto the official names. Returns ``(state_dict, ignored_keys)``."""
    out: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    target = model.state_dict()
    # the stage-4 fuse layers the target has (one per output branch of each module)
    fuse_outputs = {m.group(1) for m in map(_FUSE.match, target) if m}
    for k, v in sd.items():
        new: str | None = k
        if layout == "official":
            new = None if k.startswith("loss.") else _strip(_strip(k, "module."), "model.")
        elif layout in ("mmpose1", "mmpose0"):
            if k.startswith("data_preprocessor."):
                new = None
            elif k.startswith("backbone."):
                new = k[len("backbone.") :]
            elif k.startswith(("head.", "keypoint_head.")):
                rest = k.split(".", 1)[1]
                # final_layer (top-down heatmap heads); final_layers + deconv_layers (AEHigherResolutionHead,
                # whose module names equal the official HigherHRNet's)
                if rest.startswith(("final_layer.", "final_layers.", "deconv_layers.")):
                    new = rest
        elif layout == "mmseg":
            if k.startswith("data_preprocessor.") or k.startswith("auxiliary_head."):
                new = None
            elif k.startswith("backbone."):
                new = k[len("backbone.") :]
            elif k.startswith("decode_head.convs.0.conv."):
                new = "last_layer.0." + k.rsplit(".", 1)[1]
            elif k.startswith("decode_head.convs.0.bn."):
                new = "last_layer.1." + k.rsplit(".", 1)[1]
            elif k.startswith("decode_head.conv_seg."):
                new = "last_layer.3." + k.rsplit(".", 1)[1]
        elif layout == "timm":
            fuse = _FUSE.match(k)
            unused_fuse = fuse is not None and fuse.group(1) not in fuse_outputs
            new = None if k.startswith(_CLASSIFIER) or unused_fuse else k
        if new is None:
            ignored.append(k)
        else:
            out[new] = v
    if layout == "mmseg" and "last_layer.0.weight" in out and "last_layer.0.bias" not in out:
        # MMSeg's ConvModule has no bias before its BN; the official head has one: zero is the same function.
        out["last_layer.0.bias"] = torch.zeros(out["last_layer.0.weight"].shape[0])
    return out, ignored


def describe_ignored(keys: list[str]) -> str:
    """The ignored keys by module (``classifier``, ``incre_modules``, ``stage4.0.fuse_layers.1``, ...)."""
    groups: dict[str, int] = {}
    for k in keys:
        fuse = _FUSE.match(k)
        group = fuse.group(1) if fuse else k.split(".", 1)[0]
        groups[group] = groups.get(group, 0) + 1
    return ", ".join(f"{g} ({n} tensors)" for g, n in groups.items())


def _limit(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" ... ({len(names)} in all)" if len(names) > n else "")


def load_weights(model: nn.Module, source: str | Path | Mapping[str, Any]) -> LoadReport:
    """Load a checkpoint (path or state dict, any layout above) into ``model`` strictly.

    Raises :class:`WeightsError` naming missing, unexpected and mis-shaped keys. For the ``timm`` layout the
    task head is expected to be missing: it stays at initialisation; the report's ``ignored`` (the classifier
    head, stage-4 fuse layers into branches the model does not output) and ``left_at_init`` are logged.
    """
    src = str(source) if isinstance(source, (str, Path)) else "<state dict>"
    sd = read_checkpoint(source) if isinstance(source, (str, Path)) else unwrap(source, src)
    layout = detect_layout(sd)
    converted, ignored = convert_state_dict(sd, layout, model)
    target = model.state_dict()
    missing = [k for k in target if k not in converted]
    unexpected = [k for k in converted if k not in target]
    shapes = [
        f"{k} {tuple(converted[k].shape)} vs model {tuple(target[k].shape)}"
        for k in converted
        if k in target and converted[k].shape != target[k].shape
    ]
    left_at_init: list[str] = []
    if layout == "timm":
        # ImageNet weights carry no task head: only the head may stay at initialisation.
        left_at_init = [k for k in missing if k.startswith(_TASK_HEADS)]
        missing = [k for k in missing if not k.startswith(_TASK_HEADS)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_limit(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_limit(unexpected)}")
    if shapes:
        problems.append(f"mis-shaped keys: {_limit(shapes)}")
    if problems:
        hint = explain_mismatch(target, converted)
        raise WeightsError(
            f"{src} ({layout} layout) does not fit {type(model).__name__}: "
            + (f"{hint}; " if hint else "")
            + "; ".join(problems)
        )
    model.load_state_dict(converted, strict=not left_at_init)
    if layout == "timm":
        log.warning(
            "%s: loaded the ImageNet backbone (timm layout); ignored: %s; left at initialisation: %s",
            src,
            describe_ignored(ignored) or "nothing",
            _limit(sorted({k.rsplit(".", 2)[0] for k in left_at_init})) or "nothing",
        )
    return LoadReport(layout=layout, loaded=len(converted), ignored=ignored, left_at_init=left_at_init)
