"""The HTTP/1.1 server on the metadata socket: asyncio's transports and the httptools parser
(llhttp, the parser uvicorn and aiohttp use), nothing between them and the proxy.

Its only client is haproxy, over keep-alive connections; a full web framework's routing,
middleware and request objects were half of the agent's CPU per request. What it does:
answers in order on each connection (pipelining), checks the peer's credentials once per
connection, bounds the head (MAX_HEAD) and the body (413), answers bad HTTP with 400 and one
INFO line, closes idle connections, and on close lets the requests in flight finish.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httptools

LOG = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024      # request line and headers; haproxy's own buffer is 16 KiB
MAX_QUEUED = 16           # pipelined requests read ahead of the one being answered
REASONS = {s.value: s.phrase for s in http.HTTPStatus}


@dataclass(frozen=True)
class Request:
    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def path(self) -> str:
        return self.path_qs.split("?", 1)[0]


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def text(status: int, message: str) -> Response:
    return Response(status, [("Content-Type", "text/plain; charset=utf-8")],
                    (message + "\n").encode())


Handler = Callable[[Request], Awaitable[Response]]
# Whether a new connection may be served (its peer's credentials), else every request on
# it gets the Response this returns.
Admit = Callable[[asyncio.Transport], Response | None]


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: collections.deque[tuple[Request | Response, bool, bool]] = \
            collections.deque()
        self._worker: asyncio.Task | None = None
        self._refusal: Response | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._closing = False
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._head = 0

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self._transport = transport
        self._server.connections.add(self)
        if self._server.admit is not None:
            self._refusal = self._server.admit(transport)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._server.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # a limit a callback enforced
            cause = exc.__cause__ or exc.__context__
            if not isinstance(cause, _Refused):
                raise
            LOG.info("refused a request from a client: %d", cause.response.status)
            self._finish_with(cause.response)
        except httptools.HttpParserUpgrade:
            self._finish_with(text(400, "Bad request: protocol upgrades are not served"))
        except httptools.HttpParserError as exc:
            LOG.info("bad HTTP from a client: 400 %s", exc)
            self._finish_with(text(400, "Bad request: malformed HTTP"))

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value))
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        for k, v in self._headers:
            if k.lower() == "expect" and v.strip().lower() == "100-continue":
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._server.max_body:
            raise _Refused(text(413, "Request body too large"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self._parser.should_keep_alive()
        method = self._parser.get_method().decode("latin-1")
        request = Request(method, self._url.decode("latin-1") or "/", self._headers,
                          b"".join(self._body))
        self._enqueue(self._refusal or request, keep_alive, method == "HEAD")

    def _grow_head(self, n: int) -> None:
        self._head += n
        if self._head > MAX_HEAD:
            raise _Refused(text(431, "Request header fields too large"))

    # -- answering --------------------------------------------------------------------------
    def _enqueue(self, item: Request | Response, keep_alive: bool, head: bool) -> None:
        self._queue.append((item, keep_alive, head))
        if len(self._queue) >= MAX_QUEUED:
            self._transport.pause_reading()
        if self._worker is None:
            if self._idle is not None:
                self._idle.cancel()
            self._worker = asyncio.get_running_loop().create_task(self._answer_all())

    def _finish_with(self, response: Response) -> None:
        """Answer what is queued, then this, then close: the stream cannot be trusted."""
        self._enqueue(response, False, False)
        self._closing = True

    async def _answer_all(self) -> None:
        while self._queue:
            item, keep_alive, head = self._queue.popleft()
            if len(self._queue) == MAX_QUEUED - 1 and not self._closing:
                self._transport.resume_reading()
            if isinstance(item, Response):
                response = item
            else:
                try:
                    response = await self._server.handler(item)
                except Exception:  # a bug of ours: one 500 and a traceback, not a dead loop
                    LOG.exception("error answering %s %s", item.method, item.path)
                    response = text(500, "Internal error")
            if self._transport.is_closing():
                break
            keep_alive = keep_alive and not self._server.closing
            self._write(response, keep_alive, head)
            if not keep_alive:
                self._closing = True
                self._transport.close()
                break
        self._worker = None
        self._arm_idle()

    def _write(self, response: Response, keep_alive: bool, head: bool) -> None:
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
        lines += [f"{k}: {v}" for k, v in response.headers]
        lines.append(f"Content-Length: {len(response.body)}")
        if not keep_alive:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._transport.write(data if head else data + response.body)

    def _arm_idle(self) -> None:
        if self._closing or self._transport is None:
            return
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(
            self._server.keepalive, self._expire)

    def _expire(self) -> None:
        """Nothing complete for `keepalive` seconds: idle, or a request trickling in."""
        if self._worker is None and self._transport is not None:
            self._closing = True
            self._transport.close()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def close_when_idle(self) -> None:
        if self._worker is None and self._transport is not None:
            self._closing = True
            self._transport.close()


class Server:
    def __init__(self, handler: Handler, admit: Admit | None = None,
                 keepalive: float = 75.0, max_body: int = 64 * 1024) -> None:
        self.handler = handler
        self.admit = admit
        self.keepalive = keepalive
        self.max_body = max_body
        self.connections: set[_Connection] = set()
        self.closing = False
        self._server: asyncio.base_events.Server | None = None

    async def start(self, sock, backlog: int = 4096) -> None:
        """Serve on a listening socket (unix or TCP) that is already bound. The event loop
        calls listen() again: `backlog` must be the socket's own, else the loop's default of
        100 cuts the queue that built up while nobody accepted (an agent restarting behind
        its socket keeper) and haproxy's next connects fail."""
        loop = asyncio.get_running_loop()
        factory = lambda: _Connection(self)  # noqa: E731
        if sock.family == socket.AF_UNIX:
            self._server = await loop.create_unix_server(factory, sock=sock, backlog=backlog)
        else:
            self._server = await loop.create_server(factory, sock=sock, backlog=backlog)

    async def listen_tcp(self, host: str, port: int, backlog: int = 100) -> None:
        """Bind and serve `host:port` (every address it resolves to; empty: all)."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), host or None, port, reuse_address=True,
            backlog=backlog)

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; idle connections close now, busy ones after their answer."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        deadline = asyncio.get_running_loop().time() + grace
        while self.connections and asyncio.get_running_loop().time() < deadline:
            for conn in list(self.connections):
                conn.close_when_idle()
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn._transport is not None:
                conn._transport.abort()
