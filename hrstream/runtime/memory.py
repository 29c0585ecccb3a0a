"""The C heap of a long run: glibc's malloc arenas capped so that resident memory stays flat for days.

glibc gives each thread that meets a locked arena a new one (up to 8 per core): a run with a decode thread per
camera, the stages' threads and torch's workers grows arenas that fragment and are seldom returned, which a
soak sees as resident memory growing about 2 MB a minute while Python's own memory is flat. With two arenas the
same soak held flat from its third minute (``docs/performance.md``, "Live soak"). The cap is what
``MALLOC_ARENA_MAX=2`` sets; a ``MALLOC_ARENA_MAX`` in the environment is left as the user set it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["MALLOC_ARENAS", "limit_malloc_arenas"]

log = logging.getLogger(__name__)

#: Arenas a run's process keeps (glibc's ``M_ARENA_MAX``).
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number
_done = False


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas of this process at ``arenas`` (once per process; arenas made before stay).

    Returns True when the cap was set; False on another C library, or when ``MALLOC_ARENA_MAX`` is in the
    environment (glibc read it at start-up).
    """
    global _done
    if _done or not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: the C library it runs on
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = mallopt(_M_ARENA_MAX, int(arenas)) == 1
    log.debug("malloc arenas capped at %d: %s", arenas, _done)
    return _done
