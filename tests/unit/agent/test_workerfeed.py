"""The SB view feed from the agent to its workers: frames round-trip, and a broken stream is
an error, never a wrong view."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ovnmeta.agent import workerfeed
from ovnmeta.core.model import PortRecord, SbSnapshot

SNAP = SbSnapshot(chassis="ch-1", ports=(
    PortRecord("vm-a", "", "net-1", ("fa:16:3e:00:00:01 10.0.0.5 fd00::5",),
               (("neutron:device_id", "i-1"), ("neutron:project_id", "p")), True),
    PortRecord("meta-1", "localport", "net-1", ("fa:16:3e:00:00:02 10.0.0.2",), (), False),
))


def test_a_frame_round_trips() -> None:
    frame = workerfeed.encode(SNAP, frozenset({"vm-a"}))
    (size,) = workerfeed.HEADER.unpack(frame[:4])
    assert size == len(frame) - 4
    feed = workerfeed.decode(frame[4:])
    assert feed.snapshot == SNAP and feed.plugged == frozenset({"vm-a"})


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"chassis": "c"}',
                                  b'{"chassis": "c", "ports": [[1, 2]], "plugged": []}'])
def test_a_malformed_frame_is_a_feed_error(body: bytes) -> None:
    with pytest.raises(workerfeed.FeedError):
        workerfeed.decode(body)


def test_a_view_follows_a_stream_until_it_closes() -> None:
    async def run() -> workerfeed.FedView:
        ours, theirs = socket.socketpair()
        view = workerfeed.FedView()
        reader, _ = await asyncio.open_unix_connection(sock=theirs)
        follow = asyncio.create_task(view.follow(reader))
        ours.sendall(workerfeed.encode(SbSnapshot(chassis="ch-1"), frozenset()))
        frame = workerfeed.encode(SNAP, frozenset({"vm-a"}))
        ours.sendall(frame[:7])      # a frame may arrive in pieces
        await asyncio.sleep(0.05)
        ours.sendall(frame[7:])
        await asyncio.wait_for(view.settled.wait(), 2)
        ours.close()
        await asyncio.wait_for(follow, 2)
        return view

    view = asyncio.run(run())
    assert view.updates == 2 and view.snapshot() == SNAP and view.plugged() == {"vm-a"}


def test_a_stream_cut_inside_a_frame_is_an_error() -> None:
    async def run() -> None:
        ours, theirs = socket.socketpair()
        reader, _ = await asyncio.open_unix_connection(sock=theirs)
        ours.sendall(workerfeed.encode(SNAP, frozenset())[:-3])
        ours.close()
        await workerfeed.FedView().follow(reader)

    with pytest.raises(workerfeed.FeedError):
        asyncio.run(run())


def test_an_absurd_length_is_an_error() -> None:
    async def run() -> None:
        ours, theirs = socket.socketpair()
        reader, _ = await asyncio.open_unix_connection(sock=theirs)
        ours.sendall(workerfeed.HEADER.pack(workerfeed.MAX_FRAME + 1))
        await workerfeed.read_frame(reader)

    with pytest.raises(workerfeed.FeedError):
        asyncio.run(run())


def test_a_worker_loads_no_ovsdb_client() -> None:
    """The point of the feed: a worker's memory holds no IDL, nor the code for one."""
    import subprocess
    import sys
    probe = ("import sys, ovnmeta.agent.workers; print(sorted({m.split('.')[0] for m in sys.modules}"
             " & {'ovs', 'ovsdbapp', 'pyroute2', 'aiohttp', 'jinja2'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
