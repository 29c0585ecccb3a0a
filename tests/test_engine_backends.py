"""The backends inside the pipeline: ``hrstream run --backend`` and ``hrstream.stream(backend=...)`` give torch's
keypoints, ``auto`` decides by model family and CPU and says so, a CPU backend on a GPU or for ``--task seg`` is
refused, and padding batches to a power of two leaves every result as it was."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from support.cli_checks import VIDEOS, invoke, read_jsonl
from support.tiny_models import TinyModel, tiny_lite_model, tiny_pose_model, tiny_seg_model

import hrstream
from hrstream.errors import ConfigError
from hrstream.models import from_config, load_weights
from hrstream.runtime import InferenceEngine
from hrstream.runtime.backend_choice import AUTO_RULES, choose_backend
from hrstream.runtime.engine import bucket_size

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

pytestmark = pytest.mark.slow  # each network is exported once per test module (seconds on two cores)

CLIP = VIDEOS / "two_people_1080p30.mp4"  # 72 frames, 1920x1080
# Two people standing in the clip (xywh), the same boxes on every frame, and a third box on part of the frames
# so that batches vary in size.
BOXES = [[700.0, 250.0, 330.0, 800.0], [1050.0, 230.0, 330.0, 820.0]]
EXTRA = [200.0, 300.0, 300.0, 700.0]


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory):
    """One cache for the module's exported graphs (the user's cache stays untouched)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRSTREAM_HOME", str(tmp_path_factory.mktemp("hrstream_home")))
        yield


@pytest.fixture(scope="module")
def tiny_lite(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_lite_model(tmp_path_factory.mktemp("tiny_lite"))


@pytest.fixture(scope="module")
def detections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = []
    for i in range(72):
        for box in BOXES + ([EXTRA] if i % 3 == 0 else []):
            records.append({"image_id": i, "category_id": 1, "bbox": box, "score": 0.9})
    path = tmp_path_factory.mktemp("dets") / "detections.json"
    path.write_text(json.dumps(records))
    return path


def _run(tiny: TinyModel, detections: Path, out: Path, *extra: str) -> list[dict]:
    args = ["run", str(CLIP), "--task", "pose", *tiny.args(), "--detector", f"file:{detections}"]
    result = invoke([*args, "--no-video", "--device", "cpu", "--amp", "off", "--out", str(out), *extra])
    assert result.exit_code == 0, result.stderr
    return read_jsonl(out / "two_people_1080p30.jsonl")


def _keypoints(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Raw keypoints ``(P, 17, 2)`` and scores ``(P, 17)`` of every person of every frame, in order."""
    people = [p for r in records for p in r["people"]]
    return (
        np.array([p["raw_keypoints"] for p in people], np.float64),
        np.array([p["keypoints"] for p in people], np.float64)[..., 2],
    )


def _assert_same_keypoints(got: list[dict], ref: list[dict]) -> None:
    """The same people with the same keypoints. The heatmaps differ by a relative L2 below 1e-4 and the JSONL
    rounds positions to 0.01 px and scores to 1e-4, so: scores within one rounding step, positions within one
    rounding step except where two heatmap maxima are that close to a tie (at most 1% of keypoints)."""
    assert [len(r["people"]) for r in got] == [len(r["people"]) for r in ref]
    xy, scores = _keypoints(got)
    xy_ref, scores_ref = _keypoints(ref)
    assert xy.shape == xy_ref.shape and xy.shape[0] >= 2 * 72
    np.testing.assert_allclose(scores, scores_ref, atol=1.01e-4)
    same = np.all(np.abs(xy - xy_ref) <= 0.0101, axis=-1)
    assert same.mean() >= 0.99, f"{(~same).sum()} of {same.size} keypoints moved"


def test_run_with_onnxruntime_gives_the_torch_keypoints(
    tiny_lite: TinyModel, detections: Path, tmp_path: Path
) -> None:
    ref = _run(tiny_lite, detections, tmp_path / "torch", "--backend", "torch")
    got = _run(tiny_lite, detections, tmp_path / "ort", "--backend", "onnxruntime")
    _assert_same_keypoints(got, ref)


def test_run_with_padded_batches_gives_the_same_keypoints(
    tiny_lite: TinyModel, detections: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "padded.yaml"
    recipe.write_text("runtime:\n  pad_batches: true\n")
    ref = _run(tiny_lite, detections, tmp_path / "exact", "--batch-size", "5")
    got = _run(tiny_lite, detections, tmp_path / "padded", "--batch-size", "5", "--pipeline", str(recipe))
    _assert_same_keypoints(got, ref)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino", "auto"])
def test_stream_runs_on_every_backend(tiny_lite: TinyModel, detections: Path, backend: str) -> None:
    def keypoints(name: str) -> list[np.ndarray]:
        results = hrstream.stream(
            str(CLIP),
            model=str(tiny_lite.config),
            weights=str(tiny_lite.weights),
            detector=f"file:{detections}",
            device="cpu",
            amp="off",
            backend=name,
        )
        return [r.poses.raw_keypoints for r in results if r.frame.index < 12]

    got, ref = keypoints(backend), keypoints("torch")
    assert len(got) == len(ref) == 12
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape and a.shape[0] >= 2
        assert np.mean(np.abs(a - b) <= 1e-3) >= 0.99


def test_auto_names_its_choice_in_the_log(tiny_lite: TinyModel, caplog: pytest.LogCaptureFixture) -> None:
    model = from_config(str(tiny_lite.config))
    load_weights(model, tiny_lite.weights)
    with caplog.at_level(logging.INFO, logger="hrstream.runtime.engine"):
        engine = InferenceEngine(model, device="cpu", amp="off", backend="auto")
    assert engine.backend == AUTO_RULES[("litehrnet", "fp32")] and engine.precision == "fp32"
    assert f"backend {engine.backend} (fp32): auto: litehrnet with fp32" in caplog.text


# -- the rule of ``auto`` and the refusals --------------------------------------------------------------


@pytest.fixture(scope="module")
def networks(tiny_lite: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.nn.Module]:
    out = {}
    for name, tiny in (
        ("litehrnet", tiny_lite),
        ("pose_hrnet", tiny_pose_model(tmp_path_factory.mktemp("hrnet"))),
        ("seg_hrnet", tiny_seg_model(tmp_path_factory.mktemp("seg"))),
    ):
        out[name] = from_config(str(tiny.config))
    return out


# ``/proc/cpuinfo`` flags of three CPUs (the parts the rules read, among others that they must ignore)
_COMMON = (
    "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2 avx512f avx512dq avx512bw avx512vl avx512_vnni"
)
CPUS = {
    "sapphire_rapids": f"{_COMMON} avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8",  # AMX
    "zen4": f"{_COMMON} avx512_bf16 avx512_vbmi2",  # native bf16 (AVX512-BF16), no AMX
    "skylake_x": _COMMON,  # AVX-512 without bf16: bf16 would be emulated
}


@pytest.mark.parametrize(
    ("backend", "family", "amp", "cpu", "expected"),
    [
        # auto: the table of the module docstring (AUTO_RULES)
        ("auto", "litehrnet", "auto", "sapphire_rapids", ("openvino", "bf16")),
        ("auto", "litehrnet", "auto", "zen4", ("openvino", "bf16")),
        ("auto", "litehrnet", "auto", "skylake_x", ("onnxruntime", "fp32")),
        ("auto", "litehrnet", "off", "sapphire_rapids", ("onnxruntime", "fp32")),
        ("auto", "litehrnet", "bf16", "skylake_x", ("torch", "bf16")),  # emulated bf16 asked for: torch's
        ("auto", "pose_hrnet", "auto", "sapphire_rapids", ("openvino", "bf16")),
        ("auto", "pose_hrnet", "auto", "zen4", ("torch", "bf16")),
        ("auto", "pose_hrnet", "auto", "skylake_x", ("torch", "fp32")),
        ("auto", "pose_hrnet", "off", "sapphire_rapids", ("torch", "fp32")),
        ("auto", "seg_hrnet", "auto", "sapphire_rapids", ("torch", "bf16")),
        # a backend named: amp auto is bf16 wherever the CPU has native bf16, AMX or not
        ("openvino", "litehrnet", "auto", "zen4", ("openvino", "bf16")),
        ("openvino", "pose_hrnet", "auto", "zen4", ("openvino", "bf16")),
        ("openvino", "pose_hrnet", "auto", "sapphire_rapids", ("openvino", "bf16")),
        ("openvino", "pose_hrnet", "auto", "skylake_x", ("openvino", "fp32")),
        ("openvino", "pose_hrnet", "off", "zen4", ("openvino", "fp32")),
        ("onnxruntime", "litehrnet", "auto", "zen4", ("onnxruntime", "fp32")),
        ("torch", "pose_hrnet", "auto", "zen4", ("torch", "bf16")),
        ("torch", "pose_hrnet", "auto", "skylake_x", ("torch", "fp32")),
    ],
)
def test_the_choice_follows_the_rule_table_for_the_cpu_flags_given(
    networks: dict[str, torch.nn.Module],
    backend: str,
    family: str,
    amp: str,
    cpu: str,
    expected: tuple[str, str],
) -> None:
    flags = CPUS[cpu].split()
    choice = choose_backend(backend, networks[family], torch.device("cpu"), amp, cpu_flags=flags)
    assert (choice.name, choice.precision) == expected, choice.reason
    if backend == "auto":
        assert choice.reason.startswith(f"auto: {family}")


def test_the_cpu_flags_name_native_bf16_and_amx() -> None:
    from hrstream.runtime.cpu import cpu_has_amx, cpu_has_native_bf16
    from hrstream.runtime.precision import amp_default

    native = {cpu: cpu_has_native_bf16(flags.split()) for cpu, flags in CPUS.items()}
    amx = {cpu: cpu_has_amx(flags.split()) for cpu, flags in CPUS.items()}
    assert native == {"sapphire_rapids": True, "zen4": True, "skylake_x": False}
    assert amx == {"sapphire_rapids": True, "zen4": False, "skylake_x": False}
    assert [amp_default("cpu", cpu_flags=CPUS[c].split()) for c in CPUS] == ["bf16", "bf16", "off"]


def test_auto_runs_torch_where_the_library_is_missing(
    networks: dict[str, torch.nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    import hrstream.runtime.backend_choice as bc

    monkeypatch.setattr(bc, "_installed", lambda name: False)
    choice = choose_backend("auto", networks["litehrnet"], torch.device("cpu"), "off")
    assert choice.name == "torch" and "pip install 'hrstream[onnx]'" in choice.reason


def test_cpu_backends_are_refused_on_a_gpu_and_with_an_unsupported_precision(
    networks: dict[str, torch.nn.Module],
) -> None:
    lite, gpu, cpu = networks["litehrnet"], torch.device("cuda", 0), torch.device("cpu")
    for name in ("onnxruntime", "openvino"):
        with pytest.raises(ConfigError, match=f"--backend {name} runs on the CPU, not on cuda:0"):
            choose_backend(name, lite, gpu, "off")
    assert choose_backend("auto", lite, gpu, "off").name == "torch"
    with pytest.raises(ConfigError, match="onnxruntime computes in fp32, not --amp bf16"):
        choose_backend("onnxruntime", lite, cpu, "bf16")
    with pytest.raises(ConfigError, match="openvino runs fp32 or bf16, not --amp fp16"):
        choose_backend("openvino", lite, cpu, "fp16")
    with pytest.raises(ConfigError, match="not one of torch, onnxruntime, openvino, auto"):
        choose_backend("tensorrt", lite, cpu, "off")


def test_seg_task_with_a_cpu_backend_is_a_usage_error(tmp_path: Path) -> None:
    seg = tiny_seg_model(tmp_path / "seg")
    args = ["run", str(VIDEOS / "gen_vfr_160x120.mp4"), "--task", "seg", *seg.args(), "--device", "cpu"]
    result = invoke([*args, "--backend", "onnxruntime", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "--task seg runs on torch" in result.stderr


# -- padding to buckets -----------------------------------------------------------------------------------


class _Shapes(torch.nn.Module):
    """Wraps a network and records the batch size of every call."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.spec = getattr(net, "spec", None)
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(int(x.shape[0]))
        return self.net(x)


def test_bucket_sizes_are_powers_of_two() -> None:
    assert [bucket_size(n) for n in (0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 31, 32, 33)] == [
        1, 1, 2, 4, 4, 8, 8, 16, 16, 32, 32, 32, 64,
    ]  # fmt: skip


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_padding_changes_no_result(tiny_lite: TinyModel, backend: str) -> None:
    """Padded and exact batches agree: bit for bit in ONNX Runtime; in torch within 1e-6 relative L2, because
    oneDNN picks its blocking (and so its order of summation) by batch size, not because rows mix."""
    model = from_config(str(tiny_lite.config))
    load_weights(model, tiny_lite.weights)
    exact = InferenceEngine(model, device="cpu", amp="off", backend=backend)
    padded = InferenceEngine(model, device="cpu", amp="off", backend=backend, pad_batches=True)
    rng = np.random.default_rng(1)
    for n in (1, 3, 5, 7, 12):
        crops = rng.integers(0, 256, (n, 128, 96, 3), dtype=np.uint8)
        a, b = padded.submit(crops).result(), exact.submit(crops).result()
        assert a.shape == b.shape == (n, 17, 32, 24)
        err = float((a - b).norm() / b.norm())
        assert err == 0.0 if backend == "onnxruntime" else err < 1e-6
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255).sub(0.45).div(0.225)
        a, b = padded.infer(x, normalized=True), exact.infer(x, normalized=True)
        assert float((a - b).norm() / b.norm()) < 1e-6


def test_padding_gives_the_network_bucket_sizes_only(tiny_lite: TinyModel) -> None:
    model = from_config(str(tiny_lite.config))
    load_weights(model, tiny_lite.weights)
    recorder = _Shapes(model)
    engine = InferenceEngine(recorder, device="cpu", amp="off", pad_batches=True)
    for n in (3, 5, 6, 7, 8, 9, 16, 13, 0):
        out = engine.infer(np.zeros((n, 128, 96, 3), np.uint8))
        assert out.shape[0] == n
    assert recorder.sizes == [4, 8, 8, 8, 8, 16, 16, 16, 0]
