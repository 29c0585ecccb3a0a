"""Inputs of the runtime benchmark that cannot be downloaded here, made locally.

* Random weights (speed only: a convolution costs the same whatever its weights) saved as safetensors.
* Synthetic person boxes in the COCO results format (``image_id`` = frame index, ``bbox`` = ``[x, y, w, h]``
  pixels), because no detector weights are available offline. The boxes are person-sized and drift
  slowly so the tracker sees plausible motion; the benchmark measures speed, not accuracy.
* The first N frames of a clip, remuxed without re-encoding (the same bytes the decoder would read).
* A description of the machine (CPU model, cores, native bf16).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from hrstream.runtime import amp_default, cpu_flags, cpu_has_native_bf16
from hrstream.runtime.cpu import NATIVE_BF16_FLAGS

log = logging.getLogger(__name__)

__all__ = [
    "cpu_description",
    "cpu_line",
    "synthetic_boxes",
    "trim_clip",
    "write_detections",
    "write_random_weights",
]


def write_random_weights(config: str, path: Path, *, seed: int = 0) -> Path:
    """Save the randomly initialised network of a registered ``config`` to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    from hrstream.models import from_config

    torch.manual_seed(seed)
    net = from_config(config)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def synthetic_boxes(index: int, people: int, width: int, height: int) -> np.ndarray:
    """Person boxes of frame ``index``: ``float32 (people, 4)`` xyxy pixels, side by side, not overlapping.

    Each box is about 55% of the frame height, 0.42 as wide as tall (narrower when many people share the
    width), and sways sideways by a few percent of its slot with a period of about 3 s at 30 fps.
    """
    slot = width / max(1, people)
    bh = 0.55 * height
    bw = min(0.42 * bh, 0.8 * slot)
    boxes = np.empty((people, 4), np.float32)
    for i in range(people):
        phase = 2.0 * math.pi * (index / 90.0 + i / max(1, people))
        cx = (i + 0.5) * slot + 0.05 * slot * math.sin(phase)
        cy = 0.55 * height + 0.01 * height * math.cos(phase)
        boxes[i] = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height - 1)
    return boxes


def write_detections(path: Path, frames: int, people: int, width: int, height: int) -> Path:
    """Write :func:`synthetic_boxes` of ``frames`` frames as a COCO results-format JSON list."""
    dets: list[dict[str, Any]] = []
    for f in range(frames):
        for x0, y0, x1, y1 in synthetic_boxes(f, people, width, height).tolist():
            dets.append({"image_id": f, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 0.9})
    path.write_text(json.dumps(dets))
    return path


def trim_clip(src: str | Path, dst: Path, frames: int) -> Path:
    """Copy the packets of the first ``frames`` frames in presentation order of ``src`` into ``dst``; no
    re-encoding.

    With B-frames, decode order is not presentation order (a clip coded I P B B stores the frames shown as 0, 3,
    1, 2 in that order), so the first N packets are not the first N frames. The copy keeps the shortest run of
    packets, in decode order, whose frames are exactly the first M >= N frames shown: M = N where the two orders
    meet after N frames, else the next point where they do (a frame shown after the N-th can be needed to decode
    it; at most the reorder depth more). Every kept packet only references kept packets, so the copy decodes to
    frames 0 .. M-1 of ``src``. Audio is not copied.
    """
    with av.open(str(src)) as inp:
        pts = [p.pts for p in inp.demux(inp.streams.video[0]) if p.dts is not None and p.pts is not None]
    shown = sorted(pts)
    keep, latest = len(pts), None
    for k, t in enumerate(pts, start=1):
        latest = t if latest is None else max(latest, t)
        if k >= frames and latest == shown[k - 1]:  # the first k packets are the first k frames shown
            keep = k
            break
    with av.open(str(src)) as inp, av.open(str(dst), mode="w", format="mp4") as out:
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        n = 0
        for pkt in inp.demux(stream):
            if pkt.dts is None or pkt.pts is None:
                continue
            if n >= keep:
                break
            pkt.stream = ostream
            out.mux(pkt)
            n += 1
    if n > frames:
        log.info("%d frames asked for; the first %d shown end where decode order meets them", frames, n)
    log.info("trimmed %s to its first %d frames -> %s", src, n, dst)
    return dst


#: ``/proc/cpuinfo`` flags of int8 dot products (VNNI) and AMX tiles, printed with every table.
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
AMX_FLAGS = frozenset({"amx_tile", "amx_bf16", "amx_int8"})


def cpu_description() -> dict[str, Any]:
    """CPU model name (``lscpu``), usable cores, native bf16 support (and the CPU flags that say so), the int8
    (VNNI) and AMX flags, the precision ``--amp auto`` picks on this CPU and torch's CPU kernel level."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {
        "model_name": model,
        "usable_cores": cores,
        "native_bf16": cpu_has_native_bf16(),
        "bf16_flags": sorted(cpu_flags() & NATIVE_BF16_FLAGS),
        "vnni_flags": sorted(cpu_flags() & INT8_FLAGS - {"amx_int8"}),
        "amx_flags": sorted(cpu_flags() & AMX_FLAGS),
        "amp_auto": amp_default("cpu"),  # the precision `--amp auto` picks on this CPU
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def cpu_line(machine: dict[str, Any]) -> str:
    """The machine in one line, printed with every table: ``CPU: MODEL, N cores; bf16: ...; VNNI: ...; AMX: ...``,
    the precision ``--amp auto`` picks, torch's kernel level and the load average."""

    def flags(key: str) -> str:
        return ", ".join(machine.get(key) or []) or "no"

    load = machine.get("load_avg_1m")
    return (
        f"CPU: {machine['model_name']}, {machine['usable_cores']} cores; bf16: {flags('bf16_flags')}; VNNI: "
        f"{flags('vnni_flags')}; AMX: {flags('amx_flags')} (--amp auto picks {machine['amp_auto']}; torch kernels "
        f"{machine['torch_cpu_capability']}); load avg (1 min) at start "
        f"{'n/a' if load is None else f'{load:.2f}'}"
    )
