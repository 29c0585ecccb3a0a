"""Scenes of people in coloured shirts for the identity tests: frames rendered with plain rectangles (shirt,
trousers, head) and COCO keypoints whose torso quad lies on the shirt. Pixels: x right, y down."""

from __future__ import annotations

import numpy as np

W, H, FPS = 320, 240, 10.0
SHIRTS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 170, 60)}


def person(x: float) -> tuple[list[float], np.ndarray]:
    """Box and COCO keypoints (torso quad at the shirt's corners) of a person centred at column ``x``."""
    x0, y0, x1, y1 = x - 20, 60, x + 20, 200
    k = np.zeros((17, 2), np.float32)
    k[:, 0], k[:, 1] = x, np.linspace(y0 + 5, y1 - 5, 17)
    k[5], k[6], k[11], k[12] = (x0 + 2, y0 + 22), (x1 - 2, y0 + 22), (x0 + 4, y0 + 78), (x1 - 4, y0 + 78)
    return [x0, y0, x1, y1], k


def render(people: list[tuple[str, float]]) -> np.ndarray:
    """A frame with the people drawn in order (the last in front)."""
    img = np.full((H, W, 3), 128, np.uint8)
    for shirt, x in people:
        (x0, y0, x1, y1), _ = person(x)
        x0, x1 = int(x0), int(x1)
        img[y0 + 20 : y0 + 80, x0:x1] = SHIRTS[shirt]
        img[y0 + 80 : y1, x0 + 5 : x1 - 5] = (40, 40, 40)
        img[y0 : y0 + 20, x0 + 10 : x1 - 10] = (220, 170, 140)
    return img


def occlusion_scene() -> list[list[tuple[int, str, float]]]:
    """Red walks, is hidden on frames 12-29 and comes back as track 3; green appears on frame 30 far away
    (track 4); blue walks throughout (track 2). Per frame ``(track id, shirt, x)``."""
    frames = []
    for f in range(45):
        people = [(2, "blue", 290 - 2 * f)]
        if f < 12 or f >= 30:
            people.append((1 if f < 12 else 3, "red", 30 + 3 * f))
        if f >= 30:
            people.append((4, "green", 40))
        frames.append(people)
    return frames


def hand_over_scene() -> list[list[tuple[int, str, float]]]:
    """Track 1 follows red until red leaves on frame 15, then takes green who enters at the same place."""
    return [[(1, "red" if f < 15 else "green", 100 + 2 * f)] for f in range(30)]
