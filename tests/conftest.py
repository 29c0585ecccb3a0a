"""Shared pytest setup: tests marked ``cuda`` are skipped where no CUDA device is available; ``one_torch_thread``
runs a module's tests with one torch thread (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``);
child processes import this checkout's code."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Commands the tests start as child processes (``python -m hrstream.cli ...``, scripts) import this checkout's
# code as the tests themselves do (``pythonpath`` in pyproject.toml), not another copy installed in the
# virtual environment. Tests of the installed wheel remove PYTHONPATH from their children's environment.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

# A suite started in the background of a script inherits SIGINT ignored (POSIX, without job control), and so would
# every command it starts: the tests that press Ctrl-C on a child would test nothing. A handler here is reset to
# the default in each child at exec, where Python turns it into KeyboardInterrupt as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (deterministic and fair on shared cores), restored afterwards."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
