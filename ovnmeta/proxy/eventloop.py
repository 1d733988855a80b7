"""The event loop the agent and its workers serve on: uvloop (libuv, in C) when installed,
which takes a share of the per-request cost off the proxy's one core; asyncio's own else."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a pinned dependency
    uvloop = None


def name() -> str:
    return "uvloop" if uvloop is not None else "asyncio"


def run(main: Coroutine[Any, Any, Any]) -> Any:
    # asyncio.Runner with uvloop's factory, not uvloop.run(): that came in uvloop 0.18, and
    # Debian 12 ships 0.17.
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
