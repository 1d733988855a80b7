"""Taking over a host that neutron's OVN metadata agent served, with VMs probed throughout.

neutron's layout is built as neutron 29 leaves it once its agent is stopped (namespace,
tap…0/1, OVS port, addresses, one haproxy per network forwarding to the shared socket);
then ovnmeta starts with the same state_path while every VM is probed every 0.1 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ovnmeta.core import naming, registration
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import namespaces, wait_until, write_config
from ovnmeta_testing.neutron_agent import FakeNeutronAgent
from ovnmeta_testing.neutron_host import NeutronMetadata, veth_names
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.prober import Prober

SECRET = "takeover-secret"
MAX_GAP = 1.0


def instance(device_id: str) -> dict:
    return {"project_id": neutron.PROJECT_ID, "hostname": f"vm-{device_id[:8]}"}


def ns_links(net_id: str) -> list[str]:
    out = subprocess.run(["ip", "-n", naming.namespace(net_id), "-o", "link", "show"],
                         capture_output=True, text=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def probing(vms) -> Prober:
    """Every VM probed every 0.1 s, from now on."""
    prober = Prober(interval=0.1)
    for vm in vms:
        prober.add(vm.netns, vm.port.device_id)
    prober.start()
    return prober


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
    # A network whose last VM left while neutron's agent was down: stale.
    stale = NeutronMetadata(make_network(cidrs=("10.9.0.0/24",)), agent.state_dir,
                            agent.socket).build(sandbox)
    left.append(stale)
    yield {"nets": nets, "vms": vms, "nova": nova, "agent": agent, "neutron": left,
           "late_id": late_id}
    nova.stop()
    for layout in left:
        layout.destroy(sandbox)


def test_takeover_keeps_every_vm_served_and_leaves_nothing_of_neutron(
        sandbox, neutron_host, make_vm) -> None:
    agent, vms = neutron_host["agent"], neutron_host["vms"]
    prober = probing(vms)
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
    stale = neutron_host["neutron"][-1]
    assert stale.namespace not in namespaces()


@pytest.mark.parametrize("name, config", [
    ("neutron-ovn-metadata-agent", ""),
    ("neutron-ovn-agent", "[agent]\nextensions = metadata\n"),
])
def test_swap_started_before_neutrons_agent_stops_fails_no_request(
        sandbox, neutron_host, tmp_path, name, config) -> None:
    """The supported procedure: start ovnmeta, then stop neutron's agent. ovnmeta takes the
    socket's path at once (rename), serves neutron's haproxies, and touches the host only
    once neutron's agent has gone."""
    agent, vms = neutron_host["agent"], neutron_host["vms"]
    old = FakeNeutronAgent(name, agent.socket, {vm.port.ip: vm.port.device_id for vm in vms},
                           tmp_path, config).start()
    prober = probing(vms)
    try:
        time.sleep(0.5)
        agent.start()
        wait_until(lambda: f"{name} (pid {old.proc.pid}) still runs" in agent.log(),
                   timeout=20, what="ovnmeta waiting for neutron's agent")
        time.sleep(1.0)
        assert all(n.leftovers(sandbox) for n in neutron_host["neutron"]), \
            "ovnmeta touched the host while neutron's agent ran"
        status = subprocess.run([str(Path(sys.executable).parent / "ovnmeta"), "--config-file",
                                 str(agent.config), "status"], capture_output=True, text=True,
                                timeout=30).stdout
        assert f"waiting for {name} (pid {old.proc.pid}) to stop" in status, status
        old.stop()
        wait_until(lambda: not any(n.leftovers(sandbox) for n in neutron_host["neutron"]),
                   timeout=30, what="neutron's leftovers replaced")
        time.sleep(1.0)
    finally:
        old.stop()
        prober.stop()
    report = prober.report()
    print(json.dumps(report, indent=1))
    assert "has stopped: taking over the host" in agent.log()
    for vm in vms:
        assert report[vm.netns]["wrong"] == 0 and report[vm.netns]["failed"] == 0, report
        assert report[vm.netns]["max_gap"] <= MAX_GAP, (vm.netns, report[vm.netns])


def trace_hop(agent, vm) -> dict:
    proc = subprocess.run([str(Path(sys.executable).parent / "ovnmeta"), "--config-file",
                           str(agent.config), "trace", vm.port.name, "--json"],
                          capture_output=True, text=True, timeout=60)
    hops = json.loads(proc.stdout)["hops"]
    return next(h for h in hops if not h["ok"])


def test_trace_names_what_another_agent_left(sandbox, make_network, make_vm, start_agent,
                                             tmp_path) -> None:
    net = make_network()
    vm = make_vm(net)
    nova = NovaProcess({vm.port.device_id: instance(vm.port.device_id)}, SECRET,
                       tmp_path).start()
    agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                              f"nova_metadata_port = {nova.port}")
    layout = NeutronMetadata(net, agent.state_dir, agent.socket)
    try:
        wait_until(lambda: vm.exec("curl", "-sf", "-m", "1",
                                   "http://169.254.169.254/openstack/latest/meta_data.json",
                                   check=False).returncode == 0, timeout=20, what="served")
        agent.stop()  # a running agent would replace each of these at once
        layout.add_veth(sandbox, plug=False)
        hop = trace_hop(agent, vm)
        assert hop["number"] == 4 and veth_names(net.id)[1] in hop["evidence"], hop
        layout.plug(sandbox)
        hop = trace_hop(agent, vm)
        assert hop["number"] == 4 and veth_names(net.id)[0] in hop["evidence"], hop
        subprocess.run(["ip", "link", "del", veth_names(net.id)[0]], check=True)
        sandbox.vsctl("del-port", veth_names(net.id)[0])
        layout.start_haproxy()
        hop = trace_hop(agent, vm)
        assert hop["number"] == 5 and f"haproxy pid {layout.haproxy_pid()}" in hop["evidence"]
        # Started again, the agent stops that haproxy once its own listens.
        agent.start()
        wait_until(lambda: not layout.leftovers(sandbox), timeout=20,
                   what="neutron's haproxy replaced")
    finally:
        layout.destroy(sandbox)
        nova.stop()


def test_switching_haproxy_mode_keeps_every_vm_served(sandbox, make_network, make_vm,
                                                     start_agent, tmp_path) -> None:
    nets = [make_network(cidrs=(f"10.{i}.0.0/24",)) for i in range(2)]
    vms = [make_vm(net) for net in nets]
    nova = NovaProcess({vm.port.device_id: instance(vm.port.device_id) for vm in vms},
                       SECRET, tmp_path).start()
    extra = f"metadata_proxy_shared_secret = {SECRET}\nnova_metadata_port = {nova.port}"
    agent = start_agent(mode="per-network", extra=extra)
    try:
        wait_until(lambda: len(agent.haproxy_pids()) == 2, timeout=20, what="2 haproxies")
        for mode, count in (("shared", 1), ("per-network", 2)):
            prober = probing(vms)
            try:
                agent.stop()
                write_config(sandbox, agent.state_dir, mode=mode, extra=extra)
                agent.start()
                cfgs = "shared.cfg" if mode == "shared" else "ovnmeta-*.cfg"
                wait_until(lambda: len(agent.haproxy_pids()) == count
                           and all(p.match(cfgs) for p in
                                   (agent.state_dir / "haproxy").glob("*.cfg")),
                           timeout=20, what=f"{mode} haproxy only")
                time.sleep(0.5)
            finally:
                prober.stop()
            report = prober.report()
            print(mode, json.dumps(report))
            assert all(r["wrong"] == 0 and r["failed"] == 0 for r in report.values()), report
    finally:
        nova.stop()


METADATA_ROW = {"neutron:ovn-metadata-id": registration.metadata_agent_id("ovnmeta-chassis-1"),
                "neutron:ovn-metadata-sb-cfg": "0",
                "neutron:description-metadata": "rack 7, row 2"}
OVN_AGENT_ROW = {"neutron:ovn-neutron-agent-id": registration.ovn_agent_id("ovnmeta-chassis-1"),
                 "neutron:ovn-neutron-agent-sb-cfg": "0",
                 "neutron:description-neutron-agent": "rack 7, row 3"}


@pytest.mark.parametrize("before, extra, mode, kept, written, removed", [
    # The host ran neutron-ovn-metadata-agent: the same "OVN Metadata agent" row, alive.
    (METADATA_ROW, "", "metadata-agent", ["neutron:ovn-metadata-id",
                                          "neutron:description-metadata"],
     "neutron:ovn-metadata-sb-cfg", []),
    # neutron-ovn-agent with the metadata extension only: its "OVN Neutron agent" row.
    (OVN_AGENT_ROW, "", "ovn-agent", ["neutron:ovn-neutron-agent-id",
                                      "neutron:description-neutron-agent"],
     "neutron:ovn-neutron-agent-sb-cfg", []),
    # neutron-ovn-agent keeps running another extension: its keys are left alone.
    (OVN_AGENT_ROW, "[agent]\nextensions = metadata,qos_hwol", "beside-ovn-agent",
     list(OVN_AGENT_ROW), "neutron:ovn-metadata-sb-cfg", []),
    # Told to be the metadata agent where the OVN agent was: its keys go.
    ({**METADATA_ROW, **OVN_AGENT_ROW}, "[metadata]\nregister_as = metadata-agent",
     "metadata-agent", ["neutron:ovn-metadata-id", "neutron:description-metadata"],
     "neutron:ovn-metadata-sb-cfg", list(OVN_AGENT_ROW)),
], ids=["from-metadata-agent", "from-ovn-agent", "beside-ovn-agent", "configured"])
def test_neutron_server_sees_the_same_agent_row(sandbox, start_agent, before, extra, mode,
                                                kept, written, removed) -> None:
    def ext() -> dict[str, str]:
        out = sandbox.sbctl("--format=json", "--columns=external_ids", "find",
                            "Chassis_Private", f"name={sandbox.chassis}")
        return dict(json.loads(out)["data"][0][0][1])

    assert sandbox.chassis == "ovnmeta-chassis-1"
    forget = [k for k in ext() if k.startswith("neutron:")]
    if forget:
        sandbox.sbctl("remove", "Chassis_Private", sandbox.chassis, "external_ids",
                      *[f'"{k}"' for k in forget])
    sandbox.sbctl("set", "Chassis_Private", sandbox.chassis,
                  *[f'external_ids:"{k}"="{v}"' for k, v in before.items()])
    nb_cfg = sandbox.sbctl("get", "SB_Global", ".", "nb_cfg").strip()
    agent = start_agent(extra=extra)
    wait_until(lambda: ext().get(written) == nb_cfg and not set(removed) & set(ext())
               and ext().get("neutron:ovn-bridge") == sandbox.bridge,
               what="the row written as neutron's agent writes it")
    row = ext()
    assert {k: row.get(k) for k in kept} == {k: before[k] for k in kept}
    assert row["neutron:ovn-bridge"] == sandbox.bridge
    if mode == "beside-ovn-agent":   # written as the metadata agent, beside the OVN agent
        assert row["neutron:ovn-metadata-id"] == METADATA_ROW["neutron:ovn-metadata-id"]
    if mode == "ovn-agent":          # one agent per host: the metadata agent's keys go
        assert not {"neutron:ovn-metadata-id", "neutron:ovn-metadata-sb-cfg"} & set(row)
    assert f"registering in Chassis_Private as {mode} (" in agent.log()