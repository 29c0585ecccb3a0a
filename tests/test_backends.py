"""ONNX Runtime and OpenVINO backends: the torch network's heatmaps from its exported graph, a cache keyed by
weights and input shape, a check against torch when built, and a place inside the InferenceEngine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support.tiny_models import TinyModel, tiny_lite_model, tiny_pose_model

from hrstream.errors import ConfigError
from hrstream.models import from_config, load_weights
from hrstream.models.export import read_metadata
from hrstream.runtime import InferenceEngine
from hrstream.runtime.backends import (
    TOLERANCE,
    OnnxRuntimeBackend,
    OpenVinoBackend,
    make_backend,
    model_fingerprint,
    onnx_cache_dir,
)
from hrstream.runtime.cpu import cpu_has_native_bf16

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

pytestmark = pytest.mark.slow  # each new graph is exported once (several seconds on two cores)

BACKENDS = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module, so each tiny network is exported once."""
    path = tmp_path_factory.mktemp("hrstream_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRSTREAM_HOME", str(path))
        yield path


def _load(tiny: TinyModel) -> torch.nn.Module:
    model = from_config(str(tiny.config))
    load_weights(model, tiny.weights)
    return model


@pytest.fixture(scope="module", params=["litehrnet", "hrnet"])
def network(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    folder = tmp_path_factory.mktemp(request.param)
    return _load(tiny_lite_model(folder) if request.param == "litehrnet" else tiny_pose_model(folder))


@pytest.fixture(scope="module")
def built(home: Path) -> dict:
    """Backends built once per (network, backend) for the module's tests."""
    return {}


def _backend(built: dict, network: torch.nn.Module, name: str) -> torch.nn.Module:
    key = (id(network), name)
    if key not in built:
        built[key] = make_backend(name, network)
    return built[key]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend_gives_the_torch_heatmaps(built: dict, network: torch.nn.Module, backend: str) -> None:
    runner = _backend(built, network, backend)
    assert isinstance(runner, BACKENDS[backend])
    assert runner.check_error < TOLERANCE["fp32"]
    for batch in (1, 3):
        x = torch.randn(batch, 3, 128, 96, generator=torch.Generator().manual_seed(10 + batch))
        with torch.inference_mode():
            ref = network(x)
            out = runner(x)
        assert out.shape == ref.shape == (batch, 17, 32, 24) and out.dtype == torch.float32
        assert _rel_err(out, ref) < 1e-4
    with pytest.raises(ValueError, match="exported for 128x96"):
        runner(torch.zeros(1, 3, 64, 96))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend_stands_in_for_the_network_in_the_engine(
    built: dict, network: torch.nn.Module, backend: str
) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (4, 128, 96, 3), dtype=np.uint8)
    ref = InferenceEngine(network, device="cpu", amp="off").infer(crops)
    runner = _backend(built, network, backend)
    for channels_last in (False, True):
        engine = InferenceEngine(runner, device="cpu", amp="off", channels_last=channels_last)
        assert _rel_err(engine.submit(crops).result(), ref) < 1e-4


def test_one_cached_file_per_weights_and_input_shape(home: Path, tmp_path: Path) -> None:
    model = _load(tiny_lite_model(tmp_path / "lite"))
    first = OnnxRuntimeBackend(model)
    stamp = first.path.stat().st_mtime_ns
    assert first.path.parent == onnx_cache_dir() and first.path.name.endswith("_3x128x96_opset18.onnx")
    assert first.path.name.startswith(model_fingerprint(model)[:24])
    again = OpenVinoBackend(model)  # same weights and shape: the same file, not exported again
    assert again.path == first.path and first.path.stat().st_mtime_ns == stamp
    wider = OnnxRuntimeBackend(model, input_size=(160, 128))
    assert wider.path != first.path and wider.path.name.endswith("_3x160x128_opset18.onnx")
    x = torch.randn(2, 3, 160, 128)
    with torch.inference_mode():
        assert _rel_err(wider(x), model(x)) < 1e-4
    before = model_fingerprint(model)
    with torch.no_grad():
        model.final_layer.bias.add_(0.5)  # other weights: another key
    assert model_fingerprint(model) != before


def test_a_cached_file_of_another_network_or_a_broken_one_is_exported_again(
    home: Path, tmp_path: Path
) -> None:
    lite = _load(tiny_lite_model(tmp_path / "lite"))
    other = _load(tiny_pose_model(tmp_path / "hrnet"))
    good = OnnxRuntimeBackend(lite).path
    wrong = OnnxRuntimeBackend(other).path
    good.write_bytes(wrong.read_bytes())  # the cache now holds another network under lite's name
    rebuilt = OnnxRuntimeBackend(lite)
    assert rebuilt.path == good and rebuilt.check_error < 1e-4
    assert read_metadata(good)["hrstream.fingerprint"] == model_fingerprint(lite)
    good.write_bytes(b"not onnx")  # a truncated or foreign file: exported again too
    assert OpenVinoBackend(lite).check_error < 1e-4


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="the CPU has no native bf16 (AVX512-BF16 / AMX)")
def test_openvino_bf16_on_a_cpu_with_native_bf16(home: Path, network: torch.nn.Module) -> None:
    runner = OpenVinoBackend(network, precision="bf16")
    x = torch.randn(3, 3, 128, 96, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = network(x)
        err = _rel_err(runner(x), ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            own = _rel_err(network(x).float(), ref)  # torch's own bf16
    assert err > 1e-6  # computed in bf16 indeed, not silently in fp32
    assert err <= max(TOLERANCE["bf16"], 2 * own)


@pytest.mark.skipif(cpu_has_native_bf16(), reason="the CPU has native bf16")
def test_bf16_is_refused_without_native_bf16(home: Path, network: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="native bf16"):
        OpenVinoBackend(network, precision="bf16")


def test_bad_choices_are_named(home: Path, network: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="not one of torch, onnxruntime, openvino"):
        make_backend("tensorrt", network)
    with pytest.raises(ConfigError, match="runs precision fp32"):
        make_backend("onnxruntime", network, precision="bf16")
    assert make_backend("torch", network) is network
