"""Score predicted pose tracks against ground truth: PCK, keypoint error, MOT metrics and jitter.

Definitions (all in pixels: x right, y down; frames are decode indices):

* **Matching**: per frame, Hungarian on box IoU >= ``iou_threshold`` (see :mod:`hrstream.metrics.frames`).
  True people with fewer than ``min_visible_keypoints`` visible keypoints are *ignored*: they count neither
  as misses nor do predictions matched to them count as false positives (a sliver at the frame edge).
* **PCK@alpha**: a true keypoint is correct when its matched prediction lies within
  ``alpha * max(w, h)`` of the TRUE box. Keypoints are taken at visibility 2 (``visible``) or >= 1
  (``in_frame``). ``pck``: over all true people, keypoints of unmatched true people counting as wrong;
  ``pck_matched``: over matched people only. Scored on the keypoints chosen by ``use``.
* **Keypoint error**: mean distance (px) to the truth over matched, visible keypoints, for every source.
* **MOT**: :mod:`motmetrics` accumulator fed per frame with ``1 - IoU`` (NaN below the IoU threshold);
  MOTA, IDF1, ID switches, precision, recall, false positives, misses; ``motp_iou`` = mean IoU of matches.
* **Jitter**: RMS of the second difference ``p[f+2] - 2 p[f+1] + p[f]`` in **px/frame^2**, over every
  keypoint visible in three consecutive frames in which a true track stays matched to the same predicted
  track; for each source and for the truth itself (the floor: real motion accelerates too).
  ``reduction`` = ``1 - smoothed / raw``; ``error_*`` is the same RMS on the error ``p - truth``
  (jitter with the true motion removed), with ``error_reduction`` likewise.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import motmetrics as mm
import numpy as np

from hrstream.errors import InputError
from hrstream.metrics.frames import (
    KEYPOINT_SOURCES,
    box_iou,
    load_tracks_doc,
    match_boxes,
    people_by_frame,
)

__all__ = ["ALPHAS", "MOT_METRICS", "evaluate_dir", "evaluate_tracks"]

log = logging.getLogger(__name__)

ALPHAS: tuple[float, ...] = (0.05, 0.1)
_SUBSETS = {"visible": 2, "in_frame": 1}
#: motmetrics name -> result key
MOT_METRICS: dict[str, str] = {
    "mota": "mota",
    "idf1": "idf1",
    "num_switches": "id_switches",
    "precision": "precision",
    "recall": "recall",
    "num_false_positives": "false_positives",
    "num_misses": "misses",
    "num_objects": "num_objects",
    "num_predictions": "num_predictions",
    "motp": "motp_iou",
    "mostly_tracked": "mostly_tracked",
    "num_fragmentations": "fragmentations",
    "num_unique_objects": "num_unique_objects",
}
_MOT_COUNTS = (
    "id_switches",
    "false_positives",
    "misses",
    "num_objects",
    "num_predictions",
    "mostly_tracked",
    "fragmentations",
    "num_unique_objects",
)


def _sources(pred: dict[str, Any], use: str) -> tuple[str, ...]:
    if use not in KEYPOINT_SOURCES:
        raise InputError(f"use={use!r}: pick one of {sorted(KEYPOINT_SOURCES)}")
    has_offline = any("smoothed_offline" in tr for tr in pred["tracks"])
    if use == "offline" and not has_offline and pred["tracks"]:
        raise InputError(
            "use='offline' but the predictions have no 'smoothed_offline' keypoints; "
            "run with an offline Savitzky-Golay window or pick use='smoothed'"
        )
    return ("raw", "smoothed", "offline") if has_offline else ("raw", "smoothed")


def _score_clip(pred_doc: Any, truth_doc: Any, use: str, iou_threshold: float, min_visible_keypoints: int,
                identities: str = "tracks") -> tuple[Counter, mm.MOTAccumulator, dict[str, Any]]:  # fmt: skip
    """The additive tallies, the MOT accumulator and clip facts of one clip."""
    pred = load_tracks_doc(pred_doc)
    truth = load_tracks_doc(truth_doc)
    sources = _sources(pred, use)
    tp = people_by_frame(truth, ("raw",), truth=True)
    pp = people_by_frame(pred, sources, identities=identities)
    n_frames = int(truth.get("num_frames") or (max(tp, default=-1) + 1))
    late = [f for f in pp if f >= n_frames]
    if late:
        log.warning("predictions have %d frames past the truth's %d; ignored", len(late), n_frames)
    k_t = next(iter(tp.values())).keypoints["raw"].shape[1] if tp else None
    k_p = next(iter(pp.values())).keypoints["raw"].shape[1] if pp else None
    if k_t is not None and k_p is not None and k_t != k_p:
        raise InputError(f"predictions have {k_p} keypoints but the truth {k_t}; compare the same skeleton")

    tally: Counter = Counter()
    acc = mm.MOTAccumulator(auto_id=False)
    # true track id -> frame -> (pred track id, {source: (K, 2)}, truth (K, 2), visibility (K,))
    seq: dict[int, dict[int, tuple[int, dict[str, np.ndarray], np.ndarray, np.ndarray]]] = {}
    for f in range(n_frames):
        t = tp.get(f)
        p = pp.get(f)
        nt, npr = (len(t) if t else 0), (len(p) if p else 0)
        iou = box_iou(t.boxes if t else np.zeros((0, 4)), p.boxes if p else np.zeros((0, 4)))
        pairs = match_boxes(iou, iou_threshold)
        vis = t.visibility if t else np.zeros((0, 0), np.uint8)
        ignored = (vis == 2).sum(1) < min_visible_keypoints if nt else np.zeros(0, bool)
        drop_pred = {c for r, c in pairs if ignored[r]}
        keep_t = np.flatnonzero(~ignored)
        keep_p = np.asarray([j for j in range(npr) if j not in drop_pred], np.int64)
        sub = iou[np.ix_(keep_t, keep_p)]
        dist = np.where(sub >= iou_threshold, 1.0 - sub, np.nan)
        acc.update(t.ids[keep_t].tolist() if t else [], p.ids[keep_p].tolist() if p else [], dist, frameid=f)
        tally["frames"] += 1
        tally["truth_people"] += len(keep_t)
        tally["ignored_people"] += int(ignored.sum())
        tally["pred_people"] += len(keep_p)
        matched = {r: c for r, c in pairs if not ignored[r]}
        tally["matched_people"] += len(matched)
        for r in keep_t.tolist():
            v = vis[r]
            c = matched.get(r)
            for name, vmin in _SUBSETS.items():
                m = v >= vmin
                tally[f"total_{name}"] += int(m.sum())
                if c is None:
                    continue
                tally[f"total_matched_{name}"] += int(m.sum())
                x0, y0, x1, y1 = t.boxes[r]
                size = max(x1 - x0, y1 - y0)
                d = np.linalg.norm(p.keypoints[use][c] - t.keypoints["raw"][r], axis=1)[m]
                for a in ALPHAS:
                    tally[f"hit_{name}_{a}"] += int((d <= a * size).sum())
            if c is None:
                continue
            m2 = v == 2
            tally["err_n"] += int(m2.sum())
            for s in sources:
                d = np.linalg.norm(p.keypoints[s][c] - t.keypoints["raw"][r], axis=1)[m2]
                tally[f"err_sum_{s}"] += float(d.sum())
            seq.setdefault(int(t.ids[r]), {})[f] = (
                int(p.ids[c]),
                {s: p.keypoints[s][c] for s in sources},
                t.keypoints["raw"][r],
                v,
            )
    _jitter(seq, sources, tally)
    facts = {"frames": n_frames, "sources": list(sources)}
    return tally, acc, facts


def _jitter(seq: dict[int, dict[int, tuple]], sources: tuple[str, ...], tally: Counter) -> None:
    for frames in seq.values():
        for f, (pid, kp0, gt0, v0) in frames.items():
            n1, n2 = frames.get(f + 1), frames.get(f + 2)
            if n1 is None or n2 is None or n1[0] != pid or n2[0] != pid:
                continue
            m = (v0 == 2) & (n1[3] == 2) & (n2[3] == 2)
            if not m.any():
                continue
            gacc = (n2[2] - 2 * n1[2] + gt0)[m]
            tally["acc_n"] += int(m.sum())
            tally["acc_sq_truth"] += float((gacc**2).sum())
            for s in sources:
                pacc = (n2[1][s] - 2 * n1[1][s] + kp0[s])[m]
                tally[f"acc_sq_{s}"] += float((pacc**2).sum())
                tally[f"acc_err_sq_{s}"] += float(((pacc - gacc) ** 2).sum())


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _reduction(after: float | None, before: float | None) -> float | None:
    return None if after is None or not before else 1.0 - after / before


def _finite(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _summary(tally: Counter, sources: list[str], mot_row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"frames": int(tally["frames"])}
    out["matching"] = {
        "method": "hungarian_box_iou",
        "truth_people": int(tally["truth_people"]),
        "pred_people": int(tally["pred_people"]),
        "matched_people": int(tally["matched_people"]),
        "ignored_truth_people": int(tally["ignored_people"]),
    }
    for key, total in (("pck", "total"), ("pck_matched", "total_matched")):
        out[key] = {
            name: {str(a): _ratio(tally[f"hit_{name}_{a}"], tally[f"{total}_{name}"]) for a in ALPHAS}
            for name in _SUBSETS
        }
    out["keypoints_scored"] = {name: int(tally[f"total_{name}"]) for name in _SUBSETS}
    out["keypoint_error_px"] = {s: _ratio(tally[f"err_sum_{s}"], tally["err_n"]) for s in sources}
    n = tally["acc_n"]
    jit: dict[str, Any] = {"unit": "px/frame^2", "samples": int(n)}
    jit["truth"] = math.sqrt(tally["acc_sq_truth"] / n) if n else None
    for s in sources:
        jit[s] = math.sqrt(tally[f"acc_sq_{s}"] / n) if n else None
        jit[f"error_{s}"] = math.sqrt(tally[f"acc_err_sq_{s}"] / n) if n else None
    jit["reduction"] = _reduction(jit["smoothed"], jit["raw"])
    jit["error_reduction"] = _reduction(jit["error_smoothed"], jit["error_raw"])
    if "offline" in sources:
        jit["offline_reduction"] = _reduction(jit["offline"], jit["raw"])
    out["jitter"] = jit
    mot = {key: _finite(mot_row[name]) for name, key in MOT_METRICS.items()}
    for key in _MOT_COUNTS:
        if mot[key] is not None:
            mot[key] = int(mot[key])
    if mot["motp_iou"] is not None:
        mot["motp_iou"] = 1.0 - mot["motp_iou"]  # motmetrics reports the mean distance (1 - IoU)
    out["mot"] = mot
    return out


def evaluate_tracks(pred_tracks_doc: dict[str, Any] | str | Path, truth_tracks_doc: dict[str, Any] | str | Path,
                    *, use: str = "smoothed", iou_threshold: float = 0.5, min_visible_keypoints: int = 1,
                    identities: str = "tracks") -> dict[str, Any]:  # fmt: skip
    """Score one clip's predicted tracks document against its truth (dicts or ``NAME.tracks.json`` paths).

    ``use``: the keypoints PCK is scored on: ``"smoothed"`` (online smoother), ``"raw"`` (network output)
    or ``"offline"`` (Savitzky-Golay; the predictions must have it). Returns a JSON-ready dict with
    ``frames``, ``use``, ``iou_threshold``, ``matching``, ``pck`` / ``pck_matched`` (``{"visible" |
    "in_frame": {"0.05": x, "0.1": x}}``), ``keypoints_scored``, ``keypoint_error_px`` (per source),
    ``jitter`` and ``mot``; a figure with nothing to average over is ``None``. See the module docstring.
    ``identities``: ``"tracks"`` scores the tracks' IDs; ``"online"`` the per-frame ``online_ids`` of repaired
    tracks (the IDs of the JSONL and the video; tracks without them keep their ``track_id``).
    """
    tally, acc, facts = _score_clip(
        pred_tracks_doc, truth_tracks_doc, use, iou_threshold, min_visible_keypoints, identities
    )
    row = mm.metrics.create().compute(acc, metrics=list(MOT_METRICS), name="clip").iloc[0]
    res = _summary(tally, facts["sources"], row)
    res.update(
        use=use,
        iou_threshold=iou_threshold,
        min_visible_keypoints=min_visible_keypoints,
        identities=identities,
    )
    return res


def evaluate_dir(pred_dir: str | Path, truth_dir: str | Path, *, use: str = "smoothed", iou_threshold: float = 0.5,
                 min_visible_keypoints: int = 1, identities: str = "tracks") -> dict[str, Any]:  # fmt: skip
    """Score every ``truth_dir/NAME.tracks.json`` against ``pred_dir/NAME.tracks.json`` (``identities`` as in
    :func:`evaluate_tracks`).

    Returns ``{"clips": {NAME: result}, "overall": result, "missing": [NAME, ...], "use": use}``; ``overall``
    pools the counts of all clips (PCK, errors and jitter over all keypoints; MOT over the concatenated
    accumulators), so it is not a mean of per-clip figures. Truth clips with no prediction are listed in
    ``missing`` and left out; raises :class:`InputError` when no clip has both.
    """
    truth_paths = sorted(Path(truth_dir).glob("*.tracks.json"))
    if not truth_paths:
        raise InputError(f"{truth_dir}: no NAME.tracks.json ground truth; run 'hrstream synth' there first")
    names, tallies, accs, clips, missing = [], [], [], {}, []
    all_sources: set[str] = {"raw", "smoothed", "offline"}
    for tpath in truth_paths:
        name = tpath.name[: -len(".tracks.json")]
        ppath = Path(pred_dir) / tpath.name
        if not ppath.is_file():
            missing.append(name)
            continue
        tally, acc, facts = _score_clip(
            str(ppath), str(tpath), use, iou_threshold, min_visible_keypoints, identities
        )
        names.append(name)
        tallies.append(tally)
        accs.append(acc)
        all_sources &= set(facts["sources"])
        clips[name] = facts["sources"]
    if not names:
        raise InputError(
            f"{pred_dir}: no predictions named like the truth in {truth_dir}; run hrstream there"
        )
    if missing:
        log.warning(
            "%d truth clips have no predictions in %s: %s", len(missing), pred_dir, ", ".join(missing)
        )
    table = mm.metrics.create().compute_many(
        accs, metrics=list(MOT_METRICS), names=names, generate_overall=True
    )
    results: dict[str, Any] = {}
    for name, tally in zip(names, tallies, strict=True):
        results[name] = _summary(tally, clips[name], table.loc[name])
        results[name].update(use=use, iou_threshold=iou_threshold)
    total: Counter = Counter()
    for tally in tallies:
        total.update(tally)
    srcs = [s for s in ("raw", "smoothed", "offline") if s in all_sources]
    overall = _summary(total, srcs, table.loc["OVERALL"])
    overall.update(use=use, iou_threshold=iou_threshold, clips=len(names), identities=identities)
    return {"clips": results, "overall": overall, "missing": missing, "use": use}
