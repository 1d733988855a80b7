"""What operators reported against neutron's agent in 2025-2026, each as a behaviour of
ovnmeta's on real OVN (the LP number in each test's docstring). Reports tested elsewhere:
LP #2112130 (tests/unit/proxy/test_handler.py), LP #2111475 and LP #2119097 (test_agent.py),
LP #2097273 and LP #2154609 (test_nova_faults.py), LP #2116249 (test_neutron_server.py).

Also the odd rows a CMS can write: each is logged once, with its row, and the rest of the
host is served."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ovnmeta.core import naming
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import namespaces, wait_until
from ovnmeta_testing.echo import instance
from ovnmeta_testing.sandbox import free_port
from ovnmeta_testing.vm import FakeVM

pytestmark = pytest.mark.sandbox
OVNMETA = str(Path(sys.executable).parent / "ovnmeta")


def served(vm: FakeVM, timeout: float = 20) -> str:
    return wait_until(lambda: instance(vm), timeout=timeout, what=f"{vm.netns} served")


def warnings(agent, text: str) -> int:
    return sum(text in line for line in agent.log().splitlines()
               if " WARNING " in line or " ERROR " in line)


@pytest.fixture
def agent(start_agent, echo):
    port = free_port()
    running = start_agent(run=False, extra=f"nova_metadata_port = {echo.port}")
    running.config.write_text(running.config.read_text().replace(
        "[metrics]\nlisten =\n", f"[metrics]\nlisten = 127.0.0.1:{port}\n"))
    running.metrics_port = port
    return running.start()


def cli(agent, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OVNMETA, "--config-file", str(agent.config), *args],
                          capture_output=True, text=True, timeout=60)


def cli_json(agent, *args: str) -> dict:
    proc = cli(agent, *args, "--json")
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"ovnmeta {' '.join(args)}: exit {proc.returncode}: "
                             f"{proc.stdout[-2000:]} {proc.stderr[-2000:]}") from None


def metric(agent, name: str) -> float | None:
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics",
                                  timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_chassis_row_gone_while_chassis_private_stays(sandbox, make_network, make_vm,
                                                      agent) -> None:
    """LP #2148316: ovn-controller is evicted (its Chassis row deleted, Chassis_Private left).
    The agent says so once in its log, in `status`, in a metric and in `trace`, keeps its
    keys in Chassis_Private (it is alive: neutron lists it, and ovn-controller's own row
    shows the fault), and recovers when ovn-controller registers again."""
    vm = make_vm(make_network())
    assert served(vm) == vm.port.device_id
    assert metric(agent, "ovnmeta_chassis_registered") == 1
    sandbox.kill("ovn-controller")
    sandbox.sbctl("destroy", "Chassis", sandbox.chassis)
    try:
        wait_until(lambda: warnings(agent, "has no Chassis row in the SB"), timeout=15,
                   what="the agent's warning")
        status = cli_json(agent, "status")
        assert status["chassis_registered"] is False
        text = cli(agent, "status")
        assert "NOT REGISTERED" in text.stdout and text.returncode != 0
        assert metric(agent, "ovnmeta_chassis_registered") == 0
        trace = cli_json(agent, "trace", vm.port.name)
        broken = [h for h in trace["hops"] if not h["ok"]]
        assert broken and "has no Chassis row" in broken[0]["evidence"], trace
        # Still listed by neutron: its keys stay, and follow nb_cfg.
        bumped = str(int(sandbox.sbctl("get", "SB_Global", ".", "nb_cfg").strip()) + 3)
        sandbox.nbctl("set", "NB_Global", ".", f"nb_cfg={bumped}")
        wait_until(lambda: sandbox.sbctl("get", "Chassis_Private", sandbox.chassis,
                                         'external_ids:"neutron:ovn-metadata-sb-cfg"').strip()
                   .strip('"') == bumped, timeout=10, what="nb_cfg echoed meanwhile")
        assert warnings(agent, "has no Chassis row in the SB") == 1
    finally:
        sandbox.up()   # ovn-controller back: it registers the chassis again
    vm.plug()   # its port, unbound with the chassis gone, is bound again
    assert served(vm, timeout=30) == vm.port.device_id
    wait_until(lambda: cli_json(agent, "status")
               ["chassis_registered"], timeout=10, what="registered again in status")
    assert metric(agent, "ovnmeta_chassis_registered") == 1
    assert "Traceback" not in agent.log()


def test_a_binding_that_arrives_already_bound_after_a_reconnect_is_served(
        sandbox, make_network, make_vm, agent) -> None:
    """LP #2017748: the SB is away while a VM is plugged; when it is back, the Port_Binding
    reaches the agent with its chassis already set (insert and update in one)."""
    first = make_vm(make_network())
    served(first)
    late = make_vm(make_network(cidrs=("10.7.0.0/24",)), bind=False)
    os.kill(sandbox.pid("ovnsb_db"), signal.SIGTERM)
    wait_until(lambda: sandbox.pid("ovnsb_db") is None, what="SB stopped")
    late.plug()
    time.sleep(1)
    sandbox.up()
    assert served(late, timeout=30) == late.port.device_id
    assert served(first) == first.port.device_id


def test_the_namespace_takes_the_networks_mtu_and_follows_it(sandbox, make_network, make_vm,
                                                              agent) -> None:
    """LP #2152164: the namespace's interface has the metadata port's neutron:mtu, and
    follows a change."""
    net = make_network(mtu=1300)
    vm = make_vm(net)
    served(vm)

    def mtu() -> int:
        out = subprocess.run(["ip", "-n", naming.namespace(net.id), "-o", "link", "show",
                              "dev", naming.inner_device(net.id)], capture_output=True,
                             text=True).stdout
        return int(out.split(" mtu ")[1].split()[0])
    assert mtu() == 1300
    sandbox.nbctl("set", "Logical_Switch_Port", net.metadata_port.name,
                  'external_ids:"neutron:mtu"="1400"')
    wait_until(lambda: mtu() == 1400, timeout=15, what="the new MTU in the namespace")
    assert served(vm) == vm.port.device_id


def test_a_request_naming_a_network_not_served_here_is_404_at_once(
        sandbox, make_network, make_vm, agent) -> None:
    """LP #2106713: on the agent's socket, a request whose X-OVN-Network-ID this host does
    not serve (unknown, or a network with no VM here) is a prompt 404, not a 5xx or a hang."""
    vm = make_vm(make_network())
    served(vm)
    elsewhere = make_network(cidrs=("10.8.0.0/24",))
    for net_id in (str(uuid.uuid4()), elsewhere.id, "not-a-network"):
        out = subprocess.run(
            ["curl", "-s", "-m", "10", "--unix-socket", agent.socket, "-o", "/dev/null",
             "-w", "%{http_code} %{time_total}", "-H", f"X-OVN-Network-ID: {net_id}",
             "-H", f"X-Forwarded-For: {vm.port.ip}",
             "http://169.254.169.254/openstack/latest/meta_data.json"],
            capture_output=True, text=True, timeout=20).stdout
        code, took = out.split()
        assert code == "404" and float(took) < 2, (net_id, out)
    assert served(vm) == vm.port.device_id


def test_odd_rows_are_logged_once_and_the_rest_is_served(sandbox, make_network, make_vm,
                                                         agent) -> None:
    """Rows a CMS can write that the imitation never did: keys the agent does not know, empty
    or odd neutron:cidrs, a port with no addresses, a switch with no metadata port, an MTU
    that is none. Each is logged once with its row; the others are served; no traceback."""
    good = make_network()
    vm = make_vm(good)
    served(vm)
    # A VM port with unknown keys, empty cidrs, and a neighbour with no addresses at all.
    odd_keys = make_vm(good)
    sandbox.nbctl("set", "Logical_Switch_Port", odd_keys.port.name,
                  'external_ids:"neutron:cidrs"=""', 'external_ids:"neutron:future_key"="x"',
                  'external_ids:"vendor:thing"="{}"')
    empty = neutron.create_vm_port(sandbox, good)
    sandbox.nbctl("lsp-set-addresses", empty.name, "--", "lsp-set-port-security", empty.name)
    bare = FakeVM(sandbox, good, empty).start()
    # A network whose metadata port has garbage cidrs and an MTU of 0.
    garbled = make_network(cidrs=("10.9.0.0/24",))
    sandbox.nbctl("set", "Logical_Switch_Port", garbled.metadata_port.name,
                  'external_ids:"neutron:cidrs"="garbage"', 'external_ids:"neutron:mtu"="0"')
    g_vm = make_vm(garbled)
    # A switch with a VM and no metadata port at all.
    lonely = make_network(cidrs=("10.10.0.0/24",))
    sandbox.nbctl("lsp-del", lonely.metadata_port.name)
    l_vm = make_vm(lonely)
    try:
        assert served(odd_keys) == odd_keys.port.device_id
        assert served(g_vm) == g_vm.port.device_id
        assert served(vm) == vm.port.device_id
        wait_until(lambda: warnings(agent, "has no localport"), timeout=15,
                   what="the lonely network's warning")
        assert instance(l_vm) is None
        assert naming.namespace(lonely.id) not in namespaces()
        # More passes: nothing is logged again.
        make_vm(make_network(cidrs=("10.11.0.0/24",)))
        time.sleep(2)
        for text in (f"network {lonely.id} not served",
                     f"VM port {empty.name}: no usable MAC and IP",
                     f"localport {garbled.metadata_port.name}: neutron:mtu '0' is not an MTU",
                     "gives no prefix for 10.9.0.2; /24 taken from the VM ports'"):
            assert warnings(agent, text) == 1, (text, agent.log()[-3000:])
        assert "Traceback" not in agent.log()
        assert not [line for line in agent.log().splitlines() if " ERROR " in line]
    finally:
        bare.destroy()
        neutron.delete_port(sandbox, empty)
