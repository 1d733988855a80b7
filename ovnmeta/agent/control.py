"""The agent's control socket (root only): live status and index lookups for `ovnmeta`.

Separate from the metadata socket so nothing a VM can reach exposes agent internals.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict

import aiohttp
from aiohttp import web

from ovnmeta.core.portindex import BadAddress, PortIndex

CONTROL_SOCKET = "control.sock"


def make_app(status: Callable[[], dict], index: Callable[[], PortIndex]) -> web.Application:
    async def get_status(request: web.Request) -> web.Response:
        return web.json_response(status(), dumps=lambda o: json.dumps(o, default=str))

    async def lookup(request: web.Request) -> web.Response:
        network, ip = request.query.get("network", ""), request.query.get("ip", "")
        try:
            inst = index().lookup(network, ip)
        except BadAddress as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if inst is None:
            return web.json_response({"error": f"no VM port bound here with IP {ip} on "
                                               f"network {network}"}, status=404)
        return web.json_response(asdict(inst))

    async def memory(request: web.Request) -> web.Response:
        top = int(request.query.get("top", "30"))
        return web.json_response(await asyncio.get_running_loop().run_in_executor(
            None, allocations, top))

    app = web.Application()
    app.router.add_get("/status", get_status)
    app.router.add_get("/lookup", lookup)
    app.router.add_get("/memory", memory)
    return app


def allocations(top: int = 30) -> dict:
    """Where the agent's Python memory is, by line: to tell a leak from a high-water mark
    (an agent started with PYTHONTRACEMALLOC=1; tracing costs memory and CPU)."""
    if not tracemalloc.is_tracing():
        return {"tracing": False,
                "hint": "start ovnmeta-agent with PYTHONTRACEMALLOC=1 to trace allocations"}
    current, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    # PYTHONTRACEMALLOC=N > 1 keeps N frames: the lines are then whole stacks, most recent
    # frame first, which tells who holds what a library line allocated.
    by = "traceback" if tracemalloc.get_traceback_limit() > 1 else "lineno"
    return {"tracing": True, "traced_kib": current // 1024, "peak_kib": peak // 1024,
            "top": [{"where": " < ".join(str(frame) for frame in reversed(stat.traceback)),
                     "kib": round(stat.size / 1024, 1), "count": stat.count}
                    for stat in snapshot.statistics(by)[:top]]}


async def serve(app: web.Application, sock: socket.socket, stop: asyncio.Event) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def request(path: str, url_path: str, timeout: float = 5.0) -> tuple[int, dict]:
    """A blocking client for the CLI: (HTTP status, JSON body)."""
    async def get() -> tuple[int, dict]:
        connector = aiohttp.UnixConnector(path=path)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.get(f"http://ovnmeta{url_path}") as resp:
                return resp.status, await resp.json()
    return asyncio.run(get())
