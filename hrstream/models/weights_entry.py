"""One registered checkpoint as a value: where it lives, how to check it, how its state dict is laid out, the
config that builds its network and what its outputs mean (:class:`WeightsEntry`).

Conventions in ``meta``:

* ``input_size``/``heatmap_size``: ``(height, width)`` in pixels, the reverse of the official YAML's
  ``IMAGE_SIZE``/``HEATMAP_SIZE`` ``[W, H]``.
* ``mean``/``std``: RGB, in 0-1 units: ``x = (rgb_uint8 / 255 - mean) / std``.
* ``metrics``: fractions in 0-1 (AP 0.746, mIoU 0.8065), plus ``source``: the page reporting them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from hrstream.errors import ConfigError
from hrstream.models.checkpoints import Layout
from hrstream.models.config import NetworkTask

__all__ = ["HashKind", "WeightsEntry"]

HashKind = Literal["sha256", "sha256_prefix", "none"]

_HEX = re.compile(r"^[0-9a-f]*$")


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint. ``meta`` is read-only by convention (see the module docstring)."""

    name: str
    url: str
    sha256: str
    layout: Layout
    config: str
    task: NetworkTask
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    hash_kind: HashKind = "sha256_prefix"

    def __post_init__(self) -> None:
        if self.layout not in get_args(Layout):
            raise ConfigError(
                f"weights '{self.name}': layout '{self.layout}' is not one of {get_args(Layout)}"
            )
        if self.task not in get_args(NetworkTask):
            raise ConfigError(
                f"weights '{self.name}': task '{self.task}' is not one of {get_args(NetworkTask)}"
            )
        if self.hash_kind not in get_args(HashKind):
            raise ConfigError(
                f"weights '{self.name}': hash_kind '{self.hash_kind}' is not one of {get_args(HashKind)}"
            )
        digest = self.sha256.lower()
        ok = {
            "sha256": len(digest) == 64,
            "sha256_prefix": 6 <= len(digest) < 64,
            "none": digest == "",
        }[self.hash_kind]
        if not ok or not _HEX.match(digest):
            raise ConfigError(
                f"weights '{self.name}': sha256 '{self.sha256}' does not fit hash_kind '{self.hash_kind}'"
            )
        object.__setattr__(self, "sha256", digest)

    @property
    def filename(self) -> str:
        """The file name of the download (last path segment of ``url``), also its name in the cache."""
        return PurePosixPath(urlsplit(self.url).path).name

    def matches(self, hexdigest: str) -> bool:
        """True when a file's full sha256 ``hexdigest`` agrees with this entry (always true for ``none``)."""
        return hexdigest.lower().startswith(self.sha256)
