"""Where a network runs and at what precision: the device spelling (``auto``, ``cpu``, ``cuda:N``) and the
``--amp`` choice resolved for it (``auto``: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32).

Held apart from :mod:`hrstream.runtime.engine` so that the backend choice
(:mod:`hrstream.runtime.backend_choice`), which the engine consults, can resolve precisions without importing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

from hrstream.errors import ConfigError
from hrstream.runtime.cpu import cpu_has_native_bf16

__all__ = ["AmpMode", "amp_default", "resolve_amp", "resolve_device"]

#: ``--amp``: ``auto`` resolves per device; ``int8`` is OpenVINO's quantized pose network (no torch autocast).
AmpMode = Literal["auto", "off", "fp16", "bf16", "int8"]


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (first CUDA device if any, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ConfigError: unknown spelling, or CUDA requested where none (or not that index) exists.
    """
    s = str(spec).strip().lower()
    if s == "auto":
        return (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {s} requested but no CUDA device is available; use --device cpu or auto"
            )
        try:
            dev = torch.device(s)
        except RuntimeError as exc:
            raise ConfigError(f"--device {spec!r} is not valid; use cpu, auto, cuda or cuda:N") from exc
        index = 0 if dev.index is None else dev.index
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(
                f"--device {s} requested but only {count} CUDA device(s) exist; use cuda:0..{count - 1}"
            )
        return torch.device("cuda", index)
    raise ConfigError(f"--device {spec!r} is not one of auto, cpu, cuda, cuda:N")


def amp_default(device: torch.device | str, *, cpu_flags: Iterable[str] | None = None) -> str:
    """The precision ``amp="auto"`` picks: ``"fp16"`` on CUDA; on the CPU ``"bf16"`` where the CPU has native
    bf16 (AVX512-BF16/AMX, :func:`~hrstream.runtime.cpu.cpu_has_native_bf16`: about 2x faster for HRNet-W32),
    else ``"off"`` (emulated bf16 is several times slower than fp32). ``cpu_flags``: the ``/proc/cpuinfo``
    flags of the CPU to decide for (default: this one's, as torch probes them).

    Reduced precision is on by default only because it keeps results: with the trained shipped models, bf16
    and fp16 autocast keep 100% of visible keypoints within one heatmap pixel of fp32 and >= 99.9% of label-map
    pixels equal (tests/test_shipped_models.py; the rule is >= 99% and >= 99.5%).
    """
    if torch.device(device).type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16(cpu_flags) else "off"


def resolve_amp(amp: str, device: torch.device, *, cpu_flags: Iterable[str] | None = None) -> str:
    """Turns ``amp`` (``auto``/``off``/``fp16``/``bf16``) into a concrete choice for ``device`` (``cpu_flags``:
    see :func:`amp_default`).

    Raises:
        ConfigError: unknown value, or bf16 on a GPU without bf16 support.
    """
    a = str(amp).strip().lower()
    if a == "auto":
        return amp_default(device, cpu_flags=cpu_flags)
    if a == "int8":
        raise ConfigError(
            "--amp int8 is no torch autocast: it runs pose networks in OpenVINO on the CPU; use --backend "
            "openvino or auto with --device cpu"
        )
    if a not in ("off", "fp16", "bf16"):
        raise ConfigError(f"--amp {amp!r} is not one of auto, off, fp16, bf16")
    if a == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--amp bf16 requested but {device} has no bf16 support; use --amp fp16 or off")
    return a
