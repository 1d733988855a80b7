"""Our veth pair and what is on it: the pair, addresses, neighbours, MTU, TX checksum.

With rtnl_read and rtnl_write (bare-socket requests) the only module that changes links.
Reads give model records; writes execute plan steps. Namespaces themselves are
ovnmeta.host.namespace'.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Iterator

from ovnmeta.core import naming
from ovnmeta.core.model import METADATA_V6, LinkState, NetworkSpec
from ovnmeta.host import rtnl_read, rtnl_write
from ovnmeta.host.namespace import (NETNS_DIR, is_namespace, new_netns, open_in,
                                     remove_leftover, remove_netns)

LOG = logging.getLogger(__name__)
IFA_F_NODAD = 0x02
LOOPBACK_IFINDEX = 1   # the kernel gives lo index 1 in every new namespace
# NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE: entries that name a MAC.
RESOLVED = 0x02 | 0x04 | 0x08 | 0x10
NUD_PERMANENT = 0x80

_cache = threading.local()


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Reuse one netlink socket per namespace (the root one included) and the devices'
    indexes for the calls inside (one network's reads and steps): entering a namespace and
    opening a socket cost more than most requests, and a new network makes a dozen.

    Not kept longer: a socket pins its namespace, so a cached one would keep seeing a
    namespace that was deleted by hand.
    """
    _cache.sockets, _cache.indexes = {}, {}
    try:
        yield
    finally:
        for sock in _cache.sockets.values():
            sock.close()
        _cache.sockets = _cache.indexes = None


@contextlib.contextmanager
def _ns_socket(ns: str | None) -> Iterator[socket.socket]:
    """A bare netlink socket (rtnl_read, rtnl_write) in namespace `ns` (None: the root
    namespace); the batch's, inside one."""
    cached = getattr(_cache, "sockets", None)
    if cached is not None and ns in cached:
        yield cached[ns]
        return
    sock = open_in(ns)
    if cached is not None:
        cached[ns] = sock
        yield sock
        return
    try:
        yield sock
    finally:
        sock.close()


def _index(sock: socket.socket, ns: str | None, dev: str) -> int:
    """The device's index, looked up once per batch; IndexError when it is missing."""
    indexes = getattr(_cache, "indexes", None)
    if indexes is not None and (ns, dev) in indexes:
        return indexes[ns, dev]
    link = rtnl_read.link(sock, dev)
    if link is None:
        raise IndexError(f"no device {dev} in {ns or 'the root namespace'}")
    if indexes is not None:
        indexes[ns, dev] = link.index
    return link.index


def _forget_indexes(ns: str | None) -> None:
    indexes = getattr(_cache, "indexes", None)
    if indexes:
        for key in [k for k in indexes if k[0] == ns]:
            del indexes[key]


def forget(ns: str) -> None:
    """Drop a cached socket of a namespace that is being deleted."""
    _forget_indexes(ns)
    cached = getattr(_cache, "sockets", None)
    if cached and ns in cached:
        cached.pop(ns).close()


def _ignored(address: str) -> bool:
    # The kernel's own EUI-64 link-local address is not ours to manage.
    iface = ipaddress.ip_interface(address)
    return iface.version == 6 and iface.ip.is_link_local and address != METADATA_V6


def read_outer(dev: str) -> tuple[bool, bool]:
    """(exists, admin up) of the root-namespace end: one RTM_GETLINK, not a dump."""
    with _ns_socket(None) as sock:
        link = rtnl_read.link(sock, dev)
    return (False, False) if link is None else (True, bool(link.flags & 1))


def read_inner(ns: str, dev: str, with_csum: bool = True
               ) -> tuple[LinkState | None, tuple[str, ...]]:
    """The namespace end of our pair (None when it or the namespace is missing), and the
    names of the other devices in the namespace besides lo: another agent's."""
    try:
        with _ns_socket(ns) as sock:
            links = {link.name: link for link in rtnl_read.links(sock)}
            link = links.get(dev)
            addrs = frozenset(f"{a.address}/{a.prefixlen}"
                              for a in rtnl_read.addresses(sock, link.index)) \
                if link else frozenset()
            entries = [(n.state, n.dst, n.lladdr)
                       for n in rtnl_read.neighbours(sock, link.index)
                       if n.lladdr] if link else []
            tx_csum = bool(link and with_csum and rtnl_read.tx_checksumming(sock, dev))
    except OSError as exc:  # the namespace went away under us
        if exc.errno in (errno.ENOENT, errno.EINVAL):
            return None, ()
        raise
    foreign = tuple(sorted(n for n in links if n not in (dev, "lo")))
    if link is None:
        return None, foreign
    return LinkState(
        mac=link.address, mtu=link.mtu,
        up=bool(link.flags & 1), addresses=frozenset(a for a in addrs if not _ignored(a)),
        tx_csum=tx_csum,
        neighbours=frozenset((ip, mac) for state, ip, mac in entries if state & RESOLVED),
        permanent=frozenset((ip, mac) for state, ip, mac in entries
                            if state & NUD_PERMANENT)), foreign


def delete_neighbours(spec: NetworkSpec, ips: tuple[str, ...]) -> None:
    with _ns_socket(spec.namespace) as sock:
        idx = _index(sock, spec.namespace, spec.inner)
        for ip in ips:
            try:
                rtnl_write.delete_neighbour(sock, idx, ip)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise


def add_neighbours(spec: NetworkSpec, entries: tuple[tuple[str, str], ...]) -> None:
    """Permanent (IP, MAC) entries; one the kernel already has, in any state, is replaced."""
    with _ns_socket(spec.namespace) as sock:
        idx = _index(sock, spec.namespace, spec.inner)
        for ip, mac in entries:
            rtnl_write.replace_neighbour(sock, idx, ip, mac, NUD_PERMANENT)


def _delete_link(sock: socket.socket, name: str) -> None:
    """Delete a device by name; one already gone is fine."""
    link = rtnl_read.link(sock, name)
    if link:
        try:
            rtnl_write.delete_link(sock, link.index)
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise


def delete_links(ns: str, names: tuple[str, ...]) -> None:
    """Delete devices in a namespace by name; one already gone is fine."""
    _forget_indexes(ns)
    with _ns_socket(ns) as sock:
        for name in names:
            _delete_link(sock, name)


def create_namespace(spec: NetworkSpec) -> None:
    os.makedirs(NETNS_DIR, exist_ok=True)
    remove_leftover(spec.namespace)
    new_netns(os.path.join(NETNS_DIR, spec.namespace))
    with _ns_socket(spec.namespace) as sock:
        rtnl_write.set_link(sock, LOOPBACK_IFINDEX, up=True)


def create_veth(spec: NetworkSpec) -> None:
    """A new pair, its inner end made with the localport's MAC and the MTU (one request:
    ConfigureInner then finds little to do); ends left under our names (in the root
    namespace or in the namespace) are deleted first, so the step converges whatever an
    earlier failure left."""
    _forget_indexes(None)
    _forget_indexes(spec.namespace)
    with _ns_socket(None) as root:
        _delete_link(root, spec.outer)
        with _ns_socket(spec.namespace) as inside:
            if rtnl_read.link(inside, spec.inner):
                LOG.warning("network %s: deleting a stale %s in %s", spec.network_id,
                            spec.inner, spec.namespace)
                _delete_link(inside, spec.inner)
        fd = os.open(os.path.join(NETNS_DIR, spec.namespace), os.O_RDONLY)
        try:
            rtnl_write.add_veth(root, spec.outer, spec.inner, fd, spec.mac, spec.mtu or 0)
        finally:
            os.close(fd)


def configure_inner(spec: NetworkSpec, csum_off: bool) -> None:
    with _ns_socket(spec.namespace) as sock:
        idx = _index(sock, spec.namespace, spec.inner)
        link = rtnl_read.link_at(sock, idx)
        if link is None:
            raise IndexError(f"no device {spec.inner} in {spec.namespace}")
        mtu = spec.mtu if spec.mtu and link.mtu != spec.mtu else 0
        if link.address != spec.mac.lower():
            rtnl_write.set_link(sock, idx, up=False)
            rtnl_write.set_link(sock, idx, mac=spec.mac)
            rtnl_write.set_link(sock, idx, up=True, mtu=mtu)
        elif not (link.flags & rtnl_write.IFF_UP and not mtu):
            rtnl_write.set_link(sock, idx, up=True, mtu=mtu)
        # (else up with the right MAC and MTU already: a pair just made)
        if csum_off:
            # The userspace datapath forwards partial checksums as they are; receivers drop
            # them.
            rtnl_write.set_tx_checksumming(sock, spec.inner, False)


def add_address(spec: NetworkSpec, address: str) -> None:
    iface = ipaddress.ip_interface(address)
    with _ns_socket(spec.namespace) as sock:
        idx = _index(sock, spec.namespace, spec.inner)
        try:
            rtnl_write.add_address(sock, idx, str(iface.ip), iface.network.prefixlen,
                                   flags=IFA_F_NODAD if iface.version == 6 else 0)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise


def del_address(spec: NetworkSpec, address: str) -> None:
    iface = ipaddress.ip_interface(address)
    with _ns_socket(spec.namespace) as sock:
        idx = _index(sock, spec.namespace, spec.inner)
        try:
            rtnl_write.delete_address(sock, idx, str(iface.ip), iface.network.prefixlen)
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                raise


def set_outer_up(spec: NetworkSpec) -> None:
    with _ns_socket(None) as sock:
        rtnl_write.set_link(sock, _index(sock, None, spec.outer), up=True)


def delete(net_id: str) -> None:
    """Remove the namespace and the pair; missing parts are fine.

    Unmounting the namespace is enough for the pair: the kernel destroys both ends in the
    background, which is several times faster than deleting the veth synchronously. Only an
    outer end left without its namespace is deleted here.
    """
    ns = naming.namespace(net_id)
    forget(ns)
    if is_namespace(ns):
        remove_netns(os.path.join(NETNS_DIR, ns))
        return
    remove_leftover(ns)
    with _ns_socket(None) as sock:
        _delete_link(sock, naming.outer_device(net_id))


def outer_devices() -> set[str]:
    """Our outer ends in the root namespace, of whichever network (sysfs: no netlink dump)."""
    return {d for d in os.listdir("/sys/class/net") if naming.is_outer_device(d)}


def delete_outer(dev: str) -> None:
    """Delete an outer end (and so its peer); already gone is fine."""
    with _ns_socket(None) as sock:
        _delete_link(sock, dev)

