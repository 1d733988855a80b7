"""Netlink plumbing: namespaces, the veth pair, addresses, neighbours, TX checksum.

With rtnl_read and rtnl_write (bare-socket requests) the only module that talks netlink;
pyroute2 remains for entering and removing namespaces and for nftables. Reads give model
records; writes execute plan steps.
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
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.nftables.main import NFTables  # noqa: E402

from ovnmeta.host import rtnl_read, rtnl_write  # noqa: E402  (pyroute2's messages, lean too)

LOG = logging.getLogger(__name__)
NETNS_DIR = "/run/netns"
THREAD_NETNS = "/proc/thread-self/ns/net"
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
IFA_F_NODAD = 0x02
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
    sock = _open_in(ns)
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


def _open_in(ns: str | None, protocol: int = rtnl_read.NETLINK_ROUTE) -> socket.socket:
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


def listening_inodes(ns: str, address: str, port: int) -> set[int]:
    """Socket inodes listening on address:port inside a namespace (empty when it is gone)."""
    try:
        sock = _open_in(ns, rtnl_read.NETLINK_SOCK_DIAG)
    except OSError:
        return set()
    try:
        return rtnl_read.tcp_listeners(sock, address, port)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EPROTONOSUPPORT, errno.EOPNOTSUPP):
            raise
        # No inet_diag in this kernel (a module a container could not load): the text
        # table answers the same, at 4 ms a read.
        return _listening_from_proc(ns, address, port)
    finally:
        sock.close()


def _proc_net_key(address: str, port: int) -> str:
    """An address:port as /proc/net/tcp{,6} spells it (32-bit words in host order)."""
    packed = ipaddress.ip_address(address).packed
    words = [packed[i:i + 4][::-1].hex().upper() for i in range(0, len(packed), 4)]
    return f"{''.join(words)}:{port:04X}"


def _listening_from_proc(ns: str, address: str, port: int) -> set[int]:
    table = "tcp6" if ":" in address else "tcp"
    key = _proc_net_key(address, port)
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


def _nftables(ns: str) -> NFTables:
    with entered(ns):
        return NFTables(nfgen_family=NFPROTO_UNSPEC)


def read_firewall(ns: str) -> tuple[str, ...]:
    """nftables tables in a namespace, as "family:name" (iptables-nft makes them): ovnmeta
    makes none, so any is another agent's (neutron's CHECKSUM rule on a netdev bridge)."""
    try:
        sock = _open_in(ns, rtnl_read.NETLINK_NETFILTER)
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


def _new_netns(path: str) -> None:
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


def _remove_netns(path: str) -> None:
    """Unmount (lazily: a process or socket inside keeps it alive) and unlink a namespace."""
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        LOG.debug("umount %s: %s", path, os.strerror(err))
    os.unlink(path)


def create_namespace(spec: NetworkSpec) -> None:
    os.makedirs(NETNS_DIR, exist_ok=True)
    remove_leftover(spec.namespace)
    _new_netns(os.path.join(NETNS_DIR, spec.namespace))
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
        _remove_netns(os.path.join(NETNS_DIR, ns))
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
