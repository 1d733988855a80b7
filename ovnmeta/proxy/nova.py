"""The client side of nova's metadata API: pooled keep-alive connections, failover, TLS."""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from dataclasses import dataclass

import httptools

from ovnmeta.core.model import NovaEndpoint
from ovnmeta.core.throttle import Throttle
from ovnmeta.proxy import metrics

LOG = logging.getLogger(__name__)


class NovaUnavailable(Exception):
    """No nova host gave an HTTP answer (502): refused, reset, or not HTTP."""


class NovaTimeout(Exception):
    """A nova host took longer than the timeout (504)."""


def failure_kind(exc: BaseException) -> str:
    """What went wrong, in the words an operator greps for."""
    if isinstance(exc, ConnectionRefusedError) or (
            isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                                       errno.ENETUNREACH)):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) or (
            isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)):
        return "reset"
    if isinstance(exc, InvalidHttp):
        return "invalid HTTP"
    if isinstance(exc, ssl.SSLError):
        return "TLS"
    return type(exc).__name__


@dataclass(frozen=True)
class NovaResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class TlsSettingsError(Exception):
    """A TLS file named by the agent's options cannot be used; the text names the option."""


def ssl_context(endpoint: NovaEndpoint) -> ssl.SSLContext | bool:
    """The TLS context for an https nova; False for http."""
    if endpoint.protocol != "https":
        return False
    try:
        ctx = ssl.create_default_context(cafile=endpoint.ca_cert or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSettingsError(f"[DEFAULT] auth_ca_cert = {endpoint.ca_cert}: {exc}") from None
    if endpoint.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if endpoint.client_cert:
        try:
            ctx.load_cert_chain(endpoint.client_cert, endpoint.client_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSettingsError(
                f"[DEFAULT] nova_client_cert = {endpoint.client_cert}, nova_client_priv_key = "
                f"{endpoint.client_key}: {exc}") from None
    return ctx


def tls_hint(exc: BaseException, endpoint: NovaEndpoint) -> str:
    """Which option to look at when a TLS handshake with nova failed, or empty."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = (f"[DEFAULT] auth_ca_cert = {endpoint.ca_cert}" if endpoint.ca_cert
                   else "the system's CA store ([DEFAULT] auth_ca_cert is not set)")
        return (f"nova's certificate does not verify against {trusted}: "
                f"{exc.verify_message}")
    if isinstance(exc, ssl.SSLError) and "alert" in str(exc):
        return (f"nova refused the handshake ({exc.reason}): check [DEFAULT] "
                f"nova_client_cert = {endpoint.client_cert or '(not set)'}")
    return ""


# Per RFC 9110 §7.6.1 these describe one connection, not the message.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"})
RESPONSE_DROP = HOP_BY_HOP | {"content-length", "date", "server"}
THROTTLE = Throttle()


class InvalidHttp(Exception):
    """What nova sent is not an HTTP response."""


class _Exchange(asyncio.Protocol):
    """One keep-alive connection to nova: one request at a time, its answer parsed by
    httptools (the parser uvicorn uses), so the proxy's hot path stays in C."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._status = 0
        self._length_known = False
        self._head = False
        self.reusable = False
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidHttp("nova asked for a protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(InvalidHttp(f"not an HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._answer is not None and not self._answer.done():
            if self._status and not self._length_known:
                self._finish()  # a body that ends with the connection
            else:
                self._answer.set_exception(ConnectionResetError(
                    "nova closed the connection before its answer"))

    # -- httptools callbacks ----------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._length_known = any(k.lower() in ("content-length", "transfer-encoding")
                                 for k, _ in self._headers)
        if self._head and self._status >= 200:  # no body follows, whatever it announces
            self._finish()
            self.close()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # informational: the answer is still to come
            self._headers, self._body, self._status = [], [], 0
            return
        self._finish()

    # -- the exchange -----------------------------------------------------------------------
    def _finish(self) -> None:
        if self._answer is not None and not self._answer.done():
            self.reusable = self._parser.should_keep_alive() and not self.closed
            self._answer.set_result(NovaResponse(
                self._status, [(k, v) for k, v in self._headers
                               if k.lower() not in RESPONSE_DROP], b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()

    async def send(self, request: bytes, head: bool, timeout: float) -> NovaResponse:
        """The answer to `request`; TimeoutError after `timeout` seconds (a timer, which
        costs less per request than an asyncio.timeout scope)."""
        self._parser = httptools.HttpResponseParser(self)
        self._headers, self._body, self._status, self._head = [], [], 0, head
        self.reusable = False
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        timer = loop.call_later(timeout, self._expire)
        self.transport.write(request)
        try:
            return await self._answer
        finally:
            timer.cancel()

    def _expire(self) -> None:
        self._fail(TimeoutError())


def render_request(method: str, path_qs: str, host: str, headers: list[tuple[str, str]],
                   body: bytes) -> bytes:
    """The request line and headers as bytes; values came from a parsed request (no CR/LF)."""
    lines = [f"{method} {path_qs} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class NovaClient:
    """Pooled keep-alive connections to nova's hosts, failover in order, TLS; a connection
    is reused only after a complete answer that allows it."""

    def __init__(self, endpoint: NovaEndpoint, pool_size: int = 100) -> None:
        self.endpoint = endpoint
        self._idle: dict[str, list[_Exchange]] = {h: [] for h in endpoint.hosts}
        self._slots = asyncio.Semaphore(pool_size)
        try:
            self._ssl = ssl_context(endpoint)
            self._broken = ""
        except TlsSettingsError as exc:   # said once at start; every request answers 502
            self._ssl, self._broken = False, str(exc)
            LOG.error("nova metadata API over https: %s", exc)
        self._preferred = 0  # index of the last host that answered

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

    async def _connect(self, host: str, timeout: float) -> tuple[_Exchange, bool]:
        """(connection, reused): an idle pooled one if any, else a new one."""
        idle = self._idle[host]
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn, True
        _, conn = await asyncio.wait_for(asyncio.get_running_loop().create_connection(
            _Exchange, host.strip("[]"), self.endpoint.port, ssl=self._ssl or None), timeout)
        return conn, False

    async def forward(self, method: str, path_qs: str, headers: list[tuple[str, str]],
                      body: bytes) -> NovaResponse:
        """Send to the preferred host; on a connection failure, to the next ones."""
        hosts = self.endpoint.hosts
        if self._broken:
            raise NovaUnavailable(self._broken)
        errors = []
        async with self._slots:
            attempt = 0
            # One extra try: a pooled connection the server closed meanwhile fails once.
            while attempt < len(hosts) + 1:
                index = (self._preferred + attempt) % len(hosts)
                host = hosts[index]
                started = time.perf_counter()
                conn = None
                reused = False
                try:
                    deadline = started + self.endpoint.timeout
                    conn, reused = await self._connect(host, self.endpoint.timeout)
                    resp = await conn.send(render_request(
                        method, path_qs, self.endpoint.authority(host), headers, body),
                        method == "HEAD", max(0.0, deadline - time.perf_counter()))
                except asyncio.CancelledError:  # the client hung up: the answer is lost
                    if conn is not None:
                        conn.close()
                    raise
                except TimeoutError:
                    if conn is not None:
                        conn.close()
                    metrics.nova_error(host, "timeout")
                    raise NovaTimeout(f"nova at {self.endpoint.authority(host)} did not answer "
                                      f"within {self.endpoint.timeout:g}s") from None
                except (OSError, InvalidHttp) as exc:
                    if conn is not None:
                        conn.close()
                    if reused and not isinstance(exc, InvalidHttp):
                        continue  # the pooled connection was stale: again, on a new one
                    kind = failure_kind(exc)
                    metrics.nova_error(host, kind)
                    errors.append(f"{host}: {kind}: {exc}")
                    hint = tls_hint(exc, self.endpoint)
                    if hint:   # the operator's settings, not nova's health
                        THROTTLE.log(LOG, logging.ERROR, f"{host} {kind}",
                                     "nova metadata host %s: %s", host, hint)
                    else:
                        THROTTLE.log(LOG, logging.WARNING, f"{host} {kind}",
                                     "nova metadata host %s: %s (%s)", host, kind, exc)
                    attempt += 1
                    continue
                if conn.reusable:
                    self._idle[host].append(conn)
                else:
                    conn.close()
                self._preferred = index
                metrics.observe_nova(host, time.perf_counter() - started)
                if resp.status >= 500:
                    metrics.nova_error(host, "5xx")
                elif resp.status == 403:
                    metrics.nova_error(host, "403 bad secret")
                return resp
        raise NovaUnavailable("; ".join(errors))
