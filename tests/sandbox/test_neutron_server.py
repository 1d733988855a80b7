"""Against the real neutron-server: neutron 29 with ML2/OVN on MariaDB writes the NB through
its REST API, and each test asserts what a VM or node on this host actually gets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ovnmeta.core import naming
from ovnmeta.host import procs
from ovnmeta_testing import nbshape, neutron
from ovnmeta_testing import neutron_server as ns
from ovnmeta_testing.agentproc import AgentProcess, namespaces, wait_until
from ovnmeta_testing.neutron_host import NeutronMetadata
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
def nets(cloud) -> Iterator[Callable[..., str]]:
    """Makes a network with a subnet per cidr through the API; deleted after the test
    (with any port left on it), so each test may use physnet1's one flat network."""
    made: list[str] = []

    def make(name: str, *cidrs: str, **attrs) -> str:
        net = cloud.api.create_network(name, **attrs)
        made.append(net["id"])
        for cidr in cidrs:
            cloud.api.create_subnet(net["id"], cidr)
        cloud.api.metadata_port(net["id"])
        return net["id"]

    yield make
    for net_id in made:
        try:
            for port in cloud.api.ports(network_id=net_id):
                if port["device_owner"] != "network:distributed":
                    cloud.api.delete_port(port["id"])
            cloud.api.delete_network(net_id)
        except ns.NeutronError as exc:
            if " 404 " not in str(exc):   # the test deleted it itself
                raise


@pytest.fixture
def vms(cloud, sandbox, nova, nets) -> Iterator[Callable[..., FakeVM]]:
    """Boots a fake VM on a port neutron made (binding:host_id = this host), as nova would:
    a namespace with neutron's MAC and addresses, plugged into br-int with its iface-id."""
    made: list[FakeVM] = []

    def boot(network_id: str, cls: type[FakeVM] = FakeVM, **port_attrs) -> FakeVM:
        attrs = {"device_owner": "compute:nova", "binding:host_id": cloud.host,
                 "device_id": str(uuid.uuid4()), **port_attrs}
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


def test_ipv4_ipv6_only_and_dual_stack_vms_get_their_own_metadata(cloud, sandbox, nets, agent,
                                                                   vms) -> None:
    v4 = nets("v4", "10.50.0.0/24")
    v6 = nets("v6", "fd00:50::/64")
    dual = nets("dual", "10.51.0.0/24", "fd00:51::/64")
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


def test_port_update_gives_the_vm_its_new_identity_never_the_old(cloud, sandbox, nets, agent,
                                                                 vms, nova) -> None:
    net = nets("upd", "10.52.0.0/24")
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


def test_deleted_port_then_network_stop_being_served(cloud, sandbox, nets, agent, vms) -> None:
    net = nets("del", "10.53.0.0/24")
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


def test_baremetal_node_on_a_flat_provider_network(cloud, sandbox, nets, provider, agent,
                                                   vms) -> None:
    # neutron reads the gateway chassis from the SB: wait until it knows this one.
    wait_until(lambda: "enable-chassis-as-gw" in sandbox.sbctl(
        "get", "Chassis", sandbox.chassis, "other_config"), timeout=20,
        what="this chassis a gateway in the SB")
    net = nets("prov", "10.54.0.0/24", **{
        "provider:network_type": "flat", "provider:physical_network": PHYSNET})
    node = vms(net, FakeBaremetal, **{"binding:vnic_type": "baremetal",
                                      "device_owner": "baremetal:none"})
    lsp_type = sandbox.nbctl("get", "Logical_Switch_Port", node.port.name, "type").strip()
    assert lsp_type == "external"
    agent()
    assert served(node, timeout=40) == node.port.device_id


def test_allowed_address_pair_holding_the_metadata_ip(cloud, sandbox, nets, agent, vms) -> None:
    """LP #2116249: a port whose allowed_address_pairs hold the metadata port's IP. neutron 29
    refuses the address itself; a CIDR around it is taken. Either way the VMs keep their
    metadata, the metadata port stays a localport, and `ovnmeta status` lists the network."""
    net = nets("aap", "10.55.0.0/24")
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


REFERENCE = Path(__file__).parents[1] / "data" / "neutron29_nb.json"


def test_nb_rows_match_the_recorded_reference(cloud, sandbox, nets, provider, vms) -> None:
    """What neutron-server 29 writes for one provider network with a VM and a baremetal
    port, against tests/data/neutron29_nb.json (OVNMETA_RECORD_NB=1 records it anew)."""
    wait_until(lambda: "enable-chassis-as-gw" in sandbox.sbctl(
        "get", "Chassis", sandbox.chassis, "other_config"), timeout=20,
        what="this chassis a gateway in the SB")
    net = nets("ref", "10.56.0.0/24", **{
        "provider:network_type": "flat", "provider:physical_network": PHYSNET})
    vms(net)
    vms(net, FakeBaremetal, **{"binding:vnic_type": "baremetal",
                               "device_owner": "baremetal:none"})
    # neutron adds neutron:host_id once it has bound the port: wait for both.
    wait_until(lambda: all("neutron:host_id" in p["external_ids"]
                           for p in nbshape.rows(sandbox, "Logical_Switch_Port")
                           if p["external_ids"].get("neutron:device_owner") in (
                               "compute:nova", "baremetal:none")),
               timeout=20, what="neutron:host_id on the bound ports")
    got = nbshape.shape(sandbox, net, cloud.host)
    if os.environ.get("OVNMETA_RECORD_NB"):
        REFERENCE.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(REFERENCE.read_text())


def test_agent_list_before_during_and_after_a_swap_from_neutrons_agent(
        cloud, sandbox, nets, vms, nova, tmp_path) -> None:
    """neutron's own metadata agent serves a VM; ovnmeta takes over with the same config
    file (docs/migrate.md's order). neutron's API lists this host's metadata agent, alive,
    as the same agent, before, during and after; the VM is served throughout."""
    net = nets("swap", "10.57.0.0/24")
    vm = vms(net)
    work = Path(tempfile.mkdtemp(prefix="omt-", dir="/tmp"))
    ini = ns.agent_ini(sandbox, work, nova.port, SECRET)
    theirs = ns.start_neutron_agent(ini)
    ours = AgentProcess(sandbox, state_dir=work)
    ours.config = ini
    layout = NeutronMetadata(vm.network, work, str(work / "metadata_proxy"))
    try:
        assert served(vm, timeout=90) == vm.port.device_id
        before = wait_until(lambda: metadata_agents(cloud, cloud.host), timeout=30,
                            what="neutron's agent listed")
        assert [a["alive"] for a in before] == [True]
        # neutron 29 sets its metadata_backlog after socketserver has called listen(): its
        # socket holds 5 waiting connections, and its haproxies answer 503 past that.
        assert listen_backlog(work / "metadata_proxy") == 5
        neutrons = (work / "metadata_proxy").stat().st_ino
        ours.start()
        wait_until(lambda: "still runs" in (work / "neutron.log").read_text(), timeout=60,
                   what="ovnmeta holding the socket, waiting for neutron's agent")
        # Taken before oslo.config loaded (ovnmeta.agent.earlysocket), with its backlog.
        assert "bound before the config was loaded" in (work / "neutron.log").read_text()
        # ss names a socket by the path it was bound to: ovnmeta's bound a temporary name
        # and renamed it over neutron's.
        assert (work / "metadata_proxy").stat().st_ino != neutrons
        assert listen_backlog(work / f"metadata_proxy.{ours.proc.pid}") == 4096
        during = metadata_agents(cloud, cloud.host)
        assert [(a["id"], a["alive"]) for a in during] == [(before[0]["id"], True)]
        assert served(vm) == vm.port.device_id
        theirs.send_signal(signal.SIGTERM)   # the main process only (KillMode=process)
        theirs.wait(30)
        wait_until(lambda: not layout.leftovers(sandbox), timeout=60,
                   what="neutron's namespace and haproxy replaced")
        assert served(vm) == vm.port.device_id
        sb_cfg = sandbox.sbctl("get", "SB_Global", ".", "nb_cfg").strip()
        wait_until(lambda: sandbox.sbctl(
            "get", "Chassis_Private", sandbox.chassis,
            'external_ids:"neutron:ovn-metadata-sb-cfg"').strip().strip('"') == sb_cfg,
            timeout=20, what="ovnmeta echoing nb_cfg")
        after = metadata_agents(cloud, cloud.host)
        assert [(a["id"], a["alive"]) for a in after] == [(before[0]["id"], True)]
        # ovnmeta logs to the shared config's log_file, beside neutron's agent.
        logged = (work / "neutron.log").read_text().splitlines()
        assert [line for line in logged if " ovnmeta." in line
                and (" ERROR " in line or " WARNING " in line)] == []
        assert "Traceback" not in ours.log()   # what reached its stderr
    finally:
        if theirs.poll() is None:
            theirs.terminate()
            theirs.wait(30)
        pid = layout.haproxy_pid()
        if pid:
            procs.terminate(pid)
        ours.stop()
        ours.cleanup()


def listen_backlog(path: Path) -> int | None:
    """The backlog of the unix socket listening that was bound to path (ss's Send-Q for a
    listener)."""
    out = subprocess.run(["ss", "-xlH"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[4] == str(path):
            return int(fields[3])
    return None


def imitation_shape(sandbox) -> dict:
    """The same scene written by the tests' imitation of neutron (ovnmeta_testing.neutron)."""
    net = neutron.create_network(sandbox, cidrs=("10.58.0.0/24",), mtu=1500)
    try:
        neutron.add_localnet_port(sandbox, net, PHYSNET)
        neutron.create_vm_port(sandbox, net, security_group=True)
        group = neutron.create_ha_chassis_group(sandbox, f"neutron-{net.id}",
                                                {sandbox.chassis: 32767})
        neutron.create_external_port(sandbox, net, group, security_group=True)
        return nbshape.shape(sandbox, net.id, ns.chassis_hostname(sandbox))
    finally:
        neutron.delete_network(sandbox, net)
        neutron.delete_ha_chassis_group(sandbox, f"neutron-{net.id}")


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in (differences(a.get(k), b.get(k), f"{path}/{k}") if k in a and k in b
                          else [f"{path}/{k}: {'only neutron' if k in a else 'only imitation'}"])]
    return [] if a == b else [f"{path}: neutron {a!r}, imitation {b!r}"]


def test_the_imitation_writes_what_neutron_server_writes(sandbox) -> None:
    """tests/data/neutron29_nb.json against the imitation most sandbox tests use."""
    reference = json.loads(REFERENCE.read_text())
    got = differences(reference, imitation_shape(sandbox))
    print("\n".join(got))
    assert got == []
