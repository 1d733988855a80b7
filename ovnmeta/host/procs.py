"""Whether a PID is a live process: zombie-aware, since daemons we start are not our
children and nothing may reap them (a container's PID 1 often does not)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

PR_SET_CHILD_SUBREAPER = 36


def running(pid: int) -> bool:
    """The process exists and has not exited; a zombie child of ours is reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):   # gone: no file, or ESRCH while it is being reaped
        return False
    if state in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def cmdline(pid: int) -> bytes:
    """The raw /proc/PID/cmdline (NUL-separated); b"" once the process is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


@dataclass
class LiveProcess:
    pid: int
    parent: int

    @cached_property
    def cmdline(self) -> bytes:
        """Read on first use: most scans look at few processes' command lines."""
        return cmdline(self.pid)


def pids() -> Iterator[int]:
    """Every process id on the host, live or not: the one listing of /proc's processes."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def live() -> Iterator[LiveProcess]:
    """Every live process on the host, zombies left out, with its parent: what finding a
    haproxy by its config and neutron's agents scan. (What runs inside our namespaces is
    found by foreign.in_namespaces, which reads a process's namespace before its state.)"""
    for pid in pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                state, parent = f.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError, IndexError):   # gone meanwhile
            continue
        if state not in ("Z", "X"):
            yield LiveProcess(pid, int(parent))


def children(pid: int) -> list[int]:
    """Direct children of a process (a haproxy master's workers)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def socket_inodes(pids: list[int]) -> set[int]:
    """Inodes of the sockets these processes hold open."""
    out = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    return out


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Get sig when the parent (its PID as the parent passed it) dies: a worker must not
    outlive a killed agent, whose successor starts its own."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), sig)


def become_subreaper() -> None:
    """Adopt orphaned descendants (daemonized haproxy masters) so that their exits are
    reaped by us rather than left as zombies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def terminate(pid: int, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send sig (SIGTERM), wait until the process has ended, SIGKILL if it outlives the
    timeout."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if running(pid):
        os.kill(pid, signal.SIGKILL)
        while running(pid):
            time.sleep(0.02)
