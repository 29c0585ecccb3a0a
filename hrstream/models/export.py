"""Export a loaded network to ONNX, for ONNX Runtime, OpenVINO or TensorRT.

The file has one input, ``input``: ``(N, 3, H, W)`` float32 RGB normalised with the weights' mean/std, the
batch axis ``N`` dynamic, ``H`` and ``W`` fixed at export. Its outputs, by task:

========= ==================================================================================================
pose      ``heatmaps`` ``(N, K, H/4, W/4)`` (``pose_hrnet``, ``litehrnet``)
pose      bottom-up (``pose_higher_hrnet``): one output per stage, ``stage0`` ``(N, K + T, H/4, W/4)`` (heatmaps then
          tags), ``stage1`` ``(N, K, H/2, W/2)``, ...; metadata ``hrstream.method`` ``bottomup``. The input size
          is fixed at export: the short side's test size and the long side the frames will have (a multiple of
          64), e.g. ``512x896`` for 16:9 video at 512
seg       ``logits`` ``(N, C, H/4, W/4)`` (``seg_hrnet``)
det       the detector's backbone only, the HRFPN pyramid ``level0`` ... ``level{L-1}``: ``(N, C, H/s, W/s)`` with
          stride ``s = 4 * 2**i`` on the input the FCOS transform made (resized, normalised, padded); the FCOS
          head, its box decoding and NMS stay in torch
========= ==================================================================================================

The graph comes from ``torch.onnx.export`` (the ``torch.export``-based exporter; it needs the ``onnx``
extra: ``onnx``, ``onnxscript``). The file's ``metadata_props`` record ``hrstream.opset``, ``hrstream.method``,
``hrstream.task``, ``hrstream.input_size`` (``HxW``) and what the caller adds (model name, weights sha256,
mean and std); :func:`read_metadata` reads them back.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from hrstream.errors import ConfigError
from hrstream.io.records import new_temp_file

__all__ = [
    "DEFAULT_OPSET",
    "LoadedModel",
    "OnnxExport",
    "default_input_size",
    "export_bundle",
    "export_onnx",
    "read_metadata",
]

log = logging.getLogger(__name__)

#: The opset written by default: the lowest the ``torch.export``-based exporter emits, read by ONNX Runtime,
#: OpenVINO and TensorRT alike.
DEFAULT_OPSET = 18
INPUT_NAME = "input"
_INSTALL_HINT = "pip install 'hrstream[onnx]'"


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote. ``input_size`` is ``(H, W)``."""

    path: Path
    opset: int
    task: str
    input_name: str
    output_names: tuple[str, ...]
    input_size: tuple[int, int]
    metadata: dict[str, str] = field(default_factory=dict)


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"ONNX export needs the Python package '{module}': {_INSTALL_HINT}") from e


def default_input_size(model: nn.Module) -> tuple[int, int]:
    """``(H, W)`` the model's config names: ``MODEL.IMAGE_SIZE`` (pose) or ``TEST.IMAGE_SIZE`` (seg, det)."""
    spec = getattr(model, "spec", None)
    size = getattr(spec, "image_size", None)
    if size is None:
        where = getattr(spec, "source", type(model).__name__)
        raise ConfigError(f"{where}: the config gives no image size; pass the input size (--input-size HxW)")
    w, h = size
    return int(h), int(w)


class _Stages(nn.Module):
    """A bottom-up network's list of stage maps returned as a tuple (ONNX outputs)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(x))


class _Pyramid(nn.Module):
    """The detector's HRFPN with its ``OrderedDict`` of levels returned as a tuple (ONNX outputs)."""

    def __init__(self, fpn: nn.Module):
        super().__init__()
        self.fpn = fpn

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.fpn(x).values())


def _exportable(model: nn.Module) -> tuple[nn.Module, str, tuple[str, ...]]:
    """``(module to trace, task, output names)`` for a model built by :func:`~hrstream.models.from_config`."""
    spec = getattr(model, "spec", None)
    task = getattr(spec, "task", None)
    if task == "pose" and getattr(spec, "method", "topdown") == "bottomup":
        stages = 1 + int(spec.higher.deconv.num_deconvs)  # type: ignore[union-attr]
        # a wrapper takes the model's mode, which the export restores afterwards
        return _Stages(model).train(model.training), "pose", tuple(f"stage{i}" for i in range(stages))
    if task == "pose":
        return model, "pose", ("heatmaps",)
    if task == "seg":
        return model, "seg", ("logits",)
    if task == "det":
        fpn = model.backbone  # type: ignore[attr-defined]
        return _Pyramid(fpn).train(fpn.training), "det", tuple(f"level{i}" for i in range(int(fpn.num_outs)))
    raise ConfigError(
        f"cannot export {type(model).__name__}: expected a network built by hrstream.models.from_config "
        "(it carries .spec with the task)"
    )


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """The exporter's libraries log every graph rewrite at INFO; keep them for ``-v`` (DEBUG) only."""
    names = ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")
    saved = {n: logging.getLogger(n).level for n in names}
    if not log.isEnabledFor(logging.DEBUG):
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, Any] | None = None,
) -> OnnxExport:
    """Write ``model`` (weights loaded, any device/dtype: exported as float32 on the CPU) to the ONNX file
    ``path``, atomically (a temporary file renamed into place).

    Args:
        model: a network from :func:`~hrstream.models.from_config` (pose, seg, or a det_hrnet detector).
        input_size: ``(H, W)`` of the input; default: the config's (:func:`default_input_size`).
        opset: ONNX opset (18 or later).
        metadata: extra ``metadata_props`` (values written as strings).

    Raises:
        ConfigError: no input size known, an opset below 18, or the ``onnx`` extra is not installed.
    """
    if opset < DEFAULT_OPSET:
        raise ConfigError(f"--opset {opset}: the exporter writes opset {DEFAULT_OPSET} or later")
    _require("onnx")
    _require("onnxscript")
    h, w = input_size if input_size is not None else default_input_size(model)
    net, task, outputs = _exportable(model)
    first = next(net.parameters(), None)
    if first is not None and (first.device.type != "cpu" or first.dtype != torch.float32):
        net = copy.deepcopy(net).float().cpu()
    was_training = net.training
    net.eval()
    batch = torch.export.Dim("batch", min=1)
    example = torch.randn(2, 3, h, w)  # a batch of 2, so the exporter keeps the axis symbolic
    props = {
        "hrstream.opset": str(opset),
        "hrstream.task": task,
        "hrstream.method": str(getattr(getattr(model, "spec", None), "method", "topdown")),
        "hrstream.input_size": f"{h}x{w}",
        **{str(k): str(v) for k, v in (metadata or {}).items()},
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        chatter = io.StringIO()  # the exporter prints its progress; keep it for the debug log
        with contextlib.redirect_stdout(chatter), _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                net,
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(outputs),
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        log.debug("torch.onnx.export: %s", chatter.getvalue().strip())
    finally:
        net.train(was_training)
    if program is None:  # pragma: no cover - dynamo=True always returns the program
        raise RuntimeError("torch.onnx.export returned no program")
    program.model.metadata_props.update(props)
    written = int(program.model.opset_imports.get("", opset))
    fd, tmp = new_temp_file(out.parent, out.name)  # the umask's mode, as every output
    os.close(fd)
    try:
        program.save(tmp, external_data=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return OnnxExport(
        path=out,
        opset=written,
        task=task,
        input_name=INPUT_NAME,
        output_names=outputs,
        input_size=(h, w),
        metadata=props,
    )


class LoadedModel(Protocol):
    """A network with its weights and what they are (:class:`hrstream.models.bundle.ModelBundle`)."""

    model: nn.Module
    name: str
    weights_name: str | None
    weights_path: Path | None
    weights_sha256: str | None
    meta: dict[str, Any]


def export_bundle(
    bundle: LoadedModel,
    path: str | Path,
    *,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
) -> OnnxExport:
    """:func:`export_onnx` of a loaded model, recording its name, weights (name and sha256) and input
    normalisation (``hrstream.mean`` / ``hrstream.std``: JSON lists, RGB in 0-1 units) in the file."""
    weights = bundle.weights_name or (str(bundle.weights_path) if bundle.weights_path else "")
    metadata = {
        "hrstream.model": bundle.name,
        "hrstream.weights": weights,
        "hrstream.weights_sha256": bundle.weights_sha256 or "",
        "hrstream.mean": json.dumps([float(v) for v in bundle.meta.mean]),
        "hrstream.std": json.dumps([float(v) for v in bundle.meta.std]),
    }
    return export_onnx(bundle.model, path, input_size=input_size, opset=opset, metadata=metadata)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (without loading its weights)."""
    onnx = _require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
