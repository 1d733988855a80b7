"""Which VM sent a request: (network, IP) → instance, answered from memory in O(1).

Rebuilt from the SB view whenever it changes, never by scanning Port_Binding per request.
IPv6 link-local clients are found by the MAC their EUI-64 address encodes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from ovnmeta.core.desired import VM_PORT_TYPES, answerable, parse_mac_column
from ovnmeta.core.linklocal import link_local_of, mac_from_link_local
from ovnmeta.core.memo import generational
from ovnmeta.core.model import PortRecord


@dataclass(frozen=True)
class Instance:
    instance_id: str
    project_id: str
    logical_port: str
    mac: str
    port_type: str = ""

    def answerable(self, plugged: Collection[str] | None) -> bool:
        return answerable(self.port_type, self.logical_port, plugged)


class BadAddress(ValueError):
    pass


@generational(limit=4096)  # haproxy sends the same few client addresses
def normalize_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The client address as haproxy sent it; a scope (%eth0) is dropped."""
    try:
        return ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        raise BadAddress(f"not an IP address: {text[:64]!r}") from None


class PortIndex:
    def __init__(self, by_ip: dict[tuple[str, str], Instance],
                 by_mac: dict[tuple[str, str], Instance]) -> None:
        self._by_ip = by_ip
        self._by_mac = by_mac
        self.networks = frozenset(n for n, _ in by_ip) | frozenset(n for n, _ in by_mac)

    def __len__(self) -> int:
        return len({i.logical_port for i in self._by_ip.values()} |
                   {i.logical_port for i in self._by_mac.values()})

    @classmethod
    def build(cls, ports: Iterable[PortRecord], instance_key: str = "neutron:device_id",
              project_key: str = "neutron:project_id") -> PortIndex:
        by_ip: dict[tuple[str, str], Instance] = {}
        by_mac: dict[tuple[str, str], Instance] = {}
        for port in ports:
            if not port.bound_here or port.type not in VM_PORT_TYPES:
                continue
            instance_id = port.ext(instance_key)
            if not instance_id:
                continue
            for entry in port.mac:
                mac, ips = parse_mac_column((entry,))
                if mac is None:
                    continue
                inst = Instance(instance_id, port.ext(project_key), port.logical_port, mac,
                                port.type)
                by_mac[(port.network_id, mac)] = inst
                for ip in ips:
                    by_ip[(port.network_id, ip)] = inst
        return cls(by_ip, by_mac)

    def lookup(self, network_id: str, client: str) -> Instance | None:
        ip = normalize_ip(client)
        found = self._by_ip.get((network_id, str(ip)))
        if found is None and ip.version == 6:
            mac = mac_from_link_local(ip)
            if mac:
                found = self._by_mac.get((network_id, mac))
        return found

    def instance_ids(self) -> set[str]:
        """The instances with a port bound here."""
        return {i.instance_id for i in self._by_ip.values()} | \
            {i.instance_id for i in self._by_mac.values()}

    def entries(self) -> Iterator[tuple[str, str, Instance]]:
        """(network, client address, instance) for every address lookup() answers that
        can be listed: the port's IPs and the EUI-64 link-local of its MAC."""
        for (network, ip), inst in self._by_ip.items():
            yield network, ip, inst
        for (network, mac), inst in self._by_mac.items():
            if (network, link := link_local_of(mac)) not in self._by_ip:
                yield network, link, inst
