"""Every file hrstream writes gets the mode any new file gets under the process umask (``0666 & ~umask``),
also those written through a temporary file and moved into place."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from support.tiny_models import tiny_pose_model

from hrstream.io import VideoWriter, write_json_atomic, write_text_atomic
from hrstream.models import hub
from hrstream.models.registry import WeightsEntry


@pytest.fixture
def umask() -> Iterator[object]:
    """Set the process umask for one test (``umask.set(0o022)``); the previous one comes back afterwards."""
    old = os.umask(0o022)

    class _Setter:
        @staticmethod
        def set(mask: int) -> None:
            os.umask(mask)

    try:
        yield _Setter
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_records_follow_the_umask(umask, tmp_path: Path, mask: int, want: int) -> None:
    umask.set(mask)
    write_json_atomic(tmp_path / "state.json", {"frames": 1})
    write_text_atomic(tmp_path / "notes.txt", "x\n")
    assert _mode(tmp_path / "state.json") == want
    assert _mode(tmp_path / "notes.txt") == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "state.json"]  # no temporary left


def test_a_finished_video_follows_the_umask(umask, tmp_path: Path) -> None:
    umask.set(0o027)
    with VideoWriter(tmp_path / "v.mp4", width=64, height=48, time_base=Fraction(1, 25), fps=25) as w:
        for i in range(10):
            w.write(np.zeros((48, 64, 3), np.uint8), i, Fraction(1, 25))
    assert _mode(tmp_path / "v.mp4") == 0o640  # remuxed at close through a temporary file
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_weights_added_to_the_cache_follow_the_umask(
    umask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HRSTREAM_HOME", str(tmp_path / "home"))
    src = tmp_path / "downloaded.pth"
    src.write_bytes(b"weights")
    entry = WeightsEntry(
        name="tiny.test",
        url="https://weights.example.invalid/tiny.pth",
        sha256="",
        hash_kind="none",  # type: ignore[arg-type]
        layout="official",
        config="pose_hrnet_w32_256x192",
        task="pose",
    )
    umask.set(0o022)
    assert _mode(hub.add_local(src, entry)) == 0o644


@pytest.mark.slow
def test_export_model_follows_the_umask(umask, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from hrstream.models import from_config, load_weights
    from hrstream.models.export import export_onnx

    tiny = tiny_pose_model(tmp_path / "tiny")
    model = from_config(str(tiny.config))
    load_weights(model, tiny.weights)
    umask.set(0o022)
    out = export_onnx(model, tmp_path / "out" / "tiny.onnx").path
    assert _mode(out) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["tiny.onnx"]
