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
    if uvloop is not None:
        return uvloop.run(main)
    return asyncio.run(main)
