"""EUI-64 link-local addresses and the MACs they encode (RFC 4291, appendix A).

A VM's link-local address follows from its MAC, which the SB knows: the index finds an
IPv6 link-local client by it, and the namespace is told the VM's neighbour entry with it.
"""

from __future__ import annotations

import ipaddress


def link_local_of(mac: str) -> str:
    """The EUI-64 link-local address a MAC gives (the inverse of mac_from_link_local)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:6]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def mac_from_link_local(ip: ipaddress.IPv6Address) -> str | None:
    """The MAC an EUI-64 link-local address was derived from (fe80::f816:3eff:fe00:1)."""
    if not ip.is_link_local:
        return None
    iid = ip.packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None
    mac = bytes([iid[0] ^ 0x02]) + iid[1:3] + iid[5:8]
    return ":".join(f"{b:02x}" for b in mac)
