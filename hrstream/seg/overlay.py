"""Drawing label maps over frames: a colour blend plus a legend of the classes present."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["colorize", "overlay"]


def _check(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got {labels.shape}")
    pal = np.asarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) == 0:
        raise ValueError(f"palette must be uint8 (C, 3) RGB, got {pal.shape}")
    return pal


def colorize(labels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(colours uint8 (H, W, 3) RGB, valid bool (H, W))``: label ``c`` painted ``palette[c]``.

    Labels outside ``[0, len(palette))`` (such as the ignore label 255) are black and not ``valid``.
    """
    pal = _check(labels, palette)
    lab = labels.astype(np.int64, copy=False)
    valid = (lab >= 0) & (lab < len(pal))
    colours = pal[np.where(valid, lab, 0)]
    colours[~valid] = 0
    return colours, valid


def overlay(
    image_rgb: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    *,
    opacity: float = 0.5,
    legend: bool = True,
    classes: Sequence[str] | None = None,
    max_legend: int = 12,
) -> np.ndarray:
    """A new image: the frame blended with the class colours, and a legend in the top-left corner.

    Args:
        image_rgb: ``uint8 (H, W, 3)`` RGB frame; never modified.
        labels: ``(H, W)`` integer labels at the frame's resolution.
        palette: ``uint8 (C, 3)`` RGB colours; labels without a colour are left as in the frame.
        opacity: weight of the class colour in ``[0, 1]`` (0 = frame only, 1 = colours only).
        legend: draw a swatch and name for each class present (largest area first).
        classes: class names for the legend (default: the label numbers).
        max_legend: most legend entries.

    Returns:
        ``uint8 (H, W, 3)`` RGB.
    """
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image_rgb must be uint8 (H, W, 3), got {image_rgb.dtype}{image_rgb.shape}")
    if labels.shape != image_rgb.shape[:2]:
        raise ValueError(f"labels {labels.shape} must match the image size {image_rgb.shape[:2]}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    colours, valid = colorize(labels, palette)
    blended = cv2.addWeighted(image_rgb, 1.0 - opacity, colours, opacity, 0.0)
    out = image_rgb.copy()
    out[valid] = blended[valid]
    if legend:
        counts = np.bincount(labels[valid].astype(np.int64).ravel(), minlength=len(palette))
        present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0][:max_legend]
        _draw_legend(out, present, np.asarray(palette, np.uint8), classes)
    return out


def _draw_legend(
    img: np.ndarray, present: list[int], palette: np.ndarray, classes: Sequence[str] | None
) -> None:
    """Draw swatches and names of ``present`` labels in the top-left corner of ``img`` (in place)."""
    if not present:
        return
    h, w = img.shape[:2]
    scale = max(0.3, min(1.0, h / 720.0 * 0.6))
    thick = 1 if scale < 0.7 else 2
    (_, text_h), baseline = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    row = text_h + baseline + 4
    swatch = text_h + baseline
    names = [classes[c] if classes is not None and c < len(classes) else str(c) for c in present]
    text_w = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for n in names)
    box_w = min(w, 4 + swatch + 6 + text_w + 4)
    box_h = min(h, 4 + row * len(names))
    # Darken the legend background so the text reads on any frame.
    img[:box_h, :box_w] = (img[:box_h, :box_w].astype(np.float32) * 0.35).astype(np.uint8)
    for i, (c, name) in enumerate(zip(present, names, strict=True)):
        y = 4 + i * row
        if y + swatch > h:
            break
        colour = tuple(int(v) for v in palette[c])
        cv2.rectangle(img, (4, y), (4 + swatch - 1, y + swatch - 1), colour, thickness=-1)
        cv2.putText(
            img,
            name,
            (4 + swatch + 6, y + text_h),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thick,
            cv2.LINE_AA,
        )
