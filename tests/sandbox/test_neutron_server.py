"""Against the real neutron-server: neutron 29 with ML2/OVN on MariaDB writes the NB through
its REST API, and each test asserts what a VM or node on this host actually gets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ovnmeta.core import naming
from ovnmeta_testing import neutron_server as ns
from ovnmeta_testing.agentproc import AgentProcess, namespaces, wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.sandbox import Sandbox
from ovnmeta_testing.vm import FakeBaremetal, FakeVM

pytestmark = pytest.mark.sandbox

SECRET = "neutron-server-secret"
META = "/openstack/latest/meta_data.json"
PHYSNET, PROVIDER_BRIDGE = "physnet1", "br-phys"


@pytest.fixture(scope="module")
def cloud(sandbox: Sandbox, tmp_path_factory) -> Iterator[ns.NeutronCloud]:
    why = ns.available()
    assert not why, why  # scripts/install.sh provides both: missing is a broken install
    cloud = ns.start_cloud(tmp_path_factory.mktemp("neutron"), sandbox)
    yield cloud
    for net in cloud.api.get("/v2.0/networks")["networks"]:
        for port in cloud.api.ports(network_id=net["id"]):
            if port["device_owner"] != "network:distributed":
                cloud.api.delete_port(port["id"])
        cloud.api.delete_network(net["id"])
    errors = cloud.server.errors()
    ns.stop_cloud(cloud)
    print("--- neutron-server ERROR lines ---\n" + "\n".join(errors[-20:]))


@pytest.fixture
def nova(tmp_path) -> Iterator[NovaProcess]:
    proc = NovaProcess({}, SECRET, tmp_path).start()
    yield proc
    proc.stop()


@pytest.fixture
def agent(start_agent, nova) -> Callable[..., AgentProcess]:
    def start(extra: str = "") -> AgentProcess:
        return start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                 f"nova_metadata_port = {nova.port}\n{extra}")
    return start


@pytest.fixture
def vms(cloud, sandbox, nova) -> Iterator[Callable[..., FakeVM]]:
    """Boots a fake VM on a port neutron made (binding:host_id = this host), as nova would:
    a namespace with neutron's MAC and addresses, plugged into br-int with its iface-id."""
    made: list[FakeVM] = []

    def boot(network_id: str, cls: type[FakeVM] = FakeVM, **port_attrs) -> FakeVM:
        attrs = {"device_owner": "compute:nova", "binding:host_id": cloud.host,
                 "device_id": f"vm-{len(made)}-{time.monotonic_ns()}", **port_attrs}
        port = cloud.api.create_port(network_id, **attrs)
        ns.wait_lsp(sandbox, port["id"])
        vm = cls(sandbox, ns.as_network(cloud.api, network_id), ns.as_port(cloud.api, port))
        if cls is FakeBaremetal:
            vm.provider_bridge = PROVIDER_BRIDGE
        made.append(vm)
        nova.add_instance(vm.port.device_id, {"uuid": vm.port.device_id,
                                              "hostname": f"host-{vm.port.device_id}"})
        return vm.start()

    yield boot
    for vm in made:
        vm.destroy()


def get(vm: FakeVM, url: str = f"http://169.254.169.254{META}") -> tuple[int, str]:
    """(status, instance uuid); (0, '') when nothing answered."""
    out = vm.exec("curl", "-gs", "-m", "3", "-w", "\n%{http_code}", url, check=False,
                  timeout=10).stdout
    body, _, code = out.rpartition("\n")
    status = int(code or 0)
    return status, (json.loads(body).get("uuid", "") if status == 200 else "")


def get6(vm: FakeVM) -> tuple[int, str]:
    return get(vm, f"http://[fe80::a9fe:a9fe%eth0]{META}")


def served(vm: FakeVM, via: Callable[[FakeVM], tuple[int, str]] = get,
           timeout: float = 30) -> str:
    return wait_until(lambda: (r := via(vm))[0] == 200 and r[1], timeout=timeout,
                      what=f"VM {vm.port.name} served")


def metadata_agents(cloud, host: str) -> list[dict]:
    return [a for a in cloud.api.agents()
            if a["host"] == host and a["agent_type"] == "OVN Metadata agent"]


def ipv6_ready(vm: FakeVM) -> None:
    """The VM's own link-local address is usable (DAD done), and it knows the metadata
    address's MAC, as after any earlier exchange (see test_e2e's IPv6 test)."""
    wait_until(lambda: "fe80::" in (out := vm.exec("ip", "-6", "addr", "show", "dev", "eth0",
                                                   "scope", "link").stdout)
               and "tentative" not in out, timeout=10, what="the VM's link-local address")
    vm.exec("ip", "-6", "neigh", "replace", "fe80::a9fe:a9fe", "lladdr",
            vm.network.metadata_port.mac, "dev", "eth0", "nud", "permanent")


def make_network(cloud, name: str, *cidrs: str, **attrs) -> str:
    net = cloud.api.create_network(name, **attrs)
    for cidr in cidrs:
        cloud.api.create_subnet(net["id"], cidr)
    cloud.api.metadata_port(net["id"])
    return net["id"]


def test_ipv4_ipv6_only_and_dual_stack_vms_get_their_own_metadata(cloud, sandbox, agent,
                                                                   vms) -> None:
    v4 = make_network(cloud, "v4", "10.50.0.0/24")
    v6 = make_network(cloud, "v6", "fd00:50::/64")
    dual = make_network(cloud, "dual", "10.51.0.0/24", "fd00:51::/64")
    a, b = vms(v4), vms(v4)
    c, d = vms(v6), vms(dual)
    for vm in (c, d):
        ipv6_ready(vm)
    started = time.monotonic()
    running = agent()
    for vm in (a, b, d):
        assert served(vm) == vm.port.device_id
    for vm in (c, d):
        assert served(vm, get6) == vm.port.device_id
    print(f"4 VMs served {ns.elapsed(started)} s after the agent started")
    assert {get(a)[1] for _ in range(10)} == {a.port.device_id}
    assert {get(b)[1] for _ in range(10)} == {b.port.device_id}
    # The IPv6-only network's metadata port has only a SLAAC address: the namespace has it.
    inner = subprocess.run(["ip", "netns", "exec", naming.namespace(v6), "ip", "-o", "addr"],
                           capture_output=True, text=True).stdout
    assert c.network.metadata_port.ips[0] in inner and "fe80::a9fe:a9fe/128" in inner
    # neutron lists this host's agent under the type neutron's own agent has, alive.
    listed = wait_until(lambda: metadata_agents(cloud, cloud.host), timeout=20,
                        what="the agent in GET /v2.0/agents")
    assert [x["alive"] for x in listed] == [True]
    assert "Traceback" not in running.log()


def test_port_update_gives_the_vm_its_new_identity_never_the_old(cloud, sandbox, agent,
                                                                 vms, nova) -> None:
    net = make_network(cloud, "upd", "10.52.0.0/24")
    vm = vms(net)
    agent()
    old_id = served(vm)
    # A new fixed IP: the VM moves to it (as after a DHCP renewal).
    subnet = cloud.api.subnets(net)[0]
    port = cloud.api.update_port(vm.port.name, fixed_ips=[{"subnet_id": subnet["id"],
                                                          "ip_address": "10.52.0.77"}])
    vm.exec("ip", "addr", "flush", "dev", "eth0", "scope", "global")
    vm.exec("ip", "addr", "add", "10.52.0.77/24", "dev", "eth0", "nodad")
    vm.exec("ip", "route", "replace", "169.254.169.254/32", "via", vm.network.metadata_port.ip)
    assert served(vm) == old_id == port["device_id"]
    # A new device_id (the port handed to another instance): the first answer naming the
    # new instance ends the old one for good.
    new_id = f"{old_id}-rebuilt"
    nova.add_instance(new_id, {"uuid": new_id})
    cloud.api.update_port(vm.port.name, device_id=new_id)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and seen[-5:] != [new_id] * 5:
        seen.append(get(vm)[1])
    first_new = seen.index(new_id)
    assert set(seen[first_new:]) == {new_id}, seen
    assert set(seen[:first_new]) <= {old_id, ""}, seen


def test_deleted_port_then_network_stop_being_served(cloud, sandbox, agent, vms) -> None:
    net = make_network(cloud, "del", "10.53.0.0/24")
    first, second = vms(net), vms(net)
    agent()
    served(first), served(second)
    cloud.api.delete_port(first.port.name)
    wait_until(lambda: get(first)[0] != 200, timeout=10, what="deleted port no longer served")
    assert [get(first)[0] != 200 for _ in range(5)] == [True] * 5
    assert served(second) == second.port.device_id
    cloud.api.delete_port(second.port.name)
    cloud.api.delete_network(net)
    wait_until(lambda: naming.namespace(net) not in namespaces(), timeout=20,
               what="the deleted network's namespace removed")


@pytest.fixture
def provider(sandbox) -> Iterator[None]:
    """A provider bridge for physnet1, and this chassis a gateway, as neutron needs to
    place an external port's HA chassis group here."""
    sandbox.vsctl("--may-exist", "add-br", PROVIDER_BRIDGE, "--", "set", "bridge",
                  PROVIDER_BRIDGE, "datapath_type=netdev")
    sandbox.vsctl("set", "open", ".",
                  f"external_ids:ovn-bridge-mappings={PHYSNET}:{PROVIDER_BRIDGE}",
                  "external_ids:ovn-cms-options=enable-chassis-as-gw")
    yield
    sandbox.vsctl("remove", "open", ".", "external_ids", "ovn-bridge-mappings")
    sandbox.vsctl("remove", "open", ".", "external_ids", "ovn-cms-options")
    sandbox.vsctl("--if-exists", "del-br", PROVIDER_BRIDGE)


def test_baremetal_node_on_a_flat_provider_network(cloud, sandbox, provider, agent,
                                                   vms) -> None:
    # neutron reads the gateway chassis from the SB: wait until it knows this one.
    wait_until(lambda: "enable-chassis-as-gw" in sandbox.sbctl(
        "get", "Chassis", sandbox.chassis, "other_config"), timeout=20,
        what="this chassis a gateway in the SB")
    net = make_network(cloud, "prov", "10.54.0.0/24", **{
        "provider:network_type": "flat", "provider:physical_network": PHYSNET})
    node = vms(net, FakeBaremetal, **{"binding:vnic_type": "baremetal",
                                      "device_owner": "baremetal:none"})
    lsp_type = sandbox.nbctl("get", "Logical_Switch_Port", node.port.name, "type").strip()
    assert lsp_type == "external"
    agent()
    assert served(node, timeout=40) == node.port.device_id


def test_allowed_address_pair_holding_the_metadata_ip(cloud, sandbox, agent, vms) -> None:
    """LP #2116249: a port whose allowed_address_pairs hold the metadata port's IP. neutron 29
    refuses the address itself; a CIDR around it is taken. Either way the VMs keep their
    metadata, the metadata port stays a localport, and `ovnmeta status` lists the network."""
    net = make_network(cloud, "aap", "10.55.0.0/24")
    vm = vms(net)
    running = agent()
    served(vm)
    md_ip = vm.network.metadata_port.ip
    with pytest.raises(ns.NeutronError, match="network:distributed"):
        vms(net, allowed_address_pairs=[{"ip_address": md_ip}])
    other = vms(net, allowed_address_pairs=[{"ip_address": "10.55.0.0/28"}])
    with pytest.raises(ns.NeutronError, match="network:distributed"):
        cloud.api.update_port(other.port.name, allowed_address_pairs=[{"ip_address": md_ip}])
    assert sandbox.nbctl("get", "Logical_Switch_Port", vm.network.metadata_port.name,
                         "type").strip() == "localport"
    assert served(vm) == vm.port.device_id
    assert served(other) == other.port.device_id
    status = subprocess.run([str(Path(sys.executable).parent / "ovnmeta"), "--config-file",
                             str(running.config), "status", "--json"], capture_output=True,
                            text=True, timeout=60)
    assert net in status.stdout, status.stdout + status.stderr
