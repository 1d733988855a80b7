"""`ovnmeta status` and `ovnmeta trace` against a live sandbox, with each hop broken on purpose."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ovnmeta.core import naming
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.novaproc import NovaProcess

SECRET = "cli-secret"
CLI = str(Path(sys.executable).parent / "ovnmeta")


def ovnmeta(agent, *args: str) -> tuple[int, str]:
    """Exit code and stdout (stderr carries log lines)."""
    proc = subprocess.run([CLI, "--config-file", str(agent.config), *args],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout


def trace(agent, vm: str, *extra: str) -> tuple[int, dict]:
    code, out = ovnmeta(agent, "trace", vm, "--json", *extra)
    return code, json.loads(out)


def first_broken(result: dict) -> int | None:
    broken = [h["number"] for h in result["hops"] if not h["ok"]]
    return broken[0] if broken else None


@pytest.fixture
def served(make_network, make_vm, start_agent, tmp_path):
    net = make_network()
    vm = make_vm(net)
    nova = NovaProcess({vm.port.device_id: {"project_id": vm.port.project_id,
                                            "hostname": "traced"}}, SECRET, tmp_path).start()
    agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                              f"nova_metadata_port = {nova.port}")
    wait_until(lambda: vm.exec("curl", "-sf", "-m", "1",
                               "http://169.254.169.254/openstack/latest/meta_data.json",
                               check=False).returncode == 0, timeout=20, what="served")
    yield {"net": net, "vm": vm, "nova": nova, "agent": agent, "tmp": tmp_path}
    nova.stop()


def test_status_lists_the_served_network(served) -> None:
    code, out = ovnmeta(served["agent"], "status", "--json")
    status = json.loads(out)
    assert code == 0
    net = status["networks"][served["net"].id]
    assert net["ready"] and net["namespace_present"] and net["veth"] == "up"
    assert net["localport"] == served["net"].metadata_port.name
    assert net["vm_ports"] == 1 and net["ofport"] > 0
    assert status["sb_connected"] and status["haproxy"]["pids"]["*"]
    code, text = ovnmeta(served["agent"], "status")
    assert served["net"].id in text and "ready" in text
    assert status["direct_path"]["entries"] >= 1
    assert "direct path: ready" in text or "direct path: NOT READY" in text


def test_status_when_the_agent_is_down(served) -> None:
    served["agent"].stop()
    code, out = ovnmeta(served["agent"], "status")
    assert code == 1 and "NOT RUNNING" in out
    assert served["net"].id in out  # still shows what the host has


def test_healthy_vm_passes_every_hop(served) -> None:
    vm = served["vm"]
    for ref in (vm.port.name, vm.port.device_id):
        code, result = trace(served["agent"], ref)
        assert code == 0, result
        assert [h["ok"] for h in result["hops"]] == [True] * 7
        assert "direct path: haproxy's map has it" in result["hops"][5]["evidence"]
    code, result = trace(served["agent"], vm.port.ip, "--network", vm.network.id)
    assert code == 0
    code, text = ovnmeta(served["agent"], "trace", vm.port.name)
    assert text.count("✓") == 7 and "all hops pass" in text


def test_unknown_vm_breaks_hop_1(served) -> None:
    code, result = trace(served["agent"], "no-such-port")
    assert code == 1 and first_broken(result) == 1


def test_deleted_localport_breaks_hop_2(sandbox, served) -> None:
    neutron.delete_port(sandbox, served["net"].metadata_port)
    code, result = trace(served["agent"], served["vm"].port.name)
    assert first_broken(result) == 2 and "no localport" in result["hops"][1]["evidence"]


def test_with_two_localports_trace_checks_the_one_the_agent_uses(sandbox, served) -> None:
    """The agent prefers neutron's distributed port; another localport on the same subnet,
    whose name sorts first, must not be the one trace approves."""
    net = served["net"]
    other = neutron.Port(name="0-not-the-metadata-port", network_id=net.id,
                         mac=neutron.random_mac(), ips=("10.0.0.3/24",), device_id="dhcp")
    sandbox.nbctl("--", "lsp-add", net.switch, other.name,
                  "--", "lsp-set-type", other.name, "localport",
                  "--", "lsp-set-addresses", other.name, other.addresses,
                  "--", "set", "Logical_Switch_Port", other.name,
                  *neutron._port_external_ids(other, net, "network:dhcp"))
    wait_until(lambda: other.name in sandbox.sbctl("--bare", "--columns=logical_port", "find",
                                                   "Port_Binding", "type=localport"),
               what="the second localport in the SB")
    code, result = trace(served["agent"], served["vm"].port.name)
    assert code == 0, result
    assert net.metadata_port.name in result["hops"][1]["evidence"]
    assert other.name not in json.dumps(result["hops"])


def test_wrong_port_security_breaks_hop_3(sandbox, served) -> None:
    port = served["vm"].port
    sandbox.nbctl("lsp-set-port-security", port.name, f"fa:16:3e:99:99:99 {port.ip}")
    wait_until(lambda: "fa:16:3e:99:99:99" in sandbox.sbctl(
        "--bare", "--columns=port_security", "find", "Port_Binding",
        f"logical_port={port.name}"), what="port security in the SB")
    code, result = trace(served["agent"], port.name)
    assert code == 1 and first_broken(result) == 3
    assert "ovn-trace" in result["hops"][2]["detail"]


def test_removed_ovs_port_breaks_hop_4(sandbox, served) -> None:
    served["agent"].stop()  # a running agent would plug it back within a second
    sandbox.vsctl("del-port", naming.outer_device(served["net"].id))
    code, result = trace(served["agent"], served["vm"].port.name)
    assert first_broken(result) == 4 and "no such port" in result["hops"][3]["evidence"]


def test_address_removed_from_namespace_breaks_hop_4(served) -> None:
    served["agent"].stop()
    net = served["net"]
    subprocess.run(["ip", "-n", naming.namespace(net.id), "addr", "del", "169.254.169.254/32",
                    "dev", naming.inner_device(net.id)], check=True)
    code, result = trace(served["agent"], served["vm"].port.name)
    assert first_broken(result) == 4 and "169.254.169.254/32" in result["hops"][3]["evidence"]


def test_killed_haproxy_breaks_hop_5(served) -> None:
    agent = served["agent"]
    pids = agent.haproxy_pids()
    agent.stop()  # or it would respawn haproxy
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not agent.haproxy_pids(), what="haproxy gone")
    code, result = trace(agent, served["vm"].port.name)
    assert first_broken(result) == 5


def test_stopped_agent_breaks_hop_6(served) -> None:
    served["agent"].stop()
    code, result = trace(served["agent"], served["vm"].port.name)
    assert code == 1 and first_broken(result) == 6
    assert "start ovnmeta-agent" in result["hops"][5]["fix"]


def test_stopped_nova_breaks_hop_7(served) -> None:
    served["nova"].stop()
    code, result = trace(served["agent"], served["vm"].port.name)
    assert first_broken(result) == 7 and "cannot be reached" in result["hops"][6]["evidence"]


def test_wrong_secret_breaks_hop_7_and_names_the_option(served) -> None:
    nova = served["nova"]
    nova.stop()
    wrong = NovaProcess({served["vm"].port.device_id: {"project_id": served["vm"].port.project_id}},
                        "another-secret", served["tmp"], port=nova.port).start()
    try:
        code, result = trace(served["agent"], served["vm"].port.name)
    finally:
        wrong.stop()
    assert first_broken(result) == 7
    assert "403" in result["hops"][6]["evidence"]
    assert "metadata_proxy_shared_secret" in result["hops"][6]["fix"]


def test_dual_stack_vm_is_traced_over_ipv4_and_ipv6(make_network, make_vm, start_agent,
                                                    tmp_path) -> None:
    net = make_network(cidrs=("10.0.0.0/24", "fd00:1::/64"))
    vm = make_vm(net)
    nova = NovaProcess({vm.port.device_id: {"project_id": vm.port.project_id}}, SECRET,
                       tmp_path).start()
    try:
        agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                  f"nova_metadata_port = {nova.port}")
        wait_until(lambda: vm.exec("curl", "-sf", "-m", "1", "http://169.254.169.254/",
                                   check=False).returncode == 0, timeout=20, what="served")
        code, result = trace(agent, vm.port.name)
        assert code == 0, result
        assert "IPv4 and IPv6" in result["hops"][2]["evidence"]
    finally:
        nova.stop()
