"""Keeps the metadata socket listening whatever happens to the agent, so no request fails.

A small keeper process holds a duplicate of the listening socket for as long as agents come
back for it. When the agent stops, crashes, or is killed (SIGKILL, OOM), the socket stays
open and listening: haproxy's connections wait in its backlog, and requests the dead agent
had accepted are retried by haproxy (`retry-on empty-response`) into that backlog. The next
agent collects the very same socket from the keeper. The keeper never reads a request; it
exits when told to (`ovnmeta cleanup`) or when no agent has been alive for KEEP_SECONDS.

An agent that stops on request also leaves haproxy's readiness check with the keeper (HOLD),
for HOLD_SECONDS: the check's connection waits in that socket's backlog instead of being
refused, so haproxy goes on using the maps the stopping agent vouched for, and the next
agent answers the check once it has read back and corrected what haproxy holds. Nobody
comes back in time: the keeper closes it, the check fails, and haproxy sends everything
through the socket. A crash leaves nothing to hold, so the check fails at once.
"""

from __future__ import annotations

import enum
import os
import select
import socket
import struct
import sys
import time

KEEP_SECONDS = 60.0
# Longer than haproxy's check timeout (2 s): the check that connected last before it is
# closed has failed by then anyway. Bounds how long a stopped agent's maps stay in use.
HOLD_SECONDS = 3.0


class Command(bytes, enum.Enum):
    """One byte on the keeper's control socket. The bytes are a wire format: a keeper
    outlives upgrades, so an agent may talk to one an older ovnmeta started."""
    FETCH = b"f"      # a duplicate of the listening socket; the asker becomes the owner
    PING = b"p"
    RELEASE = b"x"    # close the socket and exit
    HOLD = b"h"       # keep this readiness socket for HOLD_SECONDS
    TAKE = b"r"       # the readiness socket held, if any
    CAN_HOLD = b"v"   # a keeper from before HOLD answers it as a FETCH


FETCH, PING, RELEASE, HOLD, TAKE, CAN_HOLD = Command
SOCKET_REPLY = b"s"   # what a FETCH is answered with


def control_path(socket_path: str) -> str:
    return socket_path + ".handoff"


def _ask(socket_path: str, command: Command, timeout: float = 2.0,
         give: socket.socket | None = None) -> list[int] | None:
    """The fds the keeper answers `command` with; None when no keeper answers it."""
    ctl = control_path(socket_path)
    if not os.path.exists(ctl):
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(ctl)
            socket.send_fds(conn, [command.value], [give.fileno()] if give else [])
            reply, fds, _, _ = socket.recv_fds(conn, 16, 1)
    except OSError:
        return None
    expected = SOCKET_REPLY if command is FETCH else command.value
    if reply != expected:    # gone mid-answer, or a keeper too old to know the command
        for fd in fds:
            os.close(fd)
        return None
    return fds


def collect(socket_path: str) -> socket.socket | None:
    """The listening socket a keeper holds, or None when there is no keeper."""
    fds = _ask(socket_path, FETCH)
    return socket.socket(fileno=fds[0]) if fds else None


def alive(socket_path: str) -> bool:
    """A keeper answers for this socket."""
    return _ask(socket_path, PING) is not None


def hold(socket_path: str, ready: socket.socket) -> bool:
    """Leave the readiness check's listening socket with the keeper for HOLD_SECONDS."""
    return _ask(socket_path, HOLD, give=ready) is not None


def take_held(socket_path: str) -> socket.socket | None:
    """The readiness socket a stopped agent left with the keeper, if it still holds it."""
    fds = _ask(socket_path, TAKE)
    return socket.socket(fileno=fds[0]) if fds else None


def can_hold(socket_path: str) -> bool:
    """The keeper knows HOLD (one an earlier ovnmeta started does not: it outlives upgrades)."""
    return _ask(socket_path, CAN_HOLD) is not None


def release(socket_path: str) -> bool:
    """Tell the keeper to close its copy and exit; True if one was there."""
    return _ask(socket_path, RELEASE) is not None


def start(sock: socket.socket, socket_path: str, timeout: float = 5.0) -> bool:
    """Start a keeper holding sock, owned by this process; True once it answers."""
    ctl = control_path(socket_path)
    # The keeper being replaced removes its own path as it exits: maybe before, maybe now.
    try:
        os.unlink(ctl)
    except FileNotFoundError:
        pass
    import subprocess   # here: the keeper itself imports as little as it can (its memory)
    from ovnmeta.host import outlive
    fd = sock.fileno()
    argv, env = outlive.helper_argv(
        [sys.executable, "-m", "ovnmeta.agent.handoff", str(fd), ctl, str(os.getpid()),
         str(KEEP_SECONDS), str(HOLD_SECONDS)])
    subprocess.Popen(argv, pass_fds=[fd], env=env,
                     start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(ctl):
            return True
        time.sleep(0.005)
    return False


def _peer_pid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def _pidfd(pid: int) -> int | None:
    """A pidfd of the owner (readable once it has exited), or None when it is gone."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _alive(pidfd: int | None) -> bool:
    return pidfd is not None and not select.select([pidfd], [], [], 0)[0]


class _Keeper:
    """The keeper's state: the socket it keeps, who owns it, the readiness socket held."""

    def __init__(self, fd: int, owner: int, hold_seconds: float) -> None:
        self.fd, self.hold_seconds = fd, hold_seconds
        self.owner_fd = _pidfd(owner)
        self.orphaned_since: float | None = None
        self.held: int | None = None     # a readiness socket left by a stopping agent
        self.held_until = 0.0

    def timeout(self, now: float) -> float:
        if self.held is not None and now >= self.held_until:
            self._drop_held()       # nobody came for it: haproxy's check fails
        return 1.0 if self.held is None else max(0.01, min(1.0, self.held_until - now))

    def orphaned_for(self, now: float) -> float:
        """How long no owner has been alive (0 while one is)."""
        if _alive(self.owner_fd):
            self.orphaned_since = None
        elif self.orphaned_since is None:
            self.orphaned_since = now
        return now - self.orphaned_since if self.orphaned_since is not None else 0.0

    def answer(self, conn: socket.socket, command: bytes, fds: list[int]) -> bool:
        """Answer one command; False when the keeper is to exit."""
        if command == HOLD.value:
            self._drop_held()
            if fds:
                self.held, self.held_until = fds.pop(0), time.monotonic() + self.hold_seconds
                socket.send_fds(conn, [command], [])
        for extra in fds:
            os.close(extra)
        if command == HOLD.value:
            return True
        if command == TAKE.value:
            socket.send_fds(conn, [command], [] if self.held is None else [self.held])
            self._drop_held()
        elif command in (RELEASE.value, PING.value, CAN_HOLD.value):
            socket.send_fds(conn, [command], [])
            return command != RELEASE.value
        else:   # FETCH, and whatever an agent newer than this keeper asks
            socket.send_fds(conn, [SOCKET_REPLY], [self.fd])
            if self.owner_fd is not None:
                os.close(self.owner_fd)
            self.owner_fd, self.orphaned_since = _pidfd(_peer_pid(conn)), None
        return True

    def _drop_held(self) -> None:
        if self.held is not None:
            os.close(self.held)
            self.held = None


def _keep(fd: int, ctl: str, owner: int, seconds: float,
          hold_seconds: float = HOLD_SECONDS) -> None:
    """Serve duplicates of fd to whoever asks; the last one to ask is the owner."""
    tmp = f"{ctl}.{os.getpid()}"
    keeper = _Keeper(fd, owner, hold_seconds)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(tmp)
        os.chmod(tmp, 0o600)
        server.listen(8)
        os.replace(tmp, ctl)
        mine = os.stat(ctl).st_ino
        while True:
            now = time.monotonic()
            server.settimeout(keeper.timeout(now))
            if keeper.orphaned_for(now) > seconds:
                break  # nobody came back: connections are refused from now on
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with conn:
                try:
                    conn.settimeout(2.0)
                    command, fds, _, _ = socket.recv_fds(conn, 1, 1)
                    if not keeper.answer(conn, command, fds):
                        break
                except OSError:
                    continue
        try:
            if os.stat(ctl).st_ino == mine:  # not a newer keeper's
                os.unlink(ctl)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    _keep(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
          *(float(a) for a in sys.argv[5:6]))
