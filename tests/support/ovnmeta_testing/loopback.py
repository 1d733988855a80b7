"""The proxy's HTTP server on a loopback TCP port, for unit tests that speak real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ovnmeta.proxy.httpserver import Server


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[tuple[str, int]]:
    """(host, port) while `server` listens there."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    await server.start(sock)
    try:
        yield sock.getsockname()[:2]
    finally:
        await server.close(grace=1)
