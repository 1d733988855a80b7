"""The agent's control socket (root only): live status and index lookups for `ovnmeta`.

Separate from the metadata socket so nothing a VM can reach exposes agent internals. It is
served by the metadata socket's own HTTP server and read with the standard library's
client: no web framework in the agent (aiohttp was 8 MiB of the agent's memory, measured
with scripts/bench_worker_memory.py --workers 0, and more pages unshared from its workers).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from urllib.parse import parse_qs, urlsplit

from ovnmeta.core.portindex import BadAddress, PortIndex
from ovnmeta.proxy.httpserver import Request, Response, Server

CONTROL_SOCKET = "control.sock"


def json_response(body: object, status: int = 200) -> Response:
    return Response(status, [("Content-Type", "application/json; charset=utf-8")],
                    json.dumps(body, default=str).encode())


Route = Callable[[dict[str, str]], Awaitable[Response]]


def make_app(status: Callable[[], dict], index: Callable[[], PortIndex]
             ) -> Callable[[Request], Awaitable[Response]]:
    """The control socket's handler: GET /status, /lookup?network=&ip=, /memory?top=."""
    async def get_status(query: dict[str, str]) -> Response:
        return json_response(status())

    async def lookup(query: dict[str, str]) -> Response:
        network, ip = query.get("network", ""), query.get("ip", "")
        try:
            inst = index().lookup(network, ip)
        except BadAddress as exc:
            return json_response({"error": str(exc)}, 400)
        if inst is None:
            return json_response({"error": f"no VM port bound here with IP {ip} on "
                                           f"network {network}"}, 404)
        return json_response(asdict(inst))

    async def memory(query: dict[str, str]) -> Response:
        try:
            top = int(query.get("top", "30"))
        except ValueError:
            return json_response({"error": "top must be a number"}, 400)
        return json_response(await asyncio.get_running_loop().run_in_executor(
            None, allocations, top))

    routes: dict[str, Route] = {"/status": get_status, "/lookup": lookup, "/memory": memory}

    async def handle(request: Request) -> Response:
        route = routes.get(request.path)
        if route is None:
            return json_response({"error": f"no such path: {request.path}"}, 404)
        if request.method not in ("GET", "HEAD"):
            return Response(405, [("Allow", "GET, HEAD")], b"")
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path_qs).query).items()}
        return await route(query)
    return handle


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


async def serve(app: Callable[[Request], Awaitable[Response]], sock: socket.socket,
                stop: asyncio.Event) -> None:
    server = Server(app, keepalive=30)
    await server.start(sock, backlog=16)
    try:
        await stop.wait()
    finally:
        await server.close(grace=2)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("ovnmeta", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def request(path: str, url_path: str, timeout: float = 5.0) -> tuple[int, dict]:
    """A blocking client for the CLI: (HTTP status, JSON body)."""
    conn = _UnixConnection(path, timeout)
    try:
        conn.request("GET", url_path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()
