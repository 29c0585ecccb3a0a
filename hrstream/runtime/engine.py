"""The inference engine: device choice, normalisation on the device, AMP, and overlapped CUDA copies.

:class:`InferenceEngine` wraps an ``nn.Module`` that takes a normalised ``float32 (N, C, H, W)`` batch.
Callers hand it raw ``uint8 (N, H, W, C)`` batches (RGB, as decoded); the engine copies the bytes to the
device (4x fewer bytes than float) and there divides by 255, subtracts ``mean``, divides by ``std`` and
makes the layout NCHW (channels_last in memory when enabled). Outputs are always ``float32``.

On CUDA, :meth:`InferenceEngine.submit` overlaps transfer and compute: each of (at most) two in-flight
slots owns a pinned host input buffer, a device input buffer and pinned host output buffers, allocated
once and grown only when a larger batch arrives. The host-to-device copy runs on a copy stream, the model
on a compute stream that waits for the copy's event, and the device-to-host copy of the outputs is queued
on the compute stream with an event that :meth:`InferenceHandle.result` waits on. On CPU, ``submit`` runs
synchronously and returns a finished handle with the same API.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hrstream.errors import ConfigError
from hrstream.runtime.precision import resolve_device

__all__ = [
    "BatchInput",
    "Chunk",
    "InferenceEngine",
    "InferenceHandle",
    "Output",
    "bucket_size",
    "configure_cpu_threads",
    "normalize_uint8",
    "usable_cpu_count",
]

logger = logging.getLogger(__name__)

_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: A model output: one tensor, or a tuple of tensors (for models with several heads).
Output = torch.Tensor | tuple[torch.Tensor, ...]
#: uint8 ``(N, H, W, C)`` as numpy or torch, or a sequence of ``(H, W, C)`` uint8 arrays of one shape.
BatchInput = np.ndarray | torch.Tensor | Sequence[np.ndarray]


@dataclass(frozen=True)
class Chunk:
    """One network call an estimator asks for: ``inputs`` ``uint8 (N, H, W, 3)`` RGB on the host (the engine
    normalises them on its device) or, with ``normalized``, a normalised ``float32 (N, 3, H, W)`` tensor already
    on the device."""

    inputs: np.ndarray | torch.Tensor
    normalized: bool = False


def usable_cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configure_cpu_threads(reserved: int) -> int:
    """Give torch all cores but ``reserved`` and return the number of threads set.

    Video decoding and encoding run in their own threads (FFmpeg's too); on machines with more than two
    cores ``reserved`` cores are left to them so the model and the codecs do not fight. On one or two cores
    nothing is reserved: there the network is ~98% of the work (docs/performance.md) and two torch threads
    ran HRNet-W32 at 5.8 crops/s against 3.6 with one, while the codecs need a few percent of a core.
    """
    cores = usable_cpu_count()
    n = cores if cores <= 2 else max(1, cores - int(reserved))
    torch.set_num_threads(n)
    logger.info("torch uses %d CPU thread(s) of %d (%d left to decode/encode)", n, cores, cores - n)
    return n


def bucket_size(n: int) -> int:
    """The batch size a batch of ``n`` is padded to with ``pad_batches``: the next power of two (1, 2, 4, 8, ...),
    so a pipeline's varying batches take a few sizes only."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def normalize_uint8(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, channels_last: bool = True
) -> torch.Tensor:
    """``uint8 (N, H, W, C)`` RGB -> ``float32 (N, C, H, W)`` ``(x / 255 - mean) / std`` on ``x``'s device.

    ``mean`` / ``std`` are ``float32 (1, C, 1, 1)`` on that device. With ``channels_last`` the result keeps NHWC
    memory (a view of the permuted input, then converted), else it is made contiguous NCHW.
    """
    x = x.permute(0, 3, 1, 2)  # a view; for contiguous NHWC input this is channels_last memory
    x = x.float() if channels_last else x.contiguous().float()
    return x.div_(255.0).sub_(mean).div_(std)


def _as_tuple(out: Any) -> tuple[tuple[torch.Tensor, ...], bool]:
    if isinstance(out, torch.Tensor):
        return (out,), False
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
        return tuple(out), True
    raise TypeError(f"model output must be a tensor or a tuple of tensors, got {type(out).__name__}")


def _pack(tensors: Sequence[torch.Tensor], many: bool) -> Output:
    return tuple(tensors) if many else tensors[0]


def _check_uint8(batch: BatchInput, channels: int) -> np.ndarray | torch.Tensor:
    """Validates a raw batch; a sequence of frames is stacked into one ``(N, H, W, C)`` array."""
    if isinstance(batch, (list, tuple)):
        batch = np.stack(batch) if batch else np.zeros((0, 1, 1, channels), np.uint8)
    if not isinstance(batch, (np.ndarray, torch.Tensor)):
        raise TypeError(f"batch must be a numpy array or tensor, got {type(batch).__name__}")
    if batch.dtype not in (np.uint8, torch.uint8) or batch.ndim != 4 or batch.shape[3] != channels:
        raise ValueError(
            f"expected a uint8 (N, H, W, {channels}) batch (or normalized=True with a float NCHW tensor), "
            f"got {batch.dtype}{tuple(batch.shape)}"
        )
    return batch


class InferenceHandle:
    """The pending result of :meth:`InferenceEngine.submit`.

    ``result()`` waits for the copy back and returns host ``float32`` tensors (the model's structure:
    one tensor or a tuple), owned by the caller.
    """

    def __init__(self, outputs: Sequence[torch.Tensor], many: bool, event: Any = None) -> None:
        self._outputs = list(outputs)
        self._many = many
        self._event = event
        self._value: Output | None = None if event is not None else _pack(self._outputs, many)

    def done(self) -> bool:
        """True when ``result()`` will not block."""
        return self._value is not None or bool(self._event.query())

    def result(self) -> Output:
        """Wait if needed; returns the outputs as float32 CPU tensors."""
        if self._value is None:
            self._event.synchronize()
            # The pinned buffers belong to the engine's slot and are reused two submits later.
            self._value = _pack([t.clone() for t in self._outputs], self._many)
            self._outputs = []
        return self._value


class _Slot:
    """Reusable buffers of one in-flight CUDA job."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.host_in = torch.empty(0, dtype=torch.uint8)
        self.dev_in = torch.empty(0, dtype=torch.uint8, device=device)
        self.host_out: list[torch.Tensor] = []
        self.copied = torch.cuda.Event()
        self.handle: InferenceHandle | None = None

    def reclaim(self) -> None:
        """Waits for this slot's previous job and hands its outputs to its handle."""
        if self.handle is not None:
            self.handle.result()
            self.handle = None

    def host_input(self, shape: tuple[int, ...]) -> torch.Tensor:
        n = int(np.prod(shape))
        if self.host_in.numel() < n:
            logger.debug("growing pinned input buffer to %d bytes", n)
            self.host_in = torch.empty(n, dtype=torch.uint8, pin_memory=True)
            self.dev_in = torch.empty(n, dtype=torch.uint8, device=self.device)
        return self.host_in[:n].view(shape)

    def host_outputs(self, outs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        while len(self.host_out) < len(outs):
            self.host_out.append(torch.empty(0, dtype=torch.float32))
        views = []
        for i, o in enumerate(outs):
            if self.host_out[i].numel() < o.numel():
                self.host_out[i] = torch.empty(o.numel(), dtype=torch.float32, pin_memory=True)
            views.append(self.host_out[i][: o.numel()].view(o.shape))
        return views


class InferenceEngine:
    """Runs ``model`` on batches with normalisation on the device, optional AMP and channels_last.

    Args:
        model: takes ``float32 (N, C, H, W)`` normalised input; returns a tensor or tuple of tensors.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see :func:`resolve_device`).
        amp: ``"auto"`` (see :func:`amp_default`), ``"off"``, ``"fp16"`` or ``"bf16"`` autocast, or ``"int8"``
            (pose networks on the CPU in OpenVINO, quantized: :mod:`hrstream.runtime.quantize`).
        channels_last: NHWC memory layout for model and input (faster convolutions on CPU and GPU).
        compile: ``torch.compile`` the model; ``True`` for the default mode or a mode name string.
        mean, std: per-channel normalisation of ``x / 255`` (ImageNet RGB by default).
        backend: ``"torch"``, ``"onnxruntime"``, ``"openvino"`` (CPU only: the network's exported ONNX graph,
            :mod:`hrstream.runtime.backends`) or ``"auto"`` (by model family and CPU:
            :func:`~hrstream.runtime.backend_choice.choose_backend`). ``amp`` names the precision for every
            backend; ``channels_last`` and ``compile`` apply to torch only.
        pad_batches: append zero rows to each batch up to :func:`bucket_size` and drop their outputs, so the
            network sees a few batch sizes only (results are those of the batch alone: every row of the
            networks here is computed independently in eval mode; docs/performance.md measures whether it pays).
        calibration: what ``amp="int8"`` calibrates on: ``None`` (the synthetic world's clips), a path to a
            video, an image or a folder of them, or a :class:`~hrstream.runtime.quantize.Calibration`.

    ``backend`` and ``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"``, ``"int8"``) say what runs the network.

    Not thread-safe: call ``infer``/``submit`` from one thread (the pipeline's inference stage).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        amp: str = "auto",
        channels_last: bool = True,
        compile: bool | str = False,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        backend: str = "torch",
        pad_batches: bool = False,
        calibration: Any = None,
    ) -> None:
        from hrstream.runtime.backend_choice import choose_backend

        if len(mean) != len(std):
            raise ConfigError(f"mean has {len(mean)} values but std has {len(std)}; give one per channel")
        self.device = resolve_device(device)
        choice = choose_backend(backend, model, self.device, amp)
        self.backend: str = choice.name
        self.precision: str = choice.precision
        self.pad_batches = bool(pad_batches)
        if choice.name != "torch":
            from hrstream.runtime.backends import make_backend

            model = make_backend(
                choice.name,
                model.eval(),
                precision=choice.precision,  # type: ignore[arg-type]
                mean=mean,
                std=std,
                calibration=calibration,
            )
            channels_last = False  # the runtimes take contiguous NCHW arrays
            compile = False
        self.amp = choice.amp if choice.name == "torch" else "off"  # the runtime's own precision decides
        if backend != "torch":
            logger.info("backend %s (%s): %s", choice.name, choice.precision, choice.reason)
        self.channels_last = channels_last
        self.channels = len(mean)
        model = model.eval().to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._forward: Any = model
        if compile:
            mode = compile if isinstance(compile, str) else None
            self._forward = torch.compile(model, mode=mode)
        shape = (1, self.channels, 1, 1)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(shape)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(shape)
        self._slots: list[_Slot] = []
        self._next = 0
        if self.device.type == "cuda":
            self._copy_stream = torch.cuda.Stream(self.device)
            self._compute_stream = torch.cuda.Stream(self.device)
            self._slots = [_Slot(self.device) for _ in range(2)]
            torch.cuda.synchronize(self.device)
        logger.info(
            "inference engine on %s, backend=%s, precision=%s, channels_last=%s, pad_batches=%s",
            self.device,
            self.backend,
            self.precision,
            channels_last,
            self.pad_batches,
        )

    def __repr__(self) -> str:
        return (
            f"InferenceEngine(device={self.device}, backend={self.backend}, precision={self.precision}, "
            f"channels_last={self.channels_last}, pad_batches={self.pad_batches})"
        )

    # -- steps ---------------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``uint8 (N, H, W, C)`` on the device -> normalised ``float32 (N, C, H, W)`` (channels_last
        memory when enabled)."""
        return normalize_uint8(x, self._mean, self._std, channels_last=self.channels_last)

    def _run_model(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], bool]:
        n = int(x.shape[0])
        if self.pad_batches and 0 < n < bucket_size(n):
            x = torch.cat([x, x.new_zeros((bucket_size(n) - n, *x.shape[1:]))])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx: Any = contextlib.nullcontext()
        if self.amp != "off":
            ctx = torch.autocast(device_type=self.device.type, dtype=_AMP_DTYPES[self.amp])
        with torch.inference_mode(), ctx:
            outs, many = _as_tuple(self._forward(x))
            return tuple(o[:n].float() for o in outs), many

    def _check_normalized(self, batch: Any) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or not batch.is_floating_point() or batch.ndim != 4:
            raise ValueError("normalized=True needs a float (N, C, H, W) tensor")
        if batch.device != self.device:
            raise ValueError(f"normalized input is on {batch.device}, the engine on {self.device}")
        return batch

    # -- public API ----------------------------------------------------------------------------------
    def infer(self, batch: BatchInput | torch.Tensor, *, normalized: bool = False) -> Output:
        """Synchronous inference; returns float32 output(s) on the engine's device.

        Args:
            batch: ``uint8 (N, H, W, C)`` RGB (numpy, a torch tensor on any device, or a list of
                ``(H, W, C)`` arrays), or with ``normalized=True`` a normalised float ``(N, C, H, W)``
                tensor already on the engine's device.
        """
        with torch.inference_mode():
            if normalized:
                x = self._check_normalized(batch)
            else:
                raw = _check_uint8(batch, self.channels)
                t = torch.from_numpy(raw) if isinstance(raw, np.ndarray) else raw
                x = self.normalize(t.to(self.device))
            outs, many = self._run_model(x)
        return _pack(outs, many)

    def submit(self, batch: BatchInput | torch.Tensor, *, normalized: bool = False) -> InferenceHandle:
        """Queue a batch; ``handle.result()`` returns float32 CPU output(s). At most two are in flight
        on CUDA (a third submit first waits for the oldest); on CPU this runs synchronously."""
        if self.device.type != "cuda":
            outs, many = _as_tuple(self.infer(batch, normalized=normalized))
            return InferenceHandle([o.cpu() for o in outs], many)
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        slot.reclaim()
        current = torch.cuda.current_stream(self.device)
        with torch.inference_mode():
            if normalized:
                x = self._check_normalized(batch)
                self._compute_stream.wait_stream(current)
                x.record_stream(self._compute_stream)
                dev_in = None
            else:
                raw = _check_uint8(batch, self.channels)
                if isinstance(raw, torch.Tensor) and raw.device == self.device:
                    self._compute_stream.wait_stream(current)
                    raw.record_stream(self._compute_stream)
                    dev_in = raw
                else:
                    host = slot.host_input(tuple(raw.shape))
                    host.copy_(torch.from_numpy(raw) if isinstance(raw, np.ndarray) else raw)
                    dev_in = slot.dev_in[: host.numel()].view(host.shape)
                    with torch.cuda.stream(self._copy_stream):
                        dev_in.copy_(host, non_blocking=True)
                        slot.copied.record(self._copy_stream)
                    self._compute_stream.wait_event(slot.copied)
            with torch.cuda.stream(self._compute_stream):
                if dev_in is not None:
                    x = self.normalize(dev_in)
                outs, many = self._run_model(x)
                host_out = slot.host_outputs(outs)
                for h, o in zip(host_out, outs, strict=True):
                    h.copy_(o, non_blocking=True)
                done = torch.cuda.Event()
                done.record(self._compute_stream)
        slot.handle = InferenceHandle(host_out, many, done)
        return slot.handle

    def warmup(self, shape: tuple[int, int, int, int], iters: int = 2) -> None:
        """Runs ``iters`` zero batches of uint8 ``(N, H, W, C)`` ``shape`` (allocations, cuDNN choice,
        compilation) so the first real batch is not slow."""
        zeros = np.zeros(shape, np.uint8)
        for _ in range(iters):
            self.submit(zeros).result()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
