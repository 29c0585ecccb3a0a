"""H.264 clips made for live tests from the bundled basketball clip (PyAV, libx264), e.g. a slower camera, a
longer stream, or a camera reconfigured to another resolution."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2

__all__ = ["BASKETBALL", "h264_clip"]

BASKETBALL = Path(__file__).resolve().parents[1] / "data" / "videos" / "basketball_426x240_2997.mp4"


def h264_clip(
    path: Path, *, fps: int, every: int = 1, repeat: int = 1, size: tuple[int, int] | None = None
) -> Path:
    """The basketball clip (29.97 fps, 10 s, 426x240) played ``repeat`` times, keeping every ``every``-th
    frame, resized to ``size`` (w, h; even), as an H.264 MP4 at ``fps`` with exact timestamps."""
    width, height = size or (426, 240)
    with av.open(str(path), "w") as dst:
        s = dst.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = Fraction(1, fps)
        s.options = {"g": str(fps), "bf": "0", "preset": "ultrafast"}
        k = 0
        for _ in range(repeat):
            with av.open(str(BASKETBALL)) as src:
                for i, frame in enumerate(src.decode(video=0)):
                    if i % every:
                        continue
                    img = frame.to_ndarray(format="rgb24")
                    if size is not None:
                        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                    out = av.VideoFrame.from_ndarray(img, format="rgb24")
                    out.pts, out.time_base = k, Fraction(1, fps)
                    k += 1
                    for packet in s.encode(out):
                        dst.mux(packet)
        for packet in s.encode():
            dst.mux(packet)
    return path
