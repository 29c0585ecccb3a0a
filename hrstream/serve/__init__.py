"""``hrstream serve``: a long-running service for camera walls (sources that come and go, a live view, events).

Needs the ``serve`` extra (``pip install 'hrstream[serve]'``: FastAPI, uvicorn, paho-mqtt).
"""

from __future__ import annotations

__all__: list[str] = []
