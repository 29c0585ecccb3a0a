"""What pose and segmentation training share: seeds and determinism, device and autocast, initialisation,
optimisers, data hashing, and saving weights (safetensors) with a JSON sidecar."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hrstream.errors import ConfigError
from hrstream.models.builder import resolve_config
from hrstream.models.config import NAMES, ModelSpec, parse_config

__all__ = [
    "task_spec",
    "end_epoch",
    "TrainResult",
    "autocast_for",
    "deterministic",
    "hash_files",
    "init_official",
    "make_optimizer",
    "resolve_device",
    "run_sidecar",
    "save_weights",
    "seed_everything",
    "seed_worker",
]

log = logging.getLogger(__name__)

AMP_MODES = ("off", "bf16", "fp16", "auto")


@dataclass
class TrainResult:
    """The outcome of one training run.

    Attributes:
        out_dir: the run folder. last_path / best_path: ``last.safetensors`` / ``best.safetensors`` in it.
        losses: the training loss of every optimiser step, in order.
        epoch_losses: the mean training loss of each epoch.
        metrics: the validation metrics of the last validation (``{}`` without validation data).
        best_metric: the best value of the selection metric (pose ``AP``, seg ``mIoU``; without validation
            data, minus the epoch loss).
        steps: optimiser steps taken. steps_per_s: their rate (data loading included). seconds: wall time.
    """

    out_dir: Path
    last_path: Path
    best_path: Path
    losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float = float("-inf")
    steps: int = 0
    steps_per_s: float = 0.0
    seconds: float = 0.0

    def stop_clock(self, t0: float) -> None:
        """Set ``seconds`` and ``steps_per_s`` from the ``time.perf_counter()`` value the run started at."""
        self.seconds = time.perf_counter() - t0
        self.steps_per_s = self.steps / self.seconds if self.seconds > 0 else 0.0


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and numpy from the worker's torch seed."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Turn on ``torch.use_deterministic_algorithms`` (warn-only for ops without a deterministic kernel) and
    cuDNN's deterministic mode for the ``with`` block; the previous settings come back afterwards."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic = prev[2]
        torch.backends.cudnn.benchmark = prev[3]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {device!r}: not a device; use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available here; use --device cpu")
    return dev


def autocast_for(amp: str, device: torch.device) -> tuple[contextlib.AbstractContextManager[Any], bool]:
    """``(autocast context, needs a GradScaler)`` for ``amp`` in ``off | bf16 | fp16 | auto``.

    ``auto`` is bf16 on CUDA and off on CPU; ``fp16`` is CUDA only (with loss scaling).
    """
    if amp not in AMP_MODES:
        raise ConfigError(f"amp {amp!r}: must be one of {', '.join(AMP_MODES)}")
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "off":
        return contextlib.nullcontext(), False
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp fp16 needs a CUDA device; use --amp bf16 on CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), amp == "fp16"


def init_official(model: nn.Module) -> None:
    """The official HRNet initialisation: conv weights ``N(0, 0.001)``, conv biases 0, BN weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def make_optimizer(
    model: nn.Module, name: str, lr: float, *, momentum: float = 0.9, wd: float = 0.0, nesterov: bool = False
) -> torch.optim.Optimizer:
    """``adam`` (the official pose recipe: no weight decay unless ``wd``) or ``sgd`` (momentum, ``wd``)."""
    name = name.lower()
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    raise ConfigError(f"optimizer {name!r}: must be adam or sgd (TRAIN.OPTIMIZER)")


def hash_files(paths: Iterable[Path]) -> str:
    """sha256 over the files' names and bytes, in the given order: the identity of a training set."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def save_weights(model: nn.Module, path: Path, sidecar: Mapping[str, Any]) -> None:
    """Write the model's state dict (official key names) to ``path`` (safetensors) and ``sidecar`` as JSON
    next to it (same stem, ``.json``). The config name is also stored in the safetensors metadata."""
    from safetensors.torch import save_file

    sd = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "config": str(sidecar.get("config", "")), "task": str(sidecar.get("task", ""))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(sd, str(tmp), metadata=meta)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(dict(sidecar), indent=2, sort_keys=True) + "\n")
    log.info("saved %s", path)


def run_sidecar(task: str, source: str, r: TrainResult, epoch: int, **fields: Any) -> dict[str, Any]:
    """The JSON sidecar of a saved checkpoint: task, config, epochs, steps, loss curve, metrics, versions and
    the run's ``fields`` (seed, batch size, lr, amp, device, init, data sha256, ...)."""
    import hrstream

    return {
        "task": task,
        "config": Path(source).stem if source.endswith((".yaml", ".yml")) else source,
        "config_source": source,
        "epochs": epoch + 1,
        "steps": r.steps,
        **fields,
        "loss_curve": {
            "epoch_mean": [round(v, 8) for v in r.epoch_losses],
            "step": [round(v, 8) for v in r.losses],
        },
        "metrics": dict(r.metrics),
        "hrstream_version": getattr(hrstream, "__version__", "unknown"),
        "torch_version": torch.__version__,
    }


def end_epoch(
    model: nn.Module,
    result: TrainResult,
    *,
    task: str,
    source: str,
    epoch: int,
    metrics: dict[str, float] | None,
    metric_name: str,
    run_info: Mapping[str, Any],
) -> None:
    """Close an epoch: keep the validation ``metrics`` (selection by ``metrics[metric_name]``; without
    validation by minus the epoch loss), write ``last`` and, when the score improved, ``best``."""
    if metrics is not None:
        result.metrics = metrics
        score = metrics[metric_name]
        log.info("epoch %d: loss %.6f, %s %.4f", epoch, result.epoch_losses[-1], metric_name, score)
    else:
        score = -result.epoch_losses[-1]
    sidecar = run_sidecar(task, source, result, epoch, **run_info)
    if score > result.best_metric:
        result.best_metric = score
        selected_by = metric_name if metrics is not None else "-loss"
        save_weights(model, result.best_path, {**sidecar, "selected_by": selected_by})
    save_weights(model, result.last_path, sidecar)


def task_spec(config: str | Path | Mapping[str, Any], task: str) -> ModelSpec:
    """Parse a config (registered name, YAML path or dict); :class:`ConfigError` unless it builds a ``task``
    network (``pose_hrnet`` / ``seg_hrnet`` / ``det_hrnet``)."""
    data, src = resolve_config(config)
    spec = parse_config(data, source=src)
    if spec.task != task:
        wanted = next(name for name, t in NAMES.items() if t == task)
        raise ConfigError(f"{src}: MODEL.NAME is {spec.name}; `train {task}` needs a {wanted} config")
    return spec


def train_section(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``TRAIN`` section (``{}`` when absent)."""
    t = cfg.get("TRAIN")
    return dict(t) if isinstance(t, Mapping) else {}
