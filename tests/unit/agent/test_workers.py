"""Workers forked by the zygote, and the zygote itself as the last one, serve from the agent's
feed alone, are replaced when they die, and leave nothing behind: real processes, a real
unix socket, real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest

from ovnmeta.agent import config, workerfeed
from ovnmeta.host import procs
from ovnmeta.agent.listener import bind_socket
from ovnmeta.core.model import PortRecord, SbSnapshot
from ovnmeta.agent.workers import WorkerPool, Zygote

NET = "11111111-2222-3333-4444-555555555555"
SNAP = SbSnapshot(chassis="ch", ports=(
    PortRecord("vm-a", "", NET, ("fa:16:3e:00:00:01 10.0.0.5",),
               (("neutron:device_id", "i-a"), ("neutron:project_id", "p")), True),
    PortRecord("meta", "localport", NET, ("fa:16:3e:00:00:02 10.0.0.2",), (), False),
))


def _ask(path: str, client: str) -> int:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(f"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  f"X-OVN-Network-ID: {NET}\r\nX-Forwarded-For: {client}\r\n\r\n".encode())
        return int(s.recv(4096).split()[1])


def _wait(pred, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(params=["zygote"])
def pool(tmp_path, request):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: nova refuses
    ini = tmp_path / "agent.ini"
    ini.write_text(f"[DEFAULT]\nnova_metadata_host = 127.0.0.1\n"
                   f"nova_metadata_port = {closed.getsockname()[1]}\n"
                   f"metadata_proxy_shared_secret = s\nstate_path = {tmp_path}\n")
    conf = config.load(["--config-file", str(ini)], prog="test")
    path = str(tmp_path / "metadata_proxy")
    sock = bind_socket(path, 0o600)
    zygote = None
    if request.param == "zygote":
        zygote = Zygote(conf, sock)
        zygote.start()
    pool = WorkerPool(2, ["--config-file", str(ini)], sock, zygote=zygote)
    pool.start()
    pool.path = path
    yield pool
    pool.stop()
    closed.close()
    sock.close()


NOVA_DOWN = {502, 503}   # a known VM's answers with nova refusing


def _feed(pool: WorkerPool, version: int) -> None:
    asyncio.run(pool.publish(workerfeed.encode(SNAP, frozenset({"vm-a"})), version))


def test_forked_workers_serve_the_view_they_are_fed(pool) -> None:
    pids = pool.pids()
    assert len(pids) == 2 and all(procs.running(p) for p in pids)
    # The zygote serves as the last worker and forked the other: no new interpreter, no
    # zygote left waiting beside them.
    assert pids[1] == pool.zygote.pid and pool.zygote.serving
    assert _parent(pids[0]) == pool.zygote.pid and _parent(pids[1]) == os.getpid()
    _feed(pool, 1)
    # Known VM: signed and sent to nova, which refuses: 502, or 503 once the worker knows
    # nova is failing (the cache's breaker). Unknown address: 404. Several connections, so
    # that both workers answer.
    _wait(lambda: _ask(pool.path, "10.0.0.5") in NOVA_DOWN, "a worker serving")
    assert {_ask(pool.path, "10.0.0.5") for _ in range(20)} <= NOVA_DOWN
    assert {_ask(pool.path, "10.0.0.9") for _ in range(20)} == {404}


def _parent(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("which", ["forked", "zygote"])
def test_a_dead_worker_is_replaced_and_fed(pool, which) -> None:
    _feed(pool, 1)
    victim, sibling = pool.pids() if which == "forked" else pool.pids()[::-1]
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: not procs.running(victim), "the worker to die")
    pool.check()
    assert victim not in pool.pids() and len(pool.pids()) == 2
    # Its sibling lives on, the zygote's child included when the zygote died; the
    # replacement is a new interpreter, as the zygote forks no more once it serves.
    assert sibling in pool.pids()
    [replacement] = [w for w in pool.workers if w.pid != sibling]
    assert replacement.proc is not None
    _feed(pool, 1)    # the same version: only the new worker gets it
    assert all(w.sent == 1 for w in pool.workers)
    assert {_ask(pool.path, "10.0.0.5") for _ in range(20)} <= NOVA_DOWN


@pytest.mark.parametrize("pool", ["exec"], indirect=True)
def test_without_a_zygote_workers_are_new_interpreters(pool) -> None:
    _feed(pool, 1)
    _wait(lambda: _ask(pool.path, "10.0.0.5") in NOVA_DOWN, "a worker serving")
    assert {_ask(pool.path, "10.0.0.9") for _ in range(10)} == {404}


def test_stopping_ends_the_workers_and_the_zygote(pool) -> None:
    everyone = pool.pids()
    assert len(everyone) == 2 and pool.zygote.pid in everyone
    pool.stop()
    _wait(lambda: not any(procs.running(p) for p in everyone), "all to exit", timeout=12)


def test_workers_stop_when_the_agents_feed_closes(pool) -> None:
    """What an agent's death does to them: the zygote's child has no parent-death signal
    on the agent, so the feed's end is what stops it."""
    _feed(pool, 1)
    everyone = pool.pids()
    for worker in pool.workers:
        worker.feed.close()
    _wait(lambda: not any(procs.running(p) for p in everyone), "all to exit", timeout=10)
