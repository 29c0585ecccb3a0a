"""Where the model configs (``configs/``) and pipeline recipes (``pipelines/``) are.

In the repository they are the top-level folders; an installed wheel carries them as the data packages
``hrstream.configs`` and ``hrstream.pipelines`` (``pyproject.toml`` maps the folders into the package), found
here with :mod:`importlib.resources`. ``$HRSTREAM_CONFIGS`` points the config lookup at another folder.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

__all__ = ["configs_dir", "pipeline_path", "pipelines_dir"]

_CHECKOUT = Path(__file__).resolve().parents[1]


def _data_dir(name: str) -> Path:
    """The folder of the data package ``hrstream.<name>`` where an installed wheel has it, else the
    repository's top-level ``<name>/`` (a checkout, installed editable or not)."""
    found = importlib.resources.files("hrstream") / name
    if isinstance(found, Path) and found.is_dir():
        return found
    return _CHECKOUT / name


def configs_dir() -> Path:
    """The folder of model config YAMLs: ``$HRSTREAM_CONFIGS``, else the package's (the repository's
    ``configs/``)."""
    env = os.environ.get("HRSTREAM_CONFIGS")
    return Path(env).expanduser() if env else _data_dir("configs")


def pipelines_dir() -> Path:
    """The folder of the pipeline recipes (the repository's ``pipelines/``)."""
    return _data_dir("pipelines")


def pipeline_path(name: str) -> Path:
    """The recipe file called ``name`` (``"pose"`` -> ``.../pipelines/pose.yaml``); it may not exist."""
    return pipelines_dir() / f"{name}.yaml"
