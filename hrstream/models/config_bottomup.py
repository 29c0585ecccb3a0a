"""The ``pose_higher_hrnet`` sections of an official HigherHRNet experiment YAML, parsed and checked.

Read here (defaults are those of the official ``lib/config/default.py`` where a file leaves a key out):

* ``MODEL.NUM_JOINTS``, ``MODEL.TAG_PER_JOINT``, ``MODEL.EXTRA.FINAL_CONV_KERNEL`` and ``MODEL.EXTRA.DECONV``
  (``NUM_DECONVS``, ``NUM_CHANNELS``, ``KERNEL_SIZE``, ``NUM_BASIC_BLOCKS``, ``CAT_OUTPUT``);
* ``LOSS``: ``NUM_STAGES``, ``WITH_AE_LOSS``, ``WITH_HEATMAPS_LOSS`` (one entry per output stage);
* ``DATASET``: ``DATASET`` (``coco*`` or ``crowd_pose*``: the flip index), ``INPUT_SIZE``, ``OUTPUT_SIZE``,
  ``MAX_NUM_PEOPLE``, ``WITH_CENTER``;
* ``TEST``: ``SCALE_FACTOR``, ``FLIP_TEST``, ``PROJECT2IMAGE``, ``NMS_KERNEL``, ``NMS_PADDING``,
  ``TAG_THRESHOLD``, ``DETECTION_THRESHOLD``, ``USE_DETECTION_VAL``, ``IGNORE_TOO_MUCH``, ``ADJUST``,
  ``REFINE``, ``WITH_HEATMAPS``, ``WITH_AE``, ``IGNORE_CENTER``.

The official files write some tuples as strings (``WITH_HEATMAPS: (True, True)``), which yacs evaluates; they
are read the same way here.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from hrstream.errors import ConfigError
from hrstream.models.config_fields import _get, _int_list, _positive_int
from hrstream.models.higherhrnet import BottomUpTestSpec, DeconvSpec, HigherHRNetSpec

__all__ = ["FLIP_INDEX", "JOINT_ORDER", "parse_higher"]

#: The official ``FLIP_CONFIG`` (``lib/dataset/transforms/build.py``): joint ``j`` of a mirrored image is
#: joint ``index[j]`` of the original.
FLIP_INDEX: dict[str, tuple[int, ...]] = {
    "COCO": (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15),
    "COCO_WITH_CENTER": (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 17),
    "CROWDPOSE": (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13),
    "CROWDPOSE_WITH_CENTER": (1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13, 14),
}
#: The order the official grouping visits the joints (``lib/core/group.py``, ``Params.joint_order``),
#: 0-based; with a centre joint that is not ignored, the centre comes first.
JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
JOINT_ORDER_WITH_CENTER = (17, *JOINT_ORDER)


def _literal(value: Any) -> Any:
    """yacs reads strings such as ``"(True, False)"`` as Python literals; so does this."""
    if isinstance(value, str) and value.strip()[:1] in "([":
        try:
            return ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return value
    return value


def _bools(value: Any, path: str, src: str, n: int | None = None) -> tuple[bool, ...]:
    v = _literal(value)
    if isinstance(v, bool):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(b, bool) for b in v):
        raise ConfigError(f"{src}: field {path} must be a list of true/false, got {value!r}")
    if n is not None and len(v) != n:
        raise ConfigError(f"{src}: field {path} must have {n} entries (one per output stage), got {list(v)}")
    return tuple(v)


def _floats(value: Any, path: str, src: str) -> tuple[float, ...]:
    v = _literal(value)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v]
    if (
        not isinstance(v, (list, tuple))
        or not v
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v)
    ):
        raise ConfigError(f"{src}: field {path} must be a list of positive numbers, got {value!r}")
    return tuple(float(x) for x in v)


def _bool(d: Mapping[str, Any], path: str, src: str, default: bool) -> bool:
    v = _get(d, path, src, required=False, default=default)
    if not isinstance(v, bool):
        raise ConfigError(f"{src}: field {path} must be true or false, got {v!r}")
    return v


def _number(d: Mapping[str, Any], path: str, src: str, default: float) -> float:
    v = _get(d, path, src, required=False, default=default)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ConfigError(f"{src}: field {path} must be a number, got {v!r}")
    return float(v)


def _deconv(d: Mapping[str, Any], src: str) -> DeconvSpec:
    base = "MODEL.EXTRA.DECONV"
    s = _get(d, base, src)
    if not isinstance(s, Mapping):
        raise ConfigError(f"{src}: field {base} must be a mapping")
    for f in ("NUM_DECONVS", "NUM_CHANNELS", "KERNEL_SIZE", "NUM_BASIC_BLOCKS", "CAT_OUTPUT"):
        if f not in s:
            raise ConfigError(f"{src}: missing field {base}.{f}")
    n = s["NUM_DECONVS"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ConfigError(f"{src}: field {base}.NUM_DECONVS must be a non-negative integer, got {n!r}")
    channels = _int_list(_literal(s["NUM_CHANNELS"]), f"{base}.NUM_CHANNELS", src) if n else ()
    kernels = _int_list(_literal(s["KERNEL_SIZE"]), f"{base}.KERNEL_SIZE", src) if n else ()
    cat = _bools(s["CAT_OUTPUT"], f"{base}.CAT_OUTPUT", src) if n else ()
    for name, v in (("NUM_CHANNELS", channels), ("KERNEL_SIZE", kernels), ("CAT_OUTPUT", cat)):
        if len(v) < n:
            raise ConfigError(
                f"{src}: field {base}.{name} needs an entry for each of the {n} deconvolutions, got {list(v)}"
            )
    if any(k not in (2, 3, 4) for k in kernels):
        raise ConfigError(f"{src}: field {base}.KERNEL_SIZE entries must be 2, 3 or 4, got {list(kernels)}")
    blocks = s["NUM_BASIC_BLOCKS"]
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
        raise ConfigError(
            f"{src}: field {base}.NUM_BASIC_BLOCKS must be a non-negative integer, got {blocks!r}"
        )
    return DeconvSpec(n, channels[:n], kernels[:n], blocks, cat[:n])


def _flip_index(d: Mapping[str, Any], src: str, with_center: bool, needed: bool) -> tuple[int, ...]:
    name = str(_get(d, "DATASET.DATASET", src, required=False, default="coco_kpt"))
    if "coco" in name:
        key = "COCO"
    elif "crowd_pose" in name:
        key = "CROWDPOSE"
    elif needed:
        raise ConfigError(
            f"{src}: field DATASET.DATASET ({name!r}) has no flip index (coco* or crowd_pose*); "
            "set TEST.FLIP_TEST: false"
        )
    else:
        return ()
    return FLIP_INDEX[key + ("_WITH_CENTER" if with_center else "")]


def parse_higher(data: Mapping[str, Any], src: str, final_conv_kernel: int) -> HigherHRNetSpec:
    """The :class:`HigherHRNetSpec` of a ``pose_higher_hrnet`` config; :class:`ConfigError` names the field."""
    joints = _positive_int(_get(data, "MODEL.NUM_JOINTS", src), "MODEL.NUM_JOINTS", src)
    tag_per_joint = _bool(data, "MODEL.TAG_PER_JOINT", src, True)
    deconv = _deconv(data, src)
    stages = 1 + deconv.num_deconvs
    n_stages = _get(data, "LOSS.NUM_STAGES", src, required=False, default=stages)
    if n_stages != stages:
        raise ConfigError(
            f"{src}: field LOSS.NUM_STAGES ({n_stages!r}) must be 1 + MODEL.EXTRA.DECONV.NUM_DECONVS ({stages})"
        )
    with_ae = _bools(_get(data, "LOSS.WITH_AE_LOSS", src, required=False, default=[True]), "LOSS.WITH_AE_LOSS",
                     src, stages)  # fmt: skip
    with_hm = _bools(_get(data, "LOSS.WITH_HEATMAPS_LOSS", src, required=False, default=[True]),
                     "LOSS.WITH_HEATMAPS_LOSS", src, stages)  # fmt: skip
    input_size = _positive_int(
        _get(data, "DATASET.INPUT_SIZE", src, required=False, default=512), "DATASET.INPUT_SIZE", src
    )
    if input_size % 64:
        raise ConfigError(f"{src}: field DATASET.INPUT_SIZE must be a multiple of 64, got {input_size}")
    output_size = _int_list(
        _literal(_get(data, "DATASET.OUTPUT_SIZE", src, required=False, default=[input_size // 4])),
        "DATASET.OUTPUT_SIZE",
        src,
    )
    with_center = _bool(data, "DATASET.WITH_CENTER", src, False)
    ignore_center = _bool(data, "TEST.IGNORE_CENTER", src, True)
    flip = _bool(data, "TEST.FLIP_TEST", src, False)
    max_people = _positive_int(
        _get(data, "DATASET.MAX_NUM_PEOPLE", src, required=False, default=30), "DATASET.MAX_NUM_PEOPLE", src
    )
    kernel = _positive_int(
        _get(data, "TEST.NMS_KERNEL", src, required=False, default=3), "TEST.NMS_KERNEL", src
    )
    padding = _get(data, "TEST.NMS_PADDING", src, required=False, default=1)
    if not isinstance(padding, int) or isinstance(padding, bool) or 2 * padding != kernel - 1:
        raise ConfigError(
            f"{src}: fields TEST.NMS_KERNEL ({kernel}) and TEST.NMS_PADDING ({padding}) must keep the map size "
            "(padding = (kernel - 1) / 2)"
        )
    grouped = joints - 1 if (with_center and ignore_center) else joints
    order = JOINT_ORDER_WITH_CENTER if (with_center and not ignore_center) else JOINT_ORDER
    if grouped > len(order):
        raise ConfigError(
            f"{src}: field MODEL.NUM_JOINTS ({joints}): the official grouping handles at most 17"
        )
    test = BottomUpTestSpec(
        scale_factor=_floats(_get(data, "TEST.SCALE_FACTOR", src, required=False, default=[1]),
                             "TEST.SCALE_FACTOR", src),
        flip_test=flip,
        project2image=_bool(data, "TEST.PROJECT2IMAGE", src, False),
        nms_kernel=kernel,
        nms_padding=padding,
        tag_threshold=_number(data, "TEST.TAG_THRESHOLD", src, 1.0),
        detection_threshold=_number(data, "TEST.DETECTION_THRESHOLD", src, 0.2),
        max_num_people=max_people,
        use_detection_val=_bool(data, "TEST.USE_DETECTION_VAL", src, True),
        ignore_too_much=_bool(data, "TEST.IGNORE_TOO_MUCH", src, False),
        adjust=_bool(data, "TEST.ADJUST", src, True),
        refine=_bool(data, "TEST.REFINE", src, True),
        with_heatmaps=_bools(_get(data, "TEST.WITH_HEATMAPS", src, required=False, default=[True]),
                             "TEST.WITH_HEATMAPS", src, stages),
        with_ae=_bools(_get(data, "TEST.WITH_AE", src, required=False, default=[True]), "TEST.WITH_AE", src,
                       stages),
        with_heatmaps_loss=with_hm,
        with_ae_loss=with_ae,
        tag_per_joint=tag_per_joint,
        num_joints=joints,
        with_center=with_center,
        ignore_center=ignore_center,
        flip_index=_flip_index(data, src, with_center, flip),
        joint_order=order[:grouped],
        input_size=input_size,
    )  # fmt: skip
    if not any(a and b for a, b in zip(with_hm, test.with_heatmaps, strict=True)):
        raise ConfigError(f"{src}: fields TEST.WITH_HEATMAPS / LOSS.WITH_HEATMAPS_LOSS select no heatmaps")
    if not any(a and b for a, b in zip(with_ae, test.with_ae, strict=True)):
        raise ConfigError(f"{src}: fields TEST.WITH_AE / LOSS.WITH_AE_LOSS select no tags")
    return HigherHRNetSpec(
        num_joints=joints,
        tag_per_joint=tag_per_joint,
        with_ae_loss=with_ae,
        deconv=deconv,
        final_conv_kernel=final_conv_kernel,
        input_size=input_size,
        output_size=output_size,
        test=test,
    )
