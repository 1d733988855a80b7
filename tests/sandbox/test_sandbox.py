"""The sandbox is real OVN: a chassis registers, ports bind, VMs talk TCP over the datapath."""

from __future__ import annotations

import os
import subprocess
import sys

from ovnmeta_testing.sandbox import Sandbox, alive

SERVER = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7777)); s.listen(1); print('ready', flush=True)\n"
    "c,_=s.accept(); c.sendall(c.recv(100).upper()); c.close()\n"
)
CLIENT = (
    "import socket,sys\n"
    "c=socket.create_connection((sys.argv[1], 7777), timeout=5)\n"
    "c.sendall(b'hello ovn'); print(c.recv(100).decode())\n"
)


def test_chassis_registers_in_sb(sandbox: Sandbox) -> None:
    names = sandbox.sbctl("--bare", "--columns=name", "list", "Chassis").split()
    assert sandbox.chassis in names
    encap = sandbox.sbctl("--bare", "--columns=type,ip", "list", "Encap").split()
    assert encap == ["geneve", "127.0.0.1"]


def test_vm_port_gets_bound_to_the_chassis(sandbox, make_network, make_vm) -> None:
    net = make_network()
    vm = make_vm(net)
    vm.wait_bound()
    ext = sandbox.sbctl("--bare", "--columns=external_ids", "find", "Port_Binding",
                        f"logical_port={vm.port.name}")
    assert f"neutron:device_id={vm.port.device_id}" in ext
    md = sandbox.sbctl("--bare", "--columns=type,mac", "find", "Port_Binding",
                       f"logical_port={net.metadata_port.name}").split("\n")
    assert md[0] == "localport"
    assert net.metadata_port.mac in md[1]


def test_unplugged_vm_is_not_bound(sandbox, make_network, make_vm) -> None:
    vm = make_vm(make_network(), bind=False)
    assert vm.bound_chassis() == ""


def test_two_vms_talk_tcp_through_ovn(sandbox, make_network, make_vm) -> None:
    net = make_network()
    a, b = make_vm(net), make_vm(net)
    a.wait_bound()
    b.wait_bound()
    server = a.popen(sys.executable, "-c", SERVER, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        out = b.exec(sys.executable, "-c", CLIENT, a.port.ip, timeout=20)
        assert out.stdout.strip() == "HELLO OVN"
    finally:
        server.kill()
        server.wait()


def test_port_security_drops_a_spoofed_mac(sandbox, make_network, make_vm) -> None:
    net = make_network()
    a, b = make_vm(net), make_vm(net)
    a.wait_bound()
    b.wait_bound()
    assert b.exec("ping", "-c1", "-W2", a.port.ip, check=False).returncode == 0
    b.exec("ip", "link", "set", "eth0", "address", "fa:16:3e:00:00:01")
    assert b.exec("ping", "-c1", "-W1", a.port.ip, check=False).returncode != 0


def test_up_is_idempotent_and_down_cleans_up(sandbox: Sandbox) -> None:
    # Runs on the session's sandbox, which is up again (fresh) when this test ends.
    pids = sandbox.status()
    assert all(pids.values())
    sandbox.up()
    assert sandbox.status() == pids
    sandbox.down()
    assert not sandbox.root.exists()
    assert not any(sandbox.status().values())
    for pid in pids.values():
        assert not alive(pid)
    for dev in (sandbox.bridge, "ovs-netdev"):
        assert not os.path.exists(f"/sys/class/net/{dev}")
    sandbox.up()
    assert sandbox.is_up()
    assert sandbox.chassis in sandbox.sbctl("--bare", "--columns=name", "list", "Chassis")
