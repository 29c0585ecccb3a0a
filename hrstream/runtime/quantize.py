"""Post-training int8 quantization of the pose networks for OpenVINO (NNCF), calibrated on person crops.

``--amp int8`` runs the pose network as an int8 OpenVINO model: the exported ONNX graph
(:mod:`hrstream.runtime.backends`) quantized by ``nncf.quantize`` with activation ranges measured on
:data:`DEFAULT_SAMPLES` person crops. The crops are made the way the pipeline makes them
(:meth:`hrstream.pose.TopDownEstimator.prepare`'s CPU path, :func:`hrstream.pose.crops.crop_cpu`: the official
affine crop of each box, padded 1.25, at the network's input size, normalised with the engine's mean and std), chosen by a seeded reservoir draw from:

* by default, the synthetic world's clips (``hrstream synth``) of seeds :data:`SYNTHETIC_SEEDS` with their
  true person boxes: training set 1's options, never the evaluation clips (seeds 5000-5009);
* or the frames the user points to (``calibration=`` a video, an image or a folder of them): each frame is
  one box, the whole frame (as ``--detector full-frame`` crops it), unless a ``detector`` is passed to
  :func:`calibration_crops`: so point it at frames that show one person each, or at person crops cut from
  your own footage.

What is quantized depends on the family (measured on the shipped models, ``docs/accuracy.md``): HRNet
(``pose_hrnet``) entirely (NNCF's default: convolutions and the additions of the residual and fusion paths;
the int8 additions are where the speed is); Lite-HRNet only its convolutions (quantizing its additions,
concatenations and attention products kept 77% of the keypoints within one heatmap pixel of fp32, the
convolutions alone 99%). Where the CPU has native bf16 the parts left in floating point run in bf16.

The result is cached like the exported graphs: ``cache_dir()/onnx/int8/<weights>_3x<H>x<W>_<calibration>``
``.xml`` / ``.bin`` (the OpenVINO model), ``.check.npy`` (a few crops the backend checks the model on) and
``.json``, written last, which records the weights' and the calibration's fingerprints and every file's
sha256. Each file is written atomically; a record that does not match, or a file whose hash differs
(truncated, replaced, half-written), makes the model be quantized again. The calibration's fingerprint hashes
the crop recipe, the sample count, the seed and the source (the synthetic world's settings, or every file's
name and bytes).

ONNX Runtime's static QDQ quantization (``onnxruntime.quantization.quantize_static``) was measured as well
and is not offered: on the same graphs it ran slower than OpenVINO int8 and than OpenVINO bf16
(``docs/performance.md``, "int8 on the CPU").
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from hrstream.errors import ConfigError

__all__ = [
    "DEFAULT_SAMPLES",
    "SYNTHETIC_SEEDS",
    "Calibration",
    "CropRecipe",
    "calibration_crops",
    "reservoir_slot",
    "quantized_model",
]

log = logging.getLogger(__name__)

#: Calibration crops per network, and the seed of their draw.
DEFAULT_SAMPLES = 300
DEFAULT_SEED = 0
#: The synthetic clips calibration draws from by default: training set 1's first seeds and options
#: (``hrstream/weights/PROVENANCE.md``), every third frame; the evaluation clips are seeds 5000-5009.
SYNTHETIC_SEEDS: tuple[int, ...] = tuple(range(1000, 1006))
_SYNTH_OPTIONS: dict[str, Any] = {
    "width": 640,
    "height": 360,
    "fps": 25.0,
    "duration_s": 6.0,
    "num_people": (2, 5),
}
_SYNTH_EVERY = 3
#: Crops kept with the model for the backend's check against torch.
CHECK_CROPS = 8
#: Lite-HRNet: the operations left in floating point (all but the convolutions).
_FLOAT_OPS = ("Add", "Multiply", "Concat", "Interpolate", "AvgPool", "MaxPool", "ReduceMean", "Divide",
              "Subtract", "Sigmoid")  # fmt: skip
_VERSION = "hrstream-int8-1"  # part of every cache key: bump when what is quantized, or how, changes


@dataclass(frozen=True)
class CropRecipe:
    """How the pipeline crops people for a network: input ``(H, W)``, normalisation, and the UDP affine."""

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    udp: bool = False

    @classmethod
    def of(
        cls, model: nn.Module, input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
    ) -> CropRecipe:
        spec = getattr(model, "spec", None)
        decoder = str((getattr(spec, "extra", None) or {}).get("DECODER") or "msra").lower()
        return cls((int(input_size[0]), int(input_size[1])), tuple(map(float, mean)), tuple(map(float, std)),
                   decoder == "udp")  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """What int8 calibration draws its crops from: ``source`` ``None`` (the synthetic world's clips) or a path
    (a video, an image, or a folder of them), ``samples`` crops drawn with ``seed``."""

    source: str | None = None
    samples: int = DEFAULT_SAMPLES
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"calibration needs at least one sample, got {self.samples}")

    @classmethod
    def parse(cls, value: Calibration | str | os.PathLike[str] | None) -> Calibration:
        """``None`` or ``"synthetic"``: the synthetic clips; a path: those frames; a :class:`Calibration` as it is."""
        if isinstance(value, Calibration):
            return value
        if value is None or str(value).strip().lower() in ("", "synthetic"):
            return cls()
        return cls(str(value))

    def fingerprint(self, recipe: CropRecipe) -> str:
        """sha256 (hex) of everything the crops depend on (the files' bytes for a user source)."""
        h = hashlib.sha256(_VERSION.encode())
        h.update(json.dumps([dataclasses.asdict(recipe), self.samples, self.seed]).encode())
        if self.source is None:
            h.update(json.dumps([SYNTHETIC_SEEDS, _SYNTH_OPTIONS, _SYNTH_EVERY]).encode())
            return h.hexdigest()
        for path in _source_files(self.source):
            h.update(path.name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()

    def describe(self) -> str:
        where = self.source or f"synthetic clips (seeds {SYNTHETIC_SEEDS[0]}-{SYNTHETIC_SEEDS[-1]})"
        return f"{self.samples} crops of {where}, seed {self.seed}"


def _inputs(source: str) -> list[Any]:
    from hrstream.io import expand_inputs

    jobs = expand_inputs([source])
    for job in jobs:
        if job.error is not None:
            raise ConfigError(f"calibration: {job.error}")
        if job.kind not in ("video", "image", "images"):
            raise ConfigError(
                f"calibration takes a video, an image or a folder of them, not {job.kind} {source}"
            )
    return jobs


def _source_files(source: str) -> list[Path]:
    return [Path(p) for job in _inputs(source) for p in (job.paths or (job.spec,))]


Detector = Callable[[np.ndarray], np.ndarray]  # RGB frame -> (n, 4) xyxy person boxes


def _frames_and_boxes(
    calibration: Calibration, detector: Detector | None
) -> Iterator[tuple[np.ndarray, Any]]:
    """``(RGB frame, (n, 4) xyxy boxes)`` of the calibration source, in a fixed order."""
    if calibration.source is None:
        from hrstream.synth import SynthConfig, generate

        for seed in SYNTHETIC_SEEDS:
            for f in generate(SynthConfig(seed=seed, **_SYNTH_OPTIONS)):
                if f.index % _SYNTH_EVERY == 0 and len(f.boxes):
                    yield f.image, f.boxes
        return
    from hrstream.io import open_source

    for job in _inputs(calibration.source):
        with open_source(job) as src:
            for frame in src:
                img = frame.image
                h, w = img.shape[:2]
                boxes = detector(img) if detector else np.array([[0, 0, w, h]], np.float32)
                if len(boxes):
                    yield img, boxes


def reservoir_slot(seen: int, k: int, rng: np.random.Generator) -> int:
    """Where item number ``seen`` (0-based) of a stream goes in a uniform sample of ``k`` items (Algorithm R):
    a new slot while fewer than ``k`` are kept, then a slot drawn from ``0..seen``; ``>= k`` means it is not
    kept. Every item of a stream of ``n`` ends in the sample with probability ``k / n``."""
    return seen if seen < k else int(rng.integers(0, seen + 1))


def calibration_crops(
    calibration: Calibration, recipe: CropRecipe, *, detector: Detector | None = None
) -> np.ndarray:
    """``float32 (n, 3, H, W)`` normalised crops, ``n = min(samples, people in the source)``: a reservoir draw
    (seeded) over every person of every frame, in the source's order, each cropped by the pipeline's crop.

    Raises:
        ConfigError: a source that is no video or image, or holds no person.
    """
    from hrstream.pose.crops import box_to_center_scale, crop_cpu

    h, w = recipe.input_size
    rng = np.random.default_rng(calibration.seed)
    k = calibration.samples
    chosen: list[np.ndarray] = []
    seen = 0
    for image, boxes in _frames_and_boxes(calibration, detector):
        for box in np.asarray(boxes, np.float32).reshape(-1, 4):
            slot = reservoir_slot(seen, k, rng)
            seen += 1
            if slot >= k:
                continue
            center, scale = box_to_center_scale(box[None], aspect_ratio=w / h, box_format="xyxy")
            crop = crop_cpu(image, center[0], scale[0], (w, h), udp=recipe.udp)
            if slot == len(chosen):
                chosen.append(crop)
            else:
                chosen[slot] = crop
    if not chosen:
        raise ConfigError(f"calibration: no person crop in {calibration.describe()}")
    x = np.stack(chosen).astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
    mean = np.asarray(recipe.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(recipe.std, np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _temp_path(final: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(name)


@dataclass(frozen=True)
class QuantizedModel:
    """An int8 OpenVINO model in the cache: its ``.xml`` (the ``.bin`` beside it) and the check crops."""

    xml: Path
    check: np.ndarray
    built: bool


def _cached(record: Path, expect: dict[str, Any]) -> QuantizedModel | None:
    """The cached model when ``record`` matches ``expect`` and every file has its recorded sha256."""
    if not record.is_file():
        return None
    try:
        doc = json.loads(record.read_text())
        if any(doc.get(k) != v for k, v in expect.items()):
            log.warning(
                "int8 cache record %s is for another network or calibration; quantizing again", record
            )
            return None
        for name, digest in doc["files"].items():
            if _sha256(record.parent / name) != digest:
                log.warning("int8 cache file %s differs from its record; quantizing again", name)
                return None
        check = np.load(record.parent / doc["check"], allow_pickle=False)
        return QuantizedModel(record.parent / doc["xml"], check, False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("int8 cache record %s unusable (%s); quantizing again", record, e)
        return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF logs every step and draws progress bars; keep them for ``-v`` (DEBUG) only."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        nncf_log.setLevel(level)


def _quantize(onnx_path: Path, crops: np.ndarray, family: str, xml: Path) -> None:
    """``nncf.quantize`` the graph on ``crops`` (one a call) and save the OpenVINO model as ``xml`` + ``.bin``."""
    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        raise ConfigError(
            f"--amp int8 needs the Python package '{e.name}': pip install 'hrstream[openvino]'"
        ) from e
    options: dict[str, Any] = {}
    if family == "litehrnet":
        options["ignored_scope"] = nncf.IgnoredScope(types=list(_FLOAT_OPS), validate=False)
    with _quiet():
        model = ov.Core().read_model(str(onnx_path))
        data = nncf.Dataset([crops[i : i + 1] for i in range(len(crops))])
        quantized = nncf.quantize(model, data, subset_size=len(crops), **options)
        ov.save_model(quantized, str(xml), compress_to_fp16=False)


def quantized_model(
    onnx_path: Path,
    fingerprint: str,
    model: nn.Module,
    *,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    calibration: Calibration | str | None = None,
) -> QuantizedModel:
    """The int8 OpenVINO model of ``model``'s exported graph ``onnx_path`` (whose weights ``fingerprint`` names),
    from the cache or quantized now (module docstring)."""
    cal = Calibration.parse(calibration)
    recipe = CropRecipe.of(model, input_size, mean, std)
    cal_fp = cal.fingerprint(recipe)
    h, w = recipe.input_size
    folder = onnx_path.parent / "int8"
    stem = f"{fingerprint[:24]}_3x{h}x{w}_{cal_fp[:16]}"
    record = folder / f"{stem}.json"
    expect = {"version": _VERSION, "fingerprint": fingerprint, "calibration": cal_fp}
    cached = _cached(record, expect)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    family = str(getattr(getattr(model, "spec", None), "name", type(model).__name__))
    started = time.perf_counter()
    crops = calibration_crops(cal, recipe)
    rng = np.random.default_rng(cal.seed + 1)
    check = crops[np.sort(rng.choice(len(crops), size=min(CHECK_CROPS, len(crops)), replace=False))]
    with tempfile.TemporaryDirectory(prefix=f".{stem}.", dir=folder) as tmp:
        _quantize(onnx_path, crops, family, Path(tmp) / "model.xml")
        np.save(Path(tmp) / "check.npy", check, allow_pickle=False)
        names = {"model.xml": f"{stem}.xml", "model.bin": f"{stem}.bin", "check.npy": f"{stem}.check.npy"}
        digests = {dst: _sha256(Path(tmp) / src) for src, dst in names.items()}
        for src, dst in names.items():
            os.replace(Path(tmp) / src, folder / dst)
    doc = {
        **expect,
        "family": family,
        "input_size": [h, w],
        "source": cal.describe(),
        "xml": f"{stem}.xml",
        "check": f"{stem}.check.npy",
        "files": digests,
    }
    tmp_record = _temp_path(record)
    try:
        tmp_record.write_text(json.dumps(doc, indent=1))
        os.replace(tmp_record, record)
    except BaseException:
        tmp_record.unlink(missing_ok=True)
        raise
    log.info("quantized %s to int8 in %.1f s on %s -> %s", family, time.perf_counter() - started,
             cal.describe(), record.with_suffix(".xml"))  # fmt: skip
    return QuantizedModel(folder / f"{stem}.xml", check, True)
