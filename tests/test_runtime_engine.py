"""The inference engine: normalisation on the device, layouts, AMP, submit/result, devices."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from hrstream.errors import ConfigError
from hrstream.runtime import (
    InferenceEngine,
    amp_default,
    configure_cpu_threads,
    cpu_flags,
    cpu_has_native_bf16,
    resolve_amp,
    resolve_device,
    usable_cpu_count,
)

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class TinyNet(nn.Module):
    """A small conv net with BN, like an HRNet stem and head; optionally two outputs."""

    def __init__(self, two_heads: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
        )
        self.head = nn.Conv2d(16, 5, 1)
        self.two_heads = two_heads

    def forward(self, x: torch.Tensor):
        y = self.head(torch.relu(self.stem(x)))
        return (y, y.mean(dim=(2, 3))) if self.two_heads else y


def make_model(two_heads: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet(two_heads)
    with torch.no_grad():  # non-trivial BN statistics
        bn = model.stem[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def make_batch(n: int = 3, h: int = 40, w: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def reference(model: nn.Module, batch: np.ndarray) -> torch.Tensor:
    """Normalise on the host in float64 the textbook way, then run the model in fp32, NCHW."""
    x = (batch.astype(np.float64) / 255.0 - MEAN) / STD
    x = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32).copy())
    with torch.no_grad():
        return model(x)


def test_uint8_path_matches_manual_normalisation_in_fp32():
    model, batch = make_model(), make_batch()
    ref = reference(model, batch)
    engine = InferenceEngine(make_model(), device="cpu", amp="off", channels_last=False)
    for given in (batch, torch.from_numpy(batch), list(batch)):
        out = engine.infer(given)
        assert out.dtype == torch.float32 and out.shape == ref.shape == (3, 5, 20, 16)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_channels_last_gives_the_same_result():
    batch = make_batch(seed=2)
    ref = reference(make_model(), batch)
    engine = InferenceEngine(make_model(), device="cpu", amp="off", channels_last=True)
    assert engine.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = engine.normalize(torch.from_numpy(batch))
    assert x.is_contiguous(memory_format=torch.channels_last) and x.shape == (3, 3, 40, 32)
    torch.testing.assert_close(engine.infer(batch), ref, rtol=1e-4, atol=1e-4)


def test_normalized_input_skips_normalisation():
    batch = make_batch(seed=3)
    engine = InferenceEngine(make_model(), device="cpu", amp="off")
    x = engine.normalize(torch.from_numpy(batch))
    torch.testing.assert_close(engine.infer(x, normalized=True), engine.infer(batch))
    with pytest.raises(ValueError, match="uint8"):
        engine.infer(batch.astype(np.float32))
    with pytest.raises(ValueError, match="normalized=True"):
        engine.infer(batch, normalized=True)


def test_bf16_autocast_on_cpu_is_close_to_fp32():
    batch = make_batch(n=2, seed=4)
    ref = reference(make_model(), batch)
    engine = InferenceEngine(make_model(), device="cpu", amp="bf16")
    out = engine.infer(batch)
    assert out.dtype == torch.float32
    err = (out - ref).abs().max().item() / ref.abs().max().item()
    assert 0 < err < 0.05, err  # bf16 has an 8-bit mantissa: close, but not bit-equal


def test_submit_returns_handles_with_host_results_and_tuple_outputs():
    batch = make_batch(n=2, seed=5)
    engine = InferenceEngine(make_model(two_heads=True), device="cpu", amp="off")
    handle = engine.submit(batch)
    assert handle.done()
    maps, means = handle.result()
    ref_maps, ref_means = reference(make_model(two_heads=True), batch)
    torch.testing.assert_close(maps, ref_maps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(means, ref_means, rtol=1e-4, atol=1e-4)
    assert maps.device.type == "cpu" and maps.dtype == torch.float32
    assert handle.result()[0] is maps  # the result is computed once
    engine.warmup((1, 40, 32, 3))


def _proc_cpuinfo_flags() -> set[str] | None:
    """The ``flags`` line of ``/proc/cpuinfo``, read here without hrstream (``None``: no such line, e.g. not
    Linux on x86)."""
    try:
        text = open("/proc/cpuinfo").read()  # noqa: SIM115
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return set(value.split())
    return None


def test_native_bf16_and_amp_auto_follow_the_cpu_flags():
    flags = _proc_cpuinfo_flags()
    if flags is None:
        pytest.skip("no x86 flags line in /proc/cpuinfo to compare with")
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert cpu_has_native_bf16() is native, sorted(f for f in flags if "bf16" in f or "amx" in f)
    want = "bf16" if native else "off"
    assert amp_default("cpu") == want
    assert resolve_amp("auto", torch.device("cpu")) == want
    assert InferenceEngine(nn.Identity(), device="cpu").amp == want


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\nbugs\t\t: spectre_v1\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx512f avx512_bf16\n"
    )
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(arm) == frozenset() and cpu_flags(tmp_path / "missing") == frozenset()


def test_device_and_amp_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert amp_default("cuda") == "fp16"
    assert resolve_amp("BF16", torch.device("cpu")) == "bf16"
    with pytest.raises(ConfigError, match="auto, off, fp16, bf16"):
        resolve_amp("fp32", torch.device("cpu"))
    with pytest.raises(ConfigError, match="auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="mean has 3 values but std has 2"):
        InferenceEngine(make_model(), device="cpu", std=(0.2, 0.2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_requested_without_gpu_is_a_config_error(spec: str):
    with pytest.raises(ConfigError) as info:
        InferenceEngine(make_model(), device=spec)
    assert (
        str(info.value)
        == f"--device {spec} requested but no CUDA device is available; use --device cpu or auto"
    )
    assert info.value.exit_code == 2


def test_configure_cpu_threads_reserves_cores_beyond_two():
    cores = len(os.sched_getaffinity(0))
    n = configure_cpu_threads(reserved=1)
    assert n == (cores if cores <= 2 else cores - 1) == torch.get_num_threads()
    assert configure_cpu_threads(reserved=10_000) == (cores if cores <= 2 else 1)
    assert usable_cpu_count() <= (os.cpu_count() or 1)


# -- CUDA (skipped without a GPU) --------------------------------------------------------------------
@pytest.mark.cuda
def test_cuda_fp32_matches_cpu_reference():
    torch.backends.cudnn.allow_tf32 = False
    try:
        batch = make_batch(n=4, seed=6)
        ref = reference(make_model(), batch)
        engine = InferenceEngine(make_model(), device="cuda", amp="off")
        torch.testing.assert_close(engine.infer(batch).cpu(), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(engine.submit(batch).result(), ref, rtol=1e-4, atol=1e-4)
    finally:
        torch.backends.cudnn.allow_tf32 = True


@pytest.mark.cuda
def test_cuda_fp16_autocast_is_close_to_fp32():
    """The accuracy check behind ``amp_default("cuda") == "fp16"``."""
    batch = make_batch(n=4, seed=7)
    ref = reference(make_model(), batch)
    out = InferenceEngine(make_model(), device="cuda", amp="fp16").submit(batch).result()
    err = (out - ref).abs().max().item() / ref.abs().max().item()
    assert err < 1e-2, err


@pytest.mark.cuda
def test_cuda_submit_pipelines_with_reused_pinned_buffers():
    engine = InferenceEngine(make_model(), device="cuda", amp="off")
    big = make_batch(n=6, seed=8)
    engine.submit(big).result()
    engine.submit(big).result()
    ptrs = [s.host_in.data_ptr() for s in engine._slots]
    assert all(s.host_in.is_pinned() for s in engine._slots)
    batches = [make_batch(n=n, seed=10 + n) for n in (1, 4, 6, 2, 5)]
    handles = [engine.submit(b) for b in batches]  # more than two in flight: slots are reclaimed
    for b, h in zip(batches, handles, strict=True):
        torch.testing.assert_close(h.result(), engine.infer(b).cpu(), rtol=1e-3, atol=1e-3)
    assert [s.host_in.data_ptr() for s in engine._slots] == ptrs  # no new pinned buffers
    on_device = torch.from_numpy(big).cuda()
    torch.testing.assert_close(
        engine.submit(on_device).result(), engine.infer(big).cpu(), rtol=1e-3, atol=1e-3
    )
    x = engine.normalize(on_device)
    torch.testing.assert_close(
        engine.submit(x, normalized=True).result(), engine.infer(big).cpu(), rtol=1e-3, atol=1e-3
    )
