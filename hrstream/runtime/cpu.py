"""What the CPU reports about itself: its feature flags and whether it computes in bf16 natively.

One place for both, used by the engine's ``--amp auto`` (:func:`hrstream.runtime.engine.amp_default`), by the
ONNX Runtime / OpenVINO backends (bf16 only on such CPUs) and by the benchmarks' machine description.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = ["AMX_FLAGS", "NATIVE_BF16_FLAGS", "cpu_flags", "cpu_has_amx", "cpu_has_native_bf16"]

#: ``/proc/cpuinfo`` flags of the x86 instructions that compute in bf16 natively (AVX512-BF16, AMX).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: ``/proc/cpuinfo`` flags of AMX's tiles computing in bf16 (Sapphire Rapids and later).
AMX_FLAGS = frozenset({"amx_tile", "amx_bf16"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (its ``flags`` line); empty where there is none."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_has_native_bf16(flags: Iterable[str] | None = None) -> bool:
    """True when the CPU computes in bf16 natively (AVX512-BF16 or AMX), so that torch's CPU kernels and
    OpenVINO run bf16 faster than fp32 (emulated bf16 is several times slower).

    ``flags``: decide from these ``/proc/cpuinfo`` flags alone (another CPU's, for tests and tools). Without
    them, asks torch's own CPU feature probe first (``torch.cpu._is_avx512_bf16_supported()`` /
    ``_is_amx_tile_supported()``, private but present since torch 2.3), then the ``/proc/cpuinfo`` flags.
    ``torch.backends.cpu.get_cpu_capability()`` cannot tell: it names the vector kernels torch dispatches to
    (``"AVX512"`` on an AVX512-BF16 machine), never bf16 support.
    """
    if flags is not None:
        return bool(NATIVE_BF16_FLAGS & frozenset(flags))
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    return bool(NATIVE_BF16_FLAGS & cpu_flags())


def cpu_has_amx(flags: Iterable[str] | None = None) -> bool:
    """True when the CPU has AMX tiles computing in bf16, where OpenVINO's bf16 runs HRNet-W32 several times
    faster than torch. ``flags``: decide from these ``/proc/cpuinfo`` flags alone (both of :data:`AMX_FLAGS`);
    without them, torch's own CPU feature probe answers (it also checks that the OS lets the process use the
    tiles)."""
    if flags is not None:
        return AMX_FLAGS.issubset(flags)
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe is not None and probe())
