"""ONNX export of HigherHRNet at a fixed input size: ONNX Runtime gives the torch network's two outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hrstream.models import from_config, load_weights
from hrstream.models.export import export_onnx, read_metadata

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow  # the export traces the network (several seconds on two cores)

REF = Path(__file__).parent / "data" / "higherhrnet_reference"


def test_onnx_runtime_gives_both_torch_outputs(tmp_path: Path) -> None:
    tiny = torch.load(REF / "official_higherhrnet_tiny.pt", weights_only=True)
    model = from_config(yaml.safe_load((REF / "higherhrnet_tiny.yaml").read_text()))
    load_weights(model, tiny["state_dict"])
    result = export_onnx(model, tmp_path / "higher.onnx", input_size=(256, 384))
    assert result.output_names == ("stage0", "stage1") and result.input_size == (256, 384)
    meta = read_metadata(result.path)
    assert meta["hrstream.method"] == "bottomup" and meta["hrstream.task"] == "pose"
    assert meta["hrstream.input_size"] == "256x384"
    proto = onnx.load(str(result.path))
    assert [o.name for o in proto.graph.output] == ["stage0", "stage1"]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        x = torch.randn(batch, 3, 256, 384, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            ref = model(x)
        outs = session.run(None, {"input": x.numpy()})
        assert [o.shape for o in outs] == [(batch, 34, 64, 96), (batch, 17, 128, 192)]
        for got, want in zip(outs, ref, strict=True):
            assert got.dtype == np.float32
            assert float(np.linalg.norm(got - want.numpy()) / np.linalg.norm(want.numpy())) < 1e-5
    assert not model.training  # the export leaves the model in eval mode, as it found it
