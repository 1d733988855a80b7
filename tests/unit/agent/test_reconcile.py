"""The reconciler's decisions with the host faked at its boundary (netlink, OVS, haproxy).

The sandbox tests run it against the real thing; these pin down retry, backoff and the
rule that nothing is deleted while the SB view cannot be refreshed.
"""

from __future__ import annotations

import logging
import threading

import pytest

from ovnmeta.agent import reconcile
from ovnmeta.core import naming
from ovnmeta.core.model import PortRecord, SbSnapshot
from ovnmeta.ovsdb.ovs import ChassisConfig
from ovnmeta_testing.fakes import FakeHaproxy, FakeHost, FakeOvs, FakeSb

MD_MAC = "fa:16:3e:00:00:02"


def snapshot(*nets: str) -> SbSnapshot:
    ports = []
    for net in nets:
        ports.append(PortRecord("vm-" + net, "", net, ("fa:16:3e:00:00:10 10.0.0.10",),
                                (("neutron:device_id", "i-" + net),), True))
        ports.append(PortRecord("md-" + net, "localport", net, (f"{MD_MAC} 10.0.0.2",),
                                (("neutron:cidrs", "10.0.0.2/24"),), False))
    return SbSnapshot("c1", tuple(ports))


@pytest.fixture
def world():
    host = FakeHost()
    sb, ovs, haproxy = FakeSb(snapshot("n1")), FakeOvs(), FakeHaproxy()
    rec = reconcile.Reconciler(sb, ovs, ChassisConfig("c1", "br-int", "system"), haproxy,
                               host=host)
    return rec, sb, ovs, haproxy, host


def test_builds_plugs_and_serves_then_is_idle(world) -> None:
    rec, sb, ovs, haproxy, host = world
    rec.reconcile_once()
    assert "ovnmeta-n1" in host.namespaces
    assert ovs.ports == {naming.outer_device("n1"): "md-n1"}
    assert haproxy.frontends == ["n1"]
    assert rec.status.networks["n1"].ready
    rec.reconcile_once()
    assert host.create_calls == 1


def test_nothing_before_the_sb_view_is_loaded(world) -> None:
    rec, sb, ovs, haproxy, host = world
    sb.settled = False
    rec.reconcile_once()
    assert host.create_calls == 0 and haproxy.frontends == []


def test_failure_backs_off_logs_network_and_cause_then_recovers(world, caplog) -> None:
    rec, sb, ovs, haproxy, host = world
    host.fail_create = OSError(24, "Too many open files")
    with caplog.at_level(logging.ERROR):
        rec.reconcile_once()
    assert "n1" in caplog.text and "Too many open files" in caplog.text
    assert "Too many open files" in rec.status.networks["n1"].error
    assert not rec.status.networks["n1"].ready and haproxy.frontends == []
    rec.reconcile_once()           # still inside the backoff window: not tried again
    assert host.create_calls == 1
    host.fail_create = None
    rec._backoff["n1"].retry_at = 0  # the window has passed
    rec.reconcile_once()
    assert rec.status.networks["n1"].ready and haproxy.frontends == ["n1"]


def test_a_network_failing_after_a_restart_keeps_its_frontend(world, monkeypatch) -> None:
    rec, sb, ovs, haproxy, host = world
    rec.reconcile_once()
    assert haproxy.frontends == ["n1"]
    # A new agent finds it all in place, but a step fails: the frontend stays.
    rec2 = reconcile.Reconciler(sb, ovs, ChassisConfig("c1", "br-int", "system"), haproxy,
                                host=host)
    host.namespaces["ovnmeta-n1"] = None          # read back as needing its veth again
    def create_veth(spec) -> None:
        raise OSError(17, "File exists")
    monkeypatch.setattr(host, "create_veth", create_veth)
    rec2.reconcile_once()
    assert not rec2.status.networks["n1"].ready and rec2.status.networks["n1"].error
    assert haproxy.frontends == ["n1"]


def test_nothing_is_deleted_while_the_sb_is_unreachable(world) -> None:
    rec, sb, ovs, haproxy, host = world
    rec.reconcile_once()
    sb.up, sb.snap = False, snapshot()
    rec.reconcile_once()
    assert "ovnmeta-n1" in host.namespaces and ovs.ports
    sb.up = True
    rec.reconcile_once()
    assert host.namespaces == {} and ovs.ports == {} and haproxy.frontends == []


def test_stale_namespace_and_orphan_port_are_removed(world) -> None:
    rec, sb, ovs, haproxy, host = world
    host.namespaces["ovnmeta-stale"] = None
    ovs.ports["omt0000000000o"] = "gone"
    rec.reconcile_once()
    assert set(host.namespaces) == {"ovnmeta-n1"}
    assert ovs.ports == {naming.outer_device("n1"): "md-n1"}


def test_outer_end_left_by_a_held_namespace_is_deleted_but_not_while_sb_is_down(world) -> None:
    rec, sb, ovs, haproxy, host = world
    host.stray.add(naming.outer_device("gone"))
    sb.up = False
    rec.reconcile_once()
    assert host.stray == {naming.outer_device("gone")}
    sb.up = True
    rec.reconcile_once()
    assert host.stray == set() and "ovnmeta-n1" in host.namespaces


def test_network_without_localport_is_warned_about_once(world, caplog) -> None:
    rec, sb, ovs, haproxy, host = world
    sb.snap = SbSnapshot("c1", tuple(p for p in snapshot("n1").ports if p.type == ""))
    with caplog.at_level(logging.WARNING):
        rec.reconcile_once()
        rec.reconcile_once()
    warnings = [r for r in caplog.records if "not served" in r.getMessage()]
    assert len(warnings) == 1 and "no localport" in warnings[0].getMessage()
    assert rec.status.problems[0].network == "n1"


class RecordingMaps:
    """The direct path's map owner, as the reconciler sees it: told before and after."""

    def __init__(self, haproxy: FakeHaproxy, log: list) -> None:
        self.haproxy, self.log = haproxy, log

    def prepare(self, networks) -> None:
        self.log.append(("prepare", sorted(networks), list(self.haproxy.frontends)))

    def served(self, networks, reloaded: bool) -> None:
        self.log.append(("served", sorted(networks), reloaded))


def test_the_map_owner_is_told_before_haproxy_loads_a_map_and_after(world) -> None:
    rec, sb, ovs, haproxy, host = world
    log: list = []
    haproxy.reloads = 0
    haproxy.configured_networks = lambda: set(haproxy.frontends)
    real_sync = haproxy.sync

    def sync(frontends, recreated=frozenset(), meanwhile=None):
        haproxy.reloads += 1
        return real_sync(frontends, recreated, meanwhile)
    haproxy.sync = sync
    rec.maps = RecordingMaps(haproxy, log)
    rec.reconcile_once()
    # the file exists before haproxy's config names it; then only served networks keep one
    assert log == [("prepare", ["n1"], []), ("served", ["n1"], True)]
    sb.snap = snapshot()
    rec.reconcile_once()
    assert log[-1] == ("served", [], True)


def test_another_agents_port_for_a_served_network_is_replaced_and_a_vms_is_not(world) -> None:
    rec, sb, ovs, haproxy, host = world
    rec.reconcile_once()
    neutron_outer = naming.neutron_veth("n1")[0]
    ovs.foreign = {neutron_outer: ("md-n1", False),      # neutron's, with our localport
                   "tap-vm": ("vm-n1", True)}            # a VM's, never touched
    rec.mark({"n1"})
    rec.reconcile_once()
    assert ovs.replaced == [neutron_outer] and "tap-vm" in ovs.foreign
    assert ovs.ports[naming.outer_device("n1")] == "md-n1"


def test_an_after_pass_hook_that_raises_does_not_end_the_loop(world, caplog) -> None:
    rec, sb, ovs, haproxy, host = world
    stop = threading.Event()
    calls = []

    def hook() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise AttributeError("a metric read too early")
        stop.set()
    rec.mark_all()
    worker = threading.Thread(target=rec.run, args=(stop, hook))
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and len(calls) == 2 and rec.passes >= 1
    assert "after-pass hook failed" in caplog.text


def test_a_new_networks_port_goes_to_ovs_while_haproxy_loads_its_frontend(world) -> None:
    rec, sb, ovs, haproxy, host = world
    seen: list = []
    real_sync = haproxy.sync

    def sync(frontends, recreated=frozenset(), meanwhile=None):
        seen.append(("config", [f.network_id for f in frontends], sorted(ovs.ports)))
        return real_sync(frontends, recreated,
                         lambda: (meanwhile(), seen.append(("plugged", sorted(ovs.ports)))))
    haproxy.sync = sync
    rec.reconcile_once()
    outer = naming.outer_device("n1")
    # the frontend is in the config before the port is added, and added during the load
    assert seen == [("config", ["n1"], []), ("plugged", [outer])]
    assert rec.status.networks["n1"].ready

    # The plug fails: not ready, and retried; the frontend stays while the network is made.
    sb.snap = snapshot("n1", "n2")
    seen.clear()
    ovs.plug = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("ovsdb down"))
    rec.mark({"n2"})
    rec.reconcile_once()
    assert not rec.status.networks["n2"].ready and rec.status.networks["n2"].error
    assert rec.status.networks["n1"].ready


def test_a_pass_making_many_networks_plugs_them_in_chunks_as_it_goes() -> None:
    nets = [f"n{i:03d}" for i in range(reconcile.PLUG_CHUNK + 3)]
    host, sb, haproxy = FakeHost(), FakeSb(snapshot(*nets)), FakeHaproxy()
    commits: list[tuple[int, int]] = []   # (ports in the transaction, namespaces made by then)

    class CountingOvs(FakeOvs):
        def plug(self, bridge, ports, replaces=()) -> None:
            commits.append((len(ports), len(host.namespaces)))
            super().plug(bridge, ports, replaces)

    ovs = CountingOvs()
    rec = reconcile.Reconciler(sb, ovs, ChassisConfig("c1", "br-int", "system"), haproxy,
                               host=host)
    rec.reconcile_once()
    # The first chunk went to OVS before the rest of the networks were made, the remainder
    # with haproxy's load; every network is plugged and served.
    assert commits == [(reconcile.PLUG_CHUNK, reconcile.PLUG_CHUNK), (3, len(nets))]
    assert len(ovs.ports) == len(nets) and sorted(haproxy.frontends) == nets
    assert all(rec.status.networks[n].ready for n in nets)
