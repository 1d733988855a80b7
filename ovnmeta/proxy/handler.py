"""The metadata proxy on the agent's unix socket: identify the VM, sign, forward to nova.

haproxy in each namespace sends here with X-OVN-Network-ID and X-Forwarded-For set by itself;
everything a client may have put in the identity headers is dropped before nova sees it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable, Collection

from ovnmeta.proxy import metrics
from ovnmeta.proxy.httpserver import Request, Response, Server, text
from ovnmeta.core.model import SbSnapshot
from ovnmeta.proxy.peers import PeerPolicy, Refusals, peer_of
from ovnmeta.proxy.nova import THROTTLE, NovaClient, NovaResponse, NovaTimeout, NovaUnavailable
from ovnmeta.core.breaker import Breaker
from ovnmeta.core.portindex import BadAddress, PortIndex
from ovnmeta.core.responsecache import Answer, CachePolicy, Key, Lookup, ResponseCache
from ovnmeta.core.signing import sign_instance_id
from ovnmeta.core.throttle import Throttle

LOG = logging.getLogger(__name__)

NETWORK_HEADER = "X-OVN-Network-ID"
# Identity is the agent's to assert: a client's copy must never reach nova (nova joins
# repeated headers, and X-Metadata-Provider switches it to another lookup).
IDENTITY_HEADERS = frozenset(h.lower() for h in (
    "X-Instance-ID", "X-Tenant-ID", "X-Instance-ID-Signature", "X-Metadata-Provider",
    "X-Metadata-Provider-Signature", "X-Forwarded-For", NETWORK_HEADER, "Host"))
REQUEST_DROP = IDENTITY_HEADERS | {"connection", "keep-alive", "te", "trailer", "upgrade",
                                   "transfer-encoding", "content-length", "proxy-connection",
                                   "expect"}  # the body is sent whole, never on a 100
MAX_BODY = 64 * 1024   # the largest thing a VM posts is its encrypted password (≤ 256 bytes)
CACHE_HEADER = "X-OVNMeta-Cache"   # hit: from the host's cache; stale: nova failed


class MetadataProxy:
    def __init__(self, snapshot: Callable[[], SbSnapshot], nova: NovaClient, secret: str,
                 instance_key: str = "neutron:device_id",
                 project_key: str = "neutron:project_id",
                 plugged: Callable[[], Collection[str]] | None = None,
                 cache: ResponseCache | None = None, stale_after: float = 5.0) -> None:
        self._snapshot = snapshot
        self.cache = cache   # nova's answers by instance (core/responsecache.py)
        # With the cache: whether nova is worth asking, and how long to wait for it before
        # a kept answer is served in its place (the late answer is still kept).
        self.breaker = Breaker()
        self.stale_after = stale_after
        self._late: set[asyncio.Future] = set()
        # The logical ports plugged on this host (local OVS): a port the SB view still
        # has but whose VM is gone is not answered for, so a VM given a deleted VM's
        # address never gets that VM's data while the view lags (SB cut off, say).
        self._plugged = plugged
        self._nova = nova
        self._secret = secret
        self._keys = (instance_key, project_key)
        self._index_of: SbSnapshot | None = None
        self._index = PortIndex({}, {})
        self.forbidden_logged = False
        self._unknown = Throttle()   # 404s, per network and client address

    @classmethod
    def from_conf(cls, conf, snapshot: Callable[[], SbSnapshot], nova: NovaClient,
                  plugged: Callable[[], Collection[str]] | None = None) -> MetadataProxy:
        c = conf.metadata_cache
        cache = ResponseCache(CachePolicy(ttl=c.ttl, max_stale=c.max_stale,
                                          max_bytes=c.max_bytes,
                                          max_entry_bytes=c.max_entry_bytes)) \
            if c.enabled else None
        return cls(snapshot, nova, conf.metadata_proxy_shared_secret,
                   instance_key=conf.metadata.instance_id_key,
                   project_key=conf.metadata.project_id_key, plugged=plugged, cache=cache,
                   stale_after=c.stale_after)

    def index(self) -> PortIndex:
        """The index of the current SB view, rebuilt only when the view changed."""
        snap = self._snapshot()
        if snap is not self._index_of:
            self._index = PortIndex.build(snap.ports, *self._keys)
            self._index_of = snap
            if self.cache is not None:   # an instance whose port left takes its answers
                self.cache.keep_only(self._index.instance_ids())
        return self._index

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self._handle(request)
        networks = request.get_all(NETWORK_HEADER)
        network = networks[0].strip() if networks else ""
        # Only networks served here become label values: a client cannot mint series.
        if network not in self.index().networks:
            network = "unknown"
        metrics.observe_request(network, response.status, time.perf_counter() - started)
        return response

    async def _handle(self, request: Request) -> Response:
        networks = {v.strip() for v in request.get_all(NETWORK_HEADER)}
        clients = request.get_all("X-Forwarded-For")
        if len(networks) != 1 or not next(iter(networks)):
            return text(400, f"Bad request: exactly one {NETWORK_HEADER} header is required")
        if len(clients) != 1 or "," in clients[0]:
            return text(400, "Bad request: exactly one X-Forwarded-For address is required")
        network_id, client = networks.pop(), clients[0].strip()
        try:
            instance = self.index().lookup(network_id, client)
        except BadAddress as exc:
            return text(400, f"Bad request: X-Forwarded-For {exc}")
        if instance is None:
            if network_id in self.index().networks:
                metrics.index_miss(network_id)
            # Once per address a minute: a VM using an address with no port (port security
            # off, a second IP) asks again and again (LP #2112130).
            self._unknown.log(LOG, logging.INFO, f"{network_id} {client}",
                              "no VM port bound here with IP %s on network %s: 404",
                              client, network_id)
            return text(404, f"No instance with address {client} on network {network_id}")
        if not instance.answerable(None if self._plugged is None else self._plugged()):
            self._unknown.log(LOG, logging.WARNING, f"{network_id} {client}",
                              "IP %s on network %s is port %s in the SB view, but no "
                              "interface on this host carries it (deleted VM, view behind "
                              "the SB?): 404", client, network_id, instance.logical_port)
            return text(404, f"No instance with address {client} on network {network_id}")

        body = request.body  # the server bounds it (MAX_BODY, 413)
        headers = [(k, v) for k, v in request.headers if k.lower() not in REQUEST_DROP]
        headers += [("X-Forwarded-For", client),
                    ("X-Instance-ID", instance.instance_id),
                    ("X-Tenant-ID", instance.project_id),
                    ("X-Instance-ID-Signature",
                     sign_instance_id(self._secret, instance.instance_id))]
        if self.cache is None:
            try:
                resp = await self._nova.forward(request.method, request.path_qs, headers, body)
            except (NovaTimeout, NovaUnavailable) as exc:
                return self._failed(instance.instance_id, request, exc)
            return self._answer(instance.instance_id, request, resp)
        return await self._through_cache(self.cache, instance.instance_id, request, headers)

    async def _through_cache(self, cache: ResponseCache, instance_id: str, request: Request,
                             headers: list[tuple[str, str]]) -> Response:
        """Fresh from the cache, else from nova (kept), else stale, else a prompt 503."""
        key = Key(instance_id, request.method, request.path_qs)
        # haproxy's cache (the direct path's fresh tier) asks with Host set to the instance
        # its map names: only then may the answer say how long haproxy may keep it.
        for_haproxy = request.get_all("Host") == [instance_id]
        now = time.monotonic()
        kept = cache.lookup(key, now)
        if kept and kept.fresh:
            cache.hit()
            return _from_cache(kept, "hit", cache.policy.ttl if for_haproxy else None)
        if not self.breaker.allow(now):   # nova failed a moment ago: do not wait on it again
            if kept:
                return self._stale(kept)
            return _marked(_unavailable(self.breaker.retry_after(now)), None)
        cache.miss()
        fetch = asyncio.ensure_future(self._fetch(key, request, headers))
        if kept:   # a slow nova: the last good answer now, nova's when it comes
            done, _ = await asyncio.wait({fetch}, timeout=self.stale_after)
            if not done:
                self._late.add(fetch)
                fetch.add_done_callback(functools.partial(self._late_done, instance_id,
                                                          request))
                return self._stale(kept)
        try:
            resp = await fetch
        except (NovaTimeout, NovaUnavailable) as exc:
            if kept:
                self._log_failure(instance_id, request, exc)
                return self._stale(kept)
            return _marked(self._failed(instance_id, request, exc), None)
        response = self._answer(instance_id, request, resp)
        if resp.status >= 500 and kept:
            return self._stale(kept)
        keep = for_haproxy and cache.keepable(key, _as_answer(resp), count=False)
        return _marked(response, cache.policy.ttl if keep else None)

    async def _fetch(self, key: Key, request: Request, headers: list[tuple[str, str]]
                     ) -> NovaResponse:
        """Ask nova, tell the breaker how it went, and keep a good answer (also one that
        comes after its request was answered stale)."""
        assert self.cache is not None
        try:
            resp = await self._nova.forward(request.method, request.path_qs, headers,
                                            request.body)
        except (NovaTimeout, NovaUnavailable):
            self.breaker.failed(time.monotonic())
            raise
        except BaseException:   # cancelled: it proved nothing either way
            self.breaker.released()
            raise
        self.breaker.record(resp.status, time.monotonic())
        self.cache.store(key, _as_answer(resp), time.monotonic())
        return resp

    def _late_done(self, instance_id: str, request: Request, fetch: asyncio.Future) -> None:
        """A request answered stale while nova was slow: how nova's answer ended, logged
        as the agent's own failures are (nobody else will)."""
        self._late.discard(fetch)
        exc = None if fetch.cancelled() else fetch.exception()
        if isinstance(exc, (NovaTimeout, NovaUnavailable)):
            self._log_failure(instance_id, request, exc)
        elif exc is not None:
            LOG.error("asking nova for instance %s %s: %r", instance_id, request.path, exc)

    def _answer(self, instance_id: str, request: Request, resp: NovaResponse) -> Response:
        if resp.status == 403:
            LOG.error("nova refused the signed request for instance %s (403): "
                      "metadata_proxy_shared_secret in the agent's config does not match "
                      "nova's [neutron] metadata_proxy_shared_secret", instance_id)
        elif resp.status >= 500:
            LOG.warning("nova answered %d for instance %s %s %s", resp.status,
                        instance_id, request.method, request.path)
        return Response(resp.status, resp.headers, resp.body)

    def _log_failure(self, instance_id: str, request: Request, exc: Exception) -> None:
        if isinstance(exc, NovaTimeout):
            THROTTLE.log(LOG, logging.ERROR, "timeout", "instance %s %s %s: %s",
                         instance_id, request.method, request.path, exc)
        else:
            THROTTLE.log(LOG, logging.ERROR, "unavailable",
                         "instance %s %s %s: no answer from the nova metadata API: %s",
                         instance_id, request.method, request.path, exc)

    def _failed(self, instance_id: str, request: Request, exc: Exception) -> Response:
        self._log_failure(instance_id, request, exc)
        if isinstance(exc, NovaTimeout):
            return text(504, "Gateway timeout: the nova metadata API did not answer in time")
        return text(502, "Bad gateway: the nova metadata API cannot be reached")

    def _stale(self, kept: Lookup) -> Response:
        """nova failed: its last good answer, marked as such (and never for haproxy to
        keep: it must ask again)."""
        assert self.cache is not None
        self.cache.served_stale()
        metrics.cache_stale()
        return _from_cache(kept, "stale", None)


def _as_answer(resp: NovaResponse) -> Answer:
    return Answer(resp.status, tuple(resp.headers), resp.body)


def _unavailable(retry_after: int) -> Response:
    """nova is failing and nothing is kept for this request: say so at once."""
    resp = text(503, "Service unavailable: the nova metadata API is failing and no answer "
                     "for this request is kept on this host")
    return Response(503, resp.headers + [("Retry-After", str(retry_after))], resp.body)


def _marked(resp: Response, fresh_for: float | None, age: float | None = None) -> Response:
    """With the cache on, every answer says whether haproxy's cache may keep it: for
    `fresh_for` more seconds (max-age), or not at all (None: no-store). A VM sees that
    too; nova sends no Cache-Control of its own. `age`: the agent's Age, for answers
    haproxy will not keep (haproxy counts its own)."""
    headers = [(k, v) for k, v in resp.headers if k.lower() not in ("cache-control", "age")]
    if fresh_for is not None and int(fresh_for) >= 1:
        headers.append(("Cache-Control", f"max-age={int(fresh_for)}"))
    else:
        headers.append(("Cache-Control", "no-store"))
        if age is not None:
            headers.append(("Age", str(int(age))))
    return Response(resp.status, headers, resp.body)


def _from_cache(kept: Lookup, how: str, fresh_for: float | None) -> Response:
    """A kept answer, marked as `how` (hit, stale)."""
    headers = [*kept.answer.headers, (CACHE_HEADER, how)]
    return _marked(Response(kept.answer.status, headers, kept.answer.body),
                   None if fresh_for is None else fresh_for - kept.age, kept.age)


def _admit(policy: PeerPolicy):
    """The connection's peer, checked once when it connects: root, the agent's user and
    haproxy's; anyone else gets 403 for every request, and one warning per user."""
    refusals = Refusals()
    forbidden = text(403, "Forbidden: only haproxy may use the metadata socket")

    def admit(transport) -> Response | None:
        sock = transport.get_extra_info("socket")
        if sock is None:
            return forbidden
        peer = peer_of(sock)
        if policy.allows(peer):
            return None
        refusals.note(peer)
        return forbidden
    return admit


def make_server(proxy: MetadataProxy, peers: PeerPolicy | None = None) -> Server:
    """The proxy's HTTP server; with `peers`, a connection from anyone else is answered
    403 without a lookup."""
    return Server(proxy.handle, admit=_admit(peers) if peers else None, keepalive=75,
                  max_body=MAX_BODY)


async def serve(server: Server, sock: socket.socket, stop: asyncio.Event,
                before_close: Callable[[], None] | None = None, backlog: int = 4096) -> None:
    await server.start(sock, backlog)
    try:
        await stop.wait()
    finally:
        if before_close:
            before_close()
        await server.close()
