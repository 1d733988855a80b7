"""The socket keeper on its own: it hands the socket over, and it outlives its owner by
KEEP_SECONDS only (here a fraction of a second)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from ovnmeta.agent import handoff, listener


def test_the_keeper_hands_over_the_socket_and_outlives_its_owner_briefly(tmp_path) -> None:
    path = str(tmp_path / "metadata_proxy")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ctl = handoff.control_path(path)
    keeper = subprocess.Popen([sys.executable, "-m", "ovnmeta.agent.handoff",
                               str(sock.fileno()), ctl, str(owner.pid), "0.5"],
                              pass_fds=[sock.fileno()])
    try:
        deadline = time.monotonic() + 10
        while not handoff.alive(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        # The same listening socket comes back; who collects it owns the keeper now (this
        # test), which stays while its owner lives.
        got = handoff.collect(path)
        assert got is not None and got.getsockname() == path
        got.close()
        time.sleep(1.5)
        assert keeper.poll() is None and handoff.alive(path)
        assert handoff.release(path)   # as `ovnmeta cleanup` does
        assert keeper.wait(5) == 0
    finally:
        owner.kill()
        owner.wait()
        if keeper.poll() is None:
            keeper.kill()
        sock.close()


def test_a_keeper_whose_owner_is_gone_exits(tmp_path) -> None:
    path = str(tmp_path / "metadata_proxy")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)
    owner = subprocess.Popen([sys.executable, "-c", "pass"])
    owner.wait()
    keeper = subprocess.Popen([sys.executable, "-m", "ovnmeta.agent.handoff",
                               str(sock.fileno()), handoff.control_path(path),
                               str(owner.pid), "0.5"], pass_fds=[sock.fileno()])
    try:
        assert keeper.wait(10) == 0
    finally:
        if keeper.poll() is None:
            keeper.kill()
        sock.close()


def test_the_keeper_holds_a_readiness_socket_for_the_next_agent_or_closes_it(tmp_path) -> None:
    """A stopping agent leaves haproxy's check socket: the next agent takes that very
    socket (what waits in its backlog with it); left alone, it is closed (refused)."""
    path = str(tmp_path / "metadata_proxy")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    keeper = subprocess.Popen([sys.executable, "-m", "ovnmeta.agent.handoff",
                               str(sock.fileno()), handoff.control_path(path),
                               str(owner.pid), "30", "0.5"], pass_fds=[sock.fileno()])
    ready_path = str(tmp_path / "ready")
    try:
        deadline = time.monotonic() + 10
        while not handoff.alive(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert handoff.take_held(path) is None        # nothing held yet

        def left_with_keeper() -> socket.socket:
            ready = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ready.bind(ready_path)
            ready.listen(4)
            assert handoff.hold(path, ready)
            ready.close()                               # the stopping agent's copy
            waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            waiting.connect(ready_path)                 # haproxy's check, in the backlog
            return waiting

        check = left_with_keeper()
        taken = handoff.take_held(path)
        assert taken is not None and taken.getsockname() == ready_path
        assert handoff.take_held(path) is None          # taken once
        conn, _ = taken.accept()                        # the check that waited
        conn.sendall(b"ok")
        assert check.recv(2) == b"ok"
        for s in (conn, taken, check):
            s.close()

        os.unlink(ready_path)
        check = left_with_keeper()
        time.sleep(1.5)                                 # past the hold: closed
        assert handoff.take_held(path) is None
        check.settimeout(5)
        with pytest.raises(ConnectionResetError):       # its waiting check fails
            check.recv(1)
        check.close()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late:
            with pytest.raises(ConnectionRefusedError):
                late.connect(ready_path)
        assert handoff.alive(path)                      # the metadata socket stays kept
    finally:
        owner.kill()
        owner.wait()
        handoff.release(path)
        if keeper.poll() is None:
            keeper.kill()
        sock.close()


def _keeper_before_hold(ctl: str, fd: int, asked: list[bytes]) -> threading.Thread:
    """A keeper as ovnmeta started it before HOLD existed (it outlives upgrades): every
    command but ping and release is a fetch."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(ctl)
    server.listen(8)
    mine = os.stat(ctl).st_ino

    def run() -> None:
        with server:
            while True:
                conn, _ = server.accept()
                with conn:
                    command = conn.recv(1)
                    asked.append(command)
                    if command in (handoff.PING, handoff.RELEASE):
                        socket.send_fds(conn, [command], [])
                        if command == handoff.RELEASE:
                            try:     # not a newer keeper's (the agent starts one at once)
                                if os.stat(ctl).st_ino == mine:
                                    os.unlink(ctl)
                            except FileNotFoundError:
                                pass
                            return
                        continue
                    socket.send_fds(conn, [b"s"], [fd])
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_agent_replaces_a_keeper_an_earlier_ovnmeta_started(tmp_path) -> None:
    path = str(tmp_path / "metadata_proxy")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)
    asked: list[bytes] = []
    old = _keeper_before_hold(handoff.control_path(path), sock.fileno(), asked)
    ready = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    got = None
    try:
        # It cannot hold haproxy's check, and says so by answering as to a fetch.
        assert not handoff.can_hold(path)
        assert not handoff.hold(path, ready) and handoff.take_held(path) is None
        got = listener.listen(SimpleNamespace(metadata_proxy_socket=path))
        assert got.getsockname() == path
        old.join(5)
        assert not old.is_alive() and asked[-1] == handoff.RELEASE
        assert handoff.can_hold(path)                 # a keeper of this version now...
        again = handoff.collect(path)                 # ...holding the same socket
        assert again is not None and again.getsockname() == path
        again.close()
    finally:
        handoff.release(path)
        for s in (sock, ready, got):
            if s is not None:
                s.close()
