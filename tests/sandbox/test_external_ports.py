"""Baremetal and SR-IOV ports ("external" in OVN): served on the chassis OVN binds them to,
through a provider network, on the direct path and on the agent's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovnmeta.core import naming
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import namespaces, wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.vm import FakeBaremetal, FakeVM

SECRET = "external-secret"
URL = "http://169.254.169.254/openstack/latest/meta_data.json"
PHYSNET, PROVIDER_BRIDGE = "physnet1", "br-phys"
OTHER_CHASSIS = "ovnmeta-chassis-2"


def answer(node: FakeVM) -> tuple[int, str]:
    """(status, instance uuid) of one request; (0, '') when none came."""
    out = node.exec("curl", "-s", "-m", "3", "-w", "\n%{http_code}", URL, check=False).stdout
    body, _, code = out.rpartition("\n")
    status = int(code or 0)
    return status, json.loads(body).get("uuid", "") if status == 200 else ""


@pytest.fixture
def provider(sandbox) -> Iterator[None]:
    """A provider bridge mapped to physnet1, and a second chassis known to the SB only (no
    ovn-controller runs for it: the test binds ports to it as its controller would)."""
    sandbox.vsctl("--may-exist", "add-br", PROVIDER_BRIDGE, "--", "set", "bridge",
                  PROVIDER_BRIDGE, "datapath_type=netdev")
    sandbox.vsctl("set", "open", ".", f"external_ids:ovn-bridge-mappings={PHYSNET}:"
                  f"{PROVIDER_BRIDGE}")
    sandbox.sbctl("--may-exist", "chassis-add", OTHER_CHASSIS, "geneve", "127.0.0.2")
    yield
    sandbox.sbctl("--if-exists", "chassis-del", OTHER_CHASSIS)
    sandbox.vsctl("remove", "open", ".", "external_ids", "ovn-bridge-mappings")
    sandbox.vsctl("--if-exists", "del-br", PROVIDER_BRIDGE)


@pytest.fixture
def make_baremetal(sandbox, provider) -> Iterator:
    made: list[tuple[FakeBaremetal, str]] = []

    def make(network: neutron.Network, chassis: dict[str, int] | None) -> FakeBaremetal:
        group = ""
        uuid = None
        if chassis is not None:
            group = f"hg-{len(made)}-{network.id[:8]}"
            uuid = neutron.create_ha_chassis_group(sandbox, group, chassis)
        port = neutron.create_external_port(sandbox, network, uuid)
        node = FakeBaremetal(sandbox, network, port, provider_bridge=PROVIDER_BRIDGE).start()
        made.append((node, group))
        return node

    yield make
    for node, group in made:
        node.destroy()
        neutron.delete_port(sandbox, node.port)
        if group:
            neutron.delete_ha_chassis_group(sandbox, group)


def bound_to(sandbox, port: neutron.Port) -> str:
    uuid = sandbox.sbctl("--bare", "--columns=chassis", "find", "Port_Binding",
                         f"logical_port={port.name}").strip()
    return sandbox.sbctl("--bare", "--columns=name", "list", "Chassis", uuid).strip() \
        if uuid else ""


@pytest.mark.sandbox
@pytest.mark.parametrize("direct_path", [True, False], ids=["direct-path", "agent-path"])
def test_baremetal_node_gets_its_own_metadata_over_the_provider_network(
        sandbox, make_network, make_baremetal, start_agent, tmp_path, direct_path) -> None:
    net = make_network(cidrs=("10.0.0.0/24",))
    neutron.add_localnet_port(sandbox, net, PHYSNET)
    node = make_baremetal(net, {sandbox.chassis: 10})
    wait_until(lambda: bound_to(sandbox, node.port) == sandbox.chassis, timeout=20,
               what="external port bound here through its HA chassis group")
    nova = NovaProcess({node.port.device_id: {"uuid": node.port.device_id}}, SECRET,
                       tmp_path).start()
    try:
        agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                  f"nova_metadata_port = {nova.port}\n"
                                  f"[haproxy]\ndirect_path = {str(direct_path).lower()}")
        status, uuid = wait_until(lambda: (r := answer(node))[0] == 200 and r, timeout=30,
                                  what="baremetal node served")
        assert uuid == node.port.device_id
        # The trace CLI walks an external port's path as a VM's.
        for ref in ([node.port.name], [node.port.ip, "--network", net.id]):
            proc = subprocess.run([str(Path(sys.executable).parent / "ovnmeta"),
                                   "--config-file", str(agent.config), "trace", *ref,
                                   "--json"], capture_output=True, text=True, timeout=60)
            result = json.loads(proc.stdout)
            assert result["ok"], result
        assert "Traceback" not in agent.log()
    finally:
        nova.stop()


@pytest.mark.sandbox
def test_external_port_follows_its_ha_chassis_group(
        sandbox, make_network, make_vm, make_baremetal, start_agent, tmp_path) -> None:
    """OVN moves the port to another chassis of its group: this host stops serving it and
    drops the network; moved back, it serves it again. Ports whose group is missing or
    names a chassis that does not exist are never served, and hurt no one else."""
    net, other = make_network(), make_network(cidrs=("10.1.0.0/24",))
    neutron.add_localnet_port(sandbox, net, PHYSNET)
    node = make_baremetal(net, {sandbox.chassis: 10})
    no_group = make_baremetal(other, None)
    ghost = make_baremetal(other, {"no-such-chassis": 10})
    vm = make_vm(other)
    nova = NovaProcess({p.device_id: {"uuid": p.device_id}
                        for p in (node.port, no_group.port, ghost.port, vm.port)},
                       SECRET, tmp_path).start()
    try:
        agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                  f"nova_metadata_port = {nova.port}")
        wait_until(lambda: answer(node)[0] == 200, timeout=30, what="served here")
        assert answer(vm) == (200, vm.port.device_id)

        # The group's other chassis takes over: ours leaves the group, and the other
        # chassis's ovn-controller (played here by ovn-sbctl) claims the port.
        group = sandbox.nbctl("get", "Logical_Switch_Port", node.port.name,
                              "ha_chassis_group").strip()
        name = sandbox.nbctl("get", "HA_Chassis_Group", group, "name").strip().strip('"')
        sandbox.nbctl("ha-chassis-group-add-chassis", name, OTHER_CHASSIS, "20")
        sandbox.nbctl("ha-chassis-group-remove-chassis", name, sandbox.chassis)
        wait_until(lambda: bound_to(sandbox, node.port) == "", timeout=20,
                   what="released by this chassis")
        other_uuid = sandbox.sbctl("--bare", "--columns=_uuid", "find", "Chassis",
                                   f"name={OTHER_CHASSIS}").strip()
        sandbox.sbctl("set", "Port_Binding", node.port.name, f"chassis={other_uuid}")
        ns = naming.namespace(net.id)
        wait_until(lambda: ns not in namespaces(), timeout=20,
                   what="the network's namespace removed once its port moved away")
        assert answer(node)[0] != 200

        # And back: this chassis becomes the active one again.
        sandbox.sbctl("clear", "Port_Binding", node.port.name, "chassis")
        sandbox.nbctl("ha-chassis-group-add-chassis", name, sandbox.chassis, "30")
        sandbox.nbctl("ha-chassis-group-remove-chassis", name, OTHER_CHASSIS)
        wait_until(lambda: answer(node) == (200, node.port.device_id), timeout=30,
                   what="served here again")

        for stray in (no_group, ghost):
            assert bound_to(sandbox, stray.port) == ""
            assert answer(stray)[0] != 200
        assert answer(vm) == (200, vm.port.device_id)
        assert "Traceback" not in agent.log()
    finally:
        nova.stop()
