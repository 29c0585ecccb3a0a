"""Lite-HRNet equals the official network: key names and shapes, parameter counts, outputs from both MMPose
checkpoint layouts (tests/data/litehrnet_reference, made with the official code)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from hrstream.errors import ConfigError, WeightsError
from hrstream.models import from_config, load_weights

REF = Path(__file__).parent / "data" / "litehrnet_reference"


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def lite_cfg(extra: dict[str, Any], *, joints: int = 17, image_size: list[int] | None = None) -> dict:
    """A ``litehrnet`` config around an official backbone ``extra`` dict (tuples become YAML lists)."""
    model: dict[str, Any] = {
        "NAME": "litehrnet",
        "NUM_JOINTS": joints,
        "EXTRA": json.loads(json.dumps(extra)),
    }
    if image_size is not None:
        model["IMAGE_SIZE"] = image_size
        model["HEATMAP_SIZE"] = [image_size[0] // 4, image_size[1] // 4]
    return {"MODEL": model}


def _as_mmpose0(keys: list[str]) -> list[str]:
    """Our flat names in the MMPose 0.x layout, as the official TopDown model names them."""
    return [f"keypoint_head.{k}" if k.startswith("final_layer.") else f"backbone.{k}" for k in keys]


@pytest.mark.parametrize(
    "keys_file",
    [
        "official_litehrnet_18_keys.json",
        "official_litehrnet_30_keys.json",
        "official_naive_litehrnet_18_keys.json",
    ],
)
def test_keys_shapes_and_parameter_count_equal_official(keys_file: str) -> None:
    ref = json.loads((REF / keys_file).read_text())
    with torch.device("meta"):
        model = from_config(lite_cfg(ref["config"]))
    sd = model.state_dict()
    ours = dict(zip(_as_mmpose0(list(sd)), (list(v.shape) for v in sd.values()), strict=True))
    assert list(ours) == list(ref["keys"])  # same names, same order
    assert ours == ref["keys"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_parameters"]
    assert model.spec.lite.to_extra() == ref["config"]


@pytest.mark.parametrize(
    "name, keys_file",
    [
        ("litehrnet_18_coco_256x192", "official_litehrnet_18_keys.json"),
        ("litehrnet_18_coco_384x288", "official_litehrnet_18_keys.json"),
        ("litehrnet_30_coco_256x192", "official_litehrnet_30_keys.json"),
        ("litehrnet_30_coco_384x288", "official_litehrnet_30_keys.json"),
    ],
)
def test_registered_configs_build_the_official_networks(name: str, keys_file: str) -> None:
    ref = json.loads((REF / keys_file).read_text())
    with torch.device("meta"):
        model = from_config(name)
    sd = model.state_dict()
    assert dict(zip(_as_mmpose0(list(sd)), (list(v.shape) for v in sd.values()), strict=True)) == ref["keys"]
    w, h = model.spec.image_size
    assert model.spec.heatmap_size == (w // 4, h // 4) and f"_{h}x{w}" in name


@pytest.fixture(scope="module", params=["official_litehrnet_tiny.pt", "official_litehrnet_tiny_naive.pt"])
def tiny(request: pytest.FixtureRequest) -> dict:
    return torch.load(REF / request.param, weights_only=True)


def _layouts(sd: dict[str, torch.Tensor]) -> dict[str, dict]:
    """The fixture's MMPose 0.x state dict and the same tensors as MMPose 1.x saves them."""
    head = {k.removeprefix("keypoint_head."): v for k, v in sd.items() if k.startswith("keypoint_head.")}
    back = {k: v for k, v in sd.items() if k.startswith("backbone.")}
    assert len(head) + len(back) == len(sd)
    return {
        "mmpose0": {"meta": {}, "state_dict": dict(sd)},
        "mmpose1": {
            "meta": {"mmpose_version": "1.3.2"},
            "state_dict": {
                **back,
                **{f"head.{k}": v for k, v in head.items()},
                "data_preprocessor.mean": torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1),
                "data_preprocessor.std": torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1),
            },
        },
    }


@pytest.mark.parametrize("layout", ["mmpose0", "mmpose1"])
def test_tiny_official_models_reproduce_official_heatmaps(tiny: dict, layout: str) -> None:
    model = from_config(lite_cfg(tiny["meta"]["backbone_extra"], image_size=[96, 128]))
    report = load_weights(model, _layouts(tiny["state_dict"])[layout])
    assert report.layout == layout
    assert report.loaded == len(model.state_dict())
    with torch.inference_mode():
        out = model(tiny["input"])
    assert out.shape == tiny["output"].shape == (2, 17, 32, 24)
    assert _rel_err(out, tiny["output"]) < 1e-5


def test_loads_from_files_and_leaves_the_input_alone(tmp_path: Path, tiny: dict) -> None:
    sd = tiny["state_dict"]
    pth = tmp_path / "lite.pth"
    torch.save({"meta": {}, "state_dict": sd}, pth)
    st = tmp_path / "lite.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    x = tiny["input"].clone()
    for path in (pth, st):
        model = from_config(lite_cfg(tiny["meta"]["backbone_extra"]))
        load_weights(model, path)
        with torch.inference_mode():
            assert _rel_err(model(x), tiny["output"]) < 1e-5
        assert torch.equal(x, tiny["input"])


def test_strict_loading_names_missing_and_misshaped_keys(tiny: dict) -> None:
    sd = dict(tiny["state_dict"])
    del sd["backbone.head_layer.projects.0.depthwise_conv.conv.weight"]
    model = from_config(lite_cfg(tiny["meta"]["backbone_extra"]))
    with pytest.raises(
        WeightsError, match=r"missing keys: head_layer\.projects\.0\.depthwise_conv\.conv\.weight"
    ):
        load_weights(model, {"state_dict": sd})
    wider = copy.deepcopy(tiny["meta"]["backbone_extra"])
    wider["stages_spec"]["num_channels"] = [
        [c * 2 for c in ch] for ch in wider["stages_spec"]["num_channels"]
    ]
    with pytest.raises(WeightsError, match="mis-shaped keys"):
        load_weights(from_config(lite_cfg(wider)), {"state_dict": tiny["state_dict"]})


def test_trains_and_runs_a_batch_of_one() -> None:
    extra = torch.load(REF / "official_litehrnet_tiny.pt", weights_only=True)["meta"]["backbone_extra"]
    model = from_config(lite_cfg(extra)).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 17, 16, 16)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.inference_mode():
        assert model.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 17, 16, 24)


def _mutate(cfg: dict, path: str, value: Any) -> dict:
    cfg = copy.deepcopy(cfg)
    cur = cfg
    *parents, last = path.split(".")
    for p in parents:
        cur = cur[p]
    if value is _DELETE:
        del cur[last]
    else:
        cur[last] = value
    return cfg


_DELETE = object()


@pytest.mark.parametrize(
    "path, value, message",
    [
        (
            "MODEL.EXTRA.stages_spec.num_channels",
            _DELETE,
            "missing field MODEL.EXTRA.stages_spec.num_channels",
        ),
        ("MODEL.EXTRA.stem", _DELETE, "missing field MODEL.EXTRA.stem"),
        (
            "MODEL.EXTRA.stages_spec.module_type",
            ["LITE", "FAST", "LITE"],
            "module_type entries must be one of",
        ),
        (
            "MODEL.EXTRA.stages_spec.num_blocks",
            [2, 2],
            r"num_blocks must be a list of 3 entries \(num_stages\)",
        ),
        (
            "MODEL.EXTRA.stages_spec.num_branches",
            [2, 3, 3],
            r"num_channels\[2\] has 4 widths for num_branches 3",
        ),
        ("MODEL.EXTRA.stages_spec.with_fuse", [True, "yes", True], "with_fuse must be a list of true/false"),
        ("MODEL.EXTRA.with_head", _DELETE, "missing field MODEL.EXTRA.with_head"),
        ("MODEL.IMAGE_SIZE", [192, 250], "IMAGE_SIZE must be multiples of 32"),
        ("MODEL.NUM_JOINTS", 0, "NUM_JOINTS must be a positive integer"),
    ],
)
def test_config_errors_name_the_field(path: str, value: Any, message: str) -> None:
    extra = json.loads((REF / "official_litehrnet_18_keys.json").read_text())["config"]
    cfg = _mutate(lite_cfg(extra, image_size=[192, 256]), path, value)
    with pytest.raises(ConfigError, match=message):
        from_config(cfg)


def _official_fuse(module: torch.nn.Module, out: list[torch.Tensor]) -> list[torch.Tensor]:
    """The official ``LiteHRModule`` fusion loop, in place as it is written there: row ``i`` starts from the
    first branch's term (the branch itself for ``i = 0``, else ``fuse_layers[i][0]`` applied to it) and then
    adds every branch's term, the first one again, so ``fuse_layers[i][0]`` runs twice per forward."""
    out = [t.clone() for t in out]
    fused = []
    for i in range(len(module.fuse_layers)):
        y = out[0] if i == 0 else module.fuse_layers[i][0](out[0])
        for j in range(module.num_branches):
            if i == j:
                y += out[j]
            else:
                y += module.fuse_layers[i][j](out[j])
        fused.append(module.relu(y))
    return fused


@pytest.mark.parametrize("module_type", ["LITE", "NAIVE"])
def test_training_forward_updates_the_fuse_statistics_as_the_official_module_does(module_type: str) -> None:
    from hrstream.models.litehrnet import LiteHRModule

    torch.manual_seed(0)
    ours = LiteHRModule(3, 1, [8, 16, 32], 8, module_type).train()
    official = copy.deepcopy(ours)
    x = [torch.randn(2, c, 16 // 2**k, 16 // 2**k) for k, c in enumerate([8, 16, 32])]
    with torch.no_grad():
        got = ours(x)
        if module_type == "LITE":
            branches = official.layers(x)
        else:
            branches = [b(s) for b, s in zip(official.layers, x, strict=True)]
        want = _official_fuse(official, branches)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    # every BatchNorm's statistics as the official module leaves them after one training forward
    theirs = official.state_dict()
    for name, value in ours.state_dict().items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(value, theirs[name], msg=name)
    # the term of the first branch runs twice in rows i > 0: its BatchNorm counts two batches
    for i in (1, 2):
        counts = [
            m.num_batches_tracked.item()
            for m in ours.fuse_layers[i][0].modules()
            if hasattr(m, "num_batches_tracked")
        ]
        assert counts and set(counts) == {2}, (i, counts)
