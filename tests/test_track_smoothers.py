"""Keypoint smoothers against synthetic people with known truth and known noise.

Lag is measured two ways: (1) on a noisy walking person, as the frame shift that maximises the
cross-correlation of the linearly detrended estimate and truth (summed over all 34 coordinates, refined
with a parabola through the peak); (2) on a noise-free ramp, as the steady-state distance behind the truth
divided by the speed, in frames.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from support.trajectories import PersonPath, frame_times, noisy_track

from hrstream.errors import ConfigError
from hrstream.track import (
    FixedLagSavgol,
    KalmanPointFilter,
    KeypointSmoother,
    OneEuroFilter,
    make_smoother,
    savgol_smooth_track,
    savgol_window_length,
)
from hrstream.types import Poses

log = logging.getLogger(__name__)

FPS = 30.0
WALKER = PersonPath(0, (200.0, 300.0), (60.0, 0.0), height=300.0, sway=(10.0, 0.5), swing=(0.06, 0.7))


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=-1))))


def _detrend(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    x = x.reshape(len(t), -1)
    design = np.stack([t, np.ones_like(t)], 1)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    return x - design @ coef


def xcorr_lag_frames(est: np.ndarray, truth: np.ndarray, times: np.ndarray, max_shift: int = 6) -> float:
    """Frames by which ``est`` trails ``truth`` (positive = late)."""
    e, g = _detrend(est, times), _detrend(truth, times)
    n = len(times)
    shifts = np.arange(-max_shift, max_shift + 1)
    cc = np.array(
        [np.sum(e[max(s, 0) : n + min(s, 0)] * g[max(-s, 0) : n - max(s, 0)]) / (n - abs(s)) for s in shifts]
    )
    i = int(np.argmax(cc))
    if 0 < i < len(cc) - 1:
        return float(shifts[i] + (cc[i - 1] - cc[i + 1]) / (2 * (cc[i - 1] - 2 * cc[i] + cc[i + 1])))
    return float(shifts[i])


def run_filter(f, noisy: np.ndarray, scores: np.ndarray, times: np.ndarray, min_score: float = 0.3):
    return np.array([f.filter(noisy[i], t, scores[i] >= min_score) for i, t in enumerate(times)])


@pytest.fixture(scope="module")
def walk():
    times = frame_times(6.0, FPS)
    truth, noisy, scores = noisy_track(times, noise=4.0, person=WALKER, seed=0)
    return times, truth, noisy, scores


@pytest.mark.parametrize(
    ("name", "make"),
    [("one_euro", lambda: OneEuroFilter()), ("kalman", lambda: KalmanPointFilter(meas_std=4.0))],
)
def test_streaming_filters_cut_rmse_by_30_percent(walk, name, make):
    times, truth, noisy, scores = walk
    before, after = rmse(noisy, truth), rmse(run_filter(make(), noisy, scores, times), truth)
    log.info("%s: RMSE %.2f -> %.2f px (%.0f%% lower)", name, before, after, 100 * (1 - after / before))
    assert after <= 0.7 * before, f"{name}: RMSE {before:.2f} -> {after:.2f}"


def test_savgol_offline_cuts_rmse_by_30_percent(walk):
    times, truth, noisy, scores = walk
    before = rmse(noisy, truth)
    after = rmse(savgol_smooth_track(times, noisy, scores, window_s=0.3, polyorder=2), truth)
    log.info("savgol: RMSE %.2f -> %.2f px", before, after)
    assert after <= 0.7 * before


def test_one_euro_lags_at_most_one_frame_on_noisy_walk(walk):
    times, truth, noisy, scores = walk
    lag = xcorr_lag_frames(run_filter(OneEuroFilter(), noisy, scores, times), truth, times)
    log.info("one_euro cross-correlation lag: %.2f frames", lag)
    assert -0.5 <= lag <= 1.0
    # the raw detections do not lag: the measure itself is unbiased
    assert abs(xcorr_lag_frames(noisy, truth, times)) < 0.3


def test_one_euro_ramp_lag_at_most_one_frame():
    speed = 150.0  # px/s, a walking person of ~300 px
    times = frame_times(2.0, FPS)
    truth = (100.0 + speed * times)[:, None, None] * np.ones((1, 17, 2))
    out = run_filter(OneEuroFilter(), truth, np.ones((len(times), 17)), times)
    lag_frames = float(np.mean(truth[-15:] - out[-15:])) / speed * FPS
    log.info("one_euro ramp lag at %.0f px/s: %.2f frames", speed, lag_frames)
    assert 0.0 < lag_frames <= 1.0
    # a heavier, non-adaptive setting lags more: the measure can fail
    slow = run_filter(OneEuroFilter(min_cutoff=1.0, beta=0.0), truth, np.ones((len(times), 17)), times)
    assert float(np.mean(truth[-15:] - slow[-15:])) / speed * FPS > 2.0


@pytest.mark.parametrize("make", [lambda: OneEuroFilter(), lambda: KalmanPointFilter(meas_std=4.0)])
def test_low_score_outlier_does_not_drag_estimate(walk, make):
    times, truth, noisy, scores = walk
    noisy, scores = noisy.copy(), scores.copy()
    j, k = 90, 9  # left wrist at 3 s
    noisy[j, k] += 150.0
    scores[j, k] = 0.05
    gated = run_filter(make(), noisy, scores, times)
    ungated = run_filter(make(), noisy, scores, times, min_score=0.0)
    err_gated = float(np.linalg.norm(gated[j, k] - truth[j, k]))
    err_ungated = float(np.linalg.norm(ungated[j, k] - truth[j, k]))
    assert err_gated < 10.0, err_gated
    assert err_ungated > 30.0, err_ungated  # without the gate the outlier does drag it


def test_savgol_interpolates_low_score_keypoints(walk):
    times, truth, noisy, scores = walk
    noisy, scores = noisy.copy(), scores.copy()
    noisy[60:70, 5] = 0.0  # garbage while the shoulder is missing
    scores[60:70, 5] = 0.0
    out = savgol_smooth_track(times, noisy, scores, window_s=0.3, polyorder=2, min_score=0.3)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert rmse(out[60:70, 5], truth[60:70, 5]) < 8.0


def test_fixed_lag_savgol_streams_with_a_fixed_delay(walk):
    times, truth, noisy, scores = walk
    sm = FixedLagSavgol(fps=FPS, window_s=0.3, polyorder=2)
    assert (sm.window, sm.lag) == (9, 4)
    got = []
    for i, t in enumerate(times):
        frame = Poses(
            boxes=np.zeros((1, 4)),
            box_scores=np.ones(1),
            keypoints=noisy[i][None],
            keypoint_scores=scores[i][None],
            track_ids=np.array([7]),
        )
        ready = sm.push(i, frame, t=float(t))
        assert [item for item, _ in ready] == ([i - sm.lag] if i >= sm.lag else [])
        got += ready
    got += sm.flush()
    assert [item for item, _ in got] == list(range(len(times)))
    out = np.stack([p.keypoints[0] for _, p in got])
    np.testing.assert_array_equal(np.stack([p.raw_keypoints[0] for _, p in got]), noisy.astype(np.float32))
    before, after = rmse(noisy, truth), rmse(out, truth)
    log.info("fixed-lag savgol (lag %d frames): RMSE %.2f -> %.2f px", sm.lag, before, after)
    assert after <= 0.7 * before
    offline = savgol_smooth_track(times, noisy, scores, window_s=0.3, polyorder=2)
    np.testing.assert_allclose(out[sm.lag : -sm.lag], offline[sm.lag : -sm.lag], atol=1e-3)


def test_savgol_window_from_seconds():
    t30 = frame_times(2.0, 30.0)
    assert savgol_window_length(t30, 0.3) == 9
    assert savgol_window_length(t30, 0.2) == 7  # 6 frames -> odd
    assert savgol_window_length(t30[:5], 1.0) == 5  # clipped to the track
    assert savgol_window_length(t30[:4], 1.0) == 3
    with pytest.raises(ConfigError):
        savgol_smooth_track(t30, np.zeros((60, 17, 2)), np.ones((60, 17)), window_s=0.0)


def _two_people(t: float, offset: float = 0.0) -> Poses:
    kp = np.stack([WALKER.keypoints(t), WALKER.keypoints(t) + np.array([400.0, 0.0])]) + offset
    return Poses(
        boxes=np.zeros((2, 4)),
        box_scores=np.ones(2),
        keypoints=kp,
        keypoint_scores=np.ones((2, 17)),
        track_ids=np.array([1, 2]),
    )


@pytest.mark.parametrize(
    ("method", "filter_cls"), [("one_euro", OneEuroFilter), ("kalman", KalmanPointFilter)]
)
def test_keypoint_smoother_keeps_state_per_track(method, filter_cls):
    sm = make_smoother(method)
    alone = [filter_cls(), filter_cls()]  # what each person's own filter gives
    rng = np.random.default_rng(1)
    for t in frame_times(1.0, FPS):
        people = _two_people(float(t))
        people.keypoints = people.keypoints + rng.normal(0, 3.0, people.keypoints.shape).astype(np.float32)
        if t > 0.5:  # the order of people in a frame changes; the IDs say who is who
            people = people[[1, 0]]
        out = sm.update(people, t=float(t))
        np.testing.assert_array_equal(out.raw_keypoints, people.keypoints)
        for i, tid in enumerate(people.track_ids):
            expect = alone[tid - 1].filter(people.keypoints[i], float(t), people.keypoint_scores[i] >= 0.3)
            np.testing.assert_allclose(out.keypoints[i], expect, atol=1e-3)
    assert float(np.abs(out.keypoints - out.raw_keypoints).max()) > 0.1  # it does smooth
    assert sm.num_tracks == 2


def test_keypoint_smoother_forgets_old_tracks_and_none_passes_through():
    sm = KeypointSmoother("one_euro", forget_s=0.5)
    sm.update(_two_people(0.0), t=0.0)
    only_one = _two_people(1.0)[[0]]
    sm.update(only_one, t=1.0)
    assert sm.num_tracks == 1
    sm.reset()
    assert sm.num_tracks == 0
    none = make_smoother("none")
    p = _two_people(0.0)
    out = none.update(p, t=0.0)
    np.testing.assert_array_equal(out.keypoints, p.keypoints)
    np.testing.assert_array_equal(out.raw_keypoints, p.keypoints)
    assert len(make_smoother("kalman").update(Poses.empty(), t=0.0)) == 0


def test_smoother_errors_name_the_choices():
    with pytest.raises(ConfigError, match="one_euro, kalman, none"):
        make_smoother("gaussian")
    with pytest.raises(ConfigError, match="min_cutoff"):
        make_smoother("one_euro", cutoff=3.0)
    with pytest.raises(ConfigError):
        make_smoother("one_euro", min_cutoff=-1.0)
    untracked = _two_people(0.0)
    untracked.track_ids = None
    with pytest.raises(ConfigError, match="track_ids"):
        make_smoother("kalman").update(untracked, t=0.0)


def _cv_kalman_1d(zs, ts, valid, *, accel, meas, init_vel, max_predict):
    """The textbook constant-velocity Kalman filter of one coordinate, state (p, v), written out here: white
    acceleration noise ``accel`` px/s^2 (discrete, Q = a^2 [[dt^4/4, dt^3/2], [dt^3/2, dt^2]]), measurement
    noise ``meas`` px, a new filter at (z, 0) with P = diag(meas^2, init_vel^2) on the first valid sample and
    after a gap longer than ``max_predict``; invalid samples are predicted within ``max_predict``, then held."""
    out, x, p, last, prev_t = [], None, None, -np.inf, None
    for z, t, ok in zip(zs, ts, valid, strict=True):
        dt = 0.0 if prev_t is None else t - prev_t
        prev_t = t
        if x is None or (ok and t - last > max_predict):
            if ok:
                x, p, last = np.array([z, 0.0]), np.diag([meas**2, init_vel**2]), t
            out.append(z if x is None else x[0])
            continue
        if dt > 0 and t - last <= max_predict:
            f = np.array([[1.0, dt], [0.0, 1.0]])
            q = accel**2 * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]])
            x, p = f @ x, f @ p @ f.T + q
        if ok:
            s = p[0, 0] + meas**2
            k = p[:, 0] / s
            x = x + k * (z - x[0])
            p = p - np.outer(k, p[0, :])
            last = t
        out.append(x[0])
    return np.array(out)


def test_kalman_point_filter_equals_the_textbook_filter():
    times = frame_times(2.0, 30.0, jitter=0.6, seed=3)
    _, noisy, _ = noisy_track(times, noise=5.0, seed=3)
    valid = np.ones(noisy.shape[:2], bool)
    valid[20:25, 9] = False  # a wrist unseen for 5 frames (predicted), then seen again
    valid[30:45, 0] = False  # the nose unseen for 0.5 s: held, then a new filter (while the others go on)
    args = {"accel": 400.0, "meas": 4.0, "init_vel": 250.0, "max_predict": 0.25}
    f = KalmanPointFilter(accel_std=400.0, meas_std=4.0, init_vel_std=250.0, max_predict_s=0.25)
    got = np.array([f.filter(x, t, v) for x, t, v in zip(noisy, times, valid, strict=True)])
    for j in range(17):
        for c in range(2):
            want = _cv_kalman_1d(noisy[:, j, c], times, valid[:, j], **args)
            np.testing.assert_allclose(
                got[:, j, c], want, rtol=0, atol=1e-6, err_msg=f"keypoint {j} axis {c}"
            )
    with pytest.raises(ConfigError, match="init_vel_std"):
        KalmanPointFilter(init_vel_std=0.0)


def test_one_euro_without_a_valid_mask_takes_every_point():
    times = frame_times(1.0, 30.0)
    _, noisy, _ = noisy_track(times, noise=4.0, seed=5)
    a, b = OneEuroFilter(), OneEuroFilter()
    for x, t in zip(noisy, times, strict=True):
        np.testing.assert_array_equal(a.filter(x, t), b.filter(x, t, np.ones(len(x), bool)))


def test_one_euro_late_first_sight_and_a_repeated_time_stay_finite():
    times = frame_times(1.0, 30.0)
    _, noisy, _ = noisy_track(times, noise=4.0, seed=6)
    valid = np.ones(noisy.shape[:2], bool)
    valid[:5, 3] = False  # an ear first seen on frame 5
    f = OneEuroFilter()
    out = [f.filter(x, t, v) for x, t, v in zip(noisy, times, valid, strict=True)]
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[5][3], noisy[5, 3])  # taken as it is when first seen
    again = f.filter(noisy[-1] + 50.0, times[-1], None)  # the same time again: no speed to compute
    assert np.isfinite(again).all()
    np.testing.assert_array_equal(again, out[-1])  # nothing moves in no time


def test_smoother_default_and_parameter_errors():
    assert KeypointSmoother().method == "one_euro"
    with pytest.raises(ConfigError, match="beta"):
        OneEuroFilter(beta=-0.1)
    accepted = "accepted: min_cutoff, beta, d_cutoff, min_score, forget_s"
    with pytest.raises(ConfigError, match=rf"unknown parameter\(s\) gain; {accepted}"):
        KeypointSmoother("one_euro", gain=2.0)
