"""Live sources that survive outages: stall watchdog, reconnection with capped backoff (placeholder)."""

from __future__ import annotations

from typing import Any

from hrstream.io.base import Source
from hrstream.io.inputs import InputSpec
from hrstream.io.sources import open_source

__all__ = ["open_live_source"]


def open_live_source(spec: str | InputSpec, **options: Any) -> Source:
    """Open a URL or camera; see :func:`hrstream.io.open_source`."""
    return open_source(spec, **options)
