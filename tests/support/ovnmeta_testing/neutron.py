"""Writes networks and ports into the NB DB the way neutron's OVN driver does.

The agent only ever sees what northd derives from these rows, so they must carry the same
names, types and external_ids keys as a real neutron deployment.
"""

from __future__ import annotations

import ipaddress
import random
import uuid
from dataclasses import dataclass, field

from ovnmeta_testing.sandbox import Sandbox

PROJECT_ID = "5d5e1b0d2b8c4c0c9a3e7b7b6f1d2e3a"


@dataclass(frozen=True)
class Port:
    name: str               # the neutron port uuid, also the logical port name
    network_id: str
    mac: str
    ips: tuple[str, ...]    # "10.0.0.5/24" style: address with the subnet's prefix
    device_id: str
    project_id: str = PROJECT_ID

    @property
    def ip(self) -> str:
        return self.ips[0].split("/")[0]

    @property
    def addresses(self) -> str:
        return " ".join([self.mac] + [i.split("/")[0] for i in self.ips])


@dataclass
class Network:
    id: str
    cidrs: tuple[str, ...]
    metadata_port: Port
    mtu: int = 1442
    _next_host: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def switch(self) -> str:
        return f"neutron-{self.id}"

    def allocate_ips(self) -> tuple[str, ...]:
        out = []
        for cidr in self.cidrs:
            net = ipaddress.ip_network(cidr)
            n = self._next_host.get(cidr, 10)
            self._next_host[cidr] = n + 1
            out.append(f"{net.network_address + n}/{net.prefixlen}")
        return tuple(out)


def random_mac() -> str:
    tail = [random.randint(0, 255) for _ in range(3)]
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def _ext(key: str, value: str) -> str:
    return f'external_ids:"{key}"="{value}"'


def _port_external_ids(port: Port, network: Network, owner: str) -> list[str]:
    return [
        _ext("neutron:cidrs", " ".join(port.ips)),
        _ext("neutron:device_id", port.device_id),
        _ext("neutron:device_owner", owner),
        _ext("neutron:network_name", network.switch),
        _ext("neutron:port_name", ""),
        _ext("neutron:project_id", port.project_id),
        _ext("neutron:revision_number", "1"),
        _ext("neutron:security_group_ids", ""),
    ]


def create_network(box: Sandbox, cidrs: tuple[str, ...] = ("10.0.0.0/24",),
                   network_id: str | None = None, mtu: int = 1442) -> Network:
    """A neutron network with one subnet per cidr and its distributed metadata port."""
    network_id = network_id or str(uuid.uuid4())
    md_ips = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        md_ips.append(f"{net.network_address + 2}/{net.prefixlen}")
    md = Port(name=str(uuid.uuid4()), network_id=network_id, mac=random_mac(),
              ips=tuple(md_ips), device_id=f"ovnmeta-{network_id}")
    network = Network(id=network_id, cidrs=tuple(cidrs), metadata_port=md, mtu=mtu)
    box.nbctl(*network_commands(network))
    return network


def network_commands(network: Network) -> list[str]:
    """One ovn-nbctl transaction creating the switch and its metadata port."""
    md = network.metadata_port
    return [
        "--", "ls-add", network.switch,
        "--", "set", "Logical_Switch", network.switch,
        _ext("neutron:network_name", f"net-{network.id[:8]}"),
        _ext("neutron:mtu", str(network.mtu)),
        _ext("neutron:revision_number", "1"),
        "--", "lsp-add", network.switch, md.name,
        "--", "lsp-set-type", md.name, "localport",
        "--", "lsp-set-addresses", md.name, md.addresses,
        "--", "set", "Logical_Switch_Port", md.name,
        *_port_external_ids(md, network, "network:distributed"),
        "options:requested-chassis=\"\"",
    ]


def create_vm_port(box: Sandbox, network: Network, device_id: str | None = None,
                   project_id: str = PROJECT_ID, port_security: bool = True) -> Port:
    """A compute:nova port with port security, requested on the sandbox chassis."""
    port = Port(name=str(uuid.uuid4()), network_id=network.id, mac=random_mac(),
                ips=network.allocate_ips(), device_id=device_id or str(uuid.uuid4()),
                project_id=project_id)
    box.nbctl(
        "--", "lsp-add", network.switch, port.name,
        "--", "lsp-set-addresses", port.name, port.addresses,
        "--", "lsp-set-port-security", port.name,
        *([port.addresses] if port_security else []),
        "--", "set", "Logical_Switch_Port", port.name,
        *_port_external_ids(port, network, "compute:nova"),
        f"options:requested-chassis={box.chassis}",
    )
    return port


def delete_port(box: Sandbox, port: Port) -> None:
    box.nbctl("--if-exists", "lsp-del", port.name)


def delete_network(box: Sandbox, network: Network) -> None:
    box.nbctl("--if-exists", "ls-del", network.switch)


def network_data(network: Network, port: Port) -> dict:
    """The network_data.json nova would build for a VM on this port (what cloud-init reads)."""
    links = [{"id": f"tap{port.name[:11]}", "vif_id": port.name, "type": "ovs",
              "mtu": network.mtu, "ethernet_mac_address": port.mac}]
    networks = []
    for n, address in enumerate(port.ips):
        iface = ipaddress.ip_interface(address)
        networks.append({
            "id": f"network{n}", "link": links[0]["id"], "network_id": network.id,
            "type": "ipv4" if iface.version == 4 else "ipv6",
            "ip_address": str(iface.ip), "netmask": str(iface.netmask), "routes": []})
    return {"links": links, "networks": networks, "services": []}


# -- provider networks and "external" ports (baremetal, SR-IOV) ----------------------------

def add_localnet_port(box: Sandbox, network: Network, physnet: str) -> str:
    """The network's localnet port, as neutron makes for a flat provider network."""
    name = f"provnet-{network.id}"
    box.nbctl("--", "lsp-add", network.switch, name,
              "--", "lsp-set-type", name, "localnet",
              "--", "lsp-set-addresses", name, "unknown",
              "--", "lsp-set-options", name, f"network_name={physnet}")
    return name


def create_ha_chassis_group(box: Sandbox, name: str, priorities: dict[str, int]) -> str:
    """An HA_Chassis_Group with these chassis (highest priority is the active one)."""
    box.nbctl("ha-chassis-group-add", name)
    for chassis, priority in priorities.items():
        box.nbctl("ha-chassis-group-add-chassis", name, chassis, str(priority))
    return box.nbctl("--bare", "--columns=_uuid", "find", "HA_Chassis_Group",
                     f"name={name}").strip()


def create_external_port(box: Sandbox, network: Network, ha_group: str | None,
                         device_id: str | None = None,
                         vnic_type: str = "baremetal") -> Port:
    """A port of type external, as neutron makes for a baremetal or SR-IOV port; its
    ha_chassis_group (a uuid) picks the chassis that binds it. None: no group at all."""
    port = Port(name=str(uuid.uuid4()), network_id=network.id, mac=random_mac(),
                ips=network.allocate_ips(), device_id=device_id or str(uuid.uuid4()))
    owner = "baremetal:none" if vnic_type == "baremetal" else "compute:nova"
    box.nbctl(
        "--", "lsp-add", network.switch, port.name,
        "--", "lsp-set-type", port.name, "external",
        "--", "lsp-set-addresses", port.name, port.addresses,
        "--", "lsp-set-port-security", port.name, port.addresses,
        "--", "set", "Logical_Switch_Port", port.name,
        *_port_external_ids(port, network, owner),
        _ext("neutron:vnic_type", vnic_type),
        *([f"ha_chassis_group={ha_group}"] if ha_group else []),
    )
    return port


def set_ha_chassis_group(box: Sandbox, port: Port, ha_group: str | None) -> None:
    if ha_group:
        box.nbctl("set", "Logical_Switch_Port", port.name, f"ha_chassis_group={ha_group}")
    else:
        box.nbctl("clear", "Logical_Switch_Port", port.name, "ha_chassis_group")


def delete_ha_chassis_group(box: Sandbox, name: str) -> None:
    if box.nbctl("--bare", "--columns=_uuid", "find", "HA_Chassis_Group", f"name={name}"):
        box.nbctl("ha-chassis-group-del", name)
