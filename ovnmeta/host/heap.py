"""The process's C heap: hand freed pages back to the kernel.

glibc keeps the pages of freed blocks for reuse, so RSS stays at the high-water mark of
whatever once lived there (python-ovs's row JSON, a burst of requests) and creeps up as the
heap fragments. malloc_trim(0) returns every whole free page, in the middle of the heap
too. Elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    try:   # the interpreter's own symbols, libc's among them (no ldconfig lookup)
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):   # not glibc
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_TRIM = _malloc_trim()
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE_KIB


def trim() -> tuple[int, int, float]:
    """Return free heap pages to the kernel: (RSS KiB before, after, seconds taken)."""
    before, started = rss_kib(), time.monotonic()
    if _TRIM is not None:
        _TRIM(0)
    return before, rss_kib(), time.monotonic() - started


async def keep_trimmed(stopped: asyncio.Event, every: float = 60.0, first: float = 5.0
                       ) -> None:
    """trim() `first` seconds from now (start-up's garbage), then every `every` seconds
    until stopped; in an executor thread, so requests go on meanwhile (ctypes lets go of
    the GIL)."""
    loop = asyncio.get_running_loop()
    wait = first
    while True:
        try:
            await asyncio.wait_for(stopped.wait(), wait)
            return
        except asyncio.TimeoutError:
            pass
        before, after, took = await loop.run_in_executor(None, trim)
        LOG.debug("heap trimmed: RSS %d -> %d KiB in %.1f ms", before, after, took * 1000)
        wait = every
