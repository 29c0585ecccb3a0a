"""ProbabilitySmoother: less label flicker on a real clip, exact reset at a scene cut."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from hrstream.seg import CutDetector, ProbabilitySmoother

VIDEOS = Path(__file__).parent / "data" / "videos"
SIZE = (106, 60)  # (w, h) of the probability maps, about the logits size of a 426x240 frame
K = 5


def decode(name: str, n: int, size: tuple[int, int] | None = None) -> tuple[list[np.ndarray], list[float]]:
    """The first ``n`` frames of a clip as RGB arrays (optionally resized to ``size``) and their times."""
    images, times = [], []
    with av.open(str(VIDEOS / name)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            img = frame.to_ndarray(format="rgb24")
            if size is not None:
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            images.append(img)
            times.append(float(frame.pts * stream.time_base))
            if len(images) == n:
                break
    return images, times


def colour_centres(image: np.ndarray) -> np.ndarray:
    """``K`` colour centres of a frame (k-means, fixed seed)."""
    cv2.setRNGSeed(0)
    pixels = image.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centres = cv2.kmeans(pixels, K, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    return centres


def colour_logits(image: np.ndarray, centres: np.ndarray) -> torch.Tensor:
    """A soft colour classifier: logits ``(K, h, w)`` = minus squared distance to each centre, scaled."""
    small = cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    d2 = ((small[None] - centres[:, None, None, :]) ** 2).sum(-1)
    return torch.from_numpy(-d2 / 2000.0)


def label_changes(labels: list[torch.Tensor]) -> float:
    """Mean number of label changes per pixel over the sequence."""
    stack = torch.stack(labels)
    return float((stack[1:] != stack[:-1]).sum(0).to(torch.float32).mean())


@pytest.fixture(scope="module")
def clip() -> tuple[list[np.ndarray], list[float]]:
    return decode("basketball_426x240_2997.mp4", 30)


def test_smoothing_reduces_flicker_on_a_real_clip(clip):
    images, times = clip
    centres = colour_centres(images[0])
    gen = torch.Generator().manual_seed(0)
    smoother = ProbabilitySmoother(0.1)
    clean, raw, smooth = [], [], []
    for img, t in zip(images, times, strict=True):
        logits = colour_logits(img, centres)
        noisy = torch.softmax(logits + 2.0 * torch.randn(logits.shape, generator=gen), dim=0)
        out = smoother.update(noisy, t=t, image=img)
        assert out.shape == noisy.shape
        torch.testing.assert_close(out.sum(0), torch.ones(out.shape[1:]))
        clean.append(logits.argmax(0))
        raw.append(noisy.argmax(0))
        smooth.append(out.argmax(0))
    assert smoother.num_cuts == 0  # one continuous shot
    flicker_raw, flicker_smooth = label_changes(raw), label_changes(smooth)
    assert flicker_raw > 3.0 * label_changes(clean)  # the noise makes the raw labels flicker
    assert flicker_smooth < 0.4 * flicker_raw
    agree_raw = float(np.mean([(r == c).float().mean() for r, c in zip(raw, clean, strict=True)]))
    agree_smooth = float(np.mean([(s == c).float().mean() for s, c in zip(smooth, clean, strict=True)]))
    assert agree_smooth > agree_raw + 0.03  # closer to the noise-free labels despite the lag


def test_output_equals_the_new_frame_after_a_cut(clip):
    first, t_first = clip[0][:10], clip[1][:10]
    second, _ = decode("street_960x540_5fps.mp4", 5, size=(first[0].shape[1], first[0].shape[0]))
    images = first + second
    times = t_first + [t_first[-1] + (i + 1) / 29.97 for i in range(len(second))]
    centres = colour_centres(first[0])
    with_cuts = ProbabilitySmoother(0.5)
    blind = ProbabilitySmoother(0.5)
    for i, (img, t) in enumerate(zip(images, times, strict=True)):
        probs = torch.softmax(colour_logits(img, centres), dim=0)
        out = with_cuts.update(probs, t=t, image=img)
        blended = blind.update(probs, t=t)
        if i == len(first):  # the first frame of the second clip
            assert with_cuts.last_was_reset
            assert torch.equal(out, probs)
            # Without cut detection the old shot leaks into the new one.
            assert (blended.argmax(0) != probs.argmax(0)).float().mean() > 0.05
        elif i > 0:
            assert not with_cuts.last_was_reset
    assert with_cuts.num_cuts == 1


def test_time_constant_is_in_seconds_and_resets():
    p0 = torch.zeros(2, 3, 4)
    p0[0] = 1.0
    p1 = torch.zeros(2, 3, 4)
    p1[1] = 1.0
    for fps in (10.0, 50.0):
        sm = ProbabilitySmoother(0.2)
        sm.update(p0, t=0.0)
        n = round(0.2 * fps)  # one time constant of frames equal to p1
        for k in range(1, n + 1):
            out = sm.update(p1, t=k / fps)
        torch.testing.assert_close(out[1], torch.full((3, 4), 1.0 - math.exp(-1.0)))
    sm = ProbabilitySmoother(0.2)
    sm.update(p0, t=1.0)
    assert torch.equal(sm.update(p1, t=0.5), p1)  # time went backwards: a new stream
    sm.update(p0, t=0.6)
    sm.reset()
    assert torch.equal(sm.update(p1, t=0.7), p1)
    off = ProbabilitySmoother(0.0)
    off.update(p0, t=0.0)
    assert torch.equal(off.update(p1, t=0.04), p1)
    assert torch.equal(p0[0], torch.ones(3, 4))  # inputs are never modified


def test_cut_detector_scores_within_and_across_shots(clip):
    det = CutDetector()
    assert not det.update(clip[0][0])
    assert not det.update(clip[0][1])
    assert det.last_scores[0] < det.mad_threshold
    other, _ = decode("two_people_1080p30.mp4", 1)
    assert det.update(other[0])
    with pytest.raises(ValueError, match="uint8"):
        det.update(np.zeros((4, 4), np.uint8))
