"""Which metadata networks this chassis should serve, computed from an SB snapshot alone."""

from __future__ import annotations

import ipaddress
import re
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
    answerable() for what a port bound here without one gets.

    Each network's spec is memoised on its own ports: a pass after one network changed
    computes that one (at 200 networks, 0.5 ms where all of them took 5-15)."""
    vms: dict[str, list[PortRecord]] = {}
    for port in snapshot.ports:
        if port.bound_here and port.type in VM_PORT_TYPES:
            vms.setdefault(port.network_id, []).append(port)
    localports: dict[str, list[PortRecord]] = {}
    for port in snapshot.ports:
        if port.type == LOCALPORT and port.network_id in vms:
            localports.setdefault(port.network_id, []).append(port)
    specs: dict[str, NetworkSpec] = {}
    problems: list[Problem] = []
    for net_id in sorted(vms):
        ports = vms[net_id]
        unanswerable = frozenset(p.logical_port for p in ports
                                 if not answerable(p.type, p.logical_port, plugged))
        result = network_spec(net_id, frozenset(ports), frozenset(localports.get(net_id, ())),
                              unanswerable, cidrs_key, owner_key, mtu_key)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            specs[net_id] = result
    return specs, problems


@generational(limit=16384)
def network_spec(net_id: str, vms: frozenset[PortRecord], localports: frozenset[PortRecord],
                 unanswerable: frozenset[str], cidrs_key: str, owner_key: str, mtu_key: str
                 ) -> NetworkSpec | Problem:
    """One network's spec from its VM ports bound here and its localports, or why it has
    none. `unanswerable`: VM ports whose identity is not given out (their addresses are
    still the network's VMs', not its neighbours)."""
    if not USABLE_ID.match(net_id):
        return Problem(net_id, "network id cannot name a namespace (letters, digits and "
                               ". _ : - only)")
    if not localports:
        return Problem(net_id, f"{len(vms)} VM port(s) bound here but the network has no "
                               "localport (metadata port)")
    lp = _pick_localport(list(localports), owner_key)
    mac, ips = parse_mac_column(lp.mac)
    if mac is None:
        return Problem(net_id, f"localport {lp.logical_port} has no MAC in its mac column "
                               f"{list(lp.mac)!r}")
    notes: set[str] = set()
    addresses = set(addresses_with_prefix(ips, lp.ext(cidrs_key)))
    bare = {a for a in addresses if a.endswith(("/32", "/128"))}
    if bare:
        # No prefix recorded: the namespace would have no route back to the VMs. Their own
        # ports' cidrs name the subnet the localport's address is on.
        vm_cidrs = " ".join(p.ext(cidrs_key) for p in vms)
        for address in bare:
            ip = address.split("/")[0]
            subnet = _subnet_of(ip, vm_cidrs)
            if subnet:
                addresses.discard(address)
                addresses.add(f"{ip}/{subnet}")
            notes.add(f"localport {lp.logical_port}: {cidrs_key} {lp.ext(cidrs_key)[:80]!r} "
                      f"gives no prefix for {ip}; "
                      + (f"/{subnet} taken from the VM ports' {cidrs_key}" if subnet else
                         f"{address} used, which leaves VMs on its subnet unanswered"))
    addresses.add(METADATA_V4)
    ipv6 = any(":" in ip for ip in ips)
    if ipv6:
        addresses.add(METADATA_V6)
    vm_ips: set[str] = set()
    neighbours: set[tuple[str, str]] = set()
    for port in vms:
        if not parse_mac_column(port.mac)[1]:   # "unknown" beside "MAC IP" is fine
            notes.add(f"VM port {port.logical_port}: no usable MAC and IP in "
                      f"{str(list(port.mac))[:80]}; it gets no metadata")
        for entry in port.mac:
            vm_mac, vm_addrs = parse_mac_column((entry,))
            vm_ips.update(vm_addrs)
            if vm_mac and port.logical_port not in unanswerable:
                neighbours.update((ip, vm_mac) for ip in vm_addrs)
                if ipv6:
                    neighbours.add((link_local_of(vm_mac), vm_mac))
    mtu_text = lp.ext(mtu_key)
    mtu = int(mtu_text) if mtu_text.isdigit() and len(mtu_text) < 7 else None
    if mtu is not None and not MIN_MTU <= mtu <= MAX_MTU:
        mtu = None
    if mtu is None and mtu_text:
        notes.add(f"localport {lp.logical_port}: {mtu_key} {mtu_text[:20]!r} is not an MTU "
                  f"({MIN_MTU}-{MAX_MTU}); the interface keeps its own")
    return NetworkSpec(
        network_id=net_id, namespace=naming.namespace(net_id),
        outer=naming.outer_device(net_id), inner=naming.inner_device(net_id),
        iface_id=lp.logical_port, mac=mac, addresses=frozenset(addresses),
        mtu=mtu, vm_ports=len(vms),
        neighbours=frozenset(neighbours), vm_ips=frozenset(vm_ips), notes=frozenset(notes))


MIN_MTU, MAX_MTU = 68, 65535   # IPv4's minimum; the largest a link can have


def _subnet_of(ip: str, cidrs: str) -> int | None:
    """The prefix length of the first of `cidrs` (ip/prefix items) whose network holds ip."""
    addr = ipaddress.ip_address(ip)
    for item in cidrs.split():
        try:
            net = ipaddress.ip_interface(item).network
        except ValueError:
            continue
        if addr.version == net.version and addr in net and net.prefixlen < net.max_prefixlen:
            return net.prefixlen
    return None


def is_here(chassis_uuid: str | None, names: frozenset[str], bound: list[str],
            additional: list[str], type_: str, logical_port: str, requested: str,
            plugged: frozenset[str]) -> bool:
    """A port of this chassis: the SB binds it here, or it is a VM port whose interface is
    plugged on this host and that ovn-controller is about to bind here.

    The second case lets provisioning start with the VM's OVS port, not one SB round trip
    of ovn-controller's later; a port whose `requested-chassis` names other chassis only is
    not ovn-controller's to bind here, so not ours either.
    """
    if chassis_uuid is not None and (chassis_uuid in bound or chassis_uuid in additional):
        return True
    if type_ not in VIF_TYPES or logical_port not in plugged or chassis_uuid is None:
        return False
    wanted = {c.strip() for c in requested.split(",") if c.strip()}
    return not wanted or bool(wanted & names)
