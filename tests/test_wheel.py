"""The wheel works anywhere: built from this tree, installed into a fresh virtual environment, and run from a
folder outside the repository (``hrstream models``, ``hrstream demo``, ``hrstream run``), it finds the configs
and pipeline recipes it carries (``hrstream/resources.py``).

The install takes about a minute: torch and torchvision are pinned to the versions of the running
environment, so pip takes them from its cache (or the machine's local copy) instead of downloading a new
release.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from setuptools import find_namespace_packages
from setuptools.config.pyprojecttoml import read_configuration

from hrstream import resources

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT / "tests" / "data" / "videos" / "street_960x540_5fps.mp4"
# what the wheel is built from (the working tree, so that it is what the tests above just checked)
SOURCES = ("hrstream", "configs", "pipelines", "pyproject.toml", "README.md", "LICENSE")


def test_pyproject_lists_every_package() -> None:
    """The mapped data packages cannot be discovered, so pyproject lists the packages: none may be missing."""
    listed = set(read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["packages"])
    found = {p for p in find_namespace_packages(str(ROOT), include=["hrstream*"]) if "__pycache__" not in p}
    assert listed == found | {"hrstream.configs", "hrstream.pipelines"}


def test_resources_in_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HRSTREAM_CONFIGS", raising=False)
    assert resources.configs_dir().resolve() == (ROOT / "configs").resolve()
    assert resources.pipeline_path("pose").resolve() == (ROOT / "pipelines" / "pose.yaml").resolve()
    monkeypatch.setenv("HRSTREAM_CONFIGS", str(tmp_path))
    assert resources.configs_dir() == tmp_path


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HRSTREAM_CONFIGS", "VIRTUAL_ENV")}
    env["HRSTREAM_HOME"] = str(home)
    return env


def _run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(args)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment (no system site packages) with the wheel installed; returns its bin/."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, src / name)
    env = _env(base / "home")
    dist = base / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(src),
        ],
        base,
        env,
    )
    (wheel,) = dist.glob("hrstream-*.whl")
    _run([sys.executable, "-m", "venv", str(base / "venv")], base, env)
    bin_dir = base / "venv" / "bin"
    pins = [f"{p}=={importlib.metadata.version(p).split('+')[0]}" for p in ("torch", "torchvision")]
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", *pins, str(wheel)], base, env, timeout=1800)
    return bin_dir


@pytest.mark.slow
def test_installed_wheel_runs_outside_the_repository(venv: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _env(tmp_path / "home")
    where = _run(
        [
            str(venv / "python"),
            "-c",
            "import hrstream, hrstream.resources as r; print(hrstream.__file__); print(r.configs_dir()); "
            "print(r.pipeline_path('pose')); from hrstream.models import from_config; "
            "from_config('pose_hrnet_w32_256x192')",
        ],
        work,
        env,
    ).stdout.split()
    site = str(venv.parent / "lib")
    assert all(p.startswith(site) for p in where), where  # the installed package, not this checkout
    assert Path(where[1]).name == "configs" and Path(where[2]).is_file()

    models = _run([str(venv / "hrstream"), "models"], work, env).stdout
    assert (
        "pose_hrnet_w32_256x192.mmpose" in models
        and "synthetic_pose_hrnet_w18_small_128x96.synthetic" in models
    )

    demo = _run(
        [str(venv / "hrstream"), "demo", "--out", "demo", "--seconds", "1", "--people", "1", "-q"], work, env
    )
    assert "IDF1" in demo.stdout or "MOTA" in demo.stdout, demo.stdout
    assert any((work / "demo").rglob("*.tracks.json"))

    args = [str(VIDEO), "--task", "pose", "--model", "synthetic_pose_hrnet_w18_small_128x96"]
    _run(
        [
            str(venv / "hrstream"),
            "run",
            *args,
            "--detector",
            "full-frame",
            "--no-video",
            "--out",
            "out",
            "-q",
        ],
        work,
        env,
    )
    assert (work / "out" / "street_960x540_5fps.jsonl").stat().st_size > 0
    assert (work / "out" / "street_960x540_5fps.tracks.json").is_file()
