"""End to end: VM → OVN → haproxy → agent → nova-compatible server, and back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ovnmeta.core import naming
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.vm import FakeVM

SECRET = "e2e-shared-secret"
URL = "http://169.254.169.254"


def get(vm: FakeVM, path: str, *headers: str, method: str = "GET", data: str | None = None
        ) -> tuple[int, str]:
    argv = ["curl", "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", "-X", method]
    for h in headers:
        argv += ["-H", h]
    if data is not None:
        argv += ["--data-binary", data]
    out = vm.exec(*argv, URL + path, check=False, timeout=15).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def instance_data(vm: FakeVM) -> dict:
    name = f"vm-{vm.port.ip.replace('.', '-')}-{vm.network.id[:4]}"
    return {"project_id": vm.port.project_id, "hostname": name,
            "public_keys": {"key": f"ssh-ed25519 AAAAC3 {name}@demo"},
            "user_data": f"#cloud-config\nhostname: {name}\n",
            "network_data": neutron.network_data(vm.network, vm.port)}


@pytest.fixture
def cloud(make_network, make_vm, start_agent, tmp_path):
    """Two networks with the same subnet, two VMs each, nova and the agent running."""
    nets = [make_network(cidrs=("10.0.0.0/24",)) for _ in range(2)]
    vms = [make_vm(net) for net in nets for _ in range(2)]
    instances = {vm.port.device_id: instance_data(vm) for vm in vms}
    nova = NovaProcess(instances, SECRET, tmp_path).start()
    agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                              f"nova_metadata_port = {nova.port}")
    for vm in vms:
        wait_until(lambda: get(vm, "/openstack/latest/meta_data.json")[0] == 200, timeout=20,
                   what=f"metadata for {vm.netns}")
    yield {"vms": vms, "instances": instances, "nova": nova, "agent": agent, "nets": nets}
    nova.stop()


def test_every_vm_gets_its_own_instance(cloud) -> None:
    vms = cloud["vms"]
    assert vms[0].port.ip == vms[2].port.ip  # same address on two networks
    for vm in vms:
        want = cloud["instances"][vm.port.device_id]
        status, body = get(vm, "/openstack/latest/meta_data.json")
        meta = json.loads(body)
        assert (status, meta["uuid"], meta["hostname"]) == (200, vm.port.device_id,
                                                            want["hostname"])
        assert meta["public_keys"] == want["public_keys"]
        assert get(vm, "/openstack/latest/user_data") == (200, want["user_data"])
        assert get(vm, "/latest/meta-data/hostname") == (200, want["hostname"])
        assert get(vm, "/latest/meta-data/public-keys/0/openssh-key")[1] == \
            want["public_keys"]["key"]
        assert get(vm, "/latest/user-data")[1] == want["user_data"]
        net_data = json.loads(get(vm, "/openstack/latest/network_data.json")[1])
        assert net_data["links"][0]["ethernet_mac_address"] == vm.port.mac
        assert net_data["networks"][0]["ip_address"] == vm.port.ip


def test_forged_headers_still_get_only_own_data(cloud) -> None:
    me, victim = cloud["vms"][0], cloud["vms"][1]
    other_net = cloud["vms"][2].network.id
    status, body = get(me, "/openstack/latest/meta_data.json",
                       f"X-OVN-Network-ID: {other_net}", f"X-Forwarded-For: {victim.port.ip}",
                       f"X-Instance-ID: {victim.port.device_id}",
                       f"X-Tenant-ID: {victim.port.project_id}",
                       "X-Instance-ID-Signature: " + "0" * 64,
                       "X-Metadata-Provider: evil", "X-Metadata-Provider-Signature: x")
    assert status == 200 and json.loads(body)["uuid"] == me.port.device_id


def test_password_post_reaches_nova(cloud) -> None:
    vm = cloud["vms"][0]
    assert get(vm, "/openstack/latest/password", method="POST", data="encrypted")[0] == 200
    assert get(vm, "/openstack/latest/password") == (200, "encrypted")


def test_unknown_source_gets_404(sandbox, cloud, make_vm) -> None:
    net = cloud["nets"][0]
    vm = make_vm(net, port_security=False)
    vm.wait_bound()
    vm.exec("ip", "addr", "flush", "dev", "eth0")
    vm.exec("ip", "addr", "add", "10.0.0.99/24", "dev", "eth0")
    vm.exec("ip", "route", "add", "169.254.169.254/32", "via", net.metadata_port.ip)
    status, body = wait_until(lambda: (r := get(vm, "/openstack/latest/meta_data.json"))[0]
                              and r, what="an answer")
    assert status == 404 and "10.0.0.99" in body
    assert "no VM port bound here with IP 10.0.0.99" in cloud["agent"].log()


def test_nova_down_gives_502_then_recovers(cloud) -> None:
    vm = cloud["vms"][0]
    cloud["nova"].stop()
    status, body = get(vm, "/openstack/latest/meta_data.json")
    assert status == 502 and "nova" in body
    cloud["nova"].start()
    assert get(vm, "/openstack/latest/meta_data.json")[0] == 200


def test_wrong_secret_is_403_with_a_clear_log(cloud, tmp_path) -> None:
    vm = cloud["vms"][0]
    cloud["nova"].stop()
    wrong = NovaProcess(cloud["instances"], "not-the-agents-secret", tmp_path / "..",
                        port=cloud["nova"].port).start()
    try:
        assert get(vm, "/openstack/latest/meta_data.json")[0] == 403
        # On the direct path the agent learns of it from haproxy's counters (every second).
        wait_until(lambda: "metadata_proxy_shared_secret" in cloud["agent"].log(), timeout=5,
                   what="the 403 logged")
        log = cloud["agent"].log()
        assert SECRET not in log and "not-the-agents-secret" not in log
    finally:
        wrong.stop()


def test_sb_ip_change_is_followed(sandbox, cloud) -> None:
    vm = cloud["vms"][1]
    new_ip = "10.0.0.77"
    addresses = f"{vm.port.mac} {new_ip}"
    sandbox.nbctl("lsp-set-addresses", vm.port.name, addresses, "--",
                  "lsp-set-port-security", vm.port.name, addresses)
    vm.exec("ip", "addr", "flush", "dev", "eth0")
    vm.exec("ip", "addr", "add", f"{new_ip}/24", "dev", "eth0")
    vm.exec("ip", "route", "add", "169.254.169.254/32", "via", vm.network.metadata_port.ip)
    t0 = time.monotonic()
    status, body = wait_until(
        lambda: (r := get(vm, "/openstack/latest/meta_data.json"))[0] == 200 and r,
        timeout=10, what="metadata after the IP change")
    print(f"lookup followed the IP change after {time.monotonic() - t0:.2f}s")
    assert json.loads(body)["uuid"] == vm.port.device_id


def test_agent_restart_loses_no_request(cloud) -> None:
    vm, agent = cloud["vms"][0], cloud["agent"]
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            results.append(get(vm, "/openstack/latest/meta_data.json"))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(0.5)
        agent.restart(timeout=20)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert len(results) > 5
    assert [r for r in results if r[0] != 200] == []


def test_metadata_workers_share_the_socket_and_are_respawned(make_network, make_vm,
                                                             start_agent, tmp_path) -> None:
    from ovnmeta.agent import control

    net = make_network()
    vm = make_vm(net)
    nova = NovaProcess({vm.port.device_id: instance_data(vm)}, SECRET, tmp_path).start()
    try:
        agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                  f"nova_metadata_port = {nova.port}\nmetadata_workers = 3")
        sock = str(agent.state_dir / control.CONTROL_SOCKET)

        def workers() -> list[int]:
            try:
                return control.request(sock, "/status")[1]["metadata_workers"]
            except Exception:
                return []
        wait_until(lambda: len(workers()) == 3, timeout=20, what="three serving processes")
        wait_until(lambda: "metadata worker serving" in agent.log(), what="workers loaded")
        # Forked workers serve within milliseconds, before the network's path is up: wait
        # for the VM to be served once, then every process must answer it.
        wait_until(lambda: get(vm, "/openstack/latest/meta_data.json")[0] == 200, timeout=20,
                   what="the VM served")
        assert all(get(vm, "/openstack/latest/meta_data.json")[0] == 200 for _ in range(20))
        first = workers()
        os.kill(first[1], signal.SIGKILL)
        wait_until(lambda: len(workers()) == 3 and first[1] not in workers(), timeout=10,
                   what="worker respawned")
        assert all(get(vm, "/openstack/latest/meta_data.json")[0] == 200 for _ in range(20))
        survivors = workers()[1:]
        agent.stop()
        for pid in survivors:
            wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                       open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z",
                       what=f"worker {pid} stopped with the agent")
    finally:
        nova.stop()


@pytest.mark.parametrize("cidrs", [("10.0.0.0/24", "fd00:1::/64"), ("fd00:2::/64",)],
                         ids=["dual-stack", "ipv6-only"])
def test_ipv6_link_local_client_is_identified_by_its_mac(make_network, make_vm, start_agent,
                                                         tmp_path, cidrs) -> None:
    """cloud-init asks http://[fe80::a9fe:a9fe%eth0] first. The VM here already holds the
    namespace's MAC for fe80::a9fe:a9fe (as after any earlier exchange), so it sends no
    neighbour solicitation the namespace could learn from: the namespace must know the VM's
    link-local address itself. Resolving it by neighbour discovery fails on OVN 23.03, whose
    port security drops the VM's advertisement of its own link-local address."""
    net = make_network(cidrs=cidrs)
    vm = make_vm(net)
    wait_until(lambda: "fe80::" in (out := vm.exec("ip", "-6", "addr", "show", "dev", "eth0",
                                                   "scope", "link").stdout)
               and "tentative" not in out, timeout=10, what="the VM's link-local address")
    vm.exec("ip", "-6", "neigh", "replace", "fe80::a9fe:a9fe", "lladdr",
            net.metadata_port.mac, "dev", "eth0", "nud", "permanent")
    nova = NovaProcess({vm.port.device_id: instance_data(vm)}, SECRET, tmp_path).start()
    try:
        start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                          f"nova_metadata_port = {nova.port}")
        url = "http://[fe80::a9fe:a9fe%eth0]/openstack/latest/meta_data.json"

        def fetch6():
            proc = vm.exec("curl", "-gsf", "-m", "2", url, check=False, timeout=10)
            return proc.returncode == 0 and json.loads(proc.stdout)
        try:
            meta = wait_until(fetch6, timeout=30, what="metadata over IPv6 link-local")
        except Exception:
            ns = naming.namespace(net.id)
            state = [vm.exec(*cmd, check=False).stdout for cmd in (
                ("ip", "-6", "addr"), ("ip", "-6", "neigh"),
                ("sh", "-c", f"curl -gsv -m 2 '{url}' 2>&1"))]
            state += [subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                                     text=True).stdout
                      for cmd in (("ip", "-6", "addr"), ("ip", "-6", "neigh"))]
            raise AssertionError("no metadata over IPv6 link-local:\n" + "\n".join(state))
        assert meta["uuid"] == vm.port.device_id
        if len(cidrs) == 1:  # the namespace serves the IPv6-only network over IPv6 alone
            inner = subprocess.run(["ip", "netns", "exec", naming.namespace(net.id), "ip",
                                    "-o", "addr"], capture_output=True, text=True).stdout
            assert "fd00:2::2/64" in inner and "fe80::a9fe:a9fe/128" in inner
    finally:
        nova.stop()


def test_rate_limit_is_per_vm_and_per_network(make_network, make_vm, start_agent,
                                              tmp_path) -> None:
    nets = [make_network(cidrs=("10.0.0.0/24",)) for _ in range(2)]
    a, b = make_vm(nets[0]), make_vm(nets[1])
    assert a.port.ip == b.port.ip
    nova = NovaProcess({vm.port.device_id: instance_data(vm) for vm in (a, b)}, SECRET,
                       tmp_path).start()
    try:
        start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                          f"nova_metadata_port = {nova.port}\n"
                          "[metadata_rate_limiting]\nrate_limit_enabled = true\n"
                          "base_query_rate_limit = 3\nbase_window_duration = 60\n"
                          "burst_query_rate_limit = 100\n")
        for vm in (a, b):
            wait_until(lambda: get(vm, "/openstack")[0] in (200, 429), timeout=20,
                       what="served")
        codes = [get(a, "/openstack/latest/meta_data.json")[0] for _ in range(5)]
        assert 429 in codes and codes.count(200) <= 2  # the wait above spent one
        # The same IP on the other network is another VM with its own allowance.
        assert get(b, "/openstack/latest/meta_data.json")[0] == 200
    finally:
        nova.stop()


def test_only_haproxy_may_use_the_metadata_socket(cloud) -> None:
    """With neutron's default socket mode (0666), any local user can connect; the agent
    still serves only root, its own user and haproxy's."""
    vm, agent = cloud["vms"][0], cloud["agent"]
    os.chmod(agent.state_dir, 0o755)  # as a deployment's /var/lib/neutron is
    assert oct(os.stat(agent.socket).st_mode & 0o777) == "0o666"
    client = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({agent.socket!r})\n"
        f"s.sendall(b'GET /openstack/latest/meta_data.json HTTP/1.0\\r\\n'\n"
        f"          b'X-OVN-Network-ID: {vm.network.id}\\r\\n'\n"
        f"          b'X-Forwarded-For: {vm.port.ip}\\r\\n\\r\\n')\n"
        "data = b''\n"
        "while chunk := s.recv(65536):\n"
        "    data += chunk\n"
        "sys.stdout.write(data.decode(errors='replace'))\n")
    # Debian's python3: nobody may not enter the project's virtualenv.
    as_nobody = subprocess.run(["/usr/bin/python3", "-c", client], user="nobody",
                               capture_output=True, text=True, timeout=10)
    assert as_nobody.stdout.split()[1:2] == ["403"], as_nobody
    assert vm.port.device_id not in as_nobody.stdout
    as_root = subprocess.run([sys.executable, "-c", client], capture_output=True, text=True,
                             timeout=10)
    assert as_root.stdout.split()[1:2] == ["200"] and vm.port.device_id in as_root.stdout
    assert get(vm, "/openstack/latest/meta_data.json")[0] == 200
    assert "refused a metadata request" in agent.log()


def test_a_network_added_to_a_running_agent_is_bridged_then_served_by_the_shared_haproxy(
        make_network, make_vm, start_agent, tmp_path) -> None:
    """[haproxy] bridges: the new network's own haproxy serves it while the shared one
    reloads; its VM gets its data; the bridge is gone once the shared haproxy has it."""
    first = make_vm(make_network())
    nova = NovaProcess({first.port.device_id: instance_data(first)}, SECRET, tmp_path).start()
    try:
        agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                  f"nova_metadata_port = {nova.port}\n[haproxy]\nbridges = 2")
        wait_until(lambda: get(first, "/openstack/latest/meta_data.json")[0] == 200,
                   timeout=20, what="the first VM served")
        assert "bridge haproxy" not in agent.log()     # a start loads the shared one only
        vm = make_vm(make_network())
        nova.add_instance(vm.port.device_id, instance_data(vm))
        wait_until(lambda: get(vm, "/openstack/latest/meta_data.json")[0] == 200,
                   timeout=20, what="the new network's VM served")
        code, body = get(vm, "/openstack/latest/meta_data.json")
        assert code == 200 and json.loads(body)["uuid"] == vm.port.device_id
        assert f"network {vm.network.id}: a bridge haproxy" in agent.log()
        haproxy_dir = agent.state_dir / "haproxy"
        wait_until(lambda: not list(haproxy_dir.glob("bridge-*")), timeout=30,
                   what="the bridge stopped and its files removed")
        assert get(vm, "/openstack/latest/meta_data.json")[0] == 200
        assert agent.log().count("Traceback") == 0
    finally:
        nova.stop()
