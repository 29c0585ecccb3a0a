"""Shared pytest setup: tests marked ``cuda`` are skipped where no CUDA device is available; ``one_torch_thread``
runs a module's tests with one torch thread (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""

from __future__ import annotations

import pytest
import torch


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
