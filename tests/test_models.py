"""The networks equal the official ones: key names and shapes, outputs from every checkpoint layout."""

from __future__ import annotations

import copy
import json
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hrstream.errors import ConfigError, WeightsError
from hrstream.models import build_hrfpn, detect_layout, from_config, load_weights

REF = Path(__file__).parent / "data" / "hrnet_reference"


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def pose_tiny() -> dict:
    return torch.load(REF / "official_pose_hrnet_w4_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def seg_tiny() -> dict:
    return torch.load(REF / "official_seg_hrnet_w4_tiny.pt", weights_only=True)


def pose_cfg(channels: tuple[int, ...] = (4, 8, 16, 32), joints: int = 17) -> dict:
    def stage(n: int, m: int) -> dict:
        return {
            "NUM_MODULES": m,
            "NUM_BRANCHES": n,
            "BLOCK": "BASIC",
            "NUM_BLOCKS": [4] * n,
            "NUM_CHANNELS": list(channels[:n]),
            "FUSE_METHOD": "SUM",
        }

    return {
        "MODEL": {
            "NAME": "pose_hrnet",
            "NUM_JOINTS": joints,
            "EXTRA": {
                "FINAL_CONV_KERNEL": 1,
                "STAGE2": stage(2, 1),
                "STAGE3": stage(3, 4),
                "STAGE4": stage(4, 3),
            },
        }
    }


def seg_cfg(
    channels: tuple[int, ...] = (4, 8, 16, 32), classes: int = 19, align_corners: bool = False
) -> dict:
    cfg = pose_cfg(channels)
    extra = cfg["MODEL"]["EXTRA"]
    extra["STAGE1"] = {
        "NUM_MODULES": 1,
        "NUM_RANCHES": 1,  # the official YAMLs' spelling
        "BLOCK": "BOTTLENECK",
        "NUM_BLOCKS": [4],
        "NUM_CHANNELS": [64],
        "FUSE_METHOD": "SUM",
    }
    return {
        "MODEL": {"NAME": "seg_hrnet", "ALIGN_CORNERS": align_corners, "EXTRA": extra},
        "DATASET": {"NUM_CLASSES": classes},
    }


# ---- key names and shapes of the published networks -------------------------------------------------------


@pytest.mark.parametrize(
    "name, keys_file",
    [
        ("pose_hrnet_w32_256x192", "official_pose_hrnet_w32_keys.json"),
        ("pose_hrnet_w48_384x288", "official_pose_hrnet_w48_keys.json"),
        ("seg_hrnet_w18_cityscapes", "official_seg_hrnet_w18_keys.json"),
        ("seg_hrnet_w48_cityscapes", "official_seg_hrnet_w48_keys.json"),
    ],
)
def test_keys_and_shapes_equal_official(name: str, keys_file: str) -> None:
    ref = json.loads((REF / keys_file).read_text())
    with torch.device("meta"):  # names, shapes and counts need no memory or initialisation
        model = from_config(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(ref["keys"])  # same names, same order
    assert ours == ref["keys"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]


# ---- the tiny official models reproduce the official outputs from every layout ---------------------------


def _pose_layouts(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    back = {f"backbone.{k}": v for k, v in sd.items() if not k.startswith("final_layer.")}
    head = {k: v for k, v in sd.items() if k.startswith("final_layer.")}
    return {
        "official": dict(sd),
        "official-wrapped": {"state_dict": dict(sd), "epoch": 210},
        "mmpose1": {
            "meta": {"mmpose_version": "1.0.0"},
            "state_dict": {
                **back,
                **{f"head.{k}": v for k, v in head.items()},
                "data_preprocessor.mean": torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1),
                "data_preprocessor.std": torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1),
            },
        },
        "mmpose0": {"meta": {}, "state_dict": {**back, **{f"keypoint_head.{k}": v for k, v in head.items()}}},
    }


def _mmseg_layout(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    out = {f"backbone.{k}": v for k, v in sd.items() if not k.startswith("last_layer.")}
    # MMSeg's 1x1 conv has no bias: fold the official bias into the BN's running mean (the same function).
    bias = sd["last_layer.0.bias"]
    out["decode_head.convs.0.conv.weight"] = sd["last_layer.0.weight"]
    for p in ("weight", "bias", "running_var", "num_batches_tracked"):
        out[f"decode_head.convs.0.bn.{p}"] = sd[f"last_layer.1.{p}"]
    out["decode_head.convs.0.bn.running_mean"] = sd["last_layer.1.running_mean"] - bias
    out["decode_head.conv_seg.weight"] = sd["last_layer.3.weight"]
    out["decode_head.conv_seg.bias"] = sd["last_layer.3.bias"]
    return {"meta": {}, "state_dict": out}


@pytest.mark.parametrize("layout", ["official", "official-wrapped", "mmpose1", "mmpose0"])
def test_tiny_pose_reproduces_official_output(pose_tiny: dict, layout: str) -> None:
    model = from_config(pose_cfg())
    source = _pose_layouts(pose_tiny["state_dict"])[layout]
    report = load_weights(model, source)
    assert report.layout == layout.split("-")[0]
    with torch.inference_mode():
        out = model(pose_tiny["input"])
    assert out.shape == pose_tiny["output"].shape == (2, 17, 32, 24)
    assert _rel_err(out, pose_tiny["output"]) < 1e-5


@pytest.mark.parametrize("layout", ["official-prefixed", "official-flat", "mmseg"])
def test_tiny_seg_reproduces_official_output(seg_tiny: dict, layout: str) -> None:
    sd = seg_tiny["state_dict"]
    if layout == "official-prefixed":  # as released: model. prefix, state_dict wrapper, loss weights
        source: object = {
            "state_dict": {
                **{f"model.{k}": v for k, v in sd.items()},
                "loss.criterion.weight": torch.ones(19),
            }
        }
    elif layout == "official-flat":
        source = dict(sd)
    else:
        source = _mmseg_layout(sd)
    model = from_config(seg_cfg(align_corners=seg_tiny["align_corners"]))
    load_weights(model, source)
    with torch.inference_mode():
        out = model(seg_tiny["input"])
    assert out.shape == seg_tiny["output"].shape == (1, 19, 32, 64)
    assert _rel_err(out, seg_tiny["output"]) < 1e-5


def test_timm_layout_loads_backbone_and_names_the_head(pose_tiny: dict) -> None:
    sd = pose_tiny["state_dict"]
    timm_sd = {k: v for k, v in sd.items() if not k.startswith("final_layer.")}
    timm_sd["incre_modules.0.0.conv1.weight"] = torch.zeros(8, 4, 1, 1)
    timm_sd["final_layer.0.weight"] = torch.zeros(16, 8, 1, 1)  # the classifier's conv, not the pose head
    timm_sd["classifier.weight"] = torch.zeros(1000, 16)
    timm_sd["classifier.bias"] = torch.zeros(1000)
    assert detect_layout(timm_sd) == "timm"
    model, ref = from_config(pose_cfg()), from_config(pose_cfg())
    report = load_weights(model, timm_sd)
    load_weights(ref, sd)
    assert report.left_at_init == ["final_layer.weight", "final_layer.bias"]
    assert "classifier.weight" in report.ignored
    with torch.inference_mode():
        a = model.forward_features(pose_tiny["input"])[0]
        b = ref.forward_features(pose_tiny["input"])[0]
    assert _rel_err(a, b) < 1e-6


def test_timm_layout_still_needs_every_backbone_key(pose_tiny: dict) -> None:
    sd = {k: v for k, v in pose_tiny["state_dict"].items() if not k.startswith("final_layer.")}
    sd["classifier.weight"] = torch.zeros(1000, 16)
    del sd["stage3.1.branches.2.0.conv1.weight"]  # only the task head may stay at initialisation
    with pytest.raises(
        WeightsError, match=r"\(timm layout\).*missing keys: stage3\.1\.branches\.2\.0\.conv1\.weight"
    ):
        load_weights(from_config(pose_cfg()), sd)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_load_from_files(tmp_path: Path, pose_tiny: dict, fmt: str) -> None:
    sd = {k: v.contiguous() for k, v in pose_tiny["state_dict"].items()}
    path = tmp_path / f"w.{fmt}"
    if fmt == "pth":
        torch.save({"state_dict": sd}, path)
    else:
        save_file(sd, str(path))
    model = from_config(pose_cfg())
    load_weights(model, path)
    with torch.inference_mode():
        assert _rel_err(model(pose_tiny["input"]), pose_tiny["output"]) < 1e-5


def test_differently_sized_model_loads_from_every_layout() -> None:
    """A W18-wide pose net at 384x288 and a W6 seg net: every layout gives the official-layout output."""
    torch.manual_seed(0)
    ref = from_config(pose_cfg((18, 36, 72, 144), joints=17))
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    sd = ref.state_dict()
    x = torch.randn(1, 3, 384, 288)
    with torch.inference_mode():
        expected = ref(x)
    assert expected.shape == (1, 17, 96, 72)
    for name, source in _pose_layouts(sd).items():
        model = from_config(pose_cfg((18, 36, 72, 144)))
        load_weights(model, copy.deepcopy(source))
        with torch.inference_mode():
            assert _rel_err(model(x), expected) < 1e-6, name

    seg_ref = from_config(seg_cfg((6, 12, 24, 48), classes=7))
    for m in seg_ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    x = torch.randn(1, 3, 96, 160)
    with torch.inference_mode():
        expected = seg_ref(x)
    assert expected.shape == (1, 7, 24, 40)
    model = from_config(seg_cfg((6, 12, 24, 48), classes=7))
    load_weights(model, _mmseg_layout(seg_ref.state_dict()))
    with torch.inference_mode():
        assert _rel_err(model(x), expected) < 1e-5


# ---- errors that name the problem ----------------------------------------------------------------------


def test_mismatched_keys_are_named(pose_tiny: dict) -> None:
    sd = dict(pose_tiny["state_dict"])
    del sd["stage2.0.branches.0.0.conv1.weight"]
    sd["extra.weight"] = torch.zeros(1)
    sd["final_layer.weight"] = torch.zeros(5, 4, 1, 1)
    with pytest.raises(WeightsError) as e:
        load_weights(from_config(pose_cfg()), sd)
    msg = str(e.value)
    assert "missing keys: stage2.0.branches.0.0.conv1.weight" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "mis-shaped keys: final_layer.weight (5, 4, 1, 1) vs model (17, 4, 1, 1)" in msg


def test_pickle_with_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(WeightsError, match="refused or unreadable"):
        load_weights(from_config(pose_cfg()), path)
    assert not marker.exists()


def test_backbone_keys_without_a_known_head_are_refused(pose_tiny: dict) -> None:
    sd = {f"backbone.{k}": v for k, v in pose_tiny["state_dict"].items() if not k.startswith("final_layer.")}
    sd["neck.conv.weight"] = torch.zeros(4, 4, 1, 1)  # a head this loader does not know
    with pytest.raises(WeightsError, match=r"backbone\.\* keys but no known head"):
        detect_layout(sd)
    with pytest.raises(WeightsError, match="no known head"):
        load_weights(from_config(pose_cfg()), {"state_dict": sd})


def test_a_checkpoint_without_a_state_dict_names_its_top_level_keys(tmp_path: Path) -> None:
    path = tmp_path / "trainer.pth"
    torch.save({f"field{i}": i for i in range(7)}, path)  # a training log, no tensors
    with pytest.raises(
        WeightsError, match=r"no state dict of tensors found \(top-level keys: field0, .*field5 \.\.\.\)"
    ):
        load_weights(from_config(pose_cfg()), path)
    torch.save({f"field{i}": i for i in range(6)}, path)
    with pytest.raises(
        WeightsError, match=r"top-level keys: field0, field1, field2, field3, field4, field5\)"
    ):
        load_weights(from_config(pose_cfg()), path)
    torch.save([torch.zeros(2)], path)  # not a mapping at all
    with pytest.raises(WeightsError, match=r"no state dict of tensors found \(top-level keys: list\)"):
        load_weights(from_config(pose_cfg()), path)


def test_ignored_keys_are_described_by_module() -> None:
    from hrstream.models.checkpoints import describe_ignored

    keys = ["classifier.weight", "classifier.bias", "incre_modules.0.0.conv1.weight"]
    keys += ["stage4.2.fuse_layers.1.0.0.weight", "stage4.2.fuse_layers.1.0.1.weight"]
    assert describe_ignored(keys) == (
        "classifier (2 tensors), incre_modules (1 tensors), stage4.2.fuse_layers.1 (2 tensors)"
    )


def test_mmseg_auxiliary_head_is_ignored_and_named(seg_tiny: dict) -> None:
    source = _mmseg_layout(seg_tiny["state_dict"])
    aux = {  # MMSeg's FCNHead auxiliary head, trained beside the decode head and unused at inference
        "auxiliary_head.convs.0.conv.weight": torch.ones(8, 60, 3, 3),
        "auxiliary_head.convs.0.bn.weight": torch.ones(8),
        "auxiliary_head.conv_seg.weight": torch.ones(19, 8, 1, 1),
        "auxiliary_head.conv_seg.bias": torch.ones(19),
    }
    source["state_dict"] = {**source["state_dict"], **aux}  # type: ignore[dict-item]
    model = from_config(seg_cfg(align_corners=seg_tiny["align_corners"]))
    report = load_weights(model, source)
    assert report.layout == "mmseg"
    assert sorted(report.ignored) == sorted(aux)
    with torch.inference_mode():
        assert _rel_err(model(seg_tiny["input"]), seg_tiny["output"]) < 1e-5


def test_empty_or_invalid_safetensors_files_are_named(tmp_path: Path, pose_tiny: dict) -> None:
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in pose_tiny["state_dict"].items()}, str(good))
    data = good.read_bytes()
    cases = {
        "empty.safetensors": (b"", "checkpoint file is empty"),
        "text.safetensors": (b"these are not tensors\n", "not a valid safetensors file"),
        "cut.safetensors": (data[: len(data) // 2], "not a valid safetensors file"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    none = tmp_path / "none.safetensors"
    save_file({}, str(none))
    cases["none.safetensors"] = (b"", "holds no tensors")
    cases["missing.safetensors"] = (b"", "checkpoint file not found")
    for name, (_, message) in cases.items():
        with pytest.raises(WeightsError, match=message) as e:
            load_weights(from_config(pose_cfg()), tmp_path / name)
        assert str(tmp_path / name) in str(e.value)  # the message names the file


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda c: c["MODEL"]["EXTRA"]["STAGE3"].pop("NUM_CHANNELS"), "MODEL.EXTRA.STAGE3.NUM_CHANNELS"),
        (lambda c: c["MODEL"].pop("NUM_JOINTS"), "MODEL.NUM_JOINTS"),
        (lambda c: c["MODEL"].__setitem__("NAME", "pose_resnet"), "MODEL.NAME"),
        (lambda c: c["MODEL"]["EXTRA"]["STAGE2"].__setitem__("BLOCK", "FANCY"), "MODEL.EXTRA.STAGE2.BLOCK"),
        (lambda c: c["MODEL"]["EXTRA"]["STAGE4"].__setitem__("NUM_BRANCHES", 3), "MODEL.EXTRA.STAGE4"),
    ],
)
def test_config_errors_name_the_field(mutate, field: str) -> None:
    cfg = pose_cfg()
    mutate(cfg)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        from_config(cfg)


def test_unknown_config_name_lists_close_ones() -> None:
    with pytest.raises(ConfigError, match="pose_hrnet_w32_256x192"):
        from_config("pose_hrnet_w32_256x19")


# ---- V1 / V2 / V2p -------------------------------------------------------------------------------------


def test_v2p_pyramid_feeds_torchvision_detection() -> None:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    fpn = build_hrfpn(pose_cfg(), out_channels=16, num_outs=5)
    x = torch.randn(1, 3, 128, 160)
    with torch.inference_mode():
        feats = fpn(x)
    assert isinstance(feats, OrderedDict) and list(feats) == ["0", "1", "2", "3", "4"]
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(32, 40), (16, 20), (8, 10), (4, 5), (2, 2)]
    assert all(f.shape[1] == fpn.out_channels == 16 for f in feats.values())
    anchors = AnchorGenerator(
        sizes=((16,), (32,), (64,), (128,), (256,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5
    )
    det = FasterRCNN(
        fpn,
        num_classes=2,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2),
        min_size=128,
        max_size=160,
    ).eval()
    with torch.inference_mode():
        out = det([torch.rand(3, 128, 160)])
    assert set(out[0]) == {"boxes", "labels", "scores"}


# ---- every registered config and weights entry builds --------------------------------------------------


def test_every_registered_config_builds_and_matches_its_weights_metadata() -> None:
    from hrstream.models.registry import get_weights, list_configs, list_weights

    built: dict[str, torch.nn.Module] = {}
    for name in list_configs():
        with torch.device("meta"):  # building checks every field; forwards are tested on the tiny models
            model = from_config(name)
        assert not model.training
        built[name] = model
    for entry in list_weights():
        assert get_weights(entry.name) is entry
        spec = built[entry.config].spec
        assert spec.task == entry.task
        if entry.task == "pose":
            assert len(entry.meta["keypoint_names"]) == spec.num_outputs
        else:
            assert len(entry.meta["classes"]) == spec.num_outputs
