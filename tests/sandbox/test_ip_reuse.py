"""A deleted VM's address given to a new VM on the same network never brings the new VM the
old one's data: not while the agent's SB view lags (cut off from the SB), nor across an
agent that was down meanwhile."""

from __future__ import annotations

import json

import pytest

from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.vm import FakeVM

SECRET = "reuse-secret"
URL = "http://169.254.169.254/openstack/latest/meta_data.json"


def answer(vm: FakeVM) -> tuple[int, str]:
    """(status, instance uuid) of one request from the VM; (0, '') when none came."""
    out = vm.exec("curl", "-s", "-m", "3", "-w", "\n%{http_code}", URL, check=False).stdout
    body, _, code = out.rpartition("\n")
    status = int(code or 0)
    uuid = json.loads(body).get("uuid", "") if status == 200 else ""
    return status, uuid


def sb_remote(box, action: str) -> None:
    """Close (remove-remote: its sessions too) or reopen the SB's TCP listener."""
    _, ip, port = box.sb_tcp_connection.split(":")
    box.run("ovs-appctl", "-t", str(box.root / "ovnsb_db.ctl"), f"ovsdb-server/{action}",
            f"ptcp:{port}:{ip}", check=action == "remove-remote")


@pytest.fixture
def reuse(sandbox, make_network, start_agent, tmp_path):
    net = make_network()
    a_port = neutron.create_vm_port(sandbox, net)
    b_port = neutron.Port(name="b-" + a_port.name[2:], network_id=net.id,
                          mac=neutron.random_mac(), ips=a_port.ips, device_id="instance-b")
    nova = NovaProcess({a_port.device_id: {"project_id": a_port.project_id, "hostname": "a"},
                        "instance-b": {"project_id": b_port.project_id, "hostname": "b"}},
                       SECRET, tmp_path).start()
    agent = start_agent(run=False, extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                         f"nova_metadata_port = {nova.port}")
    # Over TCP, so that the agent alone can be cut off from the SB.
    agent.config.write_text(agent.config.read_text().replace(
        f"ovn_sb_connection = {sandbox.sb_connection}",
        f"ovn_sb_connection = {sandbox.sb_tcp_connection}"))
    vm_a = FakeVM(sandbox, net, a_port).start()
    made = [vm_a]
    agent.start()
    wait_until(lambda: answer(vm_a) == (200, a_port.device_id), timeout=30, what="A served")

    def replace_a_by_b() -> FakeVM:
        vm_a.destroy()
        neutron.delete_port(sandbox, a_port)
        sandbox.nbctl("--", "lsp-add", net.switch, b_port.name,
                      "--", "lsp-set-addresses", b_port.name, b_port.addresses,
                      "--", "lsp-set-port-security", b_port.name, b_port.addresses,
                      "--", "set", "Logical_Switch_Port", b_port.name,
                      'external_ids:"neutron:device_id"="instance-b"',
                      f'external_ids:"neutron:project_id"="{b_port.project_id}"',
                      f"options:requested-chassis={sandbox.chassis}")
        vm_b = FakeVM(sandbox, net, b_port).start()
        made.append(vm_b)
        vm_b.wait_bound()
        return vm_b

    yield {"agent": agent, "replace": replace_a_by_b, "a": a_port}
    sb_remote(sandbox, "add-remote")  # idempotent: a failed test may have left it off
    for vm in made:
        vm.destroy()
    neutron.delete_port(sandbox, b_port)
    nova.stop()


def test_view_cut_off_from_the_sb_never_gives_b_the_data_of_a(sandbox, reuse) -> None:
    sb_remote(sandbox, "remove-remote")
    vm_b = reuse["replace"]()
    # The view still has A at that address: the request must reach the agent (the
    # namespace forgot A's MAC) and be refused, not answered with A's data.
    seen = [answer(vm_b) for _ in range(5)]
    assert all(uuid != reuse["a"].device_id for _, uuid in seen), seen
    assert all(status == 404 for status, _ in seen), seen
    assert "no interface on this host carries it" in reuse["agent"].log()
    sb_remote(sandbox, "add-remote")
    got = wait_until(lambda: (r := answer(vm_b))[0] == 200 and r, timeout=30,
                     what="B served once the view catches up")
    assert got == (200, "instance-b")


def test_agent_down_meanwhile_gives_b_its_own_data(sandbox, reuse) -> None:
    agent = reuse["agent"]
    agent.stop()
    vm_b = reuse["replace"]()
    agent.start()
    seen = wait_until(lambda: (r := answer(vm_b))[0] == 200 and r, timeout=30,
                      what="B served")
    assert seen == (200, "instance-b")


def test_with_the_agent_up_b_never_gets_the_data_of_a(sandbox, reuse) -> None:
    """The direct path's maps: A's entry goes before B can ask."""
    vm_b = reuse["replace"]()
    seen: list[tuple[int, str]] = []
    wait_until(lambda: seen.append(r := answer(vm_b)) or r[0] == 200, timeout=30,
               what="B served")
    assert all(uuid != reuse["a"].device_id for _, uuid in seen), seen
    assert seen[-1] == (200, "instance-b")
