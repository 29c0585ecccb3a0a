"""Which backend runs a network: ``torch``, ``onnxruntime`` or ``openvino``, asked for by name or ``auto``.

:func:`choose_backend` turns the recipe's ``runtime.backend`` and ``runtime.amp`` into a :class:`BackendChoice`
(backend and the precision it computes in) for a network on a device. ONNX Runtime and OpenVINO run on the
CPU only (a CUDA device with either is a :class:`~hrstream.errors.ConfigError`); ONNX Runtime computes in fp32,
OpenVINO in fp32 or, on CPUs with native bf16, bf16.

``amp`` names the precision for every backend: ``auto`` is the best one the device and backend have (bf16 on
CPUs with native bf16 where the backend runs it, else fp32), ``off`` is fp32, ``bf16`` / ``fp16`` must be
what the backend runs. ``int8`` runs a pose network quantized in OpenVINO (:mod:`hrstream.runtime.quantize`) on
the CPU, with ``--backend openvino`` or ``auto``; torch, ONNX Runtime or a GPU with ``int8`` is a
:class:`~hrstream.errors.ConfigError` naming the fix. Other networks of the same run (segmentation) compute at
``auto``'s precision, with a warning. ``auto`` never picks int8 by itself (``docs/performance.md``, "int8 on the
CPU").

``auto`` on a CUDA device is torch. On a CPU it decides by the model family (``MODEL.NAME``) and the CPU's
capabilities, never by a CPU model's name (:data:`AUTO_RULES`, figures in ``docs/performance.md``):

============== ======================================== ==========================================
family         CPU with native bf16 (``amp`` auto/bf16) fp32 (no native bf16, or ``amp: off``)
============== ======================================== ==========================================
``litehrnet``  openvino bf16                            onnxruntime
``pose_hrnet`` openvino bf16 with AMX, else torch        torch
others         torch                                    torch
============== ======================================== ==========================================

Where the chosen library is not installed, ``auto`` falls back to torch and says so; the log names the choice
and its reason either way.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from hrstream.errors import ConfigError
from hrstream.runtime.cpu import cpu_has_amx, cpu_has_native_bf16
from hrstream.runtime.precision import resolve_amp

__all__ = [
    "AUTO_RULES",
    "BACKEND_CHOICES",
    "BackendChoice",
    "BackendRequest",
    "choose_backend",
    "cpu_has_amx",
]

log = logging.getLogger(__name__)

BackendRequest = Literal["torch", "onnxruntime", "openvino", "auto"]
BACKEND_CHOICES: tuple[str, ...] = get_args(BackendRequest)
#: The library each backend needs, and the extra that installs it.
_LIBRARY = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}

#: ``auto`` on a CPU: (model family, precision class) -> backend. Precision classes: ``"bf16+amx"`` (bf16 wanted,
#: the CPU has AMX), ``"bf16"`` (bf16 wanted, native AVX512-BF16 without AMX), ``"fp32"``. Missing: torch.
#: Crops/s behind each entry (docs/performance.md, "Which backend `auto` picks"): Lite-HRNet-18 at batch 1 / 16,
#: 2-core Xeon with AMX: OpenVINO bf16 102 / 148 against torch 30 / 62; 2-core AMD EPYC Zen 4 (AVX512-BF16, no
#: AMX): OpenVINO bf16 105 and ONNX Runtime fp32 83 / 74 against torch 11-17 / 30-51. HRNet-W32 on the Xeon
#: with AMX: OpenVINO bf16 91 / 93 against torch 15 / 19; on the Zen 4: torch bf16 20, ONNX Runtime 14,
#: OpenVINO 14.
AUTO_RULES: dict[tuple[str, str], str] = {
    ("litehrnet", "bf16+amx"): "openvino",
    ("litehrnet", "bf16"): "openvino",
    ("litehrnet", "fp32"): "onnxruntime",
    ("pose_hrnet", "bf16+amx"): "openvino",
}


@dataclass(frozen=True)
class BackendChoice:
    """A backend and the precision it computes in (``"fp32"``, ``"bf16"``, torch only ``"fp16"``, OpenVINO only
    ``"int8"``), with the reason, for the log."""

    name: Literal["torch", "onnxruntime", "openvino"]
    precision: Literal["fp32", "bf16", "fp16", "int8"]
    reason: str

    @property
    def amp(self) -> str:
        """torch's autocast setting for this precision (``"off"`` for fp32)."""
        return "off" if self.precision == "fp32" else self.precision


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(_LIBRARY[backend][0]) is not None


def _family(model: nn.Module) -> str:
    spec = getattr(model, "spec", None)
    return str(getattr(spec, "name", type(model).__name__))


def _wanted_precision(amp: str, device: torch.device, flags: Iterable[str] | None) -> str:
    """``amp`` as a precision: ``auto`` is :func:`~hrstream.runtime.engine.amp_default`'s choice."""
    resolved = resolve_amp(amp, device, cpu_flags=flags)
    return "fp32" if resolved == "off" else resolved


def _explicit(name: str, amp: str, device: torch.device, flags: Iterable[str] | None) -> BackendChoice:
    """A backend named by the user, with the precision ``amp`` asks of it."""
    if device.type != "cpu":
        raise ConfigError(
            f"--backend {name} runs on the CPU, not on {device}; use --device cpu, or --backend torch on {device}"
        )
    a = str(amp).strip().lower()
    if name == "onnxruntime":
        if a not in ("auto", "off"):
            raise ConfigError(
                f"--backend onnxruntime computes in fp32, not --amp {amp}; use --amp off or auto "
                "(or --backend openvino for bf16)"
            )
        return BackendChoice("onnxruntime", "fp32", "asked for (fp32)")
    if a == "fp16":
        raise ConfigError("--backend openvino runs fp32 or bf16, not --amp fp16; use --amp off, bf16 or auto")
    precision = "bf16" if a == "bf16" or (a == "auto" and cpu_has_native_bf16(flags)) else "fp32"
    return BackendChoice("openvino", precision, f"asked for ({precision})")  # type: ignore[arg-type]


def _int8(name: str, device: torch.device) -> BackendChoice:
    """``--amp int8`` for a pose network: OpenVINO on the CPU, or a one-line error naming the fix."""
    if device.type != "cpu":
        raise ConfigError(
            f"--amp int8 runs on the CPU (OpenVINO), not on {device}; use --device cpu, or --amp auto"
        )
    if name in ("torch", "onnxruntime"):
        raise ConfigError(
            f"--amp int8 runs in OpenVINO, not --backend {name}; use --backend openvino (or auto)"
        )
    if name == "auto" and not _installed("openvino"):
        raise ConfigError(
            "--amp int8 runs in OpenVINO, which is not installed: pip install 'hrstream[openvino]'"
        )
    return BackendChoice(
        "openvino", "int8", "asked for (int8)" if name == "openvino" else "auto: int8 runs in OpenVINO"
    )


def choose_backend(
    backend: str,
    model: nn.Module,
    device: torch.device,
    amp: str = "auto",
    *,
    cpu_flags: Iterable[str] | None = None,
) -> BackendChoice:
    """The backend and precision that run ``model`` on ``device``.

    Args:
        backend: ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` (see the module docstring).
        model: the network (its ``spec.name`` is the family ``auto`` decides by).
        device: the resolved device.
        amp: ``auto``, ``off``, ``fp16``, ``bf16`` or ``int8``.
        cpu_flags: decide for a CPU with these ``/proc/cpuinfo`` flags (native bf16: ``avx512_bf16`` or
            ``amx_bf16``; AMX: ``amx_tile`` and ``amx_bf16``); default: this machine's CPU.

    Raises:
        ConfigError: an unknown backend or ``amp``, a CPU backend on a GPU, or a precision the backend does not
            run.
    """
    name = str(backend).strip().lower()
    if name not in BACKEND_CHOICES:
        raise ConfigError(f"--backend {backend!r} is not one of {', '.join(BACKEND_CHOICES)}")
    flags = None if cpu_flags is None else frozenset(cpu_flags)
    if str(amp).strip().lower() == "int8":
        task = getattr(getattr(model, "spec", None), "task", None)
        if task == "pose":
            return _int8(name, device)
        log.warning(
            "--amp int8 quantizes pose networks; %s (%s) computes at --amp auto", _family(model), task
        )
        amp = "auto"
    precision = _wanted_precision(amp, device, flags)
    if name == "torch":
        return BackendChoice("torch", precision, "asked for")  # type: ignore[arg-type]
    if name != "auto":
        return _explicit(name, amp, device, flags)
    family = _family(model)
    if device.type != "cpu":
        return BackendChoice("torch", precision, f"auto: {device.type} runs torch")  # type: ignore[arg-type]
    if precision == "bf16":
        klass = "bf16+amx" if cpu_has_amx(flags) else "bf16" if cpu_has_native_bf16(flags) else "emulated"
    else:
        klass = precision
    pick = AUTO_RULES.get((family, klass), "torch")
    why = f"auto: {family} with {_describe(klass)}"
    if pick != "torch" and not _installed(pick):
        module, extra = _LIBRARY[pick]
        return BackendChoice(
            "torch",
            precision,  # type: ignore[arg-type]
            f"{why} would run {pick}, but '{module}' is not installed (pip install 'hrstream[{extra}]')",
        )
    return BackendChoice(pick, precision, why)  # type: ignore[arg-type]


def _describe(klass: str) -> str:
    return {
        "bf16+amx": "bf16 on a CPU with AMX",
        "bf16": "bf16 on a CPU with AVX512-BF16 (no AMX)",
        "emulated": "bf16 asked for on a CPU without native bf16",
        "fp32": "fp32",
        "fp16": "fp16",
    }[klass]
