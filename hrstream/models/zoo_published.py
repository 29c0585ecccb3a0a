"""The published checkpoints hrstream knows: the official HRNet releases, MMPose's HRNet, Lite-HRNet and
HigherHRNet, MMSegmentation's HRNetV2 (:data:`PUBLISHED`), each with its URL, hash, layout, config and the
metrics its publisher reports. The conventions of ``meta`` are :mod:`hrstream.models.weights_entry`'s."""

from __future__ import annotations

from typing import Any

from hrstream.models import datasets_meta as dm
from hrstream.models.weights_entry import WeightsEntry

__all__ = ["PUBLISHED"]

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


PUBLISHED: tuple[WeightsEntry, ...] = (
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


PUBLISHED += (
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
