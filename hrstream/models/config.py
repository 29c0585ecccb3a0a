"""Model configs in the official HRNet experiments YAML schema.

An official YAML (``experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml`` or
``experiments/cityscapes/seg_hrnet_w48_*.yaml``) loads as it is. The fields read here:

* ``MODEL.NAME``: ``pose_hrnet``, ``seg_hrnet``, ``litehrnet`` (pose; :mod:`hrstream.models.litehrnet`),
  ``pose_higher_hrnet`` (bottom-up pose, HigherHRNet; its own sections: :mod:`hrstream.models.config_bottomup`),
  hrstream's ``det_hrnet`` (person detection on V2p, :mod:`hrstream.models.detection`; read like a
  segmentation config) or ``cls_hrnet`` (the official HRNet-Image-Classification YAMLs, ``MODEL.NUM_CLASSES``,
  ``MODEL.IMAGE_SIZE``): built as the backbone it describes (task ``cls``, no classifier head), into which
  the ImageNet checkpoints (official or timm) load strictly, and on which :func:`build_hrfpn` builds V2p.
* ``MODEL.EXTRA.STAGE2..STAGE4``: ``NUM_MODULES``, ``NUM_BRANCHES``, ``BLOCK`` (BASIC/BOTTLENECK),
  ``NUM_BLOCKS``, ``NUM_CHANNELS``, ``FUSE_METHOD``; ``MODEL.EXTRA.STAGE1`` (segmentation; the official files
  spell ``NUM_RANCHES``, which is accepted); ``MODEL.EXTRA.FINAL_CONV_KERNEL``.
* ``litehrnet``: ``MODEL.EXTRA`` is the official backbone ``extra`` dict as in the official configs
  (``stem``, ``num_stages``, ``stages_spec`` with ``num_modules``, ``num_branches``, ``num_blocks``,
  ``module_type``, ``with_fuse``, ``reduce_ratios``, ``num_channels``; ``with_head``), lists for tuples; the
  head is the official one 1x1 convolution.
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
from hrstream.models.config_fields import _get, _int_list, _positive_int
from hrstream.models.higherhrnet import HigherHRNetSpec
from hrstream.models.hrnet import BLOCKS, StageSpec
from hrstream.models.litehrnet import MODULE_TYPES, LiteHRNetSpec

__all__ = ["ModelSpec", "NetworkTask", "load_config", "parse_config"]

#: What a network computes (its config's MODEL.NAME says): the one list of network tasks.
NetworkTask = Literal["pose", "seg", "det", "cls"]
#: How a pose network finds people: ``topdown`` (one call per person crop, boxes from a detector) or
#: ``bottomup`` (one call per image; keypoints grouped into people by their tags).
Method = Literal["topdown", "bottomup"]
NAMES: dict[str, NetworkTask] = {
    "pose_hrnet": "pose",
    "pose_higher_hrnet": "pose",
    "seg_hrnet": "seg",
    "det_hrnet": "det",
    "litehrnet": "pose",
    "cls_hrnet": "cls",
}


@dataclass(frozen=True)
class ModelSpec:
    """What a config says about the network, parsed and checked.

    ``image_size`` and ``heatmap_size`` are ``(W, H)`` as in the official files (``None`` where not given).
    ``raw`` is the whole config dict, for the sections this class does not model. ``stages`` holds HRNet's
    STAGE2..4 (empty for ``litehrnet``, whose architecture is ``lite``).

    ``method`` is ``"bottomup"`` for ``pose_higher_hrnet`` (whose deconvolution head, loss and test settings
    are ``higher``; ``image_size`` is then ``(INPUT_SIZE, INPUT_SIZE)``, ``heatmap_size`` the first of
    ``DATASET.OUTPUT_SIZE`` squared) and ``"topdown"`` for every other network.
    """

    name: str
    task: NetworkTask
    stages: tuple[StageSpec, ...]
    final_conv_kernel: int
    num_outputs: int
    image_size: tuple[int, int] | None
    heatmap_size: tuple[int, int] | None
    align_corners: bool
    stage1: StageSpec | None
    source: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    lite: LiteHRNetSpec | None = None
    method: Method = "topdown"
    higher: HigherHRNetSpec | None = None

    @property
    def width(self) -> int:
        """Channels of the highest-resolution branch: 18, 32, 48, ... (HRNet), 40 (Lite-HRNet-18/30)."""
        if self.lite is not None:
            return self.lite.num_channels[0][0]
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


_LITE_STAGE_FIELDS = (
    "num_modules",
    "num_branches",
    "num_blocks",
    "module_type",
    "with_fuse",
    "reduce_ratios",
    "num_channels",
)


def _lite(d: Mapping[str, Any], src: str) -> LiteHRNetSpec:
    """``MODEL.EXTRA`` of a ``litehrnet`` config: the official backbone ``extra`` dict."""
    base = "MODEL.EXTRA"
    stem = _get(d, f"{base}.stem", src)
    if not isinstance(stem, Mapping):
        raise ConfigError(f"{src}: field {base}.stem must be a mapping")
    for f in ("stem_channels", "out_channels", "expand_ratio"):
        if f not in stem:
            raise ConfigError(f"{src}: missing field {base}.stem.{f}")
    stem_channels = _positive_int(stem["stem_channels"], f"{base}.stem.stem_channels", src)
    if stem_channels % 2:
        raise ConfigError(f"{src}: field {base}.stem.stem_channels must be even, got {stem_channels}")
    stem_out = _positive_int(stem["out_channels"], f"{base}.stem.out_channels", src)
    ratio = stem["expand_ratio"]
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
        raise ConfigError(f"{src}: field {base}.stem.expand_ratio must be a positive number, got {ratio!r}")
    num_stages = _positive_int(_get(d, f"{base}.num_stages", src), f"{base}.num_stages", src)
    spec = _get(d, f"{base}.stages_spec", src)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{src}: field {base}.stages_spec must be a mapping")
    lists: dict[str, list[Any]] = {}
    for f in _LITE_STAGE_FIELDS:
        path = f"{base}.stages_spec.{f}"
        if f not in spec:
            raise ConfigError(f"{src}: missing field {path}")
        v = spec[f]
        if not isinstance(v, (list, tuple)) or len(v) != num_stages:
            raise ConfigError(
                f"{src}: field {path} must be a list of {num_stages} entries (num_stages), got {v!r}"
            )
        lists[f] = list(v)
    sp = f"{base}.stages_spec"
    modules = tuple(_positive_int(v, f"{sp}.num_modules", src) for v in lists["num_modules"])
    branches = tuple(_positive_int(v, f"{sp}.num_branches", src) for v in lists["num_branches"])
    blocks = tuple(_positive_int(v, f"{sp}.num_blocks", src) for v in lists["num_blocks"])
    ratios = tuple(_positive_int(v, f"{sp}.reduce_ratios", src) for v in lists["reduce_ratios"])
    types = tuple(str(v).upper() for v in lists["module_type"])
    if any(t not in MODULE_TYPES for t in types):
        raise ConfigError(
            f"{src}: field {sp}.module_type entries must be one of {list(MODULE_TYPES)}, got {lists['module_type']!r}"
        )
    if not all(isinstance(v, bool) for v in lists["with_fuse"]):
        raise ConfigError(
            f"{src}: field {sp}.with_fuse must be a list of true/false, got {lists['with_fuse']!r}"
        )
    channels = tuple(_int_list(v, f"{sp}.num_channels", src) for v in lists["num_channels"])
    prev = 1
    for i, (n, ch) in enumerate(zip(branches, channels, strict=True)):
        if len(ch) != n:
            raise ConfigError(
                f"{src}: field {sp}.num_channels[{i}] has {len(ch)} widths for num_branches {n}"
            )
        if n < 2 or n < prev:
            raise ConfigError(
                f"{src}: field {sp}.num_branches must be at least 2 and never decrease, got {list(branches)}"
            )
        if any(c % 2 for c in ch):
            raise ConfigError(f"{src}: field {sp}.num_channels[{i}] must be even widths, got {list(ch)}")
        prev = n
    with_head = _get(d, f"{base}.with_head", src)
    if not isinstance(with_head, bool):
        raise ConfigError(f"{src}: field {base}.with_head must be true or false, got {with_head!r}")
    return LiteHRNetSpec(
        stem_channels=stem_channels,
        stem_out_channels=stem_out,
        expand_ratio=ratio,
        num_modules=modules,
        num_branches=branches,
        num_blocks=blocks,
        module_type=types,
        with_fuse=tuple(lists["with_fuse"]),
        reduce_ratios=ratios,
        num_channels=channels,
        with_head=with_head,
    )


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> ModelSpec:
    """Check an official-schema config and return its :class:`ModelSpec`.

    Raises :class:`ConfigError` naming the first missing or wrong field, e.g.
    ``"w32.yaml: missing field MODEL.EXTRA.STAGE3.NUM_CHANNELS"``.
    """
    name = _get(data, "MODEL.NAME", source)
    if name not in NAMES:
        raise ConfigError(f"{source}: field MODEL.NAME must be one of {sorted(NAMES)}, got {name!r}")
    task = NAMES[name]
    if name == "litehrnet":
        return _parse_lite(data, source)
    stages = (_stage(data, "STAGE2", source), _stage(data, "STAGE3", source), _stage(data, "STAGE4", source))
    for prev, cur, key in zip((None, *stages[:-1]), stages, ("STAGE2", "STAGE3", "STAGE4"), strict=True):
        if prev is not None and cur.num_branches != prev.num_branches + 1:
            raise ConfigError(
                f"{source}: field MODEL.EXTRA.{key}.NUM_BRANCHES must be one more than the stage before"
            )
    fck = _get(data, "MODEL.EXTRA.FINAL_CONV_KERNEL", source, required=False, default=1)
    if fck not in (1, 3):
        raise ConfigError(f"{source}: field MODEL.EXTRA.FINAL_CONV_KERNEL must be 1 or 3, got {fck!r}")
    if name == "pose_higher_hrnet":
        return _parse_higher(data, source, stages, int(fck))
    if task == "pose":
        num = _get(data, "MODEL.NUM_JOINTS", source)
        field_name = "MODEL.NUM_JOINTS"
        image_size = _size(data, "MODEL.IMAGE_SIZE", source)
        heatmap_size = _size(data, "MODEL.HEATMAP_SIZE", source)
        align = False
    elif task == "cls":  # an ImageNet classification YAML, built as the backbone it describes
        num = _get(data, "MODEL.NUM_CLASSES", source)
        field_name = "MODEL.NUM_CLASSES"
        image_size = _size(data, "MODEL.IMAGE_SIZE", source)
        heatmap_size = None
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


def _parse_higher(data: Mapping[str, Any], source: str, stages: tuple[StageSpec, ...], fck: int) -> ModelSpec:
    # Its fields are read with this module's helpers. The official pose_higher_hrnet hard-codes the stem (4 x 64
    # bottlenecks) and its YAMLs carry no STAGE1; a config that gives one (the small synthetic model) gets it, as
    # for pose_hrnet.
    from hrstream.models.config_bottomup import parse_higher

    higher = parse_higher(data, source, fck)
    stage1 = (
        _stage(data, "STAGE1", source) if _get(data, "MODEL.EXTRA.STAGE1", source, required=False) else None
    )
    out = higher.output_size[0]
    return ModelSpec(
        name="pose_higher_hrnet",
        task="pose",
        stages=stages,
        final_conv_kernel=fck,
        num_outputs=higher.num_joints,
        image_size=(higher.input_size, higher.input_size),
        heatmap_size=(out, out),
        align_corners=False,
        stage1=stage1,
        source=source,
        raw=dict(data),
        method="bottomup",
        higher=higher,
    )


def _parse_lite(data: Mapping[str, Any], source: str) -> ModelSpec:
    lite = _lite(data, source)
    num = _positive_int(_get(data, "MODEL.NUM_JOINTS", source), "MODEL.NUM_JOINTS", source)
    image_size = _size(data, "MODEL.IMAGE_SIZE", source)
    stride = 4 * 2 ** (max(lite.num_branches) - 1)  # the lowest branch's
    if image_size is not None and (image_size[0] % stride or image_size[1] % stride):
        raise ConfigError(
            f"{source}: field MODEL.IMAGE_SIZE must be multiples of {stride} for this litehrnet (its lowest "
            f"branch runs at 1/{stride}), got {list(image_size)}"
        )
    return ModelSpec(
        name="litehrnet",
        task="pose",
        stages=(),
        final_conv_kernel=1,
        num_outputs=num,
        image_size=image_size,
        heatmap_size=_size(data, "MODEL.HEATMAP_SIZE", source),
        align_corners=False,
        stage1=None,
        source=source,
        raw=dict(data),
        lite=lite,
    )
