"""ONNX export (``hrstream export-model``): ONNX Runtime runs the file and gives the torch model's outputs,
for any batch size; the file records its opset and what it holds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.cli_checks import invoke
from support.tiny_models import TinyModel, tiny_pose_model, tiny_seg_model

from hrstream.models import from_config, load_weights
from hrstream.models.bundle import load_model_bundle
from hrstream.models.export import export_onnx, read_metadata

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow  # each export traces the network (several seconds on two cores)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


@pytest.fixture(scope="module")
def exported(tiny_pose: TinyModel, tmp_path_factory: pytest.TempPathFactory):
    model = from_config(str(tiny_pose.config))
    load_weights(model, tiny_pose.weights)
    path = tmp_path_factory.mktemp("onnx") / "tiny_pose.onnx"
    return model, export_onnx(model, path, metadata={"hrstream.model": "tiny_pose"})


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_gives_the_torch_heatmaps(exported, batch: int) -> None:
    model, result = exported
    x = torch.randn(batch, 3, 128, 96, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        ref = model(x)
    (out,) = _session(result.path).run(None, {"input": x.numpy()})
    assert out.shape == (batch, 17, 32, 24) and out.dtype == np.float32
    assert _rel_err(torch.from_numpy(out), ref) < 1e-4


def test_file_records_opset_batch_axis_and_metadata(exported) -> None:
    model, result = exported
    assert not model.training  # export leaves the model as it was
    proto = onnx.load(str(result.path))
    onnx.checker.check_model(proto)
    opset = {o.domain: o.version for o in proto.opset_import}[""]
    assert opset == result.opset == 18
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 128, 96]
    assert [o.name for o in proto.graph.output] == ["heatmaps"] and result.output_names == ("heatmaps",)
    meta = read_metadata(result.path)
    assert meta == result.metadata
    assert meta["hrstream.opset"] == "18" and meta["hrstream.task"] == "pose"
    assert meta["hrstream.input_size"] == "128x96" and meta["hrstream.model"] == "tiny_pose"
    assert [p.name for p in result.path.parent.iterdir()] == ["tiny_pose.onnx"]  # one file, no leftovers


def test_export_model_command_writes_a_file_onnx_runtime_runs(tmp_path: Path) -> None:
    seg = tiny_seg_model(tmp_path / "seg")
    out = tmp_path / "out" / "seg.onnx"
    result = invoke(["export-model", str(seg.config), "--weights", str(seg.weights), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    assert "opset 18" in result.stdout and "(N, 3, 128, 256)" in result.stdout and "logits" in result.stdout
    meta = read_metadata(out)
    assert meta["hrstream.task"] == "seg" and meta["hrstream.input_size"] == "128x256"
    assert meta["hrstream.weights_sha256"] == hashlib.sha256(seg.weights.read_bytes()).hexdigest()
    assert json.loads(meta["hrstream.mean"]) == pytest.approx([0.485, 0.456, 0.406])
    model = from_config(str(seg.config))
    load_weights(model, seg.weights)
    x = torch.randn(2, 3, 128, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x)
    (logits,) = _session(out).run(None, {"input": x.numpy()})
    assert _rel_err(torch.from_numpy(logits), ref) < 1e-4


def test_detector_exports_its_feature_pyramid(tmp_path: Path) -> None:
    out = tmp_path / "det.onnx"
    name = "synthetic_det_hrnet_w18_small_fcos"  # ships in the package: no download
    result = invoke(["export-model", name, "--out", str(out), "--input-size", "128x224", "-q"])
    assert result.exit_code == 0, result.stderr
    assert "level0, level1, level2, level3, level4" in result.stdout
    bundle = load_model_bundle(name, None, task="det", progress=False)
    x = torch.randn(3, 3, 128, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = list(bundle.model.backbone(x).values())
    outs = _session(out).run(None, {"input": x.numpy()})
    assert [o.shape[-2:] for o in outs] == [(128 // s, 224 // s) for s in (4, 8, 16, 32, 64)]
    for o, r in zip(outs, ref, strict=True):
        assert _rel_err(torch.from_numpy(o), r) < 1e-4


@pytest.mark.parametrize(
    "args, message",
    [
        (["no_such_model", "--out", "x.onnx"], "unknown model config 'no_such_model'"),
        (["pose_hrnet_w32_256x192", "--out", "x.onnx", "--input-size", "256"], "expected HxW"),
        (["pose_hrnet_w32_256x192", "--out", "x.onnx", "--opset", "11"], "--opset"),
        (["pose_hrnet_w32_256x192", "--format", "tflite", "--out", "x.onnx"], "--format"),
    ],
)
def test_export_model_command_rejects_bad_input_in_one_line(args: list[str], message: str) -> None:
    result = invoke(["export-model", *args])
    assert result.exit_code == 2
    assert message in result.stderr
