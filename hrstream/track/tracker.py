"""Multi-person tracking: a Kalman filter per person box, two-stage (ByteTrack-style) assignment on a
cost that mixes box IoU, keypoint OKS and (when frames are given) a colour-histogram appearance distance.

Identities are integers from 1, given when a track is confirmed (``min_hits`` hits); they are stable and
never reused within a video. :meth:`PoseTracker.reset` starts a new video: the IDs restart at 1.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from hrstream.errors import ConfigError
from hrstream.track.appearance import appearance_distance, box_histograms
from hrstream.track.box_kalman import BoxKalman
from hrstream.track.geometry import COCO_SIGMAS, box_iou, oks_matrix, xyxy_to_cxcywh
from hrstream.types import Poses

__all__ = ["PoseTracker"]

logger = logging.getLogger(__name__)

_INVALID = 1e6


@dataclass(eq=False)
class _Track:
    kalman: BoxKalman
    box: np.ndarray  # (4,) xyxy of the last matched detection
    keypoints: np.ndarray  # (K, 2) of the last matched detection
    keypoint_scores: np.ndarray  # (K,)
    last_hit_t: float
    hits: int = 1
    track_id: int = 0  # 0 while tentative
    missed: int = 0  # updates since the last match (0: matched on the last update)
    appearance: np.ndarray | None = None  # (D,) running colour histogram; None until seen unoccluded

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0


class PoseTracker:
    """Track people across frames: ``update(poses, *, t) -> poses`` with ``track_ids`` set.

    Association per frame: confident detections go first to the tracks matched on the previous frame,
    then to the tracks in occlusion (which are predicted with their size held); weak detections then go
    to the tracks still free. Each step is an optimal assignment (``scipy.optimize.linear_sum_assignment``).

    Args:
        high_thr: detections scoring at least this are matched first, against all tracks.
        low_thr: detections in ``[low_thr, high_thr)`` are matched second, against the tracks still free;
            lower ones are ignored.
        new_track_thr: an unmatched high detection scoring at least this starts a (tentative) track.
        match_thr: the largest assignment cost accepted, cost in [0, 1] (0 = identical).
        min_hits: hits (matched frames) that confirm a track; an unmatched tentative track is dropped.
        max_age_s: a track not matched for longer than this many seconds is removed; until then it is
            predicted through the occlusion and can be matched again.
        iou_weight: cost = ``iou_weight * (1 - IoU) + (1 - iou_weight) * (1 - OKS)``; IoU is against the
            Kalman-predicted box, OKS against the track's last keypoints moved and scaled with the
            predicted box. Where no keypoint pair is confident, the cost is ``1 - IoU``.
        oks_sigmas: ``(K,)`` OKS sigmas; the 17 COCO sigmas by default.
        keypoint_thr: keypoints scoring below this are left out of OKS.
        accel_std, meas_std: Kalman noise, see :class:`~hrstream.track.box_kalman.BoxKalman`.
        appearance_weight: with frames passed to :meth:`update`, the cost becomes
            ``(1 - w) * motion_cost + w * d`` with ``d`` the Bhattacharyya distance between the track's
            running colour histogram and the detection's (:mod:`hrstream.track.appearance`); 0 turns it off.
        appearance_gate: pairs with ``d`` above this are never matched (people in other clothes).
        appearance_momentum: the track's histogram is ``m * old + (1 - m) * new`` on each match whose box
            overlaps no other detection (IoU < 0.1), so an occluder's colours do not leak into it.
        new_track_iou: an unmatched detection whose box overlaps a detection matched to a track on the same
            frame by more than this IoU starts no track (a second box on a tracked person); 1 turns it off.
    """

    def __init__(
        self,
        *,
        high_thr: float = 0.5,
        low_thr: float = 0.1,
        new_track_thr: float = 0.6,
        match_thr: float = 0.8,
        min_hits: int = 3,
        max_age_s: float = 1.0,
        iou_weight: float = 0.5,
        oks_sigmas: np.ndarray | None = None,
        keypoint_thr: float = 0.3,
        accel_std: float = 1.0,
        meas_std: float = 0.05,
        appearance_weight: float = 0.0,
        appearance_gate: float = 1.0,
        appearance_momentum: float = 0.8,
        new_track_iou: float = 1.0,
    ) -> None:
        if not 0.0 <= low_thr <= high_thr <= 1.0:
            raise ConfigError(f"tracker: need 0 <= low_thr <= high_thr <= 1, got {low_thr=} {high_thr=}")
        if not 0.0 <= iou_weight <= 1.0:
            raise ConfigError(f"tracker: iou_weight must be in [0, 1], got {iou_weight}")
        if not (
            0.0 <= appearance_weight <= 1.0 and appearance_gate > 0.0 and 0.0 <= appearance_momentum < 1.0
        ):
            raise ConfigError(
                "tracker: need 0 <= appearance_weight <= 1, appearance_gate > 0, 0 <= appearance_momentum < 1; "
                f"got {appearance_weight=} {appearance_gate=} {appearance_momentum=}"
            )
        if not 0.0 < new_track_iou <= 1.0:
            raise ConfigError(f"tracker: new_track_iou must be in (0, 1], got {new_track_iou}")
        if min_hits < 1 or max_age_s < 0 or match_thr <= 0:
            raise ConfigError(
                f"tracker: need min_hits >= 1, max_age_s >= 0, match_thr > 0; got {min_hits=} {max_age_s=} "
                f"{match_thr=}"
            )
        self.high_thr = float(high_thr)
        self.low_thr = float(low_thr)
        self.new_track_thr = float(new_track_thr)
        self.match_thr = float(match_thr)
        self.min_hits = int(min_hits)
        self.max_age_s = float(max_age_s)
        self.iou_weight = float(iou_weight)
        self.oks_sigmas = np.asarray(COCO_SIGMAS if oks_sigmas is None else oks_sigmas, dtype=np.float64)
        self.keypoint_thr = float(keypoint_thr)
        self._kalman_args = {"accel_std": float(accel_std), "meas_std": float(meas_std)}
        self.appearance_weight = float(appearance_weight)
        self.appearance_gate = float(appearance_gate)
        self.appearance_momentum = float(appearance_momentum)
        self.new_track_iou = float(new_track_iou)
        self._hists: np.ndarray | None = None  # (n_detections, D) of the frame being updated
        self._alone: np.ndarray | None = None  # (n_detections,) bool: overlaps no other detection
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and start a new video: the next confirmed track gets ID 1."""
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._t: float | None = None

    @property
    def num_tracks(self) -> int:
        """Live tracks, tentative ones included."""
        return len(self._tracks)

    # ------------------------------------------------------------------ association

    def _cost(self, tracks: list[_Track], poses: Poses, det_idx: np.ndarray) -> np.ndarray:
        """``(len(tracks), len(det_idx))`` cost; entries above ``match_thr`` are set to a large value."""
        if not tracks or det_idx.size == 0:
            return np.zeros((len(tracks), det_idx.size))
        pred = np.stack([tr.kalman.box() for tr in tracks])
        boxes = poses.boxes[det_idx].astype(np.float64)
        iou = box_iou(pred, boxes)
        cost = 1.0 - iou
        k = poses.num_keypoints
        if self.iou_weight < 1.0 and k > 0 and k == len(self.oks_sigmas):
            pred_c, last_c = xyxy_to_cxcywh(pred), xyxy_to_cxcywh(np.stack([tr.box for tr in tracks]))
            scale = pred_c[:, 3] / np.maximum(last_c[:, 3], 1.0)
            ref = np.stack([tr.keypoints for tr in tracks]).astype(np.float64)
            moved = pred_c[:, None, :2] + (ref - last_c[:, None, :2]) * scale[:, None, None]
            ref_valid = np.stack([tr.keypoint_scores for tr in tracks]) >= self.keypoint_thr
            oks, defined = oks_matrix(
                moved,
                ref_valid,
                pred_c[:, 2] * pred_c[:, 3],
                poses.keypoints[det_idx],
                poses.keypoint_scores[det_idx] >= self.keypoint_thr,
                self.oks_sigmas,
            )
            mixed = self.iou_weight * (1.0 - iou) + (1.0 - self.iou_weight) * (1.0 - oks)
            cost = np.where(defined, mixed, cost)
        if self._hists is not None and self.appearance_weight > 0:
            ref = [tr.appearance for tr in tracks]
            if any(a is not None for a in ref):
                dim = self._hists.shape[1]
                ref_m = np.stack([a if a is not None else np.zeros(dim, np.float32) for a in ref])
                d = appearance_distance(ref_m, self._hists[det_idx])
                known = np.isfinite(d)
                w = self.appearance_weight
                cost = np.where(known, (1.0 - w) * cost + w * np.where(known, d, 0.0), cost)
                cost = np.where(known & (d > self.appearance_gate), _INVALID, cost)
        return np.where(cost > self.match_thr, _INVALID, cost)

    def _assign(
        self, tracks: list[_Track], poses: Poses, det_idx: np.ndarray
    ) -> tuple[list[tuple[_Track, int]], list[_Track], np.ndarray]:
        """Match ``tracks`` with detections ``det_idx``: (pairs, unmatched tracks, unmatched det indices)."""
        cost = self._cost(tracks, poses, det_idx)
        pairs: list[tuple[_Track, int]] = []
        used_t: set[int] = set()
        used_d: set[int] = set()
        if cost.size:
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] <= self.match_thr:
                    pairs.append((tracks[r], int(det_idx[c])))
                    used_t.add(int(r))
                    used_d.add(int(c))
        free_tracks = [tr for i, tr in enumerate(tracks) if i not in used_t]
        free_dets = np.array([d for j, d in enumerate(det_idx) if j not in used_d], dtype=np.int64)
        return pairs, free_tracks, free_dets

    # ------------------------------------------------------------------ public API

    def update(self, poses: Poses, *, t: float, image: np.ndarray | None = None) -> Poses:
        """Associate this frame's detections with the tracks.

        Args:
            poses: the detections of one frame (``track_ids`` ignored).
            t: frame time in seconds; times should increase (a time going back is treated as no motion).
            image: the frame, ``uint8 (H, W, 3)`` RGB, for the appearance term (ignored when
                ``appearance_weight`` is 0).

        Returns:
            Every detection of the frame, unchanged but with ``track_ids`` (``int64``) set: first those of
            confirmed tracks (including the one that confirms a track on this frame) ordered by ID, then the
            others (tentative tracks, unmatched detections) in detection order with ID ``-1``. ``.tracked()``
            selects the first group.
        """
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"PoseTracker.update: t must be a finite time in seconds, got {t}")
        dt = 0.0 if self._t is None else t - self._t
        if dt < 0:
            logger.warning("tracker: time went back by %.3f s; call reset() between videos", -dt)
            dt = 0.0
        self._t = t if self._t is None else max(self._t, t)

        self._tracks = [tr for tr in self._tracks if t - tr.last_hit_t <= self.max_age_s]
        for tr in self._tracks:
            tr.kalman.predict(dt, hold_size=tr.missed > 0)

        use_app = image is not None and self.appearance_weight > 0 and len(poses) > 0
        self._hists = self._alone = None
        if use_app:
            self._hists = box_histograms(
                image, poses.boxes, poses.keypoints, poses.keypoint_scores, self.keypoint_thr
            )
            b = poses.boxes.astype(np.float64)
            overlap = box_iou(b, b)
            np.fill_diagonal(overlap, 0.0)
            self._alone = overlap.max(1) < 0.1
        scores = poses.box_scores
        high = np.flatnonzero(scores >= self.high_thr)
        low = np.flatnonzero((scores >= self.low_thr) & (scores < self.high_thr))
        # Stage 1: confident detections, first against the tracks seen on the previous frame, then against
        # the tracks in occlusion (so a predicted track cannot take a visible person's detection).
        recent = [tr for tr in self._tracks if tr.missed == 0]
        pairs, free_recent, free_high = self._assign(recent, poses, high)
        lost = [tr for tr in self._tracks if tr.missed > 0]
        pairs_lost, free_lost, free_high = self._assign(lost, poses, free_high)
        # Stage 2: weak detections against the tracks still free.
        pairs_low, free_tracks, _ = self._assign(free_recent + free_lost, poses, low)
        pairs += pairs_lost + pairs_low

        out_idx: list[int] = []
        out_ids: list[int] = []
        for tr, d in pairs:
            tr.kalman.update(poses.boxes[d])
            tr.box = poses.boxes[d].astype(np.float64)
            tr.keypoints = poses.keypoints[d].copy()
            tr.keypoint_scores = poses.keypoint_scores[d].copy()
            tr.last_hit_t = t
            tr.hits += 1
            tr.missed = -1  # becomes 0 below
            self._update_appearance(tr, d)
            self._maybe_confirm(tr)
            if tr.confirmed:
                out_idx.append(d)
                out_ids.append(tr.track_id)

        dead = {id(tr) for tr in free_tracks if not tr.confirmed}
        self._tracks = [tr for tr in self._tracks if id(tr) not in dead]
        for tr in self._tracks:
            tr.missed += 1
        # a free detection overlapping a matched one is a second box on a tracked person: no new track
        second_box = np.zeros(len(free_high), bool)
        if self.new_track_iou < 1.0 and pairs and len(free_high):
            matched = poses.boxes[[d for _, d in pairs]].astype(np.float64)
            second_box = (
                box_iou(poses.boxes[free_high].astype(np.float64), matched).max(1) > self.new_track_iou
            )
        for d, second in zip(free_high, second_box, strict=True):
            if scores[d] < self.new_track_thr or second:
                continue
            tr = _Track(
                kalman=BoxKalman(poses.boxes[d], **self._kalman_args),
                box=poses.boxes[d].astype(np.float64),
                keypoints=poses.keypoints[d].copy(),
                keypoint_scores=poses.keypoint_scores[d].copy(),
                last_hit_t=t,
            )
            self._update_appearance(tr, int(d))
            self._tracks.append(tr)
            self._maybe_confirm(tr)
            if tr.confirmed:
                out_idx.append(int(d))
                out_ids.append(tr.track_id)

        order = np.argsort(np.asarray(out_ids, dtype=np.int64), kind="stable")
        idx = np.asarray(out_idx, dtype=np.int64)[order]
        rest = np.setdiff1d(np.arange(len(poses)), idx)  # tentative tracks and unmatched detections, in order
        result = poses[np.concatenate([idx, rest])]
        result.track_ids = np.concatenate(
            [np.asarray(out_ids, dtype=np.int64)[order], np.full(len(rest), -1)]
        )
        return result

    def _update_appearance(self, tr: _Track, d: int) -> None:
        """Blend detection ``d``'s histogram into the track's, unless another detection overlaps it."""
        if self._hists is None or self._alone is None or not self._alone[d] or not self._hists[d].any():
            return
        new = self._hists[d]
        m = self.appearance_momentum
        tr.appearance = new.copy() if tr.appearance is None else m * tr.appearance + (1.0 - m) * new

    def _maybe_confirm(self, tr: _Track) -> None:
        if not tr.confirmed and tr.hits >= self.min_hits:
            tr.track_id = self._next_id
            self._next_id += 1
            logger.debug("tracker: track %d confirmed", tr.track_id)

    def predict_boxes(self, t: float, *, include_lost: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Where the confirmed tracks are expected at time ``t`` (for frames where the detector is skipped).

        Does not change the tracker. Crop these boxes, estimate poses in them, give the poses box scores
        (for example the mean keypoint score) and pass them to :meth:`update` with the same ``t``.

        Args:
            t: frame time in seconds.
            include_lost: also return confirmed tracks that were not matched on the last update.

        Returns:
            ``(ids int64 (m,), boxes float32 (m, 4) xyxy)``, ordered by ID.
        """
        dt = 0.0 if self._t is None else max(float(t) - self._t, 0.0)
        live = [
            tr
            for tr in self._tracks
            if tr.confirmed
            and (include_lost or tr.missed == 0)
            and float(t) - tr.last_hit_t <= self.max_age_s
        ]
        live.sort(key=lambda tr: tr.track_id)
        ids = np.array([tr.track_id for tr in live], dtype=np.int64)
        boxes = np.array(
            [tr.kalman.box_after(dt, hold_size=tr.missed > 0) for tr in live], dtype=np.float32
        ).reshape(-1, 4)
        return ids, boxes
