from ovnmeta import plan
from ovnmeta.model import METADATA_V4, ActualNetwork, LinkState, NetworkSpec

SPEC = NetworkSpec(network_id="n1", namespace="ovnmeta-n1", outer="omto", inner="omti",
                   iface_id="md1", mac="fa:16:3e:00:00:02",
                   addresses=frozenset({"10.0.0.2/24", METADATA_V4}), mtu=1442, vm_ports=1)
GOOD = ActualNetwork(network_id="n1", namespace=True,
                     inner=LinkState(mac=SPEC.mac, mtu=1442, up=True,
                                     addresses=SPEC.addresses, tx_csum=False),
                     outer=True, outer_up=True, ovs_iface_id="md1")


def kinds(steps):
    return [type(s).__name__ for s in steps]


def test_converged_network_needs_nothing() -> None:
    assert plan.plan_network(SPEC, GOOD, netdev=True) == []


def test_new_network_is_built_in_order() -> None:
    steps = plan.plan_network(SPEC, None, netdev=True)
    assert kinds(steps) == ["CreateNamespace", "CreateVeth", "ConfigureInner", "AddAddress",
                            "AddAddress", "SetOuterUp", "PlugOvs"]
    assert steps[2].csum_off


def test_namespace_without_veth_rebuilds_the_pair_only() -> None:
    actual = ActualNetwork(network_id="n1", namespace=True, inner=None, outer=False)
    assert kinds(plan.plan_network(SPEC, actual, netdev=False))[:2] == ["CreateVeth",
                                                                         "ConfigureInner"]


def test_undesired_network_is_deleted_and_absent_one_ignored() -> None:
    assert plan.plan_network(None, GOOD, netdev=True) == [plan.DeleteNetwork("n1")]
    assert plan.plan_network(None, ActualNetwork(network_id="n1"), netdev=True) == []
    orphan_port = ActualNetwork(network_id="n1", ovs_iface_id="md1")
    assert plan.plan_network(None, orphan_port, netdev=True) == [plan.DeleteNetwork("n1")]


def test_address_change_deletes_before_adding() -> None:
    spec = NetworkSpec(**{**SPEC.__dict__, "addresses": frozenset({"10.0.0.3/24", METADATA_V4})})
    steps = plan.plan_network(spec, GOOD, netdev=True)
    assert steps == [plan.DelAddress(spec, "10.0.0.2/24"), plan.AddAddress(spec, "10.0.0.3/24")]


def test_mac_mtu_and_checksum_drift_reconfigure() -> None:
    for inner in (LinkState(mac="fa:16:3e:ff:ff:ff", mtu=1442, up=True, addresses=SPEC.addresses),
                  LinkState(mac=SPEC.mac, mtu=1500, up=True, addresses=SPEC.addresses),
                  LinkState(mac=SPEC.mac, mtu=1442, up=False, addresses=SPEC.addresses),
                  LinkState(mac=SPEC.mac, mtu=1442, up=True, addresses=SPEC.addresses,
                            tx_csum=True)):
        actual = ActualNetwork(**{**GOOD.__dict__, "inner": inner})
        assert kinds(plan.plan_network(SPEC, actual, netdev=True)) == ["ConfigureInner"]


def test_checksum_left_alone_on_system_datapath() -> None:
    inner = LinkState(mac=SPEC.mac, mtu=1442, up=True, addresses=SPEC.addresses, tx_csum=True)
    actual = ActualNetwork(**{**GOOD.__dict__, "inner": inner})
    assert plan.plan_network(SPEC, actual, netdev=False) == []


def test_wrong_iface_id_or_unplugged_port_is_replugged() -> None:
    for iface in (None, "other"):
        actual = ActualNetwork(**{**GOOD.__dict__, "ovs_iface_id": iface})
        assert kinds(plan.plan_network(SPEC, actual, netdev=True)) == ["PlugOvs"]
