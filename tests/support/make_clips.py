"""Generate the small synthetic clips in tests/data/videos/ (run from the repository root).

    .venv/bin/python tests/support/make_clips.py tests/data/videos

Each clip shows a moving bright square over a gradient, with a red 8x8 marker in the top-left corner of the
*stored* picture (so rotation handling can be checked), and exercises one property:

* ``gen_rot90_160x120.mp4``: H.264 160x120 stored, display matrix "rotate 90 degrees counter-clockwise".
* ``gen_vfr_160x120.mp4``: H.264 with irregular frame intervals (variable frame rate), time base 1/1000.
* ``gen_odd_321x241.mkv``: FFV1 321x241 (odd size, which libx264 cannot encode as is).
* ``gen_audio_64x48.mp4``: H.264 25 fps + AAC mono 16 kHz tone, 1 s.
* ``gen_hevc10_64x48.mkv``: HEVC Main 10 (``yuv420p10le``), 10-bit input.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Frame intervals of the VFR clip in milliseconds (irregular on purpose).
VFR_INTERVALS_MS = [33, 33, 50, 17, 100, 33, 67, 40, 33, 200, 33, 33, 20, 80, 33]


def pattern(width: int, height: int, i: int) -> np.ndarray:
    """uint8 (height, width, 3) RGB test picture number ``i`` with a red marker at the stored top-left."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 1] = (x * 255 // max(1, width - 1)).astype(np.uint8) // 2
    img[..., 2] = (y * 255 // max(1, height - 1)).astype(np.uint8) // 2
    s = max(4, min(width, height) // 5)
    x0 = (i * 7) % max(1, width - s)
    y0 = height // 2 - s // 2
    img[y0 : y0 + s, x0 : x0 + s] = 230
    m = max(2, min(width, height) // 8)
    img[:m, :m] = (255, 0, 0)
    return img


def _video(path: Path, codec: str, width: int, height: int, pts_list: list[int], time_base: Fraction, **kw):
    with av.open(str(path), "w") as c:
        st = c.add_stream(codec, rate=kw.pop("rate", 25))
        st.width, st.height = width, height
        st.pix_fmt = kw.pop("pix_fmt", "yuv420p")
        st.time_base = time_base
        st.codec_context.time_base = time_base
        if "rotation" in kw:
            st.set_display_rotation(kw.pop("rotation"))
        if kw:
            st.options = {k: str(v) for k, v in kw.items()}
        for i, pts in enumerate(pts_list):
            f = av.VideoFrame.from_ndarray(pattern(width, height, i), format="rgb24")
            f.pts, f.time_base = pts, time_base
            for p in st.encode(f):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)


def make_all(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _video(out / "gen_rot90_160x120.mp4", "libx264", 160, 120, list(range(10)), Fraction(1, 25), rotation=90)
    vfr = np.concatenate([[0], np.cumsum(VFR_INTERVALS_MS)]).tolist()
    _video(out / "gen_vfr_160x120.mp4", "libx264", 160, 120, vfr, Fraction(1, 1000), rate=30, bf=0)
    _video(out / "gen_odd_321x241.mkv", "ffv1", 321, 241, list(range(4)), Fraction(1, 25), pix_fmt="yuv420p")
    _video(
        out / "gen_hevc10_64x48.mkv",
        "libx265",
        64,
        48,
        list(range(10)),
        Fraction(1, 25),
        pix_fmt="yuv420p10le",
        **{"x265-params": "log-level=none"},
    )
    with av.open(str(out / "gen_audio_64x48.mp4"), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        for i in range(25):
            f = av.VideoFrame.from_ndarray(pattern(64, 48, i), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        t = np.arange(16000) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for k in range(0, 16000, 1024):
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(tone[:, k : k + 1024]), format="fltp", layout="mono"
            )
            af.sample_rate, af.pts = 16000, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
        for p in v.encode(None):
            c.mux(p)


if __name__ == "__main__":
    make_all(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/videos"))
