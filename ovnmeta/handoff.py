"""Keeps the metadata socket listening while the agent restarts, so no request is refused.

A stopping agent hands a duplicate of its listening socket to a small keeper process; new
connections wait in the socket's backlog instead of being refused, and the next agent
collects the very same socket from the keeper. A keeper nobody collects exits on its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

KEEP_SECONDS = 60.0


def control_path(socket_path: str) -> str:
    return socket_path + ".handoff"


def park(sock: socket.socket, socket_path: str, timeout: float = 5.0) -> bool:
    """Start a keeper holding sock; True once it is ready to hand it on."""
    ctl = control_path(socket_path)
    if os.path.exists(ctl):
        os.unlink(ctl)
    fd = sock.fileno()
    subprocess.Popen([sys.executable, "-m", "ovnmeta.handoff", str(fd), ctl,
                      str(KEEP_SECONDS)], pass_fds=[fd], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(ctl):
            return True
        time.sleep(0.005)
    return False


def collect(socket_path: str) -> socket.socket | None:
    """The socket a previous agent parked, or None when there is no keeper."""
    ctl = control_path(socket_path)
    if not os.path.exists(ctl):
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2.0)
            conn.connect(ctl)
            _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    except OSError:
        return None
    if not fds:
        return None
    return socket.socket(fileno=fds[0])


def _keep(fd: int, ctl: str, seconds: float) -> None:
    tmp = f"{ctl}.{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(tmp)
        server.listen(1)
        os.replace(tmp, ctl)
        server.settimeout(seconds)
        try:
            conn, _ = server.accept()
            with conn:
                socket.send_fds(conn, [b"s"], [fd])
        except OSError:
            pass  # nobody came: close, and connections are refused from now on
        finally:
            try:
                os.unlink(ctl)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    _keep(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
