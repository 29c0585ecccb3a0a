"""Render a synthetic clip frame by frame: :func:`generate` yields :class:`SynthFrame` with exact ground truth."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from hrstream.errors import ConfigError
from hrstream.synth.body import pose_body
from hrstream.synth.config import SynthConfig, SynthFrame
from hrstream.synth.motion import Camera, World
from hrstream.synth.render import (
    CameraNoise,
    draw_person,
    keypoint_visibility,
    make_background,
    make_look,
    person_extent,
)

__all__ = ["generate"]

log = logging.getLogger(__name__)
_MAX_ID = 4095  # track_id * 16 + part must fit the uint16 code map


def generate(config: SynthConfig) -> Iterator[SynthFrame]:
    """Render ``config.total_frames`` frames; the same config yields identical frames and truth.

    Each frame lists the people with at least one visible pixel (all people in the world when
    ``config.include_hidden``), nearest last. See :class:`SynthFrame` for shapes and conventions.
    """
    seeds = np.random.SeedSequence(int(config.seed)).spawn(4)
    rng_scene, rng_world, rng_noise, rng_look = (np.random.default_rng(s) for s in seeds)
    w, h = int(config.width), int(config.height)
    hmin, hmax = config.person_height
    cam = Camera(w, h, hmin * h, hmax * h)
    lo, hi = config.people_range
    n_people = int(rng_scene.integers(lo, hi + 1))
    background = make_background(rng_scene, w, h)
    world = World(
        cam,
        rng_world,
        people=n_people,
        motions=tuple(config.motions),
        enter_leave=config.enter_leave,
        make_look=lambda _rng: make_look(rng_look),
    )
    camera_noise = CameraNoise(rng_noise, w, h, config.noise_sigma, config.blur_sigma)
    dt = 1.0 / float(config.fps)
    code = np.zeros((h, w), np.uint16)
    for i in range(config.total_frames):
        t = i * dt
        walkers = world.step(dt if i else 0.0, t)
        if world.next_id > _MAX_ID:
            raise ConfigError(
                f"synthetic clip needs more than {_MAX_ID} identities; shorten it or set enter_leave=False"
            )
        img = background.copy()
        code.fill(0)
        bodies = []
        for wk in walkers:  # far to near
            u, feet, hpx = cam.to_pixels(wk.x, wk.z, wk.height_m)
            body = pose_body(wk.angles, wk.yaw, (u, feet), hpx)
            draw_person(img, code, body, wk.look, wk.track_id)
            bodies.append((wk.track_id, body))
        inst = code >> 4
        kps, vis, boxes, ids, areas = [], [], [], [], []
        for tid, body in bodies:
            x0, y0, x1, y1 = person_extent(body, w, h)
            area, box = 0, None
            if x1 > x0 and y1 > y0:
                sub = inst[y0:y1, x0:x1] == tid
                area = int(np.count_nonzero(sub))
                if area:
                    cols = np.flatnonzero(sub.any(0))
                    rows = np.flatnonzero(sub.any(1))
                    box = [x0 + cols[0] - 0.5, y0 + rows[0] - 0.5, x0 + cols[-1] + 0.5, y0 + rows[-1] + 0.5]
            if area == 0 and not config.include_hidden:
                continue
            if box is None:
                j = body.joints
                box = [j[:, 0].min(), j[:, 1].min(), j[:, 0].max(), j[:, 1].max()]
            kps.append(body.joints)
            vis.append(keypoint_visibility(code, body, tid))
            boxes.append(box)
            ids.append(tid)
            areas.append(area)
        image = camera_noise(img)
        n = len(ids)
        yield SynthFrame(
            index=i,
            t=t,
            image=image,
            keypoints=np.asarray(kps, np.float32).reshape(n, 17, 2),
            visibility=np.asarray(vis, np.uint8).reshape(n, 17),
            boxes=np.asarray(boxes, np.float32).reshape(n, 4),
            track_ids=np.asarray(ids, np.int64),
            areas=np.asarray(areas, np.int64),
            instance_mask=inst.astype(np.uint16),
        )
