"""The agent against real OVN, netns and haproxy: provisioning, teardown, adoption, repair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ovnmeta.core import naming
from ovnmeta.core.model import METADATA_V6
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import STARTING, AgentProcess, namespaces, wait_until
from ovnmeta_testing.echo import fetch, wait_served


def inner_addresses(net_id: str) -> set[str]:
    out = subprocess.run(["ip", "-n", naming.namespace(net_id), "-o", "addr", "show", "dev",
                          naming.inner_device(net_id)], capture_output=True, text=True).stdout
    # The kernel's own link-local address is left out; the metadata one is ours. (Matching
    # "a9fe" anywhere in the line once took the device name too: omt5b46a9fe29i.)
    addresses = {line.split()[3] for line in out.splitlines()}
    return {a for a in addresses if not a.startswith("fe80::") or a == METADATA_V6}


def ovs_ports(sandbox) -> dict[str, str]:
    out = sandbox.vsctl("--format=json", "--columns=name,external_ids", "list", "Interface")
    rows = json.loads(out)["data"]
    return {name: dict(ext[1]).get("iface-id", "") for name, ext in rows
            if name.startswith("omt")}


def frontends(agent: AgentProcess) -> list[str]:
    text = "".join(p.read_text() for p in (agent.state_dir / "haproxy").glob("*.cfg"))
    return [line.split()[1] for line in text.splitlines() if line.startswith("frontend ")]


@pytest.fixture
def echo_agent(start_agent, echo):
    """An agent whose nova is the echo server: it shows what reaches nova."""
    return start_agent(extra=f"nova_metadata_port = {echo.port}")


def test_vm_bound_gets_namespace_ovs_port_frontend_and_tcp(sandbox, make_network, make_vm,
                                                          echo_agent) -> None:
    net = make_network()
    vm = make_vm(net)
    seen = wait_served(vm)
    assert dict(seen["headers"])["x-instance-id"] == vm.port.device_id
    ns = naming.namespace(net.id)
    assert ns in namespaces()
    assert inner_addresses(net.id) == {net.metadata_port.ips[0], "169.254.169.254/32"}
    assert ovs_ports(sandbox) == {naming.outer_device(net.id): net.metadata_port.name}
    assert frontends(echo_agent) == [naming.frontend(net.id)]
    mac = subprocess.run(["ip", "-n", ns, "-o", "link", "show", naming.inner_device(net.id)],
                         capture_output=True, text=True).stdout
    assert net.metadata_port.mac in mac


def test_client_cannot_forge_network_id_or_forwarded_for(make_network, make_vm,
                                                         echo_agent) -> None:
    net = make_network()
    vm = make_vm(net)
    wait_served(vm)
    other = make_vm(make_network(cidrs=("10.5.0.0/24",)))
    wait_served(other)
    # haproxy replaces both headers; had it passed the client's on, the agent would see two
    # values and answer 400, or identify the wrong VM.
    seen = fetch(vm, f"X-OVN-Network-ID: {other.network.id}", f"x-ovn-network-id: {net.id}",
                 f"X-Forwarded-For: {other.port.ip}")
    headers = seen["headers"]
    assert [v for k, v in headers if k == "x-forwarded-for"] == [vm.port.ip]
    assert [v for k, v in headers if k == "x-instance-id"] == [vm.port.device_id]
    assert not [v for k, v in headers if k == "x-ovn-network-id"]


def test_second_vm_duplicates_nothing_and_last_vm_removes_all(sandbox, make_network, make_vm,
                                                              echo_agent) -> None:
    net = make_network()
    a = make_vm(net)
    wait_served(a)
    b = make_vm(net)
    wait_served(b)
    assert sorted(n for n in namespaces() if n.startswith("ovnmeta-")) == [
        naming.namespace(net.id)]
    assert len(ovs_ports(sandbox)) == 1
    assert frontends(echo_agent) == [naming.frontend(net.id)]
    assert len(echo_agent.haproxy_pids()) == 1

    a.unplug()
    wait_until(lambda: a.bound_chassis() == "", what="first VM unbound")
    assert fetch(b) is not None
    b.unplug()
    wait_until(lambda: naming.namespace(net.id) not in namespaces(), what="namespace removed")
    wait_until(lambda: not ovs_ports(sandbox), what="OVS port removed")
    wait_until(lambda: not echo_agent.haproxy_pids(), what="haproxy stopped")
    wait_until(lambda: not os.path.exists(f"/sys/class/net/{naming.outer_device(net.id)}"),
               what="veth pair destroyed")
    time.sleep(1.0)   # the maps' next syncs, with no haproxy: stopped on purpose, not a fault
    assert "direct path off" not in echo_agent.log(), echo_agent.log()[-2000:]


def test_network_deleted_in_neutron_is_torn_down(sandbox, make_network, make_vm,
                                                 echo_agent) -> None:
    net = make_network()
    vm = make_vm(net)
    wait_served(vm)
    neutron.delete_network(sandbox, net)
    wait_until(lambda: naming.namespace(net.id) not in namespaces(), what="namespace removed")
    wait_until(lambda: not ovs_ports(sandbox), what="OVS port removed")


def test_restart_adopts_and_removes_stale(sandbox, make_network, make_vm, start_agent,
                                          echo) -> None:
    net = make_network()
    vm = make_vm(net)
    agent = start_agent(extra=f"nova_metadata_port = {echo.port}")
    wait_served(vm)
    haproxy = agent.haproxy_pids()
    ifindex = Path(f"/sys/class/net/{naming.outer_device(net.id)}/ifindex").read_text()
    agent.stop()
    # haproxy and the namespace stay while no agent runs.
    assert naming.namespace(net.id) in namespaces() and agent.haproxy_pids() == haproxy
    subprocess.run(["ip", "netns", "add", "ovnmeta-stale-network"], check=True)
    agent.start()
    wait_until(lambda: "ovnmeta-stale-network" not in namespaces(),
               what="stale namespace removed")
    assert fetch(vm) is not None
    assert agent.haproxy_pids() == haproxy
    assert Path(f"/sys/class/net/{naming.outer_device(net.id)}/ifindex").read_text() \
        == ifindex
    assert "CreateNamespace" not in agent.log().split(STARTING)[-1]


def test_killed_haproxy_is_respawned(make_network, make_vm, echo_agent) -> None:
    vm = make_vm(make_network())
    wait_served(vm)
    [pid] = echo_agent.haproxy_pids()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: echo_agent.haproxy_pids() and echo_agent.haproxy_pids() != [pid],
               what="haproxy respawned")
    wait_served(vm)


def test_namespace_deleted_by_hand_is_recreated(make_network, make_vm, echo_agent) -> None:
    net = make_network()
    vm = make_vm(net)
    wait_served(vm)
    subprocess.run(["ip", "netns", "del", naming.namespace(net.id)], check=True)
    wait_until(lambda: naming.namespace(net.id) in namespaces(), what="namespace recreated")
    wait_served(vm)


def test_localport_address_change_follows(sandbox, make_network, make_vm, echo_agent) -> None:
    net = make_network()
    vm = make_vm(net)
    wait_served(vm)
    md = net.metadata_port
    sandbox.nbctl("lsp-set-addresses", md.name, f"{md.mac} 10.0.0.3",
                  "--", "set", "Logical_Switch_Port", md.name,
                  'external_ids:"neutron:cidrs"="10.0.0.3/24"')
    wait_until(lambda: inner_addresses(net.id) == {"10.0.0.3/24", "169.254.169.254/32"},
               what="new localport IP in the namespace")
    vm.exec("ip", "route", "replace", "169.254.169.254/32", "via", "10.0.0.3")
    wait_served(vm)


def test_ipv6_network_gets_link_local_metadata_address(make_network, make_vm,
                                                       echo_agent) -> None:
    net = make_network(cidrs=("10.0.0.0/24", "fd00:1::/64"))
    vm = make_vm(net)
    wait_served(vm)
    assert inner_addresses(net.id) == {"10.0.0.2/24", "fd00:1::2/64", "169.254.169.254/32",
                                       "fe80::a9fe:a9fe/128"}
    assert "fe80::a9fe:a9fe" in "".join(
        (echo_agent.state_dir / "haproxy").joinpath("shared.cfg").read_text())


def test_second_agent_refuses_to_start(sandbox, echo_agent) -> None:
    wait_until(lambda: "serving metadata" in echo_agent.log(), what="first agent up")
    second = subprocess.run(
        [str(Path(os.sys.executable).parent / "ovnmeta-agent"), "--config-file",
         str(echo_agent.config)], capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert f"pid {echo_agent.proc.pid}" in second.stdout + second.stderr  # oslo.log: stdout
    assert echo_agent.running()


def test_per_network_mode_runs_one_haproxy_per_network(make_network, make_vm,
                                                       start_agent, echo) -> None:
    a_net, b_net = make_network(), make_network(cidrs=("10.1.0.0/24",))
    a, b = make_vm(a_net), make_vm(b_net)
    agent = start_agent(mode="per-network", extra=f"nova_metadata_port = {echo.port}")
    assert dict(wait_served(a)["headers"])["x-instance-id"] == a.port.device_id
    assert dict(wait_served(b)["headers"])["x-instance-id"] == b.port.device_id
    assert len(agent.haproxy_pids()) == 2
    b.unplug()
    wait_until(lambda: len(agent.haproxy_pids()) == 1, what="b's haproxy stopped")
    assert fetch(a) is not None


def test_sb_restart_keeps_serving_and_resyncs(sandbox, make_network, make_vm,
                                              echo_agent) -> None:
    net = make_network()
    vm = make_vm(net)
    wait_served(vm)
    pid = sandbox.pid("ovnsb_db")
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: sandbox.pid("ovnsb_db") is None, what="SB stopped")
    assert fetch(vm) is not None          # the host keeps serving without the SB
    sandbox.up()
    vm2 = make_vm(make_network(cidrs=("10.2.0.0/24",)))
    wait_served(vm2, timeout=30)
    assert fetch(vm) is not None


def test_sb_over_tcp_with_a_dead_remote_listed_first(sandbox, make_network, make_vm,
                                                     start_agent, echo, tmp_path) -> None:
    net = make_network()
    vm = make_vm(net)
    agent = start_agent(run=False, extra=f"nova_metadata_port = {echo.port}")
    # A second remote that refuses connections: python-ovs moves on to the live one.
    text = agent.config.read_text().replace(
        f"ovn_sb_connection = {sandbox.sb_connection}",
        f"ovn_sb_connection = tcp:127.0.0.1:1,{sandbox.sb_tcp_connection}")
    agent.config.write_text(text)
    agent.start()
    assert dict(wait_served(vm, timeout=30)["headers"])["x-instance-id"] == vm.port.device_id


def test_local_ovsdb_restart_is_survived(sandbox, make_network, make_vm, echo_agent) -> None:
    vm = make_vm(make_network())
    wait_served(vm)
    pid = sandbox.pid("ovsdb-server")
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: sandbox.pid("ovsdb-server") is None, what="ovsdb-server stopped")
    sandbox.up()  # restarts what is missing
    assert fetch(vm) is not None
    vm2 = make_vm(make_network(cidrs=("10.3.0.0/24",)))
    wait_served(vm2, timeout=30)
    assert echo_agent.running()


def test_agent_reports_liveness_to_neutron(sandbox, echo_agent) -> None:
    """The sb-cfg key is written at start, not at neutron's next nb_cfg bump, so the agent
    is listed alive from its first seconds (LP #2111475)."""
    def reported() -> dict[str, str]:
        out = sandbox.sbctl("--format=json", "--columns=external_ids", "find",
                            "Chassis_Private", f"name={sandbox.chassis}")
        return dict(json.loads(out)["data"][0][0][1])

    def nb_cfg() -> str:
        return sandbox.sbctl("get", "SB_Global", ".", "nb_cfg").strip()
    wait_until(lambda: reported().get("neutron:ovn-metadata-sb-cfg") == nb_cfg(),
               what="sb-cfg reported")
    agent_id = reported()["neutron:ovn-metadata-id"]
    # neutron bumps nb_cfg to probe its agents; northd copies it to the SB.
    bumped = str(int(nb_cfg()) + 7)
    sandbox.nbctl("set", "NB_Global", ".", f"nb_cfg={bumped}")
    wait_until(lambda: reported().get("neutron:ovn-metadata-sb-cfg") == bumped,
               what="bumped nb_cfg echoed")
    assert reported()["neutron:ovn-metadata-id"] == agent_id


def test_keys_are_back_when_chassis_private_is_made_anew(sandbox, echo_agent) -> None:
    """ovn-controller re-creates a destroyed Chassis_Private row; the agent's keys are back
    within seconds, not at the next nb_cfg bump (LP #2119097)."""
    def reported() -> dict[str, str]:
        out = sandbox.sbctl("--format=json", "--columns=external_ids", "find",
                            "Chassis_Private", f"name={sandbox.chassis}")
        rows = json.loads(out)["data"]
        return dict(rows[0][0][1]) if rows else {}

    wait_until(lambda: "neutron:ovn-metadata-sb-cfg" in reported(), what="sb-cfg reported")
    before = reported()
    sandbox.sbctl("destroy", "Chassis_Private", sandbox.chassis)
    started = time.monotonic()
    wait_until(lambda: reported().get("neutron:ovn-metadata-id")
               == before["neutron:ovn-metadata-id"]
               and "neutron:ovn-metadata-sb-cfg" in reported(),
               timeout=10, what="the agent's keys in the new Chassis_Private row")
    print(f"keys back {time.monotonic() - started:.2f} s after the row was destroyed")


def test_vm_arriving_by_live_migration_is_served(sandbox, make_network, make_vm,
                                                 echo_agent) -> None:
    """During live migration the port lists this chassis in additional_chassis only."""
    sandbox.sbctl("chassis-add", "migration-source", "geneve", "127.0.0.2")
    try:
        net = make_network()
        vm = make_vm(net, bind=False)
        sandbox.nbctl("set", "Logical_Switch_Port", vm.port.name,
                      f"options:requested-chassis=migration-source,{sandbox.chassis}")
        vm.plug()
        ours = sandbox.sbctl("--bare", "--columns=_uuid", "find", "Chassis",
                             f"name={sandbox.chassis}").strip()
        wait_until(lambda: ours in sandbox.sbctl("--bare", "--columns=additional_chassis",
                                                 "find", "Port_Binding",
                                                 f"logical_port={vm.port.name}"),
                   what="port bound here as additional chassis")
        assert dict(wait_served(vm)["headers"])["x-instance-id"] == vm.port.device_id
    finally:
        sandbox.sbctl("--if-exists", "chassis-del", "migration-source")


def test_sb_view_holds_only_this_chassis_rows(sandbox, make_network, make_vm,
                                              echo_agent) -> None:
    from ovnmeta.agent import control

    vm = make_vm(make_network())
    wait_served(vm)
    args = ["--", "ls-add", "unrelated"]
    for i in range(300):
        args += ["--", "lsp-add", "unrelated", f"unrelated-{i}"]
    sandbox.nbctl(*args)
    try:
        wait_until(lambda: sandbox.sbctl("--bare", "--columns=_uuid", "list",
                                         "Port_Binding").count("\n") >= 300,
                   what="unrelated Port_Bindings in the SB")
        sock = str(echo_agent.state_dir / control.CONTROL_SOCKET)
        rows = control.request(sock, "/status")[1]["sb_rows"]
        assert rows["Port_Binding"] == 2          # the VM's port and its localport
        assert rows["Datapath_Binding"] == 1 and rows["Chassis"] == 1
    finally:
        sandbox.nbctl("ls-del", "unrelated")


def test_an_address_removed_by_hand_comes_back_with_the_rolling_resync(
        make_network, make_vm, start_agent, echo) -> None:
    """No event tells the agent of a change inside its namespace: the rolling resync, which
    looks at every network within [metadata] reconcile_interval a few at a time, undoes it
    (with an interval of 300 s it came back after 290 s: the 1 s host check does not)."""
    interval = 3
    start_agent(extra=f"nova_metadata_port = {echo.port}\n"
                      f"[metadata]\nreconcile_interval = {interval}")
    nets = [make_network(), make_network()]
    for net in nets:
        wait_served(make_vm(net))
    for net in nets:
        subprocess.run(["ip", "-n", naming.namespace(net.id), "addr", "del",
                        "169.254.169.254/32", "dev", naming.inner_device(net.id)], check=True)
    wait_until(lambda: all("169.254.169.254/32" in inner_addresses(n.id) for n in nets),
               timeout=interval * 3, what="the metadata address back in both namespaces")
