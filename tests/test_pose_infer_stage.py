"""The inference stage keeps a batch in flight: batch k+1 is cropped and submitted before batch k's heatmaps
are decoded; results come out in order, equal to the synchronous estimator's, and a marker or an idle input
flushes them."""

from __future__ import annotations

import numpy as np
from support.tiny_models import tiny_pose_model

from hrstream.models import from_config, load_weights
from hrstream.pipeline.estimators import InferStage
from hrstream.pose import TopDownEstimator
from hrstream.pose.topdown import TopDownPose
from hrstream.runtime import InferenceEngine
from hrstream.runtime.markers import SourceEnded
from hrstream.types import Detections, Frame, FrameResult


def _batches(seed: int = 0) -> list[list[FrameResult]]:
    rng = np.random.default_rng(seed)
    out = []
    for b, people in enumerate([[2, 0, 1], [3], [0, 0], [1, 2]]):  # frames with none need no crop
        batch = []
        for i, n in enumerate(people):
            img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            x0 = rng.uniform(0, 80, n)
            boxes = np.stack([x0, x0 * 0.3, x0 + 60, x0 * 0.3 + 100], 1) if n else np.zeros((0, 4))
            frame = Frame("s", 10 * b + i, (10 * b + i) / 30, img)
            batch.append(FrameResult(frame, detections=Detections(boxes, np.full(n, 0.9))))
        out.append(batch)
    return out


def test_one_batch_in_flight_in_order_and_equal_to_the_synchronous_estimator(tmp_path):
    tiny = tiny_pose_model(tmp_path)
    model = from_config(str(tiny.config))
    load_weights(model, str(tiny.weights))
    engine = InferenceEngine(model, device="cpu", amp="off")
    est = TopDownEstimator(
        lambda x: engine.infer(x, normalized=True), input_size=(96, 128), flip_test=True, max_batch=4
    )
    stage = InferStage(TopDownPose(est), engine, timing="infer", depth=1)
    batches = _batches()
    emitted = [list(stage.process(batch)) for batch in batches[:3]]
    assert [len(e) for e in emitted] == [0, 3, 1]  # batch k comes out when batch k+1 went in
    flushed = list(stage.on_marker(SourceEnded("s", "ended")))  # a marker: what is in flight goes first
    assert [r.frame.index for r in flushed] == [20, 21]
    emitted.append(flushed)
    assert list(stage.process(batches[3])) == []
    idle = list(stage.idle())  # nothing came in for a while (a camera stalled): the batch in flight goes out
    assert [r.frame.index for r in idle] == [30, 31] and list(stage.finish()) == []
    emitted.append(idle)
    got = [r for e in emitted for r in e]
    assert [r.frame.index for r in got] == [r.frame.index for b in batches for r in b]
    assert [r.batch for r in got] == [0, 0, 0, 1, 2, 2, 3, 3]
    for batch in batches:
        ref = est.estimate([r.frame.image for r in batch], [r.detections.boxes for r in batch])
        for r, p in zip(batch, ref, strict=True):
            assert len(r.poses) == len(p)
            np.testing.assert_array_equal(r.poses.keypoints, p.keypoints)
            np.testing.assert_array_equal(r.poses.keypoint_scores, p.keypoint_scores)
