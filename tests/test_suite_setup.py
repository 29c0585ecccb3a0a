"""The suite tests the checkout it runs in: in-process imports and child processes both take its code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import hrstream

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import subprocess, sys
    from pathlib import Path

    import hrstream

    HERE = Path(__file__).resolve().parents[1]


    def test_in_process():
        assert hrstream.MARK == "copy", hrstream.__file__


    def test_child_process(tmp_path):
        out = subprocess.run(
            [sys.executable, "-c", "import hrstream; print(hrstream.MARK)"],
            cwd=tmp_path, capture_output=True, text=True,
        )
        assert out.stdout.strip() == "copy", out.stderr
    """
)


def test_this_checkout_is_imported() -> None:
    assert Path(hrstream.__file__).resolve() == ROOT / "hrstream" / "__init__.py"


def test_another_checkout_tests_its_own_code(tmp_path: Path) -> None:
    """A second copy of the repository run with this virtual environment, whose editable install points at
    another copy: its tests and their child processes import the second copy's package."""
    copy = tmp_path / "checkout"
    (copy / "tests").mkdir(parents=True)
    (copy / "hrstream").mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    shutil.copy(ROOT / "tests" / "conftest.py", copy / "tests" / "conftest.py")
    (copy / "hrstream" / "__init__.py").write_text('MARK = "copy"\n')
    (copy / "tests" / "test_probe.py").write_text(PROBE)
    pytest_script = Path(sys.executable).with_name("pytest")  # unlike `python -m`, adds no folder to sys.path
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [str(pytest_script), "-q", "-p", "no:cacheprovider", "tests/test_probe.py"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout
