"""Names of the things the agent creates on the host, derived from the network id alone.

Deriving every name from the id lets a restarted agent find what it made before.
"""

from __future__ import annotations

import hashlib

NAMESPACE_PREFIX = "ovnmeta-"
NEUTRON_SWITCH_PREFIX = "neutron-"
DEVICE_PREFIX = "omt"    # our veth ends: omt<digest>o (br-int side), omt<digest>i (inside)
DIGEST_LENGTH = 10
IFNAMSIZ = 15  # the kernel's limit on device names, without the NUL


def network_id(datapath_external_ids: dict[str, str]) -> str | None:
    """The neutron network uuid of a logical switch's datapath, else the switch name."""
    name = datapath_external_ids.get("name", "")
    if not name:
        return None
    if name.startswith(NEUTRON_SWITCH_PREFIX):
        return name[len(NEUTRON_SWITCH_PREFIX):]
    return name


def namespace(net_id: str) -> str:
    return NAMESPACE_PREFIX + net_id


def network_from_namespace(ns: str) -> str | None:
    return ns[len(NAMESPACE_PREFIX):] if ns.startswith(NAMESPACE_PREFIX) else None


def _digest(net_id: str) -> str:
    # A hash, not a prefix: ids that share a long prefix still get distinct devices.
    return hashlib.sha256(net_id.encode()).hexdigest()[:DIGEST_LENGTH]


def outer_device(net_id: str) -> str:
    """The veth end on br-int, in the root namespace."""
    return f"{DEVICE_PREFIX}{_digest(net_id)}o"


def is_outer_device(name: str) -> bool:
    """Whether a root-namespace device name is one of our outer ends (of some network)."""
    digest = name[len(DEVICE_PREFIX):-1]
    return (name.startswith(DEVICE_PREFIX) and name.endswith("o")
            and len(digest) == DIGEST_LENGTH and all(c in "0123456789abcdef" for c in digest))


def inner_device(net_id: str) -> str:
    """The veth end inside the ovnmeta namespace."""
    return f"{DEVICE_PREFIX}{_digest(net_id)}i"


def neutron_veth(net_id: str) -> tuple[str, str]:
    """neutron's OVN metadata agent's pair for a network: (root end on br-int, namespace end).

    `tap` + the first 10 characters of the network id + `0`/`1`; recognised so that a host
    it served can be taken over.
    """
    return f"tap{net_id[:10]}0", f"tap{net_id[:10]}1"


def frontend(net_id: str) -> str:
    return f"net-{net_id}"


def network_from_frontend(name: str) -> str | None:
    return name[len("net-"):] if name.startswith("net-") else None
