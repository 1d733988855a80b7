"""The agent's SB view and plugged ports, streamed to its metadata workers.

Workers hold no SB or OVS connection of their own: an IDL per worker cost about 30 MiB
each and one more monitor on the SB per process. The agent sends what its view says over a
socketpair instead, whenever it changes. A frame is a 4-byte big-endian length, then JSON.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass

from ovnmeta.core.model import PortRecord, SbSnapshot

HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024  # far above any SB view; a bigger length means a broken stream


class FeedError(ValueError):
    """A frame that is not a feed: the stream is broken and cannot be trusted."""


@dataclass(frozen=True)
class Feed:
    snapshot: SbSnapshot
    plugged: frozenset[str]


def encode(snapshot: SbSnapshot, plugged: frozenset[str]) -> bytes:
    body = json.dumps({
        "chassis": snapshot.chassis,
        "ports": [[p.logical_port, p.type, p.network_id, list(p.mac),
                   [list(kv) for kv in p.external_ids], p.bound_here]
                  for p in snapshot.ports],
        "plugged": sorted(plugged),
    }, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Feed:
    try:
        data = json.loads(body)
        ports = tuple(
            PortRecord(logical_port=str(lp), type=str(kind), network_id=str(net),
                       mac=tuple(str(m) for m in mac),
                       external_ids=tuple((str(k), str(v)) for k, v in ext),
                       bound_here=bool(here))
            for lp, kind, net, mac, ext, here in data["ports"])
        return Feed(SbSnapshot(chassis=str(data["chassis"]), ports=ports),
                    frozenset(str(i) for i in data["plugged"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise FeedError(f"malformed worker feed: {exc}") from exc


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One frame's body, or None when the agent closed its end."""
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FeedError("worker feed cut inside a frame header") from exc
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise FeedError(f"worker feed frame of {size} bytes")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise FeedError("worker feed cut inside a frame") from exc


class FedView:
    """A worker's read-only copy of the agent's view, kept current by `follow`."""

    def __init__(self, chassis: str = "") -> None:
        self._feed = Feed(SbSnapshot(chassis=chassis), frozenset())
        self.settled = asyncio.Event()   # set once the first feed arrived
        self.updates = 0

    def snapshot(self) -> SbSnapshot:
        return self._feed.snapshot

    def plugged(self) -> frozenset[str]:
        return self._feed.plugged

    def apply(self, body: bytes) -> None:
        self._feed = decode(body)
        self.updates += 1
        self.settled.set()

    async def follow(self, reader: asyncio.StreamReader) -> None:
        """Apply frames until the agent closes the stream (it exited)."""
        while (body := await read_frame(reader)) is not None:
            self.apply(body)
