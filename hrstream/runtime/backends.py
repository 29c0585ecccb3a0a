"""CPU inference backends that run the network's exported ONNX graph: ONNX Runtime and OpenVINO.

A backend is built from a loaded torch network (pose or seg): the network is exported with
:func:`hrstream.models.export.export_onnx` (the code behind ``hrstream export-model``) into the cache,
``cache_dir()/onnx/<fingerprint>_<C>x<H>x<W>_opset<N>.onnx``, where the fingerprint hashes the config and
every tensor of the state dict (the weights) and the batch axis stays dynamic, so one file serves every
batch size. The file records the fingerprint in its metadata; a later build with the same weights and input
shape reuses it, and a file under that name that holds another network, or cannot be read, is exported again.

Each build then checks the backend once against torch fp32 on a seeded random batch of two, per output, by
relative L2 error (``|out - ref| / |ref|``): below ``1e-4`` in fp32. In bf16 (OpenVINO only) the bound is
twice torch's own bf16 autocast error on the same batch, and at least ``5e-2``: bf16 keeps 8 significant
bits, the error adds up over the network's depth and, with random inputs (and random weights), reaches 10-25%
of the heatmaps' norm for torch itself; trained networks keep their keypoints
(``tests/test_shipped_models.py``). A backend that fails the check raises
:class:`~hrstream.errors.ConfigError`.

A backend is an ``nn.Module`` without parameters whose ``forward(x)`` takes the normalised float32
``(N, C, H, W)`` batch the torch network takes (on the CPU, any memory layout, ``H`` and ``W`` as exported)
and returns the same float32 output(s) as CPU tensors, so it stands in for the network inside
:class:`~hrstream.runtime.engine.InferenceEngine` (use it there with ``device="cpu"`` and ``amp="off"``: the
backend's own ``precision`` decides). Both libraries are optional extras, imported only when a backend is
built: ``pip install 'hrstream[onnx]'`` or ``'hrstream[openvino]'``.

bf16 runs only where the CPU has it natively (AVX512-BF16 or AMX:
:func:`~hrstream.runtime.cpu.cpu_has_native_bf16`);
emulated bf16 is slower than fp32. OpenVINO picks bf16 by itself on such CPUs, so fp32 is asked for
explicitly.

int8 (OpenVINO only, pose networks) runs the graph quantized by NNCF on calibration crops
(:mod:`hrstream.runtime.quantize`, cached beside the graph), its floating-point rest in bf16 where the CPU has
it natively. Its check runs on crops of its calibration set (random inputs lie outside the calibrated ranges)
and allows a relative L2 error of ``0.25``, or four times torch's own bf16 error on the same crops where that is
larger: the shipped models' int8 error there is 0.03-0.04 (bf16: 0.004-0.005) and keeps 99% of their keypoints
within one heatmap pixel (``docs/accuracy.md``), while a broken quantization (Lite-HRNet with its additions
quantized, 23% of keypoints moved) reaches 0.55; networks with random weights amplify any rounding (HRNet-W32:
int8 0.48, torch's own bf16 0.21), so only the second bound lets the speed benchmarks run them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from hrstream.errors import ConfigError
from hrstream.models.datasets_meta import IMAGENET_MEAN, IMAGENET_STD
from hrstream.runtime.cpu import cpu_has_native_bf16

__all__ = [
    "BACKENDS",
    "BackendName",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "Precision",
    "make_backend",
    "model_fingerprint",
    "onnx_cache_dir",
]

log = logging.getLogger(__name__)

BackendName = Literal["torch", "onnxruntime", "openvino"]
BACKENDS: tuple[str, ...] = get_args(BackendName)
Precision = Literal["fp32", "bf16", "int8"]
#: Relative L2 error allowed against torch fp32 by the build check: fp32; bf16 at least (see the module
#: docstring: also up to twice torch's own bf16 error on the same batch).
TOLERANCE: dict[str, float] = {"fp32": 1e-4, "bf16": 5e-2, "int8": 0.25}
#: int8 may also differ from torch by this many times torch's own bf16 error on the same crops.
INT8_OVER_BF16 = 4.0
FINGERPRINT_KEY = "hrstream.fingerprint"
_CHECK_BATCH = 2


def onnx_cache_dir() -> Path:
    """Where exported graphs are kept: ``cache_dir()/onnx`` (``$HRSTREAM_HOME``, ...; see :mod:`hrstream.models.hub`)."""
    from hrstream.models.hub import cache_dir

    return cache_dir() / "onnx"


def model_fingerprint(model: nn.Module) -> str:
    """sha256 (hex) of the model's config (``model.spec.raw``) and of every state-dict tensor (name, dtype,
    shape and bytes): equal for the same network with the same weights."""
    h = hashlib.sha256()
    spec = getattr(model, "spec", None)
    h.update(json.dumps(getattr(spec, "raw", None), sort_keys=True, default=str).encode())
    h.update(type(model).__name__.encode())
    for name, t in model.state_dict().items():
        shape = t.shape
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _import(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"backend needs the Python package '{module}': pip install 'hrstream[{extra}]' (or use --backend torch)"
        ) from e


def _references(model: nn.Module, x: torch.Tensor, precision: str) -> tuple[tuple[torch.Tensor, ...], float]:
    """torch fp32 output(s) of ``model`` on ``x`` and the relative L2 error a backend may have against them
    (int8: before :func:`_own_bf16_error` is asked)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ref = model(x)
            refs = (ref,) if isinstance(ref, torch.Tensor) else tuple(ref)
    finally:
        model.train(was_training)
    allowed = TOLERANCE[precision]
    if precision == "bf16":
        allowed = max(allowed, 2 * _own_bf16_error(model, x, refs))
    return refs, allowed


def _own_bf16_error(model: nn.Module, x: torch.Tensor, refs: tuple[torch.Tensor, ...]) -> float:
    """torch's own bf16 autocast error on ``x`` (relative L2 to ``refs``, its worst output)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    finally:
        model.train(was_training)
    lows = (low,) if isinstance(low, torch.Tensor) else tuple(low)
    return max(_rel_l2(lo.float().numpy(), r) for lo, r in zip(lows, refs, strict=True))


def _rel_l2(out: np.ndarray, ref: torch.Tensor) -> float:
    r = ref.detach().float().cpu()
    return float((torch.from_numpy(np.asarray(out, dtype=np.float32)) - r).norm() / r.norm().clamp_min(1e-30))


class _OnnxBackend(nn.Module):
    """Export (or reuse) the ONNX graph of ``model``, load it into a runtime, check it against torch once."""

    name = "onnx"
    extra = "onnx"
    module_name = "onnxruntime"
    precisions: tuple[str, ...] = ("fp32",)

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: tuple[int, int] | None = None,
        precision: Precision = "fp32",
        threads: int | None = None,
        opset: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        calibration: Any = None,
    ) -> None:
        super().__init__()
        from hrstream.models.export import DEFAULT_OPSET, default_input_size, export_onnx

        if precision not in self.precisions:
            raise ConfigError(
                f"--backend {self.name} runs precision {' or '.join(self.precisions)}, not {precision!r}"
            )
        if precision == "bf16" and not cpu_has_native_bf16():
            raise ConfigError(
                f"--backend {self.name} bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); this one has "
                "neither: use fp32"
            )
        task = getattr(getattr(model, "spec", None), "task", None)
        if task not in ("pose", "seg"):
            raise ConfigError(
                f"--backend {self.name} runs pose and seg networks, not {task or type(model).__name__}"
            )
        if precision == "int8" and task != "pose":
            raise ConfigError(f"--amp int8 quantizes pose networks, not {task} networks; use --amp auto")
        _import(self.module_name, self.extra)
        self.precision = precision
        self.threads = int(threads) if threads else torch.get_num_threads()
        self.input_size = input_size or default_input_size(model)
        self.opset = opset or DEFAULT_OPSET
        h, w = self.input_size
        fingerprint = model_fingerprint(model)
        path = onnx_cache_dir() / f"{fingerprint[:24]}_3x{h}x{w}_opset{self.opset}.onnx"
        self.path = path
        int8 = precision == "int8"
        if not self._load_cached(path, fingerprint, load=not int8):
            started = time.perf_counter()
            export_onnx(
                model,
                path,
                input_size=self.input_size,
                opset=self.opset,
                metadata={FINGERPRINT_KEY: fingerprint},
            )
            log.info("exported %s in %.1f s", path, time.perf_counter() - started)
            if not int8:
                self._load(path)
        x = torch.randn(_CHECK_BATCH, 3, h, w, generator=torch.Generator().manual_seed(0))
        if int8:
            from hrstream.runtime.quantize import quantized_model

            quantized = quantized_model(
                path,
                fingerprint,
                model,
                input_size=self.input_size,
                mean=mean,
                std=std,
                calibration=calibration,
            )
            self.path = path = quantized.xml
            self._load(path)
            x = torch.from_numpy(quantized.check)
        refs, allowed = _references(model, x, precision)
        outs = self._run(x.numpy())
        self.many = len(refs) > 1
        worst = (
            max(_rel_l2(o, r) for o, r in zip(outs, refs, strict=True))
            if len(outs) == len(refs)
            else math.inf
        )
        if int8 and not worst <= allowed:  # a network that amplifies rounding: bf16 itself is far off
            allowed = max(allowed, INT8_OVER_BF16 * _own_bf16_error(model, x, refs))
        if not worst <= allowed:
            raise ConfigError(
                f"--backend {self.name} ({precision}) differs from torch by relative L2 {worst:.2e} "
                f"(allowed {allowed:.1e}) on {path.name}; "
                + ("use --amp auto, or calibrate on your own frames" if int8 else "use --backend torch")
            )
        self.check_error = worst
        log.info("%s backend (%s) from %s: relative L2 to torch %.2e", self.name, precision, path.name, worst)

    def _load_cached(self, path: Path, fingerprint: str, *, load: bool = True) -> bool:
        """Load ``path`` (or, without ``load``, only read it) when it is this network's graph (its recorded
        fingerprint); ``False`` when there is no such file or it is another network's, unreadable or truncated
        (it is then exported again)."""
        if not path.is_file():
            return False
        from hrstream.models.export import read_metadata

        try:
            if read_metadata(path).get(FINGERPRINT_KEY) != fingerprint:
                log.warning("cached ONNX file %s holds another network; exporting again", path)
                return False
            if load:
                self._load(path)
        except Exception as e:  # onnx / runtime parse errors have no common base class
            log.warning("cached ONNX file %s unusable (%s); exporting again", path, e)
            return False
        return True

    def _load(self, path: Path) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _run(self, x: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - overridden
        raise NotImplementedError

    def extra_repr(self) -> str:
        h, w = self.input_size
        return f"precision={self.precision}, threads={self.threads}, input=(N, 3, {h}, {w}), file={self.path.name}"

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Normalised float32 ``(N, 3, H, W)`` -> the network's float32 output(s), as CPU tensors."""
        if tuple(x.shape[-2:]) != tuple(self.input_size):
            h, w = self.input_size
            raise ValueError(f"{self.name} backend was exported for {h}x{w} inputs, got {tuple(x.shape)}")
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = tuple(torch.from_numpy(np.ascontiguousarray(o, dtype=np.float32)) for o in self._run(array))
        return outs if self.many else outs[0]


class OnnxRuntimeBackend(_OnnxBackend):
    """ONNX Runtime on the CPU (``CPUExecutionProvider``), fp32, ``threads`` intra-op threads."""

    name = "onnxruntime"
    extra = "onnx"
    module_name = "onnxruntime"

    def _load(self, path: Path) -> None:
        ort = _import("onnxruntime", self.extra)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self._session.run(None, {self._input: x}))


class OpenVinoBackend(_OnnxBackend):
    """OpenVINO on the CPU, fp32, (native only) bf16 or int8 (:mod:`hrstream.runtime.quantize`), latency mode."""

    name = "openvino"
    extra = "openvino"
    module_name = "openvino"
    precisions = ("fp32", "bf16", "int8")

    def _load(self, path: Path) -> None:
        ov = _import("openvino", self.extra)
        core = ov.Core()
        rest = "bf16" if cpu_has_native_bf16() else "f32"  # int8: what is left in floating point
        config = {
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16", "int8": rest}[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads,
        }
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self._request = self._compiled.create_infer_request()

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        result = self._request.infer({0: x})
        return [result[o] for o in self._compiled.outputs]


def make_backend(
    name: str,
    model: nn.Module,
    *,
    precision: Precision = "fp32",
    input_size: tuple[int, int] | None = None,
    threads: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    calibration: Any = None,
) -> nn.Module:
    """``model`` itself for ``"torch"``, else an :class:`OnnxRuntimeBackend` / :class:`OpenVinoBackend` of it.

    ``mean`` / ``std`` (the network's input normalisation) and ``calibration`` (a
    :class:`~hrstream.runtime.quantize.Calibration`, a path to frames, or ``None``: the synthetic clips) are
    what int8 calibrates on.

    Raises:
        ConfigError: unknown name (the known ones listed), a precision the backend does not run, bf16
            without native bf16, a missing extra, or a backend that differs from torch.
    """
    if name == "torch":
        return model
    classes: dict[str, type[_OnnxBackend]] = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}
    if name not in classes:
        raise ConfigError(f"--backend {name!r} is not one of {', '.join(BACKENDS)}")
    return classes[name](
        model,
        precision=precision,
        input_size=input_size,
        threads=threads,
        mean=mean,
        std=std,
        calibration=calibration,
    )
