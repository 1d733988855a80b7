"""Which metadata networks this chassis should serve, computed from an SB snapshot alone."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from ovnmeta.core import naming
from ovnmeta.core.linklocal import link_local_of
from ovnmeta.core.memo import generational
from ovnmeta.core.model import METADATA_V4, METADATA_V6, NetworkSpec, PortRecord, SbSnapshot

# What the agent serves, as neutron does: VIFs (nova plugs them into this host's OVS) and
# "external" ports (baremetal or SR-IOV: OVN binds them to one chassis of their HA chassis
# group, and they reach it over a provider network, with no interface on this host).
VIF_TYPES = frozenset({""})
VM_PORT_TYPES = VIF_TYPES | {"external"}
LOCALPORT = "localport"
DISTRIBUTED_OWNER = "network:distributed"
# The id becomes a namespace (file) name and a haproxy frontend name.
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
USABLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,200}$")


@dataclass(frozen=True)
class Problem:
    """A network that has VMs here but cannot be served, and why (for the operator)."""
    network_id: str
    reason: str


# Every pass reads every port of every network here: parsing is most of a pass's pure
# work at 200 networks (10 ms), and the columns rarely change. Memoised while in use.
@generational(limit=16384)
def parse_mac_column(entries: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """The MAC and IPs of a Port_Binding `mac` column ("MAC IP IP ..." entries)."""
    for entry in entries:
        tokens = entry.split()
        # "unknown", "router", "dynamic" and anything else that is not a MAC name none.
        if not tokens or not MAC.match(tokens[0]):
            continue
        mac = tokens[0].lower()
        ips = []
        for token in tokens[1:]:
            try:
                ips.append(str(ipaddress.ip_address(token)))
            except ValueError:
                continue
        return mac, tuple(ips)
    return None, ()


@generational(limit=4096)
def addresses_with_prefix(ips: tuple[str, ...], cidrs: str) -> frozenset[str]:
    """Each IP with the prefix neutron recorded for it, or a host prefix when none was."""
    prefixes: dict[str, int] = {}
    for item in cidrs.split():
        try:
            iface = ipaddress.ip_interface(item)
        except ValueError:
            continue
        prefixes[str(iface.ip)] = iface.network.prefixlen
    out = set()
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        out.add(f"{ip}/{prefixes.get(ip, addr.max_prefixlen)}")
    return frozenset(out)


def answerable(port_type: str, logical_port: str, plugged: Collection[str] | None) -> bool:
    """A VM port bound here whose identity may be given out. A VIF needs its interface on
    this host too (None: trust the SB): one the SB still binds here without it is a deleted
    VM whose address may already be another's. An external port has no interface here;
    its SB binding is the authority."""
    return plugged is None or port_type not in VIF_TYPES or logical_port in plugged


def _pick_localport(candidates: list[PortRecord], owner_key: str) -> PortRecord:
    # Prefer neutron's distributed port; otherwise stay deterministic.
    return sorted(candidates, key=lambda p: (p.ext(owner_key) != DISTRIBUTED_OWNER,
                                              p.logical_port))[0]


def desired_networks(snapshot: SbSnapshot, cidrs_key: str = "neutron:cidrs",
                     owner_key: str = "neutron:device_owner",
                     mtu_key: str = "neutron:mtu",
                     plugged: frozenset[str] | None = None,
                     ) -> tuple[dict[str, NetworkSpec], list[Problem]]:
    """`plugged`: logical ports with an interface on this host (None: trust the SB); see
    answerable() for what a port bound here without one gets."""
    vm_count = Counter(p.network_id for p in snapshot.ports
                       if p.bound_here and p.type in VM_PORT_TYPES)
    neighbours: dict[str, set[tuple[str, str]]] = {}
    link_locals: dict[str, set[tuple[str, str]]] = {}
    vm_ips: dict[str, set[str]] = {}
    for port in snapshot.ports:
        if not port.bound_here or port.type not in VM_PORT_TYPES:
            continue
        vm_ips.setdefault(port.network_id, set()).update(
            ip for entry in port.mac for ip in parse_mac_column((entry,))[1])
        if not answerable(port.type, port.logical_port, plugged):
            continue
        for entry in port.mac:
            mac, ips = parse_mac_column((entry,))
            if mac:
                neighbours.setdefault(port.network_id, set()).update((ip, mac) for ip in ips)
                link_locals.setdefault(port.network_id, set()).add((link_local_of(mac), mac))
    localports: dict[str, list[PortRecord]] = {}
    for port in snapshot.ports:
        if port.type == LOCALPORT and port.network_id in vm_count:
            localports.setdefault(port.network_id, []).append(port)

    specs: dict[str, NetworkSpec] = {}
    problems: list[Problem] = []
    for net_id, count in sorted(vm_count.items()):
        if not USABLE_ID.match(net_id):
            problems.append(Problem(net_id, "network id cannot name a namespace (letters, "
                                            "digits and . _ : - only)"))
            continue
        if net_id not in localports:
            problems.append(Problem(net_id, f"{count} VM port(s) bound here but the network "
                                            "has no localport (metadata port)"))
            continue
        lp = _pick_localport(localports[net_id], owner_key)
        mac, ips = parse_mac_column(lp.mac)
        if mac is None:
            problems.append(Problem(net_id, f"localport {lp.logical_port} has no MAC in its "
                                            f"mac column {list(lp.mac)!r}"))
            continue
        addresses = set(addresses_with_prefix(ips, lp.ext(cidrs_key)))
        addresses.add(METADATA_V4)
        if any(":" in ip for ip in ips):
            addresses.add(METADATA_V6)
        mtu_text = lp.ext(mtu_key)
        specs[net_id] = NetworkSpec(
            network_id=net_id, namespace=naming.namespace(net_id),
            outer=naming.outer_device(net_id), inner=naming.inner_device(net_id),
            iface_id=lp.logical_port, mac=mac, addresses=frozenset(addresses),
            mtu=int(mtu_text) if mtu_text.isdigit() else None, vm_ports=count,
            neighbours=frozenset(neighbours.get(net_id, set()) | (
                link_locals.get(net_id, set()) if METADATA_V6 in addresses else set())),
            vm_ips=frozenset(vm_ips.get(net_id, ())))
    return specs, problems
