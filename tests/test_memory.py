"""The C heap of a run: glibc's malloc arenas capped (hrstream.runtime.memory), seen through glibc's own
``malloc_info`` in a child process whose threads allocate at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from support.cli_checks import ROOT, cli_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas")

_CHILD = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    import torch
    from hrstream.runtime.memory import limit_malloc_arenas
    print(limit_malloc_arenas() if sys.argv[1] == "cap" else None)
    torch.set_num_threads(1)
    def work():
        for _ in range(3000):  # torch allocates with the GIL released: threads meet in malloc
            x = torch.empty(64) + 1
            del x
    threads = [threading.Thread(target=work) for _ in range(12)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    path = tempfile.mktemp()
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(f))
    libc.fclose(ctypes.c_void_p(f))
    print(open(path).read().count("<heap nr="))
    os.unlink(path)
    """
)


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    environ = cli_env(**env)
    if "MALLOC_ARENA_MAX" not in env:
        environ.pop("MALLOC_ARENA_MAX", None)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    capped, heaps = out.stdout.split()
    return capped, int(heaps)


def test_the_arenas_of_a_run_are_capped_at_two() -> None:
    capped, heaps = _arenas("cap")
    assert capped == "True" and heaps <= 2
    _, free = _arenas("free")  # the same threads without the cap: glibc makes an arena for each that waits
    assert free > 2


def test_an_arena_count_set_in_the_environment_is_kept() -> None:
    capped, heaps = _arenas("cap", MALLOC_ARENA_MAX="3")
    assert capped == "False" and heaps <= 3
