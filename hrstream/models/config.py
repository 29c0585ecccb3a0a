"""Model configs in the official HRNet experiments YAML schema.

An official YAML (``experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml`` or
``experiments/cityscapes/seg_hrnet_w48_*.yaml``) loads as it is. The fields read here:

* ``MODEL.NAME``: ``pose_hrnet``, ``seg_hrnet`` or hrstream's ``det_hrnet`` (person detection on V2p,
  :mod:`hrstream.models.detection`; read like a segmentation config).
* ``MODEL.EXTRA.STAGE2..STAGE4``: ``NUM_MODULES``, ``NUM_BRANCHES``, ``BLOCK`` (BASIC/BOTTLENECK),
  ``NUM_BLOCKS``, ``NUM_CHANNELS``, ``FUSE_METHOD``; ``MODEL.EXTRA.STAGE1`` (segmentation; the official files
  spell ``NUM_RANCHES``, which is accepted); ``MODEL.EXTRA.FINAL_CONV_KERNEL``.
* pose: ``MODEL.NUM_JOINTS``, ``MODEL.IMAGE_SIZE`` ``[W, H]``, ``MODEL.HEATMAP_SIZE`` ``[W, H]``,
  ``TEST.FLIP_TEST / POST_PROCESS / SHIFT_HEATMAP``.
* segmentation and detection: ``DATASET.NUM_CLASSES`` (detection: with the background),
  ``MODEL.ALIGN_CORNERS``, ``TEST.IMAGE_SIZE`` ``[W, H]``.

hrstream's own additions live under a top-level ``HRSTREAM`` key (``WEIGHTS``, ``DECODER``, ``DESCRIPTION``, ...).
Unknown official keys (training settings) are kept and ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hrstream.errors import ConfigError
from hrstream.models.hrnet import BLOCKS, StageSpec

__all__ = ["ModelSpec", "load_config", "parse_config"]

Task = Literal["pose", "seg", "det"]
NAMES: dict[str, Task] = {"pose_hrnet": "pose", "seg_hrnet": "seg", "det_hrnet": "det"}


@dataclass(frozen=True)
class ModelSpec:
    """What a config says about the network, parsed and checked.

    ``image_size`` and ``heatmap_size`` are ``(W, H)`` as in the official files (``None`` where not given).
    ``raw`` is the whole config dict, for the sections this class does not model.
    """

    name: str
    task: Task
    stages: tuple[StageSpec, StageSpec, StageSpec]
    final_conv_kernel: int
    num_outputs: int
    image_size: tuple[int, int] | None
    heatmap_size: tuple[int, int] | None
    align_corners: bool
    stage1: StageSpec | None
    source: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def width(self) -> int:
        """The HRNet width (channels of the highest-resolution branch): 18, 32, 48, ..."""
        return self.stages[0].num_channels[0]

    @property
    def test(self) -> dict[str, Any]:
        return dict(self.raw.get("TEST") or {})

    @property
    def extra(self) -> dict[str, Any]:
        """The ``HRSTREAM`` section (hrstream's own keys)."""
        return dict(self.raw.get("HRSTREAM") or {})


def load_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a YAML path (or copy a dict); raises :class:`ConfigError` naming the file on failure."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _get(d: Mapping[str, Any], path: str, src: str, *, required: bool = True, default: Any = None) -> Any:
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            if required:
                raise ConfigError(f"{src}: missing field {path}")
            return default
        cur = cur[part]
    return cur


def _int_list(value: Any, path: str, src: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and v > 0 for v in value):
        raise ConfigError(f"{src}: field {path} must be a list of positive integers, got {value!r}")
    return tuple(int(v) for v in value)


def _stage(d: Mapping[str, Any], key: str, src: str) -> StageSpec:
    base = f"MODEL.EXTRA.{key}"
    s = _get(d, base, src)
    if not isinstance(s, Mapping):
        raise ConfigError(f"{src}: field {base} must be a mapping")
    branches = s.get(
        "NUM_BRANCHES", s.get("NUM_RANCHES")
    )  # the official seg YAMLs spell STAGE1's NUM_RANCHES
    if branches is None:
        raise ConfigError(f"{src}: missing field {base}.NUM_BRANCHES")
    for f in ("NUM_MODULES", "BLOCK", "NUM_BLOCKS", "NUM_CHANNELS"):
        if f not in s:
            raise ConfigError(f"{src}: missing field {base}.{f}")
    block = str(s["BLOCK"]).upper()
    if block not in BLOCKS:
        raise ConfigError(f"{src}: field {base}.BLOCK must be one of {sorted(BLOCKS)}, got {s['BLOCK']!r}")
    blocks = _int_list(s["NUM_BLOCKS"], f"{base}.NUM_BLOCKS", src)
    channels = _int_list(s["NUM_CHANNELS"], f"{base}.NUM_CHANNELS", src)
    if not isinstance(branches, int) or not (len(blocks) == len(channels) == branches):
        raise ConfigError(
            f"{src}: field {base}: NUM_BRANCHES ({branches}) must equal the lengths of NUM_BLOCKS "
            f"({len(blocks)}) and NUM_CHANNELS ({len(channels)})"
        )
    modules = s["NUM_MODULES"]
    if not isinstance(modules, int) or modules < 1:
        raise ConfigError(f"{src}: field {base}.NUM_MODULES must be a positive integer, got {modules!r}")
    fuse = str(s.get("FUSE_METHOD", "SUM")).upper()
    if fuse != "SUM":
        raise ConfigError(f"{src}: field {base}.FUSE_METHOD must be SUM, got {fuse!r}")
    return StageSpec(modules, branches, block, blocks, channels, fuse)


def _size(d: Mapping[str, Any], path: str, src: str) -> tuple[int, int] | None:
    v = _get(d, path, src, required=False)
    if v is None:
        return None
    if isinstance(v, int):
        v = [v, v]
    vals = _int_list(v, path, src)
    if len(vals) != 2:
        raise ConfigError(f"{src}: field {path} must be [W, H], got {v!r}")
    return vals[0], vals[1]


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> ModelSpec:
    """Check an official-schema config and return its :class:`ModelSpec`.

    Raises :class:`ConfigError` naming the first missing or wrong field, e.g.
    ``"w32.yaml: missing field MODEL.EXTRA.STAGE3.NUM_CHANNELS"``.
    """
    name = _get(data, "MODEL.NAME", source)
    if name not in NAMES:
        raise ConfigError(f"{source}: field MODEL.NAME must be one of {sorted(NAMES)}, got {name!r}")
    task = NAMES[name]
    stages = (_stage(data, "STAGE2", source), _stage(data, "STAGE3", source), _stage(data, "STAGE4", source))
    for prev, cur, key in zip((None, *stages[:-1]), stages, ("STAGE2", "STAGE3", "STAGE4"), strict=True):
        if prev is not None and cur.num_branches != prev.num_branches + 1:
            raise ConfigError(
                f"{source}: field MODEL.EXTRA.{key}.NUM_BRANCHES must be one more than the stage before"
            )
    fck = _get(data, "MODEL.EXTRA.FINAL_CONV_KERNEL", source, required=False, default=1)
    if fck not in (1, 3):
        raise ConfigError(f"{source}: field MODEL.EXTRA.FINAL_CONV_KERNEL must be 1 or 3, got {fck!r}")
    if task == "pose":
        num = _get(data, "MODEL.NUM_JOINTS", source)
        field_name = "MODEL.NUM_JOINTS"
        image_size = _size(data, "MODEL.IMAGE_SIZE", source)
        heatmap_size = _size(data, "MODEL.HEATMAP_SIZE", source)
        align = False
    else:
        num = _get(data, "DATASET.NUM_CLASSES", source)
        field_name = "DATASET.NUM_CLASSES"
        image_size = _size(data, "TEST.IMAGE_SIZE", source)
        heatmap_size = None
        align = _get(data, "MODEL.ALIGN_CORNERS", source, required=False, default=True)
        if not isinstance(align, bool):
            raise ConfigError(f"{source}: field MODEL.ALIGN_CORNERS must be true or false, got {align!r}")
    # STAGE1 (stem bottlenecks): the official pose_hrnet hard-codes 4 x 64 and its YAMLs carry no STAGE1;
    # when a config gives one (as seg and the small classification layouts do), it is honoured.
    stage1 = (
        _stage(data, "STAGE1", source) if _get(data, "MODEL.EXTRA.STAGE1", source, required=False) else None
    )
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ConfigError(f"{source}: field {field_name} must be a positive integer, got {num!r}")
    return ModelSpec(
        name=name,
        task=task,
        stages=stages,
        final_conv_kernel=int(fck),
        num_outputs=num,
        image_size=image_size,
        heatmap_size=heatmap_size,
        align_corners=align,
        stage1=stage1,
        source=source,
        raw=dict(data),
    )
