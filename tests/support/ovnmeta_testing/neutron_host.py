"""Builds, on the sandbox host, what neutron 29's OVN metadata agent leaves for a network.

Used to test ovnmeta's takeover against the exact layout (read from neutron 29.0.0's
`neutron/agent/ovn/metadata/agent.py`, `neutron/agent/metadata/driver_base.py`,
`neutron/common/metadata.py` and `neutron/agent/linux/external_process.py`):

- namespace `ovnmeta-<net>` with `lo` up;
- veth `tap<net[:10]>0` (root, on br-int with iface-id=<localport>) and `tap<net[:10]>1`
  (in the namespace, the localport's MAC, both ends at the network MTU);
- on `…1`: the localport's address in each subnet that has a VM here, 169.254.169.254/32,
  and for IPv6 fe80::a9fe:a9fe/128 plus the EUI-64 link-local address;
- one haproxy per network, started inside the namespace as `haproxy -f
  <state_path>/ovn-metadata-proxy/<net>.conf`, pidfile `<external_pids>/<net>.pid.haproxy`,
  forwarding to `metadata_proxy_socket` and *adding* X-OVN-Network-ID.

- on a netdev bridge, `iptables -t mangle -A POSTROUTING -p tcp -m tcp -j CHECKSUM
  --checksum-fill` in the namespace (neutron's IptablesManager adds its own chains too).

Built with iproute2, ovs-vsctl, iptables and haproxy, not ovnmeta's code.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ovnmeta.host import procs
from ovnmeta_testing.neutron import Network
from ovnmeta_testing.sandbox import Sandbox, alive, wait_until

# The directives neutron 29 writes for an OVN network without rate limiting (defaults of
# [metadata_haproxy]); user and group default to the agent's, here root.
HAPROXY_CONFIG = jinja2.Template("""
global
    log         /dev/log local0 info
    log-tag     haproxy-metadata-proxy-{{ net }}
    user        root
    group       root
    maxconn     1024
    nbthread    2
    pidfile     {{ pidfile }}
    daemon

defaults
    log global
    mode http
    option httplog
    option dontlognull
    option http-server-close
    option forwardfor
    retries                 3
    timeout http-request    30s
    timeout connect         30s
    timeout client          32s
    timeout server          32s
    timeout http-keep-alive 30s

listen listener
    bind 169.254.169.254:80
    {% if v6_dev %}bind fe80::a9fe:a9fe:80 interface {{ v6_dev }}{% endif %}
    server metadata {{ socket }}

    http-request add-header X-OVN-Network-ID {{ net }}
""")


def veth_names(net_id: str) -> tuple[str, str]:
    return f"tap{net_id[:10]}0", f"tap{net_id[:10]}1"


def _sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def _eui64_link_local(mac: str) -> str:
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    eui = b[:3] + [0xFF, 0xFE] + b[3:]
    groups = [f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2)]
    return f"fe80::{':'.join(groups)}/64"


@dataclass
class NeutronMetadata:
    """One network as neutron's agent left it."""
    network: Network
    state_path: Path
    socket: str

    @property
    def namespace(self) -> str:
        return f"ovnmeta-{self.network.id}"

    @property
    def config(self) -> Path:
        return self.state_path / "ovn-metadata-proxy" / f"{self.network.id}.conf"

    @property
    def pidfile(self) -> Path:
        return self.state_path / "external" / "pids" / f"{self.network.id}.pid.haproxy"

    def haproxy_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def build(self, box: Sandbox) -> NeutronMetadata:
        _sh("ip", "netns", "add", self.namespace)
        _sh("ip", "-n", self.namespace, "link", "set", "lo", "up")
        self.add_veth(box)
        self.start_haproxy()
        return self

    @property
    def v6(self) -> bool:
        return any(ipaddress.ip_interface(c).version == 6
                   for c in self.network.metadata_port.ips)

    def add_veth(self, box: Sandbox, plug: bool = True) -> None:
        """The pair, its addresses and (plug) its OVS port, in an existing namespace."""
        net, md = self.network, self.network.metadata_port
        outer, inner = veth_names(net.id)
        ns = self.namespace
        _sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
        _sh("ip", "-n", ns, "link", "set", inner, "address", md.mac)
        _sh("ip", "link", "set", outer, "mtu", str(net.mtu))
        _sh("ip", "-n", ns, "link", "set", inner, "mtu", str(net.mtu))
        _sh("ip", "link", "set", outer, "up")
        _sh("ip", "-n", ns, "link", "set", inner, "up")
        addresses = [c for c in md.ips if ipaddress.ip_interface(c).version == 4]
        addresses.append("169.254.169.254/32")
        if self.v6:
            addresses += ["fe80::a9fe:a9fe/128", _eui64_link_local(md.mac)]
        for cidr in addresses:
            _sh("ip", "-n", ns, "addr", "add", cidr, "dev", inner,
                *(["nodad"] if ":" in cidr else []))
        if plug:
            self.plug(box)
        # neutron on a netdev bridge: checksums filled by iptables (LP#1904871).
        _sh("ip", "netns", "exec", ns, "iptables", "-t", "mangle", "-A", "POSTROUTING",
            "-p", "tcp", "-m", "tcp", "-j", "CHECKSUM", "--checksum-fill")

    def plug(self, box: Sandbox) -> None:
        outer = veth_names(self.network.id)[0]
        box.vsctl("--may-exist", "add-port", box.bridge, outer, "--", "set", "Interface",
                  outer, f'external_ids:iface-id="{self.network.metadata_port.name}"')

    def start_haproxy(self) -> None:
        v6_dev = veth_names(self.network.id)[1] if self.v6 else ""
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(HAPROXY_CONFIG.render(
            net=self.network.id, pidfile=self.pidfile, socket=self.socket, v6_dev=v6_dev)
            + "\n")
        _sh("ip", "netns", "exec", self.namespace, "haproxy", "-f", str(self.config))
        wait_until(self.haproxy_pid, what=f"neutron-style haproxy for {self.network.id}")

    def destroy(self, box: Sandbox) -> None:
        """Remove whatever of this layout is still there (test teardown)."""
        pid = self.haproxy_pid()
        if pid:
            procs.terminate(pid)
        outer, _ = veth_names(self.network.id)
        box.vsctl("--if-exists", "del-port", box.bridge, outer)
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        for path in (self.config, self.pidfile):
            path.unlink(missing_ok=True)

    def leftovers(self, box: Sandbox) -> list[str]:
        """What of neutron's is still on the host (empty once taken over)."""
        found = []
        outer, inner = veth_names(self.network.id)
        if Path(f"/sys/class/net/{outer}").exists():
            found.append(f"device {outer}")
        links = subprocess.run(["ip", "-n", self.namespace, "-o", "link", "show"],
                               capture_output=True, text=True).stdout
        if f" {inner}@" in links or f" {inner}:" in links:
            found.append(f"device {inner} in {self.namespace}")
        iface_ids = box.vsctl("--bare", "--columns=name,external_ids", "find", "Interface",
                              f'external_ids:iface-id="{self.network.metadata_port.name}"')
        names = [w for w in iface_ids.split() if not w.startswith("iface-id")
                 and "=" not in w]
        if len(names) > 1:
            found.append(f"{len(names)} OVS interfaces with the localport's iface-id: {names}")
        if outer in box.vsctl("list-ports", box.bridge).split():
            found.append(f"OVS port {outer}")
        if self.haproxy_pid():
            found.append(f"neutron haproxy pid {self.haproxy_pid()}")
        for path in (self.config, self.pidfile):
            if path.exists():
                found.append(f"file {path}")
        rules = subprocess.run(["ip", "netns", "exec", self.namespace, "iptables-save"],
                               capture_output=True, text=True).stdout
        if "CHECKSUM" in rules:
            found.append(f"iptables CHECKSUM rule in {self.namespace}")
        addrs = subprocess.run(["ip", "-n", self.namespace, "-o", "addr", "show"],
                               capture_output=True, text=True).stdout
        for cidr in self.network.metadata_port.ips + ("169.254.169.254/32",):
            count = addrs.count(f" {cidr} ")
            if count > 1:
                found.append(f"address {cidr} on {count} devices")
        return found
