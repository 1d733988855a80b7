import dataclasses
import signal

from ovnmeta.core import naming, plan
from ovnmeta.core.model import METADATA_V4, ActualNetwork, ForeignProcess, LinkState, NetworkSpec

SPEC = NetworkSpec(network_id="n1", namespace="ovnmeta-n1", outer="omto", inner="omti",
                   iface_id="md1", mac="fa:16:3e:00:00:02",
                   addresses=frozenset({"10.0.0.2/24", METADATA_V4}), mtu=1442, vm_ports=1)
GOOD = ActualNetwork(network_id="n1", namespace=True,
                     inner=LinkState(mac=SPEC.mac, mtu=1442, up=True,
                                     addresses=SPEC.addresses, tx_csum=False),
                     outer_exists=True, outer_up=True, ovs_iface_id="md1")


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
    actual = ActualNetwork(network_id="n1", namespace=True, inner=None, outer_exists=False)
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


def test_a_new_mac_adds_the_ipv6_addresses_its_link_down_drops() -> None:
    v6 = {"fd00::2/64", "fe80::a9fe:a9fe/128"}
    spec = dataclasses.replace(SPEC, addresses=SPEC.addresses | v6)
    inner = LinkState(mac="fa:16:3e:ff:ff:ff", mtu=1442, up=True, addresses=spec.addresses)
    steps = plan.plan_network(spec, ActualNetwork(**{**GOOD.__dict__, "inner": inner}),
                              netdev=True)
    assert steps == [plan.ConfigureInner(spec, True)] + [plan.AddAddress(spec, a)
                                                         for a in sorted(v6)]
    # Up with the right MAC (an MTU change, say): nothing is dropped, nothing added.
    inner = dataclasses.replace(inner, mac=spec.mac, mtu=1500)
    steps = plan.plan_network(spec, ActualNetwork(**{**GOOD.__dict__, "inner": inner}),
                              netdev=True)
    assert steps == [plan.ConfigureInner(spec, True)]


def test_checksum_left_alone_on_system_datapath() -> None:
    inner = LinkState(mac=SPEC.mac, mtu=1442, up=True, addresses=SPEC.addresses, tx_csum=True)
    actual = ActualNetwork(**{**GOOD.__dict__, "inner": inner})
    assert plan.plan_network(SPEC, actual, netdev=False) == []


def test_wrong_iface_id_or_unplugged_port_is_replugged() -> None:
    for iface in (None, "other"):
        actual = ActualNetwork(**{**GOOD.__dict__, "ovs_iface_id": iface})
        assert kinds(plan.plan_network(SPEC, actual, netdev=True)) == ["PlugOvs"]


# -- takeover: another agent's layout in the namespace ------------------------------------
NEUTRON = ActualNetwork(network_id="n1", namespace=True, inner=None, outer_exists=False,
                        foreign_links=("tapn1-1",), foreign_ovs=("tapn1-0",),
                        foreign_procs=(ForeignProcess(7, "haproxy", "/x/n1.conf"),
                                       ForeignProcess(8, "bash")))


def test_takeover_swaps_the_port_then_removes_their_devices_before_adding_addresses() -> None:
    steps = plan.plan_network(SPEC, NEUTRON, netdev=True)
    assert kinds(steps) == ["CreateVeth", "ConfigureInner", "SetOuterUp", "PlugOvs"]
    assert steps[3].replaces == ("tapn1-0",)
    # Once the swap has committed: their veth goes before our addresses come up.
    assert kinds(steps[3].then) == ["DeleteLinks", "AddAddress", "AddAddress"]
    assert steps[3].then[0].links == ("tapn1-1",)
    # Their haproxy keeps serving until ours listens.
    assert not any(isinstance(s, plan.SignalProcess) for s in steps)
    # A pass that finds ours on the bridge and theirs still in the namespace does the same.
    swapped = dataclasses.replace(NEUTRON, inner=dataclasses.replace(GOOD.inner,
                                                                     addresses=frozenset()),
                                  outer_exists=True, outer_up=True, ovs_iface_id="md1",
                                  foreign_ovs=())
    steps = plan.plan_network(SPEC, swapped, netdev=True)
    assert kinds(steps) == ["DeleteLinks", "AddAddress", "AddAddress"]
    assert steps[0].links == ("tapn1-1",)


def test_their_proxy_is_soft_stopped_only_once_ours_listens() -> None:
    built = dataclasses.replace(GOOD, foreign_procs=NEUTRON.foreign_procs)
    assert plan.plan_network(SPEC, built, netdev=True) == []
    served = dataclasses.replace(built, served=True)
    steps = plan.plan_network(SPEC, served, netdev=True)
    # Only the haproxy: an unknown process in the namespace is never signalled.
    assert steps == [plan.SignalProcess("n1", NEUTRON.foreign_procs[0], signal.SIGUSR1)]
    assert plan.replaceable(built) and not plan.replaceable(
        dataclasses.replace(GOOD, foreign_procs=(ForeignProcess(8, "bash"),)))


def test_a_port_of_theirs_appearing_later_is_replaced_in_one_transaction() -> None:
    steps = plan.plan_network(SPEC, dataclasses.replace(GOOD, foreign_ovs=("tapn1-0",)),
                              netdev=True)
    assert steps == [plan.PlugOvs(SPEC, replaces=("tapn1-0",))]


def test_their_firewall_goes_once_our_addresses_are_up() -> None:
    with_rules = dataclasses.replace(NEUTRON, foreign_tables=("2:mangle",), foreign_ovs=(),
                                     inner=dataclasses.replace(GOOD.inner,
                                                               addresses=frozenset()),
                                     outer_exists=True, outer_up=True, ovs_iface_id="md1")
    steps = plan.plan_network(SPEC, with_rules, netdev=True)
    assert kinds(steps)[-1] == "DeleteFirewall" and steps[-1].tables == ("2:mangle",)
    assert kinds(steps).index("DeleteFirewall") > kinds(steps).index("AddAddress")
    assert plan.plan_network(SPEC, dataclasses.replace(GOOD, foreign_tables=("2:mangle",)),
                             netdev=True) == [plan.DeleteFirewall(SPEC, ("2:mangle",))]


def test_a_neighbour_at_another_mac_than_the_sbs_is_replaced_or_forgotten() -> None:
    spec = dataclasses.replace(SPEC, neighbours=frozenset({("10.0.0.10", "fa:16:3e:00:00:0b")}),
                               vm_ips=frozenset({"10.0.0.10", "10.0.0.11"}))
    inner = dataclasses.replace(GOOD.inner, neighbours=frozenset({
        ("10.0.0.10", "fa:16:3e:00:00:0a"),      # the deleted VM's MAC: replaced
        ("10.0.0.11", "fa:16:3e:00:00:0c"),      # bound here, its VM gone: forgotten
        ("10.0.0.99", "fa:16:3e:00:00:99"),      # no port has it: left to expire
        ("fe80::1", "fa:16:3e:00:00:0b")}))      # link-local: not the SB's to say
    steps = plan.plan_network(spec, dataclasses.replace(GOOD, inner=inner), netdev=True)
    assert steps == [plan.DeleteNeighbours(spec, ("10.0.0.11",)),
                     plan.AddNeighbours(spec, (("10.0.0.10", "fa:16:3e:00:00:0b"),))]
    ok = dataclasses.replace(inner, neighbours=frozenset(), permanent=spec.neighbours)
    assert plan.plan_network(spec, dataclasses.replace(GOOD, inner=ok), netdev=True) == []


def test_neighbours_are_permanent_from_the_first_build_and_follow_the_vms() -> None:
    a, b = ("10.0.0.10", "fa:16:3e:00:00:0a"), ("fe80::f816:3eff:fe00:a", "fa:16:3e:00:00:0a")
    spec = dataclasses.replace(SPEC, neighbours=frozenset({a, b}))
    built = plan.plan_network(spec, None, netdev=True)
    assert plan.AddNeighbours(spec, (a, b)) in built
    assert kinds(built).index("AddNeighbours") > kinds(built).index("ConfigureInner")
    # The VM left: its entries go; a new one's are added.
    c = ("10.0.0.12", "fa:16:3e:00:00:0c")
    moved = dataclasses.replace(spec, neighbours=frozenset({c}))
    has = dataclasses.replace(GOOD, inner=dataclasses.replace(GOOD.inner, permanent={a, b}))
    assert plan.plan_network(moved, has, netdev=True) == [
        plan.DeleteNeighbours(moved, (a[0], b[0])), plan.AddNeighbours(moved, (c,))]
    # A new MAC takes the link down, which flushes them: all are written again.
    down = dataclasses.replace(has.inner, mac="fa:16:3e:00:00:99")
    steps = plan.plan_network(spec, dataclasses.replace(has, inner=down), netdev=True)
    assert kinds(steps) == ["ConfigureInner", "AddNeighbours"] and steps[1].entries == (a, b)


def test_stale_network_of_theirs_is_stopped_then_deleted() -> None:
    steps = plan.plan_network(None, NEUTRON, netdev=True)
    assert steps == [plan.SignalProcess("n1", NEUTRON.foreign_procs[0], signal.SIGTERM),
                     plan.DeleteNetwork("n1", ("tapn1-0",))]


def test_a_lingering_process_is_escalated_on_the_plans_clock_and_forgotten_once_gone() -> None:
    theirs = NEUTRON.foreign_procs[0]
    soft = dataclasses.replace(theirs, signal=signal.SIGUSR1, signalled_at=100.0)
    served = dataclasses.replace(GOOD, foreign_procs=(soft,), served=True)

    def signals(actual, now):
        return [(s.process.pid, s.signal) for s in plan.plan_network(SPEC, actual, True, now)
                if isinstance(s, plan.SignalProcess)]
    assert signals(served, 100.0 + plan.SOFT_STOP_SECONDS - 0.1) == []      # let it finish
    assert signals(served, 100.0 + plan.SOFT_STOP_SECONDS) == [(7, signal.SIGTERM)]
    term = dataclasses.replace(served, foreign_procs=(
        dataclasses.replace(theirs, signal=signal.SIGTERM, signalled_at=200.0),))
    assert signals(term, 200.0 + plan.HARD_STOP_SECONDS - 0.1) == []
    assert signals(term, 200.0 + plan.HARD_STOP_SECONDS) == [(7, signal.SIGKILL)]
    killed = dataclasses.replace(term, foreign_procs=(
        dataclasses.replace(theirs, signal=signal.SIGKILL, signalled_at=300.0),))
    assert signals(killed, 10_000.0) == []                                   # nothing after
    # Escalation goes on whatever else the network needs (ours stopped listening, say),
    # and a network no longer desired follows its process after the namespace is gone.
    assert signals(dataclasses.replace(served, served=False, inner=None),
                   100.0 + plan.SOFT_STOP_SECONDS) == [(7, signal.SIGTERM)]
    gone_ns = ActualNetwork(network_id="n1", namespace=False, inner=None, outer_exists=False,
                            outer_up=False, ovs_iface_id=None, foreign_procs=(soft,))
    assert plan.plan_network(None, gone_ns, True, 100.0 + plan.SOFT_STOP_SECONDS) == [
        plan.SignalProcess("n1", soft, signal.SIGTERM)]
    ended = dataclasses.replace(gone_ns, foreign_procs=(), ended=(soft,))
    assert plan.plan_network(None, ended, True, 0.0) == [plan.ForgetProcess("n1", soft)]


def test_other_agents_ports_are_the_localports_iface_id_or_neutrons_name_never_a_vms() -> None:
    neutron_outer = naming.neutron_veth("n1")[0]
    host = plan.HostView(plugged={}, processes={}, others={
        "foreign-md": ("md1", False),            # our localport's iface-id, someone's port
        neutron_outer: ("", False),              # neutron's name, its iface-id gone
        "tap-vm": ("vm-1", True)})               # a VM's
    assert host.foreign_ovs("n1", SPEC) == ("foreign-md", neutron_outer)
    # neutron's name on a port carrying another iface-id is not ours to replace
    other = plan.HostView(plugged={}, processes={}, others={neutron_outer: ("vm-9", False)})
    assert other.foreign_ovs("n1", SPEC) == ()
    # a network no longer desired: neutron's port still goes, nothing else is looked up
    assert host.foreign_ovs("n1", None) == (neutron_outer,)
    # a VM's port under neutron's name is never touched
    vm = plan.HostView(plugged={}, processes={}, others={neutron_outer: ("", True)})
    assert vm.foreign_ovs("n1", SPEC) == ()
