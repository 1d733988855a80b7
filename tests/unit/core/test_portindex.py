"""The port index (core/portindex.py): a request's source address and network to a VM."""

import ipaddress

import pytest

from ovnmeta.core.model import PortRecord
from ovnmeta.core.portindex import BadAddress, PortIndex, mac_from_link_local


def vm(name: str, net: str, mac: str, *ips: str, here: bool = True, type_: str = "",
       device: str | None = None) -> PortRecord:
    ext = {"neutron:device_id": device or f"inst-{name}", "neutron:project_id": "proj"}
    return PortRecord(logical_port=name, type=type_, network_id=net,
                      mac=(" ".join((mac,) + ips),), external_ids=tuple(sorted(ext.items())),
                      bound_here=here)


INDEX = PortIndex.build([
    vm("a", "n1", "fa:16:3e:00:00:0a", "10.0.0.10", "fd00::a"),
    vm("b", "n2", "fa:16:3e:00:00:0b", "10.0.0.10"),             # same IP, other network
    vm("c", "n1", "fa:16:3e:00:00:0c", "10.0.0.12", here=False),   # bound elsewhere
    vm("md", "n1", "fa:16:3e:00:00:02", "10.0.0.2", type_="localport"),
])


def test_same_ip_on_two_networks_gives_two_instances() -> None:
    assert INDEX.lookup("n1", "10.0.0.10").instance_id == "inst-a"
    assert INDEX.lookup("n2", "10.0.0.10").instance_id == "inst-b"
    assert INDEX.lookup("n3", "10.0.0.10") is None


def test_ports_not_bound_here_and_localports_are_not_vms() -> None:
    assert INDEX.lookup("n1", "10.0.0.12") is None
    assert INDEX.lookup("n1", "10.0.0.2") is None


def test_ipv6_global_and_link_local() -> None:
    assert INDEX.lookup("n1", "fd00:0::a").instance_id == "inst-a"
    ll = "fe80::f816:3eff:fe00:a"
    assert mac_from_link_local(ipaddress.IPv6Address(ll)) == "fa:16:3e:00:00:0a"
    assert INDEX.lookup("n1", ll).instance_id == "inst-a"
    assert INDEX.lookup("n1", ll + "%eth0").instance_id == "inst-a"
    assert INDEX.lookup("n1", "fe80::1") is None


def test_bad_address_is_an_error() -> None:
    with pytest.raises(BadAddress):
        INDEX.lookup("n1", "not-an-ip")
