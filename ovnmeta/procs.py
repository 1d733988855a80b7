"""Whether a PID is a live process: zombie-aware, since daemons we start are not our
children and nothing may reap them (a container's PID 1 often does not)."""

from __future__ import annotations

import ctypes
import os
import signal
import time

PR_SET_CHILD_SUBREAPER = 36


def running(pid: int) -> bool:
    """The process exists and has not exited; a zombie child of ours is reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    if state in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def become_subreaper() -> None:
    """Adopt orphaned descendants (daemonized haproxy masters) so that their exits are
    reaped by us rather than left as zombies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait until the process has ended, SIGKILL if it outlives the timeout."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if running(pid):
        os.kill(pid, signal.SIGKILL)
        while running(pid):
            time.sleep(0.02)
