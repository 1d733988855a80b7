import pytest

from ovnmeta.core.desired import addresses_with_prefix, desired_networks, parse_mac_column
from ovnmeta.core.model import METADATA_V4, METADATA_V6, PortRecord, SbSnapshot
from ovnmeta.core.portindex import PortIndex

MD_MAC = "fa:16:3e:00:00:02"


def port(name: str, net: str = "n1", type_: str = "", here: bool = True,
         mac: tuple[str, ...] = ("fa:16:3e:00:00:10 10.0.0.10",), **ext: str) -> PortRecord:
    return PortRecord(logical_port=name, type=type_, network_id=net, mac=mac,
                      external_ids=tuple(sorted(ext.items())), bound_here=here)


def localport(net: str = "n1", mac: tuple[str, ...] = (f"{MD_MAC} 10.0.0.2",),
              cidrs: str = "10.0.0.2/24", name: str = "md1", **ext: str) -> PortRecord:
    return port(name, net, "localport", here=False, mac=mac, **{"neutron:cidrs": cidrs}, **ext)


def specs(*ports: PortRecord):
    return desired_networks(SbSnapshot(chassis="c1", ports=ports))


def test_network_with_a_bound_vm_and_localport_is_desired() -> None:
    got, problems = specs(port("vm1"), localport())
    spec = got["n1"]
    assert spec.namespace == "ovnmeta-n1"
    assert spec.mac == MD_MAC
    assert spec.iface_id == "md1"
    assert spec.addresses == {"10.0.0.2/24", METADATA_V4}
    assert spec.vm_ports == 1
    assert problems == []


def test_no_vm_bound_here_means_no_network() -> None:
    got, _ = specs(port("vm1", here=False), localport())
    assert got == {}


def test_missing_localport_is_a_problem_not_a_crash() -> None:
    got, problems = specs(port("vm1"))
    assert got == {}
    assert problems[0].network_id == "n1" and "no localport" in problems[0].reason


def test_localport_without_mac_is_reported() -> None:
    got, problems = specs(port("vm1"), localport(mac=("unknown",)))
    assert got == {}
    assert "no MAC" in problems[0].reason


def test_ipv6_subnet_adds_link_local_metadata_address() -> None:
    got, _ = specs(port("vm1"), localport(mac=(f"{MD_MAC} 10.0.0.2 fd00::2",),
                                          cidrs="10.0.0.2/24 fd00::2/64"))
    assert got["n1"].addresses == {"10.0.0.2/24", "fd00::2/64", METADATA_V4, METADATA_V6}
    assert got["n1"].ipv6


def test_vm_ports_are_counted_and_other_types_ignored() -> None:
    got, _ = specs(port("vm1"), port("vm2"), port("r1", type_="patch"), localport())
    assert got["n1"].vm_ports == 2


def test_distributed_localport_preferred() -> None:
    other = localport(name="a-other", mac=("fa:16:3e:00:00:99 10.0.0.99",))
    md = localport(name="z-md", **{"neutron:device_owner": "network:distributed"})
    got, _ = specs(port("vm1"), other, md)
    assert got["n1"].iface_id == "z-md"


def test_mtu_from_port_when_given() -> None:
    got, _ = specs(port("vm1"), localport(**{"neutron:mtu": "1442"}))
    assert got["n1"].mtu == 1442
    got, _ = specs(port("vm1"), localport())
    assert got["n1"].mtu is None


def test_parse_mac_column_skips_garbage() -> None:
    assert parse_mac_column(("unknown", "zz:zz 1.2.3.4", "FA:16:3E:00:00:01 10.0.0.1 bad")) \
        == ("fa:16:3e:00:00:01", ("10.0.0.1",))
    assert parse_mac_column(()) == (None, ())


def test_ip_without_recorded_prefix_gets_host_prefix() -> None:
    assert addresses_with_prefix(("10.0.0.2", "fd00::2"), "") == {"10.0.0.2/32", "fd00::2/128"}


def test_network_id_unfit_for_a_namespace_name_is_a_problem() -> None:
    got, problems = specs(port("vm1", net="bad/name x"), localport(net="bad/name x"))
    assert got == {}
    assert "cannot name a namespace" in problems[0].reason


def test_neighbours_are_the_vm_ports_plugged_here() -> None:
    ports = (PortRecord("vm-a", "", "n1", ("fa:16:3e:00:00:0a 10.0.0.10",), (), True),
             PortRecord("vm-c", "", "n1", ("fa:16:3e:00:00:0c 10.0.0.12",), (), True),
             PortRecord("md", "localport", "n1", ("fa:16:3e:00:00:02 10.0.0.2",), (), False))
    specs, _ = desired_networks(SbSnapshot("c1", ports), plugged=frozenset({"vm-c"}))
    spec = specs["n1"]
    assert spec.neighbours == {("10.0.0.12", "fa:16:3e:00:00:0c")}  # vm-a's VM is gone
    assert spec.vm_ips == {"10.0.0.10", "10.0.0.12"}


def test_ipv6_network_neighbours_include_the_vms_link_local_addresses() -> None:
    ports = (PortRecord("vm", "", "n1", ("fa:16:3e:00:00:0a fd00::a",), (), True),
             PortRecord("md", "localport", "n1", ("fa:16:3e:00:00:02 fd00::2",),
                        (("neutron:cidrs", "fd00::2/64"),), False))
    spec = desired_networks(SbSnapshot("c1", ports), plugged=frozenset({"vm"}))[0]["n1"]
    assert spec.neighbours == {("fd00::a", "fa:16:3e:00:00:0a"),
                               ("fe80::f816:3eff:fe00:a", "fa:16:3e:00:00:0a")}
    assert spec.addresses == {"fd00::2/64", METADATA_V4, METADATA_V6}


def test_external_port_is_served_without_an_interface_here() -> None:
    """A baremetal/SR-IOV port bound here through its HA chassis group: the SB binding is
    the authority. A VIF bound here without an interface is not answered for."""
    ports = (PortRecord("bm", "external", "n1", ("fa:16:3e:00:00:0b 10.0.0.11",), (), True),
             PortRecord("gone", "", "n1", ("fa:16:3e:00:00:0c 10.0.0.12",), (), True),
             PortRecord("elsewhere", "external", "n1", ("fa:16:3e:00:00:0d 10.0.0.13",), (),
                        False),
             PortRecord("md", "localport", "n1", ("fa:16:3e:00:00:02 10.0.0.2",), (), False))
    spec = desired_networks(SbSnapshot("c1", ports), plugged=frozenset())[0]["n1"]
    assert spec.vm_ports == 2
    assert spec.neighbours == {("10.0.0.11", "fa:16:3e:00:00:0b")}
    only_elsewhere = (ports[2], ports[3])
    assert desired_networks(SbSnapshot("c1", only_elsewhere), plugged=frozenset())[0] == {}


@pytest.mark.parametrize("column", [("unknown",), ("unknown 10.0.0.9",), ("dynamic",),
                                    ("router",), ("fa:16:3e:00:00 10.0.0.9",),
                                    ("zz:16:3e:00:00:0a 10.0.0.9",), ("",), ()])
def test_a_port_without_a_usable_mac_gets_nothing_and_breaks_nothing(column) -> None:
    ports = (PortRecord("odd", "", "n1", column, (), True),
             PortRecord("vm", "", "n1", ("fa:16:3e:00:00:0a 10.0.0.10",), (), True),
             PortRecord("md", "localport", "n1", ("fa:16:3e:00:00:02 10.0.0.2",), (), False))
    spec = desired_networks(SbSnapshot("c1", ports))[0]["n1"]
    assert spec.neighbours == {("10.0.0.10", "fa:16:3e:00:00:0a")}
    assert PortIndex.build(ports).lookup("n1", "10.0.0.9") is None


@pytest.mark.parametrize("cidrs", ["garbage", "10.0.0.2/99 fd00::2/200", "10.0.0.2/", "/24",
                                   "10.0.0.2/24/8", "\x00\xff", "10.0.0.0/24 " * 500])
def test_garbage_in_neutron_cidrs_falls_back_to_host_prefixes(cidrs) -> None:
    got, problems = specs(port("vm1"), localport(cidrs=cidrs))
    assert problems == []
    assert got["n1"].addresses >= {METADATA_V4}
    assert any(a.startswith("10.0.0.2/") for a in got["n1"].addresses)


def test_an_unchanged_network_keeps_its_spec_and_a_changed_one_gets_a_new_one() -> None:
    """Memoised per network: a pass after one network changed computes only that one."""
    before, _ = specs(port("vm1"), localport(), port("vm2", "n2"), localport("n2", name="md2"))
    after, _ = specs(port("vm1"), localport(), localport("n2", name="md2"),
                     port("vm2", "n2", mac=("fa:16:3e:00:00:11 10.0.0.11",)))
    assert after["n1"] is before["n1"]
    assert after["n2"] is not before["n2"]
    assert after["n2"].vm_ips == {"10.0.0.11"}


def test_a_port_losing_its_interface_changes_its_networks_neighbours() -> None:
    ports = (port("vm1"), localport())
    with_iface = desired_networks(SbSnapshot("c1", ports), plugged=frozenset({"vm1"}))[0]
    without = desired_networks(SbSnapshot("c1", ports), plugged=frozenset())[0]
    assert with_iface["n1"].neighbours == {("10.0.0.10", "fa:16:3e:00:00:10")}
    assert without["n1"].neighbours == frozenset()
    assert without["n1"].vm_ips == {"10.0.0.10"}


def test_a_localport_address_without_a_prefix_takes_the_vm_ports_subnet() -> None:
    got, problems = specs(port("vm1", **{"neutron:cidrs": "10.0.0.10/24"}),
                          localport(cidrs="garbage"))
    assert problems == []
    assert "10.0.0.2/24" in got["n1"].addresses
    assert [n for n in got["n1"].notes if "gives no prefix for 10.0.0.2" in n
            and "/24 taken from the VM ports'" in n]
    got, _ = specs(port("vm1"), localport(cidrs="garbage"))   # nothing to take it from
    assert "10.0.0.2/32" in got["n1"].addresses
    assert [n for n in got["n1"].notes if "leaves VMs on its subnet unanswered" in n]


@pytest.mark.parametrize("mtu", ["0", "67", "65536", "99999999999999", "abc", "-1", " 1500"])
def test_a_neutron_mtu_that_is_no_mtu_is_ignored_with_a_note(mtu) -> None:
    got, problems = specs(port("vm1"), localport(**{"neutron:mtu": mtu}))
    assert problems == [] and got["n1"].mtu is None
    assert [n for n in got["n1"].notes if "is not an MTU" in n]
    got, _ = specs(port("vm1"), localport(**{"neutron:mtu": "1442"}))
    assert got["n1"].mtu == 1442 and got["n1"].notes == frozenset()


def test_a_vm_port_without_mac_or_ip_is_noted() -> None:
    got, _ = specs(port("vm1"), port("vm2", mac=("fa:16:3e:00:00:11",)), localport())
    assert [n for n in got["n1"].notes if n.startswith("VM port vm2: no usable MAC and IP")]


def test_unknown_beside_a_mac_and_ip_is_no_note() -> None:
    got, _ = specs(port("vm1", mac=("unknown", "fa:16:3e:00:00:10 10.0.0.10")), localport())
    assert got["n1"].notes == frozenset()
