"""The small HRNets that ship inside the package: registered with their sha256, loadable offline, and accurate
on generated clips (seeds never used in training) — the whole pipeline, measured as numbers.

Thresholds come from the figures recorded in docs/accuracy.md, with a margin (a 3-second clip is noisier than
the 10 eight-second clips there); they are not loosened to pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrstream.demo import (
    DEMO_DET_MODEL,
    DEMO_FAST_POSE_MODEL,
    DEMO_POSE_MODEL,
    DEMO_SEG_MODEL,
    run_demo,
)
from hrstream.metrics import evaluate_tracks
from hrstream.models.bundle import load_model_bundle
from hrstream.models.datasets_meta import IMAGENET_MEAN, IMAGENET_STD
from hrstream.models.hub import cached_path, is_shipped, resolve_weights, sha256_file
from hrstream.models.registry import get_weights, list_weights
from hrstream.pose import box_to_center_scale, crop_cpu
from hrstream.runtime import InferenceEngine, amp_default, cpu_has_native_bf16
from hrstream.synth import SynthConfig, generate

SHIPPED = [e for e in list_weights() if is_shipped(e)]


def test_shipped_models_are_registered_with_their_hash() -> None:
    assert {e.config for e in SHIPPED} == {
        DEMO_POSE_MODEL,
        DEMO_FAST_POSE_MODEL,
        DEMO_SEG_MODEL,
        DEMO_DET_MODEL,
    }
    for entry in SHIPPED:
        assert entry.name.startswith("synthetic_")
        assert entry.layout == (
            "fcos" if entry.task == "det" else "official"
        )  # saved under the official names
        assert entry.hash_kind == "sha256"
        path = cached_path(entry)
        assert path.is_file() and path.suffix == ".safetensors"
        assert sha256_file(path) == entry.sha256
        assert (
            "synthetic" in entry.meta["trained_on"]
            and "not meant for real footage" in entry.meta["trained_on"]
        )
        assert resolve_weights(entry.name, progress=False) == (path, entry)
        assert get_weights(entry.config) is entry  # the config's default weights


@pytest.mark.parametrize(
    "config, task",
    [
        (DEMO_POSE_MODEL, "pose"),
        (DEMO_FAST_POSE_MODEL, "pose"),
        (DEMO_SEG_MODEL, "seg"),
        (DEMO_DET_MODEL, "det"),
    ],
)
def test_shipped_models_load_strictly_offline(
    config: str, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HRSTREAM_OFFLINE", "1")
    bundle = load_model_bundle(config, None, task=task, progress=False)
    assert bundle.weights_sha256 == get_weights(config).sha256
    assert "not meant for real footage" in (bundle.meta.trained_on or "")


def test_pipeline_accuracy_on_a_generated_clip(tmp_path) -> None:
    """The whole HRNet-only pipeline (V2p detector boxes, pose, tracking, identity repair, smoothing) on a clip
    never used in training.

    Recorded on 10 eight-second clips (docs/accuracy.md): PCK@0.1 0.952 (0.981 on matched people, 0.867 on the
    worst clip), IDF1 0.946 in the tracks document (0.859 on the worst clip) and 0.909 for the IDs reported
    online (0.884 with the tracker's alone), 9 / 10 switches in 2000 frames (at most 3 / 5 in a clip), jitter
    -58% (-54% on the worst clip). On this clip: PCK@0.1 0.974 (0.983 matched), IDF1 0.978 in both, no switch,
    jitter -57%. The thresholds keep a margin below those figures (a 4-second clip is noisier); IDF1 is held
    to the 0.90 target.

    The keypoint error: smoothing lowered it on all 10 evaluation clips (5.44 -> 5.27 px); on this clip the
    Kalman lag raises it by 0.6% (4.381 -> 4.406 px), as on 2 of the 15 tuning clips earlier, so a single clip
    may not rise by more than 1%.
    """
    result = run_demo(tmp_path, seed=7001, seconds=4.0, people=3, device="cpu")
    m = result.metrics
    assert m["pck"]["visible"]["0.1"] >= 0.90
    assert m["pck_matched"]["visible"]["0.1"] >= 0.95
    assert m["mot"]["idf1"] >= 0.90
    assert m["mot"]["id_switches"] <= 3
    online = evaluate_tracks(result.tracks, result.truth, identities="online")["mot"]  # JSONL and video IDs
    assert online["idf1"] >= 0.90
    assert online["id_switches"] <= 3
    jit = m["jitter"]
    assert jit["reduction"] >= 0.45  # smoothing reduces jitter ...
    err = m["keypoint_error_px"]
    # ... without raising the keypoint error beyond the spread of single clips
    assert err["smoothed"] <= 1.01 * err["raw"]


def _crops_and_frames(seed: int, n: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Person crops (official affine, 128x96) of visible people and their visibility, plus the frames."""
    cfg = SynthConfig(width=640, height=360, num_frames=n, num_people=(3, 4), seed=seed)
    crops, vis, frames = [], [], []
    for f in generate(cfg):
        frames.append(torch.from_numpy(f.image).permute(2, 0, 1).float() / 255)
        center, scale = box_to_center_scale(f.boxes, aspect_ratio=96 / 128, box_format="xyxy")
        for i in range(len(f.boxes)):
            crops.append(torch.from_numpy(crop_cpu(f.image, center[i], scale[i], (96, 128))).permute(2, 0, 1))
            vis.append(f.visibility[i])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x_pose = (torch.stack(crops).float() / 255 - mean) / std
    x_seg = (
        torch.nn.functional.interpolate(torch.stack(frames), size=(192, 320), mode="bilinear") - mean
    ) / std
    return x_pose, np.stack(vis), x_seg


def _run(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    with torch.inference_mode():
        if dtype is None:
            return model(x).float()
        with torch.autocast("cpu", dtype=dtype):
            return model(x).float()


def test_reduced_precision_defaults_keep_results() -> None:
    """AMP is on by default only where it keeps results: keypoints within one heatmap pixel of fp32 for >= 99%
    of (visible) joints and label maps >= 99.5% equal, with the trained models (bf16 and fp16 autocast, run
    here on the CPU; the same number formats as on a GPU)."""
    pose = load_model_bundle(DEMO_POSE_MODEL, None, task="pose", progress=False)
    seg = load_model_bundle(DEMO_SEG_MODEL, None, task="seg", progress=False)
    x_pose, vis, x_seg = _crops_and_frames(seed=7100, n=12)
    ref_hm = _run(pose.model, x_pose, None)
    ref_lab = _run(seg.model, x_seg, None).argmax(1)
    n, k, h, w = ref_hm.shape
    visible = torch.from_numpy(vis == 2)
    assert visible.sum() > 200
    keeps = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        a = ref_hm.reshape(n, k, -1).argmax(-1)
        b = _run(pose.model, x_pose, dtype).reshape(n, k, -1).argmax(-1)
        dist = torch.maximum((a % w - b % w).abs(), (a // w - b // w).abs())
        joints = (dist[visible] <= 1).float().mean().item()
        labels = (_run(seg.model, x_seg, dtype).argmax(1) == ref_lab).float().mean().item()
        keeps[name] = joints >= 0.99 and labels >= 0.995
        print(f"{name}: joints within 1 heatmap px {joints:.4f}, label maps equal {labels:.4f}")
    for device in ("cpu", "cuda"):
        default = amp_default(torch.device(device))
        assert default == "off" or keeps[default], (device, default, keeps)


@pytest.fixture(scope="module")
def onnx_home(tmp_path_factory: pytest.TempPathFactory):
    """One cache of exported graphs for the module (not the user's)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRSTREAM_HOME", str(tmp_path_factory.mktemp("hrstream_home")))
        yield


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "amp"), [("onnxruntime", "off"), ("openvino", "off"), ("openvino", "bf16")]
)
def test_lite_hrnet_keeps_its_keypoints_on_every_cpu_backend(onnx_home: None, backend: str, amp: str) -> None:
    """The backends `runtime.backend: auto` picks for the shipped Lite-HRNet-18 (ONNX Runtime fp32, OpenVINO bf16
    on CPUs with native bf16) keep >= 99% of visible keypoints within one heatmap pixel of torch fp32."""
    pytest.importorskip(backend)
    if amp == "bf16" and not cpu_has_native_bf16():
        pytest.skip("the CPU has no native bf16")
    lite = load_model_bundle(DEMO_FAST_POSE_MODEL, None, task="pose", progress=False)
    x_pose, vis, _ = _crops_and_frames(seed=7100, n=12)
    ref = _run(lite.model, x_pose, None)
    engine = InferenceEngine(lite.model, device="cpu", amp=amp, backend=backend)
    assert (engine.backend, engine.precision) == (backend, "fp32" if amp == "off" else "bf16")
    out = engine.infer(x_pose, normalized=True)
    n, k, h, w = ref.shape
    a, b = ref.reshape(n, k, -1).argmax(-1), out.reshape(n, k, -1).argmax(-1)
    dist = torch.maximum((a % w - b % w).abs(), (a // w - b // w).abs())
    visible = torch.from_numpy(vis == 2)
    assert visible.sum() > 200
    assert (dist[visible] <= 1).float().mean().item() >= 0.99


@pytest.mark.slow
def test_fast_demo_runs_the_lite_hrnet_on_the_auto_backend(
    onnx_home: None, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """``hrstream demo --fast``: the shipped Lite-HRNet-18 in place of the W18-Small, on the backend
    ``runtime.backend: auto`` picks. Recorded on the 10 evaluation clips (docs/accuracy.md, fp32): PCK@0.1 0.816
    (0.840 on matched people, 0.697 on the worst clip), IDF1 0.931, jitter -55%. On this clip (OpenVINO bf16 on
    a CPU with AMX): PCK@0.1 0.829 (0.837 matched), IDF1 0.978, no switch, jitter -59%, keypoint error 11.48 ->
    11.52 px. The thresholds keep a margin below those figures; IDF1 is held to the 0.90 target."""
    pytest.importorskip("onnxruntime")
    with caplog.at_level("INFO", logger="hrstream.runtime.engine"):
        result = run_demo(tmp_path, seed=7001, seconds=4.0, people=3, device="cpu", fast=True)
    assert "auto: litehrnet" in caplog.text  # the choice is logged
    m = result.metrics
    assert m["pck"]["visible"]["0.1"] >= 0.75
    assert m["pck_matched"]["visible"]["0.1"] >= 0.78
    assert m["mot"]["idf1"] >= 0.90
    assert m["mot"]["id_switches"] <= 3
    assert m["jitter"]["reduction"] >= 0.45
    err = m["keypoint_error_px"]
    assert err["smoothed"] <= 1.01 * err["raw"]
