"""Sockets inside a namespace: a TCP connect from there, who listens on an address, and
letting a closing listener's queued connections move to another (tcp_migrate_req)."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from ovnmeta.host import rtnl_read
from ovnmeta.host.namespace import entered, open_in

LOG = logging.getLogger(__name__)


def tcp_connect(ns: str, address: str, port: int, timeout: float) -> OSError | None:
    """A TCP connect made from inside a namespace: None when it succeeded, else the error."""
    with entered(ns):
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                             socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        return None
    except OSError as exc:
        return exc
    finally:
        sock.close()


def listening_inodes(ns: str, address: str, port: int) -> set[int]:
    """Socket inodes listening on address:port inside a namespace (empty when it is gone)."""
    try:
        sock = open_in(ns, rtnl_read.NETLINK_SOCK_DIAG)
    except OSError:
        return set()
    try:
        return rtnl_read.tcp_listeners(sock, address, port)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EPROTONOSUPPORT, errno.EOPNOTSUPP):
            raise
        # No inet_diag in this kernel (a module a container could not load): the text
        # table answers the same, at 4 ms a read.
        return listening_from_proc(ns, address, port)
    finally:
        sock.close()


def proc_net_key(address: str, port: int) -> str:
    """An address:port as /proc/net/tcp{,6} spells it (32-bit words in host order)."""
    packed = ipaddress.ip_address(address).packed
    words = [packed[i:i + 4][::-1].hex().upper() for i in range(0, len(packed), 4)]
    return f"{''.join(words)}:{port:04X}"


def listening_from_proc(ns: str, address: str, port: int) -> set[int]:
    table = "tcp6" if ":" in address else "tcp"
    key = proc_net_key(address, port)
    try:
        with entered(ns):
            with open(f"/proc/thread-self/net/{table}") as f:
                lines = f.read().splitlines()[1:]
    except OSError:
        return set()
    out = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[1] == key and fields[3] == "0A":  # LISTEN
            out.add(int(fields[9]))
    return out


def migrate_queued_connections(ns: str) -> None:
    """Let the kernel hand connections queued on a closing listener to another listener of
    the same port (net.ipv4.tcp_migrate_req, Linux 5.14): a process that stops while ours
    listens beside it then drops none. Best effort on older kernels."""
    with entered(ns):
        try:
            with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
                f.write("1")
        except OSError as exc:
            LOG.debug("tcp_migrate_req not set in %s: %s", ns, exc)
