"""Reads of the host's state over bare netlink sockets: links, addresses, neighbours,
nftables tables, listening TCP sockets, and (by ioctl) TX checksumming.

The rolling resync reads every namespace back once a reconcile_interval, and a pass reads
each network it converges. pyroute2's synchronous API runs an asyncio loop for each call
(about 1.3 ms a dump here, 0.6 ms to open an IPRoute) and decodes every attribute, so
reading one network back took 9.8 ms (scripts/bench_netns.py), most of it pyroute2's own.
Here a plain socket sends each request, and the answers are decoded here, only the few
attributes needed (pyroute2's message classes decoded every attribute of an address or a
neighbour: half of a read-back's time). The writes (rtnl_write) send their requests through
`_request` too.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import itertools
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

NETLINK_ROUTE = 0
NETLINK_SOCK_DIAG = 4
NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_GETLINK = 18
RTM_GETADDR = 22
RTM_GETNEIGH = 30
RTM_NEWLINK = 16
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFA_ADDRESS = 1
NDA_DST, NDA_LLADDR = 1, 2
RECV_BUFFER = 65536
TIMEOUT = 10.0         # s: the kernel answers at once; a socket that does not is an error
SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
NFT_GETTABLE = (10 << 8) | 1    # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE
NFTA_TABLE_NAME = 1
SOCK_DIAG_BY_FAMILY = 20
TCP_LISTEN = 10
_NFGENMSG = struct.Struct("=BBH")   # family, version, resource id (big-endian; 0 here)
IFREQ_SIZE = 40        # struct ifreq: a 16-byte name and a 24-byte union

_HEADER = struct.Struct("=IHHII")       # nlmsghdr: len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")   # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
_NDMSG = struct.Struct("=BxxxiHBB")     # family, ifindex, state, flags, type
# inet_diag_req_v2 (family, protocol, extensions, states) and inet_diag_sockid (ports and
# addresses in network order, interface, cookie); the answer, inet_diag_msg, is family,
# state, timer, retransmits, a sockid, then expires, queues, uid and inode.
_INET_DIAG_REQ = struct.Struct("=BBBxI")
_SOCKID = struct.Struct("!HH16s16s4x8x")
_DIAG_MSG_HEAD = struct.Struct("=BBxx")
_DIAG_MSG_TAIL = struct.Struct("=IIIII")   # expires, rqueue, wqueue, uid, inode
_seq = itertools.count(1)


@dataclass(frozen=True)
class Link:
    """What a read-back needs of a link. Decoded here from the top-level attributes: a
    link message carries dozens (statistics, per-family nests) that pyroute2 would all
    decode, 0.4 ms a link."""
    index: int
    flags: int
    name: str
    address: str      # lower-case MAC, '' when none
    mtu: int


@dataclass(frozen=True)
class Address:
    index: int
    prefixlen: int
    address: str      # IFA_ADDRESS: the address (the peer's, on a point-to-point link)


@dataclass(frozen=True)
class Neighbour:
    index: int
    state: int        # NUD_* bits
    dst: str
    lladdr: str       # lower-case MAC, '' when the entry has none (incomplete, failed)


def _mac(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


def _ip(family: int, value: bytes) -> str:
    try:
        return socket.inet_ntop(family, value)
    except (ValueError, OSError):   # not an address of that family
        return ""


def _link(data: bytes, offset: int, length: int) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, offset)
    name, address, mtu = "", "", 0
    for kind, value in _attrs(data, offset + _IFINFOMSG.size, offset + length):
        if kind == IFLA_IFNAME:
            name = _name(value)
        elif kind == IFLA_ADDRESS:
            address = _mac(value)
        elif kind == IFLA_MTU and len(value) >= 4:
            (mtu,) = struct.unpack_from("=I", value)
    return Link(index, flags, name, address, mtu)


def open_socket(protocol: int = NETLINK_ROUTE) -> socket.socket:
    """A netlink socket in the calling thread's namespace: it stays bound to that one."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    sock.settimeout(TIMEOUT)
    return sock


def _attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def _request(sock: socket.socket, kind: int, flags: int, body: bytes,
             decode: Callable[[bytes, int, int], list]) -> list:
    """Send one request and collect its answer, each message (its header at `offset`,
    `length` bytes) decoded by `decode`; OSError with the kernel's errno."""
    seq = next(_seq)
    sock.send(_HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0)
              + body)
    out = []
    while True:
        data = sock.recv(RECV_BUFFER)
        done = False
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, msg_type, msg_flags, msg_seq, _pid = _HEADER.unpack_from(data, offset)
            if length < _HEADER.size:
                raise OSError(errno.EIO, "malformed netlink answer")
            if msg_seq == seq and msg_flags & NLM_F_DUMP_INTR:
                # The table changed during the dump: what came is not one state of it.
                raise OSError(errno.EINTR, "netlink dump interrupted by a change")
            if msg_seq == seq:
                if msg_type == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                    if code:
                        raise OSError(-code, f"netlink: {errno.errorcode.get(-code, code)}")
                    done = True
                elif msg_type == NLMSG_DONE:
                    done = True
                else:
                    out.extend(decode(data, offset, length))
            offset += length
        if done or not flags & NLM_F_DUMP:
            return out


def _links(data: bytes, offset: int, length: int) -> list[Link]:
    return [_link(data, offset + _HEADER.size, length - _HEADER.size)]


def _address(data: bytes, offset: int, length: int) -> list[Address]:
    at = offset + _HEADER.size
    family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(data, at)
    for kind, value in _attrs(data, at + _IFADDRMSG.size, offset + length):
        if kind == IFA_ADDRESS:
            return [Address(index, prefixlen, _ip(family, value))]
    return []


def _neighbour(data: bytes, offset: int, length: int) -> list[Neighbour]:
    at = offset + _HEADER.size
    family, index, state, _flags, _type = _NDMSG.unpack_from(data, at)
    dst = lladdr = ""
    for kind, value in _attrs(data, at + _NDMSG.size, offset + length):
        if kind == NDA_DST:
            dst = _ip(family, value)
        elif kind == NDA_LLADDR:
            lladdr = _mac(value)
    return [Neighbour(index, state, dst, lladdr)]


def _attrs(data: bytes, at: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Top-level netlink attributes: (type without its flag bits, value)."""
    while at + 4 <= end:
        size, kind = struct.unpack_from("=HH", data, at)
        if size < 4:
            return
        yield kind & 0x3FFF, data[at + 4:at + size]
        at += size + (-size % 4)


def links(sock: socket.socket) -> list[Link]:
    """Every link of the socket's namespace."""
    return _request(sock, RTM_GETLINK, NLM_F_DUMP, _IFINFOMSG.pack(0, 0, 0, 0, 0), _links)


def link_at(sock: socket.socket, index: int) -> Link | None:
    """The link with this index, or None."""
    try:
        found = _request(sock, RTM_GETLINK, 0, _IFINFOMSG.pack(0, 0, index, 0, 0), _links)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    return found[0] if found else None


def link(sock: socket.socket, name: str) -> Link | None:
    """The link called `name`, or None."""
    try:
        found = _request(sock, RTM_GETLINK, 0, _IFINFOMSG.pack(0, 0, 0, 0, 0)
                         + _attr(IFLA_IFNAME, name.encode() + b"\0"), _links)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    return found[0] if found else None


def addresses(sock: socket.socket, index: int) -> list[Address]:
    """The addresses of link `index` (a dump of all, filtered here)."""
    return [a for a in _request(sock, RTM_GETADDR, NLM_F_DUMP,
                                _IFADDRMSG.pack(0, 0, 0, 0, 0), _address) if a.index == index]


def neighbours(sock: socket.socket, index: int) -> list[Neighbour]:
    """The neighbour entries of link `index`."""
    return [n for n in _request(sock, RTM_GETNEIGH, NLM_F_DUMP, _NDMSG.pack(0, 0, 0, 0, 0),
                                _neighbour) if n.index == index]


def tx_checksumming(sock: socket.socket, dev: str) -> bool:
    """Whether any TX checksum offload is on (ethtool's legacy ETHTOOL_GTXCSUM, what
    `ethtool -k` shows as tx-checksumming), by one ioctl on a socket of the device's
    namespace (the netlink one serves: the kernel passes socket ioctls a family does not
    handle to the device layer); pyroute2's IoctlEthtool reads every feature first."""
    return bool(ethtool_value(sock, dev, ETHTOOL_GTXCSUM))


def ethtool_value(sock: socket.socket, dev: str, command: int, data: int = 0) -> int:
    """One legacy ethtool command on a `struct ethtool_value` (a get or a set of one
    setting), by ioctl on a socket of the device's namespace; the value it leaves."""
    value = ctypes.create_string_buffer(struct.pack("=II", command, data))
    ifreq = struct.pack("16sP", dev.encode(), ctypes.addressof(value))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq.ljust(IFREQ_SIZE, b"\0"))
    return struct.unpack("=II", value.raw[:8])[1]


def _name(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def _table(data: bytes, offset: int, length: int) -> list[str]:
    family = data[offset + _HEADER.size]
    start = offset + _HEADER.size + _NFGENMSG.size
    return [f"{family}:{_name(value)}" for kind, value in _attrs(data, start, offset + length)
            if kind == NFTA_TABLE_NAME]


def nftables_tables(sock: socket.socket) -> list[str]:
    """The nftables tables of the socket's namespace, as "family:name" (a NETLINK_NETFILTER
    socket: open_socket(NETLINK_NETFILTER))."""
    return _request(sock, NFT_GETTABLE, NLM_F_DUMP, _NFGENMSG.pack(0, 0, 0), _table)


def tcp_listeners(sock: socket.socket, address: str, port: int) -> set[int]:
    """Inodes of the TCP sockets listening on address:port in the socket's namespace (a
    NETLINK_SOCK_DIAG socket: open_socket(NETLINK_SOCK_DIAG)). Asked for listeners on one
    port, the kernel walks its listening table alone; reading /proc/net/tcp walks the
    established table too, sized by the host's memory: 4 ms of CPU a read here, 0.08 this
    way, namespace entered and socket opened included."""
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    want = ip.packed.ljust(16, b"\0")
    body = (_INET_DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
            + _SOCKID.pack(port, 0, b"", b""))

    def decode(data: bytes, offset: int, length: int) -> list[int]:
        at = offset + _HEADER.size
        msg_family, state = _DIAG_MSG_HEAD.unpack_from(data, at)
        sport, _dport, src, _dst = _SOCKID.unpack_from(data, at + _DIAG_MSG_HEAD.size)
        *_, inode = _DIAG_MSG_TAIL.unpack_from(data, at + _DIAG_MSG_HEAD.size + _SOCKID.size)
        match = (msg_family == family and state == TCP_LISTEN and sport == port
                 and src == want)
        return [inode] if match else []
    return set(_request(sock, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, body, decode))
