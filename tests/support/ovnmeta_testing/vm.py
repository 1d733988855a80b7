"""A fake VM: a network namespace whose veth is bound to a logical port on br-int.

Built with iproute2 and ethtool rather than the agent's own plumbing code, so tests
check the agent against an independent implementation.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass

from ovnmeta_testing import neutron
from ovnmeta_testing.neutron import Network, Port
from ovnmeta_testing.sandbox import Sandbox

METADATA_IP = "169.254.169.254"
VM_NETNS_PREFIX = "omvm-"


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


@dataclass
class FakeVM:
    box: Sandbox
    network: Network
    port: Port

    @property
    def netns(self) -> str:
        return VM_NETNS_PREFIX + self.port.name[:8]

    @property
    def host_dev(self) -> str:
        return "omv" + hashlib.sha1(self.port.name.encode()).hexdigest()[:11]

    def start(self, bind: bool = True) -> "FakeVM":
        ns = self.netns
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", self.host_dev, "type", "veth", "peer", "name", "eth0",
            "netns", ns)
        self.exec("ip", "link", "set", "lo", "up")
        self.exec("ip", "link", "set", "eth0", "address", self.port.mac)
        self.exec("ip", "link", "set", "eth0", "mtu", str(self.network.mtu))
        for ip in self.port.ips:
            self.exec("ip", "addr", "add", ip, "dev", "eth0", "nodad")
        self.exec("ip", "link", "set", "eth0", "up")
        # The userspace datapath forwards partial checksums untouched; the receiver drops them.
        self.exec("ethtool", "-K", "eth0", "tx", "off")
        md_ip = self.network.metadata_port.ip
        if ":" not in md_ip:
            self.exec("ip", "route", "add", f"{METADATA_IP}/32", "via", md_ip)
        _sh("ip", "link", "set", self.host_dev, "up")
        if bind:
            self.plug()
        return self

    def plug(self) -> None:
        """Add the host end to br-int with iface-id, as nova's os-vif does."""
        self.box.vsctl("--may-exist", "add-port", self.box.bridge, self.host_dev, "--",
                       "set", "Interface", self.host_dev,
                       f'external_ids:iface-id="{self.port.name}"',
                       f'external_ids:attached-mac="{self.port.mac}"',
                       f'external_ids:vm-uuid="{self.port.device_id}"',
                       "external_ids:iface-status=active")

    def unplug(self) -> None:
        self.box.vsctl("--if-exists", "del-port", self.box.bridge, self.host_dev)

    def bound_chassis(self) -> str:
        out = self.box.sbctl("--bare", "--columns=chassis", "find", "Port_Binding",
                             f"logical_port={self.port.name}").strip()
        if not out:
            return ""
        return self.box.sbctl("--bare", "--columns=name", "list", "Chassis", out).strip()

    def wait_bound(self, timeout: float = 20.0) -> None:
        self.box.wait_for(lambda: self.bound_chassis() == self.box.chassis,
                          what=f"port {self.port.name} bound to {self.box.chassis}",
                          timeout=timeout)

    def exec(self, *argv: str, check: bool = True, timeout: float = 30
             ) -> subprocess.CompletedProcess:
        proc = subprocess.run(("ip", "netns", "exec", self.netns, *argv), capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"in {self.netns}: {' '.join(argv)}: exit {proc.returncode}: "
                               f"{proc.stderr.strip()}")
        return proc

    def popen(self, *argv: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(("ip", "netns", "exec", self.netns, *argv), **kwargs)

    def destroy(self) -> None:
        """Remove the OVS port and the namespace (which takes the veth pair with it)."""
        try:
            self.unplug()
        finally:
            _sh("ip", "netns", "del", self.netns, check=False)
            _sh("ip", "link", "del", self.host_dev, check=False)


def one_per_network(box: Sandbox, count: int, vms: list[FakeVM]) -> list[FakeVM]:
    """`count` networks (10.<i // 250>.<i % 250>.0/24) with one VM each, as a compute node
    serving that many: the benchmarks' cloud. Each VM joins `vms` before it starts, so the
    caller's teardown destroys it even when starting fails."""
    for i in range(count):
        net = neutron.create_network(box, cidrs=(f"10.{i // 250}.{i % 250}.0/24",))
        vms.append(FakeVM(box, net, neutron.create_vm_port(box, net)))
        vms[-1].start()
    return vms


@dataclass
class FakeBaremetal(FakeVM):
    """A baremetal node (or SR-IOV VM) behind an "external" port: it reaches the network
    over a provider bridge, with no interface carrying its port's iface-id on this host."""
    provider_bridge: str = "br-phys"

    @property
    def netns(self) -> str:
        return VM_NETNS_PREFIX + "bm-" + self.port.name[:8]

    def plug(self) -> None:
        self.box.vsctl("--may-exist", "add-port", self.provider_bridge, self.host_dev)

    def unplug(self) -> None:
        self.box.vsctl("--if-exists", "del-port", self.provider_bridge, self.host_dev)
