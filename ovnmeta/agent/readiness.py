"""haproxy's readiness check of the direct path's maps, and its hand-over across restarts.

haproxy sends known VMs' GETs straight to nova only while this check answers 200: the maps
it holds match the agent's view. A check the last agent left with the socket keeper waits
for this agent's first sync (up to VOUCH_WAIT) instead of turning the direct path off for
the length of a restart; a stop on request leaves the check with the keeper again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

from ovnmeta.agent import handoff, listener
from ovnmeta.haproxy.maps import MapSync
from ovnmeta.proxy import httpserver

LOG = logging.getLogger("ovnmeta.agent.daemon")
BACKLOG = 16        # haproxy's check: one connection at a time per haproxy worker
POLL = 0.02         # seconds between looks at the maps while a taken-over check waits
# How long a check left by the last agent waits for this one to vouch for the maps: haproxy
# gives up on it after 2 s (`timeout check`) and turns the direct path off meanwhile.
VOUCH_WAIT = 2.0


class ReadinessCheck:
    """The check's socket and its answers, for one agent's life."""

    def __init__(self, maps: MapSync, metadata_socket: str, stop: threading.Event) -> None:
        self.maps = maps
        self.metadata_socket = metadata_socket   # the keeper is found by it
        self.stop = stop
        self._vouch_until = 0.0   # a check inherited from the last agent waits until then

    def server(self) -> httpserver.Server:
        """200 only while the maps match this agent's view."""
        ok = httpserver.text(200, "maps current")
        stale = httpserver.text(503, "maps not current")

        async def ready(request: httpserver.Request) -> httpserver.Response:
            while not self.maps.ready and time.monotonic() < self._vouch_until:
                await asyncio.sleep(POLL)
            current = self.maps.ready
            if self._vouch_until:
                took, self._vouch_until = self._vouch_until - VOUCH_WAIT, 0.0
                LOG.info("haproxy's readiness check answered %.2f s after it was taken over: "
                         "%s", time.monotonic() - took, "the maps are current" if current
                         else "the maps are not current yet; direct path off until they are")
            return ok if current else stale
        return httpserver.Server(ready, keepalive=5, max_body=1024)

    def socket(self, path: str) -> socket.socket:
        """The readiness socket the last agent left with the keeper (haproxy's check may be
        waiting in it), else a new one at path."""
        sock = handoff.take_held(self.metadata_socket)
        if sock is not None:
            sock.setblocking(False)
            if not self.maps.files_signed_here():
                LOG.warning("haproxy's maps were signed with another "
                            "metadata_proxy_shared_secret: the direct path is off until "
                            "they are replaced")
                return sock     # the waiting check is answered now: not current
            self._vouch_until = time.monotonic() + VOUCH_WAIT
            LOG.info("took haproxy's readiness check over from the last agent: the direct "
                     "path stays on if this agent finds haproxy's maps current within %.0f s",
                     VOUCH_WAIT)
            return sock
        # Anyone may connect (haproxy may run as another user): it tells only yes or no.
        return listener.bind_socket(path, 0o666, backlog=BACKLOG)

    def leave(self, sock: socket.socket) -> None:
        """A stop on request while the maps are current: the keeper holds the readiness
        socket for the next agent (ovnmeta.agent.handoff). Anything else closes it, and
        haproxy stops using the maps at its next check."""
        if not (self.stop.is_set() and self.maps.ready):
            return
        if handoff.hold(self.metadata_socket, sock):
            LOG.info("left haproxy's readiness check with the socket keeper: the maps stay "
                     "in use for up to %.0f s unless the next agent vouches for them",
                     handoff.HOLD_SECONDS)
