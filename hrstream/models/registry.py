"""The published HRNet and Lite-HRNet checkpoints hrstream knows, as values, and the model configs they belong to.

Each :class:`WeightsEntry` says where a checkpoint lives (``url``), how to check it (``sha256``, full or
the 8-hex prefix OpenMMLab file names carry), how its state dict is laid out (``layout``), which config
in the repository's ``configs/`` folder builds the matching network, and what its outputs mean
(``meta``: keypoint names, flip pairs, skeleton, classes, palette, input size, normalisation, metrics).

Names are ``<config>.<source>``, e.g. ``pose_hrnet_w32_256x192.mmpose``; a bare config name stands for
that config's default weights (its ``HRSTREAM.WEIGHTS`` key).

Conventions in ``meta``:

* ``input_size``/``heatmap_size``: ``(height, width)`` in pixels, the reverse of the official YAML's
  ``IMAGE_SIZE``/``HEATMAP_SIZE`` ``[W, H]``.
* ``mean``/``std``: RGB, in 0-1 units: ``x = (rgb_uint8 / 255 - mean) / std``.
* ``metrics``: fractions in 0-1 (AP 0.746, mIoU 0.8065), plus ``source``: the page reporting them.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import yaml

from hrstream import resources
from hrstream.errors import ConfigError
from hrstream.models import datasets_meta as dm
from hrstream.models.checkpoints import Layout
from hrstream.models.config import NetworkTask

__all__ = [
    "HashKind",
    "WeightsEntry",
    "config_path",
    "configs_dir",
    "default_weights",
    "get_weights",
    "list_configs",
    "list_weights",
]

#: ``sha256``: 64 hex digits; ``sha256_prefix``: the leading hex digits a file name carries (OpenMMLab:
#: 8); ``none``: the publisher gives no hash (the download is accepted and its sha256 logged).
HashKind = Literal["sha256", "sha256_prefix", "none"]

_HEX = re.compile(r"^[0-9a-f]*$")


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint. ``meta`` is read-only by convention (see the module docstring)."""

    name: str
    url: str
    sha256: str
    layout: Layout
    config: str
    task: NetworkTask
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    hash_kind: HashKind = "sha256_prefix"

    def __post_init__(self) -> None:
        if self.layout not in get_args(Layout):
            raise ConfigError(
                f"weights '{self.name}': layout '{self.layout}' is not one of {get_args(Layout)}"
            )
        if self.task not in get_args(NetworkTask):
            raise ConfigError(
                f"weights '{self.name}': task '{self.task}' is not one of {get_args(NetworkTask)}"
            )
        if self.hash_kind not in get_args(HashKind):
            raise ConfigError(
                f"weights '{self.name}': hash_kind '{self.hash_kind}' is not one of {get_args(HashKind)}"
            )
        digest = self.sha256.lower()
        ok = {
            "sha256": len(digest) == 64,
            "sha256_prefix": 6 <= len(digest) < 64,
            "none": digest == "",
        }[self.hash_kind]
        if not ok or not _HEX.match(digest):
            raise ConfigError(
                f"weights '{self.name}': sha256 '{self.sha256}' does not fit hash_kind '{self.hash_kind}'"
            )
        object.__setattr__(self, "sha256", digest)

    @property
    def filename(self) -> str:
        """The file name of the download (last path segment of ``url``), also its name in the cache."""
        return PurePosixPath(urlsplit(self.url).path).name

    def matches(self, hexdigest: str) -> bool:
        """True when a file's full sha256 ``hexdigest`` agrees with this entry (always true for ``none``)."""
        return hexdigest.lower().startswith(self.sha256)


# ---------------------------------------------------------------------------------------------------------
# The table.

_MMPOSE_BASE = "https://download.openmmlab.com/mmpose"
_MMPOSE_ZOO = "https://github.com/open-mmlab/mmpose/blob/main/configs/body_2d_keypoint/topdown_heatmap/coco"
_MMSEG_BASE = "https://download.openmmlab.com/mmsegmentation/v0.5/hrnet"
_MMSEG_ZOO = "https://github.com/open-mmlab/mmsegmentation/blob/main/configs/hrnet/README.md"
_COCO_NOTE = "COCO val2017, person detector with human AP 56.4, flip test"


def _pose_meta(
    h: int, w: int, decoder: str, ap: float, ap50: float, ap75: float, ar: float, page: str
) -> dict:
    return {
        "dataset": "coco",
        "keypoint_names": list(dm.COCO_KEYPOINT_NAMES),
        "flip_pairs": [list(p) for p in dm.COCO_FLIP_PAIRS],
        "skeleton": [list(p) for p in dm.COCO_SKELETON],
        "oks_sigmas": list(dm.COCO_OKS_SIGMAS),
        "input_size": (h, w),
        "heatmap_size": (h // 4, w // 4),
        "mean": dm.IMAGENET_MEAN,
        "std": dm.IMAGENET_STD,
        "decoder": decoder,
        "metrics": {
            "AP": ap,
            "AP50": ap50,
            "AP75": ap75,
            "AR": ar,
            "protocol": _COCO_NOTE,
            "source": f"{_MMPOSE_ZOO}/{page}",
        },
        "licence": "Apache-2.0 (OpenMMLab MMPose); trained on COCO (CC BY 4.0 annotations, Flickr image terms)",
    }


def _mmpose(w: int, h: int, iw: int, variant: str, file: str, prefix: str, metrics: tuple) -> WeightsEntry:
    suffix = {"plain": "", "dark": "_dark", "udp": "_udp"}[variant]
    decoder = {"plain": "msra", "dark": "dark", "udp": "udp"}[variant]
    page = {"plain": "hrnet_coco.md", "dark": "hrnet_dark_coco.md", "udp": "hrnet_udp_coco.md"}[variant]
    if variant == "plain":
        url, layout = f"{_MMPOSE_BASE}/top_down/hrnet/{file}", "mmpose0"
    else:
        url, layout = f"{_MMPOSE_BASE}/v1/body_2d_keypoint/topdown_heatmap/coco/{file}", "mmpose1"
    config = f"pose_hrnet_w{w}_{h}x{iw}{suffix}"
    return WeightsEntry(
        name=f"{config}.mmpose",
        url=url,
        sha256=prefix,
        layout=layout,  # type: ignore[arg-type]
        config=config,
        task="pose",
        meta=_pose_meta(h, iw, decoder, *metrics, page=page),
    )


def _mmpose_lite(depth: int, h: int, w: int, file: str, prefix: str, metrics: tuple) -> WeightsEntry:
    """MMPose's Lite-HRNet COCO checkpoints: trained with MMPose 0.x, listed unchanged by 1.x."""
    config = f"litehrnet_{depth}_coco_{h}x{w}"
    return WeightsEntry(
        name=f"{config}.mmpose",
        url=f"{_MMPOSE_BASE}/top_down/litehrnet/{file}",
        sha256=prefix,
        layout="mmpose0",
        config=config,
        task="pose",
        meta=_pose_meta(h, w, "msra", *metrics, page="litehrnet_coco.md"),
    )


def _seg_meta(miou: float, miou_ms_flip: float | None, source: str, licence: str, note: str) -> dict:
    metrics: dict[str, Any] = {"mIoU": miou, "protocol": note, "source": source}
    if miou_ms_flip is not None:
        metrics["mIoU_ms_flip"] = miou_ms_flip
    return {
        "dataset": "cityscapes",
        "classes": list(dm.CITYSCAPES_CLASSES),
        "palette": [list(c) for c in dm.CITYSCAPES_PALETTE],
        "ignore_index": 255,
        "input_size": (1024, 2048),
        "mean": dm.IMAGENET_MEAN,
        "std": dm.IMAGENET_STD,
        "align_corners": False,
        "metrics": metrics,
        "licence": licence,
    }


def _mmseg(w: int, iters: str, stamp: str, prefix: str, miou: float, ms_flip: float) -> WeightsEntry:
    stem = f"fcn_hr{w}_512x1024_{iters}_cityscapes"
    return WeightsEntry(
        name=f"seg_hrnet_w{w}_cityscapes.mmseg_{iters}",
        url=f"{_MMSEG_BASE}/{stem}/{stem}_{stamp}-{prefix}.pth",
        sha256=prefix,
        layout="mmseg",
        config=f"seg_hrnet_w{w}_cityscapes",
        task="seg",
        meta=_seg_meta(
            miou,
            ms_flip,
            _MMSEG_ZOO,
            "Apache-2.0 (OpenMMLab MMSegmentation); trained on Cityscapes (non-commercial dataset terms)",
            f"Cityscapes val, FCN head on HRNetV2-W{w}, 512x1024 crops, {iters} iterations, whole-image test",
        ),
    )


_ENTRIES: tuple[WeightsEntry, ...] = (
    # MMPose 0.x, plain heatmaps (hrnet_coco.yml)
    _mmpose(
        32,
        256,
        192,
        "plain",
        "hrnet_w32_coco_256x192-c78dce93_20200708.pth",
        "c78dce93",
        (0.746, 0.904, 0.819, 0.799),
    ),
    _mmpose(
        32,
        384,
        288,
        "plain",
        "hrnet_w32_coco_384x288-d9f0d786_20200708.pth",
        "d9f0d786",
        (0.760, 0.906, 0.830, 0.810),
    ),
    _mmpose(
        48,
        256,
        192,
        "plain",
        "hrnet_w48_coco_256x192-b9e0b3ab_20200708.pth",
        "b9e0b3ab",
        (0.756, 0.907, 0.825, 0.806),
    ),
    _mmpose(
        48,
        384,
        288,
        "plain",
        "hrnet_w48_coco_384x288-314c8528_20200708.pth",
        "314c8528",
        (0.767, 0.910, 0.831, 0.816),
    ),
    # MMPose 1.x, DARK (hrnet_dark_coco.yml)
    _mmpose(
        32,
        256,
        192,
        "dark",
        "td-hm_hrnet-w32_dark-8xb64-210e_coco-256x192-0e00bf12_20220914.pth",
        "0e00bf12",
        (0.757, 0.907, 0.825, 0.807),
    ),
    _mmpose(
        32,
        384,
        288,
        "dark",
        "td-hm_hrnet-w32_dark-8xb64-210e_coco-384x288-9bab4c9b_20220917.pth",
        "9bab4c9b",
        (0.766, 0.907, 0.829, 0.815),
    ),
    _mmpose(
        48,
        256,
        192,
        "dark",
        "td-hm_hrnet-w48_dark-8xb32-210e_coco-256x192-e1ebdd6f_20220913.pth",
        "e1ebdd6f",
        (0.764, 0.907, 0.831, 0.814),
    ),
    _mmpose(
        48,
        384,
        288,
        "dark",
        "td-hm_hrnet-w48_dark-8xb32-210e_coco-384x288-39c3c381_20220916.pth",
        "39c3c381",
        (0.772, 0.911, 0.833, 0.821),
    ),
    # MMPose 1.x, UDP (hrnet_udp_coco.yml)
    _mmpose(
        32,
        256,
        192,
        "udp",
        "td-hm_hrnet-w32_udp-8xb64-210e_coco-256x192-73ede547_20220914.pth",
        "73ede547",
        (0.762, 0.907, 0.829, 0.810),
    ),
    _mmpose(
        32,
        384,
        288,
        "udp",
        "td-hm_hrnet-w32_udp-8xb64-210e_coco-384x288-9a3f7c85_20220914.pth",
        "9a3f7c85",
        (0.768, 0.909, 0.832, 0.815),
    ),
    _mmpose(
        48,
        256,
        192,
        "udp",
        "td-hm_hrnet-w48_udp-8xb32-210e_coco-256x192-3feaef8f_20220913.pth",
        "3feaef8f",
        (0.768, 0.908, 0.833, 0.817),
    ),
    _mmpose(
        48,
        384,
        288,
        "udp",
        "td-hm_hrnet-w48_udp-8xb32-210e_coco-384x288-70d7ab01_20220913.pth",
        "70d7ab01",
        (0.773, 0.911, 0.836, 0.821),
    ),
    # MMPose, Lite-HRNet (0.x checkpoints; figures as MMPose 1.x reports them, litehrnet_coco.yml)
    _mmpose_lite(
        18,
        256,
        192,
        "litehrnet18_coco_256x192-6bace359_20211230.pth",
        "6bace359",
        (0.642, 0.867, 0.719, 0.705),
    ),
    _mmpose_lite(
        18,
        384,
        288,
        "litehrnet18_coco_384x288-8d4dac48_20211230.pth",
        "8d4dac48",
        (0.676, 0.876, 0.746, 0.735),
    ),
    _mmpose_lite(
        30,
        256,
        192,
        "litehrnet30_coco_256x192-4176555b_20210626.pth",
        "4176555b",
        (0.676, 0.880, 0.756, 0.736),
    ),
    _mmpose_lite(
        30,
        384,
        288,
        "litehrnet30_coco_384x288-a3aef5c4_20210626.pth",
        "a3aef5c4",
        (0.700, 0.883, 0.776, 0.758),
    ),
    # MMSegmentation 0.x, FCN head on HRNetV2 (configs/hrnet/hrnet.yml)
    _mmseg(18, "160k", "20200602_190822", "221e4a4f", 0.788, 0.8074),
    _mmseg(18, "80k", "20200601_223255", "4e7b345e", 0.7865, 0.8035),
    _mmseg(48, "160k", "20200602_190946", "59b7973e", 0.8065, 0.8192),
    _mmseg(48, "80k", "20200601_202606", "58ea95d6", 0.7993, 0.8072),
    # The official release (HRNet/HRNet-Semantic-Segmentation README, HRNet-OCR branch): a GitHub release
    # asset of hsfzxjy/models.storage; the publisher gives no hash.
    WeightsEntry(
        name="seg_hrnet_w48_cityscapes.official",
        url="https://github.com/hsfzxjy/models.storage/releases/download/HRNet-OCR/hrnet_cs_8090_torch11.pth",
        sha256="",
        hash_kind="none",
        layout="official",
        config="seg_hrnet_w48_cityscapes",
        task="seg",
        meta=_seg_meta(
            0.809,
            None,
            "https://github.com/HRNet/HRNet-Semantic-Segmentation/blob/HRNet-OCR/README.md",
            "MIT (HRNet/HRNet-Semantic-Segmentation); trained on Cityscapes (non-commercial dataset terms)",
            "Cityscapes val, single scale, no flip (official README)",
        ),
    ),
)


# HigherHRNet, bottom-up (one network call per image, people grouped by associative-embedding tags). Input
# sizes are the short side the image is resized to (a multiple of 64 keeping the aspect); ``heatmap_size`` is
# that of the first output (1/4) for a square input.
_MMPOSE_AE_ZOO = (
    "https://github.com/open-mmlab/mmpose/blob/0.x/configs/body/2d_kpt_sview_rgb_img/associative_embedding/"
    "coco/higherhrnet_coco.md"
)
_HIGHER_README = "https://github.com/HRNet/HigherHRNet-Human-Pose-Estimation/blob/master/README.md"


def _higher_meta(size: int, metrics: dict[str, Any], licence: str) -> dict[str, Any]:
    return {
        "dataset": "coco",
        "method": "bottomup",
        "keypoint_names": list(dm.COCO_KEYPOINT_NAMES),
        "flip_pairs": [list(p) for p in dm.COCO_FLIP_PAIRS],
        "skeleton": [list(p) for p in dm.COCO_SKELETON],
        "oks_sigmas": list(dm.COCO_OKS_SIGMAS),
        "input_size": (size, size),
        "heatmap_size": (size // 4, size // 4),
        "mean": dm.IMAGENET_MEAN,
        "std": dm.IMAGENET_STD,
        "decoder": "associative_embedding",
        "metrics": metrics,
        "licence": licence,
    }


def _mmpose_higher(
    w: int, file: str, prefix: str, ap: float, ap50: float, ap75: float, ar: float
) -> WeightsEntry:
    config = f"pose_higher_hrnet_w{w}_512"
    metrics = {"AP": ap, "AP50": ap50, "AP75": ap75, "AR": ar, "source": _MMPOSE_AE_ZOO,
               "protocol": "COCO val2017, single scale (no multi-scale test), flip test"}  # fmt: skip
    return WeightsEntry(
        name=f"{config}.mmpose",
        url=f"{_MMPOSE_BASE}/bottom_up/{file}",
        sha256=prefix,
        layout="mmpose0",
        config=config,
        task="pose",
        meta=_higher_meta(
            512,
            metrics,
            "Apache-2.0 (OpenMMLab MMPose); trained on COCO (CC BY 4.0 annotations, Flickr image terms)",
        ),  # fmt: skip
    )


_ENTRIES += (
    # The official release lives in a Google Drive folder (README "model zoo"); OpenVINO's Open Model Zoo
    # mirrors the W32-512 file unchanged (models/public/higher-hrnet-w32-human-pose-estimation/model.yml, which
    # gives its size and sha384 but no sha256).
    WeightsEntry(
        name="pose_higher_hrnet_w32_512.official",
        url="https://storage.openvinotoolkit.org/repositories/open_model_zoo/public/2022.1/"
        "higher-hrnet-w32-human-pose-estimation/ckpt/pose_higher_hrnet_w32_512.pth",
        sha256="",
        hash_kind="none",
        layout="official",
        config="pose_higher_hrnet_w32_512",
        task="pose",
        meta={
            **_higher_meta(
                512,
                {
                    "AP": 0.671,
                    "AP50": 0.862,
                    "AP75": 0.730,
                    "AP_M": 0.615,
                    "AP_L": 0.761,
                    "source": _HIGHER_README,
                    "protocol": "COCO val2017 without multi-scale test (flip test, as the official config)",
                },
                "MIT (HRNet/HigherHRNet-Human-Pose-Estimation); trained on COCO (CC BY 4.0 annotations, Flickr "
                "image terms)",
            ),  # fmt: skip
            "size_bytes": 115172215,
            "publisher_sha384": "d344fcc4e426308139397bd708be1c59500e038a540ea0979b6a10556b5f3530701d86c0cab276fc"
            "5710419f91879e3d",
        },
    ),
    _mmpose_higher(
        32, "higher_hrnet32_coco_512x512-8ae85183_20200713.pth", "8ae85183", 0.677, 0.870, 0.738, 0.723
    ),
    _mmpose_higher(
        48, "higher_hrnet48_coco_512x512-60fedcbc_20200712.pth", "60fedcbc", 0.686, 0.873, 0.741, 0.731
    ),
)


# Small HRNets trained by hrstream on its synthetic figures (hrstream synth + hrstream train); they ship inside
# the package (``package:`` URLs resolve to ``hrstream/weights``), so the demo runs offline. Figures and the
# commands that produced them: docs/accuracy.md.
_SYNTHETIC_NOTE = "synthetic figures only; not meant for real footage"


def _shipped(config: str, task: NetworkTask, sha256: str, meta: dict[str, Any]) -> WeightsEntry:
    return WeightsEntry(
        name=f"{config}.synthetic",
        url=f"package:weights/{config}.safetensors",
        sha256=sha256,
        hash_kind="sha256",
        layout="fcos" if task == "det" else "official",
        config=config,
        task=task,
        meta={
            **meta,
            "trained_on": _SYNTHETIC_NOTE,
            "licence": "MIT (hrstream); trained on data generated by hrstream synth",
            "mean": dm.IMAGENET_MEAN,
            "std": dm.IMAGENET_STD,
        },
    )


def _synthetic_pose_meta(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metadata of a pose network shipped trained on the synthetic world: COCO's 17 keypoints at 128x96, msra
    decoding, and its scores on the synthetic evaluation clips."""
    return {
        "dataset": "synthetic",
        "keypoint_names": list(dm.COCO_KEYPOINT_NAMES),
        "flip_pairs": [list(p) for p in dm.COCO_FLIP_PAIRS],
        "skeleton": [list(p) for p in dm.COCO_SKELETON],
        "oks_sigmas": list(dm.COCO_OKS_SIGMAS),
        "input_size": (128, 96),
        "heatmap_size": (32, 24),
        "decoder": "msra",
        "metrics": metrics,
    }


_ENTRIES += (
    _shipped(
        "synthetic_pose_hrnet_w18_small_128x96",
        "pose",
        "c21f526210e4dcef681f7490a6f6bde834ff78d48f49f70a9b111e53f6bf94a8",
        _synthetic_pose_meta(
            {
                "PCK@0.1": 0.952,
                "PCK@0.1_matched": 0.981,
                "IDF1": 0.946,
                "protocol": "10 generated 8 s clips (seeds 5000-5009), pipelines/synthetic.yaml (boxes from "
                "synthetic_det_hrnet_w18_small_fcos; IDF1 of the tracks document, 0.909 for the IDs of the "
                "JSONL and video, 0.884 for the tracker's alone)",
                "source": "docs/accuracy.md",
            }
        ),
    ),
    _shipped(
        "synthetic_litehrnet_18_128x96",
        "pose",
        "4309d21441adcd30f2d052e8ec147886f80e04605c84a871918be64f5cffed20",
        _synthetic_pose_meta(
            {
                "PCK@0.1": 0.816,
                "PCK@0.1_matched": 0.840,
                "IDF1": 0.931,
                "protocol": "10 generated 8 s clips (seeds 5000-5009), pipelines/synthetic.yaml with this pose "
                "network (boxes from synthetic_det_hrnet_w18_small_fcos; IDF1 of the tracks document, 0.906 for "
                "the IDs of the JSONL and video), fp32",
                "source": "docs/accuracy.md",
            }
        ),
    ),
    _shipped(
        "synthetic_seg_hrnet_w18_small",
        "seg",
        "596430d9c31f22cf7ce21d6dcc9ea7fefcb11f94b6ce3d19f3f645591266e0bb",
        {
            "dataset": "synthetic",
            "classes": ["background", "person"],
            "palette": [[0, 0, 0], [220, 20, 60]],
            "input_size": (192, 320),
            "align_corners": False,
            "metrics": {
                "mIoU": 0.789,
                "IoU_person": 0.615,
                "protocol": "10 generated 8 s clips (seeds 5000-5009), whole frame at 320x192",
                "source": "docs/accuracy.md",
            },
        },
    ),
    _shipped(
        "synthetic_det_hrnet_w18_small_fcos",
        "det",
        "741380e328f9e7e985d5aeb58d8e8f79d651cfaddd9e5e209279d0c3f48c468d",
        {
            "dataset": "synthetic",
            "classes": ["background", "person"],
            "head": "torchvision FCOS on HRNetV2p (HRFPN, 5 levels, 64 channels)",
            "input_size": (192, 320),
            "metrics": {
                "AP": 0.753,
                "AP .5": 0.915,
                "AP_flip_test": 0.777,
                "pipeline_precision": 0.982,
                "pipeline_recall": 0.919,
                "protocol": "box AP: every 5th frame of 10 generated 8 s clips (seeds 5000-5009), alone (config NMS "
                "0.6) and as in pipelines/synthetic.yaml (the mirror image's boxes fused, NMS 0.8); precision and "
                "recall at IoU 0.5 of the tracked boxes of pipelines/synthetic.yaml on those clips",
                "source": "docs/accuracy.md",
            },
        },
    ),
)

_BY_NAME: dict[str, WeightsEntry] = {e.name: e for e in _ENTRIES}
if len(_BY_NAME) != len(_ENTRIES):  # pragma: no cover - guards edits to the table above
    raise RuntimeError("duplicate weights names in the registry table")


# ---------------------------------------------------------------------------------------------------------
# Look-ups.


def list_weights(task: NetworkTask | None = None) -> list[WeightsEntry]:
    """Every registered checkpoint (optionally of one ``task``), in table order."""
    return [e for e in _ENTRIES if task is None or e.task == task]


def configs_dir() -> Path:
    """The folder of model config YAMLs: ``$HRSTREAM_CONFIGS``, else the package's (:mod:`hrstream.resources`)."""
    return resources.configs_dir()


def list_configs() -> list[str]:
    """Names (file stems) of the config YAMLs in :func:`configs_dir`, sorted."""
    folder = configs_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _close(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    return f" (did you mean: {', '.join(near)}?)" if near else ""


def config_path(name: str) -> Path:
    """The YAML file of config ``name`` (a stem such as ``pose_hrnet_w32_256x192``, or an existing YAML path).

    Raises :class:`ConfigError` naming close matches when there is no such config.
    """
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    stem = candidate.name.removesuffix(".yaml").removesuffix(".yml")
    for suffix in (".yaml", ".yml"):
        path = configs_dir() / f"{stem}{suffix}"
        if path.is_file():
            return path
    known = list_configs()
    raise ConfigError(
        f"unknown model config '{name}' (looked in {configs_dir()}){_close(stem, known)}. "
        f"Run `hrstream models` for the list, or pass a YAML path."
    )


@functools.lru_cache(maxsize=64)
def _yaml_default(path: Path, mtime_ns: int) -> str | None:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    extra = data.get("HRSTREAM") if isinstance(data, dict) else None
    value = extra.get("WEIGHTS") if isinstance(extra, dict) else None
    return str(value) if value else None


def default_weights(config_name: str) -> WeightsEntry | None:
    """The checkpoint a config uses when none is named: its YAML's ``HRSTREAM.WEIGHTS``, if registered,
    else the first registered entry built by that config, else ``None``."""
    path = config_path(config_name)
    named = _yaml_default(path, path.stat().st_mtime_ns)
    if named is not None and named in _BY_NAME:
        return _BY_NAME[named]
    return next((e for e in _ENTRIES if e.config == path.stem), None)


def get_weights(name: str) -> WeightsEntry:
    """The entry called ``name``; a config name gives that config's default weights.

    Raises :class:`ConfigError` listing close names when ``name`` is neither.
    """
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name in list_configs():
        entry = default_weights(name)
        if entry is not None:
            return entry
        raise ConfigError(f"config '{name}' names no registered weights; pass --weights PATH")
    choices = list(_BY_NAME) + list_configs()
    raise ConfigError(f"unknown weights '{name}'{_close(name, choices)}. Run `hrstream models` for the list.")
