"""The socket keeper on its own: it hands the socket over, and it outlives its owner by
KEEP_SECONDS only (here a fraction of a second)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from ovnmeta.agent import handoff


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
