"""Taking over a host that neutron's OVN metadata agent served, with VMs probed throughout.

neutron's layout is built as neutron 29 leaves it once its agent is stopped (namespace,
tap…0/1, OVS port, addresses, one haproxy per network forwarding to the shared socket);
then ovnmeta starts with the same state_path while every VM is probed every 0.1 s.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from ovnmeta import naming
from ovnmeta.testing import neutron
from ovnmeta.testing.agentproc import wait_until
from ovnmeta.testing.neutron_host import NeutronMetadata
from ovnmeta.testing.novaproc import NovaProcess
from ovnmeta.testing.prober import Prober

SECRET = "takeover-secret"
MAX_GAP = 1.0


def instance(device_id: str) -> dict:
    return {"project_id": neutron.PROJECT_ID, "hostname": f"vm-{device_id[:8]}"}


def ns_links(net_id: str) -> list[str]:
    out = subprocess.run(["ip", "-n", naming.namespace(net_id), "-o", "link", "show"],
                         capture_output=True, text=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


@pytest.fixture
def neutron_host(sandbox, make_network, make_vm, start_agent, tmp_path):
    """Three networks served by neutron-style haproxies, a nova, and an agent not yet run."""
    nets = [make_network(cidrs=(f"10.{i}.0.0/24",)) for i in range(3)]
    vms = [make_vm(net) for net in nets]
    for vm in vms:
        vm.wait_bound()
    late_id = str(uuid.uuid4())  # a VM that boots during the takeover
    nova = NovaProcess({i: instance(i) for i in [vm.port.device_id for vm in vms] + [late_id]},
                       SECRET, tmp_path).start()
    agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                              f"nova_metadata_port = {nova.port}", run=False)
    left = [NeutronMetadata(net, agent.state_dir, agent.socket).build(sandbox)
            for net in nets]
    yield {"nets": nets, "vms": vms, "nova": nova, "agent": agent, "neutron": left,
           "late_id": late_id}
    nova.stop()
    for layout in left:
        layout.destroy(sandbox)


def test_takeover_keeps_every_vm_served_and_leaves_nothing_of_neutron(
        sandbox, neutron_host, make_vm) -> None:
    agent, vms = neutron_host["agent"], neutron_host["vms"]
    prober = Prober(interval=0.1)
    for vm in vms:
        prober.add(vm.netns, vm.port.device_id)
    prober.start()
    try:
        # The probes start as neutron's agent would stop: nothing serves the socket until
        # ovnmeta listens on it, which it does first thing.
        time.sleep(0.1)
        agent.start()
        late = make_vm(neutron_host["nets"][0], device_id=neutron_host["late_id"])
        late.wait_bound()
        prober.add(late.netns, late.port.device_id)
        wait_until(lambda: not any(n.leftovers(sandbox) for n in neutron_host["neutron"]),
                   timeout=30, what="neutron's leftovers replaced")
        time.sleep(1.0)
    finally:
        prober.stop()
    report = prober.report()
    print(json.dumps(report, indent=1))
    assert all(r["wrong"] == 0 for r in report.values()), report
    for vm in vms:
        assert report[vm.netns]["max_gap"] <= MAX_GAP, (vm.netns, report[vm.netns])
    late_ok = [p for p in prober.targets[-1].probes if p.status == 200]
    assert late_ok and all(p.uuid == late.port.device_id for p in late_ok)
    for net in neutron_host["nets"]:
        assert ns_links(net.id) == sorted(["lo", naming.inner_device(net.id)])
