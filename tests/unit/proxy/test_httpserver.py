"""The metadata socket's HTTP server over real loopback TCP, fed raw bytes as a hostile or
broken client writes them."""

from __future__ import annotations

import asyncio
import logging
import re

from ovnmeta.proxy import httpserver
from ovnmeta.proxy.httpserver import Request, Response, Server
from ovnmeta_testing.loopback import serving


async def _echo(request: Request) -> Response:
    await asyncio.sleep(0.01 if request.path == "/slow" else 0)
    return Response(200, [("X-Path", request.path_qs)],
                    f"{request.method} {request.path_qs} {len(request.body)}".encode())


def _exchange(raw: bytes, server: Server | None = None, read_for: float = 2.0) -> bytes:
    async def main() -> bytes:
        async with serving(server or Server(_echo, max_body=100)) as (host, port):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            await writer.drain()
            chunks = []
            try:
                async with asyncio.timeout(read_for):
                    while data := await reader.read(65536):
                        chunks.append(data)
            except TimeoutError:
                pass
            writer.close()
            return b"".join(chunks)
    return asyncio.run(main())


def _statuses(data: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    raw = (b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
           b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = _exchange(raw)
    assert _statuses(data) == [200, 200, 200]
    assert data.index(b"GET /slow 0") < data.index(b"POST /b?q=1 3") < data.index(b"GET /c 0")
    assert data.rstrip().endswith(b"GET /c 0") and b"Connection: close" in data


def test_head_gets_the_length_without_the_body() -> None:
    data = _exchange(b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 9\r\n" in data
    assert data.endswith(b"\r\n\r\n")


def test_limits_and_bad_http_get_an_answer_and_a_close_never_a_traceback(caplog) -> None:
    with caplog.at_level(logging.INFO):
        assert _statuses(_exchange(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"
                                   + b"x" * 101)) == [413]
        big = b"X-A: " + b"a" * (httpserver.MAX_HEAD + 1) + b"\r\n"
        assert _statuses(_exchange(b"GET / HTTP/1.1\r\n" + big + b"\r\n")) == [431]
        assert _statuses(_exchange(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")) == [400]
        assert _statuses(_exchange(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")) == [400]
        # Answered before the bad one, then closed.
        data = _exchange(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP\r\n\r\n")
        assert _statuses(data) == [200, 400]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert any("bad HTTP from a client" in r.getMessage() for r in caplog.records)


def test_a_client_that_hangs_up_mid_request_costs_nothing_but_its_connection(caplog) -> None:
    async def main() -> int:
        server = Server(_echo)
        async with serving(server) as (host, port):
            for raw in (b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHos"):
                _, writer = await asyncio.open_connection(host, port)
                writer.write(raw)
                await writer.drain()
                writer.close()
            await asyncio.sleep(0.1)
            return len(server.connections)
    with caplog.at_level(logging.INFO):
        assert asyncio.run(main()) == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_idle_connections_are_closed_and_refused_peers_always_get_the_refusal() -> None:
    data = _exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Server(_echo, keepalive=0.2),
                     read_for=1.0)
    assert _statuses(data) == [200]  # and the server closed it: reader.read() returned b""
    refused = Server(_echo, admit=lambda transport: httpserver.text(403, "no"))
    assert _statuses(_exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                               refused)) == [403, 403]


def test_starting_keeps_the_queue_that_built_up_before_it(tmp_path) -> None:
    """A restarted agent finds its socket's queue full of haproxy's connects, made while its
    keeper held the socket. Starting to serve must not shrink the backlog under that queue:
    the next connect would fail, and haproxy answer 503."""
    import socket

    from ovnmeta.agent.listener import bind_socket

    async def run() -> list[str]:
        path = str(tmp_path / "s")
        sock = bind_socket(path, 0o600, backlog=1024)
        waiting = []
        for _ in range(300):   # queued while nobody accepts
            c = socket.socket(socket.AF_UNIX)
            c.connect(path)
            waiting.append(c)
        server = Server(_echo)
        await server.start(sock, backlog=1024)
        late = socket.socket(socket.AF_UNIX)
        late.setblocking(False)
        outcome = []
        try:
            late.connect(path)   # before the loop had a chance to accept the queue
            outcome.append("connected")
        except BlockingIOError:
            outcome.append("refused: backlog full")
        await server.close(grace=0.1)
        for c in [*waiting, late]:
            c.close()
        return outcome

    assert asyncio.run(run()) == ["connected"]
