"""Every registered checkpoint and every model config: metadata complete, consistent and in the official schema."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from hrstream.errors import ConfigError
from hrstream.models import registry
from hrstream.models.hub import is_shipped
from hrstream.models.registry import WeightsEntry

COCO_NAMES_FROM_GT = Path(__file__).parent / "data" / "coco" / "test_coco.json"
LITE_REF = Path(__file__).parent / "data" / "litehrnet_reference"


def iter_configs() -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(name, parsed YAML)`` for every config in ``configs/`` (also used by the model build tests)."""
    for name in registry.list_configs():
        with open(registry.config_path(name), encoding="utf-8") as f:
            yield name, yaml.safe_load(f)


# The published checkpoints; the small synthetic models that ship in the package: tests/test_shipped_models.py
ENTRIES = [e for e in registry.list_weights() if not is_shipped(e)]
# The configs of the published checkpoints (official schema); hrstream's own small synthetic_* configs are
# checked with the models trained from them (tests/test_train.py, tests/test_shipped_models.py), and the
# W18-Small pose configs, which name no weights (timm's ImageNet backbones), in tests/test_models_timm.py.
CONFIGS = {
    name: cfg
    for name, cfg in iter_configs()
    if not name.startswith("synthetic_") and "_w18_small" not in name
}


def test_there_is_something_to_check() -> None:
    assert len(ENTRIES) >= 21
    assert {
        "pose_hrnet_w32_256x192",
        "pose_hrnet_w48_384x288_udp",
        "seg_hrnet_w18_cityscapes",
        "litehrnet_18_coco_256x192",
        "litehrnet_30_coco_384x288",
    } <= set(CONFIGS)
    assert len(CONFIGS) == 21
    assert {n for n, c in CONFIGS.items() if c["MODEL"]["NAME"] == "pose_higher_hrnet"} == {
        "pose_higher_hrnet_w32_512",
        "pose_higher_hrnet_w48_512",
        "pose_higher_hrnet_w48_640",
    }


def _check_hrnet_extra(name: str, extra: dict[str, Any]) -> None:
    assert extra["FINAL_CONV_KERNEL"] == 1
    prev_branches = 1
    for i in (2, 3, 4):
        stage = extra[f"STAGE{i}"]
        assert stage["NUM_BRANCHES"] == i == prev_branches + 1
        assert len(stage["NUM_CHANNELS"]) == len(stage["NUM_BLOCKS"]) == stage["NUM_BRANCHES"]
        assert stage["BLOCK"] == "BASIC" and stage["FUSE_METHOD"] == "SUM"
        assert stage["NUM_MODULES"] == {2: 1, 3: 4, 4: 3}[i]
        width = stage["NUM_CHANNELS"][0]
        assert stage["NUM_CHANNELS"] == [width * 2**k for k in range(i)]
        prev_branches = stage["NUM_BRANCHES"]
    width = extra["STAGE2"]["NUM_CHANNELS"][0]
    assert f"w{width}_" in name


def _check_lite_extra(name: str, extra: dict[str, Any]) -> None:
    """MODEL.EXTRA is the official backbone ``extra`` dict of Lite-HRNet-18 or -30, as the official configs
    (and the official key manifests made from them) have it."""
    depth = re.match(r"litehrnet_(\d+)_", name).group(1)  # type: ignore[union-attr]
    official = json.loads((LITE_REF / f"official_litehrnet_{depth}_keys.json").read_text())["config"]
    assert extra == official


def _check_higher(name: str, cfg: dict[str, Any]) -> None:
    """The official HigherHRNet experiments (tests/test_higherhrnet.py builds them against the official key
    manifests): one deconvolution stage with 4 basic blocks at the backbone's width, AE loss at 1/4 only."""
    model, data, test = cfg["MODEL"], cfg["DATASET"], cfg["TEST"]
    assert model["NUM_JOINTS"] == data["NUM_JOINTS"] == 17 and model["TAG_PER_JOINT"] is True
    size = data["INPUT_SIZE"]
    assert name.endswith(f"_{size}") and data["OUTPUT_SIZE"] == [size // 4, size // 2]
    width = model["EXTRA"]["STAGE2"]["NUM_CHANNELS"][0]
    deconv = model["EXTRA"]["DECONV"]
    assert deconv == {"NUM_DECONVS": 1, "NUM_CHANNELS": [width], "KERNEL_SIZE": [4], "NUM_BASIC_BLOCKS": 4,
                      "CAT_OUTPUT": [True]}  # fmt: skip
    assert cfg["LOSS"]["WITH_AE_LOSS"] == [True, False] and cfg["LOSS"]["AE_LOSS_TYPE"] == "exp"
    assert test["FLIP_TEST"] is True and test["PROJECT2IMAGE"] is True and test["SCALE_FACTOR"] == [1]
    assert (test["NMS_KERNEL"], test["NMS_PADDING"], test["DETECTION_THRESHOLD"]) == (5, 2, 0.1)
    assert data["DATASET"] == "coco_kpt" and data["MAX_NUM_PEOPLE"] == 30
    assert set(cfg.get("HRSTREAM", {})) <= {"WEIGHTS", "DESCRIPTION"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_has_official_schema(name: str) -> None:
    cfg = CONFIGS[name]
    model = cfg["MODEL"]
    extra = model["EXTRA"]
    if model["NAME"] == "pose_higher_hrnet":
        _check_hrnet_extra(name, extra)
        _check_higher(name, cfg)
        return
    if model["NAME"] == "litehrnet":
        _check_lite_extra(name, extra)
    else:
        _check_hrnet_extra(name, extra)
    extras = cfg.get("HRSTREAM", {})
    assert set(extras) <= {"DECODER", "WEIGHTS", "DESCRIPTION"}
    if name.startswith(("pose_", "litehrnet_")):
        assert model["NAME"] == ("litehrnet" if name.startswith("litehrnet_") else "pose_hrnet")
        assert model["NUM_JOINTS"] == 17
        w, h = model["IMAGE_SIZE"]
        assert f"_{h}x{w}" in name
        assert model["HEATMAP_SIZE"] == [w // 4, h // 4]
        assert model["SIGMA"] in (2, 3)
        assert "STAGE1" not in extra  # the official pose YAMLs hard-code the stem
        assert cfg["DATASET"]["DATASET"] == "coco"
        test = cfg["TEST"]
        assert test["FLIP_TEST"] is True and test["POST_PROCESS"] is True
        decoder = extras["DECODER"]
        assert decoder == ("dark" if name.endswith("_dark") else "udp" if name.endswith("_udp") else "msra")
        assert test["SHIFT_HEATMAP"] is (decoder != "udp")
    else:
        assert model["NAME"] == "seg_hrnet"
        assert model["ALIGN_CORNERS"] is False
        s1 = extra["STAGE1"]
        assert s1.get("NUM_BRANCHES", s1.get("NUM_RANCHES")) == 1
        assert s1["BLOCK"] == "BOTTLENECK" and s1["NUM_BLOCKS"] == [4] and s1["NUM_CHANNELS"] == [64]
        assert cfg["DATASET"]["NUM_CLASSES"] == 19
        assert cfg["TEST"]["IMAGE_SIZE"] == [2048, 1024] and cfg["TEST"]["BASE_SIZE"] == 2048
        assert cfg["TRAIN"]["IMAGE_SIZE"] == [1024, 512]
        assert isinstance(cfg["TEST"]["FLIP_TEST"], bool) and isinstance(cfg["TEST"]["MULTI_SCALE"], bool)


def test_seg_widths_match_hrnetv2() -> None:
    w18 = CONFIGS["seg_hrnet_w18_cityscapes"]["MODEL"]["EXTRA"]
    w48 = CONFIGS["seg_hrnet_w48_cityscapes"]["MODEL"]["EXTRA"]
    assert w18["STAGE4"]["NUM_CHANNELS"] == [18, 36, 72, 144]
    assert w48["STAGE4"]["NUM_CHANNELS"] == [48, 96, 192, 384]
    # both spellings of STAGE1's branch count occur in the official files; keep one of each
    assert "NUM_RANCHES" in w18["STAGE1"] and "NUM_BRANCHES" in w48["STAGE1"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_default_weights_are_registered_for_it(name: str) -> None:
    if name == "pose_higher_hrnet_w48_640":  # its official checkpoint is on Google Drive only: --weights PATH
        assert "WEIGHTS" not in CONFIGS[name]["HRSTREAM"] and registry.default_weights(name) is None
        return
    named = CONFIGS[name]["HRSTREAM"]["WEIGHTS"]
    entry = registry.get_weights(named)
    assert entry.config == name
    assert registry.default_weights(name) == entry
    assert registry.get_weights(name) == entry  # a bare config name means its default weights


def _check_pose_meta(entry: WeightsEntry, cfg: dict[str, Any]) -> None:
    meta = entry.meta
    gt = json.loads(COCO_NAMES_FROM_GT.read_text())["categories"][0]
    names = meta["keypoint_names"]
    assert len(names) == 17 and list(names) == gt["keypoints"]
    assert sorted(tuple(p) for p in meta["skeleton"]) == sorted((a - 1, b - 1) for a, b in gt["skeleton"])
    pairs = [tuple(p) for p in meta["flip_pairs"]]
    flat = [i for p in pairs for i in p]
    assert len(flat) == len(set(flat)) and all(0 <= i < 17 for i in flat)
    for a, b in pairs:  # a left joint is paired with the same joint on the right
        assert names[a].startswith("left_") and names[b] == "right_" + names[a].removeprefix("left_")
    unpaired = [n for i, n in enumerate(names) if i not in flat]
    assert unpaired == ["nose"]
    assert len(meta["oks_sigmas"]) == 17
    if cfg["MODEL"]["NAME"] == "pose_higher_hrnet":
        size = cfg["DATASET"]["INPUT_SIZE"]
        assert tuple(meta["input_size"]) == (size, size) and tuple(meta["heatmap_size"]) == (size // 4,) * 2
        assert meta["method"] == "bottomup" and meta["decoder"] == "associative_embedding"
        assert 0.66 < meta["metrics"]["AP"] < 0.7
        return
    w, h = cfg["MODEL"]["IMAGE_SIZE"]
    assert tuple(meta["input_size"]) == (h, w)
    hw, hh = cfg["MODEL"]["HEATMAP_SIZE"]
    assert tuple(meta["heatmap_size"]) == (hh, hw)
    assert meta["decoder"] == cfg["HRSTREAM"]["DECODER"]
    low, high = (0.6, 0.72) if cfg["MODEL"]["NAME"] == "litehrnet" else (0.7, 0.8)
    assert low < meta["metrics"]["AP"] < high


def _check_seg_meta(entry: WeightsEntry, cfg: dict[str, Any]) -> None:
    meta = entry.meta
    assert len(meta["classes"]) == 19 == cfg["DATASET"]["NUM_CLASSES"]
    assert len(set(meta["classes"])) == 19
    palette = meta["palette"]
    assert len(palette) == 19 and len({tuple(c) for c in palette}) == 19
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in palette)
    w, h = cfg["TEST"]["IMAGE_SIZE"]
    assert tuple(meta["input_size"]) == (h, w)
    assert meta["align_corners"] is cfg["MODEL"]["ALIGN_CORNERS"]
    assert 0.7 < meta["metrics"]["mIoU"] < 0.85


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_metadata(entry: WeightsEntry) -> None:
    assert entry.name.startswith(entry.config + ".")
    assert entry.config in CONFIGS, f"{entry.name} names missing config {entry.config}"
    cfg = CONFIGS[entry.config]
    parts = urlsplit(entry.url)
    assert parts.scheme == "https" and parts.netloc
    filename = PurePosixPath(parts.path).name
    assert filename == entry.filename and filename.endswith(".pth")
    if entry.layout in ("mmpose0", "mmpose1", "mmseg"):
        assert parts.netloc == "download.openmmlab.com"
        assert entry.hash_kind == "sha256_prefix"
        assert re.fullmatch(r"[0-9a-f]{8}", entry.sha256)
        assert re.search(rf"-{entry.sha256}(_\d{{8}})?\.pth$", filename), filename
    if entry.layout == "mmpose1":
        assert "/mmpose/v1/" in entry.url
    if entry.layout == "mmpose0":
        bottomup = cfg["MODEL"]["NAME"] == "pose_higher_hrnet"
        assert ("/mmpose/bottom_up/" if bottomup else "/mmpose/top_down/") in entry.url
    meta = entry.meta
    for key in ("input_size", "mean", "std", "metrics", "licence"):
        assert key in meta, f"{entry.name}: meta lacks {key}"
    assert meta["metrics"]["source"].startswith("https://")
    assert all(0 < v < 1 for v in meta["mean"]) and all(0 < v < 1 for v in meta["std"])
    tasks = {"pose_hrnet": "pose", "litehrnet": "pose", "seg_hrnet": "seg", "pose_higher_hrnet": "pose"}
    assert entry.task == tasks[cfg["MODEL"]["NAME"]]
    if entry.task == "pose":
        _check_pose_meta(entry, cfg)
    else:
        _check_seg_meta(entry, cfg)


def test_entries_are_values() -> None:
    a = registry.get_weights("pose_hrnet_w32_256x192.mmpose")
    assert a == registry.get_weights("pose_hrnet_w32_256x192")
    assert hash(a) == hash(registry.get_weights("pose_hrnet_w32_256x192.mmpose"))
    with pytest.raises(AttributeError):
        a.url = "https://example.com/x.pth"  # type: ignore[misc]
    assert len({e.filename for e in ENTRIES}) == len(ENTRIES)


def test_entry_validation() -> None:
    good = dict(name="x.y", url="https://h/x-abcdef12.pth", layout="mmseg", config="x", task="seg")
    assert WeightsEntry(sha256="ABCDEF12", **good).sha256 == "abcdef12"
    for bad in (
        dict(sha256="xyz12345"),
        dict(sha256="abc"),
        dict(sha256="a" * 64, hash_kind="sha256_prefix"),
        dict(sha256="a" * 63, hash_kind="sha256"),
        dict(sha256="ab12cd34", hash_kind="none"),
        dict(sha256="ab12cd34", hash_kind="md5"),
    ):
        with pytest.raises(ConfigError):
            WeightsEntry(**good, **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="layout"):
        WeightsEntry(**{**good, "layout": "caffe"}, sha256="abcdef12")  # type: ignore[arg-type]


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(ConfigError, match=r"pose_hrnet_w32_256x192") as err:
        registry.get_weights("pose_hrnet_w32_265x192")
    assert "did you mean" in str(err.value)
    with pytest.raises(ConfigError, match=r"seg_hrnet_w18_cityscapes"):
        registry.config_path("seg_hrnet_w18_citiscapes")
    with pytest.raises(ConfigError, match="unknown weights 'zzz'"):
        registry.get_weights("zzz")


def test_configs_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = registry.config_path("seg_hrnet_w18_cityscapes")
    (tmp_path / "my_seg.yaml").write_bytes(src.read_bytes())
    monkeypatch.setenv("HRSTREAM_CONFIGS", os.fspath(tmp_path))
    assert registry.list_configs() == ["my_seg"]
    assert registry.config_path("my_seg") == tmp_path / "my_seg.yaml"
    assert registry.config_path("my_seg.yaml") == tmp_path / "my_seg.yaml"
    # its HRSTREAM.WEIGHTS still names a registered entry, which wins over the config name
    assert registry.default_weights("my_seg").name == "seg_hrnet_w18_cityscapes.mmseg_160k"
    with pytest.raises(ConfigError, match="looked in"):
        registry.config_path("pose_hrnet_w32_256x192")
    monkeypatch.delenv("HRSTREAM_CONFIGS")
    assert registry.config_path(os.fspath(tmp_path / "my_seg.yaml")) == tmp_path / "my_seg.yaml"
