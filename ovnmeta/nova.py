"""The client side of nova's metadata API: pooled keep-alive connections, failover, TLS."""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from dataclasses import dataclass

import aiohttp

from ovnmeta import metrics

LOG = logging.getLogger(__name__)


class NovaUnavailable(Exception):
    """No nova host gave an HTTP answer (502): refused, reset, or not HTTP."""


class NovaTimeout(Exception):
    """A nova host took longer than the timeout (504)."""


def failure_kind(exc: BaseException) -> str:
    """What went wrong, in the words an operator greps for."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionResetError)) or (
            isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)):
        return "reset"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "invalid HTTP"
    return type(exc).__name__


class Throttle:
    """Log a recurring failure once, then once a minute with how often it recurred."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}

    def log(self, logger: logging.Logger, level: int, key: str, msg: str, *args) -> None:
        now = time.monotonic()
        last, count = self._last.get(key, (0.0, 0))
        if last and now - last < self.interval:
            self._last[key] = (last, count + 1)
            logger.debug(msg, *args)
            return
        self._last[key] = (now, 0)
        if count:
            msg += " (%d more since last logged)"
            args = (*args, count)
        logger.log(level, msg, *args)


@dataclass(frozen=True)
class NovaResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class NovaEndpoint:
    hosts: tuple[str, ...]
    port: int
    protocol: str = "http"
    ca_cert: str | None = None
    client_cert: str = ""
    client_key: str = ""
    insecure: bool = False
    timeout: float = 10.0

    @classmethod
    def from_conf(cls, conf) -> NovaEndpoint:
        """From the agent's [DEFAULT] nova_* options (neutron's names)."""
        return cls(
            hosts=tuple(conf.nova_metadata_host), port=conf.nova_metadata_port,
            protocol=conf.nova_metadata_protocol, ca_cert=conf.auth_ca_cert,
            client_cert=conf.nova_client_cert, client_key=conf.nova_client_priv_key,
            insecure=conf.nova_metadata_insecure, timeout=conf.metadata.nova_metadata_timeout)

    def url(self, host: str, path_qs: str) -> str:
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.protocol}://{host}:{self.port}{path_qs}"

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.protocol != "https":
            return False
        ctx = ssl.create_default_context(cafile=self.ca_cert or None)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key or None)
        return ctx


# Per RFC 9110 §7.6.1 these describe one connection, not the message.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"})
RESPONSE_DROP = HOP_BY_HOP | {"content-length", "date", "server"}
THROTTLE = Throttle()


class NovaClient:
    def __init__(self, endpoint: NovaEndpoint, pool_size: int = 100) -> None:
        self.endpoint = endpoint
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._preferred = 0  # index of the last host that answered

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=30,
                                             ssl=self.endpoint.ssl_context())
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
                timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, method: str, path_qs: str, headers: list[tuple[str, str]],
                      body: bytes) -> NovaResponse:
        """Send to the preferred host; on a connection failure, to the next ones."""
        session = await self._get_session()
        hosts = self.endpoint.hosts
        errors = []
        # One extra try: a pooled connection the server closed fails once, then reconnects.
        for attempt in range(len(hosts) + 1):
            index = (self._preferred + attempt) % len(hosts)
            url = self.endpoint.url(hosts[index], path_qs)
            started = time.perf_counter()
            try:
                async with session.request(method, url, headers=headers, data=body or None,
                                           allow_redirects=False) as resp:
                    data = await resp.read()
                    out = [(k, v) for k, v in resp.headers.items()
                           if k.lower() not in RESPONSE_DROP]
                    self._preferred = index
                    metrics.observe_nova(hosts[index], time.perf_counter() - started)
                    if resp.status >= 500:
                        metrics.nova_error(hosts[index], "5xx")
                    elif resp.status == 403:
                        metrics.nova_error(hosts[index], "403 bad secret")
                    return NovaResponse(resp.status, out, data)
            except asyncio.TimeoutError:
                metrics.nova_error(hosts[index], "timeout")
                raise NovaTimeout(f"nova at {url.split('/')[2]} did not answer within "
                                  f"{self.endpoint.timeout:g}s") from None
            except (aiohttp.ClientError, OSError) as exc:
                kind = failure_kind(exc)
                metrics.nova_error(hosts[index], kind)
                errors.append(f"{hosts[index]}: {kind}: {exc}")
                THROTTLE.log(LOG, logging.WARNING, f"{hosts[index]} {kind}",
                             "nova metadata host %s: %s (%s)", hosts[index], kind, exc)
        raise NovaUnavailable("; ".join(errors))
