"""Weights carry their meaning: the bundle's meta holds the weights' decoder, sizes, flip pairs and OKS
sigmas, and a --weights / --model pair that contradicts them is an error naming both, before any download."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hrstream.errors import ConfigError
from hrstream.models.builder import resolve_config
from hrstream.models.bundle import entry_meta, load_model_bundle
from hrstream.models.config import parse_config
from hrstream.models.datasets_meta import COCO_FLIP_PAIRS, COCO_OKS_SIGMAS
from hrstream.models.registry import config_path, get_weights


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights cache: a registered download is not there, so reaching it would mean a download."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HRSTREAM_HOME", str(cache))
    return cache


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.parametrize(
    ("model", "weights", "message"),
    [
        (  # the DARK weights on the plain config would silently decode with msra
            "pose_hrnet_w32_256x192",
            "pose_hrnet_w32_256x192_dark.mmpose",
            "the weights decode with dark, the config's HRSTREAM.DECODER says msra",
        ),
        (
            "pose_hrnet_w32_384x288",
            "pose_hrnet_w32_256x192.mmpose",
            "the weights take 256x192 (HxW) crops, the config's MODEL.IMAGE_SIZE is 384x288",
        ),
        ("pose_hrnet_w32_256x192", "seg_hrnet_w18_cityscapes.mmseg_160k", "the weights are seg weights"),
    ],
)
def test_contradicting_weights_and_model_are_an_error_naming_both(
    model: str, weights: str, message: str, empty_cache: Path
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_model_bundle(model, weights, task="pose", progress=False)
    text = str(exc.value)
    assert f"--weights {weights}" in text and f"--model {model}" in text and message in text
    assert f"use --model {get_weights(weights).config}" in text
    assert _files(empty_cache) == []  # decided before any download


def test_meta_holds_the_weights_meaning() -> None:
    bundle = load_model_bundle(
        "synthetic_pose_hrnet_w18_small_128x96",
        "synthetic_pose_hrnet_w18_small_128x96.synthetic",
        task="pose",
        progress=False,
    )
    meta = bundle.meta
    assert meta.estimator == "topdown" and meta.decoder == "msra"
    assert meta.input_size == (128, 96) and meta.heatmap_size == (32, 24)
    assert meta.flip_pairs == tuple(tuple(p) for p in COCO_FLIP_PAIRS)
    assert meta.oks_sigmas == tuple(COCO_OKS_SIGMAS)
    # --model left out: the config the registered weights were made for
    same = load_model_bundle(
        None, "synthetic_pose_hrnet_w18_small_128x96.synthetic", task="pose", progress=False
    )
    assert same.name == "synthetic_pose_hrnet_w18_small_128x96" and same.meta == meta
    with pytest.raises(ConfigError, match="no --model given"):
        load_model_bundle(None, str(bundle.weights_path.with_name("other.safetensors")), task="pose")


def test_the_weights_decoder_is_used_where_the_config_names_none(tmp_path: Path) -> None:
    data = yaml.safe_load(config_path("pose_hrnet_w32_256x192").read_text())
    del data["HRSTREAM"]  # an official YAML as published: no decoder of hrstream's
    path = tmp_path / "w32_256x192_adam_lr1e-3.yaml"
    path.write_text(yaml.safe_dump(data))
    data, src = resolve_config(str(path))
    spec = parse_config(data, source=src)
    dark = get_weights("pose_hrnet_w32_256x192_dark.mmpose")
    meta = entry_meta(spec, dark, model=str(path), weights=dark.name)
    assert meta.decoder == "dark"
    assert entry_meta(spec, None, model=str(path), weights="w.pth").decoder == "msra"  # unknown weights
    assert meta.input_size == (256, 192) and meta.oks_sigmas == tuple(COCO_OKS_SIGMAS)
