"""Netlink plumbing with pyroute2: namespaces, the veth pair, addresses, TX checksum.

With rtnl_read (its bare-socket reads), the only module that talks netlink. Reads give
model records; writes execute plan steps.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Iterator

from ovnmeta.core import naming
from ovnmeta.core.model import METADATA_V6, LinkState, NetworkSpec
from ovnmeta.host import pyroute2_lean

pyroute2_lean.register()   # before the first pyroute2 import: only what follows is loaded
import pyroute2.netns as netns  # noqa: E402
from pyroute2.ethtool.ioctl import IoctlEthtool  # noqa: E402
from pyroute2.iproute.linux import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.nftables.main import NFTables  # noqa: E402

from ovnmeta.host import rtnl_read  # noqa: E402  (pyroute2's message classes, lean too)

LOG = logging.getLogger(__name__)
NETNS_DIR = "/run/netns"
IFA_F_NODAD = 0x02
TX_CSUM_FLAG = "tx-checksumming"   # the legacy ioctl's name: every TX checksum offload
LOOPBACK_IFINDEX = 1   # the kernel gives lo index 1 in every new namespace
NFPROTO_UNSPEC = 0
# NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE: entries that name a MAC.
RESOLVED = 0x02 | 0x04 | 0x08 | 0x10
NUD_PERMANENT = 0x80


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


_cache = threading.local()


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Reuse one netlink socket per namespace (the root one included) and the devices'
    indexes for the calls inside (one network's steps): each pyroute2 call costs about a
    millisecond, and a new network takes a dozen of them.

    Not kept longer: a socket pins its namespace, so a cached one would keep seeing a
    namespace that was deleted by hand.
    """
    _cache.sockets, _cache.indexes = {}, {}
    try:
        yield
    finally:
        for ipr in _cache.sockets.values():
            ipr.close()
        _cache.sockets = _cache.indexes = None


@contextlib.contextmanager
def _ns_socket(ns: str | None) -> Iterator[IPRoute]:
    """A netlink socket in namespace `ns` (None: the root namespace)."""
    cached = getattr(_cache, "sockets", None)
    if cached is not None and ns in cached:
        yield cached[ns]
        return
    if ns is None:
        ipr = IPRoute()
    else:
        # A netlink socket opened while this thread sits in the namespace stays bound to it.
        with entered(ns):
            ipr = IPRoute()
    if cached is not None:
        cached[ns] = ipr
        yield ipr
        return
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, ns: str | None, dev: str) -> int:
    """The device's index, looked up once per batch; IndexError when it is missing."""
    indexes = getattr(_cache, "indexes", None)
    if indexes is not None and (ns, dev) in indexes:
        return indexes[ns, dev]
    idx = ipr.link_lookup(ifname=dev)[0]
    if indexes is not None:
        indexes[ns, dev] = idx
    return idx


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


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """The calling thread inside namespace `ns` for the block, then back where it was.

    pyroute2's pushns/popns keep one stack for all threads and save the *main* thread's
    namespace (/proc/self), so two threads using them at once can leave one of them in the
    wrong namespace: a test driver's main thread was left in a VM's namespace that way, and
    the agent it started could not reach nova nor find its veths. This saves the calling
    thread's own namespace, and never creates one (pushns would)."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(ns, flags=0)
        try:
            yield
        finally:
            netns.setns(saved, flags=0)
    finally:
        os.close(saved)


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


def _ignored(address: str) -> bool:
    # The kernel's own EUI-64 link-local address is not ours to manage.
    iface = ipaddress.ip_interface(address)
    return iface.version == 6 and iface.ip.is_link_local and address != METADATA_V6


@contextlib.contextmanager
def _read_socket(ns: str | None) -> Iterator[socket.socket]:
    """A bare netlink socket for reads (rtnl_read), opened in `ns` (None: here)."""
    if ns is None:
        sock = rtnl_read.open_socket()
    else:
        with entered(ns):
            sock = rtnl_read.open_socket()
    try:
        yield sock
    finally:
        sock.close()


def read_outer(dev: str) -> tuple[bool, bool]:
    """(exists, admin up) of the root-namespace end: one RTM_GETLINK, not a dump."""
    with _read_socket(None) as sock:
        link = rtnl_read.link(sock, dev)
    return (False, False) if link is None else (True, bool(link.flags & 1))


def read_inner(ns: str, dev: str, with_csum: bool = True
               ) -> tuple[LinkState | None, tuple[str, ...]]:
    """The namespace end of our pair (None when it or the namespace is missing), and the
    names of the other devices in the namespace besides lo: another agent's."""
    try:
        with _read_socket(ns) as sock:
            links = {link.name: link for link in rtnl_read.links(sock)}
            link = links.get(dev)
            addrs = frozenset(
                f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in rtnl_read.addresses(sock, link.index)) if link else frozenset()
            entries = [(n["state"], n.get("NDA_DST"), (n.get("NDA_LLADDR") or "").lower())
                       for n in rtnl_read.neighbours(sock, link.index)
                       if n.get("NDA_LLADDR")] if link else []
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
    with _ns_socket(spec.namespace) as ipr:
        idx = _index(ipr, spec.namespace, spec.inner)
        for ip in ips:
            try:
                ipr.neigh("del", dst=ip, ifindex=idx)
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:
                    raise


def add_neighbours(spec: NetworkSpec, entries: tuple[tuple[str, str], ...]) -> None:
    """Permanent (IP, MAC) entries; one the kernel already has, in any state, is replaced."""
    with _ns_socket(spec.namespace) as ipr:
        idx = _index(ipr, spec.namespace, spec.inner)
        for ip, mac in entries:
            ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=idx, state=NUD_PERMANENT)


def _delete_link(ipr, name: str) -> None:
    """Delete a device by name; one already gone is fine."""
    idx = ipr.link_lookup(ifname=name)
    if idx:
        try:
            ipr.link("del", index=idx[0])
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise


def delete_links(ns: str, names: tuple[str, ...]) -> None:
    """Delete devices in a namespace by name; one already gone is fine."""
    _forget_indexes(ns)
    with _ns_socket(ns) as ipr:
        for name in names:
            _delete_link(ipr, name)


def listening_inodes(ns: str, address: str, port: int) -> set[int]:
    """Socket inodes listening on address:port inside a namespace (empty when it is gone)."""
    try:
        with entered(ns):
            sock = rtnl_read.open_socket(rtnl_read.NETLINK_SOCK_DIAG)
    except OSError:
        return set()
    try:
        return rtnl_read.tcp_listeners(sock, address, port)
    finally:
        sock.close()


def _nftables(ns: str) -> NFTables:
    with entered(ns):
        return NFTables(nfgen_family=NFPROTO_UNSPEC)


def read_firewall(ns: str) -> tuple[str, ...]:
    """nftables tables in a namespace, as "family:name" (iptables-nft makes them): ovnmeta
    makes none, so any is another agent's (neutron's CHECKSUM rule on a netdev bridge)."""
    try:
        with entered(ns):
            sock = rtnl_read.open_socket(rtnl_read.NETLINK_NETFILTER)
    except OSError:
        return ()
    try:
        return tuple(sorted(rtnl_read.nftables_tables(sock)))
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
            return ()   # a kernel without nf_tables: no table can be there
        raise
    finally:
        sock.close()


def delete_firewall(ns: str, tables: tuple[str, ...]) -> None:
    nft = _nftables(ns)
    try:
        for table in tables:
            family, name = table.split(":", 1)
            try:
                nft.table("del", name=name, family=int(family))
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:
                    raise
    finally:
        nft.close()


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


def _ethtool(ns: str, dev: str) -> IoctlEthtool:
    """ethtool's ioctl on a device in a namespace (its socket is opened there). The ioctl,
    not ethtool's netlink family: opening pyroute2's netlink Ethtool costs 2 ms, and its
    calls several more, where an ioctl costs microseconds."""
    with entered(ns):
        return IoctlEthtool(dev)


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 4096


def _new_netns(path: str) -> None:
    """Create a network namespace pinned by a bind mount at path, without forking.

    unshare() moves only the calling thread, so it runs in a throwaway thread.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)
    errors: list[OSError] = []

    def work() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            errors.append(OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed"))
            return
        source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        if _libc.mount(source, path.encode(), b"none", MS_BIND, None) != 0:
            errors.append(OSError(ctypes.get_errno(), f"bind mount on {path} failed"))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if errors:
        os.unlink(path)
        raise errors[0]


def create_namespace(spec: NetworkSpec) -> None:
    os.makedirs(NETNS_DIR, exist_ok=True)
    remove_leftover(spec.namespace)
    _new_netns(os.path.join(NETNS_DIR, spec.namespace))
    with _ns_socket(spec.namespace) as ipr:
        ipr.link("set", index=LOOPBACK_IFINDEX, state="up")


def create_veth(spec: NetworkSpec) -> None:
    """A new pair, its inner end made with the localport's MAC and the MTU (one request:
    ConfigureInner then finds little to do); ends left under our names (in the root
    namespace or in the namespace) are deleted first, so the step converges whatever an
    earlier failure left."""
    _forget_indexes(None)
    _forget_indexes(spec.namespace)
    with _ns_socket(None) as ipr:
        stale = ipr.link_lookup(ifname=spec.outer)
        if stale:
            ipr.link("del", index=stale[0])
        with _ns_socket(spec.namespace) as inside:
            stale = inside.link_lookup(ifname=spec.inner)
            if stale:
                LOG.warning("network %s: deleting a stale %s in %s", spec.network_id,
                            spec.inner, spec.namespace)
                inside.link("del", index=stale[0])
        peer: dict = {"ifname": spec.inner, "net_ns_fd": spec.namespace, "address": spec.mac}
        if spec.mtu:
            peer["mtu"] = spec.mtu
        ipr.link("add", ifname=spec.outer, kind="veth", peer=peer)


def configure_inner(spec: NetworkSpec, csum_off: bool) -> None:
    with _ns_socket(spec.namespace) as ipr:
        idx = _index(ipr, spec.namespace, spec.inner)
        link = ipr.get_links(index=idx)[0]
        changes = {"mtu": spec.mtu} if spec.mtu and link.get("IFLA_MTU") != spec.mtu else {}
        if (link.get("IFLA_ADDRESS") or "").lower() != spec.mac:
            ipr.link("set", index=idx, state="down")
            ipr.link("set", index=idx, address=spec.mac)
        elif link["flags"] & 1 and not changes:
            changes = None   # up with the right MAC and MTU already (a pair just made)
        if changes is not None:
            ipr.link("set", index=idx, state="up", **changes)
    if csum_off:
        # The userspace datapath forwards partial checksums as they are; receivers drop them.
        eth = _ethtool(spec.namespace, spec.inner)
        try:
            eth.set_offload_flag(TX_CSUM_FLAG, 0)
        finally:
            eth.close()


def add_address(spec: NetworkSpec, address: str) -> None:
    iface = ipaddress.ip_interface(address)
    with _ns_socket(spec.namespace) as ipr:
        idx = _index(ipr, spec.namespace, spec.inner)
        try:
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                     flags=IFA_F_NODAD if iface.version == 6 else 0)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise


def del_address(spec: NetworkSpec, address: str) -> None:
    iface = ipaddress.ip_interface(address)
    with _ns_socket(spec.namespace) as ipr:
        idx = _index(ipr, spec.namespace, spec.inner)
        try:
            ipr.addr("del", index=idx, address=str(iface.ip),
                     prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            if exc.code != errno.EADDRNOTAVAIL:
                raise


def set_outer_up(spec: NetworkSpec) -> None:
    with _ns_socket(None) as ipr:
        ipr.link("set", index=_index(ipr, None, spec.outer), state="up")


def delete(net_id: str) -> None:
    """Remove the namespace and the pair; missing parts are fine.

    Unmounting the namespace is enough for the pair: the kernel destroys both ends in the
    background, which is several times faster than deleting the veth synchronously. Only an
    outer end left without its namespace is deleted here.
    """
    ns = naming.namespace(net_id)
    forget(ns)
    if is_namespace(ns):
        netns.remove(ns)
        return
    remove_leftover(ns)
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=naming.outer_device(net_id))
        if idx:
            ipr.link("del", index=idx[0])


def outer_devices() -> set[str]:
    """Our outer ends in the root namespace, of whichever network (sysfs: no netlink dump)."""
    return {d for d in os.listdir("/sys/class/net") if naming.is_outer_device(d)}


def delete_outer(dev: str) -> None:
    """Delete an outer end (and so its peer); already gone is fine."""
    with IPRoute() as ipr:
        _delete_link(ipr, dev)
