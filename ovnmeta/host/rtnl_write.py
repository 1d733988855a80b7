"""Writes to the host's network state over bare netlink sockets: the few requests a metadata
network needs (a veth pair with its peer in a namespace, a link's state, MAC and MTU,
addresses, permanent neighbours) and TX checksumming off (by ioctl).

pyroute2's synchronous IPRoute runs an asyncio loop for each call: making one network took
about 11 ms of CPU here, two thirds of it in that loop (scripts/bench_netns.py). These are
encoded here, each sent with NLM_F_ACK on a socket of the namespace (rtnl_read.open_socket)
and answered by the kernel's acknowledgement or its errno (OSError).
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from ovnmeta.host import rtnl_read
from ovnmeta.host.rtnl_read import _IFADDRMSG, _IFINFOMSG, _NDMSG, _attr, _request

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
NLM_F_ACK = 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
NDA_DST, NDA_LLADDR = 1, 2
ETHTOOL_STXCSUM = 0x17


def _ack(sock: socket.socket, kind: int, body: bytes, flags: int = 0) -> None:
    _request(sock, kind, NLM_F_ACK | flags, body, lambda *_: [])


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def add_veth(sock: socket.socket, outer: str, inner: str, peer_ns_fd: int, mac: str,
             mtu: int = 0) -> None:
    """A veth pair: `outer` in the socket's namespace, `inner` in the namespace of
    `peer_ns_fd` with this MAC (and MTU); EEXIST when `outer` exists."""
    peer = (_IFINFOMSG.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, inner.encode() + b"\0")
            + _attr(IFLA_ADDRESS, _mac(mac)) + _attr(IFLA_NET_NS_FD, _u32(peer_ns_fd))
            + (_attr(IFLA_MTU, _u32(mtu)) if mtu else b""))
    info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA,
                                                   _attr(VETH_INFO_PEER, peer))
    _ack(sock, RTM_NEWLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0)
         + _attr(IFLA_IFNAME, outer.encode() + b"\0") + _attr(IFLA_LINKINFO, info),
         NLM_F_CREATE | NLM_F_EXCL)


def set_link(sock: socket.socket, index: int, up: bool | None = None, mac: str = "",
             mtu: int = 0) -> None:
    """Change a link: admin state (None: as it is), MAC, MTU (empty or 0: as they are)."""
    flags, change = (0, 0) if up is None else (IFF_UP if up else 0, IFF_UP)
    _ack(sock, RTM_NEWLINK, _IFINFOMSG.pack(0, 0, index, flags, change)
         + (_attr(IFLA_ADDRESS, _mac(mac)) if mac else b"")
         + (_attr(IFLA_MTU, _u32(mtu)) if mtu else b""))


def delete_link(sock: socket.socket, index: int) -> None:
    _ack(sock, RTM_DELLINK, _IFINFOMSG.pack(0, 0, index, 0, 0))


def _address(index: int, address: str, prefixlen: int, flags: int) -> bytes:
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    # IFA_LOCAL is the interface's own address (IPv4 requires it), IFA_ADDRESS the peer's
    # on a point-to-point link, the same otherwise.
    return (_IFADDRMSG.pack(family, prefixlen, flags, 0, index)
            + _attr(IFA_LOCAL, ip.packed) + _attr(IFA_ADDRESS, ip.packed))


def add_address(sock: socket.socket, index: int, address: str, prefixlen: int,
                flags: int = 0) -> None:
    """EEXIST when the link has it already."""
    _ack(sock, RTM_NEWADDR, _address(index, address, prefixlen, flags),
         NLM_F_CREATE | NLM_F_EXCL)


def delete_address(sock: socket.socket, index: int, address: str, prefixlen: int) -> None:
    """EADDRNOTAVAIL when the link does not have it."""
    _ack(sock, RTM_DELADDR, _address(index, address, prefixlen, 0))


def _neighbour(index: int, ip: str, state: int) -> bytes:
    dst = ipaddress.ip_address(ip)
    family = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
    return _NDMSG.pack(family, index, state, 0, 0) + _attr(NDA_DST, dst.packed)


def replace_neighbour(sock: socket.socket, index: int, ip: str, mac: str, state: int) -> None:
    """The entry for `ip` on the link, made or replaced whatever state it had."""
    _ack(sock, RTM_NEWNEIGH, _neighbour(index, ip, state) + _attr(NDA_LLADDR, _mac(mac)),
         NLM_F_CREATE | NLM_F_REPLACE)


def delete_neighbour(sock: socket.socket, index: int, ip: str) -> None:
    """ENOENT when there is no entry."""
    _ack(sock, RTM_DELNEIGH, _neighbour(index, ip, 0))


def set_tx_checksumming(sock: socket.socket, dev: str, on: bool) -> None:
    """Every TX checksum offload on or off (ethtool's legacy ETHTOOL_STXCSUM, what
    `ethtool -K dev tx off` sets), by one ioctl on a socket of the device's namespace; see
    rtnl_read.tx_checksumming."""
    rtnl_read.ethtool_value(sock, dev, ETHTOOL_STXCSUM, int(on))
