"""Network namespaces: listing, entering, making and removing them, and sockets opened in one.

Entering is a setns() of the calling thread only (libc, not pyroute2's process-wide stack),
so threads can each work in their own namespace. Making one is unshare() and a bind mount on
/run/netns/<name>, without forking.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
from collections.abc import Iterator

from ovnmeta.core import naming
from ovnmeta.host import rtnl_read

LOG = logging.getLogger(__name__)
NETNS_DIR = "/run/netns"
THREAD_NETNS = "/proc/thread-self/ns/net"
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2


def list_namespaces() -> set[str]:
    """ovnmeta namespaces present on the host (a directory listing, cheap enough to poll)."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return set()
    return {n for n in names if n.startswith(naming.NAMESPACE_PREFIX)}


def is_namespace(ns: str) -> bool:
    """The name is a mounted network namespace, not a leftover file (a namespace whose
    mount went away, or anything else written there): only nsfs mounts have another
    device than the directory."""
    try:
        return os.stat(os.path.join(NETNS_DIR, ns)).st_dev != os.stat(NETNS_DIR).st_dev
    except FileNotFoundError:
        return False


def remove_leftover(ns: str) -> None:
    """Delete a namespace name that is not a namespace, so that one can be made there."""
    path = os.path.join(NETNS_DIR, ns)
    if os.path.exists(path) and not is_namespace(ns):
        os.unlink(path)


def open_in(ns: str | None, protocol: int = rtnl_read.NETLINK_ROUTE) -> socket.socket:
    """A netlink socket of `protocol` in namespace `ns` (None: the root namespace): a
    socket opened while this thread sits in a namespace stays bound to it."""
    if ns is None:
        return rtnl_read.open_socket(protocol)
    with entered(ns):
        return rtnl_read.open_socket(protocol)


@contextlib.contextmanager
def _returning() -> Iterator[None]:
    """Put the calling thread back in the network namespace it is in now, after the block
    (which may move it: setns, unshare)."""
    saved = os.open(THREAD_NETNS, os.O_RDONLY)
    try:
        try:
            yield
        finally:
            _check(_libc.setns(saved, CLONE_NEWNET), "setns back to the thread's namespace")
    finally:
        os.close(saved)


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """The calling thread inside namespace `ns` for the block, then back where it was.

    pyroute2's pushns/popns keep one stack for all threads and save the *main* thread's
    namespace (/proc/self), so two threads using them at once can leave one of them in the
    wrong namespace: a test driver's main thread was left in a VM's namespace that way, and
    the agent it started could not reach nova nor find its veths. This saves the calling
    thread's own namespace, and never creates one (pushns would). Nor does it list the
    namespaces first, as pyroute2's setns() does at every call (1-2 ms at 200 of them)."""
    with _returning():
        target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
        try:
            _check(_libc.setns(target, CLONE_NEWNET), f"setns to network namespace {ns}")
        finally:
            os.close(target)
        yield


def _check(rc: int, what: str) -> None:
    """Raise the errno of a libc call that returned non-zero, saying which call it was."""
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} failed: {os.strerror(err)}")


def new_netns(path: str) -> None:
    """Create a network namespace pinned by a bind mount at path, without forking.

    unshare() moves only the calling thread, which then goes back where it was (a thread
    made for it cost 5 ms to start while other threads held the GIL). On failure the file
    made for the mount is removed, so that a retry finds no leftover."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)
    mounted = False
    try:
        with _returning():
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            _check(_libc.mount(THREAD_NETNS.encode(), path.encode(), b"none", MS_BIND, None),
                   f"bind mount on {path}")
            mounted = True
    except OSError:
        if not mounted:
            os.unlink(path)
        raise


def remove_netns(path: str) -> None:
    """Unmount (lazily: a process or socket inside keeps it alive) and unlink a namespace."""
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        LOG.debug("umount %s: %s", path, os.strerror(err))
    os.unlink(path)
