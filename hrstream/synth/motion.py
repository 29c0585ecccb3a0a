"""People moving on a ground plane in front of a fixed camera: walking, turning, waving, entering, leaving.

World: ``X`` metres to screen right, ``Z`` metres from the camera (depth). A person of standing height
``Hm`` at depth ``Z`` is ``f * Hm / Z`` pixels tall with the soles at ``y = horizon + r * f * 1.7 / Z``, so
near people are large and low in the frame. Heading ``alpha``: 0 walks toward the camera, +pi/2 to screen
right, pi away. Everything random comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hrstream.synth.body import PoseAngles, walking_angles

__all__ = ["Camera", "Walker", "World"]

_REF_H = 1.7  # metres: the reference person height used for the ground plane


@dataclass(frozen=True)
class Camera:
    """Maps world metres to pixels for a frame of ``width x height`` and person heights ``(hmin, hmax)`` px."""

    width: int
    height: int
    hmin: float
    hmax: float
    z_near: float = 2.5

    @property
    def focal(self) -> float:
        return self.hmax * self.z_near / _REF_H

    @property
    def z_far(self) -> float:
        return self.focal * _REF_H / self.hmin

    @property
    def ratio(self) -> float:
        return 0.55

    @property
    def horizon(self) -> float:
        return 0.62 * self.height - self.ratio * self.hmin

    def to_pixels(self, x: float, z: float, height_m: float) -> tuple[float, float, float]:
        """``(u, feet_y, height_px)`` of a person standing at ``(x, z)``."""
        f = self.focal
        return self.width / 2 + f * x / z, self.horizon + self.ratio * f * _REF_H / z, f * height_m / z

    def half_view_m(self, z: float) -> float:
        """Half the visible width in metres at depth ``z``."""
        return (self.width / 2) * z / self.focal


@dataclass
class Walker:
    """One person's state. ``mode`` is ``walk``, ``turn`` or ``wave``; ``timer`` counts down the mode."""

    track_id: int
    x: float
    z: float
    alpha: float
    yaw: float
    height_m: float
    cruise: float
    speed: float
    phase: float
    look: dict
    mode: str = "walk"
    timer: float = 2.0
    target_alpha: float = 0.0
    wave_side: int = 1
    wave_t: float = 0.0
    head_yaw: float = 0.0
    entered: bool = False
    age: float = 0.0
    angles: PoseAngles = field(default_factory=PoseAngles)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class World:
    """The people in view of a :class:`Camera`, advanced one frame at a time by :meth:`step`."""

    def __init__(self, camera: Camera, rng: np.random.Generator, *, people: int, motions: tuple[str, ...],
                 enter_leave: bool, make_look) -> None:  # fmt: skip
        self.cam = camera
        self.rng = rng
        self.target = people
        self.motions = motions
        self.enter_leave = enter_leave
        self.make_look = make_look
        self.walkers: list[Walker] = []
        self.next_id = 1
        self.spawn_wait = 0.0
        for _ in range(people):
            self.walkers.append(self._spawn(inside=True))

    def _spawn(self, inside: bool) -> Walker:
        rng, cam = self.rng, self.cam
        # depth uniform in pixel height, so small and large people are equally common
        h_px = rng.uniform(cam.hmin, cam.hmax)
        z = cam.focal * _REF_H / h_px
        half = cam.half_view_m(z)
        height_m = _REF_H * rng.uniform(0.88, 1.1)
        lateral = rng.random() < 0.8
        if inside:
            x = rng.uniform(-0.85, 0.85) * half
            if lateral:
                alpha = (math.pi / 2 if rng.random() < 0.5 else -math.pi / 2) + rng.normal(0, 0.35)
            else:
                alpha = (0.0 if rng.random() < 0.5 else math.pi) + rng.normal(0, 0.4)
        else:
            side = 1.0 if rng.random() < 0.5 else -1.0
            x = side * (half + 0.45 * height_m)
            alpha = -side * math.pi / 2 + rng.normal(0, 0.3)
        cruise = rng.uniform(0.9, 1.6)
        w = Walker(
            track_id=self.next_id, x=x, z=z, alpha=_wrap(alpha), yaw=_wrap(alpha), height_m=height_m,
            cruise=cruise, speed=cruise, phase=rng.uniform(0, 2 * math.pi), look=self.make_look(rng),
            timer=rng.uniform(1.0, 3.0), head_yaw=0.0, entered=inside,
        )  # fmt: skip
        self.next_id += 1
        return w

    def _choose_mode(self, w: Walker) -> None:
        rng = self.rng
        options = ["walk"] + [m for m in self.motions if m != "walk"]
        mode = options[int(rng.integers(len(options)))] if w.entered else "walk"  # no stunts off-screen
        w.mode = mode
        if mode == "turn":
            w.target_alpha = _wrap(w.alpha + rng.choice([-1, 1]) * rng.uniform(0.6, math.pi))
            w.timer = rng.uniform(0.8, 1.6)
        elif mode == "wave":
            w.wave_side = int(rng.choice([0, 1]))
            w.wave_t = 0.0
            w.timer = rng.uniform(1.5, 3.0)
        else:
            w.timer = rng.uniform(1.5, 4.0)

    def _update(self, w: Walker, dt: float, t: float) -> None:
        cam = self.cam
        w.timer -= dt
        w.age += dt
        if w.timer <= 0:
            if w.mode != "walk":
                w.mode, w.timer = "walk", self.rng.uniform(1.5, 4.0)
            else:
                self._choose_mode(w)
        if w.z < cam.z_near * 1.05 and math.cos(w.alpha) > 0.2:  # too near: head back
            w.mode, w.target_alpha, w.timer = "turn", _wrap(math.pi - w.alpha), 1.2
        if w.z > cam.z_far * 0.95 and math.cos(w.alpha) < -0.2:  # too far: come back
            w.mode, w.target_alpha, w.timer = "turn", _wrap(math.pi - w.alpha), 1.2
        target_speed = w.cruise
        target_yaw = w.alpha
        if w.mode == "turn":
            w.alpha += float(np.clip(_wrap(w.target_alpha - w.alpha), -2.5 * dt, 2.5 * dt))
            target_speed, target_yaw = 0.35 * w.cruise, w.alpha
        elif w.mode == "wave":
            target_speed, target_yaw = 0.0, 0.25 * math.sin(0.7 * t + w.track_id)
            w.wave_t += dt
        w.speed += float(np.clip(target_speed - w.speed, -2.5 * dt, 2.5 * dt))
        w.yaw = _wrap(w.yaw + float(np.clip(_wrap(target_yaw - w.yaw), -3.0 * dt, 3.0 * dt)))
        w.x += w.speed * math.sin(w.alpha) * dt
        w.z = float(np.clip(w.z - w.speed * math.cos(w.alpha) * dt, cam.z_near, cam.z_far))
        stride = 1.35 * w.height_m / _REF_H
        w.phase += 2 * math.pi * w.speed / stride * dt
        w.head_yaw = 0.35 * math.sin(0.45 * t + 1.7 * w.track_id) * (w.mode != "wave")
        a = walking_angles(w.phase, w.speed / 1.2, t)
        if w.mode == "wave":
            k = w.wave_side
            raise_ = min(1.0, w.wave_t / 0.5) * min(1.0, max(0.0, w.timer) / 0.4)
            abd = list(a.abduction)
            abd[k] = 0.08 + raise_ * 2.1
            sh = list(a.shoulder)
            sh[k] = 0.15 * raise_
            el = list(a.elbow)
            el[k] = 0.1
            fabd = list(abd)
            fabd[k] = abd[k] + raise_ * (0.55 + 0.45 * math.sin(2 * math.pi * 1.8 * w.wave_t))
            a = PoseAngles(hip=a.hip, knee=a.knee, shoulder=tuple(sh), abduction=tuple(abd), elbow=tuple(el),
                           forearm_abduction=tuple(fabd), bob=a.bob)  # fmt: skip
        a.head_yaw = w.head_yaw
        w.angles = a

    def _outside(self, w: Walker) -> bool:
        half = self.cam.half_view_m(w.z) + 0.5 * w.height_m
        return abs(w.x) > half

    def step(self, dt: float, t: float) -> list[Walker]:
        """Advance everyone by ``dt`` seconds (``t`` is the new time) and return the walkers, far first."""
        keep = []
        for w in self.walkers:
            self._update(w, dt, t)
            out = self._outside(w)
            if not out:
                w.entered = True
            moving_out = w.x * math.sin(w.alpha) > 0
            if not w.entered and w.age > 10.0:  # never came into view: give up on it
                continue
            if out and w.entered and moving_out:
                if self.enter_leave:
                    continue  # left the frame: this identity is gone
                w.alpha = _wrap(-w.alpha)  # cannot leave: turn around at the edge
                w.mode, w.target_alpha, w.timer = "turn", w.alpha, 1.0
            keep.append(w)
        self.walkers = keep
        if self.enter_leave and len(self.walkers) < self.target:
            self.spawn_wait -= dt
            if self.spawn_wait <= 0:
                self.walkers.append(self._spawn(inside=False))
                self.spawn_wait = self.rng.uniform(0.3, 2.0)
        return sorted(self.walkers, key=lambda w: -w.z)
